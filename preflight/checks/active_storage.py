"""Measured checkpoint-storage throughput (`--level active`).

The need comes from storage.min_write_mb_s when stated, else from the checkpoint size and the save
interval: writing one checkpoint should take at most active.checkpoint_write_fraction of the time
between saves (the run stalls, or an async writer falls behind, while it writes).
"""

from __future__ import annotations

from typing import Any

from ..probes import existing_parent
from ..probes_active.storage import MB, measure_storage
from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed
from ..spec import Spec
from ._util import gb
from .budget import estimate_gpu_hours, peak_tflops
from .storage import checkpoint_bytes

MAX_BUDGET_S = 600  # the schema's ceiling for active.storage_budget_s; the engine's backstop is above it


def save_interval_seconds(spec: Spec) -> tuple[float | None, str]:
    """Wall seconds between two checkpoints, from the compute estimate of one step's time."""
    if not spec.uses_gpus:
        return None, "no GPU step-time estimate for a run without GPUs"
    peak, _ = peak_tflops(spec)
    if peak is None:
        return None, "no step-time estimate: peak TFLOP/s unknown (set budget.peak_tflops)"
    hours, evidence = estimate_gpu_hours(spec, peak)
    gpus = int(spec.get("hardware.nodes")) * int(spec.get("hardware.gpus_per_node"))
    step_s = float(evidence["gpu_hours_per_step"]) * 3600 / gpus
    interval = int(spec.get("checkpoints.save_interval"))
    return step_s * interval, f"{interval} steps x ~{step_s:,.0f} s per step (budget estimate)"


def write_need(spec: Spec) -> tuple[float | None, dict[str, Any]]:
    """The write throughput the run needs, MB/s, and how it was arrived at (None: nothing to compare)."""
    stated = spec.get("storage.min_write_mb_s")
    if stated:
        return float(stated), {"need": f"{stated:g} MB/s (storage.min_write_mb_s)"}
    size, how = checkpoint_bytes(spec)
    interval_s, why = save_interval_seconds(spec)
    if interval_s is None:
        return None, {"need": f"not stated (storage.min_write_mb_s) and not derivable: {why}"}
    fraction = float(spec.get("active.checkpoint_write_fraction"))
    need = size / 1e6 / (fraction * interval_s)
    return need, {"need": f"{need:,.0f} MB/s: one checkpoint of {gb(size)} ({how}) in {fraction:.0%} of the "
                  f"save interval ({interval_s / 60:,.1f} min = {why})"}


@check("storage.throughput", "Checkpoint storage write/read throughput", "active", timeout_s=MAX_BUDGET_S + 60,
       rules=(Rule("storage.min_write_mb_s", ("machine: measured sequential write at storage.checkpoint_dir",),
                   "fail", "the checkpoint volume writes at least storage.min_write_mb_s"),
              Rule("active.checkpoint_write_fraction",
                   ("checkpoints.save_interval", "machine: measured sequential write at storage.checkpoint_dir"),
                   "fail", "without storage.min_write_mb_s: one checkpoint is written within this share "
                   "of a save interval's wall time")))
def throughput(ctx: Context) -> Outcome:
    """Writes a file of active.storage_file_mb (default 1024 MB) at the checkpoint directory in
    4 MiB blocks with O_DIRECT where supported and fsync, reads it back, and removes it (also on
    timeout or Ctrl-C). Stops at active.storage_budget_s (default 60 s) with what it measured.

    The write throughput is compared with storage.min_write_mb_s, or when that is not stated with
    one checkpoint's size divided by active.checkpoint_write_fraction (default 5 %) of the save
    interval's estimated wall time. Below the need fails: a checkpoint would stall the run."""
    spec = ctx.spec
    where = existing_parent(spec.checkpoint_dir)
    size = int(float(spec.get("active.storage_file_mb")) * MB)
    budget = min(float(spec.get("active.storage_budget_s")), MAX_BUDGET_S)
    need, how = write_need(spec)
    expected = f">= {need:,.0f} MB/s sequential write" if need else "a measurement (no stated need)"
    try:
        m = measure_storage(where, size, budget)
    except OSError as exc:
        return failed(f"cannot write a probe file in {where}: {exc.strerror or exc}", expected,
                      "point storage.checkpoint_dir at a writable volume")
    evidence = {**m.to_dict(), **how}
    part = (f" (stopped at the {budget:g} s budget after {gb(m.written_bytes)}; raise active.storage_budget_s "
            "or lower active.storage_file_mb)" if m.truncated else "")
    place = str(where) if where == spec.checkpoint_dir.absolute() else f"{where} (nearest existing parent of {spec.checkpoint_dir})"
    found = (f"write {m.write_mb_s:,.0f} MB/s, read {m.read_mb_s:,.0f} MB/s at {place} "
             f"({gb(m.written_bytes)}, {m.method}){part}")
    if need is not None and m.write_mb_s < need:
        size_b, _ = checkpoint_bytes(spec)
        return failed(found, expected, _slow_write_fix(spec, size_b / 1e6 / max(m.write_mb_s, 1e-9) / 60),
                      **evidence)
    return passed(found, expected, **evidence)


def _slow_write_fix(spec: Spec, minutes: float) -> str:
    fix = (f"one checkpoint would take ~{minutes:,.1f} min to write: use faster storage (local NVMe, a "
           "parallel file system) or save less often (checkpoints.save_interval)")
    if spec.framework is None and spec.get("checkpoints.async"):
        # the built-in runner's background save: the loop waits for the host copy only, as long as
        # each write ends before the next save asks for its turn
        return (f"{fix}; the runner already writes checkpoints in the background (checkpoints.async), "
                "so a write that ends within the save interval does not hold the loop: if the disk is "
                "not shared with other traffic, raise active.checkpoint_write_fraction (up to 1)")
    return f"{fix}, or write checkpoints asynchronously and raise active.checkpoint_write_fraction"

