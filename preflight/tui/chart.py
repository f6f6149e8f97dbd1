"""A small terminal plot for the console: the fitted ScaleRL curve against the observed validation
pass rates, in braille dots (2 x 4 dots a cell) or, under --ascii, one character a cell.

Pure functions of numbers to rich Text lines (no Textual), so they are tested as text. The x axis is
device hours on a log scale (the fit's own axis), the y axis the pass rate; observed points are
drawn over the curve in their own colour (``*`` in ASCII), the prediction at the budget in a third
(``x``), and the left gutter holds the y range.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from rich.text import Text

BRAILLE_BASE = 0x2800
# Dot bits of a braille cell, by (column 0..1, row 0..3 from the top).
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
GUTTER = 6
STYLES = {"curve": "red", "point": "bold cyan", "budget": "bold green"}


def fit_chart(points: Sequence[tuple[float, float]], predict: Callable[[float], float] | None,
              width: int, height: int, *, ascii_only: bool = False,
              budget: tuple[float, float] | None = None) -> list[Text]:
    """``height`` lines of ``width`` cells: the curve ``predict`` over the points' hours (and up to
    the budget), the points, and the budget's prediction. Empty when there is no room or no point."""
    pts = [(h, r) for h, r in points if h > 0 and math.isfinite(h) and math.isfinite(r)]
    plot_w = width - GUTTER
    if not pts or plot_w < 8 or height < 2:
        return []
    xs = [h for h, _ in pts] + ([budget[0]] if budget else [])
    x_lo, x_hi = math.log10(min(xs)), math.log10(max(xs))
    if x_hi - x_lo < 1e-9:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    sub_x, sub_y = (1, 1) if ascii_only else (2, 4)
    cols, rows = plot_w * sub_x, height * sub_y
    curve = []
    if predict is not None:
        for i in range(cols):
            hours = 10 ** (x_lo + (x_hi - x_lo) * i / max(cols - 1, 1))
            curve.append((hours, predict(hours)))
    ys = [r for _, r in pts] + [r for _, r in curve] + ([budget[1]] if budget else [])
    y_lo, y_hi = min(ys), max(ys)
    if y_hi - y_lo < 1e-9:
        y_lo, y_hi = y_lo - 0.05, y_hi + 0.05

    def cell(h: float, r: float) -> tuple[int, int]:
        cx = round((math.log10(h) - x_lo) / (x_hi - x_lo) * (cols - 1))
        cy = round((y_hi - r) / (y_hi - y_lo) * (rows - 1))
        return min(max(cx, 0), cols - 1), min(max(cy, 0), rows - 1)

    layers: dict[str, set[tuple[int, int]]] = {"curve": set(), "point": set(), "budget": set()}
    layers["curve"].update(cell(h, r) for h, r in curve)
    layers["point"].update(cell(h, r) for h, r in pts)
    if budget:
        layers["budget"].add(cell(*budget))
    draw = _ascii_cells if ascii_only else _braille_cells
    grid = draw(layers, plot_w, height)
    lines = []
    for row in range(height):
        label = f"{y_hi:.2f}" if row == 0 else f"{y_lo:.2f}" if row == height - 1 else ""
        line = Text(f"{label:>{GUTTER - 1}} ", style="dim")
        for char, style in grid[row]:
            line.append(char, style=style)
        lines.append(line)
    return lines


def _ascii_cells(layers: dict[str, set[tuple[int, int]]], width: int,
                 height: int) -> list[list[tuple[str, str]]]:
    grid = [[(" ", "")] * width for _ in range(height)]
    for name, char in (("curve", "."), ("point", "*"), ("budget", "x")):
        for x, y in layers[name]:
            grid[y][x] = (char, STYLES[name])
    return grid


def _braille_cells(layers: dict[str, set[tuple[int, int]]], width: int,
                   height: int) -> list[list[tuple[str, str]]]:
    bits = [[0] * width for _ in range(height)]
    style = [[""] * width for _ in range(height)]
    for name in ("curve", "point", "budget"):  # later layers win the cell's colour
        for x, y in layers[name]:
            cx, cy = x // 2, y // 4
            bits[cy][cx] |= _DOTS[x % 2][y % 4]
            style[cy][cx] = STYLES[name]
    return [[(chr(BRAILLE_BASE + bits[r][c]) if bits[r][c] else " ", style[r][c]) for c in range(width)]
            for r in range(height)]
