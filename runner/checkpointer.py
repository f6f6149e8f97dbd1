"""The training loop's checkpoints: save the whole state, restore it, resume a run dir.

``runner.checkpoint`` is the storage (a folder that is either whole or absent, verified by its
manifest); the ``Checkpointer`` decides what goes in (the model and optimizer, ``TrainState``, each
rank's random streams and data position) and says what happened in the event stream: a
``checkpoint`` event for each commit, an ``error`` event for a save that failed, a ``recovery``
event when a start resumes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from preflight.monitor.tailer import read_events

from .checkpoint import (
    CAUGHT,
    CheckpointError,
    CheckpointStore,
    Committed,
    FaultHook,
    choose_checkpoint,
    disk_full,
    load_training_state,
    save_training_state,
)
from .config import CheckpointConfig
from .controllers import MetricWindow
from .data import PromptSampler
from .events import EventWriter
from .state import TrainState, current_lr, rank_state, restore_rank_state, set_lr

Rejected = list[tuple[str, str]]  # (checkpoint folder, why it failed verification)


def previous_attempts(run_dir: Path) -> tuple[int, str | None]:
    """(attempt number for this start, how the previous attempt ended) from RUN_DIR/events.jsonl:
    0 on a fresh run dir, else 1 + the recoveries recorded so far."""
    starts = recoveries = 0
    last_end: str | None = None
    for event in read_events(run_dir):
        kind = event["type"]
        if kind == "run_start":
            starts, last_end = starts + 1, None
        elif kind == "recovery":
            recoveries += 1
        elif kind == "run_end":
            last_end = f"ended with status {event.get('status')!r} at step {event.get('step')}"
    if starts == 0:
        return 0, None
    return recoveries + 1, last_end or "ended without a run_end (a crashed or killed worker)"


def rejected_fields(rejected: Rejected) -> list[dict[str, str]]:
    """The recovery event's ``rejected``: each skipped checkpoint and its problem."""
    return [{"path": path, "problem": problem} for path, problem in rejected]


class Checkpointer:
    """Saves and restores the training state of this rank, together with the other ranks (every
    rank calls ``save``, ``choose`` and ``restore`` at the same points)."""

    def __init__(self, settings: CheckpointConfig, *, model: Any, optimizer: torch.optim.Optimizer,
                 sampler: PromptSampler, rank: int, device: torch.device, notes: list[str],
                 clock: Callable[[], float], fault_hook: FaultHook | None = None) -> None:
        self.store = CheckpointStore(settings.directory, save_best_only=settings.save_best_only,
                                     keep_last=settings.keep_last,
                                     mode=MetricWindow(settings.metric).mode)
        self.metric_name = settings.metric
        self.recovery = settings.recovery
        self.model = model
        self.optimizer = optimizer
        self.sampler = sampler
        self.rank = rank
        self.device = device
        self.notes = notes
        self.clock = clock
        self.fault_hook = fault_hook

    def save(self, state: TrainState, events: EventWriter) -> bool:
        """Checkpoint at ``state.step``; False (with an error event) when it could not be written."""
        at = state.step
        value, value_step = state.controllers.ckpt_value
        events.flush()  # the event log covers every step the checkpoint does: a resume leaves no gap

        def committed(done: Committed, seconds: float) -> None:
            # rank 0, right after the rename: the event is on disk before the ranks meet again
            deleted = self.store.prune()
            events.emit("checkpoint", step=at, path=str(done.path), bytes=done.bytes,
                        seconds=seconds, metric=value, metric_name=self.metric_name,
                        metric_step=value_step, deleted=[str(p) for p in deleted])
            events.flush()

        outcome = save_training_state(
            self.store, at, model=self.model, optimizer=self.optimizer, rank=self.rank,
            device=self.device, rank_state=rank_state(self.sampler, self.device),
            trainer_state=state.state_dict(self.clock()), metric=value, metric_name=self.metric_name,
            on_commit=committed, fault_hook=self.fault_hook)
        if not outcome.ok and outcome.error is not None:
            err = outcome.error
            fix = ("free space there or point storage.checkpoint_dir at a larger disk"
                   if disk_full(err) else "fix the cause")
            events.emit("error", step=at, exception=type(err).__name__,
                        message=f"checkpoint at step {at} not written to {self.store.root}: {err}. "
                                f"Earlier checkpoints are intact; {fix}, then start the runner again "
                                "to resume from the latest one")
        return outcome.ok

    def choose(self) -> tuple[Committed | None, Rejected]:
        """The newest checkpoint that verifies, and the newer ones that did not."""
        return choose_checkpoint(self.store, self.rank)

    def restore(self, target: Committed, state: TrainState) -> None:
        """Load a checkpoint into this process: model, optimizer, random streams, data position,
        ``state`` (its step included) and the learning rate."""
        shared, mine = load_training_state(target.path, model=self.model, optimizer=self.optimizer,
                                           rank=self.rank)
        if mine is not None:
            restore_rank_state(mine, self.sampler)
        else:
            self.notes.append(f"resume: {target.path} has no state for rank {self.rank} (written by "
                              f"a world of {shared.get('world_size')}); this rank's sampling streams "
                              "start afresh")
        state.load_state_dict(shared)
        set_lr(self.optimizer, state.lr())

    def resume(self, state: TrainState, previous_end: str | None,
               events: EventWriter) -> Committed | None:
        """Continue from the latest verified checkpoint (when distributed.checkpoint_recovery is
        on); any start after an earlier attempt is recorded as a recovery, a new attempt. Returns
        the checkpoint resumed from. Raises CheckpointError when it verifies but does not load."""
        if not self.recovery:
            return None
        resumed, rejected = self.choose()
        if resumed is not None:
            try:
                self.restore(resumed, state)
            except CAUGHT as exc:
                raise CheckpointError(
                    f"{resumed.path}: verified, but it does not load into this run "
                    f"({type(exc).__name__}: {exc}); it was written for another model or optimizer. "
                    "Point storage.checkpoint_dir at a new folder, or set "
                    "distributed.checkpoint_recovery: false to start afresh") from exc
        if resumed is not None or state.attempt > 0 or rejected:
            why = (f"the previous attempt {previous_end}" if state.attempt > 0 else
                   "checkpoints found in storage.checkpoint_dir")
            state.attempt = max(state.attempt, 1)
            what = (f"resumed from step {state.step}" if resumed is not None else
                    "no valid checkpoint; restarted from step 0")
            skipped = (f"; {len(rejected)} newer checkpoint(s) failed verification and were "
                       "skipped" if rejected else "")
            events.emit("recovery", step=state.step, attempt=state.attempt,
                        from_checkpoint=str(resumed.path) if resumed else None,
                        reason=f"{what}: {why}{skipped}", rejected=rejected_fields(rejected),
                        lr=current_lr(self.optimizer))
            events.flush()
        return resumed
