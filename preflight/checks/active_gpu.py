"""Measured GPU figures (`--level active`): host<->device copy bandwidth and bf16 matmul TFLOP/s.

Both checks share one measurement (a child process that imports torch), which the compute-budget
check also reads at this level. Expectations are per GPU model: copies by the host link (PCIe Gen4
or Gen5, or NVLink-C2C on Grace systems), matmul as a fraction of the datasheet peak.
"""

from __future__ import annotations

import re
from typing import Any

from ..probes_active.gpu import GpuProbeUnavailable
from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed, skipped
from ._util import GPU_MEASURE_MAX_S, gpu_measurement, gpus_required
from .budget import PEAK_TFLOPS

STARTUP_S = 60

# Pinned-memory copy bandwidth a healthy GPU reaches, GB/s, by model (about 70 % of the link's
# theoretical rate: PCIe Gen4 x16 32 GB/s, Gen5 x16 64 GB/s, NVLink-C2C 450 GB/s per direction).
MIN_COPY_GB_S = {"GB200": 200.0, "GH200": 200.0, "A100": 18.0, "A800": 18.0, "H100": 35.0, "H800": 35.0,
                 "H200": 35.0, "H20": 35.0, "B100": 35.0, "B200": 35.0}


def _model_key(name: str, table: dict[str, Any]) -> str | None:
    """The table key that appears as a whole word in an NVML/CUDA name (H20 does not match H200)."""
    for key in table:
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", name, re.I):
            return key
    return None


def _measured_or_outcome(ctx: Context, expected: str) -> Any:
    if not gpus_required(ctx):
        return skipped("the spec does not require GPUs (hardware.gpu_required is false or gpus_per_node is 0)")
    try:
        m = gpu_measurement(ctx)
    except GpuProbeUnavailable as exc:
        return failed(f"could not measure: {exc}", expected,
                      "run on a GPU node with a CUDA build of torch (see hw.gpu.count and stack.torch_build)")
    if not m.gpus:
        return failed("no GPU measured within the budget", expected, "raise active.gpu_budget_s")
    return m


@check("hw.gpu.copy_bandwidth", "Measured host<->device copy bandwidth", "active", rules=(
    Rule("active.min_copy_gb_s", ("machine: measured copy bandwidth",), "fail", "every GPU copies at least this fast"),
),
       timeout_s=GPU_MEASURE_MAX_S + STARTUP_S + 30)
def copy_bandwidth(ctx: Context) -> Outcome:
    """Copies 256 MiB between pinned host memory and each GPU, both ways, timed with CUDA events,
    against active.min_copy_gb_s or the GPU model's expectation (about 70 % of its host link:
    A100 18 GB/s on PCIe Gen4; H100/H200/B200 35 GB/s on Gen5; GH200/GB200 200 GB/s on
    NVLink-C2C). A slow GPU usually sits in a downgraded slot (Gen3, x8) or across a bad PCIe switch."""
    stated = ctx.spec.get("active.min_copy_gb_s")
    m = _measured_or_outcome(ctx, f">= {stated:g} GB/s each way" if stated else "the GPU model's copy bandwidth")
    if isinstance(m, Outcome):
        return m
    per_gpu = {f"GPU {g.index}": f"H2D {g.h2d_gb_s:.1f}, D2H {g.d2h_gb_s:.1f} GB/s" for g in m.gpus}
    slow = []
    for g in m.gpus:
        key = _model_key(g.name, MIN_COPY_GB_S)
        need = float(stated) if stated else MIN_COPY_GB_S[key] if key else None
        if need is not None and min(g.h2d_gb_s, g.d2h_gb_s) < need:
            slow.append(f"GPU {g.index} ({g.name}): H2D {g.h2d_gb_s:.1f}, D2H {g.d2h_gb_s:.1f} < {need:g} GB/s")
    worst = min(m.gpus, key=lambda g: min(g.h2d_gb_s, g.d2h_gb_s))
    expected = (f">= {stated:g} GB/s each way" if stated else
                "; ".join(sorted({f"{k}: >= {MIN_COPY_GB_S[k]:g} GB/s" for g in m.gpus
                                  if (k := _model_key(g.name, MIN_COPY_GB_S))})) or "no expectation for this model")
    if slow:
        return failed("; ".join(slow), expected,
                      "check the GPU's PCIe link (`nvidia-smi -q | grep -A3 'Link'`: generation and width), "
                      "reseat it or drain the node", per_gpu=per_gpu)
    return passed(f"slowest GPU {worst.index}: H2D {worst.h2d_gb_s:.1f} GB/s, D2H {worst.d2h_gb_s:.1f} GB/s",
                  expected, per_gpu=per_gpu)


@check("hw.gpu.matmul", "Measured bf16 matmul throughput", "active", timeout_s=GPU_MEASURE_MAX_S + STARTUP_S + 30,
       rules=(Rule("active.min_matmul_fraction", ("budget.peak_tflops", "machine: measured bf16 matmul"), "fail",
                   "every GPU reaches this fraction of its dense bf16 peak"),))
def matmul(ctx: Context) -> Outcome:
    """Times an 8192 x 8192 bf16 matmul on each GPU (2 n^3 FLOPs) and compares the TFLOP/s with
    active.min_matmul_fraction (default 0.5) of the model's dense bf16 datasheet peak (A100 312,
    H100/H200 989, B200 2250; budget.peak_tflops when set). A GPU far below is throttled (power,
    clocks, heat) or misconfigured. The slowest GPU's figure feeds the compute-budget estimate."""
    fraction = float(ctx.spec.get("active.min_matmul_fraction"))
    stated_peak = ctx.spec.get("budget.peak_tflops")
    m = _measured_or_outcome(ctx, f">= {fraction:.0%} of the datasheet bf16 peak")
    if isinstance(m, Outcome):
        return m
    per_gpu = {f"GPU {g.index}": round(g.matmul_tflops, 1) for g in m.gpus}
    slow, expectations = [], set()
    for g in m.gpus:
        key = _model_key(g.name, PEAK_TFLOPS)
        peak = float(stated_peak) if stated_peak else PEAK_TFLOPS[key] if key else None
        if peak is None:
            continue
        expectations.add(f">= {fraction * peak:,.0f} TFLOP/s ({fraction:.0%} of {peak:g})")
        if g.matmul_tflops < fraction * peak:
            slow.append(f"GPU {g.index} ({g.name}): {g.matmul_tflops:,.0f} TFLOP/s")
    worst = min(m.gpus, key=lambda g: g.matmul_tflops)
    expected = "; ".join(sorted(expectations)) or "no datasheet peak for this model (set budget.peak_tflops)"
    if slow:
        return failed("; ".join(slow), expected,
                      "look for throttling (`nvidia-smi -q -d PERFORMANCE,CLOCK,POWER`), a lowered power "
                      "limit or a hot GPU; drain the node if it stays slow", tflops=per_gpu)
    return passed(f"slowest GPU {worst.index}: {worst.matmul_tflops:,.0f} TFLOP/s bf16", expected, tflops=per_gpu)
