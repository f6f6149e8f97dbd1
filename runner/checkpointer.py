"""The training loop's checkpoints: save the whole state, restore it, resume a run dir.

``runner.checkpoint`` is the storage (a folder that is either whole or absent, verified by its
manifest); the ``Checkpointer`` decides what goes in (the model and optimizer, ``TrainState``, each
rank's random streams and data position) and says what happened in the event stream: a
``checkpoint`` event for each commit (with the seconds the loop was blocked and the seconds to the
commit), an ``error`` event for a save that failed, a ``recovery`` event when a start resumes.

With checkpoints.async (the default) a save takes the state dicts on the training thread and hands
them to a background thread, which copies them to host memory, writes, commits (manifest, rename,
keep policy) and records the event. Training goes on during the copy (the next rollout only reads
the weights); the next optimizer step waits for the copy to be done (a step pre-hook on the
optimizer, so no step can slip past it), and the event's ``blocked_seconds`` counts that wait with
the save call itself. At most one save is in flight: the next save, a rollback and the run's end
wait for it; ``poll`` after each step ends the run as failed once every rank knows the save
failed. The ranks of a background save agree over a gloo group of their own, so they never meet
training's collectives.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from preflight.monitor.tailer import read_events

from .checkpoint import (
    CheckpointError,
    CheckpointStore,
    Committed,
    FaultHook,
    HostCopy,
    HostStaging,
    SaveOutcome,
    agree,
    disk_full,
    stage_training_state,
    write_training_state,
)
from .checkpoint_load import NotLoadable, Restored, load_training_state, restore_newest
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


@dataclass
class InFlight:
    """A save whose write runs in the background."""

    step: int
    done: Future[SaveOutcome]
    staging: HostStaging


def _writer_group() -> Any:
    """A gloo process group for background saves (every rank creates it at the same point), or
    None in a single process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return dist.new_group(backend="gloo")


