"""Static sanity of the run's configuration: ranges, divisibility, intervals, stage consistency."""

from __future__ import annotations

import math

from ..presets import BATCH_RANGE, CLIP_RANGE, LR_RANGE, TEMPERATURE_RANGE, TRACKED_METRICS, Band
from ..registry import Context, check
from ..result import Outcome, failed, passed, skipped, warned
from ..spec import Spec


def _range_check(check_id: str, value: float, band: Band, what: str, key: str, why: str = "") -> Outcome:
    expected = f"{band.describe()} ({what} range)"
    if band.contains(value):
        return passed(f"{key} = {value:g}", expected)
    return warned(f"{key} = {value:g}", expected,
                  f"outside the field's range {band.describe()}{'; ' + why if why else ''}. If intended, "
                  f"silence it with checklist.severity: {{{check_id}: off}}")


@check("config.lr.range", "Learning rate in the field's range", "static")
def lr_range(ctx: Context) -> Outcome:
    """training.learning_rate within 1e-6 .. 1e-5 (docs/reference.md section 4); outside warns."""
    return _range_check("config.lr.range", float(ctx.spec.get("training.learning_rate")), LR_RANGE, "learning-rate",
                        "training.learning_rate", "RL fine-tuning of LLMs diverges easily at higher rates")


@check("config.temperature.range", "Sampling temperature", "static")
def temperature_range(ctx: Context) -> Outcome:
    """training.temperature against the reference range 0.01 .. 0.1, which the source gives for its
    automatic tuning. RL rollouts usually sample near 1.0 so that a group's completions differ, so
    outside the range is only a warning, and the message says what the range is for."""
    return _range_check("config.temperature.range", float(ctx.spec.get("training.temperature")), TEMPERATURE_RANGE, "reference tuning",
                        "training.temperature",
                        "that range is the source's tuning range; RL sampling usually runs near 1.0 so a "
                        "group's completions differ, and very low temperatures make groups zero-variance")


@check("config.clip.range", "Clipping epsilons in range", "static")
def clip_range(ctx: Context) -> Outcome:
    """training.clip_low and clip_high within 0.1 .. 0.5 (docs/reference.md section 4), and clip_high >= clip_low
    (DAPO's clip-higher: eps_low 0.2, eps_high 0.28)."""
    low, high = float(ctx.spec.get("training.clip_low")), float(ctx.spec.get("training.clip_high"))
    found = f"clip_low = {low:g}, clip_high = {high:g}"
    expected = f"both in {CLIP_RANGE.describe()}, clip_high >= clip_low"
    outside = [k for k, v in (("clip_low", low), ("clip_high", high)) if not CLIP_RANGE.contains(v)]
    if outside:
        return warned(found, expected, f"{' and '.join(outside)} outside {CLIP_RANGE.describe()}; DAPO uses 0.2/0.28")
    if high < low:
        return warned(found, expected, "clip-higher expects eps_high >= eps_low (DAPO: 0.2 / 0.28)")
    return passed(found, expected)


def batch_band(spec: Spec) -> tuple[Band, str]:
    stage = spec.stage
    if stage is not None:
        return stage.batch_size, f"the {stage.name} stage's"
    return BATCH_RANGE, "the field's"


@check("config.batch.range", "Batch size for the stage", "static")
def batch_range(ctx: Context) -> Outcome:
    """training.batch_size within the stage's band (small 256-512, medium 768-1024, large 2048+),
    or 512 .. 2048 for a custom stage (docs/reference.md sections 2 and 4); outside warns."""
    band, whose = batch_band(ctx.spec)
    bs = int(ctx.spec.get("training.batch_size"))
    expected = f"{band.describe()} ({whose} band)"
    if band.contains(bs):
        return passed(f"batch_size = {bs}", expected)
    return warned(f"batch_size = {bs}", expected, f"use a batch size in {band.describe()}, or set run.stage to the "
                  "stage this run belongs to")


