"""Built-in checks, one module per concern. Importing this package registers them all."""

from . import budget, config, data, hardware, host, monitoring, network, stack, storage  # noqa: F401