class Checkpointer:
    """Saves and restores the training state of this rank, together with the other ranks (every
    rank calls ``save``, ``poll``, ``finish``, ``choose`` and ``restore`` at the same points)."""

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
        self.background = settings.async_save
        self.host = HostCopy()
        self.group = _writer_group() if self.background else None
        # A model whose state dict holds buffers may change them in a forward pass (running
        # statistics), before any optimizer step: its host copy is waited for in the save itself.
        self.copy_behind_rollout = self.background and not _has_state_buffers(model)
        if self.background:
            optimizer.register_step_pre_hook(lambda *_: self.wait_for_staging())
        self.in_flight: InFlight | None = None
        self.failed_step: int | None = None  # a save that failed and has not yet ended the run
        self._loaded: Restored | None = None  # what choose() loaded, for restore()

    # --- saving ----------------------------------------------------------------------------------

    def save(self, state: TrainState, events: EventWriter) -> None:
        """Checkpoint at ``state.step``. Blocking: the write and commit happen now. In the
        background: wait for the save before (at most one in flight), take the state dicts and
        return while a writer thread copies them to host memory (the next optimizer step waits
        for that copy) and writes them. A save that fails ends the run as failed (with an error
        event naming the step)."""
        t0, started = time.perf_counter(), time.time()
        self._wait()
        if self._end_if_failed(state):
            return
        at = state.step
        value, value_step = state.controllers.ckpt_value
        events.flush()  # the event log covers every step the checkpoint does: a resume leaves no gap
        staged = stage_training_state(at, model=self.model, optimizer=self.optimizer,
                                      rank_state=rank_state(self.sampler, self.device),
                                      trainer_state=state.state_dict(self.clock()), started=started)
        staging = HostStaging(self.host, staged.state, self.device) if self.background else None
        call_seconds = time.perf_counter() - t0  # what the loop waits besides the copy (staging.waited)

        def committed(done: Committed, seconds: float) -> None:
            # rank 0, right after the rename: the event is on disk before the ranks meet again;
            # the host copy was done before the write began, so its wait is final
            deleted = self.store.prune()
            blocked = seconds if staging is None else call_seconds + staging.waited
            events.emit("checkpoint", step=at, path=str(done.path), bytes=done.bytes, seconds=seconds,
                        blocked_seconds=min(blocked, seconds), metric=value,
                        metric_name=self.metric_name, metric_step=value_step,
                        deleted=[str(p) for p in deleted])
            events.flush()

        def write() -> SaveOutcome:
            try:
                outcome = write_training_state(self.store, staged, rank=self.rank, device=self.device,
                                               metric=value, metric_name=self.metric_name,
                                               group=self.group, staging=staging, on_commit=committed,
                                               fault_hook=self.fault_hook)
            finally:
                if staging is not None:
                    staging.release()  # whatever happened, the training thread must not wait forever
            if not outcome.ok:
                self._report(at, outcome, events)  # at once, from the writer: the monitor sees it
            return outcome

        if staging is None:
            self._settle(at, write())
            self._end_if_failed(state)
            return
        self.in_flight = InFlight(at, _in_thread(write, f"preflight-checkpoint-{at}"), staging)
        if not self.copy_behind_rollout:
            staging.wait()

    def wait_for_staging(self) -> None:
        """Before the model or optimizer state changes: the save in flight has its host copy.
        Called by the optimizer before every step; returns at once when no copy is running."""
        if self.in_flight is not None:
            self.in_flight.staging.wait()

    def _report(self, at: int, outcome: SaveOutcome, events: EventWriter) -> None:
        if outcome.error is None:  # ranks other than 0 only learn that it failed
            return
        err = outcome.error
        fix = ("free space there or point storage.checkpoint_dir at a larger disk"
               if disk_full(err) else "fix the cause")
        events.emit("error", step=at, exception=type(err).__name__,
                    message=f"checkpoint at step {at} not written to {self.store.root}: {err}. "
                            f"Earlier checkpoints are intact; {fix}, then start the runner again "
                            "to resume from the latest one")
        events.flush()

    def poll(self, state: TrainState) -> None:
        """After each step: once the save in flight is done on every rank, settle it (a failed one
        ends the run). Never waits for the write."""
        if self.in_flight is not None and agree(self.in_flight.done.done(), self.device):
            self._wait()
        self._end_if_failed(state)

    def finish(self, state: TrainState) -> None:
        """Before the run ends: wait for the save in flight; a failed one ends the run as failed."""
        self._wait()
        self._end_if_failed(state)

    @contextlib.contextmanager
    def settled(self) -> Iterator[None]:
        """However the block ends (an exception included), the save in flight is waited for first,
        so it commits, or fails and says so, before the run's events close."""
        try:
            yield
        finally:
            inflight, self.in_flight = self.in_flight, None
            if inflight is not None:
                inflight.done.exception()  # waits; the block's own exception, if any, goes on

    def _wait(self) -> None:
        inflight, self.in_flight = self.in_flight, None
        if inflight is not None:
            self._settle(inflight.step, inflight.done.result())  # a writer's own bug is raised here

    def _settle(self, step: int, outcome: SaveOutcome) -> None:
        # on the training thread, at the same point on every rank (every rank learns the same ok)
        if not outcome.ok:
            self.failed_step = step

    def _end_if_failed(self, state: TrainState) -> bool:
        if self.failed_step is None:
            return False
        state.end("failed", f"the checkpoint at step {self.failed_step} could not be written")
        self.failed_step = None
        return True

    # --- restoring -------------------------------------------------------------------------------

    def choose(self) -> tuple[Committed | None, Rejected]:
        """The newest checkpoint that verifies, loaded into the model and optimizer as it is
        verified (``restore`` then applies the rest), and the newer ones that did not. A save in
        flight is waited for first: it may be the newest."""
        self._wait()
        self._loaded = restore_newest(self.store, self.rank, model=self.model, optimizer=self.optimizer)
        return self._loaded.committed, self._loaded.rejected

    def restore(self, target: Committed, state: TrainState) -> None:
        """Bring this process to a checkpoint: model, optimizer (already loaded when ``choose``
        chose it), random streams, data position, ``state`` (its step included) and the learning
        rate."""
        loaded, self._loaded = self._loaded, None
        if loaded is not None and loaded.committed is not None and loaded.committed.path == target.path:
            shared, mine = loaded.trainer or {}, loaded.rank_state
        else:
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
        the checkpoint resumed from. Raises CheckpointError when one verifies but does not load,
        or when a damaged one was partly loaded and none is left to load over it."""
        if not self.recovery:
            return None
        resumed, rejected = self._choose_to_resume()
        if resumed is not None:
            self.restore(resumed, state)
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

    def _choose_to_resume(self) -> tuple[Committed | None, Rejected]:
        try:
            resumed, rejected = self.choose()
        except NotLoadable as exc:
            raise CheckpointError(
                f"{exc.path}: verified, but it does not load into this run "
                f"({type(exc.cause).__name__}: {exc.cause}); it was written for another model or "
                "optimizer. Point storage.checkpoint_dir at a new folder, or set "
                "distributed.checkpoint_recovery: false to start afresh") from exc
        if resumed is None and self._loaded is not None and self._loaded.dirty:
            raise CheckpointError(
                f"{rejected[-1][0]} failed verification while it was loaded ({rejected[-1][1]}), and "
                "no older checkpoint verifies; this process holds part of the damaged one. Start the "
                "runner again: it starts afresh from step 0 (the damaged checkpoints stay aside)")
        return resumed, rejected


def _has_state_buffers(model: Any) -> bool:
    """True when the model's state dict holds buffers (not only parameters)."""
    for module in model.modules():
        for name, buf in module._buffers.items():
            if buf is not None and name not in module._non_persistent_buffers_set:
                return True
    return False


def _in_thread(fn: Callable[[], SaveOutcome], name: str) -> Future[SaveOutcome]:
    """Run ``fn`` on a daemon thread (a process that is killed or exits does not wait for it);
    the future holds its outcome or its exception."""
    done: Future[SaveOutcome] = Future()

    def run() -> None:
        try:
            done.set_result(fn())
        except BaseException as exc:  # handed to whoever waits for the save
            done.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return done
