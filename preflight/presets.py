"""Built-in stage presets and the field's default alert rules (docs/reference.md sections 2-4).

Plain defaults live in schemas/runspec.schema.json; this module holds what depends on the stage
(the preset values a spec inherits) and the bands the static checks compare a spec with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Band:
    """An inclusive range; None means open on that side."""

    low: float | None
    high: float | None

    def contains(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def describe(self, unit: str = "") -> str:
        u = f" {unit}" if unit else ""
        if self.low is not None and self.high is not None:
            return f"{_fmt(self.low)}-{_fmt(self.high)}{u}"
        if self.low is not None:
            return f">= {_fmt(self.low)}{u}"
        if self.high is not None:
            return f"<= {_fmt(self.high)}{u}"
        return "any"


def _fmt(x: float) -> str:
    return f"{x:g}" if abs(x) < 1e5 else f"{x:,.0f}"


@dataclass(frozen=True)
class Stage:
    name: str
    gpu_hours: Band
    batch_size: Band
    algorithms: tuple[str, ...]
    # Model size for the stage: dense total parameters, or MoE active parameters, in billions.
    dense_params_b: Band
    moe_active_params_b: Band
    evaluation: str
    preset: dict[str, Any]


# Hyperparameter ranges of docs/reference.md section 4. Outside them a check warns and names the range.
LR_RANGE = Band(1e-6, 1e-5)
BATCH_RANGE = Band(512, 2048)  # stage presets narrow (or shift) this
TEMPERATURE_RANGE = Band(0.01, 0.1)
CLIP_RANGE = Band(0.1, 0.5)

# --- severity: where a warning becomes a failure ---------------------------------------------------
# A value a little outside its band warns; one more than ESCALATION times outside it (an order of
# magnitude) fails, as does one that cannot work. Standard practice never fails: sampling near 1.0
# only warns (TEMPERATURE_WORKABLE), and the GRPO examples of verl, TRL and OpenRLHF pass.
ESCALATION = 10.0


def beyond(value: float, band: Band, factor: float = ESCALATION) -> bool:
    """Whether ``value`` lies more than ``factor`` times outside ``band`` (below low / factor or
    above high x factor)."""
    return ((band.low is not None and band.low > 0 and value < band.low / factor)
            or (band.high is not None and value > band.high * factor))


@dataclass(frozen=True)
class SizeBand:
    """A band for models of up to ``up_to_b`` billion parameters (None: any size above the last)."""

    up_to_b: float | None
    band: Band
    models: str  # which models, and where the band comes from


# RL learning rate by model size (total parameters). Pretrained LLMs: docs/reference.md section 4;
# the published GRPO examples sit at its floor (verl and TRL 1e-6, OpenRLHF 5e-7). A test-sized
# model trained from random init, like the built-in tiny model, needs rates of a different order.
LR_BY_MODEL_SIZE: tuple[SizeBand, ...] = (
    SizeBand(0.1, Band(1e-5, 1e-3), "test-sized models trained from random init (the built-in tiny model)"),
    SizeBand(None, LR_RANGE, "pretrained LLMs (docs/reference.md section 4)"),
)
# The supervised warm start (training.warm_start_lr) is fine-tuning: its band is the RL band x 10.
WARM_START_LR_FACTOR = 10.0


def lr_band(params_b: float) -> SizeBand:
    """The learning-rate band for a model of ``params_b`` billion parameters."""
    return next(b for b in LR_BY_MODEL_SIZE if b.up_to_b is None or params_b <= b.up_to_b)


# Temperature: the reference's 0.01-0.1 is a tuning range, while GRPO/DAPO rollouts sample near 1.0,
# so outside it only warns. It fails where sampling stops working: below 0.001 every completion of
# a group is the greedy one (zero variance, nothing learned); above 2.0 it approaches noise.
TEMPERATURE_WORKABLE = Band(0.001, 2.0)

# Clip epsilons per loss, (clip_low band, clip_high band). PPO-style clipping: docs/reference.md
# section 4 (GRPO 0.2/0.2, DAPO 0.2/0.28). CISPO truncates the importance weight instead: ScaleRL's
# eps_max is far larger (TRL recommends 5.0 for loss_type cispo), and clip_low 1.0 means no lower
# bound, as in ScaleRL.
CLIP_BANDS: dict[str, tuple[Band, Band]] = {
    "ppo_clip": (CLIP_RANGE, CLIP_RANGE),
    "cispo": (Band(0.1, 1.0), Band(0.1, 5.0)),
}

# KL penalty weight: DeepSeek-R1 and verl's GRPO examples use 0.001, early TRL 0.04.
KL_BETA_RANGE = Band(0.0, 0.1)

# Model size against the stage (run.stage): more than STAGE_SIZE_FAR x the top of the stage's size
# band, with the GPU-hour estimate over the stage's ceiling, fails; less only warns.
STAGE_SIZE_FAR = 4.0

# Compute-budget assumptions: RL with generation reaches 0.1-0.4 MFU; no trainer reaches 0.6.
MFU_RANGE = Band(0.05, 0.5)
MFU_IMPOSSIBLE = 0.6
# A stated peak above the datasheet of every allowed GPU warns; more than twice it fails.
PEAK_OVER_DATASHEET_FAIL = 2.0

# DAPO overlong shaping: a buffer over half the response budget penalizes most completions.
OVERLONG_BUFFER_WARN_FRACTION = 0.5
# No-positive-resampling drops prompts at this pass rate; below 0.5 it drops prompts the policy
# still fails half the time (ScaleRL uses 0.9).
RESAMPLING_THRESHOLD_WARN = 0.5
# Off-policy lag of an update (updates_per_batch - 1 + max_off_policy_steps): ScaleRL's
# PipelineRL-8 runs up to 8 steps behind.
MAX_POLICY_LAG = 8
# Stability guard: a robust z-score below 3 flags ordinary noise as a spike.
SPIKE_THRESHOLD_MIN = 3.0
# Early stopping on a rate in [0, 1]: an improvement of more than 0.1 (ten points) per evaluation is
# rare, so a larger min_delta stops runs that are still learning.
MIN_DELTA_RATE_WARN = 0.1
# One checkpoint written within active.checkpoint_write_fraction of the save interval: above this
# write throughput (GB/s per node) no shared file system keeps up.
WRITE_THROUGHPUT_MAX_GB_S = 20.0

# --- what the built-in runner does (runner/), so gate and runner agree -----------------------------
# tests/test_gate_runner_agree.py holds each against the runner's own value.
BUILTIN_REWARDS = ("code", "math")  # runner.rewards.reward_names()
TINY_POSITIONS = 256  # the built-in tiny model's max_position_embeddings (runner.model)
WARM_START_CHECK_STEPS = 25  # runner.warm_start.WARM_START_CHECK
SPIKE_MIN_HISTORY = 8  # runner.controllers.StabilityGuard: losses before a spike is judged
ARITHMETIC_VAL_FRACTION = 0.05  # the built-in task's val split (preflight.data.split)

# The stages' memory plan for the reference's 2,048 + 16,384-token budgets (docs/reference.md
# section 6) on 80 GB GPUs: one sequence per forward/backward with activation recomputation (verl's
# long-response DAPO recipes fit ~2 sequences per GPU pass the same way), 16 completions generated
# at once per GPU.
LONG_SEQUENCES = {"micro_batch_size": 1, "gradient_checkpointing": True, "generation_batch_size": 16}

STAGES: dict[str, Stage] = {
    "small": Stage(
        name="small",
        gpu_hours=Band(1_000, 5_000),
        batch_size=Band(256, 512),
        algorithms=("grpo", "dapo"),
        dense_params_b=Band(1, 8),
        moe_active_params_b=Band(1, 8),
        evaluation="validate every 100 steps",
        preset={
            "hardware": {"nodes": 2},
            "model": {"params_b": 8, "architecture": "dense"},
            "algorithm": {"name": "dapo", "dynamic_sampling": True, "overlong_shaping": True,
                          "loss_aggregation": "token"},
            # per GPU: 32 completions of up to 2,048 + 16,384 tokens; one sequence per
            # forward/backward with recomputation, half the share generated at once (hw.memory.gpu)
            "training": {"batch_size": 512, "eval_interval": 100, "max_steps": 3000, **LONG_SEQUENCES},
        },
    ),
    "medium": Stage(
        name="medium",
        gpu_hours=Band(10_000, 20_000),
        batch_size=Band(768, 1024),
        algorithms=("grpo", "dapo", "scalerl"),
        dense_params_b=Band(8, 8),
        moe_active_params_b=Band(8, 17),
        evaluation="several benchmarks",
        preset={
            "hardware": {"nodes": 4},
            "model": {"params_b": 8, "architecture": "dense"},
            "algorithm": {"name": "scalerl"},
            "training": {"batch_size": 1024, "eval_interval": 100, "max_steps": 6000, **LONG_SEQUENCES},
        },
    ),
    "large": Stage(
        name="large",
        gpu_hours=Band(50_000, None),
        batch_size=Band(2048, None),
        algorithms=("scalerl",),
        dense_params_b=Band(70, None),
        moe_active_params_b=Band(17, None),
        evaluation="production-environment tests",
        preset={
            # One group of 16 completions of 18,432 tokens is the least the runner generates at once
            # (whole groups): a 70B model's KV cache for it is ~97 GB, so 80 GB GPUs cannot hold it
            # beside the model states; the 141 GB and larger GPUs can.
            "hardware": {"nodes": 16, "min_vram_gb": 141, "gpu_models": ["H200", "B200", "GB200"]},
            "model": {"params_b": 70, "architecture": "dense"},
            # The final ScaleRL recipe (docs/reference.md section 8).
            "algorithm": {"name": "scalerl", "loss": "cispo", "loss_aggregation": "prompt",
                          "batch_advantage_norm": True, "advantage_std_normalize": False,
                          "zero_variance_filter": True,
                          "no_positive_resampling": True, "fp32_lm_head": True,
                          "max_off_policy_steps": 8},
            "training": {"batch_size": 2048, "eval_interval": 100, "max_steps": 5000, **LONG_SEQUENCES,
                         "generation_batch_size": 16},
        },
    ),
}

# The live dashboard of docs/reference.md section 3, as monitoring rules.
DEFAULT_RULES: list[dict[str, Any]] = [
    {"id": "pass_rate_low", "metric": "pass_rate", "op": "<", "threshold": 0.60, "every_steps": 100,
     "cooldown_steps": 100, "severity": "critical", "action": "change the algorithm / recipe"},
    {"id": "loss_spike", "metric": "loss", "op": "spike", "threshold": 6.0, "every_steps": 1,
     "cooldown_steps": 50, "severity": "warn", "action": "adjust the learning rate"},
    {"id": "utilization_low", "metric": "utilization", "op": "<", "threshold": 0.70, "every_steps": 1,
     "cooldown_steps": 100, "severity": "warn", "action": "adjust the batch size"},
    {"id": "gen_len_high", "metric": "gen_len_mean", "op": ">", "threshold": 15_000, "every_steps": 1,
     "cooldown_steps": 100, "severity": "warn", "action": "apply length control"},
    {"id": "truncation_high", "metric": "truncation_rate", "op": ">", "threshold": 0.10, "every_steps": 1,
     "cooldown_steps": 100, "severity": "critical", "action": "review stability"},
]

# Metrics the built-in runner computes (runner.controllers.METRICS), so checkpoint and early-stopping
# choices can be checked: validation_* needs eval_interval; the rest come with every step event.
# (validation_loss is not among them: the runner validates by pass rate only.)
TRACKED_METRICS = {
    "validation_accuracy": "validation",
    "validation_pass_rate": "validation",
    "training_loss": "step",
    "pass_rate": "step",
    "gpu_utilization": "step",
    "memory_usage": "step",
    "gen_len_mean": "step",
    "truncation_rate": "step",
}
# Which way is better, for the metrics where only one way makes sense (early_stopping.mode).
METRIC_BETTER = {"validation_accuracy": "max", "validation_pass_rate": "max", "pass_rate": "max",
                 "training_loss": "min", "truncation_rate": "min"}
# Metrics that are fractions in [0, 1] (an improvement of min_delta >= 1 is impossible).
RATE_METRICS = ("validation_accuracy", "validation_pass_rate", "pass_rate", "gpu_utilization",
                "truncation_rate")
# Alert-rule metrics that are fractions in [0, 1] (monitoring.rules thresholds).
RATE_RULE_METRICS = ("pass_rate", "utilization", "truncation_rate")
