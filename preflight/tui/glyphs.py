"""Characters and colours for statuses and sparklines, in Unicode and in plain ASCII (--ascii).

Kept apart from the widgets so a plain terminal (a serial console, an old SSH client) gets a
readable screen by swapping one table, and tests can compare text without terminal escapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

STATUS_STYLE = {
    "pass": "green", "warn": "yellow", "fail": "bold red", "error": "bold red", "skip": "dim",
    "waived": "magenta", "queued": "dim", "running": "cyan", "pending": "dim",
}


@dataclass(frozen=True)
class Glyphs:
    marks: dict[str, str]  # status -> a short mark shown before a label
    spark: str  # sparkline levels, lowest first
    arrow: str
    ellipsis: str

    def mark(self, status: str) -> str:
        return self.marks.get(status, "?")


UNICODE = Glyphs(
    marks={"pass": "✔", "warn": "▲", "fail": "✘", "error": "✘", "skip": "·", "waived": "≈",
           "queued": "·", "running": "⟳", "pending": "○"},
    spark="▁▂▃▄▅▆▇█", arrow="→", ellipsis="…",
)
ASCII = Glyphs(
    marks={"pass": "+", "warn": "!", "fail": "X", "error": "X", "skip": "-", "waived": "~",
           "queued": ".", "running": "*", "pending": "o"},
    spark="_.-=+*#@", arrow="->", ellipsis="...",
)


def glyphs_for(ascii_only: bool) -> Glyphs:
    return ASCII if ascii_only else UNICODE


def sparkline(values: Sequence[float], width: int, glyphs: Glyphs) -> str:
    """The last ``width`` values as one line of level characters, scaled to their own min..max.

    With more values than columns, each column shows the mean of its bucket, so a long run still
    fits and a single spike stays visible as a raised column rather than vanishing.
    """
    if width <= 0 or not values:
        return ""
    vals = list(values)
    if len(vals) > width:
        size = len(vals) / width
        vals = [_mean(vals[int(i * size):max(int((i + 1) * size), int(i * size) + 1)]) for i in range(width)]
    low, high = min(vals), max(vals)
    levels = glyphs.spark
    if high - low < 1e-12:
        return levels[len(levels) // 2] * len(vals)
    scale = (len(levels) - 1) / (high - low)
    return "".join(levels[int(round((v - low) * scale))] for v in vals)


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)
