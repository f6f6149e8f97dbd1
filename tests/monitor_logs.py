"""Logs written the way verl, OpenRLHF and TRL write them, for the monitor's source tests and bench.

The keys are the trainers' own (see preflight/monitor/metricmap.py for where each was looked up).
Every log tells the same story, so each replay must raise exactly the same alerts:
- truncation 2 % up to step 20, then 25 %: ``truncation_high`` at step 21 (cooldown 100: once);
- a loss spike at step 60: ``loss_spike`` at step 60;
- validation every 10 steps, rising towards ~0.45: ``pass_rate_low`` at step 100 (its cadence).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

STEPS = 120
T0 = 1_700_000_000.0
STEP_SECONDS = 60.0
EXPECTED_ALERTS = {("truncation_high", 21), ("loss_spike", 60), ("pass_rate_low", 100)}


def story(step: int) -> dict[str, float]:
    """The monitor-side values at a step (validation only every 10 steps)."""
    out = {"loss": 0.5 + 0.01 * math.sin(step), "reward": 0.3 + step / 400, "gen_len": 800.0 + step,
           "truncation": 0.02 if step <= 20 else 0.25, "grad_norm": 1.0, "lr": 1e-6}
    if step == 60:
        out["loss"] = 5.0
    if step % 10 == 0:
        out["val"] = 0.2 + 0.25 * (1 - math.exp(-step / 40))
    return out


def verl_record(step: int, elapsed: bool = False) -> dict[str, Any]:
    s = story(step)
    data: dict[str, Any] = {
        "actor/pg_loss": s["loss"], "actor/grad_norm": s["grad_norm"], "actor/lr": s["lr"],
        "actor/entropy": 0.4, "actor/pg_clipfrac": 0.01, "actor/ppo_kl": 0.001,
        "critic/score/mean": s["reward"], "critic/score/max": 1.0, "critic/score/min": 0.0,
        "critic/rewards/mean": s["reward"], "critic/advantages/mean": 0.0,
        "response_length/mean": s["gen_len"], "response_length/max": 1024.0,
        "response_length/min": 12.0, "response_length/clip_ratio": s["truncation"],
        "prompt_length/mean": 120.0, "prompt_length/clip_ratio": 0.0,
        "timing_s/gen": 40.0, "timing_s/update_actor": 15.0, "timing_s/step": STEP_SECONDS,
        "perf/total_num_tokens": 500_000, "perf/time_per_step": STEP_SECONDS,
        "perf/throughput": 1041.6, "perf/max_memory_allocated_gb": 61.2,
        "training/global_step": step, "training/epoch": 0,
    }
    if "val" in s:
        data["val-core/openai/gsm8k/acc/mean@4"] = s["val"]
        data["val-aux/openai/gsm8k/reward/mean@4"] = s["val"]
    record: dict[str, Any] = {"step": step, "data": data}
    if elapsed:
        record = {"step": step, "elapsed_seconds": step * STEP_SECONDS, "data": data}
    return record


def write_verl(path: Path, steps: int = STEPS) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for step in range(1, steps + 1):
            fh.write(json.dumps(verl_record(step)) + "\n")
    return path


def openrlhf_scalars(step: int) -> dict[str, float]:
    """What OpenRLHF's TensorboardLogger writes: train/<status key>, eval/<eval key>."""
    s = story(step)
    out = {"train/policy_loss": s["loss"], "train/actor_lr": s["lr"], "train/kl": 0.001,
           "train/reward": s["reward"], "train/return": s["reward"], "train/response_length": s["gen_len"],
           "train/total_length": s["gen_len"] + 120, "train/truncated": s["truncation"],
           "train/actor_grad_norm": s["grad_norm"]}
    if "val" in s:
        out.update({"eval/pass1": s["val"], "eval/reward_mean": s["val"],
                    "eval/response_length_mean": s["gen_len"], "eval/truncated_rate": s["truncation"]})
    return out


def trl_logs(step: int) -> list[dict[str, float]]:
    """GRPOTrainer.log entries at a step, as trainer_state.json's log_history keeps them."""
    s = story(step)
    train = {"loss": s["loss"], "grad_norm": s["grad_norm"], "learning_rate": s["lr"],
             "reward": s["reward"], "reward_std": 0.3, "rewards/accuracy/mean": s["reward"],
             "completions/mean_length": s["gen_len"], "completions/clipped_ratio": s["truncation"],
             "completions/mean_terminated_length": s["gen_len"] - 10, "kl": 0.0, "entropy": 0.4,
             "num_tokens": 1000.0 * step, "epoch": step / STEPS, "step": step}
    out = [train]
    if "val" in s:
        out.append({"eval_reward": s["val"], "eval_loss": s["loss"], "eval_runtime": 3.0,
                    "epoch": step / STEPS, "step": step})
    return out


def write_tensorboard(logdir: Path, scalars_at: Any, steps: int = STEPS) -> Path:
    """Event files written with torch's SummaryWriter, the writer verl, OpenRLHF and transformers'
    TensorBoard callback use (simple_value scalars)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(logdir))
    for step in range(1, steps + 1):
        for tag, value in scalars_at(step).items():
            writer.add_scalar(tag, value, step, walltime=T0 + step * STEP_SECONDS)
    writer.close()
    return logdir


def write_trainer_state(path: Path, steps: int = STEPS) -> Path:
    history = [entry for step in range(1, steps + 1) for entry in trl_logs(step)]
    path.write_text(json.dumps({"global_step": steps, "log_history": history}), encoding="utf-8")
    return path
