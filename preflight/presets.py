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
            "training": {"batch_size": 512, "eval_interval": 100, "max_steps": 3000},
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
            "training": {"batch_size": 1024, "eval_interval": 100, "max_steps": 6000},
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
            "hardware": {"nodes": 16},
            "model": {"params_b": 70, "architecture": "dense"},
            # The final ScaleRL recipe (docs/reference.md section 8).
            "algorithm": {"name": "scalerl", "loss": "cispo", "loss_aggregation": "prompt",
                          "batch_advantage_norm": True, "zero_variance_filter": True,
                          "no_positive_resampling": True, "fp32_lm_head": True,
                          "max_off_policy_steps": 8},
            "training": {"batch_size": 2048, "eval_interval": 100, "max_steps": 5000},
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

# Metrics a run actually evaluates, so checkpoint and early-stopping choices can be checked.
# validation_* needs eval_interval; the rest come with every step event.
TRACKED_METRICS = {
    "validation_accuracy": "validation",
    "validation_pass_rate": "validation",
    "validation_loss": "validation",
    "training_loss": "step",
    "pass_rate": "step",
    "gpu_utilization": "step",
    "memory_usage": "step",
    "gen_len_mean": "step",
    "truncation_rate": "step",
}
