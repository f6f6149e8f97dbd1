"""Host memory and CPUs."""

from __future__ import annotations

from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed
from ._util import GB, gb


@check("host.memory", "Host memory", "node", rules=(
    Rule("hardware.min_host_memory_gb", ("machine: total RAM on this node",), "fail",
         "every node has at least hardware.min_host_memory_gb of RAM"),))
def host_memory(ctx: Context) -> Outcome:
    """Total RAM on this node against hardware.min_host_memory_gb (default 256 GB).

    Rollout engines, data loading and gathering a full state dict for saving all live in host RAM.
    """
    need = float(ctx.spec.get("hardware.min_host_memory_gb"))
    host = ctx.memo("host", ctx.probes.system.host)
    expected = f">= {need:g} GB"
    if host.memory_total_bytes < need * GB:
        return failed(gb(host.memory_total_bytes), expected,
                      "run on nodes with more memory, or lower hardware.min_host_memory_gb if the run "
                      "is known to fit", bytes=host.memory_total_bytes)
    return passed(gb(host.memory_total_bytes), expected, bytes=host.memory_total_bytes)


@check("host.cpus", "Host CPUs", "node", rules=(
    Rule("hardware.min_cpus", ("machine: logical CPUs on this node",), "fail",
         "every node has at least hardware.min_cpus logical CPUs"),))
def host_cpus(ctx: Context) -> Outcome:
    """Logical CPUs on this node against hardware.min_cpus (default 32): data loading, reward
    computation (running code tests) and Ray's own processes need cores beside the GPUs."""
    need = int(ctx.spec.get("hardware.min_cpus"))
    host = ctx.memo("host", ctx.probes.system.host)
    if host.cpu_count < need:
        return failed(f"{host.cpu_count} CPUs", f">= {need}",
                      "run on nodes with more cores, or lower hardware.min_cpus")
    return passed(f"{host.cpu_count} CPUs", f">= {need}")
