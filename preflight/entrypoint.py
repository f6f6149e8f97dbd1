"""Starting this installation's modules (the runner, its smoke test) so the working directory
cannot shadow them.

``python -m runner`` puts the working directory first on ``sys.path``, and Ray puts the driver's
working directory first on every worker's ``sys.path``: a training repository's own ``runner/``
package (a common name) would run instead of ours. Python 3.11's ``-P`` drops the first entry, but
the project supports 3.10, and a ``PYTHONPATH=.`` would bring the shadow back. So the child runs
a one-line bootstrap that puts the folder holding this installation's packages
(``INSTALL_ROOT``: site-packages, or the source checkout) first and runs the module as ``-m``
would (runpy). The working directory stays on the path after it, so a reward plug-in the spec
names (``run.reward: my_pkg.rewards:score``) still imports from there.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UsageError

# The folder that holds the preflight and runner packages: the wheel installs both side by side.
INSTALL_ROOT = Path(__file__).resolve().parent.parent

# argv after -c: [INSTALL_ROOT, MODULE, args...]; runpy then sets sys.argv[0] to the module's file.
BOOTSTRAP = ("import runpy, sys; sys.argv.pop(0); sys.path.insert(0, sys.argv.pop(0)); "
             "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")


def module_command(module: str, *args: str) -> list[str]:
    """The command line that runs ``python -m MODULE ARGS`` from this installation, whatever the
    working directory or PYTHONPATH hold."""
    package = module.split(".")[0]
    if not (INSTALL_ROOT / package / "__init__.py").is_file():
        raise UsageError(f"the {package} package is not installed next to preflight ({INSTALL_ROOT}); "
                         "reinstall rl-preflight (pip install 'rl-preflight[runner]')")
    return [sys.executable, "-c", BOOTSTRAP, str(INSTALL_ROOT), module, *args]


@contextlib.contextmanager
def ray_paths_from_this_install() -> Iterator[dict[str, Any]]:
    """Around ``ray.init``: keyword arguments that make Ray's workers import this installation's
    packages before the driver's working directory.

    Ray inserts the driver's working directory (at init time) and the extra paths of the job
    config at the front of each worker's sys.path, the last listed first. The working directory
    is INSTALL_ROOT while Ray starts, and the real one is listed before it, so a worker's path
    begins [INSTALL_ROOT, the working directory, ...]: our runner first, the user's plug-ins next.
    """
    from ray.job_config import JobConfig  # the caller is starting Ray anyway

    cwd = os.getcwd()
    os.chdir(INSTALL_ROOT)
    try:
        yield {"job_config": JobConfig(_py_driver_sys_path=[cwd])}
    finally:
        os.chdir(cwd)
