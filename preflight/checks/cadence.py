"""Cadences and the run's length: evaluation and checkpoints, the metrics they are judged on,
early stopping, recovery, the warm start, the dynamic batch size and the stability guard, each
against training.max_steps and against the others. A cadence that never comes round inside the
run, or a setting the runner could never act on, fails; one that acts on stale or noisy values
warns."""

from __future__ import annotations

import math

from ..presets import (
    ESCALATION,
    METRIC_BETTER,
    MIN_DELTA_RATE_WARN,
    RATE_METRICS,
    SPIKE_MIN_HISTORY,
    SPIKE_THRESHOLD_MIN,
    TRACKED_METRICS,
    WARM_START_CHECK_STEPS,
    WARM_START_LR_FACTOR,
    Band,
    beyond,
    lr_band,
)
from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed, skipped, warned
from ..spec import Spec
from ._relations import Findings
from .config import WORLD


@check("config.intervals", "Eval and save intervals fit the run", "static", rules=(
    Rule("training.eval_interval", ("training.max_steps",), "fail", "at most max_steps, or the run never validates"),
    Rule("checkpoints.save_interval", ("training.max_steps", "distributed.checkpoint_recovery"), "fail",
         "at most max_steps with checkpoint recovery on, or a failure restarts the run from step 0"),
    Rule("checkpoints.save_interval", ("training.eval_interval", "checkpoints.save_best_only"), "warn",
         "a multiple of eval_interval with save_best_only, so 'best' is judged on a fresh validation"),
))
def intervals(ctx: Context) -> Outcome:
    """eval_interval and save_interval at most max_steps (else no validation ever happens, or only
    the step-0 checkpoint exists for recovery to resume from); with save_best_only, save_interval a
    multiple of eval_interval so the metric that picks the best checkpoint is fresh when it is saved."""
    s = ctx.spec
    steps, ev, save = int(s.get("training.max_steps")), int(s.get("training.eval_interval")), int(s.get("checkpoints.save_interval"))
    found = f"max_steps {steps}, eval_interval {ev}, save_interval {save}"
    expected = "both intervals <= max_steps; save_interval a multiple of eval_interval with save_best_only"
    if ev > steps:
        return failed(found, expected, f"set training.eval_interval <= {steps}: the run would never validate")
    if save > steps and s.get("distributed.checkpoint_recovery"):
        return failed(found, expected, f"set checkpoints.save_interval <= {steps}: only the step-0 checkpoint "
                      "would exist to recover from, so a failure restarts the run from the beginning")
    if s.get("checkpoints.save_best_only") and save % ev:
        return warned(found, expected, f"use a save_interval that is a multiple of {ev}, so 'best' is judged on "
                      "a fresh validation")
    return passed(found, expected)


def metric_source(spec: Spec, metric: str) -> tuple[bool, str]:
    """Whether the built-in runner produces this metric, and why (not)."""
    kind = TRACKED_METRICS.get(metric)
    if kind is None:
        return False, (f"'{metric}' is not a metric the runner records "
                       f"({', '.join(sorted(TRACKED_METRICS))})")
    if kind == "validation":
        if spec.get("data.train") and not spec.get("data.val"):
            return False, f"'{metric}' needs a validation split, and data.val is not set"
        if int(spec.get("training.eval_interval")) > int(spec.get("training.max_steps")):
            return False, f"'{metric}' is never computed: eval_interval exceeds max_steps"
        return True, f"'{metric}' is computed every {spec.get('training.eval_interval')} steps"
    return True, f"'{metric}' is recorded every step"


@check("config.checkpoint.metric", "Best-checkpoint metric is evaluated", "static", rules=(
    Rule("checkpoints.metric", ("checkpoints.save_best_only", "data.val", "training.eval_interval"), "fail",
         "a metric the built-in runner computes; a validation metric needs a validation split and an "
         "evaluation inside the run"),
))
def checkpoint_metric(ctx: Context) -> Outcome:
    """With save_best_only, checkpoints.metric must be a metric the run actually computes (a
    validation metric needs a validation split and an eval interval inside the run)."""
    if not ctx.spec.get("checkpoints.save_best_only"):
        return skipped("save_best_only is off: every checkpoint is kept by recency")
    metric = str(ctx.spec.get("checkpoints.metric"))
    ok, why = metric_source(ctx.spec, metric)
    if not ok:
        return failed(why, "a metric the run computes", "set checkpoints.metric to a tracked metric, or add what it needs")
    return passed(why, "a metric the run computes")


