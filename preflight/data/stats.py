"""Stratification statistics: each split's mix of a field against the whole dataset.

With a million rows a chi-square test rejects any difference, however small, so the verdict rests
on effect sizes (the largest share deviation and Cramér's V); the chi-square statistic and its
p-value are reported alongside for those who want them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass
class Stratification:
    levels: list[str]
    counts: dict[str, dict[str, int]]  # split -> level -> rows
    shares: dict[str, dict[str, float]]  # split -> level -> share of the split ("all" = whole)
    worst: tuple[str, str, float]  # (split, level, absolute deviation of its share from the whole's)
    chi2: float
    dof: int
    p_value: float
    cramers_v: float


def stratification(counts: Mapping[str, Mapping[str, int]]) -> Stratification:
    """Compare each split's level shares with the whole; counts: split -> level -> rows."""
    levels = sorted({lvl for per in counts.values() for lvl in per})
    splits = [s for s in counts if sum(counts[s].values()) > 0]
    table = {s: {lvl: int(counts[s].get(lvl, 0)) for lvl in levels} for s in splits}
    total = sum(sum(row.values()) for row in table.values())
    whole = {lvl: sum(table[s][lvl] for s in splits) for lvl in levels}
    shares: dict[str, dict[str, float]] = {"all": {lvl: whole[lvl] / total if total else 0.0 for lvl in levels}}
    worst = ("", "", 0.0)
    for s in splits:
        n = sum(table[s].values())
        shares[s] = {lvl: table[s][lvl] / n for lvl in levels}
        for lvl in levels:
            dev = abs(shares[s][lvl] - shares["all"][lvl])
            if dev > worst[2]:
                worst = (s, lvl, dev)
    chi2 = 0.0
    for s in splits:
        n = sum(table[s].values())
        for lvl in levels:
            expected = n * whole[lvl] / total if total else 0.0
            if expected > 0:
                chi2 += (table[s][lvl] - expected) ** 2 / expected
    dof = max((len(splits) - 1) * (len(levels) - 1), 0)
    k = min(len(splits), len(levels)) - 1
    v = math.sqrt(chi2 / (total * k)) if total and k > 0 else 0.0
    return Stratification(levels, table, shares, worst, chi2, dof, chi2_sf(chi2, dof), v)


def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for a chi-square distribution: the regularised upper incomplete gamma Q(dof/2, x/2)."""
    if dof <= 0:
        return 1.0
    if x <= 0:
        return 1.0
    return _gamma_q(dof / 2.0, x / 2.0)


def _gamma_q(a: float, x: float) -> float:
    # Numerical Recipes: the series for x < a + 1, Lentz's continued fraction otherwise.
    gln = math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        for _ in range(10_000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - gln))
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - gln) * h)
