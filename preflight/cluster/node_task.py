"""What runs on each node of the cluster: the machine checks and the facts the nodes must share.

Called inside a Ray worker pinned to the node. It uses the real probes of that machine (NVML,
psutil, package metadata), so a node whose workers see another torch or driver reports it.
"""

from __future__ import annotations

import contextlib
import os
import platform
from typing import Any

from ..checklist import checklist_for
from ..engine import Context, plan
from ..probes import NvmlGpuProbe, Probes, ProbeUnavailable, without_ray_gpu_override
from ..service.report import run_planned

# Checks about the machine itself: each node runs these. The rest (spec, data, monitoring) is
# about the run and runs once, on the driver. network.collective spans nodes: the driver runs it.
MACHINE_PREFIXES = ("hw.", "host.", "storage.", "network.", "stack.")
DRIVER_ONLY = ("network.collective",)


def is_machine_check(check_id: str) -> bool:
    return check_id.startswith(MACHINE_PREFIXES) and check_id not in DRIVER_ONLY


def run_on_node(spec: Any, level: str, cwd: str = "") -> dict[str, Any]:
    """Run the machine checks of ``spec`` here; returns {"hostname", "results", "facts"}.

    ``cwd`` is the driver's working directory: relative paths in the spec (the checkpoint dir)
    mean the same there when it exists on this node too (a shared file system).
    """
    if cwd and os.path.isdir(cwd):
        with contextlib.suppress(OSError):
            os.chdir(cwd)
    # the node's GPUs, not the none Ray assigned this task (it asked for none)
    probes = Probes(gpu=NvmlGpuProbe(env=without_ray_gpu_override(os.environ)))
    items = checklist_for(spec)
    defs = [d for d in plan(spec, level) if is_machine_check(d.id)]
    ctx = Context(spec=spec, probes=probes, level=level)
    results = run_planned(defs, ctx, items)
    return {"hostname": platform.node(), "results": [r.to_dict() for r in results], "facts": facts(probes)}


def facts(probes: Any) -> dict[str, Any]:
    """The versions and hardware every node must agree on (None where this node has none)."""
    gpu_model = driver = None
    gpu_count = 0
    try:
        inv = probes.gpu.inventory()
        names = sorted({g.name for g in inv.gpus})
        gpu_model = ", ".join(names) or None
        gpu_count = len(inv.gpus)
        driver = inv.driver_version
    except ProbeUnavailable:
        pass
    return {
        "gpu_model": gpu_model,
        "gpu_count": gpu_count,
        "driver": driver,
        "python": probes.packages.python_version(),
        "torch": probes.packages.version("torch"),
        "ray": probes.packages.version("ray"),
    }