def _early_stopping_findings(spec: Spec, metric: str, f: Findings) -> None:
    """Mode, min_delta and horizon of an early stop on a metric the run computes."""
    mode, better = str(spec.get("early_stopping.mode")), METRIC_BETTER.get(metric)
    if better is not None and mode != better:
        f.fail(f"mode {mode} on '{metric}', which is better when {'higher' if better == 'max' else 'lower'}",
               f"set early_stopping.mode: {better}, or early stopping counts every real improvement as none "
               "and stops a run that is still learning")
    delta = float(spec.get("early_stopping.min_delta"))
    if metric in RATE_METRICS and delta >= 1.0:
        f.fail(f"min_delta {delta:g} on '{metric}', a rate in [0, 1] that can never improve by that much",
               f"set early_stopping.min_delta well under {MIN_DELTA_RATE_WARN:g} (0.001 is usual)")
    elif metric in RATE_METRICS and delta > MIN_DELTA_RATE_WARN:
        f.warn(f"min_delta {delta:g} on '{metric}': more than {MIN_DELTA_RATE_WARN:g} per evaluation is rare",
               "lower early_stopping.min_delta (0.001 is usual), or the run stops while it still learns")
    ev, steps = int(spec.get("training.eval_interval")), int(spec.get("training.max_steps"))
    horizon = int(spec.get("early_stopping.patience")) * ev
    if horizon >= steps:
        f.warn(f"patience covers {horizon} steps ({spec.get('early_stopping.patience')} evaluations every "
               f"{ev} steps), not less than max_steps {steps}",
               "early stopping cannot trigger in this run; lower the patience or accept that it is off")


@check("config.early_stopping.metric", "Early-stopping metric is tracked", "static", rules=(
    Rule("early_stopping.metric", ("data.val", "training.eval_interval"), "fail",
         "a metric the built-in runner computes"),
    Rule("early_stopping.patience", ("training.eval_interval", "training.max_steps"), "warn",
         "patience x eval_interval < max_steps, or early stopping can never trigger"),
    Rule("early_stopping.mode", ("early_stopping.metric",), "fail",
         "the metric's better direction: max for pass rates and accuracy, min for losses"),
    Rule("early_stopping.min_delta", ("early_stopping.metric",), "warn above 0.1; fail at 1 or more on a rate",
         "an improvement the metric can make in one evaluation"),
))
def early_stopping_metric(ctx: Context) -> Outcome:
    """early_stopping.metric must be computed by the run; mode its better direction (max for pass
    rates, min for losses); min_delta an improvement a rate in [0, 1] can make (>= 1 fails, above
    0.1 warns); and patience x eval_interval should fit inside max_steps (the runner looks at the
    metric at each evaluation, so early stopping could never trigger)."""
    if not ctx.spec.get("early_stopping.enabled"):
        return skipped("early stopping is off")
    s = ctx.spec
    metric = str(s.get("early_stopping.metric"))
    ok, why = metric_source(s, metric)
    if not ok:
        return failed(why, "a metric the run computes", "set early_stopping.metric to a tracked metric")
    f = Findings()
    _early_stopping_findings(s, metric, f)
    expected = (f"a computed metric, mode {METRIC_BETTER.get(metric, 'max or min')}, patience x eval_interval < "
                f"max_steps ({s.get('training.max_steps')})")
    return f.outcome(why, expected)


