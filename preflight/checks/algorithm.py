"""The algorithm's pieces against each other, the response budget, the model's memory and what
the built-in runner does with them (runner.algo, runner.rollout, runner.policy)."""

from __future__ import annotations

from ..presets import (
    ESCALATION,
    KL_BETA_RANGE,
    MAX_POLICY_LAG,
    OVERLONG_BUFFER_WARN_FRACTION,
    RESAMPLING_THRESHOLD_WARN,
    beyond,
)
from ..registry import Context, Rule, check
from ..result import Outcome, skipped
from ..spec import Spec
from ._relations import Findings

# The pieces each named recipe switches on (the runner runs the pieces, never the name).
DAPO_PIECES = ("dynamic_sampling", "overlong_shaping")
SCALERL_PIECES = ("batch_advantage_norm", "zero_variance_filter", "no_positive_resampling")
PIECES = ("algorithm.dynamic_sampling", "algorithm.overlong_shaping", "algorithm.loss",
          "algorithm.loss_aggregation", "algorithm.batch_advantage_norm", "algorithm.zero_variance_filter",
          "algorithm.no_positive_resampling")
# The built-in runner loads the weights in fp32 (runner.model.load_policy) and copies them, before
# FSDP shards the policy, into the frozen reference every rank keeps whole.


def _recipe(s: Spec, f: Findings) -> None:
    name = str(s.get("algorithm.name"))
    if name == "dapo" and not any(s.get(f"algorithm.{p}") for p in DAPO_PIECES):
        f.warn("algorithm.name dapo with neither dynamic_sampling nor overlong_shaping on: the runner runs the "
               "pieces, so this trains plain GRPO", "switch on algorithm.dynamic_sampling and overlong_shaping "
               "(the small stage preset does), or name it grpo")
    scalerl_on = [p for p in SCALERL_PIECES if s.get(f"algorithm.{p}")] + (
        ["loss cispo"] if s.get("algorithm.loss") == "cispo" else []) + (
        ["prompt aggregation"] if s.get("algorithm.loss_aggregation") == "prompt" else [])
    if name == "scalerl" and not scalerl_on:
        f.warn("algorithm.name scalerl with none of ScaleRL's pieces on (cispo, prompt aggregation, batch "
               "advantage norm, zero-variance filter, no-positive-resampling): this trains plain GRPO",
               "switch on the ScaleRL piece under test (the large stage preset has the whole recipe)")
    if s.get("algorithm.batch_advantage_norm") and s.get("algorithm.advantage_std_normalize"):
        f.warn("batch_advantage_norm with advantage_std_normalize: the batch std rescales advantages already "
               "divided by each group's std", "set algorithm.advantage_std_normalize: false, as ScaleRL does "
               "(group-centred rewards over the batch's std)")
    if s.get("algorithm.dynamic_sampling"):
        f.warn("dynamic_sampling: the built-in runner drops zero-variance groups from the batch instead of "
               "drawing new prompts, so a step trains on fewer than batch_size completions",
               "expect smaller effective batches (kept_groups_frac in the step events), or use a trainer that "
               "redraws (verl's filter_groups, DAPO)")


def _off_policy(s: Spec, f: Findings) -> None:
    lagging = int(s.get("algorithm.max_off_policy_steps"))
    if lagging > 0:
        f.warn(f"max_off_policy_steps {lagging}: the built-in runner generates and trains in turn "
               "(synchronous) and does not read it", "set algorithm.max_off_policy_steps: 0 for the built-in "
               "runner, or launch with a trainer that runs PipelineRL")
    lag = int(s.get("algorithm.updates_per_batch")) - 1 + lagging
    if lag > MAX_POLICY_LAG:
        f.warn(f"updates up to {lag} policy versions behind their rollouts (updates_per_batch - 1 + "
               f"max_off_policy_steps), more than {MAX_POLICY_LAG}", "lower algorithm.updates_per_batch or "
               f"max_off_policy_steps so the lag stays at most {MAX_POLICY_LAG} (ScaleRL's PipelineRL-8)")


