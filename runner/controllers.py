"""The runner's automatic decisions, as small state machines the loop feeds one number at a time.

- ``StabilityGuard``: non-finite loss or gradient norm -> skip the update; ``nonfinite_limit`` of
  them in a row -> roll back to the last good checkpoint and lower the learning rate. A loss whose
  robust z-score over the last ``window`` finite losses exceeds ``spike_threshold`` -> alert, and
  with ``spike_action: rollback`` the same rollback (docs/reference.md section 5, training
  instability).
- ``EarlyStopping``: stop after ``patience`` evaluations without an improvement of ``min_delta``.
- ``DynamicBatch``: when measured efficiency is below the target, the next batch size is
  ``min(current * factor, max)`` rounded to a multiple of world size x group size
  (docs/reference.md section 4).

Each is pure (no torch, no I/O, no clock), so tests drive it with planted numbers, and each has
``state_dict`` / ``load_state_dict`` with JSON-friendly values so a checkpoint carries it and a
resumed run decides exactly as the uninterrupted one would have.

``Controllers`` holds them all for the training loop: after each step it turns the step's record
into one ``Decision`` (go on, roll back, stop, resize the batch) that the loop acts on. A new
controller is added there, in one place: its construction, its part of the decision, its state.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import DynamicBatchConfig, EarlyStoppingConfig, StabilityConfig

# 1.4826 x MAD estimates the standard deviation of normal data; the modified z-score's usual scale.
MAD_TO_SIGMA = 1.4826
# With a flat history (MAD 0) the mean absolute deviation stands in, as in the modified z-score
# convention. The scale never goes below this floor: an on-policy RL loss sits near 0 (the
# advantages are centred), its MAD can be ~1e-9, and a move of 0.02 is noise there, not a spike.
# With the default threshold 6, a loss has to move by more than 0.06 to count.
SCALE_FLOOR = 0.01


def robust_z(value: float, history: list[float]) -> float:
    """(value - median) / (1.4826 x MAD) over ``history``; the mean absolute deviation (x 1.2533)
    stands in when the MAD is 0."""
    med = statistics.median(history)
    deviations = [abs(x - med) for x in history]
    scale = MAD_TO_SIGMA * statistics.median(deviations)
    if scale == 0.0:
        scale = 1.2533 * statistics.fmean(deviations)
    return (value - med) / max(scale, SCALE_FLOOR)


@dataclass(frozen=True)
class Verdict:
    """What the loop must do with this step: ``skip`` the update, ``alert``, ``rollback``."""

    skip: bool = False
    alert: bool = False
    rollback: bool = False
    cause: str = ""
    z: float | None = None


class StabilityGuard:
    """Watches each step's world-mean loss and global gradient norm before the optimizer step.

    ``check(loss, grad_norm)`` returns a Verdict; call it once per step, before stepping, with
    values every rank agrees on. A spike is judged only once the window holds ``min_history``
    finite losses (a z-score of three numbers means little). The spiking loss is not added to the
    window, so one outlier does not widen the scale that judges the next. ``rolled_back`` records
    a rollback: it raises ``lr_scale`` by ``lr_factor`` and clears the streak; the loop keeps
    ``lr_scale`` and ``rollbacks`` across the checkpoint it rolls back to (``carry``).
    """

    def __init__(self, *, nonfinite_limit: int = 3, spike_threshold: float = 6.0, window: int = 50,
                 min_history: int = 8, spike_action: str = "alert", lr_factor: float = 0.5) -> None:
        if spike_action not in ("alert", "rollback"):
            raise ValueError(f"spike_action must be 'alert' or 'rollback', not {spike_action!r}")
        self.nonfinite_limit = max(int(nonfinite_limit), 1)
        self.spike_threshold = float(spike_threshold)
        self.window = max(int(window), 2)
        self.min_history = max(min(int(min_history), self.window), 2)
        self.spike_action = spike_action
        self.lr_factor = float(lr_factor)
        self.history: deque[float] = deque(maxlen=self.window)
        self.nonfinite_streak = 0
        self.lr_scale = 1.0
        self.rollbacks = 0

    def check(self, loss: float, grad_norm: float) -> Verdict:
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self.nonfinite_streak += 1
            cause = (f"non_finite: loss={loss} grad_norm={grad_norm} "
                     f"({self.nonfinite_streak} in a row, limit {self.nonfinite_limit})")
            return Verdict(skip=True, rollback=self.nonfinite_streak >= self.nonfinite_limit,
                           cause=cause)
        self.nonfinite_streak = 0
        if len(self.history) >= self.min_history:
            z = robust_z(loss, list(self.history))
            if abs(z) > self.spike_threshold:
                cause = (f"loss_spike: loss {loss:.4g} has robust z-score {z:.1f} over the last "
                         f"{len(self.history)} losses (threshold {self.spike_threshold:g})")
                rollback = self.spike_action == "rollback"
                return Verdict(skip=rollback, alert=True, rollback=rollback, cause=cause, z=z)
        self.history.append(loss)
        return Verdict()

    def rolled_back(self) -> float:
        """Count a rollback and lower the learning rate; returns the new lr scale."""
        self.rollbacks += 1
        self.lr_scale *= self.lr_factor
        self.nonfinite_streak = 0
        return self.lr_scale

    def carry(self) -> dict[str, Any]:
        """What survives a rollback (the checkpoint restores everything else)."""
        return {"lr_scale": self.lr_scale, "rollbacks": self.rollbacks}

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "nonfinite_streak": self.nonfinite_streak,
                **self.carry()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = deque((float(x) for x in state["history"]), maxlen=self.window)
        self.nonfinite_streak = int(state["nonfinite_streak"])
        self.lr_scale = float(state["lr_scale"])
        self.rollbacks = int(state["rollbacks"])


class EarlyStopping:
    """Stop once ``patience`` evaluations in a row failed to beat the best by more than min_delta.

    ``update(step, value)`` returns True when the run should stop; a non-finite value counts as
    no improvement. ``best`` and ``best_step`` name the checkpoint worth keeping; ``stopped``
    stays True, so a run resumed from the stopping checkpoint stops again instead of training on.
    """

    def __init__(self, *, patience: int = 10, min_delta: float = 0.001, mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
        self.patience = max(int(patience), 1)
        self.min_delta = float(min_delta)
        self.mode = mode
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad_evals = 0
        self.stopped = False

    def improves(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        gain = value - self.best if self.mode == "max" else self.best - value
        return gain > self.min_delta

    def update(self, step: int, value: float) -> bool:
        if self.improves(value):
            self.best, self.best_step, self.bad_evals = float(value), int(step), 0
        else:
            self.bad_evals += 1
        self.stopped = self.stopped or self.bad_evals >= self.patience
        return self.stopped

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "bad_evals": self.bad_evals,
                "stopped": self.stopped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = None if state["best"] is None else float(state["best"])
        self.best_step = None if state["best_step"] is None else int(state["best_step"])
        self.bad_evals = int(state["bad_evals"])
        self.stopped = bool(state["stopped"])


def next_batch_size(current: int, factor: float, maximum: int, unit: int) -> int:
    """``min(current * factor, maximum)`` rounded down to a multiple of ``unit``; at least one
    ``unit`` more than ``current`` when that still fits under the maximum (so small batches, where
    x1.2 rounds back down, still grow), and never above ``maximum`` rounded down to the unit."""
    cap = (maximum // unit) * unit
    if cap <= current:
        return current
    grown = (min(int(current * factor), cap) // unit) * unit
    return max(grown, current + unit) if current + unit <= cap else current


class DynamicBatch:
    """The batch size (completions per step, as training.batch_size) steered by efficiency.

    ``observe(efficiency)`` takes one step's measured efficiency in [0, 1]; every ``every_steps``
    observations it compares their mean with the target and returns the new batch size when it
    grows (None otherwise). Every size it returns divides by ``unit`` (world size x group size) and
    is at most ``maximum``.
    """

    def __init__(self, batch_size: int, *, unit: int, maximum: int, target: float = 0.8,
                 factor: float = 1.2, every_steps: int = 10) -> None:
        if batch_size % unit:
            raise ValueError(f"batch size {batch_size} is not a multiple of {unit}")
        self.batch_size = int(batch_size)
        self.unit = int(unit)
        self.maximum = int(maximum)
        self.target = float(target)
        self.factor = float(factor)
        self.every_steps = max(int(every_steps), 1)
        self.window: list[float] = []
        self.last_efficiency: float | None = None

    def observe(self, efficiency: float | None) -> int | None:
        if efficiency is None or not math.isfinite(efficiency):
            return None
        self.window.append(float(efficiency))
        if len(self.window) < self.every_steps:
            return None
        self.last_efficiency = statistics.fmean(self.window)
        self.window = []
        if self.last_efficiency >= self.target:
            return None
        new = next_batch_size(self.batch_size, self.factor, self.maximum, self.unit)
        if new == self.batch_size:
            return None
        self.batch_size = new
        return new

    def state_dict(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "window": list(self.window),
                "last_efficiency": self.last_efficiency}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_size = int(state["batch_size"])
        self.window = [float(x) for x in state["window"]]
        last = state["last_efficiency"]
        self.last_efficiency = None if last is None else float(last)


class ThroughputEfficiency:
    """Efficiency on a CPU run, where there is no utilization counter worth steering by: this
    step's tokens per second against the best seen so far (1.0 at a new best)."""

    def __init__(self) -> None:
        self.best = 0.0

    def __call__(self, tokens_per_s: float) -> float | None:
        if not math.isfinite(tokens_per_s) or tokens_per_s <= 0:
            return None
        self.best = max(self.best, tokens_per_s)
        return tokens_per_s / self.best

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = float(state["best"])


