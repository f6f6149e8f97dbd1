"""The split policy's arithmetic (data.split): ratios that add up, a holdout that meets its floor
and a tolerance that can tell an empty split from a small one. The files themselves are measured
against it by the data checks (data.splits)."""

from __future__ import annotations

import math

from ..registry import Context, Rule, check
from ..result import Outcome
from ._relations import Findings

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
