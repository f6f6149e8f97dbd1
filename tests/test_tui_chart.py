"""The console's fit chart: the fitted curve against the observed points, as terminal text."""

from __future__ import annotations

from preflight.tui.chart import fit_chart

POINTS = [(1.0, 0.30), (2.0, 0.36), (4.0, 0.42), (8.0, 0.46), (16.0, 0.48)]


def curve(hours: float) -> float:
    return 0.5 - 0.2 / (1 + hours / 2)


def test_ascii_chart_puts_points_on_a_rising_curve() -> None:
    lines = [t.plain for t in fit_chart(POINTS, curve, 40, 6, ascii_only=True)]
    assert len(lines) == 6 and all(len(line) == 40 for line in lines)
    assert lines[0].startswith(" 0.") and lines[-1].startswith(" 0.")  # the y range in the gutter
    stars = [(row, line.index("*", 6)) for row, line in enumerate(lines) if "*" in line[6:]]
    assert len(stars) >= 4
    # Later hours (further right) sit higher (smaller row numbers): the run is improving.
    by_col = sorted(stars, key=lambda s: s[1])
    assert by_col[0][0] > by_col[-1][0]
    assert sum(line.count(".") for line in lines) > 10  # the fitted curve between the points


def test_braille_chart_and_budget_marker() -> None:
    text = fit_chart(POINTS, curve, 40, 5, budget=(64.0, 0.49))
    plain = "".join(t.plain for t in text)
    assert any(0x2800 < ord(c) <= 0x28FF for c in plain)  # braille dots
    styles = {span.style for t in text for span in t.spans}
    assert {"red", "bold cyan", "bold green"} <= styles  # curve, points, the budget's prediction


def test_no_room_or_no_points_draws_nothing() -> None:
    assert fit_chart([], curve, 40, 5) == []
    assert fit_chart(POINTS, curve, 10, 5) == []
    assert fit_chart(POINTS, curve, 40, 1) == []
