"""Static sanity of the run's configuration: each hyperparameter against its band (by model size),
the batch against the ranks and groups, and the model and algorithm against the stage.

A value a little outside its band warns; more than ``presets.ESCALATION`` (10x) outside it, or
one that cannot work, fails. The bands are data in preflight.presets, shown by `preflight explain`.
"""

from __future__ import annotations

from ..presets import (
    BATCH_RANGE,
    CLIP_BANDS,
    ESCALATION,
    LR_BY_MODEL_SIZE,
    STAGE_SIZE_FAR,
    STAGES,
    TEMPERATURE_RANGE,
    TEMPERATURE_WORKABLE,
    Band,
    Stage,
    beyond,
    lr_band,
)
from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed, skipped, warned
from ..spec import Spec
from ._framework import launched_by_framework
from ._relations import Findings, table, with_thresholds
from .budget import estimate_gpu_hours, peak_tflops

WORLD = ("hardware.nodes", "hardware.gpus_per_node", "hardware.gpu_required", "distributed.cpu_workers")


def _silence(check_id: str) -> str:
    return f"If intended, silence it with checklist.severity: {{{check_id}: off}}"


def _lr_table() -> str:
    rows = [(f"<= {b.up_to_b:g}B" if b.up_to_b is not None else "larger", b.band.describe(),
             Band(b.band.low / ESCALATION if b.band.low else None,
                  b.band.high * ESCALATION if b.band.high else None).describe(), b.models)
            for b in LR_BY_MODEL_SIZE]
    return "Learning-rate bands by model size (model.params_b):\n" + table(
        ("model", "warns outside", "fails outside", "for"), rows)


@check("config.lr.range", "Learning rate in the field's range", "static", rules=(
    Rule("training.learning_rate", ("model.params_b",), "warn; fail beyond 10x the band",
         "inside the learning-rate band for the model's size"),
))
@with_thresholds(_lr_table())
def lr_range(ctx: Context) -> Outcome:
    """training.learning_rate against the band for the model's size (model.params_b), 1e-6 .. 1e-5
    for a pretrained LLM (docs/reference.md section 4). Outside it warns; more than 10x outside it
    fails: RL fine-tuning of a pretrained model diverges at 10x the usual rate, and at a tenth of
    the floor it learns nothing in the run's steps."""
    lr = float(ctx.spec.get("training.learning_rate"))
    size = lr_band(float(ctx.spec.get("model.params_b")))
    band, key = size.band, "training.learning_rate"
    found, expected = f"{key} = {lr:g}", f"{band.describe()} (learning-rate range for {size.models})"
    if band.contains(lr):
        return passed(found, expected)
    if beyond(lr, band):
        way = "diverges" if lr > (band.high or 0) else "learns nothing in the run's steps"
        return failed(found + f", more than {ESCALATION:g}x outside {band.describe()}", expected,
                      f"RL fine-tuning {way} at this rate; use a rate in {band.describe()}")
    return warned(found, expected, f"outside the field's range {band.describe()}; RL fine-tuning of LLMs "
                  f"diverges easily at higher rates. {_silence('config.lr.range')}")


@check("config.temperature.range", "Sampling temperature", "static", rules=(
    Rule("training.temperature", ("training.group_size",), "warn; fail below 0.001 or above 2.0",
         "near the reference's tuning range; fails only where sampling stops working"),
))
def temperature_range(ctx: Context) -> Outcome:
    """training.temperature against the reference range 0.01 .. 0.1, which the source gives for its
    automatic tuning. RL rollouts usually sample near 1.0 so that a group's completions differ, so
    outside the range is only a warning, and the message says what the range is for. It fails
    where sampling stops working: below 0.001 every completion of a group is the greedy one (zero
    reward variance, nothing learned), above 2.0 sampling approaches noise."""
    t = float(ctx.spec.get("training.temperature"))
    found, expected = f"training.temperature = {t:g}", f"{TEMPERATURE_RANGE.describe()} (reference tuning range)"
    if TEMPERATURE_RANGE.contains(t):
        return passed(found, expected)
    if not TEMPERATURE_WORKABLE.contains(t):
        why = ("every completion of a group is the greedy one: zero reward variance, nothing learned"
               if t < (TEMPERATURE_WORKABLE.low or 0) else "sampling this hot approaches noise")
        return failed(f"{found}, outside {TEMPERATURE_WORKABLE.describe()}", expected,
                      f"{why}; GRPO and DAPO rollouts sample near 1.0")
    return warned(found, expected,
                  f"outside the field's range {TEMPERATURE_RANGE.describe()}; that range is the source's "
                  "tuning range; RL sampling usually runs near 1.0 so a group's completions differ, and very "
                  f"low temperatures make groups zero-variance. {_silence('config.temperature.range')}")


