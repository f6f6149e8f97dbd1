"""Small helpers shared by the check modules."""

from __future__ import annotations

from pathlib import Path

from ..probes import GpuInventory, ProbeUnavailable
from ..probes_active.gpu import GpuMeasurement, measure_gpus
from ..registry import Context
from ..result import Outcome, failed, passed

GB = 1e9  # the spec's GB are SI gigabytes, as GPU and disk vendors count them
GIB = 2**30
GPU_MEASURE_MAX_S = 600  # the schema's ceiling for active.gpu_budget_s


def gb(n_bytes: float) -> str:
    return f"{n_bytes / GB:,.1f} GB"


def gpu_inventory(ctx: Context) -> GpuInventory:
    """NVML is queried once per check run, however many checks ask; ProbeUnavailable propagates."""
    inv: GpuInventory = ctx.memo("gpu.inventory", ctx.probes.gpu.inventory)
    return inv


def gpu_measurement(ctx: Context) -> GpuMeasurement:
    """The GPUs measured at --level active (copy bandwidth, bf16 matmul), once per check run: the
    hw.gpu checks and the compute budget share it. Raises GpuProbeUnavailable."""
    budget = min(float(ctx.spec.get("active.gpu_budget_s")), GPU_MEASURE_MAX_S)
    measured: GpuMeasurement = ctx.memo("active.gpu", lambda: measure_gpus(budget))
    return measured


def gpus_required(ctx: Context) -> bool:
    return ctx.spec.uses_gpus


def no_gpu_reason(exc: ProbeUnavailable) -> str:
    return f"no GPU visible: {exc.reason}"


def version_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def writable_dir(ctx: Context, path: Path, remediation: str) -> Outcome:
    """Pass when ``path`` takes a file or could be created (the probe leaves nothing behind)."""
    try:
        ctx.probes.system.try_write(path)
    except OSError as exc:
        return failed(f"{path}: {exc.strerror or exc}", "a writable directory", remediation)
    return passed(f"{path} is writable", "a writable directory")


def inventory_or_outcome(ctx: Context, expected: str) -> GpuInventory | Outcome:
    """The GPUs, or the failure every GPU check reports when there are none to look at."""
    try:
        inv = gpu_inventory(ctx)
    except ProbeUnavailable as exc:
        return failed(no_gpu_reason(exc), expected, exc.hint)
    if not inv.gpus:
        return failed("no GPU on this node", expected, "run on a node with the GPUs the spec asks for")
    return inv