@check("config.algorithm", "The algorithm's pieces fit its name and the runner", "static", rules=(
    Rule("algorithm.name", PIECES, "warn",
         "the runner runs the pieces, not the name: dapo and scalerl switch on at least one of theirs"),
    Rule("algorithm.batch_advantage_norm", ("algorithm.advantage_std_normalize",), "warn",
         "with batch normalization, no group std division (ScaleRL divides group-centred rewards by the "
         "batch's std only)"),
    Rule("algorithm.dynamic_sampling", ("training.batch_size",), "warn",
         "the built-in runner drops zero-variance groups instead of redrawing, so steps train on fewer "
         "completions"),
    Rule("algorithm.max_off_policy_steps", ("algorithm.updates_per_batch",), "warn",
         "0 with the built-in runner: it trains synchronously and does not read this"),
    Rule("algorithm.updates_per_batch", ("algorithm.max_off_policy_steps",), "warn",
         "the off-policy lag, updates_per_batch - 1 + max_off_policy_steps, at most 8"),
))
def algorithm(ctx: Context) -> Outcome:
    """The built-in runner runs the algorithm's pieces, never its name: a dapo run with neither
    dynamic_sampling nor overlong_shaping, or a scalerl run with none of ScaleRL's pieces, trains
    plain GRPO (warns). ScaleRL's batch advantage normalization divides group-centred rewards by
    the batch's std; on top of the group std division it rescales twice (warns). It drops zero-variance groups where DAPO's dynamic sampling redraws, and it
    trains synchronously, ignoring max_off_policy_steps (each warns). An update may lag its
    rollouts by updates_per_batch - 1 + max_off_policy_steps versions: more than 8 (ScaleRL's
    PipelineRL-8) warns."""
    s = ctx.spec
    f = Findings()
    _recipe(s, f)
    _off_policy(s, f)
    found = (f"{s.get('algorithm.name')}: loss {s.get('algorithm.loss')}, {s.get('algorithm.loss_aggregation')} "
             f"aggregation, {s.get('algorithm.updates_per_batch')} update(s) per batch")
    return f.outcome(found, "pieces that match the name, all of them run by the runner")


@check("config.overlong", "Overlong-shaping buffer fits the response budget", "static", rules=(
    Rule("algorithm.overlong_buffer_tokens", ("training.max_response_tokens", "algorithm.overlong_shaping"),
         "warn above half the budget; fail at the whole budget",
         "under max_response_tokens: the penalty starts max_response_tokens - buffer tokens in"),
    Rule("algorithm.overlong_penalty_factor", ("algorithm.overlong_shaping",), "warn",
         "above 0 with overlong_shaping, or the shaping does nothing"),
))
def overlong(ctx: Context) -> Outcome:
    """DAPO's soft overlong penalty starts max_response_tokens - overlong_buffer_tokens tokens into a
    completion and grows to overlong_penalty_factor at the budget. A buffer at or above the budget
    (the runner cuts it to the budget) penalizes every completion by its length from the first
    token (fails); above half the budget most completions are penalized (warns; DAPO uses 4096 of
    20480); a penalty factor of 0 shapes nothing (warns)."""
    s = ctx.spec
    if not s.get("algorithm.overlong_shaping"):
        return skipped("overlong_shaping is off")
    buffer, budget = int(s.get("algorithm.overlong_buffer_tokens")), int(s.get("training.max_response_tokens"))
    f = Findings()
    if buffer >= budget:
        f.fail(f"overlong_buffer_tokens {buffer} >= max_response_tokens {budget}: every completion is penalized "
               "by its length from the first token", f"set algorithm.overlong_buffer_tokens well under {budget} "
               f"(DAPO: 4096 of 20480, a fifth), e.g. {max(budget // 5, 1)}")
    elif buffer > OVERLONG_BUFFER_WARN_FRACTION * budget:
        f.warn(f"overlong_buffer_tokens {buffer} is more than {OVERLONG_BUFFER_WARN_FRACTION:.0%} of "
               f"max_response_tokens {budget}: most completions are penalized",
               f"use a buffer of about a fifth of the budget ({max(budget // 5, 1)})")
    if float(s.get("algorithm.overlong_penalty_factor")) <= 0:
        f.warn("overlong_penalty_factor 0: overlong shaping changes no reward",
               "set algorithm.overlong_penalty_factor: 1.0 (DAPO), or turn overlong_shaping off")
    found = f"penalty from token {max(budget - buffer, 0)} of {budget} up to -{s.get('algorithm.overlong_penalty_factor'):g}"
    return f.outcome(found, f"a buffer under max_response_tokens ({budget})")