def scaled_lr(lr: float, old: int, new: int, rule: str) -> float:
    """The learning rate after the batch changed from ``old`` to ``new``: ``none`` keeps it (the
    loss is a mean over tokens, so a bigger batch only lowers the gradient's noise, and AdamW
    normalizes its scale), ``sqrt`` multiplies by sqrt(new / old) (the square-root rule for Adam),
    ``linear`` by new / old (the SGD rule)."""
    if rule == "none":
        return lr
    ratio = new / old
    if rule == "sqrt":
        return lr * math.sqrt(ratio)
    if rule == "linear":
        return lr * ratio
    raise ValueError(f"lr scaling rule must be none, sqrt or linear, not {rule!r}")


# metric name (checkpoints.metric, early_stopping.metric) -> (step event field, or "validation"
# for the validation pass rate; which way is better). Step metrics are averaged over the steps
# since the previous evaluation. validation_loss is not computed by this runner.
METRICS: dict[str, tuple[str, str]] = {
    "validation_accuracy": ("validation", "max"),
    "validation_pass_rate": ("validation", "max"),
    "training_loss": ("loss", "min"),
    "pass_rate": ("pass_rate", "max"),
    "gpu_utilization": ("utilization", "max"),
    "memory_usage": ("memory_gib", "min"),
    "gen_len_mean": ("gen_len_mean", "max"),
    "truncation_rate": ("truncation_rate", "min"),
}


