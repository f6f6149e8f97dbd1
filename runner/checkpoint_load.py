"""Choosing and loading a checkpoint: the newest one whose manifest verifies and whose files are
all there, loaded while every file is verified as it is read (runner.checkpoint_storage); a file whose
digest differs moves that checkpoint aside and ``restore_newest`` loads the one before. The
layout and the save half are in runner.checkpoint.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from .checkpoint import (
    CAUGHT,
    TRAINER_STATE,
    CheckpointStore,
    Committed,
    _all_gather,
    _broadcast,
    _checkpoint_error,
    _one_thread,
    _quiet_single_process,
    _world_size,
    check_present,
    load_manifest,
)
from .checkpoint_io import CheckpointError, read_verified
from .checkpoint_storage import VerifyingReader


def choose_checkpoint(store: CheckpointStore, rank: int) -> tuple[Committed | None,
                                                                  list[tuple[str, str]]]:
    """The newest checkpoint whose manifest verifies and whose files are all there with their
    sizes, and the newer ones that were not (path, problem), the same on every rank. No file is
    read here: the digests are checked by the load that reads the files (load_training_state).
    Rank 0 removes half-written saves and moves failed checkpoints aside."""
    candidates: list[str] = []
    if rank == 0:
        store.clean_partial()
        candidates = [str(p) for p in reversed(store.committed())]
    candidates = _broadcast(candidates)
    chosen: Committed | None = None
    failed: list[tuple[str, str]] = []
    for name in candidates:
        path = Path(name)
        problem = ""
        try:
            manifest = load_manifest(path)
            check_present(path, manifest["files"])
        except CheckpointError as exc:
            problem = str(exc)
        problems = [p for p in _all_gather(problem) if p]
        if not problems:
            chosen = Committed(path, int(manifest["step"]), int(manifest["bytes"]),
                               manifest.get("metric"))
            break
        failed.append((name, problems[0]))
    return chosen, _set_aside(store, rank, failed)


def _set_aside(store: CheckpointStore, rank: int,
               failed: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Rank 0 moves each failed checkpoint aside; every rank gets (path, problem; where it went)."""
    rejected: list[tuple[str, str]] = []
    if rank == 0:
        for name, problem in failed:
            moved = store.quarantine(Path(name))
            rejected.append((name, f"{problem}; moved to {moved.name}"))
    return _broadcast(rejected) if failed else rejected


def load_training_state(path: Path, *, model: Any, optimizer: Any,
                        rank: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Load model + optimizer in place, verifying each file against the manifest while it is read;
    returns (trainer state, this rank's state or None when the checkpoint was written by a smaller
    world). Raises CheckpointError when a file's digest differs: the model and optimizer may then
    hold part of the damaged checkpoint, and must be loaded again from another one."""
    manifest = load_manifest(path)
    files, algorithm = manifest["files"], manifest["hash"]
    trainer = json.loads(read_verified(path / TRAINER_STATE, files, algorithm))
    state: dict[str, Any] = {"model": get_model_state_dict(model)}
    if trainer.get("optimizer_state"):
        state["optim"] = get_optimizer_state_dict(model, optimizer)
    try:
        with _quiet_single_process(), _one_thread():
            dcp.load(state, storage_reader=VerifyingReader(path, files, algorithm),
                     no_dist=_world_size() == 1)
    except CAUGHT as exc:
        damaged = _checkpoint_error(exc)
        if damaged is not None:
            raise damaged from None
        raise
    with _one_thread():
        set_model_state_dict(model, state["model"])
        if "optim" in state:
            set_optimizer_state_dict(model, optimizer, state["optim"])
        else:
            optimizer.state.clear()  # the checkpoint was taken before the first optimizer step
    mine = f"rank{rank}.pt"
    rank_state = (torch.load(io.BytesIO(read_verified(path / mine, files, algorithm)), weights_only=True)
                  if mine in files else None)
    return trainer, rank_state


class NotLoadable(Exception):
    """A checkpoint that verifies but does not fit this model or optimizer (``cause`` says how)."""

    def __init__(self, path: Path, cause: BaseException) -> None:
        super().__init__(f"{path}: {type(cause).__name__}: {cause}")
        self.path, self.cause = path, cause


@dataclass
class Restored:
    """What ``restore_newest`` loaded. ``dirty``: a checkpoint that failed while loading left part
    of itself in the model and optimizer and no other checkpoint was loaded over it."""

    committed: Committed | None
    trainer: dict[str, Any] | None
    rank_state: dict[str, Any] | None
    rejected: list[tuple[str, str]]
    dirty: bool = False


def restore_newest(store: CheckpointStore, rank: int, *, model: Any, optimizer: Any) -> Restored:
    """Load the newest checkpoint that verifies into the model and optimizer, the same on every
    rank: a candidate whose manifest or sizes fail is skipped, one whose bytes fail while loading
    is moved aside and the next older one is loaded over it. Other load errors (a checkpoint of
    another model) are raised."""
    rejected: list[tuple[str, str]] = []
    dirty = False
    while True:
        chosen, skipped = choose_checkpoint(store, rank)
        rejected += skipped
        if chosen is None:
            return Restored(None, None, None, rejected, dirty)
        problem, trainer, mine = "", None, None
        try:
            trainer, mine = load_training_state(chosen.path, model=model, optimizer=optimizer, rank=rank)
        except CheckpointError as exc:
            problem = str(exc)
        except CAUGHT as exc:
            raise NotLoadable(chosen.path, exc) from exc
        problems = [p for p in _all_gather(problem) if p]
        if not problems:
            return Restored(chosen, trainer, mine, rejected, False)
        dirty = True
        rejected += _set_aside(store, rank, [(str(chosen.path), problems[0])])
