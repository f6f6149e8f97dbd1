"""``preflight monitor RUN --plot FILE.html|FILE.png``: the run in four panels.

1. the validation pass rate against device hours with the ScaleRL fit, its 95 % band (the curves
   at both ends of A's interval) and the prediction at the budget with its interval (by step, and
   without a fit, when the log has no clock);
2. the loss, 3. the mean generation length, 4. the truncation rate, by step.

HTML is one self-contained file: inline SVG drawn here, no script, nothing fetched. PNG is drawn
with matplotlib (``pip install 'rl-preflight[monitor]'``), imported only for a PNG.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PreflightError
from .core import MonitorSnapshot
from .curvefit import CurveFit

COLORS = {"observed": "#1f77b4", "fit": "#d62728", "band": "#f4b6b6", "train": "#9aa5b1",
          "budget": "#2ca02c", "target": "#7f7f7f"}
FIT_POINTS = 80


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    lines: list[tuple[str, list[tuple[float, float]], str]] = field(default_factory=list)  # label, pts, color
    points: list[tuple[str, list[tuple[float, float]], str]] = field(default_factory=list)
    band: tuple[list[tuple[float, float]], list[tuple[float, float]]] | None = None
    marker: tuple[float, float, float, float] | None = None  # x, y, y_low, y_high (prediction)
    hline: tuple[float, str] | None = None  # y, label
    note: str = ""

    def empty(self) -> bool:
        return not any(pts for _, pts, _ in self.lines + self.points)


def panels(snap: MonitorSnapshot) -> list[Panel]:
    return [_pass_rate_panel(snap),
            _series_panel(snap, "loss", "Loss", "loss"),
            _series_panel(snap, "gen_len_mean", "Mean generation length", "tokens"),
            _series_panel(snap, "truncation_rate", "Truncation rate", "share of completions")]


def _finite(points: list[tuple[int, float]]) -> list[tuple[float, float]]:
    return [(float(s), float(v)) for s, v in points if v is not None and math.isfinite(v)]


def _series_panel(snap: MonitorSnapshot, name: str, title: str, ylabel: str) -> Panel:
    panel = Panel(title, "step", ylabel)
    panel.lines.append((title.lower(), _finite(snap.series.get(name, [])), COLORS["observed"]))
    if panel.empty():
        panel.note = "not logged by this run"
    return panel


def _pass_rate_panel(snap: MonitorSnapshot) -> Panel:
    fit = snap.fit
    points = [(h, r) for h, r in snap.validation_points if h > 0 and math.isfinite(r)]
    if not points:
        panel = Panel("Pass rate", "step", "pass rate")
        panel.points.append(("validation", _finite(snap.series.get("val_pass_rate", [])), COLORS["observed"]))
        panel.lines.append(("training", _finite(snap.series.get("pass_rate", [])), COLORS["train"]))
        panel.note = snap.fit_note or "no fit: no validation results with device hours"
        return panel
    panel = Panel("Validation pass rate and the ScaleRL fit", "device hours (log scale)", "pass rate")
    panel.points.append(("validation", points, COLORS["observed"]))
    if fit is None:
        panel.note = snap.fit_note
        return panel
    lo_x = min(h for h, _ in points)
    hi_x = max(max(h for h, _ in points), fit.budget_hours or 0.0)
    xs = [lo_x * (hi_x / lo_x) ** (i / (FIT_POINTS - 1)) for i in range(FIT_POINTS)] if hi_x > lo_x else [lo_x]
    panel.lines.append((f"fit: A={fit.A:.3f}, B={fit.B:.2f}", [(x, fit.predict(x)) for x in xs], COLORS["fit"]))
    low = _curve_with_a(fit, fit.A_band[0])
    high = _curve_with_a(fit, fit.A_band[1])
    panel.band = ([(x, low(x)) for x in xs], [(x, high(x)) for x in xs])
    if fit.budget_hours and fit.predicted_at_budget is not None:
        band = fit.predicted_band or (fit.predicted_at_budget, fit.predicted_at_budget)
        panel.marker = (fit.budget_hours, fit.predicted_at_budget, band[0], band[1])
    if fit.target is not None:
        panel.hline = (fit.target, f"target {fit.target:.0%}")
    panel.note = snap.fit_note
    return panel


def _curve_with_a(fit: CurveFit, a: float) -> Callable[[float], float]:
    return CurveFit(**{**fit.__dict__, "A": a}).predict


# --- HTML (inline SVG) ------------------------------------------------------------------------------

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 520, 300, 62, 16, 34, 44


def _scale(values: list[float], log: bool) -> tuple[float, float]:
    vals = [math.log10(v) for v in values if v > 0] if log else values
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    span = hi - lo
    return lo - 0.05 * span, hi + 0.05 * span


class _Frame:
    """The panel's data ranges and the mapping from data to SVG pixels."""

    def __init__(self, panel: Panel) -> None:
        self.log = "log" in panel.xlabel
        xs = [x for _, pts, _ in panel.lines + panel.points for x, _ in pts]
        ys = [y for _, pts, _ in panel.lines + panel.points for _, y in pts]
        if panel.band:
            ys += [y for pts in panel.band for _, y in pts]
        if panel.marker:
            xs.append(panel.marker[0])
            ys += [panel.marker[2], panel.marker[3]]
        if panel.hline:
            ys.append(panel.hline[0])
        self.x0, self.x1 = _scale(xs, self.log)
        self.y0, self.y1 = _scale(ys, False)

    def px(self, x: float) -> float:
        v = math.log10(x) if self.log else x
        return PAD_L + (v - self.x0) / (self.x1 - self.x0) * (W - PAD_L - PAD_R)

    def py(self, y: float) -> float:
        return H - PAD_B - (y - self.y0) / (self.y1 - self.y0) * (H - PAD_T - PAD_B)

    def points(self, pts: list[tuple[float, float]]) -> str:
        return " ".join(f"{self.px(x):.1f},{self.py(y):.1f}" for x, y in pts)