def _clip_table() -> str:
    rows = [(loss, low.describe(), high.describe()) for loss, (low, high) in CLIP_BANDS.items()]
    return ("Clip bands by algorithm.loss (outside warns; more than 10x outside fails; with ppo_clip "
            "clip_high < clip_low fails):\n" + table(("loss", "clip_low", "clip_high"), rows))


@check("config.clip.range", "Clipping epsilons in range", "static", rules=(
    Rule("training.clip_low", ("algorithm.loss",), "warn; fail beyond 10x the band",
         "inside the loss's clip_low band"),
    Rule("training.clip_high", ("algorithm.loss",), "warn; fail beyond 10x the band",
         "inside the loss's clip_high band (CISPO's eps_max is far larger than PPO's)"),
    Rule("training.clip_high", ("training.clip_low", "algorithm.loss"), "fail",
         "clip_high >= clip_low with ppo_clip: the clip range must not invert"),
))
@with_thresholds(_clip_table())
def clip_range(ctx: Context) -> Outcome:
    """training.clip_low and clip_high against the bands of algorithm.loss: 0.1 .. 0.5 for the
    PPO-style clip (docs/reference.md section 4; GRPO 0.2 / 0.2, DAPO's clip-higher 0.2 / 0.28),
    and clip_high >= clip_low there. CISPO truncates the importance weight instead: its eps_max
    goes up to 5 (ScaleRL; TRL recommends 5.0) and clip_low 1.0 means no lower bound."""
    s = ctx.spec
    loss = str(s.get("algorithm.loss"))
    low, high = float(s.get("training.clip_low")), float(s.get("training.clip_high"))
    low_band, high_band = CLIP_BANDS[loss]
    found = f"clip_low = {low:g}, clip_high = {high:g} ({loss})"
    expected = f"clip_low in {low_band.describe()}, clip_high in {high_band.describe()}" + (
        ", clip_high >= clip_low" if loss == "ppo_clip" else "")
    f = Findings()
    if loss == "ppo_clip" and high < low:
        f.fail(f"clip_high {high:g} < clip_low {low:g}: the clip range inverts",
               "clip-higher keeps eps_high >= eps_low (GRPO 0.2 / 0.2, DAPO 0.2 / 0.28)")
    for name, value, band in (("clip_low", low, low_band), ("clip_high", high, high_band)):
        if beyond(value, band):
            f.fail(f"{name} {value:g} is more than {ESCALATION:g}x outside {band.describe()}",
                   f"set training.{name} inside {band.describe()}")
        elif not band.contains(value):
            f.warn(f"{name} {value:g} outside {band.describe()}",
                   f"DAPO uses 0.2 / 0.28 (set training.{name} inside {band.describe()})")
    return f.outcome(found, expected)


def batch_band(spec: Spec) -> tuple[Band, str]:
    stage = spec.stage
    if stage is not None:
        return stage.batch_size, f"the {stage.name} stage's"
    return BATCH_RANGE, "the field's"


@check("config.batch.range", "Batch size for the stage", "static", rules=(
    Rule("training.batch_size", ("run.stage",), "warn", "inside the stage's batch band"),
))
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


