"""The run monitor: events in, a snapshot of the run out (no Textual, no printing).

``RunMonitor(run_dir)`` follows RUN_DIR/events.jsonl; ``poll()`` reads what is new and updates the
state; ``snapshot()`` returns a frozen ``MonitorSnapshot`` (series for the plots, alerts, both
checklists, the curve fit, the latest checkpoint) that the TUI, ``preflight monitor`` and tests
all read. ``feed(events)`` takes events directly, for tests and replays.

The per-event work is kept small on purpose (a replay goes through hundreds of thousands of
events a second): step events update a few series and the rules due at this step; checklists
and the curve fit are computed only when a snapshot is asked for, and the fit is cached until a
new validation point arrives.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import PreflightError
from ..rundir import EVENTS_FILE
from ..spec import Spec, load_spec
from .checklists import ChecklistItem, SignOffs, evaluate_checklists
from .curvefit import CurveFit, fit_run
from .rules import Alert, RuleEngine, as_number
from .settings import MonitorSettings
from .state import MAX_VALIDATIONS, Anomaly, RunState
from .stepevent import StepEvent, step_from_dict
from .tailer import READ_CHUNK, EventTailer

STATUSES = ("waiting", "running", "completed", "stopped", "failed")
MAX_BAD_SAMPLES = 20


@dataclass(frozen=True)
class MonitorSnapshot:
    run_dir: str
    status: str  # waiting | running | completed | stopped | failed
    last_step: int | None
    series: dict[str, list[tuple[int, float]]]
    alerts: list[Alert]  # newest last; the most recent MAX_KEPT
    checklists: dict[str, list[ChecklistItem]]  # during_training, optimization
    fit: CurveFit | None
    fit_note: str
    latest_checkpoint: dict[str, Any] | None
    malformed_lines: int
    events_seen: int
    run_name: str | None = None
    alerts_total: int = 0
    in_alert: list[str] = field(default_factory=list)  # rule ids in alert now
    # (line number, message); line 0: an event whose line is not known (a bad field's type)
    malformed_samples: list[tuple[int, str]] = field(default_factory=list)
    device_hours: float | None = None
    world_size: int | None = None
    phase: str | None = None
    settings_source: str = ""
    end_reason: str | None = None
    notes: list[str] = field(default_factory=list)
    # What the run did on its own (action, recovery and batch_size events), newest last:
    # {"step", "kind", "cause"}; the most recent MAX_KEPT, with actions_total counting them all.
    actions: list[dict[str, Any]] = field(default_factory=list)
    actions_total: int = 0
    # What is being read: the kind of log and its path ("" for the runner's own events.jsonl).
    source: str = ""
    log_path: str = ""
    # (device hours, validation pass rate) of the results with hours: what the curve fit saw.
    validation_points: list[tuple[float, float]] = field(default_factory=list)


class RunMonitor:
    """Follows one run directory. Not thread-safe: call it from one thread (a TUI worker)."""

    def __init__(self, run_dir: Path | str, spec: Spec | None = None,
                 events_file: str = EVENTS_FILE, target_pass_rate: float | None = None,
                 exclude_hours: float | None = None, source: Any = None,
                 source_label: str = "") -> None:
        self.run_dir = Path(run_dir)
        # Another trainer's log (preflight.monitor.sources) reads through the tailer's interface.
        self.tailer = source if source is not None else EventTailer(self.run_dir / events_file)
        self.source_label = source_label
        self._spec_given = spec is not None
        self._spec_sha = spec.sha256 if spec is not None else None
        self.settings = MonitorSettings.from_spec(spec) if spec is not None else MonitorSettings.defaults()
        self.engine = RuleEngine(self.settings.rules)
        self.state = RunState()
        if source is not None and spec is None:
            # Another trainer's hyperparameters are not in its log: judging the built-in defaults
            # as if they were the run's would be a made-up verdict.
            self.settings = dataclasses.replace(
                self.settings, hyperparameters=[],
                source="the built-in defaults (pass --spec with the run's settings to judge them)")
        if source is not None:
            self.state.external = True
            self.state.checkpoint_note = ("this log does not record checkpoints; check the "
                                          "trainer's checkpoint folder")
        self.notes: list[str] = []
        self.target_pass_rate = target_pass_rate
        self.exclude_hours = exclude_hours
        self.signoffs = SignOffs(self.run_dir)
        self._malformed_seen = 0
        self._fit_key: tuple[Any, ...] | None = None
        self._fit: tuple[CurveFit | None, str] = (None, "")
        self._dispatch = {
            "validation": self._on_validation, "checkpoint": self._on_checkpoint,
            "alert": self._on_alert, "action": self._on_action, "recovery": self._on_recovery,
            "batch_size": self._on_batch_size, "run_start": self._on_run_start,
            "run_end": self._on_run_end, "error": self._on_error, "phase": self._on_phase,
        }

    # --- reading ---------------------------------------------------------------------------------

    def poll(self, max_bytes: int | None = None) -> bool:
        """Read what is new in events.jsonl: all of it, or about ``max_bytes`` (then
        ``caught_up`` says whether more is waiting). True if the state changed."""
        changed = False
        left = max_bytes
        while True:
            size = READ_CHUNK if left is None else max(1, min(left, READ_CHUNK))
            chunk = self.tailer.poll_typed(size)
            if chunk:
                self.feed(chunk)
                changed = True
            if self.tailer.caught_up:
                break
            if left is not None:
                left -= READ_CHUNK
                if left <= 0:
                    break
        return changed or self._malformed_changed()

    def _malformed_changed(self) -> bool:
        """A new malformed line changes the snapshot too (its count is shown)."""
        seen = self.tailer.malformed
        changed = seen != self._malformed_seen
        self._malformed_seen = seen
        return changed

    @property
    def caught_up(self) -> bool:
        return self.tailer.caught_up

    def close(self) -> None:
        self.tailer.close()

    def feed(self, events: Iterable[Any]) -> None:
        """Apply events (dicts, or StepEvent objects from the tailer's typed poll) in order.
        An event with a field of the wrong type is counted, not raised."""
        state = self.state
        dispatch = self._dispatch
        on_step = self._on_step
        for event in events:
            state.events_seen += 1
            try:
                if type(event) is StepEvent:
                    on_step(event)
                    continue
                kind = event.get("type")
                if kind == "step":
                    on_step(step_from_dict(event))
                    continue
                handler = dispatch.get(kind)
                if handler is not None:  # else a type from a newer runner: ignored
                    handler(event)
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                self._bad_event(event, exc)

    def _bad_event(self, event: Any, exc: Exception) -> None:
        state = self.state
        state.bad_events += 1
        if len(state.bad_samples) < MAX_BAD_SAMPLES:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            kind = "step" if type(event) is StepEvent else event.get("type")
            state.bad_samples.append((state.events_seen, f"{kind} event: {what}"))

    # --- event handlers (the hot path is _on_step) -----------------------------------------------

    def _on_step(self, event: Any) -> None:
        """A StepEvent (stepevent.py): the hot path of the monitor."""
        step = event.step
        if type(step) is not int:
            raise TypeError(f"step must be an integer, found {step!r}")
        state = self.state
        state.last_step = step
        state.steps_seen += 1
        state.recent_steps.append(event)
        group = state.step_series
        if not group.next_step - group.stride <= step < group.next_step:
            group.keep(step, event)
        if state.status == "waiting":
            state.status = "running"
        alerts = self.engine.on_step(step, event)
        if alerts:
            for alert in alerts:
                self._record_alert(alert)

    def _on_validation(self, event: dict[str, Any]) -> None:
        step, rate = event["step"], as_number(event["pass_rate"])
        if type(step) is not int:
            raise TypeError(f"step must be an integer, found {step!r}")
        state = self.state
        if rate is not None:
            state.val_series.add(step, rate)
            hours = as_number(event.get("device_hours"))
            if hours is not None and math.isfinite(hours) and math.isfinite(rate):
                state.validations.append((step, hours, rate))
                if len(state.validations) > MAX_VALIDATIONS:
                    state.validations = state.validations[::2]
        for alert in self.engine.on_validation(step, event):
            self._record_alert(alert)

    def _on_checkpoint(self, event: dict[str, Any]) -> None:
        if type(event["step"]) is not int:
            raise TypeError(f"step must be an integer, found {event['step']!r}")
        self.state.latest_checkpoint = {k: v for k, v in event.items() if k != "type"}
        self.state.checkpoints += 1

    def _on_alert(self, event: dict[str, Any]) -> None:
        step = event.get("step")
        rule = str(event["rule"])
        metric = event.get("metric") or next((r.field for r in self.engine.rules if r.id == rule), "")
        alert = Alert(rule=rule, metric=str(metric),
                      step=step if type(step) is int else (self.state.last_step or 0),
                      value=as_number(event.get("value")), threshold=as_number(event.get("threshold")),
                      message=str(event.get("message", "")), action=str(event.get("action", "")),
                      severity=str(event.get("severity", "warn")), source="run")
        self._record_alert(alert)

    def _record_alert(self, alert: Alert) -> None:
        state = self.state
        if alert.source == "monitor" and any(
                a.rule == alert.rule and a.step == alert.step and a.source == "run"
                for a in list(state.alerts)[-4:]):
            return  # the run already reported this one (with what it did about it)
        state.alerts.append(alert)
        state.alerts_total += 1
        state.alerts_by_rule[alert.rule] += 1
        if alert.severity != "info" and alert.rule not in state.open_anomalies:
            state.anomalies_total += 1  # a repeat of an open one is the same question
            state.open_anomalies[alert.rule] = Anomaly(alert.rule, alert.step, alert.source,
                                                       alert.metric)

    def _on_action(self, event: dict[str, Any]) -> None:
        state = self.state
        step, kind, cause = event.get("step"), str(event["kind"]), str(event.get("cause", ""))
        state.actions.append({"step": step, "kind": kind, "cause": cause})
        state.actions_total += 1
        for key, anomaly in list(state.open_anomalies.items()):
            if _answers(cause, kind, anomaly):
                del state.open_anomalies[key]
                state.anomalies_answered += 1

    def _on_recovery(self, event: dict[str, Any]) -> None:
        state = self.state
        state.recoveries += 1
        state.actions.append({"step": event.get("step"), "kind": "recovery",
                              "cause": str(event.get("reason", ""))})
        state.actions_total += 1
        if state.open_anomalies.pop("error", None) is not None:
            state.anomalies_answered += 1

    def _on_batch_size(self, event: dict[str, Any]) -> None:
        old, new = event["old"], event["new"]
        if type(old) is not int or type(new) is not int:
            raise TypeError(f"old and new must be integers, found {old!r} and {new!r}")
        change = {"step": event.get("step"), "old": old, "new": new,
                  "reason": str(event.get("reason", "")), "unit": str(event.get("unit", "completions"))}
        self.state.batch_changes.append(change)
        self.state.batch_changes_total += 1
        self.state.actions.append({"step": change["step"], "kind": "batch_size",
                                   "cause": f"{old} -> {new} {change['unit']}: {change['reason']}"})
        self.state.actions_total += 1

    def _on_run_start(self, event: dict[str, Any]) -> None:
        state = self.state
        state.starts += 1
        state.run_start = event
        state.run_end = None
        state.status = "running"
        world = event.get("world_size")
        if type(world) is int:
            state.world_size = world
        if state.starts == 1 and not self._spec_given:
            self._configure_from(event)
        ran = event.get("spec_sha256")
        if self._spec_sha and isinstance(ran, str) and ran != self._spec_sha:
            note = (f"the run started from another spec (sha256 {ran[:12]}...) than the one given "
                    f"({self._spec_sha[:12]}...): rules and intervals may not be the run's")
            if note not in self.notes:
                self.notes.append(note)

    def _configure_from(self, event: dict[str, Any]) -> None:
        """Without a spec: the spec the run names (spec_path) if it loads, else its own config."""
        path = event.get("spec_path")
        if isinstance(path, str) and path:
            try:
                self.settings = MonitorSettings.from_spec(load_spec(path))
                self.engine = RuleEngine(self.settings.rules)
                return
            except PreflightError as exc:
                first = str(exc).splitlines()[0]
                self.notes.append(f"the run's spec {path} could not be used ({first}); "
                                  "judging by the run's own configuration")
        config = event.get("config")
        if isinstance(config, dict):
            self.settings = self.settings.with_run_config(config)
            # the rules are the defaults either way: nothing to rebuild

    def _on_run_end(self, event: dict[str, Any]) -> None:
        status = event.get("status")
        self.state.status = status if status in ("completed", "stopped", "failed") else "stopped"
        self.state.run_end = event
        step = event.get("step")
        if type(step) is int and (self.state.last_step is None or step > self.state.last_step):
            self.state.last_step = step

    def _on_error(self, event: dict[str, Any]) -> None:
        state = self.state
        state.errors += 1
        state.last_error = str(event["message"])
        step = event.get("step")
        if "error" not in state.open_anomalies:
            state.anomalies_total += 1
            state.open_anomalies["error"] = Anomaly("error", step if type(step) is int else 0, "error")

    def _on_phase(self, event: dict[str, Any]) -> None:
        self.state.phase = str(event["name"])

    # --- snapshot --------------------------------------------------------------------------------

    def snapshot(self) -> MonitorSnapshot:
        state = self.state
        last = state.last_step if state.last_step is not None else 0
        fit, note = self.fit()
        start = state.run_start or {}
        end = state.run_end or {}
        return MonitorSnapshot(
            run_dir=str(self.run_dir),
            status=state.status,
            last_step=state.last_step,
            series=state.series(),
            alerts=list(state.alerts),
            checklists=evaluate_checklists(state, self.settings, self.engine, self.signoffs.load()),
            fit=fit,
            fit_note=note,
            latest_checkpoint=dict(state.latest_checkpoint) if state.latest_checkpoint else None,
            malformed_lines=self.tailer.malformed + state.bad_events,
            events_seen=state.events_seen,
            run_name=start.get("run") if isinstance(start.get("run"), str) else None,
            alerts_total=state.alerts_total,
            in_alert=[r.id for r in self.engine.in_alert(last)],
            malformed_samples=[*self.tailer.malformed_samples,
                               *((0, f"event #{n}: {why}") for n, why in state.bad_samples)],
            device_hours=self._device_hours(),
            world_size=state.world_size,
            phase=state.phase,
            settings_source=self.settings.source,
            end_reason=end.get("reason") if isinstance(end.get("reason"), str) else None,
            notes=[*self.notes, *self._source_notes()],
            actions=[dict(a) for a in state.actions],
            actions_total=state.actions_total,
            source=self._label(),
            log_path=str(self.tailer.path) if self.source_label else "",
            validation_points=[(h, r) for _, h, r in state.validations],
        )

    def _label(self) -> str:
        """The source as detected, with the trainer a TensorBoard log turned out to be from."""
        writer = getattr(getattr(self.tailer, "mapper", None), "framework", None)
        if writer and self.source_label and "written by" not in self.source_label:
            return f"{self.source_label}; metric names of {writer}"
        return self.source_label

    def _source_notes(self) -> list[str]:
        notes = getattr(self.tailer, "notes", None)
        return list(notes()) if callable(notes) else []

    def _device_hours(self) -> float | None:
        hours = [h for h in (self.state.latest("device_hours"),
                             self.state.validations[-1][1] if self.state.validations else None)
                 if isinstance(h, (int, float)) and not isinstance(h, bool) and math.isfinite(h)]
        return float(max(hours)) if hours else None

    def fit(self) -> tuple[CurveFit | None, str]:
        """The ScaleRL curve fit of validation pass rate against device hours (cached)."""
        key = (len(self.state.validations), self.state.validations[-1] if self.state.validations else None)
        if key != self._fit_key:
            self._fit = fit_run(self.state.validations, budget_hours=self.settings.budget_hours,
                                target=self.target_pass_rate or self.settings.target_pass_rate,
                                exclude_hours=self.exclude_hours)
            self._fit_key = key
        return self._fit


def _answers(cause: str, kind: str, anomaly: Anomaly) -> bool:
    """Whether an action event answers an open anomaly: its cause names the rule or its metric."""
    text = f"{kind} {cause}".lower()
    if anomaly.key == "error":
        return kind in ("rollback", "restart", "recovery")
    return anomaly.key.lower() in text or bool(anomaly.metric) and anomaly.metric.lower() in text


def open_run_dir(run_dir: Path | str) -> Path:
    """The run directory, or a PreflightError that says what is wrong with it."""
    path = Path(run_dir)
    if not path.exists():
        raise PreflightError(f"{path}: no such run directory; pass the run's run_dir "
                             "(run.run_dir in the spec, e.g. runs/my-run)")
    if not path.is_dir():
        raise PreflightError(f"{path}: not a directory; pass the run directory that holds {EVENTS_FILE}")
    events = path / EVENTS_FILE
    if events.exists() and not events.is_file():
        raise PreflightError(f"{events}: not a regular file; the run writes its events there")
    try:
        with open(events, "rb"):
            pass
    except FileNotFoundError:
        pass  # not started yet: the monitor waits for it
    except OSError as exc:
        raise PreflightError(f"{events}: cannot be read ({exc.strerror or exc}); check its "
                             "permissions") from None
    return path
