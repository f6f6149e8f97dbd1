"""Checkpoints that are either whole or absent: torch.distributed.checkpoint shards plus a manifest.

Layout of ``checkpoint_dir``::

    step_000100/               a committed checkpoint
        .metadata, __0_0.distcp, __1_0.distcp    model + optimizer (torch.distributed.checkpoint)
        rank0.pt, rank1.pt     per-rank state: RNG streams, data order and position
        trainer.json           what every rank shares: step, lr, batch size, controllers, metrics
        manifest.json          written last: every file's size and sha256, and its own sha256
    .tmp-step_000200/          a save in progress (or one a crash left behind; removed at start)
    step_000150.corrupt/       a checkpoint that failed verification, moved aside for a look

A save writes everything into ``.tmp-step_N``, then the manifest, fsyncs, and renames the folder
to ``step_N``: the rename is the commit. A folder without a manifest that verifies (every listed
file present with its size and checksum, the manifest's own checksum intact) is not a checkpoint.
Every rank fsyncs and hashes the files it wrote, and at a resume checks an equal share of them, so
hashing a large checkpoint costs its size / world size per rank; rank 0 writes the manifest and
commits. Every rank must therefore see the same ``checkpoint_dir`` (one machine, or shared
storage, as multi-node FSDP checkpoints need anyway).

``save_training_state(..., fault_hook=)`` lets tests fail a save between the shards and the
manifest (a full disk).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from preflight.errors import PreflightError
from preflight.rundir import CHECKPOINT_FORMAT as FORMAT
from preflight.rundir import CHECKPOINT_MANIFEST as MANIFEST
from preflight.rundir import CHECKPOINT_STEP_DIR as STEP_DIR
from preflight.spec import canonical_sha256

TRAINER_STATE = "trainer.json"
TMP_PREFIX = ".tmp-"
CORRUPT_SUFFIX = ".corrupt"

# torch.distributed.checkpoint reports a failed read or write (a full disk among them) as a
# CheckpointException, which derives from BaseException, not Exception: catch it by name.
CAUGHT: tuple[type[BaseException], ...] = (Exception, CheckpointException)

# A test's fault_hook(stage, folder), called on every rank; stage "written": shards and state are
# in the temporary folder, the manifest is not. Raising there is what a disk that fills mid-save does.
FaultHook = Callable[[str, Path], None]


class CheckpointError(PreflightError):
    """A checkpoint could not be written or read; the message names the folder and the fix."""


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def data_files(folder: Path) -> list[str]:
    """Every file of a checkpoint folder but its manifest, as sorted relative paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and not p.name.startswith(MANIFEST))


