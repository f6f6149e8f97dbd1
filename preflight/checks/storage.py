"""The checkpoint directory: writable, and room for the checkpoints the run keeps; and room in
Ray's temp/spill directory."""

from __future__ import annotations

from ..memory import CHECKPOINT_BYTES_PER_PARAM
from ..memory import checkpoint_bytes as checkpoint_size
from ..probes import existing_parent, ray_temp_dir
from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed, skipped, warned
from ..spec import Spec
from ._util import GB, gb, writable_dir
from .model import Loaded, load, model_facts, shape_of

# A sharded FSDP checkpoint holds fp32 master weights (4 B) and Adam's two moments (8 B) per
# parameter; bf16 compute copies are not saved. The one figure lives in preflight.memory.
BYTES_PER_PARAM = CHECKPOINT_BYTES_PER_PARAM
RAY_FULL = 0.95  # Ray refuses to create objects that need spilling above this fraction used


def checkpoint_bytes(spec: Spec, loaded: Loaded | None = None) -> tuple[float, str]:
    """Size of one checkpoint, and how it was arrived at: storage.checkpoint_size_gb when stated,
    else preflight.memory.checkpoint_bytes of the model's parameters (counted from its config.json
    when the folder is local, else model.params_b). The memory checks use the same count."""
    stated = spec.get("storage.checkpoint_size_gb")
    if stated:
        return float(stated) * GB, f"{stated:g} GB as stated in storage.checkpoint_size_gb"
    shape = shape_of(loaded if loaded is not None else load(spec), spec)
    where = shape.source if shape.counted else "model.params_b"
    return checkpoint_size(shape.count.total), (f"{shape.count.total / 1e9:.3g}B params ({where}) x "
                                                f"{BYTES_PER_PARAM} B (fp32 weights + Adam moments)")


def checkpoints_on_disk(spec: Spec) -> tuple[int, str]:
    """How many checkpoints can be on disk at once: those kept, plus one being written."""
    if spec.get("checkpoints.save_best_only"):
        return 3, "best + latest kept, + 1 being written"
    keep = int(spec.get("checkpoints.keep_last"))
    return keep + 1, f"{keep} kept (keep_last), + 1 being written"


def space_needed(spec: Spec, loaded: Loaded | None = None) -> tuple[float, dict[str, str]]:
    one, how = checkpoint_bytes(spec, loaded)
    count, why = checkpoints_on_disk(spec)
    floor = float(spec.get("storage.min_free_gb")) * GB
    need = max(floor, one * count)
    return need, {
        "checkpoint_size": f"{gb(one)} ({how})",
        "checkpoints_on_disk": f"{count} ({why})",
        "estimate": gb(one * count),
        "storage.min_free_gb": gb(floor),
    }


@check("storage.checkpoint_dir", "Checkpoint directory is writable", "node", rules=(
    Rule("storage.checkpoint_dir", ("machine: write access at storage.checkpoint_dir",), "fail",
         "the checkpoint directory takes a file, or can be created"),
))
def checkpoint_dir(ctx: Context) -> Outcome:
    """storage.checkpoint_dir exists and takes a file (written, fsynced, removed), or can be
    created. Nothing is left behind."""
    return writable_dir(ctx, ctx.spec.checkpoint_dir,
                        "point storage.checkpoint_dir at a writable volume, or fix its permissions")


@check("storage.free_space", "Free space for checkpoints", "node", rules=(
    Rule("checkpoints.keep_last", ("storage.min_free_gb", "storage.checkpoint_size_gb", "checkpoints.save_best_only",
                                   "model.params_b", "model: config.json (parameter count)",
                                   "machine: free disk at storage.checkpoint_dir"),
         "fail; warn under 10 % headroom",
         "free disk holds (checkpoints kept + 1 being written) x one checkpoint (model + optimizer), and at "
         "least storage.min_free_gb"),
))
def free_space(ctx: Context) -> Outcome:
    """Free space at the checkpoint dir against the larger of storage.min_free_gb (default 1000 GB,
    "1 TB per model") and the estimated checkpoints: one checkpoint (storage.checkpoint_size_gb, or
    the parameters x 12 bytes: fp32 weights and Adam's two moments, with the parameters counted from
    config.json when the model folder is local, else model.params_b) times the checkpoints kept
    plus one being written.

    Within 10 % of the need warns: logs and rollouts also grow during a long run.
    """
    path = ctx.spec.checkpoint_dir
    need, breakdown = space_needed(ctx.spec, model_facts(ctx))
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


@check("host.ray_tmp", "Room in Ray's temp/spill directory", "node", rules=(
    Rule("distributed.ray_address", ("machine: free space in Ray's temp dir ($RAY_TMPDIR or /tmp/ray)",),
         "fail at 95 % full", "the volume of Ray's temp and spill directory is below Ray's 95 % full threshold"),
))
def ray_tmp(ctx: Context) -> Outcome:
    """The volume holding Ray's session files and spilled objects: with distributed.ray_address,
    $RAY_TMPDIR (else $TMPDIR, else /tmp) + /ray; without, the system temp dir, where the runner
    starts its local Ray. At 95 % used Ray refuses to create objects that must spill ("is over 95%
    full"), so that fails; the result says how much room is left below that line."""
    path, why = ray_temp_dir(ctx.probes.env, str(ctx.spec.get("distributed.ray_address") or ""))
    usage = ctx.probes.system.disk_usage(path)
    if usage.total_bytes <= 0:
        return skipped(f"the file system at {existing_parent(path)} reports no size")
    used = 1 - usage.free_bytes / usage.total_bytes
    room = usage.free_bytes - (1 - RAY_FULL) * usage.total_bytes
    found = f"{used:.0%} used, {gb(usage.free_bytes)} free at {path} ({why})"
    expected = f"< {RAY_FULL:.0%} used (Ray's spill threshold)"
    evidence = {"path": str(path), "free": gb(usage.free_bytes), "total": gb(usage.total_bytes),
                "room_below_threshold": gb(max(room, 0))}
    if used >= RAY_FULL:
        return failed(found, expected, "free space there, or point Ray at a larger volume (RAY_TMPDIR, or "
                      "`ray start --temp-dir`; TMPDIR for the runner's local Ray)", **evidence)
    return passed(f"{found}; {gb(room)} left below Ray's threshold", expected, **evidence)
