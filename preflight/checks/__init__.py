"""Built-in checks, one module per concern. Importing this package registers them all.

The active_* modules load their probes (and torch, in a child process) only when a check runs;
cluster checks skip unless `preflight check --cluster` gathered the nodes.
"""

from . import (  # noqa: F401
    active_gpu,
    active_network,
    active_storage,
    algo,
    algorithm,
    budget,
    cadence,
    cluster,
    config,
    data,
    hardware,
    host,
    memory,
    model,
    monitoring,
    network,
    policy,
    ratios,
    run_dir,
    runner_fit,
    stack,
    storage,
    topology,
    trainer_openrlhf,
    trainer_stack,
    trainer_trl,
    trainer_verl,
)
