"""Arithmetic between sizes that must divide or add up: the split policy's ratios (data.split: they
add up, the holdout meets its floor, the tolerance tells an empty split from a small one; the files
themselves are measured by data.splits), and a GPU's share of the batch against its micro-batches
and generation chunks (config.batch.micro)."""

from __future__ import annotations

import math

from ..memory import share_divisors
from ..registry import Context, Rule, check
from ..result import Outcome
from ._framework import launched_by_framework
from ._relations import Findings
from .config import WORLD

RATIOS = ("data.split.train_ratio", "data.split.val_ratio", "data.split.test_ratio")


@check("config.split", "Split ratios add up", "static", rules=(
    Rule("data.split.train_ratio", ("data.split.val_ratio", "data.split.test_ratio"), "fail",
         "train_ratio + val_ratio + test_ratio = 1"),
    Rule("data.split.min_holdout", ("data.split.val_ratio", "data.split.test_ratio"), "fail",
         "val_ratio + test_ratio hold out at least min_holdout"),
    Rule("data.split.tolerance", ("data.split.val_ratio", "data.split.test_ratio"), "warn",
         "under every ratio above 0, or an empty split passes as within tolerance"),
))
def split_ratios(ctx: Context) -> Outcome:
    """data.split's ratios must add up to 1 (else no split of the rows can meet them, and
    data.splits fails every dataset); val_ratio + test_ratio must reach min_holdout (default 0.1),
    the policy's own floor; and tolerance must stay under every ratio above 0, or a split with no
    rows at all would count as within tolerance (warns)."""
    s = ctx.spec
    train, val, test = (float(s.get(k)) for k in RATIOS)
    total, holdout = train + val + test, val + test
    floor, tolerance = float(s.get("data.split.min_holdout")), float(s.get("data.split.tolerance"))
    f = Findings()
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        f.fail(f"train {train:g} + val {val:g} + test {test:g} = {total:g}, not 1",
               "make data.split.train_ratio + val_ratio + test_ratio add up to 1")
    if holdout < floor - 1e-9:
        f.fail(f"val + test = {holdout:g} holds out less than min_holdout {floor:g}",
               f"raise val_ratio/test_ratio to hold out at least {floor:g}, or lower data.split.min_holdout")
    small = [f"{k.rsplit('.', 1)[1]} {v:g}" for k, v in zip(RATIOS, (train, val, test), strict=True) if 0 < v <= tolerance]
    if small:
        f.warn(f"tolerance {tolerance:g} is not under {', '.join(small)}: an empty split would pass",
               "lower data.split.tolerance below the smallest ratio above 0")
    return f.outcome(f"train {train:g} / val {val:g} / test {test:g} (holdout {holdout:g}, tolerance {tolerance:g})",
                     f"ratios adding up to 1, holdout >= {floor:g}, tolerance under each ratio")


def _share_part(f: Findings, field: str, size: int, share: int, batch: int, world: int, step: int) -> None:
    """``size`` (training.<field>) against a rank's ``share``: it must divide it; above it, it
    changes nothing. ``step``: what a suggested size must be a multiple of."""
    if size > share:
        f.warn(f"{field} {size} > each rank's share of {share} completions (batch_size {batch} / {world} ranks): "
               "the rank takes its whole share in one pass, so it has no effect",
               f"set training.{field} to a divisor of {share}, or null")
    elif share % size:
        fits = share_divisors(share, step)
        lower = max((d for d in fits if d < size), default=step)
        upper = min((d for d in fits if d > size), default=share)
        f.fail(f"{field} {size} does not divide each rank's share of {share} completions (batch_size {batch} / "
               f"{world} ranks; {share} % {size} = {share % size}): the runner refuses to start",
               f"set training.{field} to {lower} or {upper} (divisors of {share}), or change training.batch_size")


@check("config.batch.micro", "Micro-batches and generation chunks divide each rank's share", "static", rules=(
    Rule("training.micro_batch_size", ("training.batch_size", *WORLD), "fail; warn above the share",
         "divides each rank's share of the batch (batch_size / world size); a larger one has no effect"),
    Rule("training.generation_batch_size", ("training.group_size", "training.batch_size", *WORLD),
         "fail; warn above the share",
         "a multiple of group_size (whole groups are generated together) that divides each rank's share"),
))
def micro_batches(ctx: Context) -> Outcome:
    """Each rank trains its share of the batch (training.batch_size / world size completions) in
    micro-batches of training.micro_batch_size and generates it training.generation_batch_size
    completions at a time. Both must divide the share (the runner refuses to start otherwise, as
    verl asserts for ppo_micro_batch_size_per_gpu), and a generation chunk must hold whole groups of
    training.group_size (a group's completions are sampled together): fails. One larger than the
    share changes nothing, the share goes in one pass: warns. null (the default) is the whole share
    at once, which hw.memory.gpu then has to fit."""
    framework = launched_by_framework(ctx, "this batch plan")
    if framework is not None:
        return framework
    s = ctx.spec
    batch, group, world = int(s.get("training.batch_size")), int(s.get("training.group_size")), s.world_size
    micro, chunk = s.get("training.micro_batch_size"), s.get("training.generation_batch_size")
    share = batch // world
    f = Findings()
    if micro is not None:
        _share_part(f, "micro_batch_size", int(micro), share, batch, world, 1)
    if chunk is not None:
        if int(chunk) % group:
            multiple = max(int(chunk) // group, 1) * group
            f.fail(f"generation_batch_size {chunk} is not a multiple of group_size {group}: a chunk must hold "
                   "whole groups, and the runner refuses to start",
                   f"set training.generation_batch_size to a multiple of {group}, such as {multiple}")
        else:
            _share_part(f, "generation_batch_size", int(chunk), share, batch, world, group)
    found = (f"each rank's share {share} completions; micro_batch_size {micro}, "
             f"generation_batch_size {chunk} (null: the whole share at once)")
    return f.outcome(found, "micro_batch_size and generation_batch_size dividing the share; generation chunks "
                     "of whole groups")
