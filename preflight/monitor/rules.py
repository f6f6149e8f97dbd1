"""The alert rules: the spec's monitoring.rules (by default the dashboard table of docs/reference.md
section 3, kept in preflight.presets.DEFAULT_RULES) evaluated on the event stream.

Where a rule's metric comes from:
- ``pass_rate`` is the *validation* pass rate (validation events), as the dashboard table says;
  the training pass rate of step events is plotted, not alerted on;
- ``loss``, ``grad_norm``, ``utilization``, ``gen_len_mean``, ``truncation_rate`` come from step
  events;
- ``op: spike`` compares a robust z-score, (value - median) / (1.4826 * MAD) over the previous
  ``SPIKE_WINDOW`` values, with the threshold: only a sudden *increase* alerts, and a non-finite
  value (NaN/inf, written as null and named in ``nonfinite``) is always a spike. The metric
  ``loss_spike`` is that z-score of the loss, compared with the rule's own op.

Cadence: a rule with ``every_steps: N`` is evaluated at the first event at or past each multiple of
N (so gaps in the steps never skip an evaluation): N, 2N, ... The validation at step 0 (the start
line, before any training) is never judged by a rule with a cadence; it is the R0 of the fit. Cooldown: once a rule fires at step s it stays
quiet until step s + cooldown_steps, however long the condition lasts; a step that goes backwards
(a resumed run) re-arms it.

"In alert", which ``preflight monitor --fail-on-alert`` turns into exit code 1, means: the
condition held at the rule's last evaluation; for a spike, that it fired within the last
``cooldown_steps`` steps (a spike is over by the next step, but it still needs an answer).
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

SPIKE_WINDOW = 50  # values the median and MAD are taken over (the runner's stability.spike_window)
SPIKE_MIN_POINTS = 10  # a spike needs this much history first
_RESTAT_EVERY = 32  # the screening median/MAD is refreshed this often (exact check on a hit)

STEP_METRICS = ("loss", "grad_norm", "utilization", "gen_len_mean", "truncation_rate")
RULE_METRICS = (*STEP_METRICS, "pass_rate", "loss_spike")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}

LABELS = {
    "pass_rate": "validation pass rate", "loss": "loss", "loss_spike": "loss (robust z-score)",
    "utilization": "utilization", "gen_len_mean": "mean generation length",
    "truncation_rate": "truncation rate", "grad_norm": "gradient norm",
}
_PERCENT = {"pass_rate", "utilization", "truncation_rate"}


def format_value(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric in _PERCENT:
        return f"{value * 100:.1f}%"
    if metric == "gen_len_mean":
        return f"{value:,.0f} tokens"
    return f"{value:.4g}"


def format_bytes(size: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} bytes"


@dataclass(frozen=True)
class Alert:
    """One firing of a rule (source "monitor") or an alert event the run wrote (source "run")."""

    rule: str
    metric: str
    step: int
    value: float | None
    threshold: float | None
    message: str
    action: str
    severity: str  # info | warn | critical
    source: str = "monitor"


class SpikeDetector:
    """Robust z-score of each new value against the values before it."""

    __slots__ = ("window", "_median", "_scale", "_stale")

    def __init__(self) -> None:
        self.window: deque[float] = deque(maxlen=SPIKE_WINDOW)
        self._median = 0.0
        self._scale = math.inf
        self._stale = 0

    def score(self, value: float, screen: float) -> float | None:
        """The z-score of ``value`` when it may exceed ``screen`` (else None); then remember it.

        A cached median/MAD screens out ordinary values cheaply; a candidate is scored exactly.
        """
        window = self.window
        z: float | None = None
        if len(window) >= SPIKE_MIN_POINTS:
            self._stale += 1
            if self._stale >= _RESTAT_EVERY:
                self._restat()
            if (value - self._median) > 0.5 * screen * self._scale:
                self._restat()
                z = (value - self._median) / self._scale
        window.append(value)
        return z

    def _restat(self) -> None:
        ordered = sorted(self.window)
        n = len(ordered)
        median = ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])
        deviations = sorted([abs(x - median) for x in ordered])
        mad = deviations[n // 2] if n % 2 else 0.5 * (deviations[n // 2 - 1] + deviations[n // 2])
        # A perfectly flat history has MAD 0; a floor keeps a tiny wiggle from counting as a spike.
        self._median = median
        self._scale = max(1.4826 * mad, 1e-3 * abs(median), 1e-12)
        self._stale = 0


class Rule:
    """One compiled rule and its evaluation state."""

    __slots__ = ("id", "metric", "field", "op", "threshold", "every", "cooldown", "severity",
                 "action", "compare", "detector", "spike", "next_due", "last_fired", "condition",
                 "last_value", "fired")

    def __init__(self, spec: dict[str, Any]) -> None:
        self.id = str(spec["id"])
        self.metric = str(spec["metric"])
        self.op = str(spec["op"])
        self.threshold = float(spec["threshold"])
        self.every = max(1, int(spec.get("every_steps", 1)))
        self.cooldown = max(0, int(spec.get("cooldown_steps", 100)))
        self.severity = str(spec.get("severity", "warn"))
        self.action = str(spec.get("action", ""))
        if self.metric not in RULE_METRICS:
            raise ValueError(f"rule {self.id!r}: unknown metric {self.metric!r} "
                             f"(known: {', '.join(RULE_METRICS)})")
        if self.op != "spike" and self.op not in _COMPARE:
            raise ValueError(f"rule {self.id!r}: unknown op {self.op!r} (known: <, <=, >, >=, spike)")
        self.field = "loss" if self.metric == "loss_spike" else self.metric
        self.spike = self.op == "spike" or self.metric == "loss_spike"
        self.compare = _COMPARE.get(self.op, operator.gt)
        self.detector = SpikeDetector() if self.spike else None
        self.next_due = self.every  # the first multiple of the cadence; step 0 is the baseline
        self.last_fired: int | None = None
        self.condition = False  # a spike rule's condition at its last evaluation
        self.last_value: float | None = None  # the value (or z-score) last evaluated
        self.fired = 0

    def evaluate(self, step: int, value: float | None, nonfinite: bool) -> Alert | None:
        """Feed one value (None: not measured); an Alert when the rule fires at this step.

        The general path, with the cadence; RuleEngine.on_step has a faster one for the rules
        evaluated at every step.
        """
        z: float | None = None
        if self.detector is not None and value is not None:
            z = self.detector.score(value, self.threshold)
        if self.next_due >= 0 and step < self.next_due - self.every:
            self.next_due = -1  # the run went back (a resume): the cadence starts over
        if step < self.next_due:
            return None
        self.next_due = (step // self.every + 1) * self.every
        if nonfinite:
            # NaN/inf is a spike; a threshold rule cannot compare it, so it gives no verdict.
            return self.verdict(step, None, True, True) if self.spike else None
        if value is None:
            return None  # not measured this time: no verdict
        if self.spike:
            return self.judge_z(step, z)
        condition = self.compare(value, self.threshold)
        self.last_value = value
        return self.verdict(step, value, condition, False) if condition else None

    def judge_z(self, step: int, z: float | None) -> Alert | None:
        if self.op == "spike":
            condition = z is not None and z > self.threshold
        else:  # metric loss_spike with a comparison of its own
            condition = z is not None and self.compare(z, self.threshold)
        return self.verdict(step, z, condition, False)

    def verdict(self, step: int, shown: float | None, condition: bool, nonfinite: bool) -> Alert | None:
        """Record the outcome of an evaluation; the Alert when it fires (not in cooldown)."""
        if self.spike:
            self.condition, self.last_value = condition, shown
        if not condition:
            return None
        if self.last_fired is not None and self.last_fired <= step < self.last_fired + self.cooldown:
            return None
        self.last_fired = step
        self.fired += 1
        return Alert(rule=self.id, metric=self.metric, step=step, value=shown,
                     threshold=self.threshold, message=self.describe(step, shown, nonfinite),
                     action=self.action, severity=self.severity)

    def describe(self, step: int, value: float | None, nonfinite: bool) -> str:
        label = LABELS.get(self.metric, self.metric)
        if nonfinite:
            return f"{self.field} is not finite (NaN or infinity) at step {step}"
        if self.spike:
            shown = "n/a" if value is None else f"{value:.1f}"
            return (f"{self.field} spiked at step {step}: robust z-score {shown} "
                    f"{'>' if self.op == 'spike' else self.op} {self.threshold:g} over the last "
                    f"{SPIKE_WINDOW} steps")
        return (f"{label} {format_value(self.metric, value)} {self.op} "
                f"{format_value(self.metric, self.threshold)} at step {step}")

    def in_alert(self, last_step: int) -> bool:
        if self.spike:
            return self.last_fired is not None and last_step < self.last_fired + max(self.cooldown, 1)
        return self.last_value is not None and bool(self.compare(self.last_value, self.threshold))


class RuleEngine:
    """Every rule, split by the event type it reads."""

    def __init__(self, rules: Iterable[dict[str, Any]]) -> None:
        self.rules = [Rule(r) for r in rules]
        self.step_rules = [r for r in self.rules if r.field in STEP_METRICS]
        self.validation_rules = [r for r in self.rules if r.field == "pass_rate"]
        self._every_step_thresholds = [r for r in self.step_rules if r.every == 1 and not r.spike]
        self._every_step_spikes = [(r, r.detector) for r in self.step_rules
                                   if r.every == 1 and r.detector is not None]
        self._with_cadence = [r for r in self.step_rules if r.every > 1]

    def on_step(self, step: int, event: Any) -> list[Alert] | None:
        """Evaluate the step rules due at this step; the alerts that fired, or None.

        ``event`` is a StepEvent (stepevent.py). This runs for every step event, so the rules
        evaluated at every step (the defaults) take
        a short path: one lookup and one comparison each, or one screen of the spike detector.
        A field that is not a number raises TypeError (the caller counts the event as bad).
        """
        fired: list[Alert] | None = None
        for rule in self._every_step_thresholds:
            value = getattr(event, rule.field)
            if value is None:
                continue
            condition = rule.compare(value, rule.threshold)
            rule.last_value = value
            if condition:
                alert = rule.verdict(step, value if type(value) is float else as_number(value), True, False)
                if alert is not None:
                    fired = [*(fired or ()), alert]
        for rule, detector in self._every_step_spikes:
            value = getattr(event, rule.field)
            if value is None:
                marks = event.nonfinite or ()
                alert = rule.verdict(step, None, True, True) if rule.field in marks else None
            else:
                z = detector.score(value if type(value) is float else float(as_number(value) or 0.0),
                                   rule.threshold)
                alert = rule.judge_z(step, z) if z is not None else None
            if alert is not None:
                fired = [*(fired or ()), alert]
        for rule in self._with_cadence:
            value = getattr(event, rule.field)
            marks = event.nonfinite or ()
            alert = rule.evaluate(step, as_number(value), value is None and rule.field in marks)
            if alert is not None:
                fired = [*(fired or ()), alert]
        return fired

    def on_validation(self, step: int, event: dict[str, Any]) -> list[Alert]:
        fired: list[Alert] = []
        value = as_number(event.get("pass_rate"))
        for rule in self.validation_rules:
            alert = rule.evaluate(step, value, False)
            if alert is not None:
                fired.append(alert)
        return fired

    def in_alert(self, last_step: int) -> list[Rule]:
        return [r for r in self.rules if r.in_alert(last_step)]


def as_number(value: Any) -> float | None:
    """A metric value as a float; None for missing. A non-number is a bad event (TypeError)."""
    if value is None or type(value) is float:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected a number, found {type(value).__name__} {value!r}")
