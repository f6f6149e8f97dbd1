"""What the training loop changes as it goes, in one place, and what of it a checkpoint keeps.

``TrainState`` is the shared state (every rank holds the same): the step, the attempt, the
learning rate before rollbacks lower it, the batch size, the validation pass rates, the device
hours of earlier attempts, the controllers; ``state_dict`` is a checkpoint's trainer.json.
``rank_state`` is one rank's own part: its random streams and its place in the data, so a resumed
run draws exactly the samples the uninterrupted run would have.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch

from .controllers import Controllers
from .data import PromptSampler, as_tuples


@dataclass
class TrainState:
    """The loop's state. ``status`` / ``end_reason`` say how the run ends ("completed" until a
    stop or a failure); they are not checkpointed (a resumed run decides them again)."""

    base_lr: float  # before stability rollbacks lower it (a batch resize may scale it)
    batch_size: int  # completions per step, the world's
    world_size: int
    controllers: Controllers
    started: float  # the clock when this attempt started
    step: int = 0
    attempt: int = 0  # 0 on a fresh run dir; every resume and every rollback is a new attempt
    val_rates: dict[int, float] = field(default_factory=dict)
    hours_before: float = 0.0  # device hours of the attempts before this one
    losses: list[float] = field(default_factory=list)
    skipped_steps: int = 0
    status: str = "completed"
    end_reason: str | None = None

    @property
    def running(self) -> bool:
        return self.status == "completed"

    def end(self, status: str, reason: str | None) -> None:
        self.status, self.end_reason = status, reason

    def lr(self) -> float:
        """The learning rate now: the base rate times the rollbacks' factor."""
        return self.base_lr * self.controllers.lr_scale

    def device_hours(self, now: float) -> float:
        return self.hours_before + (now - self.started) / 3600.0 * self.world_size

    def state_dict(self, now: float) -> dict[str, Any]:
        """What every rank shares, for the checkpoint (JSON)."""
        controllers = self.controllers.state_dict()
        return {"step": self.step, "attempt": self.attempt, "base_lr": self.base_lr,
                "batch_size": self.batch_size,
                "val_rates": {str(k): v for k, v in self.val_rates.items()},
                "device_hours": self.device_hours(now), **controllers, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Back to a checkpoint's state (the attempt is this run's own: it is not restored)."""
        self.step = int(state["step"])
        self.base_lr, self.batch_size = float(state["base_lr"]), int(state["batch_size"])
        self.hours_before = float(state["device_hours"])
        self.val_rates.clear()
        self.val_rates.update({int(k): v for k, v in state["val_rates"].items()})
        self.controllers.load_state_dict(state)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def rank_state(sampler: PromptSampler, device: torch.device) -> dict[str, Any]:
    """This rank's random streams and data position: what makes a resumed run repeat exactly."""
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python_rng": random.getstate(),
        **sampler.state_dict(),
    }


def restore_rank_state(state: dict[str, Any], sampler: PromptSampler) -> None:
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"])
    random.setstate(as_tuples(state["python_rng"]))
    sampler.load_state_dict(state)