@check("config.recovery.retries", "Retries for checkpoint recovery", "static", rules=(
    Rule("distributed.max_retries", ("distributed.checkpoint_recovery",), "fail",
         "at least 1 with checkpoint_recovery, or the first worker failure ends the run"),
    Rule("distributed.checkpoint_recovery", ("distributed.max_retries",), "warn",
         "on when max_retries > 0, or each retry starts the run over from step 0"),
))
def recovery_retries(ctx: Context) -> Outcome:
    """With distributed.checkpoint_recovery on, distributed.max_retries must be at least 1
    (default 3), or the first worker failure ends the run. With recovery off, Ray still restarts
    the workers max_retries times, and each restart trains from step 0 again."""
    on, retries = ctx.spec.get("distributed.checkpoint_recovery"), int(ctx.spec.get("distributed.max_retries"))
    found = f"checkpoint_recovery {'on' if on else 'off'}, max_retries = {retries}"
    if not on and retries > 0:
        return warned(found, "max_retries 0, or checkpoint_recovery on",
                      "turn distributed.checkpoint_recovery on so a retry resumes from the latest checkpoint, or "
                      "set max_retries: 0; as it is each of the retries repeats the run from step 0")
    if not on:
        return skipped("checkpoint_recovery is off and no retries are asked for")
    if retries < 1:
        return failed(found, ">= 1 with checkpoint_recovery", "set distributed.max_retries: 3")
    return passed(found, ">= 1 with checkpoint_recovery")


@check("config.warm_start", "Supervised warm start fits the model", "static", rules=(
    Rule("training.warm_start_target", ("training.warm_start_steps",), "fail",
         "in (0, 1]: a target of 0 ends the warm start at its first look"),
    Rule("training.warm_start_steps", ("training.warm_start_target",), "warn",
         "at least 25 with a target: the pass rate is looked at every 25 steps"),
    Rule("training.warm_start_lr", ("model.params_b",), "warn; fail beyond 10x the band",
         "inside the fine-tuning band for the model's size (the RL band x 10)"),
))
def warm_start(ctx: Context) -> Outcome:
    """With training.warm_start_steps > 0: warm_start_target, when set, above 0 (a target of 0 is
    met at the first look, so the warm start does nothing) and looked at at all (the runner looks
    every 25 steps); warm_start_lr inside the fine-tuning band for the model's size, the RL
    learning-rate band x 10 (a pretrained 7B model at the default 1e-3 is far above it)."""
    s = ctx.spec
    steps = int(s.get("training.warm_start_steps"))
    if steps <= 0:
        return skipped("no supervised warm start (training.warm_start_steps is 0)")
    target, lr = s.get("training.warm_start_target"), float(s.get("training.warm_start_lr"))
    size = lr_band(float(s.get("model.params_b")))
    band = Band((size.band.low or 0) * WARM_START_LR_FACTOR, (size.band.high or 0) * WARM_START_LR_FACTOR)
    f = Findings()
    if target is not None and float(target) <= 0:
        f.fail("warm_start_target 0 is met at the first look: the warm start ends at once",
               "set training.warm_start_target in (0, 1] (e.g. 0.3), or null to run all warm_start_steps")
    elif target is not None and steps < WARM_START_CHECK_STEPS:
        f.warn(f"warm_start_steps {steps} < {WARM_START_CHECK_STEPS}: the target is never looked at",
               f"use at least {WARM_START_CHECK_STEPS} warm_start_steps with a target")
    if beyond(lr, band):
        f.fail(f"warm_start_lr {lr:g} is more than {ESCALATION:g}x outside {band.describe()} for {size.models}",
               f"set training.warm_start_lr inside {band.describe()}")
    elif not band.contains(lr):
        f.warn(f"warm_start_lr {lr:g} outside {band.describe()} for {size.models}",
               f"set training.warm_start_lr inside {band.describe()}")
    found = f"{steps} warm-start steps at lr {lr:g}" + (f" to a pass rate of {target:g}" if target is not None else "")
    return f.outcome(found, f"lr in {band.describe()}; a target in (0, 1] looked at every "
                     f"{WARM_START_CHECK_STEPS} steps")


