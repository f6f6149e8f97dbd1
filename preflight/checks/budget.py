"""The compute budget: an estimate of the run's GPU hours against the stage's band."""

from __future__ import annotations

import re
from typing import Any

from ..presets import MFU_IMPOSSIBLE, MFU_RANGE, PEAK_OVER_DATASHEET_FAIL
from ..probes_active.gpu import GpuProbeUnavailable
from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed, skipped, warned
from ..spec import Spec
from ._relations import Findings
from ._util import gpu_measurement, gpus_required

# What the GPU-hour estimate is made of (estimate_gpu_hours).
ESTIMATE = ("model.params_b", "model.active_params_b", "training.batch_size", "training.max_prompt_tokens",
            "training.max_response_tokens", "training.max_steps", "algorithm.kl_beta", "budget.assumed_mfu",
            "budget.peak_tflops", "budget.mean_response_fraction", "hardware.gpu_models")

# Dense bf16 peak TFLOP/s per GPU (datasheet figures, without sparsity).
PEAK_TFLOPS = {"A100": 312, "A800": 312, "H100": 989, "H800": 989, "H200": 989, "H20": 148,
               "B100": 1750, "B200": 2250, "GB200": 2500}


def peak_tflops(spec: Spec) -> tuple[float | None, str]:
    stated = spec.get("budget.peak_tflops")
    if stated:
        return float(stated), "budget.peak_tflops"
    for model in spec.get("hardware.gpu_models") or []:
        for name, tflops in PEAK_TFLOPS.items():
            if re.fullmatch(name, model, re.I):
                return float(tflops), f"{name} datasheet (first of hardware.gpu_models)"
    return None, "unknown GPU model"


def estimate_gpu_hours(spec: Spec, peak: float) -> tuple[float, dict[str, Any]]:
    """GPU hours = steps x FLOPs per step / (peak x MFU).

    FLOPs per token are counted per pass over the model's active parameters N: 2N to generate it,
    2N to recompute old-policy log-probs, 6N to train on it (forward + backward), and 2N more for a
    reference model when kl_beta > 0.
    """
    n = float(spec.get("model.active_params_b") or spec.get("model.params_b")) * 1e9
    frac = float(spec.get("budget.mean_response_fraction"))
    tokens = (float(spec.get("training.max_prompt_tokens")) + float(spec.get("training.max_response_tokens"))) * frac
    per_token = 10 + (2 if float(spec.get("algorithm.kl_beta")) > 0 else 0)
    flops_per_step = per_token * n * tokens * int(spec.get("training.batch_size"))
    mfu = float(spec.get("budget.assumed_mfu"))
    steps = int(spec.get("training.max_steps"))
    hours = steps * flops_per_step / (peak * 1e12 * mfu) / 3600
    return hours, {
        "flops_per_token": f"{per_token}N (generate 2N, old log-probs 2N, train 6N{', reference 2N' if per_token > 10 else ''})",
        "tokens_per_completion": f"{tokens:,.0f} (prompt + response budgets x {frac:g})",
        "flops_per_step": f"{flops_per_step:.3g}",
        "assumed_mfu": mfu,
        "gpu_hours_per_step": round(hours / steps, 4),
        "steps": steps,
    }


def measured_tflops(ctx: Context) -> tuple[float | None, str]:
    """The slowest GPU's measured bf16 matmul TFLOP/s when this run is at --level active (the
    measurement the hw.gpu.matmul check makes, shared), else None with the reason."""
    if ctx.level != "active":
        return None, "not measured (run --level active to use this node's measured throughput)"
    snapshot = ctx.peek("cluster.snapshot")
    if snapshot is not None:  # cluster mode: every node measured its own GPUs; take the slowest
        return _slowest_in_cluster(snapshot)
    try:
        slowest = gpu_measurement(ctx).slowest("matmul_tflops")
    except GpuProbeUnavailable as exc:
        return None, f"not measured: {exc}"
    if slowest is None:
        return None, "not measured: no GPU finished within active.gpu_budget_s"
    return float(slowest.matmul_tflops), f"measured bf16 matmul, slowest GPU ({slowest.name})"


def _slowest_in_cluster(snapshot: Any) -> tuple[float | None, str]:
    """The lowest per-GPU figure in the nodes' hw.gpu.matmul results (cluster mode)."""
    found = [(float(tflops), node.label, gpu)
             for node in snapshot.answered for r in node.results if r["id"] == "hw.gpu.matmul"
             for gpu, tflops in (r.get("evidence", {}).get("tflops") or {}).items()]
    if not found:
        return None, "not measured: no node reported hw.gpu.matmul figures"
    tflops, label, gpu = min(found)
    return tflops, f"measured bf16 matmul, slowest GPU in the cluster ({gpu} on {label})"


