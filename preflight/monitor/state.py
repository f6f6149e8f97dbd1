"""What the monitor has learned from the events so far, in bounded memory.

``RunMonitor`` (core.py) writes it, one event at a time; the checklists and the snapshot read it.
Every collection here is capped, so following a run for days costs the same memory as for minutes.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from .rules import Alert
from .series import Series, SeriesGroup

# Series shown in the plots: step-event fields, and val_pass_rate from validation events.
STEP_SERIES = ("pass_rate", "loss", "utilization", "gen_len_mean", "truncation_rate", "grad_norm")
RECENT = 100  # steps of recent history the checklists judge by
MAX_KEPT = 500  # alerts, actions, batch-size changes kept for display (the counts go on)
MAX_VALIDATIONS = 20_000  # validation points kept for the curve fit (halved beyond that)


@dataclass
class Anomaly:
    """An alert or error that wants an answer (an action or recovery event after it)."""

    key: str  # rule id, or "error"
    step: int
    source: str  # monitor | run | error
    metric: str = ""


@dataclass
class RunState:
    status: str = "waiting"
    last_step: int | None = None
    events_seen: int = 0
    bad_events: int = 0  # JSON objects whose fields had the wrong type
    bad_samples: list[tuple[int, str]] = field(default_factory=list)  # (event number, why)
    run_start: dict[str, Any] | None = None
    run_end: dict[str, Any] | None = None
    starts: int = 0  # run_start events (more than one: the run was resumed)
    world_size: int | None = None
    phase: str | None = None
    step_series: SeriesGroup = field(default_factory=lambda: SeriesGroup(STEP_SERIES))
    val_series: Series = field(default_factory=Series)
    validations: list[tuple[int, float, float]] = field(default_factory=list)  # step, hours, rate
    latest_checkpoint: dict[str, Any] | None = None
    checkpoints: int = 0
    checkpoint_note: str | None = None  # why checkpoints cannot be seen (another trainer's log)
    external: bool = False  # another trainer's log: utilization comes only from --sample-gpus
    alerts: deque[Alert] = field(default_factory=lambda: deque(maxlen=MAX_KEPT))
    alerts_total: int = 0
    alerts_by_rule: Counter[str] = field(default_factory=Counter)
    actions: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_KEPT))
    actions_total: int = 0
    recoveries: int = 0
    errors: int = 0
    last_error: str | None = None
    open_anomalies: dict[str, Anomaly] = field(default_factory=dict)  # key -> oldest unanswered
    anomalies_total: int = 0
    anomalies_answered: int = 0
    batch_changes: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_KEPT))
    batch_changes_total: int = 0
    # The last RECENT step events as they came: the checklists read their fields when asked,
    # so a step event costs one append here instead of a field-by-field update.
    recent_steps: deque[Any] = field(default_factory=lambda: deque(maxlen=RECENT))  # StepEvents
    steps_seen: int = 0

    @property
    def latest_step_event(self) -> Any:
        return self.recent_steps[-1] if self.recent_steps else None

    def latest(self, name: str) -> Any:
        """A field of the newest step event (a name from stepevent.STEP_FIELDS), or None."""
        event = self.latest_step_event
        return None if event is None else getattr(event, name)

    def recent(self, name: str) -> list[float]:
        """The finite numbers among the recent step events' ``name`` values."""
        out = []
        for event in self.recent_steps:
            value = getattr(event, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out.append(float(value))
        return out

    def last_nonfinite(self, name: str) -> int | None:
        """The latest recent step whose ``name`` was NaN or infinite (null, listed in nonfinite)."""
        for event in reversed(self.recent_steps):
            marks = event.nonfinite
            if getattr(event, name) is None and isinstance(marks, list) and name in marks:
                return event.step if isinstance(event.step, int) else None
        return None

    def series(self) -> dict[str, list[tuple[int, float]]]:
        latest = self.latest_step_event
        out = {name: self.step_series.values(name, latest) for name in STEP_SERIES}
        out["val_pass_rate"] = self.val_series.values()
        return out
