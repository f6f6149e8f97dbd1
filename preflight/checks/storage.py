"""The checkpoint directory: writable, and room for the checkpoints the run keeps."""

from __future__ import annotations

from ..registry import Context, check
from ..result import Outcome, failed, passed, warned
from ..spec import Spec
from ._util import GB, gb, writable_dir

# A sharded FSDP checkpoint holds fp32 master weights (4 B) and Adam's two moments (8 B) per
# parameter; bf16 compute copies are not saved.
BYTES_PER_PARAM = 12


def checkpoint_bytes(spec: Spec) -> tuple[float, str]:
    """Size of one checkpoint, and how it was arrived at."""
    stated = spec.get("storage.checkpoint_size_gb")
    if stated:
        return float(stated) * GB, f"{stated:g} GB as stated in storage.checkpoint_size_gb"
    params_b = float(spec.get("model.params_b"))
    size = params_b * 1e9 * BYTES_PER_PARAM
    return size, f"{params_b:g}B params x {BYTES_PER_PARAM} B (fp32 weights + Adam moments)"


def checkpoints_on_disk(spec: Spec) -> tuple[int, str]:
    """How many checkpoints can be on disk at once: those kept, plus one being written."""
    if spec.get("checkpoints.save_best_only"):
        return 3, "best + latest kept, + 1 being written"
    keep = int(spec.get("checkpoints.keep_last"))
    return keep + 1, f"{keep} kept (keep_last), + 1 being written"


def space_needed(spec: Spec) -> tuple[float, dict[str, str]]:
    one, how = checkpoint_bytes(spec)
    count, why = checkpoints_on_disk(spec)
    floor = float(spec.get("storage.min_free_gb")) * GB
    need = max(floor, one * count)
    return need, {
        "checkpoint_size": f"{gb(one)} ({how})",
        "checkpoints_on_disk": f"{count} ({why})",
        "estimate": gb(one * count),
        "storage.min_free_gb": gb(floor),
    }


@check("storage.checkpoint_dir", "Checkpoint directory is writable", "node")
def checkpoint_dir(ctx: Context) -> Outcome:
    """storage.checkpoint_dir exists and takes a file (written, fsynced, removed), or can be
    created. Nothing is left behind."""
    return writable_dir(ctx, ctx.spec.checkpoint_dir,
                        "point storage.checkpoint_dir at a writable volume, or fix its permissions")


@check("storage.free_space", "Free space for checkpoints", "node")
def free_space(ctx: Context) -> Outcome:
    """Free space at the checkpoint dir against the larger of storage.min_free_gb (default 1000 GB,
    "1 TB per model") and the estimated checkpoints: one checkpoint (model params x 12 bytes, or
    storage.checkpoint_size_gb) times the checkpoints kept plus one being written.

    Within 10 % of the need warns: logs and rollouts also grow during a long run.
    """
    path = ctx.spec.checkpoint_dir
    need, breakdown = space_needed(ctx.spec)
    usage = ctx.probes.system.disk_usage(path)
    expected = f">= {gb(need)} free"
    found = f"{gb(usage.free_bytes)} free at {path}"
    if usage.free_bytes < need:
        return failed(found, expected,
                      f"free {gb(need - usage.free_bytes)} there, point storage.checkpoint_dir at a larger "
                      "volume, or keep fewer checkpoints (checkpoints.save_best_only / keep_last)", **breakdown)
    if usage.free_bytes < need * 1.1:
        return warned(found, expected, "less than 10 % headroom: logs and rollouts grow too", **breakdown)
    return passed(found, expected, **breakdown)
