"""The console's details view: everything the panels cut short at 80 columns, wrapped in full.

Every alert kept with its message and action (newest first), every checklist item with its whole
evidence, the
curve fit's summary and the malformed lines the tailer set aside. Opened with `d`, closed with
escape (or `d` again); scrollable with the arrow keys and page up/down.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from .glyphs import STATUS_STYLE, Glyphs
from .widgets import CHECKLIST_TITLES, SEVERITY_STYLE


class DetailsScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,d,q", "dismiss", "Back to the console")]

    def __init__(self, snapshot: Any, glyphs: Glyphs) -> None:
        super().__init__()
        self.snapshot, self.glyphs = snapshot, glyphs

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="details-view"):
            yield Static(details_text(self.snapshot, self.glyphs), id="details-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#details-view", VerticalScroll).focus()


def details_text(snap: Any, glyphs: Glyphs) -> Text:
    out = Text()
    if snap is None:
        out.append("nothing to show yet: the run has written no events", style="dim")
        return out
    alerts = list(snap.alerts or [])
    total = getattr(snap, "alerts_total", len(alerts))
    out.append(f"Alerts ({total}{', newest ' + str(len(alerts)) + ' kept' if total > len(alerts) else ''})\n",
               style="bold underline")
    if not alerts:
        out.append("none\n", style="dim")
    for alert in reversed(alerts):
        out.append(f"step {alert.step} ", style="dim")
        out.append(f"{alert.rule} ({alert.severity})", style=SEVERITY_STYLE.get(str(alert.severity), "yellow"))
        out.append(f": {alert.message}\n")
        if alert.action:
            out.append(f"    action: {alert.action}\n", style="bold")
    out.append("\n")
    for key, items in (snap.checklists or {}).items():
        out.append(f"{CHECKLIST_TITLES.get(key, key)}\n", style="bold underline")
        for item in items:
            status = str(item.status)
            out.append(f"{glyphs.mark(status)} {status.upper():<8}", style=STATUS_STYLE.get(status, ""))
            out.append(f"{item.title}\n", style="bold")
            if item.evidence:
                out.append(f"    {item.evidence}\n")
        out.append("\n")
    out.append("Where the run is heading\n", style="bold underline")
    out.append(f"{snap.fit_note or 'no fit yet'}\n")
    samples = getattr(snap, "malformed_samples", None) or []
    if snap.malformed_lines:
        out.append(f"\nMalformed lines ({snap.malformed_lines}, skipped)\n", style="bold underline")
        for number, why in samples:
            where = f"line {number}" if number >= 0 else f"event {-number}"
            out.append(f"{where}: {why}\n")
    return out
