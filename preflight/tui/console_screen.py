"""The run console: a run directory followed live (or replayed) into panels for the metrics, the
alert log, both run checklists, the curve fit and the latest checkpoint.

The console only reads the run directory (and writes a sign-off into it when asked): quitting it
never touches the run's process. The events file is read in a thread worker (``Follower``); a UI
timer redraws from the newest snapshot a few times a second, however fast the run writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from ..errors import PreflightError
from ..monitor.checklists import default_signer, sign_off
from ..monitor.core import RunMonitor
from ..rundir import MIN_REASON
from .details import DetailsScreen
from .dialogs import ReasonDialog
from .follow import Follower
from .glyphs import STATUS_STYLE, Glyphs
from .runner_watch import RunnerWatch
from .widgets import AlertLog, ChecklistPanel, FitPanel, MetricsPanel, Panel

REDRAW_HZ = 5


def default_monitor(run_dir: Path, spec: Any = None) -> Any:
    return RunMonitor(run_dir, spec=spec)


class ConsoleScreen(Screen[None]):
    BINDINGS = [
        Binding("d", "details", "Details"),
        Binding("s", "sign_off", "Sign off architecture"),
        Binding("a", "acknowledge", "Ack alert"),
        Binding("q", "app.quit", "Quit (run goes on)"),
    ]

    def __init__(self, run_dir: Path, glyphs: Glyphs, *, replay_speed: float | None = None,
                 monitor_factory: Any = None, spec: Any = None, launched: Any = None) -> None:
        super().__init__()
        self.run_dir, self.glyphs = run_dir, glyphs
        # A run launched from this console: its pid is watched (never signalled) so an early exit
        # shows with the last line of its log instead of an endless "waiting".
        self.runner = RunnerWatch(launched.pid, Path(launched.log)) if launched is not None else None
        self.note = f"launched pid {launched.pid}; log {launched.log}" if launched is not None else ""
        factory = monitor_factory or default_monitor
        self.follower = Follower(factory(run_dir, spec), replay_speed=replay_speed)
        self._shown_version = -1

    def compose(self) -> ComposeResult:
        yield Static(f"run {self.run_dir}", id="run-status")
        with Horizontal(id="console-body"):
            with Vertical(id="console-left"):
                yield MetricsPanel(self.glyphs, id="metrics", title="Metrics")
                yield FitPanel(self.glyphs, id="fit", title="Where the run is heading")
            with Vertical(id="console-right"):
                yield ChecklistPanel(self.glyphs, id="checklists", title="Checklists")
        yield AlertLog(self.glyphs, id="alerts", title="Alerts")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(1 / REDRAW_HZ, self.redraw)
        if self.runner is not None:
            self.set_interval(1.0, self.check_runner)
        self.follow()

    def check_runner(self) -> None:
        if self.runner is not None and self.runner.exit_message is None and self.runner.check():
            self._shown_version = -1  # redraw the status line with the reason
            # The status line may cut a long reason short; the notification shows all of it.
            self.notify(f"{self.runner.exit_message}\n(full log: {self.runner.log})", severity="error",
                        timeout=30)

    @work(thread=True, group="follow", exit_on_error=False)
    def follow(self) -> None:
        worker = get_current_worker()
        self.follower.run(lambda: worker.is_cancelled)

    def redraw(self) -> None:
        """Show the newest snapshot if the follower published one since the last redraw."""
        follower = self.follower
        if follower.version == self._shown_version:
            return
        self._shown_version = follower.version
        snap = follower.latest
        for panel in self.query(Panel):
            panel.show(snap)
        self.query_one("#run-status", Static).update(self.status_line(snap))

    def status_line(self, snap: Any) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        if self.follower.error:
            text.append(f"the monitor stopped: {self.follower.error}", style="bold red")
            return text
        if self.runner is not None and self.runner.exit_message and (snap is None or snap.status == "waiting"):
            text.append(self.runner.exit_message, style="bold red")
            return text
        if snap is None:
            label = getattr(self.follower.monitor, "source_label", "") or str(self.run_dir / "events.jsonl")
            text.append(f"waiting for {label}", style="dim")
            return text
        status = str(snap.status)
        text.append(f"{snap.run_name or self.run_dir.name} ", style="bold")
        text.append(status, style=STATUS_STYLE.get(_status_colour(status), "bold"))
        if snap.last_step is not None:
            text.append(f"  step {snap.last_step}")
        ckpt = snap.latest_checkpoint
        if ckpt:
            text.append(f"  ckpt {_checkpoint_label(ckpt)}")
        if snap.malformed_lines:
            text.append(f"  {snap.malformed_lines} malformed line(s)", style="yellow")
        if snap.source:  # another trainer's log: say what is being read
            text.append(f"  [{snap.source.split(':')[0]}]", style="dim")
        if self.follower.replay_speed is not None:
            done = " (done)" if self.follower.replay_done else ""
            text.append(f"  replay x{self.follower.replay_speed:g}{done}", style="cyan")
        if self.note:
            text.append(f"  {self.note}", style="dim")
        return text


    def action_details(self) -> None:
        """Everything the panels cut short, wrapped in full (the newest snapshot, not live)."""
        self.app.push_screen(DetailsScreen(self.follower.latest, self.glyphs))

    # Manual answers, stored in the run directory ------------------------------------------------

    def action_sign_off(self) -> None:
        """Sign off the one checklist item only a person can judge: the model architecture review."""
        self._ask_and_sign("architecture_reviewed", "Sign off: model architecture reviewed",
                           "What was reviewed, and by whom? Stored in the run directory (signoffs.json).")

    def action_acknowledge(self) -> None:
        """Answer the newest alert's rule when a person looked into it (no action event from the run)."""
        snap = self.follower.latest
        alerts = getattr(snap, "alerts", None) or []
        if not alerts:
            self.notify("no alert to acknowledge", severity="warning")
            return
        alert = alerts[-1]
        self._ask_and_sign(f"ack:{alert.rule}", f"Acknowledge {alert.rule} (step {alert.step})",
                           f"{alert.message}\nWhat was looked into or done? Stored in the run directory.")

    def _ask_and_sign(self, item_id: str, title: str, prompt: str) -> None:
        def record(note: str | None) -> None:
            if note is None:
                return
            try:
                sign_off(self.run_dir, item_id, default_signer(), note)
            except PreflightError as exc:
                self.notify(str(exc), severity="error", timeout=10)
                return
            self.follower.invalidate()  # the checklists re-read signoffs.json at the next snapshot
            self.notify(f"signed off {item_id}")

        self.app.push_screen(ReasonDialog(title, prompt, min_chars=MIN_REASON, ok_label="Sign off"), record)


def _status_colour(status: str) -> str:
    return {"completed": "pass", "running": "running", "failed": "fail", "stopped": "warn"}.get(status, "")


def _checkpoint_label(ckpt: Any) -> str:
    if isinstance(ckpt, dict):
        step = ckpt.get("step")
        return f"step {step}" if step is not None else str(ckpt.get("path", ckpt))
    return str(ckpt)
