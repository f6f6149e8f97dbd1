"""Every rule between fields has a spec that breaks it, and only it.

BASE is a valid spec (a 7.6B model on one 8-GPU node) that passes the static gate with no check
warning except what the case itself sets off. Each case changes BASE so that exactly one rule is
broken and runs `preflight check SPEC --level static` through the CLI: a fail-severity rule must
exit 1 with that check failed and no other check failed; a warn-severity rule exits 0 with that
check warned; a rule enforced when the spec loads exits 2 naming the field. Rules about the
machine (package metadata, NICs, measured GPUs) run their check on fake probes or a planted
measurement instead. A rule registered without a case fails test_every_rule_has_a_breaking_case.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fakes import FakePackageProbe, FakeSystemProbe, gpu_probes

from preflight.checks.runner_fit import IGNORED
from preflight.cli import main
from preflight.engine import REGISTRY, Context
from preflight.probes import Nic
from preflight.probes_active.collective import CollectiveMeasurement, Row
from preflight.probes_active.gpu import GpuFigures, GpuMeasurement
from preflight.result import Status
from preflight.spec import deep_merge, load_spec

BASE: dict[str, Any] = {
    "run": {"name": "rules"},
    "model": {"name_or_path": "Qwen/Qwen2.5-7B-Instruct", "params_b": 7.6},
    "hardware": {"nodes": 1, "gpus_per_node": 8},
    "training": {"batch_size": 512, "group_size": 8, "max_steps": 200, "eval_interval": 10,
                 # inside the reference's tuning range, so the temperature case's warning is its own
                 "temperature": 0.1, "val_prompts": None,
                 "max_prompt_tokens": 1024, "max_response_tokens": 2048,
                 # ~45 GB per 80 GB GPU (hw.memory.gpu): 4 of a GPU's 64 sequences per forward/backward
                 # with recomputation; the rollout generates 64 at once (the cases that grow the batch
                 # keep that bound)
                 "micro_batch_size": 4, "gradient_checkpointing": True, "generation_batch_size": 64},
    "checkpoints": {"save_interval": 20},
    "monitoring": {"sinks": ["jsonl"]},
}
# For the cases whose own rule is about a model far too large for BASE's 8 GPUs (a 70B model on the
# small stage): the memory checks fail on them as well, rightly; those rules have their own cases in
# tests/test_checks_model.py.
NO_MEMORY = {"checklist": {"severity": {"hw.memory.gpu": "off", "hw.memory.host": "off"}}}

# the small stage's preset turns DAPO's overlong shaping on, with its 4096-token buffer
SMALL = {"run": {"stage": "small"}, "hardware": {"nodes": 2}, "distributed": {"ray_address": "auto"},
         "training": {"max_response_tokens": 16384, "micro_batch_size": 1, "generation_batch_size": 16}}
CPU = {"hardware": {"gpu_required": False, "gpus_per_node": 0}, "distributed": {"cpu_workers": 2},
       "training": {"batch_size": 16, "group_size": 8}}
DYN = {"dynamic_batch": {"enabled": True, "max_batch_size": 1024}}


@dataclass(frozen=True)
class Case:
    """A change to BASE that breaks one rule, and what the gate must then say."""

    key: str  # "CHECK FIELD <- FIRST-RELATED" (see rule_key)
    change: dict[str, Any]
    expect: str  # "fail", "warn" or "exit2"
    says: str = ""  # a phrase the result (or the exit-2 message) must contain
    level: str = "static"  # static: through the CLI; node/active: the check alone on fakes
    probes: Callable[[], Any] | None = None
    memo: dict[str, Any] = field(default_factory=dict)
    also: tuple[str, ...] = ()  # checks that must fail with it, for a rule defined by their failure


def rule_key(check_id: str, rule: Any) -> str:
    return f"{check_id} {rule.field} <- {rule.related[0] if rule.related else '-'}"


def _gpus(tflops: float, copy_gb_s: float = 50.0) -> GpuMeasurement:
    return GpuMeasurement([GpuFigures(0, "NVIDIA H100 80GB HBM3", copy_gb_s, copy_gb_s, tflops)])


class _Snapshot:  # what network.collective reads in cluster mode (--cluster)
    def __init__(self, busbw_gb_s: float) -> None:
        rows = [Row("all_reduce", 64 * 2**20, 0.1, busbw_gb_s, busbw_gb_s)]
        self.collective = CollectiveMeasurement("nccl", 2, rows, [], names=["node-a", "node-b"])
        self.collective_error = ""


CASES: list[Case] = [
    # --- ranges, by model size and stage -------------------------------------------------------
    Case("config.lr.range training.learning_rate <- model.params_b", {"training": {"learning_rate": 3e-5}},
         "warn", "1e-06-1e-05"),
    Case("config.lr.range training.learning_rate <- model.params_b", {"training": {"learning_rate": 1e-4 * 1.5}},
         "fail", "more than 10x outside"),
    Case("config.lr.range training.learning_rate <- model.params_b", {"training": {"learning_rate": 5e-8}},
         "fail", "learns nothing"),
    Case("config.temperature.range training.temperature <- training.group_size", {"training": {"temperature": 1.0}},
         "warn", "tuning range"),
    Case("config.temperature.range training.temperature <- training.group_size",
         {"training": {"temperature": 0.0005}}, "fail", "greedy"),
    Case("config.temperature.range training.temperature <- training.group_size", {"training": {"temperature": 3.0}},
         "fail", "noise"),
    Case("config.clip.range training.clip_low <- algorithm.loss", {"training": {"clip_low": 0.05}}, "warn",
         "clip_low 0.05 outside 0.1-0.5"),
    Case("config.clip.range training.clip_low <- algorithm.loss", {"training": {"clip_low": 0.005}}, "fail",
         "more than 10x outside"),
    Case("config.clip.range training.clip_high <- algorithm.loss", {"training": {"clip_high": 0.8}}, "warn",
         "clip_high 0.8 outside"),
    Case("config.clip.range training.clip_high <- algorithm.loss",
         {"algorithm": {"loss": "cispo"}, "training": {"clip_high": 8.0}}, "warn", "0.1-5"),
    Case("config.clip.range training.clip_high <- algorithm.loss", {"training": {"clip_high": 6.0}}, "fail",
         "more than 10x outside"),
    Case("config.clip.range training.clip_high <- training.clip_low",
         {"training": {"clip_low": 0.3, "clip_high": 0.2}}, "fail", "inverts"),
    Case("config.batch.range training.batch_size <- run.stage", {"training": {"batch_size": 4096}}, "warn",
         "512-2048"),
    Case("config.batch.divisibility training.batch_size <- training.group_size",  # a share of 65: micro 1
         {"training": {"batch_size": 520, "micro_batch_size": 1, "generation_batch_size": None}}, "fail",
         "multiple of 64"),
    Case("config.batch.micro training.micro_batch_size <- training.batch_size", {"training": {"micro_batch_size": 3}},
         "fail", "set training.micro_batch_size to 2 or 4"),
    Case("config.batch.micro training.micro_batch_size <- training.batch_size",  # a share of 8
         {"training": {"batch_size": 64, "micro_batch_size": 16, "generation_batch_size": None}}, "warn",
         "micro_batch_size 16 > each rank's share of 8 completions"),
    Case("config.batch.micro training.generation_batch_size <- training.group_size",
         {"training": {"generation_batch_size": 20}}, "fail", "not a multiple of group_size 8"),
    Case("config.batch.micro training.generation_batch_size <- training.group_size",
         {"training": {"generation_batch_size": 24}}, "fail", "set training.generation_batch_size to 16 or 32"),
    Case("config.batch.micro training.generation_batch_size <- training.group_size",
         {"training": {"generation_batch_size": 128}}, "warn", "it has no effect"),
    Case("config.group_size training.group_size <- algorithm.name",
         {"training": {"group_size": 1, "batch_size": 512}}, "fail", "group_size = 1"),
    Case("config.stage model.params_b <- run.stage", deep_merge(SMALL, {"model": {"params_b": 14}}), "warn",
         "model size outside 1-8 B"),
    Case("config.stage model.params_b <- run.stage",
         deep_merge(SMALL, {"model": {"params_b": 70}, "training": {"max_steps": 3000}, **NO_MEMORY}), "fail",
         "against the stage's ceiling", also=("budget.gpu_hours",)),
    Case("config.stage algorithm.name <- run.stage", deep_merge(SMALL, {"algorithm": {"name": "scalerl",
                                                                                        "loss": "cispo"}}),
         "warn", "not planned for the small stage"),
    # --- cadences and the run's length -----------------------------------------------------------
    Case("config.intervals training.eval_interval <- training.max_steps",
         # a step metric for 'best', so only the evaluation cadence is broken
         {"training": {"eval_interval": 400}, "checkpoints": {"save_interval": 200, "metric": "training_loss"},
          "early_stopping": {"enabled": False}}, "fail", "never validate"),
    Case("config.intervals checkpoints.save_interval <- training.max_steps", {"checkpoints": {"save_interval": 400,
                                                                                             "save_best_only": False}},
         "fail", "restarts the run from the beginning"),
    Case("config.intervals checkpoints.save_interval <- training.eval_interval", {"checkpoints": {"save_interval": 25}},
         "warn", "multiple of 10"),
    Case("config.checkpoint.metric checkpoints.metric <- checkpoints.save_best_only",
         {"checkpoints": {"metric": "validation_loss"}}, "fail", "not a metric the runner records"),
    Case("config.early_stopping.metric early_stopping.metric <- data.val", {"early_stopping": {"metric": "bleu"}},
         "fail", "not a metric the runner records"),
    Case("config.early_stopping.metric early_stopping.patience <- training.eval_interval",
         {"early_stopping": {"patience": 20}}, "warn", "patience covers 200 steps"),
    Case("config.early_stopping.metric early_stopping.mode <- early_stopping.metric",
         {"early_stopping": {"mode": "min"}}, "fail", "mode min"),
    Case("config.early_stopping.metric early_stopping.min_delta <- early_stopping.metric",
         {"early_stopping": {"min_delta": 0.2}}, "warn", "min_delta 0.2"),
    Case("config.early_stopping.metric early_stopping.min_delta <- early_stopping.metric",
         {"early_stopping": {"min_delta": 1.0}}, "fail", "can never improve"),
    Case("config.recovery.retries distributed.max_retries <- distributed.checkpoint_recovery",
         {"distributed": {"max_retries": 0}}, "fail", "max_retries = 0"),
    Case("config.recovery.retries distributed.checkpoint_recovery <- distributed.max_retries",
         {"distributed": {"checkpoint_recovery": False}}, "warn", "checkpoint_recovery off"),
    Case("config.warm_start training.warm_start_target <- training.warm_start_steps",
         {"training": {"warm_start_steps": 100, "warm_start_lr": 1e-4, "warm_start_target": 0}}, "fail",
         "ends at once"),
    Case("config.warm_start training.warm_start_steps <- training.warm_start_target",
         {"training": {"warm_start_steps": 10, "warm_start_lr": 1e-4, "warm_start_target": 0.3}}, "warn",
         "never looked at"),
    Case("config.warm_start training.warm_start_lr <- model.params_b",
         {"training": {"warm_start_steps": 100, "warm_start_lr": 1e-3}}, "warn", "warm_start_lr 0.001 outside"),
    Case("config.warm_start training.warm_start_lr <- model.params_b",
         {"training": {"warm_start_steps": 100, "warm_start_lr": 1e-2}}, "fail", "more than 10x outside"),
    Case("config.dynamic_batch dynamic_batch.max_batch_size <- training.batch_size",
         deep_merge(DYN, {"dynamic_batch": {"max_batch_size": 560}}), "fail", "can never grow"),
    Case("config.dynamic_batch dynamic_batch.max_batch_size <- training.group_size",
         deep_merge(DYN, {"dynamic_batch": {"max_batch_size": 1000}}), "warn", "stops at 960"),
    Case("config.dynamic_batch dynamic_batch.every_steps <- training.max_steps",
         deep_merge(DYN, {"dynamic_batch": {"every_steps": 200}}), "fail", "no decision"),
    Case("config.dynamic_batch dynamic_batch.target_efficiency <- dynamic_batch.enabled",
         deep_merge(DYN, {"dynamic_batch": {"target_efficiency": 0}}), "fail", "never grows"),
    Case("config.dynamic_batch dynamic_batch.efficiency <- hardware.gpu_required",
         deep_merge(CPU, {"dynamic_batch": {"enabled": True, "max_batch_size": 64, "efficiency": "utilization"}}),
         "fail", "never measured"),
    Case("config.dynamic_batch dynamic_batch.lr_scaling <- training.learning_rate",
         deep_merge(DYN, {"training": {"learning_rate": 8e-6}, "dynamic_batch": {"lr_scaling": "linear"}}),
         "warn", "takes the learning rate to 1.6e-05"),
    Case("config.dynamic_batch dynamic_batch.lr_scaling <- training.learning_rate",
         deep_merge(DYN, {"training": {"learning_rate": 8e-6}, "dynamic_batch": {"lr_scaling": "linear",
                                                                                 "max_batch_size": 8192}}),
         "fail", "more than 10x outside"),
    Case("config.stability stability.spike_window <- training.max_steps",
         {"training": {"max_steps": 6, "eval_interval": 2}, "checkpoints": {"save_interval": 2},
          "early_stopping": {"enabled": False}}, "warn", "no spike is ever judged"),
    Case("config.stability stability.nonfinite_limit <- training.max_steps", {"stability": {"nonfinite_limit": 300}},
         "warn", "never rolled back"),
    Case("config.stability stability.max_rollbacks <- stability.spike_action",
         {"stability": {"spike_action": "rollback", "max_rollbacks": 0}}, "warn", "ends the run as failed"),
    Case("config.stability stability.spike_threshold <- stability.spike_action",
         {"stability": {"spike_threshold": 2}}, "warn", "ordinary loss noise"),
    Case("config.stability stability.lr_factor <- stability.max_rollbacks",
         {"stability": {"lr_factor": 0.1, "max_rollbacks": 3}}, "warn", "learning nothing"),
    Case("config.stability training.grad_clip <- stability.nonfinite_limit", {"training": {"grad_clip": 0}}, "warn",
         "not clipped"),
    # --- the algorithm's pieces ------------------------------------------------------------------
    Case("config.algorithm algorithm.name <- algorithm.dynamic_sampling", {"algorithm": {"name": "dapo"}}, "warn",
         "trains plain GRPO"),
    Case("config.algorithm algorithm.batch_advantage_norm <- algorithm.advantage_std_normalize",
         {"algorithm": {"batch_advantage_norm": True}}, "warn", "rescales advantages"),
    Case("config.algorithm algorithm.dynamic_sampling <- training.batch_size",
         {"algorithm": {"dynamic_sampling": True}}, "warn", "instead of drawing new prompts"),
    Case("config.algorithm algorithm.max_off_policy_steps <- algorithm.updates_per_batch",
         {"algorithm": {"max_off_policy_steps": 4}}, "warn", "does not read it"),
    Case("config.algorithm algorithm.updates_per_batch <- algorithm.max_off_policy_steps",
         {"algorithm": {"updates_per_batch": 12}}, "warn", "more than 8"),
    Case("config.overlong algorithm.overlong_buffer_tokens <- training.max_response_tokens",
         {"algorithm": {"overlong_shaping": True, "overlong_buffer_tokens": 1500}}, "warn",
         "most completions are penalized"),
    Case("config.overlong algorithm.overlong_buffer_tokens <- training.max_response_tokens",
         {"algorithm": {"overlong_shaping": True, "overlong_buffer_tokens": 4096}}, "fail",
         "every completion is penalized"),
    Case("config.overlong algorithm.overlong_penalty_factor <- algorithm.overlong_shaping",
         {"algorithm": {"overlong_shaping": True, "overlong_buffer_tokens": 400, "overlong_penalty_factor": 0}},
         "warn", "changes no reward"),
    Case("config.resampling algorithm.positive_resampling_threshold <- algorithm.no_positive_resampling",
         {"algorithm": {"no_positive_resampling": True, "positive_resampling_threshold": 0.3}}, "warn",
         "half the time"),
    Case("config.resampling algorithm.positive_resampling_threshold <- algorithm.no_positive_resampling",
         {"algorithm": {"no_positive_resampling": True, "positive_resampling_threshold": 0}}, "fail",
         "solved once seen"),
    Case("config.kl algorithm.kl_beta <- -", {"algorithm": {"kl_beta": 0.3}}, "warn", "kl_beta 0.3 above 0.1"),
    Case("config.kl algorithm.kl_beta <- -", {"algorithm": {"kl_beta": 2.0}}, "fail", "outweighs the reward"),
    # --- what the built-in runner does -----------------------------------------------------------
    Case("config.runner data.train <- data.val",  # step metrics: no validation split is needed for them
         {"data": {"train": "train.jsonl"}, "checkpoints": {"metric": "training_loss"},
          "early_stopping": {"metric": "pass_rate"}}, "fail", "built-in arithmetic task instead"),
    Case("config.runner run.domain <- data.train", {"run": {"domain": "code"}}, "fail", "score arithmetic"),
    Case("config.runner run.reward <- run.domain", {"run": {"reward": "bleu"}}, "fail", "no built-in reward"),
    Case("config.runner run.reward <- run.domain", {"run": {"reward": "rewards:"}}, "fail", "not 'module:attr'"),
    Case("config.runner run.reward <- run.domain", {"run": {"reward": "no_such_reward_pkg:score"}}, "warn",
         "not importable here"),
    Case("config.runner training.max_response_tokens <- training.max_prompt_tokens",
         {"model": {"name_or_path": "tiny", "params_b": 0.001}, "training": {"max_prompt_tokens": 64,
                                                                             "max_response_tokens": 255,
                                                                             "learning_rate": 1e-4}},
         "warn", "cuts prompts to 1 token"),
    Case("config.runner training.val_prompts <- training.task_rows",
         {"training": {"val_prompts": 500, "task_rows": 2000}}, "warn", "~100 validation rows"),
    Case("config.runner model.dtype <- hardware.gpu_required", {"model": {"dtype": "fp16"}}, "warn",
         "bf16 mixed precision"),
    Case("config.split data.split.train_ratio <- data.split.val_ratio", {"data": {"split": {"train_ratio": 0.8}}},
         "fail", "not 1"),
    Case("config.split data.split.min_holdout <- data.split.val_ratio",
         {"data": {"split": {"train_ratio": 0.96, "val_ratio": 0.02, "test_ratio": 0.02}}}, "fail",
         "less than min_holdout"),
    Case("config.split data.split.tolerance <- data.split.val_ratio", {"data": {"split": {"tolerance": 0.05}}},
         "warn", "empty split would pass"),
    # --- topology and the measurement settings -------------------------------------------------------
    Case("config.topology distributed.backend <- hardware.gpu_required", {"distributed": {"backend": "gloo"}},
         "fail", "trains on CPU"),
    Case("config.topology distributed.backend <- hardware.gpu_required",
         deep_merge(CPU, {"distributed": {"backend": "nccl"}}), "fail", "NCCL needs a GPU"),
    Case("config.topology distributed.ray_address <- hardware.nodes", {"hardware": {"nodes": 2}}, "warn",
         "no distributed.ray_address"),
    Case("config.topology hardware.gpus_per_node <- hardware.gpu_required",
         {"hardware": {"gpus_per_node": 0}, "training": {"batch_size": 16}}, "fail", "train on 2 CPU workers"),
    Case("config.topology hardware.gpu_required <- hardware.gpus_per_node",
         {"hardware": {"gpu_required": False}, "training": {"batch_size": 16}}, "warn", "GPUs stay idle"),
    Case("config.active cluster.node_timeout_s <- active.gpu_budget_s", {"cluster": {"node_timeout_s": 60}}, "warn",
         "unresponsive"),
    Case("config.active active.collective_local_ranks <- hardware.gpus_per_node",
         {"distributed": {"backend": "nccl"}, "active": {"collective_local_ranks": 16}}, "warn",
         "cannot start"),
    Case("config.active active.min_matmul_fraction <- budget.assumed_mfu", {"active": {"min_matmul_fraction": 0.2}},
         "warn", "may not deliver"),
    Case("config.active active.checkpoint_write_fraction <- checkpoints.save_interval",
         {"active": {"checkpoint_write_fraction": 0.001}}, "warn", "GB/s per node"),
    # --- the budget ---------------------------------------------------------------------------------
    Case("budget.gpu_hours budget.gpu_hours_max <- run.stage", {"budget": {"gpu_hours_max": 10}}, "fail",
         "GPU hours"),
    Case("budget.gpu_hours budget.gpu_hours_min <- run.stage", {"budget": {"gpu_hours_min": 1e6}}, "warn",
         "smaller than the stage plans"),
    Case("budget.assumptions budget.gpu_hours_min <- budget.gpu_hours_max",
         {"budget": {"gpu_hours_min": 5e5, "gpu_hours_max": 1e5}}, "fail", "gpu_hours_min 500,000 > gpu_hours_max"),
    Case("budget.assumptions budget.assumed_mfu <- -", {"budget": {"assumed_mfu": 0.55}}, "warn",
         "outside 0.05-0.5"),
    Case("budget.assumptions budget.assumed_mfu <- -", {"budget": {"assumed_mfu": 0.9}}, "fail",
         "no RL trainer"),
    Case("budget.assumptions budget.peak_tflops <- hardware.gpu_models",
         {"hardware": {"gpu_models": ["H100"]}, "budget": {"peak_tflops": 1200}}, "warn", "above the best datasheet"),
    Case("budget.assumptions budget.peak_tflops <- hardware.gpu_models",
         {"hardware": {"gpu_models": ["H100"]}, "budget": {"peak_tflops": 3000}}, "fail", "more than 2x"),
    # --- monitoring ----------------------------------------------------------------------------------
    Case("monitor.rules monitoring.rules <- training.eval_interval", {"monitoring": {"rules": [
        {"id": "pr", "metric": "pass_rate", "op": "<", "threshold": 0.6, "every_steps": 15, "action": "look"}]}},
         "warn", "multiple of 10"),
    Case("monitor.rules monitoring.rules <- training.max_steps", {"monitoring": {"rules": [
        {"id": "tr", "metric": "truncation_rate", "op": ">", "threshold": 0.1, "every_steps": 500,
         "action": "look"}]}}, "warn", "never evaluated"),
    Case("monitor.rules monitoring.rules <- training.max_response_tokens", {"monitoring": {"rules": [
        {"id": "len", "metric": "gen_len_mean", "op": ">", "threshold": 15000, "action": "look"}]}}, "warn",
         "can never happen"),
    Case("monitor.rules monitoring.rules <- -", {"monitoring": {"rules": [
        {"id": "pr", "metric": "pass_rate", "op": "<", "threshold": 60, "every_steps": 10, "action": "look"}]}},
         "fail", "a rate in [0, 1]"),
    # --- the spec's own policy ------------------------------------------------------------------------
    Case("config.waivers waivers <- machine: today's date", {"waivers": [
        {"check": "config.batch.range", "reason": "smaller batch on purpose", "expires": "2020-01-01"}]}, "warn",
         "expired 2020-01-01"),
    Case("config.waivers waivers <- -", {"waivers": [{"check": "config.lr.rnage", "reason": "typo in the id"}]},
         "exit2", "waivers"),
    Case("config.waivers checklist.severity <- -", {"checklist": {"severity": {"config.lr.rnage": "off"}}}, "exit2",
         "checklist.severity"),
    Case("config.waivers checklist.items <- -", {"checklist": {"items": [
        {"id": "mine", "title": "Mine", "checks": ["nope.*"]}]}}, "exit2", "checklist.items"),
]


def _unused(field_path: str, value: Any, switch: dict[str, Any] | None = None) -> Case:
    """A case for config.unused: ``field_path`` set to ``value`` while what reads it is off."""
    change: dict[str, Any] = {}
    node = change
    *parents, leaf = field_path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    first = next(i for i in IGNORED if i.field == field_path)
    related = first.related[0] if first.related else "-"
    return Case(f"config.unused {field_path} <- {related}", deep_merge(change, switch or {}), "warn",
                f"{field_path} is set but ignored")


FILES = {"data": {"train": "train.jsonl", "val": "val.jsonl"}}
CASES += [
    _unused("algorithm.positive_resampling_threshold", 0.8),
    _unused("distributed.cpu_offload", True),
    _unused("distributed.tensor_parallel_size", 2),
    _unused("distributed.sequence_parallel_size", 2),
    _unused("algorithm.overlong_buffer_tokens", 512),
    _unused("algorithm.overlong_penalty_factor", 0.5),
    _unused("training.warm_start_lr", 1e-5),
    _unused("training.warm_start_target", 0.3),
    _unused("training.task_difficulty", ["easy"], FILES),
    _unused("training.task_rows", 5000, FILES),
    _unused("data.split.train_ratio", 0.9),
    _unused("data.split.val_ratio", 0.05),
    _unused("data.split.test_ratio", 0.05),
    _unused("checkpoints.keep_last", 5),
    _unused("checkpoints.metrics", ["training_loss"]),
    _unused("early_stopping.metric", "pass_rate", {"early_stopping": {"enabled": False}}),
    _unused("early_stopping.mode", "max", {"early_stopping": {"enabled": False}}),
    _unused("early_stopping.patience", 5, {"early_stopping": {"enabled": False}}),
    _unused("early_stopping.min_delta", 0.01, {"early_stopping": {"enabled": False}}),
    _unused("dynamic_batch.target_efficiency", 0.7),
    _unused("dynamic_batch.efficiency", "throughput"),
    _unused("dynamic_batch.max_batch_size", 1024),
    _unused("dynamic_batch.factor", 1.5),
    _unused("dynamic_batch.every_steps", 20),
    _unused("dynamic_batch.lr_scaling", "sqrt"),
    _unused("algorithm.fp32_lm_head", True, CPU),
    _unused("distributed.cpu_workers", 4),
    _unused("distributed.bucket_size_mb", 256),
    _unused("distributed.gradient_compression", "bf16", CPU),
    _unused("monitoring.wandb.project", "my-project"),
    _unused("monitoring.wandb.entity", "my-team"),
    _unused("monitoring.wandb.mode", "offline"),
    _unused("monitoring.gpu_sample_interval_s", 5),
    _unused("network.interfaces", ["ib0"]),
]

# Rules on facts about the machine: the check alone, on fake probes or a planted measurement.
MACHINE_CASES = [
    Case("monitor.run_dir run.run_dir <- machine: a writable directory", {"run": {"run_dir": "/ro/{name}"}}, "fail",
         "Permission denied", level="node",
         probes=lambda: gpu_probes(system=FakeSystemProbe(unwritable={"/ro/rules"}))),
    Case("monitor.wandb monitoring.wandb.mode <- monitoring.sinks", {"monitoring": {"sinks": ["jsonl", "wandb"]}},
         "fail", "no W&B API key", level="node", probes=lambda: gpu_probes(env={})),
    Case("stack.python stack.python <- machine: this Python", {"stack": {"python": ">=3.12"}}, "fail",
         "Python 3.11.7", level="node"),
    Case("stack.torch_build hardware.gpu_required <- hardware.gpus_per_node", {}, "fail", "CPU-only build",
         level="node", probes=lambda: gpu_probes(packages=FakePackageProbe(torch_cuda=None))),
    Case("stack.sinks monitoring.sinks <- stack.packages", {"monitoring": {"sinks": ["jsonl", "tensorboard"]}},
         "fail", "not installed: tensorboard", level="node"),
    Case("network.link_speed network.min_gbps <- hardware.nodes",
         {"hardware": {"nodes": 2}, "network": {"min_gbps": 400}}, "fail", "200 Gbit/s", level="node"),
    Case("network.link_speed network.interfaces <- machine: this node's NICs",
         {"hardware": {"nodes": 2}, "network": {"interfaces": ["ib7"]}}, "fail", "ib7", level="node",
         probes=lambda: gpu_probes(system=FakeSystemProbe(nic_list=[Nic("ib0", 200_000, True, False)]))),
    Case("hw.gpu.copy_bandwidth active.min_copy_gb_s <- machine: measured copy bandwidth",
         {"active": {"min_copy_gb_s": 60}}, "fail", "< 60 GB/s", level="active", memo={"active.gpu": _gpus(700)}),
    Case("network.collective network.min_gbps <- machine: measured all-reduce bus bandwidth",
         {"hardware": {"nodes": 2}, "distributed": {"ray_address": "auto"}, "network": {"min_gbps": 400}}, "fail",
         "40.0 Gbit/s", level="active", memo={"cluster.snapshot": _Snapshot(5.0)}),
    Case("hw.gpu.matmul active.min_matmul_fraction <- budget.peak_tflops", {"active": {"min_matmul_fraction": 0.9}},
         "fail", "700 TFLOP/s", level="active", memo={"active.gpu": _gpus(700)}),
]


def _write(tmp_path: Path, change: dict[str, Any]) -> Path:
    spec = deep_merge(copy.deepcopy(BASE), change)
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec), encoding="utf-8")  # JSON is YAML
    return path


def _static(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict[str, Any]], str]:
    code = main(["check", str(path), "--level", "static", "--format", "json"])
    out, err = capsys.readouterr()
    results = {r["id"]: r for r in json.loads(out)["results"]} if code in (0, 1) else {}
    return code, results, err


def test_the_base_spec_passes_with_every_rule_check_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, results, err = _static(_write(tmp_path, {}), capsys)
    assert code == 0, err
    checks = {c.key.split(" ")[0] for c in CASES}
    loud = {cid: (r["status"], r["found"]) for cid, r in results.items() if cid in checks
            and r["status"] not in ("pass", "skip")}
    assert loud == {}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.key} [{c.expect}: {c.says}]" for c in CASES])
def test_breaking_one_rule_is_blocked_by_its_check(case: Case, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    check_id = case.key.split(" ")[0]
    code, results, err = _static(_write(tmp_path, case.change), capsys)
    if case.expect == "exit2":
        assert code == 2, results
        assert case.says in err and "Traceback" not in err
        return
    result = results[check_id]
    text = " ".join((result["found"], result["expected"], result["remediation"]))
    assert result["status"] == case.expect, (result["found"], result["remediation"])
    assert case.says in text, text
    assert result["remediation"].strip()
    others = {cid: (r["status"], r["found"]) for cid, r in results.items()
              if cid != check_id and r["status"] in ("fail", "error")}
    assert others.keys() == set(case.also), "the case breaks more than its rule"
    assert code == (1 if case.expect == "fail" else 0), err


@pytest.mark.parametrize("case", MACHINE_CASES, ids=[c.key for c in MACHINE_CASES])
def test_breaking_a_machine_rule_fails_its_check(case: Case, tmp_path: Path) -> None:
    check_id = case.key.split(" ")[0]
    spec = load_spec(_write(tmp_path, case.change))
    ctx = Context(spec=spec, probes=(case.probes or gpu_probes)(), level=case.level)
    for key, value in case.memo.items():
        ctx.memo(key, lambda value=value: value)
    out = REGISTRY[check_id].fn(ctx)
    assert out.status == Status(case.expect), out.found
    assert case.says in out.found + out.expected, out.found
    healthy = Context(spec=load_spec(_write(tmp_path, {})), probes=gpu_probes(), level=case.level)
    for key, value in case.memo.items():
        healthy.memo(key, lambda value=value: value)
    assert REGISTRY[check_id].fn(healthy).status in (Status.PASS, Status.SKIP)


# The check modules whose rules this file breaks; a module with rules of its own brings its own
# cases (here or in its tests) and joins this list.
MODULES = {f"preflight.checks.{m}" for m in (
    "config", "cadence", "algorithm", "topology", "runner_fit", "ratios", "policy", "budget", "monitoring",
    "stack", "network", "active_network", "active_gpu")}


def _registered() -> dict[str, str]:
    return {rule_key(d.id, r): r.severity for d in REGISTRY.values() if d.fn.__module__ in MODULES
            for r in d.rules}


def test_every_rule_has_a_breaking_case() -> None:
    registered = _registered()
    covered = {c.key for c in CASES + MACHINE_CASES}
    assert sorted(covered - set(registered)) == [], "cases for rules that do not exist (renamed?)"
    assert sorted(set(registered) - covered) == [], "rules without a spec that breaks them: add a Case"


def test_a_rule_that_can_warn_and_fail_has_a_case_of_each() -> None:
    registered = _registered()
    for key, severity in registered.items():
        kinds = {c.expect for c in CASES + MACHINE_CASES if c.key == key}
        if "warn" in severity and "fail" in severity and "local ranks" not in severity \
                and "not importable" not in severity:
            assert kinds >= {"warn", "fail"}, f"{key} ({severity}) needs a warn case and a fail case"
