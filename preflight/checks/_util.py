"""Small helpers shared by the check modules."""

from __future__ import annotations

from ..engine import Context
from ..probes import GpuInventory, ProbeUnavailable

GB = 1e9  # the spec's GB are SI gigabytes, as GPU and disk vendors count them
GIB = 2**30


def gb(n_bytes: float) -> str:
    return f"{n_bytes / GB:,.1f} GB"


def gpu_inventory(ctx: Context) -> GpuInventory:
    """NVML is queried once per check run, however many checks ask; ProbeUnavailable propagates."""
    inv: GpuInventory = ctx.memo("gpu.inventory", ctx.probes.gpu.inventory)
    return inv


def gpus_required(ctx: Context) -> bool:
    return bool(ctx.spec.get("hardware.gpu_required")) and int(ctx.spec.get("hardware.gpus_per_node")) > 0


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