@check("config.batch.divisibility", "Batch divides into ranks and groups", "static", rules=(
    Rule("training.batch_size", ("training.group_size", *WORLD), "fail",
         "a multiple of world size x group_size: every rank gets whole groups"),
))
def batch_divisibility(ctx: Context) -> Outcome:
    """training.batch_size (completions per step) must be a multiple of world size x group_size:
    each rank samples whole groups of G completions for the same number of prompts (the runner's
    batch plan refuses anything else at start). The world size is nodes x gpus_per_node, or
    distributed.cpu_workers for a run without GPUs. A framework's run is judged by its own batch
    rules (trainer.<framework>.*), which divide differently."""
    framework = launched_by_framework(ctx, "this division of the batch")
    if framework is not None:
        return framework
    bs, g, world = int(ctx.spec.get("training.batch_size")), int(ctx.spec.get("training.group_size")), ctx.spec.world_size
    unit = world * g
    found = f"batch_size {bs}, world size {world}, group_size {g}"
    expected = "batch_size a multiple of world size x group_size"
    if bs % unit:
        parts = [f"{bs} % {name} {n} = {bs % n}" for name, n in (("world size", world), ("group_size", g)) if bs % n]
        parts.append(f"{bs} % (world size x group_size) {unit} = {bs % unit}")
        lower, upper = (bs // unit) * unit, (bs // unit + 1) * unit
        options = " or ".join(str(x) for x in (lower, upper) if x > 0)
        return failed(found + " (" + "; ".join(parts) + ")", expected,
                      f"use a multiple of {unit} (world size {world} x group_size {g}): {options}",
                      world_size=world, unit=unit)
    return passed(f"{found}: {bs // g} prompts/step, {bs // world} completions per rank", expected)


@check("config.group_size", "Groups can have reward variance", "static", rules=(
    Rule("training.group_size", ("algorithm.name", "algorithm.zero_variance_filter", "algorithm.dynamic_sampling"),
         "fail", ">= 2: group-relative advantages need two completions per prompt (with one, the "
         "zero-variance filter drops every group)"),
))
def group_size(ctx: Context) -> Outcome:
    """Group-relative advantages (GRPO, DAPO, ScaleRL) need at least 2 completions per prompt; with
    one, every advantage is zero and nothing is learned. A framework's run is judged by its own
    rule, which knows its estimators (OpenRLHF's REINFORCE and GAE run with one sample)."""
    framework = launched_by_framework(ctx, "this group-size rule")
    if framework is not None:
        return framework
    g = int(ctx.spec.get("training.group_size"))
    if g < 2:
        return failed(f"group_size = {g}", ">= 2", "sample at least 2 completions per prompt (8-16 is usual)")
    return passed(f"group_size = {g}", ">= 2")


def _stage_table() -> str:
    rows = [(s.name, s.dense_params_b.describe("B"), s.moe_active_params_b.describe("B"),
             s.gpu_hours.describe(), ", ".join(s.algorithms)) for s in STAGES.values()]
    return (f"Stage bands (a model more than {STAGE_SIZE_FAR:g}x above its band, with the GPU-hour "
            "estimate over the stage's ceiling, fails):\n"
            + table(("stage", "dense", "MoE active", "GPU hours", "algorithms"), rows))


def _budget_over(spec: Spec, stage: Stage) -> tuple[bool | None, str]:
    """Whether the GPU-hour estimate exceeds the stage's ceiling (None: it cannot be estimated)."""
    ceiling = spec.get("budget.gpu_hours_max") or stage.gpu_hours.high
    if ceiling is None:
        return False, "the stage has no GPU-hour ceiling"
    peak, _ = peak_tflops(spec)
    if not spec.uses_gpus or peak is None:
        return None, "no GPU-hour estimate (no GPUs, or an unknown GPU peak)"
    hours, _ = estimate_gpu_hours(spec, peak)
    return hours > float(ceiling), f"~{hours:,.0f} GPU hours against the stage's ceiling of {float(ceiling):,.0f}"


@check("config.stage", "Model and algorithm fit the stage", "static", rules=(
    Rule("model.params_b", ("run.stage", "model.architecture", "model.active_params_b", "budget.gpu_hours_max"),
         "warn; fail beyond 4x the stage's size band with the GPU-hour estimate over its ceiling",
         "inside the stage's model-size band"),
    Rule("algorithm.name", ("run.stage",), "warn", "an algorithm the stage plans"),
))
@with_thresholds(_stage_table())
def stage_consistency(ctx: Context) -> Outcome:
    """For a named stage: the model size (dense parameters, or MoE active parameters) and the
    algorithm fit the stage preset (small: 1-8B, GRPO/DAPO; medium: 8B dense, ScaleRL pieces one by
    one; large: 70B dense or 17B-active MoE, the final ScaleRL recipe). Outside the band warns; a
    model far beyond it (4x its top) whose GPU-hour estimate is over the stage's ceiling fails."""
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
    fail = False
    if not band.contains(params):
        problems.append(f"model size outside {band.describe('B')}")
        if band.high is not None and params > STAGE_SIZE_FAR * band.high:
            over, how = _budget_over(s, stage)
            problems.append(how)
            fail = bool(over)
    if algo not in stage.algorithms:
        problems.append(f"algorithm {algo} is not planned for the {stage.name} stage")
    if not problems:
        return passed(found, expected)
    found += " (" + "; ".join(problems) + ")"
    fix = "pick the stage that matches the run (run.stage), or adjust the model/algorithm"
    if fail:
        return failed(found, expected, f"a model {params / (band.high or 1):.0f}x the stage's size does not fit its "
                      f"GPU-hour budget: {fix}")
    return warned(found, expected, fix)