def _svg_axes(panel: Panel, f: _Frame) -> list[str]:
    out = [f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">'
           f'{html.escape(panel.title)}</text>',
           f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" stroke="black"/>',
           f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="black"/>']
    for i in range(5):
        yv = f.y0 + (f.y1 - f.y0) * i / 4
        out.append(f'<text x="{PAD_L - 6}" y="{f.py(yv) + 4:.1f}" text-anchor="end" font-size="10">{yv:.3g}</text>')
        xv = f.x0 + (f.x1 - f.x0) * i / 4
        label = 10 ** xv if f.log else xv
        out.append(f'<text x="{PAD_L + (xv - f.x0) / (f.x1 - f.x0) * (W - PAD_L - PAD_R):.1f}" '
                   f'y="{H - PAD_B + 16}" text-anchor="middle" font-size="10">{label:.3g}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle" font-size="11">{html.escape(panel.xlabel)}</text>')
    out.append(f'<text x="14" y="{H / 2}" text-anchor="middle" font-size="11" '
               f'transform="rotate(-90 14 {H / 2})">{html.escape(panel.ylabel)}</text>')
    return out


def _svg_marks(panel: Panel, f: _Frame) -> list[str]:
    out = []
    if panel.band:
        lower, upper = panel.band
        out.append(f'<polygon fill="{COLORS["band"]}" opacity="0.6" points="{f.points([*lower, *reversed(upper)])}">'
                   '<title>95% band of the fit</title></polygon>')
    if panel.hline:
        y, label = panel.hline
        out.append(f'<line x1="{PAD_L}" y1="{f.py(y):.1f}" x2="{W - PAD_R}" y2="{f.py(y):.1f}" '
                   f'stroke="{COLORS["target"]}" stroke-dasharray="4 3"/>'
                   f'<text x="{W - PAD_R - 4}" y="{f.py(y) - 4:.1f}" text-anchor="end" font-size="10">'
                   f'{html.escape(label)}</text>')
    for label, pts, color in panel.lines:
        if pts:
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{f.points(pts)}">'
                       f'<title>{html.escape(label)}</title></polyline>')
    for label, pts, color in panel.points:
        out.extend(f'<circle cx="{f.px(x):.1f}" cy="{f.py(y):.1f}" r="3" fill="{color}">'
                   f'<title>{html.escape(label)}: {x:.4g}, {y:.4g}</title></circle>' for x, y in pts)
    if panel.marker:
        x, y, lo, hi = panel.marker
        out.append(f'<line x1="{f.px(x):.1f}" y1="{f.py(lo):.1f}" x2="{f.px(x):.1f}" y2="{f.py(hi):.1f}" '
                   f'stroke="{COLORS["budget"]}" stroke-width="2"/>'
                   f'<rect x="{f.px(x) - 4:.1f}" y="{f.py(y) - 4:.1f}" width="8" height="8" '
                   f'fill="{COLORS["budget"]}"><title>predicted at the budget: {y:.3f} ({lo:.3f}-{hi:.3f})'
                   '</title></rect>')
    return out