def hash_files(folder: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """fsync, size and sha256 of each named file."""
    files: dict[str, dict[str, Any]] = {}
    for name in names:
        path = folder / name
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
        files[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return files


_RANK_FILE = re.compile(r"^(?:__(\d+)_\d+\.distcp|rank(\d+)\.pt)$")


def share_of(names: list[str], rank: int, world: int) -> list[str]:
    """The files ``rank`` hashes at a save: the shards and the state it wrote itself (a world of
    ranks hashes its checkpoint in parallel, and from its own page cache); rank 0 also takes the
    shared ones (.metadata, trainer.json)."""
    mine = []
    for name in names:
        m = _RANK_FILE.match(name)
        owner = int(m.group(1) or m.group(2)) % world if m else 0
        if owner == rank:
            mine.append(name)
    return mine


def write_manifest(folder: Path, step: int, metric: float | None, metric_name: str,
                   extra: dict[str, Any] | None = None,
                   files: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write manifest.json for ``folder`` (fsynced); returns it. ``files``: the sizes and sha256
    the ranks computed; None hashes every file here."""
    if files is None:
        files = hash_files(folder, data_files(folder))
    files = dict(sorted(files.items()))
    manifest: dict[str, Any] = {
        "format": FORMAT, "step": int(step), "created": time.time(),
        "metric": metric if metric is None or metric == metric else None,  # NaN -> None
        "metric_name": metric_name, "bytes": sum(f["bytes"] for f in files.values()),
        "files": files, **(extra or {}),
    }
    manifest["manifest_sha256"] = canonical_sha256(manifest)
    tmp = folder / (MANIFEST + ".part")
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(manifest, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, folder / MANIFEST)
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    """The folder's verified manifest (every file checked); raises CheckpointError saying what is
    wrong."""
    manifest = load_manifest(folder)
    verify_files(folder, manifest["files"])
    return manifest


def load_manifest(folder: Path) -> dict[str, Any]:
    """The folder's manifest, its own checksum checked (the files are not); raises
    CheckpointError."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {MANIFEST} (a save that never committed)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a {FORMAT} manifest")
    claimed = manifest.pop("manifest_sha256", None)
    if claimed != canonical_sha256(manifest):
        raise CheckpointError(f"{path}: the manifest's own checksum does not match (edited or "
                              "damaged)")
    files = manifest.get("files")
    if not isinstance(files, dict) or ".metadata" not in files:
        raise CheckpointError(f"{path}: lists no torch.distributed.checkpoint .metadata")
    return manifest


def verify_files(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    """Each listed file exists with its size and sha256; raises CheckpointError on the first that
    does not."""
    for name, entry in files.items():
        file = folder / name
        try:
            size = file.stat().st_size
        except OSError:
            raise CheckpointError(f"{file}: listed in the manifest but missing") from None
        if size != entry.get("bytes"):
            raise CheckpointError(f"{file}: {size} bytes, the manifest says {entry.get('bytes')} "
                                  "(truncated or rewritten)")
        if sha256_file(file) != entry.get("sha256"):
            raise CheckpointError(f"{file}: sha256 differs from the manifest (corrupted)")


@dataclass
class Committed:
    """A checkpoint as the store sees it: its folder and verified manifest fields."""

    path: Path
    step: int
    bytes: int
    metric: float | None


class CheckpointStore:
    """The folder of checkpoints: list, verify, commit, and prune by the keep policy.

    Keep policy: ``save_best_only`` keeps the best checkpoint by ``metric`` (``mode`` max or min;
    ties go to the newer) plus the latest; otherwise the last ``keep_last``. Pruning runs only
    after a commit, so the checkpoint a resume needs always exists.
    """

    def __init__(self, root: Path, *, save_best_only: bool = True, keep_last: int = 3,
                 mode: str = "max") -> None:
        self.root = Path(root)
        self.save_best_only = save_best_only
        self.keep_last = max(int(keep_last), 1)
        self.mode = mode

    def committed(self) -> list[Path]:
        """Folders named step_N that hold a manifest file, oldest first (not yet verified)."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir()
                 if (m := STEP_DIR.match(p.name)) and (p / MANIFEST).is_file()]
        return [p for _, p in sorted(found)]

    def quarantine(self, path: Path) -> Path:
        """Move a checkpoint that failed verification aside (kept for a post-mortem)."""
        target = path.with_name(path.name + CORRUPT_SUFFIX)
        n = 1
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{n}")
        os.rename(path, target)
        return target

    def clean_partial(self) -> list[Path]:
        """Remove temporary folders a crashed save left behind."""
        gone = []
        if self.root.is_dir():
            for p in self.root.iterdir():
                if p.name.startswith(TMP_PREFIX) and p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                    gone.append(p)
        return gone

    def tmp_dir(self, step: int) -> Path:
        return self.root / f"{TMP_PREFIX}{step_dir_name(step)}"

    def prepare(self, step: int) -> Path:
        """An empty temporary folder for step's save (rank 0 only; others wait at a barrier)."""
        tmp = self.tmp_dir(step)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def commit(self, tmp: Path, step: int, metric: float | None, metric_name: str,
               extra: dict[str, Any] | None = None,
               files: dict[str, dict[str, Any]] | None = None) -> Committed:
        """Write the manifest into ``tmp`` and rename it to step_N (replacing a step_N left from an
        attempt that was rolled back past). Raises OSError as the disk does."""
        manifest = write_manifest(tmp, step, metric, metric_name, extra, files)
        final = self.root / step_dir_name(step)
        if final.exists():
            # the old step_N is from before a rollback: move it away first, drop it after
            old = final.with_name(f"{TMP_PREFIX}replaced-{final.name}")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_dir(self.root)
        return Committed(final, int(step), int(manifest["bytes"]), manifest["metric"])

    def abort(self, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    def prune(self) -> list[Path]:
        """Delete committed checkpoints the keep policy does not need; returns what went."""
        entries = []
        for path in self.committed():
            try:
                m = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
                entries.append((int(m["step"]), m.get("metric"), path))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # unreadable manifests are left for scan() to report
        if not entries:
            return []
        latest = entries[-1][2]
        if self.save_best_only:
            scored = [(metric if self.mode == "max" else -metric, step, path)
                      for step, metric, path in entries if isinstance(metric, (int, float))]
            keep = {latest} | ({max(scored)[2]} if scored else set())
        else:
            keep = {path for _, _, path in entries[-self.keep_last:]}
        gone = [path for _, _, path in entries if path not in keep]
        for path in gone:
            shutil.rmtree(path, ignore_errors=True)
        return gone


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception, what it wraps (a torch.distributed.checkpoint failure wraps each rank's),
    and its causes."""
    found: list[BaseException] = []
    todo = [exc]
    while todo and len(found) < 64:
        e = todo.pop()
        found.append(e)
        for wrapped in getattr(e, "failures", {}).values():
            inner = wrapped[0] if isinstance(wrapped, tuple) else wrapped
            if isinstance(inner, BaseException):
                todo.append(inner)
        if e.__cause__ is not None:
            todo.append(e.__cause__)
    return found


def disk_full(exc: BaseException) -> bool:
    """True when the failure was the disk (or a quota) running out of space."""
    return any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in _causes(exc))


def write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()


# --- saving and loading the training state (every rank calls these together) --------------------


@dataclass
class SaveOutcome:
    """``committed`` on rank 0 after a commit; ``error`` on rank 0 when the save failed (the other
    ranks only learn ``ok``)."""

    ok: bool
    seconds: float
    committed: Committed | None = None
    error: BaseException | None = None


def _agree(ok: bool, device: Any) -> bool:
    """True only if every rank says ok (also a barrier)."""
    if not (dist.is_available() and dist.is_initialized()):
        return ok
    flag = torch.tensor([0 if ok else 1], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.SUM)
    return int(flag.item()) == 0


def _broadcast(value: Any) -> Any:
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def save_training_state(store: CheckpointStore, step: int, *, model: Any, optimizer: Any, rank: int,
                        device: Any, rank_state: dict[str, Any], trainer_state: dict[str, Any],
                        metric: float | None, metric_name: str,
                        on_commit: Callable[[Committed, float], None] | None = None,
                        fault_hook: FaultHook | None = None) -> SaveOutcome:
    """Write model + optimizer (torch.distributed.checkpoint), each rank's state and the shared
    trainer state into a temporary folder, then commit it on rank 0. A failure on any rank (a full
    disk, a fault hook) aborts the save on every rank and leaves earlier checkpoints untouched.
    ``on_commit(committed, seconds)`` runs on rank 0 right after the rename, before the ranks meet
    again, so a record of the commit (the checkpoint event) is written even if a rank dies next."""
    t0 = time.time()
    tmp = store.tmp_dir(step)
    error: BaseException | None = None
    try:
        if rank == 0:
            store.prepare(step)
    except CAUGHT as exc:
        error = exc
    ok = _agree(error is None, device)
    if ok:
        try:
            state: dict[str, Any] = {"model": get_model_state_dict(model)}
            # A fresh optimizer has no state yet; get_optimizer_state_dict would make some with a
            # zero-lr step (changing Adam's step count), so a fresh optimizer is recorded as such.
            has_optim = bool(optimizer.state)
            if has_optim:
                state["optim"] = get_optimizer_state_dict(model, optimizer)
            with _quiet_single_process():
                dcp.save(state, checkpoint_id=tmp, no_dist=_world_size() == 1)
            torch.save(rank_state, tmp / f"rank{rank}.pt")
            if rank == 0:
                write_json(tmp / TRAINER_STATE, {**trainer_state, "optimizer_state": has_optim})
            if fault_hook is not None:
                fault_hook("written", tmp)
        except CAUGHT as exc:
            error = exc
        ok = _agree(error is None, device)
    hashes: dict[str, dict[str, Any]] = {}
    if ok:  # every rank hashes (and fsyncs) what it wrote, in parallel; rank 0 collects
        try:
            hashes = hash_files(tmp, share_of(data_files(tmp), rank, _world_size()))
        except CAUGHT as exc:
            error = exc
        ok = _agree(error is None, device)
        hashes = {k: v for part in _all_gather(hashes) for k, v in part.items()}
    committed = None
    if ok and rank == 0:
        try:
            committed = store.commit(tmp, step, metric, metric_name,
                                     {"world_size": _world_size(), "attempt": trainer_state.get("attempt")},
                                     files=hashes)
            if on_commit is not None:
                on_commit(committed, time.time() - t0)
        except CAUGHT as exc:
            error = exc
    ok = _agree(error is None, device)
    if not ok and rank == 0:
        store.abort(tmp)
        if error is None:
            error = CheckpointError("another rank failed to write its part of the checkpoint")
    return SaveOutcome(ok, time.time() - t0, committed, error if rank == 0 else None)


@contextlib.contextmanager
def _quiet_single_process() -> Iterator[None]:
    """torch.distributed.checkpoint warns on every call without a process group; in one process
    that is the intent, not news."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is .*uninitialized")
        yield


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_gather(value: Any) -> list[Any]:
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def choose_checkpoint(store: CheckpointStore, rank: int) -> tuple[Committed | None,
                                                                  list[tuple[str, str]]]:
    """The newest checkpoint that verifies, and the newer ones that did not (path, problem), the
    same on every rank. Every rank checks an equal share of each candidate's files (sizes and
    sha256) in parallel; rank 0 removes half-written saves and moves failed checkpoints aside."""
    world = _world_size()
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
            names = sorted(manifest["files"])[rank::world]
            verify_files(path, {n: manifest["files"][n] for n in names})
        except CheckpointError as exc:
            problem = str(exc)
        problems = [p for p in _all_gather(problem) if p]
        if not problems:
            chosen = Committed(path, int(manifest["step"]), int(manifest["bytes"]),
                               manifest.get("metric"))
            break
        failed.append((name, problems[0]))
    rejected: list[tuple[str, str]] = []
    if rank == 0:
        for name, problem in failed:
            moved = store.quarantine(Path(name))
            rejected.append((name, f"{problem}; moved to {moved.name}"))
    rejected = _broadcast(rejected)
    return chosen, rejected


def load_training_state(path: Path, *, model: Any, optimizer: Any,
                        rank: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Load model + optimizer in place; returns (trainer state, this rank's state or None when the
    checkpoint was written by a smaller world)."""
    trainer = json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
    state: dict[str, Any] = {"model": get_model_state_dict(model)}
    if trainer.get("optimizer_state"):
        state["optim"] = get_optimizer_state_dict(model, optimizer)
    with _quiet_single_process():
        dcp.load(state, checkpoint_id=path, no_dist=_world_size() == 1)
    set_model_state_dict(model, state["model"])
    if "optim" in state:
        set_optimizer_state_dict(model, optimizer, state["optim"])
    else:
        optimizer.state.clear()  # the checkpoint was taken before the first optimizer step
    mine = path / f"rank{rank}.pt"
    rank_state = torch.load(mine, weights_only=True) if mine.is_file() else None
    return trainer, rank_state