class MetricWindow:
    """The value of one named metric at each evaluation (see METRICS); ``known`` is False for a
    name this runner does not compute, whose value is then always None."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.field, self.mode = METRICS.get(name, ("", "max"))
        self.known = name in METRICS
        self.values: list[float] = []

    def add_step(self, fields: Mapping[str, Any]) -> None:
        value = fields.get(self.field)
        if self.field != "validation" and isinstance(value, (int, float)) and math.isfinite(value):
            self.values.append(float(value))

    def at_eval(self, validation_pass_rate: float) -> float | None:
        """The metric's value at this evaluation; starts the next window."""
        if not self.known:
            return None
        if self.field == "validation":
            return validation_pass_rate
        values, self.values = self.values, []
        return statistics.fmean(values) if values else None

    def state_dict(self) -> dict[str, Any]:
        return {"values": list(self.values)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values = [float(x) for x in state["values"]]


# --- the controllers together: one decision after each step ---------------------------------------


@dataclass(frozen=True)
class Stop:
    """End the run: ``status`` "stopped" (a decision to stop) or "failed"; ``action`` is the
    action event's kind and extra fields; ``save``: checkpoint the step it stopped at."""

    status: str
    reason: str
    action: Mapping[str, Any]
    save: bool


@dataclass(frozen=True)
class Resize:
    """Grow the batch to ``new`` completions, after ``efficiency`` fell short of the target."""

    new: int
    efficiency: float | None
    reason: str


@dataclass(frozen=True)
class Decision:
    """What the loop does after a step. Nothing set: go on. ``rollback``: roll back to the last
    good checkpoint (the cause; nothing else is decided then). ``stop`` and ``resize`` may come
    together (an early stop at the step the batch grows)."""

    rollback: str | None = None
    stop: Stop | None = None
    resize: Resize | None = None


class Controllers:
    """The stability guard, the checkpoint and early-stopping metrics, early stopping and the
    dynamic batch size, as the training loop sees them.

    ``check`` judges an update before the optimizer steps; ``after_step`` takes the step's event
    fields (and the validation pass rate on an evaluation step) and returns the Decision.
    ``ckpt_value`` is the checkpoint metric at the latest evaluation and its step.
    """

    def __init__(self, *, stability: StabilityConfig, early_stopping: EarlyStoppingConfig,
                 dynamic_batch: DynamicBatchConfig, checkpoint_metric: str, batch_size: int,
                 unit: int, notes: list[str]) -> None:
        self.guard = StabilityGuard(
            nonfinite_limit=stability.nonfinite_limit, lr_factor=stability.lr_factor,
            spike_threshold=stability.spike_threshold, window=stability.spike_window,
            spike_action=stability.spike_action)
        self.max_rollbacks = stability.max_rollbacks
        self.ckpt_metric = MetricWindow(checkpoint_metric)
        self.ckpt_value: tuple[float | None, int | None] = (None, None)
        self.stop_metric = MetricWindow(early_stopping.metric)
        self.stopper: EarlyStopping | None = None
        if early_stopping.enabled and self.stop_metric.known:
            self.stopper = EarlyStopping(patience=early_stopping.patience,
                                         min_delta=early_stopping.min_delta, mode=early_stopping.mode)
        elif early_stopping.enabled:
            notes.append(f"early_stopping.metric {self.stop_metric.name!r} is not computed by this "
                         "runner; early stopping is off")
        self.batcher = DynamicBatch(
            batch_size, unit=unit, maximum=dynamic_batch.max_batch_size, target=dynamic_batch.target,
            factor=dynamic_batch.factor, every_steps=dynamic_batch.every_steps) \
            if dynamic_batch.enabled else None
        self.efficiency_source = dynamic_batch.efficiency
        self.throughput = ThroughputEfficiency()

    def check(self, loss: float, grad_norm: float) -> Verdict:
        """The stability guard's verdict on an update (the world's loss, the global norm)."""
        return self.guard.check(loss, grad_norm)

    def start(self, val_rate: float) -> None:
        """The validation right before RL: the first checkpoint's value, and the reference value
        of the early-stopping metric (never a stop candidate itself)."""
        self.ckpt_value = (self.ckpt_metric.at_eval(val_rate), 0)
        self.stop_metric.at_eval(val_rate)

    def stopped_already(self) -> Stop | None:
        """A run resumed from the checkpoint an early stop wrote: the stop stands."""
        if self.stopper is not None and self.stopper.stopped:
            return Stop("stopped", f"early stopping had stopped this run (best step "
                                   f"{self.stopper.best_step})", {}, save=False)
        return None

    def after_step(self, step: int, fields: Mapping[str, Any], *, rollback: str | None,
                   val_rate: float | None, last: bool) -> Decision:
        """The decision on a step: ``rollback`` is the guard's cause when it asked for one;
        ``val_rate`` the validation pass rate when the step was evaluated; ``last``: the final step."""
        self.ckpt_metric.add_step(fields)
        self.stop_metric.add_step(fields)
        if rollback is not None:
            if self.guard.rollbacks >= self.max_rollbacks:
                reason = (f"{rollback}; stability.max_rollbacks={self.max_rollbacks} rollbacks "
                          "already made")
                return Decision(stop=Stop("failed", reason, {"kind": "stop"}, save=False))
            return Decision(rollback=rollback)
        stop = self._evaluated(step, val_rate, last) if val_rate is not None else None
        return Decision(stop=stop, resize=self._resize(fields))

    def _evaluated(self, step: int, val_rate: float, last: bool) -> Stop | None:
        self.ckpt_value = (self.ckpt_metric.at_eval(val_rate), step)
        value = self.stop_metric.at_eval(val_rate)
        stopper = self.stopper
        if stopper is None or value is None or not stopper.update(step, value) or last:
            return None
        reason = (f"early stopping: {self.stop_metric.name} did not improve by more than "
                  f"{stopper.min_delta:g} in {stopper.patience} evaluations; best "
                  f"{stopper.best:.4g} at step {stopper.best_step}")
        return Stop("stopped", reason, {"kind": "early_stop", "best_step": stopper.best_step,
                                        "best": stopper.best}, save=True)

    def _resize(self, fields: Mapping[str, Any]) -> Resize | None:
        """Grow the batch while the efficiency is below the target: GPU utilization, or on a CPU
        the throughput against the best so far."""
        if self.batcher is None:
            return None
        source = self.efficiency_source
        efficiency: float | None
        if source == "utilization" or (source == "auto" and fields["utilization_source"] == "gpu"):
            efficiency = _number(fields["utilization"])
        else:
            efficiency = self.throughput(_number(fields["tokens_per_s"]))
        new = self.batcher.observe(efficiency)
        if new is None:
            return None
        last = self.batcher.last_efficiency
        assert last is not None  # observe() measured it before it grew the batch
        return Resize(new, last, f"mean efficiency {last:.3f} over {self.batcher.every_steps} "
                                      f"steps < target {self.batcher.target:g}")

    @property
    def lr_scale(self) -> float:
        """The factor on the learning rate that stability rollbacks have applied."""
        return self.guard.lr_scale

    def save_now(self) -> bool:
        """A periodic save waits out a non-finite streak, so a rollback lands before the trouble."""
        return self.guard.nonfinite_streak == 0

    def carry(self) -> dict[str, Any]:
        """What survives a rollback: the guard's lr scale and rollback count (``rolled_back``)."""
        return self.guard.carry()

    def rolled_back(self, carried: Mapping[str, Any]) -> None:
        """After a rollback restored the checkpoint's state: the guard takes back what ``carry``
        kept from before, counts this rollback and lowers the learning rate."""
        self.guard.lr_scale, self.guard.rollbacks = carried["lr_scale"], carried["rollbacks"]
        self.guard.rolled_back()

    def state_dict(self) -> dict[str, Any]:
        return {"ckpt_value": list(self.ckpt_value), "guard": self.guard.state_dict(),
                "early_stopping": self.stopper.state_dict() if self.stopper else None,
                "dynamic_batch": self.batcher.state_dict() if self.batcher else None,
                "throughput": self.throughput.state_dict(), "ckpt_metric": self.ckpt_metric.state_dict(),
                "stop_metric": self.stop_metric.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.ckpt_value = (state["ckpt_value"][0], state["ckpt_value"][1])
        self.guard.load_state_dict(state["guard"])
        if self.stopper and state.get("early_stopping"):
            self.stopper.load_state_dict(state["early_stopping"])
        if self.batcher and state.get("dynamic_batch"):
            self.batcher.load_state_dict(state["dynamic_batch"])
        self.throughput.load_state_dict(state["throughput"])
        self.ckpt_metric.load_state_dict(state["ckpt_metric"])
        self.stop_metric.load_state_dict(state["stop_metric"])


def _number(value: Any) -> float:
    """A step field as a float: NaN where the event holds none."""
    return float(value) if isinstance(value, (int, float)) else float("nan")
