"""What the monitor compares a run with: rules, intervals, budget and hyperparameters.

They come from the run spec when there is one; otherwise from the spec defaults (the schema's
defaults and the dashboard rules of docs/reference.md section 3, through ``preflight.spec.resolve``), with the
effective training configuration that the run_start event carries laid over them, so a run dir on
its own is still judged against what the run really used.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from ..presets import BATCH_RANGE, CLIP_RANGE, LR_RANGE, STAGES, TEMPERATURE_RANGE, Band
from ..spec import Spec, deep_merge, resolve

DEFAULT_TARGET = 0.60  # docs/reference.md section 3: a validation pass rate below 60 % alerts


@dataclass(frozen=True)
class Hyperparameter:
    key: str  # e.g. training.learning_rate
    name: str
    value: float
    band: Band
    why: str = ""  # what the band is for, when that is not obvious


@dataclass(frozen=True)
class MonitorSettings:
    source: str  # where the settings came from, shown with the checklists
    rules: list[dict[str, Any]]
    save_interval: int
    eval_interval: int
    max_steps: int
    budget_hours: float | None
    target_pass_rate: float
    min_delta: float
    max_batch_size: int | None
    hyperparameters: list[Hyperparameter] = field(default_factory=list)
    world_size: int | None = None
    spec_path: str | None = None
    dynamic_batch: bool = False  # dynamic_batch.enabled: whether the runner grows the batch
    dynamic_batch_target: float = 0.8  # dynamic_batch.target_efficiency

    @classmethod
    def defaults(cls) -> MonitorSettings:
        return cls.from_data(resolve({"run": {"name": "monitor"}}), "the built-in defaults")

    @classmethod
    def from_spec(cls, spec: Spec) -> MonitorSettings:
        return cls.from_data(spec.data, f"run spec {spec.path}", world_size=spec.world_size,
                             spec_path=str(spec.path))

    def with_run_config(self, config: dict[str, Any]) -> MonitorSettings:
        """The defaults overlaid with a run_start event's ``config`` (training and algorithm)."""
        over = {k: v for k, v in config.items()
                if k in ("training", "algorithm", "dynamic_batch", "checkpoints") and isinstance(v, dict)}
        try:
            data = deep_merge(resolve({"run": {"name": "monitor"}}), over)
            return MonitorSettings.from_data(data, "the run's own configuration (run_start event)",
                                             world_size=self.world_size)
        except (TypeError, ValueError, KeyError):
            return self  # a config we cannot read leaves the defaults in place

    @classmethod
    def from_data(cls, data: dict[str, Any], source: str, world_size: int | None = None,
                  spec_path: str | None = None) -> MonitorSettings:
        training = data.get("training", {})
        rules = copy.deepcopy(data.get("monitoring", {}).get("rules", []))
        target = next((float(r["threshold"]) for r in rules
                       if r.get("metric") == "pass_rate" and r.get("op") in ("<", "<=")), DEFAULT_TARGET)
        stage = STAGES.get(str(data.get("run", {}).get("stage", "custom")))
        batch_band = stage.batch_size if stage is not None else BATCH_RANGE
        budget = data.get("budget", {}).get("gpu_hours_max")
        dynamic = data.get("dynamic_batch") or {}
        return cls(
            source=source,
            rules=rules,
            save_interval=int(data.get("checkpoints", {}).get("save_interval", 100)),
            eval_interval=int(training.get("eval_interval", 100)),
            max_steps=int(training.get("max_steps", 1000)),
            budget_hours=float(budget) if budget else None,
            target_pass_rate=target,
            min_delta=float(data.get("early_stopping", {}).get("min_delta", 0.001)),
            max_batch_size=_max_batch(dynamic, batch_band),
            hyperparameters=_hyperparameters(data, batch_band, stage.name if stage else None),
            world_size=world_size,
            spec_path=spec_path,
            dynamic_batch=bool(dynamic.get("enabled", False)),
            dynamic_batch_target=float(dynamic.get("target_efficiency", 0.8)),
        )


def _hyperparameters(data: dict[str, Any], batch_band: Band, stage: str | None) -> list[Hyperparameter]:
    """The ranges of docs/reference.md section 4, minus those the spec switched off (checklist.severity)."""
    training = data.get("training", {})
    off = {k for k, v in (data.get("checklist", {}).get("severity") or {}).items() if v == "off"}
    candidates = [
        ("config.lr.range", "training.learning_rate", "learning rate", LR_RANGE, ""),
        ("config.batch.range", "training.batch_size", "batch size", batch_band,
         f"the {stage} stage's band" if stage else "the field's range"),
        ("config.temperature.range", "training.temperature", "temperature", TEMPERATURE_RANGE,
         "the source's tuning range; RL sampling usually runs near 1.0"),
        ("config.clip.range", "training.clip_low", "clip_low", CLIP_RANGE, ""),
        ("config.clip.range", "training.clip_high", "clip_high", CLIP_RANGE, ""),
    ]
    out = []
    for check_id, key, name, band, why in candidates:
        value = training.get(key.split(".", 1)[1])
        if check_id in off or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        out.append(Hyperparameter(key, name, float(value), band, why))
    return out


def _max_batch(dynamic: dict[str, Any], band: Band) -> int | None:
    if dynamic.get("max_batch_size"):
        return int(dynamic["max_batch_size"])
    return int(band.high) if band.high is not None else None