@check("config.batch.divisibility", "Batch divides into ranks and groups", "static")
def batch_divisibility(ctx: Context) -> Outcome:
    """training.batch_size (completions per step) must be divisible by the world size (every rank
    gets the same share) and by group_size (whole groups of G completions per prompt). Otherwise the
    run crashes at the first step, or silently drops completions."""
    bs, g, world = int(ctx.spec.get("training.batch_size")), int(ctx.spec.get("training.group_size")), ctx.spec.world_size
    found = f"batch_size {bs}, world size {world}, group_size {g}"
    expected = "batch_size divisible by world size and by group_size"
    bad = [f"{bs} % {name} {n} = {bs % n}" for name, n in (("world size", world), ("group_size", g)) if bs % n]
    if bad:
        step = math.lcm(world, g)
        lower, upper = (bs // step) * step, (bs // step + 1) * step
        options = " or ".join(str(x) for x in (lower, upper) if x > 0)
        return failed(found + " (" + "; ".join(bad) + ")", expected,
                      f"use a multiple of {step} (lcm of world size and group size): {options}",
                      world_size=world, lcm=step)
    return passed(f"{found}: {bs // g} prompts/step, {bs // world} completions per rank", expected)


@check("config.group_size", "Groups can have reward variance", "static")
def group_size(ctx: Context) -> Outcome:
    """Group-relative advantages (GRPO, DAPO, ScaleRL) need at least 2 completions per prompt; with
    one, every advantage is zero and nothing is learned."""
    g = int(ctx.spec.get("training.group_size"))
    if g < 2:
        return failed(f"group_size = {g}", ">= 2", "sample at least 2 completions per prompt (8-16 is usual)")
    return passed(f"group_size = {g}", ">= 2")


@check("config.intervals", "Eval and save intervals fit the run", "static")
def intervals(ctx: Context) -> Outcome:
    """eval_interval and save_interval at most max_steps (else no validation or no checkpoint ever
    happens); with save_best_only, save_interval a multiple of eval_interval so the metric that
    picks the best checkpoint is fresh when it is saved."""
    s = ctx.spec
    steps, ev, save = int(s.get("training.max_steps")), int(s.get("training.eval_interval")), int(s.get("checkpoints.save_interval"))
    found = f"max_steps {steps}, eval_interval {ev}, save_interval {save}"
    expected = "both intervals <= max_steps; save_interval a multiple of eval_interval with save_best_only"
    if ev > steps:
        return failed(found, expected, f"set training.eval_interval <= {steps}: the run would never validate")
    if save > steps and s.get("distributed.checkpoint_recovery"):
        return failed(found, expected, f"set checkpoints.save_interval <= {steps}: no checkpoint would exist to "
                      "recover from")
    if s.get("checkpoints.save_best_only") and save % ev:
        return warned(found, expected, f"use a save_interval that is a multiple of {ev}, so 'best' is judged on "
                      "a fresh validation")
    return passed(found, expected)


def metric_source(spec: Spec, metric: str) -> tuple[bool, str]:
    """Whether the run produces this metric, and why (not)."""
    kind = TRACKED_METRICS.get(metric)
    if kind is None:
        return False, f"'{metric}' is not a metric the runner records ({', '.join(sorted(TRACKED_METRICS))})"
    if kind == "validation":
        if spec.get("data.train") and not spec.get("data.val"):
            return False, f"'{metric}' needs a validation split, and data.val is not set"
        if int(spec.get("training.eval_interval")) > int(spec.get("training.max_steps")):
            return False, f"'{metric}' is never computed: eval_interval exceeds max_steps"
        return True, f"'{metric}' is computed every {spec.get('training.eval_interval')} steps"
    return True, f"'{metric}' is recorded every step"


@check("config.checkpoint.metric", "Best-checkpoint metric is evaluated", "static")
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


@check("config.early_stopping.metric", "Early-stopping metric is tracked", "static")
def early_stopping_metric(ctx: Context) -> Outcome:
    """early_stopping.metric must be computed by the run, and patience x eval_interval should fit
    inside max_steps (or early stopping can never trigger)."""
    if not ctx.spec.get("early_stopping.enabled"):
        return skipped("early stopping is off")
    s = ctx.spec
    metric = str(s.get("early_stopping.metric"))
    ok, why = metric_source(s, metric)
    if not ok:
        return failed(why, "a metric the run computes", "set early_stopping.metric to a tracked metric")
    horizon = int(s.get("early_stopping.patience")) * int(s.get("training.eval_interval"))
    if TRACKED_METRICS[metric] == "validation" and horizon >= int(s.get("training.max_steps")):
        return warned(f"{why}; patience covers {horizon} steps", f"patience x eval_interval < max_steps "
                      f"({s.get('training.max_steps')})", "early stopping cannot trigger in this run; lower the "
                      "patience or accept that it is off")
    return passed(why, "a metric the run computes")


@check("config.recovery.retries", "Retries for checkpoint recovery", "static")
def recovery_retries(ctx: Context) -> Outcome:
    """With distributed.checkpoint_recovery on, distributed.max_retries must be at least 1
    (default 3), or the first worker failure ends the run."""
    on, retries = ctx.spec.get("distributed.checkpoint_recovery"), int(ctx.spec.get("distributed.max_retries"))
    if not on:
        return skipped("checkpoint_recovery is off")
    if retries < 1:
        return failed(f"max_retries = {retries}", ">= 1 with checkpoint_recovery", "set distributed.max_retries: 3")
    return passed(f"max_retries = {retries}", ">= 1 with checkpoint_recovery")


@check("config.stage", "Model and algorithm fit the stage", "static")
def stage_consistency(ctx: Context) -> Outcome:
    """For a named stage: the model size (dense parameters, or MoE active parameters) and the
    algorithm fit the stage preset (small: 1-8B, GRPO/DAPO; medium: 8B dense, ScaleRL pieces one by
    one; large: 70B dense or 17B-active MoE, the final ScaleRL recipe)."""
    s = ctx.spec
    stage = s.stage
    if stage is None:
        return skipped("run.stage is custom: no preset to compare with")
    moe = s.get("model.architecture") == "moe"
    params = float(s.get("model.active_params_b") or s.get("model.params_b")) if moe else float(s.get("model.params_b"))
    band = stage.moe_active_params_b if moe else stage.dense_params_b
    kind = "active MoE" if moe else "dense"
    algo = s.get("algorithm.name")
    found = f"{params:g}B {kind}, algorithm {algo}"
    expected = f"{band.describe('B')} {kind}, algorithm in {', '.join(stage.algorithms)} ({stage.name} stage)"
    problems = []
    if not band.contains(params):
        problems.append(f"model size outside {band.describe('B')}")
    if algo not in stage.algorithms:
        problems.append(f"algorithm {algo} is not planned for the {stage.name} stage")
    if problems:
        return warned(found + " (" + "; ".join(problems) + ")", expected,
                      "pick the stage that matches the run (run.stage), or adjust the model/algorithm")
    return passed(found, expected)