@check("config.resampling", "No-positive-resampling keeps prompts to learn from", "static", rules=(
    Rule("algorithm.positive_resampling_threshold", ("algorithm.no_positive_resampling",),
         "warn below 0.5; fail at 0", "a pass rate at which a prompt has little left to teach"),
))
def resampling(ctx: Context) -> Outcome:
    """ScaleRL's no-positive-resampling stops drawing a prompt once its running pass rate reaches
    algorithm.positive_resampling_threshold (ScaleRL: 0.9). At 0 every prompt counts as solved
    once seen, so nothing is left to learn from (fails); below 0.5 it drops prompts the policy
    still fails half the time (warns)."""
    s = ctx.spec
    if not s.get("algorithm.no_positive_resampling"):
        return skipped("no_positive_resampling is off")
    t = float(s.get("algorithm.positive_resampling_threshold"))
    f = Findings()
    if t <= 0:
        f.fail("positive_resampling_threshold 0: every prompt counts as solved once seen",
               "set algorithm.positive_resampling_threshold: 0.9 (ScaleRL)")
    elif t < RESAMPLING_THRESHOLD_WARN:
        f.warn(f"positive_resampling_threshold {t:g} < {RESAMPLING_THRESHOLD_WARN:g}: prompts the policy fails "
               "half the time stop being drawn", "set algorithm.positive_resampling_threshold: 0.9 (ScaleRL)")
    return f.outcome(f"prompts stop being drawn at a pass rate of {t:g}", f">= {RESAMPLING_THRESHOLD_WARN:g} "
                     "(ScaleRL 0.9)")


@check("config.kl", "KL penalty weight", "static", rules=(
    Rule("algorithm.kl_beta", (), "warn above 0.1; fail above 1", "in the field's range (0.001 in verl and "
         "DeepSeek-R1, 0.04 in early TRL)"),
))
def kl(ctx: Context) -> Outcome:
    """With algorithm.kl_beta > 0: the weight inside the field's range (up to 0.1; verl and
    DeepSeek-R1 use 0.001, early TRL 0.04; beyond 10x it, the KL term outweighs the reward:
    fails). The memory the frozen reference policy takes is part of hw.memory.gpu's estimate."""
    beta = float(ctx.spec.get("algorithm.kl_beta"))
    if beta <= 0:
        return skipped("kl_beta is 0: no KL term, no reference model")
    f = Findings()
    if beyond(beta, KL_BETA_RANGE):
        f.fail(f"kl_beta {beta:g} is more than {ESCALATION:g}x above {KL_BETA_RANGE.high:g}: the KL term outweighs "
               "the reward", "use algorithm.kl_beta 0.001-0.04, or 0 (DAPO, ScaleRL)")
    elif not KL_BETA_RANGE.contains(beta):
        f.warn(f"kl_beta {beta:g} above {KL_BETA_RANGE.high:g}", "use algorithm.kl_beta 0.001-0.04, or 0")
    return f.outcome(f"kl_beta {beta:g}", f"kl_beta <= {KL_BETA_RANGE.high:g}")
