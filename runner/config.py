"""The run's settings, read from the spec once: a typed, frozen ``TrainConfig``.

Every setting the training loop uses is looked up here, with the overrides ``train()`` takes
(max_steps, warm_start_steps, warm_start_lr, val_limit), so the loop reads typed fields instead of
dotted spec paths, and a missing or mistyped setting fails at the start, not at step 400.
``BatchPlan`` is how a step's completions split over the ranks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preflight.errors import PreflightError
from preflight.memory import share_divisors
from preflight.spec import Spec

from .algo import LossConfig
from .rollout import RewardShaping, loss_config

DEMO_ROWS = 2000  # default training.task_rows: rows of the built-in math task before the split
CONTROLLER_SECTIONS = ("checkpoints", "stability", "early_stopping", "dynamic_batch")


class ConfigError(PreflightError, ValueError):
    """The spec asks for something this runner cannot run as written. The gate fails the same
    spec first (preflight's config.batch.divisibility and config.runner checks); this is the
    runner's own refusal, for a run started past the gate. The message names the field and the fix."""


@dataclass(frozen=True)
class BatchPlan:
    """A step's ``batch_size`` completions: groups of ``group`` completions per prompt, the same
    number of prompts on each of ``world_size`` ranks. Each rank trains its share ``micro``
    completions per forward/backward and generates it ``generation`` completions at a time (None:
    the whole share at once)."""

    batch_size: int
    group: int
    world_size: int
    micro: int | None = None
    generation: int | None = None

    def __post_init__(self) -> None:
        if self.batch_size % (self.world_size * self.group):
            unit = self.world_size * self.group
            raise ConfigError(f"training.batch_size {self.batch_size} must split into groups of "
                              f"{self.group} on each of {self.world_size} ranks: use a multiple of {unit}")
        share = self.batch_size // self.world_size
        if self.generation is not None and self.generation % self.group:
            raise ConfigError(f"training.generation_batch_size {self.generation} must hold whole groups of "
                              f"training.group_size {self.group}: use a multiple of {self.group}")
        for field, size, step in (("micro_batch_size", self.micro, 1),
                                  ("generation_batch_size", self.generation, self.group)):
            if size is not None and size < share and share % size:
                below = max(d for d in share_divisors(share, step) if d < size)
                raise ConfigError(f"training.{field} {size} must divide each rank's share of the batch, "
                                  f"{share} completions (training.batch_size {self.batch_size} / "
                                  f"{self.world_size} ranks): use a divisor of {share}, such as {below}")

    @property
    def unit(self) -> int:
        """The step between two batch sizes that split evenly: world size x group size."""
        return self.world_size * self.group

    @property
    def prompts_per_rank(self) -> int:
        return self.prompts_for(self.batch_size)

    def prompts_for(self, batch_size: int) -> int:
        """Prompts per rank at another batch size (a grown or resumed one)."""
        return batch_size // self.world_size // self.group


@dataclass(frozen=True)
class DataConfig:
    """Where the prompts come from: the spec's train/val files, or the built-in arithmetic task."""

    domain: str
    train_path: str | None
    val_path: str | None
    fields: Mapping[str, Any]
    seed: int
    task_difficulty: tuple[str, ...] | None  # None: every level
    task_rows: int
    val_limit: int | None  # validation prompts at most; None: the whole val split

    @classmethod
    def from_spec(cls, spec: Spec, val_limit: int | None = None) -> DataConfig:
        """The data settings; raises ConfigError where the spec's data would not be what it says:
        one of data.train / data.val without the other, or a domain other than math without them
        (the built-in task is arithmetic)."""
        cfg = spec.get
        train, val, domain = cfg("data.train"), cfg("data.val"), str(cfg("run.domain", "math"))
        if bool(train) != bool(val):
            given, missing = ("data.train", "data.val") if train else ("data.val", "data.train")
            raise ConfigError(f"{given} is set but {missing} is not: the runner reads data files only when "
                              f"both are given; set {missing}, or neither for the built-in arithmetic task")
        if not train and domain != "math":
            raise ConfigError(f"run.domain {domain} needs data.train and data.val: the built-in task is "
                              "arithmetic (math)")
        levels = cfg("training.task_difficulty")
        if val_limit is None:
            val_limit = int(cfg("training.val_prompts", 256) or 0) or None
        return cls(domain=domain, train_path=train, val_path=val, fields=cfg("data.fields") or {},
                   seed=int(cfg("training.seed", 0)),
                   task_difficulty=tuple(levels) if levels else None,
                   task_rows=int(cfg("training.task_rows", DEMO_ROWS) or DEMO_ROWS),
                   val_limit=val_limit)


@dataclass(frozen=True)
class WarmStartConfig:
    """The optional supervised warm start before RL: ``steps`` at most (0: none), at ``lr``,
    ending early once the validation pass rate reaches ``target``."""

    steps: int
    lr: float
    target: float | None


@dataclass(frozen=True)
class CheckpointConfig:
    directory: Path
    metric: str  # the value each checkpoint is ranked by (controllers.METRICS)
    save_best_only: bool
    keep_last: int
    save_interval: int
    recovery: bool  # resume from the latest verified checkpoint at start
    async_save: bool = True  # write in the background, the loop waits only for the host copy (checkpoints.async)


@dataclass(frozen=True)
class StabilityConfig:
    nonfinite_limit: int
    lr_factor: float
    spike_threshold: float
    spike_window: int
    spike_action: str
    max_rollbacks: int


@dataclass(frozen=True)
class EarlyStoppingConfig:
    enabled: bool
    metric: str
    patience: int
    min_delta: float
    mode: str


@dataclass(frozen=True)
class DynamicBatchConfig:
    enabled: bool
    max_batch_size: int
    target: float
    factor: float
    every_steps: int
    efficiency: str  # "utilization", "throughput" or "auto"
    lr_scaling: str  # "none", "sqrt" or "linear"


@dataclass(frozen=True)
class TrainConfig:
    """Everything the loop reads, typed; built once by ``from_spec``."""

    run_name: str
    spec_sha256: str
    spec_path: str
    model_name: str
    uses_gpus: bool
    seed: int
    steps_total: int
    batch: BatchPlan
    max_prompt: int
    max_new: int
    temperature: float
    eval_interval: int
    lr: float
    grad_clip: float
    updates_per_batch: int
    gradient_checkpointing: bool  # recompute each decoder layer's activations in the backward pass
    loss: LossConfig
    shaping: RewardShaping
    fp32_lm_head: bool
    gradient_compression: str
    bucket_size_mb: Any
    dynamic_sampling: bool
    positive_resampling: float | None  # the pass-rate threshold of no-positive-resampling; None: off
    warm_start: WarmStartConfig
    data: DataConfig
    checkpoints: CheckpointConfig
    stability: StabilityConfig
    early_stopping: EarlyStoppingConfig
    dynamic_batch: DynamicBatchConfig
    sinks: tuple[str, ...]
    wandb: Mapping[str, Any] | None
    sections: Mapping[str, Any]  # the spec's own sections, as run_start records them

    @classmethod
    def from_spec(cls, spec: Spec, *, world_size: int = 1, max_steps: int | None = None,
                  warm_start_steps: int | None = None, warm_start_lr: float | None = None,
                  val_limit: int | None = None) -> TrainConfig:
        """The spec's settings with train()'s overrides; raises ConfigError (a ValueError) when the
        batch does not split over the ranks or the data would not be what the spec says."""
        cfg = spec.get
        steps_total = int(max_steps if max_steps is not None else cfg("training.max_steps"))
        if warm_start_steps is None:
            warm_start_steps = int(cfg("training.warm_start_steps", 0) or 0)
        if warm_start_lr is None:
            warm_start_lr = float(cfg("training.warm_start_lr", 1e-3))
        target = cfg("training.warm_start_target")
        return cls(
            run_name=spec.name, spec_sha256=spec.sha256, spec_path=str(spec.path.resolve()),
            model_name=str(cfg("model.name_or_path")), uses_gpus=spec.uses_gpus,
            seed=int(cfg("training.seed", 0)), steps_total=steps_total,
            batch=BatchPlan(int(cfg("training.batch_size")), int(cfg("training.group_size")), world_size,
                            micro=_optional_int(cfg("training.micro_batch_size")),
                            generation=_optional_int(cfg("training.generation_batch_size"))),
            gradient_checkpointing=bool(cfg("training.gradient_checkpointing", False)),
            max_prompt=int(cfg("training.max_prompt_tokens")),
            max_new=int(cfg("training.max_response_tokens")),
            temperature=float(cfg("training.temperature")),
            eval_interval=max(int(cfg("training.eval_interval")), 1),
            lr=float(cfg("training.learning_rate")), grad_clip=float(cfg("training.grad_clip")),
            updates_per_batch=max(int(cfg("algorithm.updates_per_batch", 1) or 1), 1),
            loss=loss_config(spec), shaping=RewardShaping.from_spec(spec),
            fp32_lm_head=bool(cfg("algorithm.fp32_lm_head")),
            gradient_compression=str(cfg("distributed.gradient_compression")),
            bucket_size_mb=cfg("distributed.bucket_size_mb"),
            dynamic_sampling=bool(cfg("algorithm.dynamic_sampling")),
            positive_resampling=(float(cfg("algorithm.positive_resampling_threshold"))
                                 if cfg("algorithm.no_positive_resampling") else None),
            warm_start=WarmStartConfig(int(warm_start_steps), float(warm_start_lr),
                                       None if target is None else float(target)),
            data=DataConfig.from_spec(spec, val_limit),
            checkpoints=_checkpoints(spec), stability=_stability(spec),
            early_stopping=_early_stopping(spec), dynamic_batch=_dynamic_batch(spec),
            sinks=tuple(cfg("monitoring.sinks") or ()), wandb=cfg("monitoring.wandb"),
            sections={"algorithm": cfg("algorithm"),
                      "training": {**cfg("training"), "max_steps": steps_total},
                      **{k: cfg(k) for k in CONTROLLER_SECTIONS}},
        )

    def run_start_record(self, train_rows: int, val_rows: int) -> dict[str, Any]:
        """The ``config`` of the run_start event: the spec's sections and what the runner made of
        them."""
        return {
            "algorithm": self.sections["algorithm"], "training": self.sections["training"],
            "model": self.model_name, "loss": vars(self.loss).copy(),
            "prompts_per_rank": self.batch.prompts_per_rank, "warm_start_steps": self.warm_start.steps,
            "train_rows": train_rows, "val_rows": val_rows, "optimizer": "AdamW(weight_decay=0)",
            # what the runner may do on its own during the run (runner.controllers, runner.checkpoint)
            **{k: self.sections[k] for k in CONTROLLER_SECTIONS},
            "checkpoint_dir": str(self.checkpoints.directory),
        }


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _checkpoints(spec: Spec) -> CheckpointConfig:
    cfg = spec.get
    return CheckpointConfig(
        directory=spec.checkpoint_dir, metric=str(cfg("checkpoints.metric")),
        save_best_only=bool(cfg("checkpoints.save_best_only")), keep_last=int(cfg("checkpoints.keep_last")),
        save_interval=max(int(cfg("checkpoints.save_interval")), 1),
        recovery=bool(cfg("distributed.checkpoint_recovery")), async_save=bool(cfg("checkpoints.async", True)))


def _stability(spec: Spec) -> StabilityConfig:
    cfg = spec.get
    return StabilityConfig(
        nonfinite_limit=int(cfg("stability.nonfinite_limit")), lr_factor=float(cfg("stability.lr_factor")),
        spike_threshold=float(cfg("stability.spike_threshold")), spike_window=int(cfg("stability.spike_window")),
        spike_action=str(cfg("stability.spike_action")), max_rollbacks=int(cfg("stability.max_rollbacks")))


def _early_stopping(spec: Spec) -> EarlyStoppingConfig:
    cfg = spec.get
    enabled = bool(cfg("early_stopping.enabled"))
    return EarlyStoppingConfig(
        enabled=enabled, metric=str(cfg("early_stopping.metric")),
        patience=int(cfg("early_stopping.patience")) if enabled else 0,
        min_delta=float(cfg("early_stopping.min_delta")) if enabled else 0.0,
        mode=str(cfg("early_stopping.mode")))


def _dynamic_batch(spec: Spec) -> DynamicBatchConfig:
    cfg = spec.get
    enabled = bool(cfg("dynamic_batch.enabled"))
    return DynamicBatchConfig(
        enabled=enabled,
        max_batch_size=int(cfg("dynamic_batch.max_batch_size")) if enabled else 0,
        target=float(cfg("dynamic_batch.target_efficiency")) if enabled else 0.0,
        factor=float(cfg("dynamic_batch.factor")) if enabled else 1.0,
        every_steps=int(cfg("dynamic_batch.every_steps")) if enabled else 1,
        efficiency=str(cfg("dynamic_batch.efficiency")),
        lr_scaling=str(cfg("dynamic_batch.lr_scaling")))