# Generous: at --level active this check waits for the shared GPU measurement (hw.gpu.matmul).
@check("budget.gpu_hours", "Compute budget fits the stage", "static", timeout_s=700, rules=(
    Rule("budget.gpu_hours_max", ("run.stage", *ESTIMATE), "fail",
         "the GPU-hour estimate stays under the ceiling (the stage's band by default)"),
    Rule("budget.gpu_hours_min", ("run.stage", *ESTIMATE), "warn",
         "the GPU-hour estimate reaches the floor (the stage's band by default)"),
))
def gpu_hours(ctx: Context) -> Outcome:
    """Estimates the run's GPU hours from the model size, tokens per step (batch x prompt and
    response budgets x budget.mean_response_fraction), max_steps and an assumed MFU (budget.
    assumed_mfu, default 0.25) at the GPU's peak, against the stage's band (small 1K-5K, medium
    10K-20K, large 50K+ GPU hours) or budget.gpu_hours_min/max. Above the ceiling fails; below the
    floor warns. The estimate's assumptions are in `found` and the evidence.

    At --level active with GPUs the slowest GPU's measured bf16 matmul TFLOP/s (hw.gpu.matmul)
    replaces the datasheet peak, so the estimate reflects the GPUs actually there."""
    s = ctx.spec
    if not gpus_required(ctx):
        return skipped("the run uses no GPUs: there is no GPU-hour budget to check")
    peak, source = peak_tflops(s)
    measured, how = measured_tflops(ctx)
    if measured is not None:
        peak, source = measured, how
    if peak is None:
        return skipped("peak TFLOP/s unknown for hardware.gpu_models; set budget.peak_tflops to estimate")
    hours, evidence = estimate_gpu_hours(s, peak)
    evidence["peak_tflops"] = f"{peak:g} ({source})"
    if measured is None:
        evidence["measured_tflops"] = how
    lo, hi = s.get("budget.gpu_hours_min"), s.get("budget.gpu_hours_max")
    stage = s.get("run.stage")
    band = ((f"{stage} stage: " if stage and stage != "custom" else "") + (f"{lo:,.0f}" if lo else "0") + "-"
            + (f"{hi:,.0f}" if hi else "") + " GPU hours")
    found = (f"~{hours:,.0f} GPU hours for {evidence['steps']:,} planned steps ({evidence['gpu_hours_per_step']} "
             f"per step at {evidence['assumed_mfu']:g} MFU of {peak:,.0f} TFLOP/s, "
             f"{'measured' if measured is not None else 'datasheet'})")
    if hi and hours > hi:
        return failed(found, band, f"lower training.max_steps to about {int(hi / evidence['gpu_hours_per_step']):,}, "
                      "shrink the batch or response budget, or raise budget.gpu_hours_max with approval", **evidence)
    if lo and hours < lo:
        return warned(found, band, "smaller than the stage plans: fine for a trial, but then consider run.stage: custom",
                      **evidence)
    return passed(found, band, **evidence)


def _datasheet_peak(spec: Spec) -> tuple[float | None, str]:
    """The highest datasheet peak among hardware.gpu_models (None: none of them is known)."""
    known = [(PEAK_TFLOPS[name], model) for model in spec.get("hardware.gpu_models") or []
             for name in PEAK_TFLOPS if re.fullmatch(name, model, re.I)]
    if not known:
        return None, "no datasheet for hardware.gpu_models"
    peak, model = max(known)
    return float(peak), f"{model} datasheet, {peak:g} TFLOP/s"


@check("budget.assumptions", "Budget assumptions are plausible", "static", rules=(
    Rule("budget.gpu_hours_min", ("budget.gpu_hours_max",), "fail", "the floor is at most the ceiling"),
    Rule("budget.assumed_mfu", (), "warn outside 0.05-0.5; fail above 0.6",
         "an MFU RL with generation reaches (typically 0.1-0.4)"),
    Rule("budget.peak_tflops", ("hardware.gpu_models",), "warn above the datasheet; fail above 2x it",
         "at most the datasheet peak of the allowed GPUs"),
))
def assumptions(ctx: Context) -> Outcome:
    """What the GPU-hour estimate assumes, against what is possible: budget.gpu_hours_min at most
    gpu_hours_max (else no estimate passes); budget.assumed_mfu inside 0.05-0.5 (RL with generation
    reaches 0.1-0.4; above 0.6 no trainer does, and the estimate would pass a budget the run
    overruns: fails); budget.peak_tflops at most the datasheet peak (dense bf16) of the best GPU in
    hardware.gpu_models (above it warns, above twice it fails)."""
    s = ctx.spec
    f = Findings()
    lo, hi = s.get("budget.gpu_hours_min"), s.get("budget.gpu_hours_max")
    if lo is not None and hi is not None and float(lo) > float(hi):
        f.fail(f"gpu_hours_min {float(lo):,.0f} > gpu_hours_max {float(hi):,.0f}",
               "set budget.gpu_hours_min below gpu_hours_max")
    mfu = float(s.get("budget.assumed_mfu"))
    if mfu > MFU_IMPOSSIBLE:
        f.fail(f"assumed_mfu {mfu:g} > {MFU_IMPOSSIBLE:g}: no RL trainer with generation reaches it, so the "
               "estimate is too low", "set budget.assumed_mfu in 0.1-0.4")
    elif not MFU_RANGE.contains(mfu):
        f.warn(f"assumed_mfu {mfu:g} outside {MFU_RANGE.describe()}",
               "set budget.assumed_mfu in 0.1-0.4 (RL with generation)")
    stated, (sheet, how) = s.get("budget.peak_tflops"), _datasheet_peak(s)
    if stated and sheet and float(stated) > PEAK_OVER_DATASHEET_FAIL * sheet:
        f.fail(f"peak_tflops {float(stated):g} is more than {PEAK_OVER_DATASHEET_FAIL:g}x the best datasheet "
               f"({how})", "remove budget.peak_tflops, or give the dense bf16 figure")
    elif stated and sheet and float(stated) > sheet:
        f.warn(f"peak_tflops {float(stated):g} above the best datasheet ({how})",
               "use the dense bf16 datasheet figure (without sparsity)")
    band = f"{float(lo or 0):,.0f}-" + (f"{float(hi):,.0f}" if hi else "")
    found = f"MFU {mfu:g}, peak {stated or sheet or 'unknown'} TFLOP/s, band {band} GPU hours"
    return f.outcome(found, f"floor <= ceiling, MFU in {MFU_RANGE.describe()}, a peak at most the datasheet's")
