"""The console's panels. Each keeps the latest snapshot it was given and draws itself from it at
its current size, so a resize redraws without waiting for the run, and a panel never reads files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.widget import Widget

from .chart import fit_chart
from .glyphs import STATUS_STYLE, Glyphs, sparkline

# (series name, label, value format) in the order the metrics panel shows them.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("pass_rate", "pass rate", "{:.3f}"),
    ("loss", "loss", "{:.4g}"),
    ("utilization", "util", "{:.0%}"),
    ("gen_len_mean", "gen len", "{:,.0f}"),
    ("truncation_rate", "truncated", "{:.1%}"),
)
LABEL_W, VALUE_W = 10, 9
SEVERITY_STYLE = {"critical": "bold red", "error": "bold red", "warn": "yellow", "warning": "yellow",
                  "info": "cyan"}
CHECKLIST_TITLES = {"during_training": "During training", "optimization": "Optimization"}


class Panel(Widget):
    """A bordered panel drawn from the last snapshot; ``show(snapshot)`` swaps it in."""

    DEFAULT_CSS = "Panel { height: auto; }"

    def __init__(self, glyphs: Glyphs, *, id: str, title: str) -> None:
        super().__init__(id=id)
        self.glyphs = glyphs
        self.snapshot: Any = None
        self.border_title = title

    def show(self, snapshot: Any) -> None:
        self.snapshot = snapshot
        self.refresh()

    def width(self) -> int:
        return max(self.content_size.width, 10)


class MetricsPanel(Panel):
    """One line per metric: its label, latest value and a sparkline of its history."""

    def render(self) -> Text:
        series = getattr(self.snapshot, "series", None) or {}
        spark_w = max(self.width() - LABEL_W - VALUE_W - 1, 0)
        out = Text(no_wrap=True, overflow="ellipsis")
        for i, (name, label, fmt) in enumerate(METRICS):
            points = series.get(name) or []
            values = [v for _s, v in points if isinstance(v, (int, float))]
            latest = fmt.format(values[-1]) if values else "n/a"
            if i:
                out.append("\n")
            out.append(f"{label:<{LABEL_W}}", style="bold")
            out.append(f"{latest:>{VALUE_W - 1}} ")
            out.append(sparkline(values, spark_w, self.glyphs) if values else "waiting for data",
                       style="cyan" if values else "dim")
        return out


class ChecklistPanel(Panel):
    """Both run checklists, each item with its status mark, title and evidence."""

    def render(self) -> Text:
        lists = getattr(self.snapshot, "checklists", None) or {}
        out = Text(no_wrap=True, overflow="ellipsis")
        if not lists:
            out.append("waiting for the run's first events", style="dim")
            return out
        first = True
        for key, items in lists.items():
            if not first:
                out.append("\n")
            first = False
            out.append(CHECKLIST_TITLES.get(key, key), style="bold underline")
            for item in items:
                status = str(item.status)
                out.append("\n")
                out.append(f"{self.glyphs.mark(status)} ", style=STATUS_STYLE.get(status, ""))
                out.append(item.title, style=STATUS_STYLE.get(status, "") if status == "fail" else "")
                if item.evidence:
                    out.append(f": {item.evidence}", style="dim")
        return out


class AlertLog(Panel):
    """The newest alerts first: step, rule, what crossed which threshold, and the action to take."""

    def render(self) -> Text:
        alerts: Sequence[Any] = getattr(self.snapshot, "alerts", None) or []
        self.border_title = f"Alerts ({len(alerts)})" if alerts else "Alerts"
        out = Text(no_wrap=True, overflow="ellipsis")
        if not alerts:
            out.append("no alerts: every rule is within its threshold", style="dim")
            return out
        rows = max(self.content_size.height, 1)
        for i, alert in enumerate(reversed(alerts[-rows:])):
            if i:
                out.append("\n")
            style = SEVERITY_STYLE.get(str(alert.severity), "yellow")
            # The action comes before the message: on a narrow terminal it is what must stay visible.
            out.append(f"{alert.step:>7} ", style="dim")
            out.append(str(alert.rule), style=style)
            if alert.action:
                out.append(f" {self.glyphs.arrow} {alert.action}", style="bold")
            out.append(f" | {alert.message}")
        return out


class FitPanel(Panel):
    """Where the run is heading: the ScaleRL fit of validation pass rate against device hours,
    drawn (the fitted curve against the observed points, chart.py) above its numbers. Where the
    panel is short, the chart keeps the room and the numbers fold into one line (all of them are
    in the details view, `d`)."""

    def render(self) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        snap = self.snapshot
        fit = getattr(snap, "fit", None)
        if fit is None:
            note = getattr(snap, "fit_note", "") or "not enough points yet: no validation results"
            out.append(note, style="dim")
            return out
        rows = fit_rows(fit)
        height = max(self.content_size.height, 1)
        chart_h = height - len(rows) if height - len(rows) >= 4 else height - 1
        budget = None
        if fit.budget_hours and fit.predicted_at_budget is not None:
            budget = (fit.budget_hours, fit.predicted_at_budget)
        chart = fit_chart(getattr(snap, "validation_points", []), fit.predict, self.width(), chart_h,
                          ascii_only=self.glyphs.arrow == "->", budget=budget)
        for line in chart:
            out.append_text(line)
            out.append("\n")
        if chart and chart_h == height - 1:
            # the prediction at the budget, the time to the target and A: what matters most first
            first = [r for r in rows if r[0].startswith(("@", "to "))] + rows[:1]
            rows = [("fit", "  ".join(f"{label} {value}" for label, value in first))]
        for i, (label, value) in enumerate(rows):
            if i:
                out.append("\n")
            out.append(f"{label:<10}", style="bold")
            out.append(value)
        return out


def fit_rows(fit: Any) -> list[tuple[str, str]]:
    """The fit's parameters with their 95 % intervals and its two predictions, one row each."""
    rows = [
        ("A", f"{fit.A:.3f} ({fit.A_band[0]:.3f}-{fit.A_band[1]:.3f})"),
        ("B", f"{fit.B:.2f} ({fit.B_band[0]:.2f}-{fit.B_band[1]:.2f})"),
        ("C_mid", f"{hours(fit.C_mid)} ({hours(fit.C_mid_band[0])}-{hours(fit.C_mid_band[1])})"),
    ]
    if fit.predicted_at_budget is not None and fit.budget_hours:
        band = fit.predicted_band or (fit.predicted_at_budget, fit.predicted_at_budget)
        rows.append((f"@{hours(fit.budget_hours)}",
                     f"{fit.predicted_at_budget:.1%} ({band[0]:.1%}-{band[1]:.1%}) at the budget"))
    if fit.target is not None:
        if fit.hours_to_target is not None:
            band = fit.hours_to_target_band
            extra = f" ({hours(band[0])}-{hours(band[1])})" if band else ""
            rows.append((f"to {fit.target:.0%}", f"{hours(fit.hours_to_target)}{extra}"))
        else:
            rows.append((f"to {fit.target:.0%}", fit.target_note))
    rows.append(("fit", f"{fit.n_points} points past the first {hours(fit.exclude_before_hours)}, "
                        f"rmse {fit.rmse:.3f}"))
    return rows


def hours(h: float) -> str:
    """Device hours, short: 0.25 h, 12 h, 1.5K h."""
    if h >= 10_000:
        return f"{h / 1000:,.0f}K h"
    if h >= 1000:
        return f"{h / 1000:.1f}K h"
    return f"{h:.3g} h"