def _svg_legend(panel: Panel) -> list[str]:
    legend = [(lbl, c) for lbl, pts, c in panel.lines + panel.points if pts]
    if panel.marker:
        legend.append(("prediction at the budget", COLORS["budget"]))
    out = [f'<rect x="{PAD_L + 8}" y="{PAD_T + 4 + 14 * i}" width="10" height="10" fill="{color}"/>'
           f'<text x="{PAD_L + 22}" y="{PAD_T + 13 + 14 * i}" font-size="10">{html.escape(label)}</text>'
           for i, (label, color) in enumerate(legend)]
    if panel.empty():
        out.append(f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" font-size="12" fill="#777">'
                   f'{html.escape(panel.note or "no data")}</text>')
    return out


def svg_panel(panel: Panel) -> str:
    f = _Frame(panel)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
            f'role="img" aria-label="{html.escape(panel.title)}">')
    return "\n".join([head, *_svg_axes(panel, f), *_svg_marks(panel, f), *_svg_legend(panel), "</svg>"])


def to_html(snap: MonitorSnapshot) -> str:
    title = html.escape(f"{snap.run_name or snap.run_dir}: {snap.status}, step {snap.last_step}")
    figures = "\n".join(f"<figure>{svg_panel(p)}<figcaption>{html.escape(p.note)}</figcaption></figure>"
                        for p in panels(snap))
    source = f"<p>{html.escape(snap.source)}</p>" if snap.source else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><style>body{{font-family:sans-serif;margin:16px}}"
            "figure{display:inline-block;margin:8px;vertical-align:top}"
            "figcaption{max-width:520px;font-size:12px;color:#444}</style></head><body>"
            f"<h1>{title}</h1>{source}\n{figures}\n</body></html>\n")


# --- PNG (matplotlib) ------------------------------------------------------------------------------


def to_png(snap: MonitorSnapshot, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PreflightError("a PNG plot needs matplotlib: pip install 'rl-preflight[monitor]'; "
                             "or write FILE.html, which needs nothing") from None
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for ax, panel in zip(axes.flat, panels(snap), strict=True):
        _draw(ax, panel)
    fig.suptitle(f"{snap.run_name or snap.run_dir}: {snap.status}, step {snap.last_step}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _draw(ax: object, panel: Panel) -> None:
    a = ax  # matplotlib Axes
    if "log" in panel.xlabel:
        from matplotlib.ticker import FuncFormatter, NullFormatter

        a.set_xscale("log")  # type: ignore[attr-defined]
        # plain numbers (0.5, 2, 40), and no labels on the minor ticks, which would collide
        a.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # type: ignore[attr-defined]
        a.xaxis.set_minor_formatter(NullFormatter())  # type: ignore[attr-defined]
    if panel.band:
        lower, upper = panel.band
        a.fill_between([x for x, _ in lower], [y for _, y in lower], [y for _, y in upper],  # type: ignore[attr-defined]
                       color=COLORS["band"], alpha=0.6, label="95% band (A)")
    for label, pts, color in panel.lines:
        if pts:
            a.plot([x for x, _ in pts], [y for _, y in pts], color=color, label=label)  # type: ignore[attr-defined]
    for label, pts, color in panel.points:
        if pts:
            a.scatter([x for x, _ in pts], [y for _, y in pts], color=color, s=14, label=label)  # type: ignore[attr-defined]
    if panel.marker:
        x, y, lo, hi = panel.marker
        a.errorbar([x], [y], yerr=[[y - lo], [hi - y]], fmt="s", color=COLORS["budget"],  # type: ignore[attr-defined]
                   label="prediction at the budget")
    if panel.hline:
        a.axhline(panel.hline[0], color=COLORS["target"], linestyle="--", label=panel.hline[1])  # type: ignore[attr-defined]
    a.set_title(panel.title)  # type: ignore[attr-defined]
    a.set_xlabel(panel.xlabel)  # type: ignore[attr-defined]
    a.set_ylabel(panel.ylabel)  # type: ignore[attr-defined]
    if panel.empty():
        a.text(0.5, 0.5, panel.note or "no data", ha="center", transform=a.transAxes)  # type: ignore[attr-defined]
    else:
        a.legend(fontsize=8)  # type: ignore[attr-defined]


def write_plot(snap: MonitorSnapshot, path: Path | str) -> Path:
    """FILE.html or FILE.png, by the suffix; a PreflightError for another suffix or a write error."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".html", ".htm", ".png"):
        raise PreflightError(f"--plot {path}: name a .html or .png file")
    tmp = path.with_name(f".{path.name}.tmp{suffix}")
    try:
        if suffix == ".png":
            to_png(snap, tmp)
        else:
            tmp.write_text(to_html(snap), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise PreflightError(f"--plot {path}: cannot write ({exc.strerror or exc})") from None
    return path