def _dynamic_growth(spec: Spec, f: Findings) -> tuple[int, int]:
    """The batch's room to grow (largest batch, unit); records what stops it."""
    bs, unit = int(spec.get("training.batch_size")), spec.world_size * int(spec.get("training.group_size"))
    most = int(spec.get("dynamic_batch.max_batch_size"))
    cap = (most // unit) * unit
    if cap <= bs:
        bigger = max(2 * bs // unit * unit, bs + unit)
        f.fail(f"max_batch_size {most} rounds down to {cap} (a multiple of world size x group_size {unit}), "
               f"not above batch_size {bs}: the batch can never grow",
               f"set dynamic_batch.max_batch_size to a multiple of {unit} above {bs}, e.g. {bigger}")
    elif most % unit:
        f.warn(f"max_batch_size {most} is not a multiple of {unit} (world size x group_size): the runner "
               f"stops at {cap}", f"set dynamic_batch.max_batch_size: {cap}")
    return max(cap, bs), unit


def _dynamic_lr(spec: Spec, largest: int, f: Findings) -> None:
    """The learning rate after the largest growth under lr_scaling, against the band."""
    rule, bs = str(spec.get("dynamic_batch.lr_scaling")), int(spec.get("training.batch_size"))
    if rule == "none" or largest <= bs:
        return
    ratio = largest / bs
    lr = float(spec.get("training.learning_rate")) * (math.sqrt(ratio) if rule == "sqrt" else ratio)
    size = lr_band(float(spec.get("model.params_b")))
    if beyond(lr, size.band):
        f.fail(f"lr_scaling {rule} takes the learning rate to {lr:.3g} at batch {largest}, more than "
               f"{ESCALATION:g}x outside {size.band.describe()}",
               "use dynamic_batch.lr_scaling: none or sqrt, or a lower max_batch_size")
    elif not size.band.contains(lr):
        f.warn(f"lr_scaling {rule} takes the learning rate to {lr:.3g} at batch {largest}, outside "
               f"{size.band.describe()}", "use dynamic_batch.lr_scaling: none or sqrt, or a lower max_batch_size")


@check("config.dynamic_batch", "Dynamic batch size can act", "static", rules=(
    Rule("dynamic_batch.max_batch_size", ("training.batch_size", "dynamic_batch.enabled"), "fail",
         "rounded down to world size x group_size, above batch_size: room to grow"),
    Rule("dynamic_batch.max_batch_size", ("training.group_size", *WORLD), "warn",
         "a multiple of world size x group_size (the runner rounds it down)"),
    Rule("dynamic_batch.every_steps", ("training.max_steps",), "fail",
         "under max_steps, or no decision is ever made"),
    Rule("dynamic_batch.target_efficiency", ("dynamic_batch.enabled",), "fail",
         "above 0: efficiency is never below 0, so the batch would never grow"),
    Rule("dynamic_batch.efficiency", ("hardware.gpu_required", "hardware.gpus_per_node"), "fail",
         "utilization needs GPUs: a CPU run never measures it"),
    Rule("dynamic_batch.lr_scaling", ("training.learning_rate", "dynamic_batch.max_batch_size", "model.params_b"),
         "warn; fail beyond 10x the band", "the learning rate after the largest growth stays in the band"),
))
def dynamic_batch(ctx: Context) -> Outcome:
    """With dynamic_batch.enabled: max_batch_size, rounded down to a multiple of world size x
    group_size as the runner does, must leave room above training.batch_size (a multiple, or the
    runner rounds it down: warns); every_steps under max_steps so a decision is made; a target
    efficiency above 0; 'utilization' only with GPUs (a CPU run never measures it); and with
    lr_scaling sqrt or linear, the learning rate at the largest batch inside its band (beyond 10x
    fails)."""
    s = ctx.spec
    if not s.get("dynamic_batch.enabled"):
        return skipped("dynamic_batch is off")
    f = Findings()
    largest, unit = _dynamic_growth(s, f)
    every, steps = int(s.get("dynamic_batch.every_steps")), int(s.get("training.max_steps"))
    if every >= steps:
        f.fail(f"every_steps {every} >= max_steps {steps}: no decision is made inside the run",
               f"set dynamic_batch.every_steps below {steps} (default 10)")
    if float(s.get("dynamic_batch.target_efficiency")) <= 0:
        f.fail("target_efficiency 0: efficiency is never below it, so the batch never grows",
               "set dynamic_batch.target_efficiency (default 0.8)")
    if s.get("dynamic_batch.efficiency") == "utilization" and not s.uses_gpus:
        f.fail("efficiency 'utilization' on a run without GPUs: it is never measured, so the batch never grows",
               "use dynamic_batch.efficiency: throughput (or auto) on a CPU run")
    _dynamic_lr(s, largest, f)
    found = (f"batch {s.get('training.batch_size')} may grow to {largest} in steps of {unit}, deciding every "
             f"{every} steps")
    return f.outcome(found, "room to grow, a decision inside the run, an efficiency the run measures")


def _stability_findings(s: Spec, f: Findings) -> None:
    steps = int(s.get("training.max_steps"))
    history = max(min(SPIKE_MIN_HISTORY, int(s.get("stability.spike_window"))), 2)
    if steps <= history:
        f.warn(f"max_steps {steps} <= the {history} losses a spike is judged on: no spike is ever judged",
               "accept that spike detection is off in so short a run")
    limit = int(s.get("stability.nonfinite_limit"))
    if limit > steps:
        f.warn(f"nonfinite_limit {limit} > max_steps {steps}: non-finite steps are skipped but never rolled back",
               f"set stability.nonfinite_limit at most {steps}")
    action, rollbacks = s.get("stability.spike_action"), int(s.get("stability.max_rollbacks"))
    if action == "rollback" and rollbacks == 0:
        f.warn("spike_action rollback with max_rollbacks 0: the first spike ends the run as failed",
               "allow rollbacks (stability.max_rollbacks: 3), or use spike_action: alert")
    threshold = float(s.get("stability.spike_threshold"))
    if threshold < SPIKE_THRESHOLD_MIN:
        f.warn(f"spike_threshold {threshold:g} < {SPIKE_THRESHOLD_MIN:g}: ordinary loss noise counts as a spike"
               + (" and is rolled back" if action == "rollback" else ""), "use stability.spike_threshold: 6")
    lr, factor = float(s.get("training.learning_rate")), float(s.get("stability.lr_factor"))
    floor = lr_band(float(s.get("model.params_b"))).band.low or 0.0
    lowest = lr * factor ** rollbacks
    if rollbacks and lowest < floor / ESCALATION:
        f.warn(f"after {rollbacks} rollbacks at lr_factor {factor:g} the learning rate is {lowest:.2g}, more than "
               f"{ESCALATION:g}x under the band's floor {floor:g}: the run would go on learning nothing",
               "raise stability.lr_factor (0.5 halves it) or lower max_rollbacks")
    if float(s.get("training.grad_clip")) <= 0:
        f.warn("grad_clip 0: gradients are not clipped, the first answer to instability",
               "set training.grad_clip: 1.0 (docs/reference.md section 5)")


@check("config.stability", "Stability guard can act inside the run", "static", rules=(
    Rule("stability.spike_window", ("training.max_steps",), "warn",
         "spikes are judged after min(8, spike_window) losses: the run must be longer"),
    Rule("stability.nonfinite_limit", ("training.max_steps",), "warn",
         "at most max_steps, or non-finite steps are never rolled back"),
    Rule("stability.max_rollbacks", ("stability.spike_action",), "warn",
         "at least 1 with spike_action rollback, or the first spike ends the run"),
    Rule("stability.spike_threshold", ("stability.spike_action",), "warn",
         "at least 3: a lower robust z-score flags ordinary noise"),
    Rule("stability.lr_factor", ("stability.max_rollbacks", "training.learning_rate", "model.params_b"), "warn",
         "after max_rollbacks the learning rate stays within 10x of the band's floor"),
    Rule("training.grad_clip", ("stability.nonfinite_limit",), "warn",
         "above 0: gradient clipping is the first answer to instability"),
))
def stability(ctx: Context) -> Outcome:
    """The runner's stability guard (stability.*) against the run: spikes are judged after
    min(8, spike_window) finite losses, so max_steps must exceed that; nonfinite_limit at most
    max_steps (else a rollback never triggers); spike_action rollback needs max_rollbacks >= 1
    (else the first spike ends the run); spike_threshold >= 3 (below, noise counts); the learning
    rate after max_rollbacks x lr_factor within 10x of the band's floor; and grad_clip above 0
    (docs/reference.md section 5). Each is a warning: the run works, the guard does less."""
    s = ctx.spec
    f = Findings()
    _stability_findings(s, f)
    found = (f"spike z > {s.get('stability.spike_threshold'):g} over {s.get('stability.spike_window')} losses "
             f"({s.get('stability.spike_action')}), rollback after {s.get('stability.nonfinite_limit')} non-finite "
             f"steps, at most {s.get('stability.max_rollbacks')} rollbacks")
    return f.outcome(found, "a guard that can act inside the run")
