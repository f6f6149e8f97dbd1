"""Checkpoints that are either whole or absent: torch.distributed.checkpoint shards plus a manifest.

Layout of ``checkpoint_dir``::

    step_000100/               a committed checkpoint
        .metadata, __0_0.distcp, __1_0.distcp    model + optimizer (torch.distributed.checkpoint)
        rank0.pt, rank1.pt     per-rank state: RNG streams, data order and position
        trainer.json           what every rank shares: step, lr, batch size, controllers, metrics
        manifest.json          written last: every file's size and xxh3_128 digest, and its own sha256
    .tmp-step_000200/          a save in progress (or one a crash left behind; removed at start)
    step_000150.corrupt/       a checkpoint that failed verification, moved aside for a look

A save writes everything into ``.tmp-step_N`` (fsynced), then the manifest, and renames the folder
to ``step_N``: the rename is the commit. A folder without a manifest that verifies (every listed
file present with its size and digest, the manifest's own checksum intact) is not a checkpoint.
Each file is hashed while it is written, by the thread and rank that writes it
(runner.checkpoint_storage), so a save reads nothing back; rank 0 gathers the digests, writes the
manifest and commits. A load verifies each file while reading it, on the rank that reads it; a
file whose digest differs fails the load and the checkpoint is moved aside (``restore_newest``
then loads the one before: runner.checkpoint_load). Every rank must see the same ``checkpoint_dir`` (one machine, or
shared storage, as multi-node FSDP checkpoints need anyway).

A save is two halves: ``stage_training_state`` (on the training thread: the state dicts to write
and the small per-rank and trainer state) and ``write_training_state`` (anywhere, the background
thread of runner.checkpointer included: write, hash, fsync, manifest, rename); a background save
first copies the state to host memory (``HostStaging``, on the writer thread, while the training
thread goes on until it next changes the state). A crash in the second half
leaves ``.tmp-step_N`` without a manifest: the previous checkpoint is still the newest valid one.
``save_training_state`` does both at once.

``write_training_state(..., fault_hook=)`` lets tests fail or stall a save between the shards and
the manifest (a full disk, a slow one).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed._state_dict_utils import _copy_state_dict, _create_cpu_state_dict
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
)

from preflight.checkpoint_manifest import (
    CHECKPOINT_HASH,
    ManifestProblem,
    check_listed_files,
    read_checkpoint_manifest,
)
from preflight.rundir import CHECKPOINT_FORMAT as FORMAT
from preflight.rundir import CHECKPOINT_MANIFEST as MANIFEST
from preflight.rundir import CHECKPOINT_STEP_DIR as STEP_DIR
from preflight.spec import canonical_sha256

from .checkpoint_io import (
    CheckpointError,
    Digests,
    file_entry,
    hash_file,
    in_parallel,
    verify_file,
    write_file,
)
from .checkpoint_storage import HashingWriter

__all__ = ["CheckpointError"]  # re-exported: callers import it from here

TRAINER_STATE = "trainer.json"
TMP_PREFIX = ".tmp-"
CORRUPT_SUFFIX = ".corrupt"
# Files per rank and save, each written and hashed by its own thread: two wrote a 0.68 GB state in
# 0.69 s against 0.89 s for one (median of 8, bench/README.md); the kernel's page-cache copies run
# on both cores.
WRITE_THREADS = 2

# torch.distributed.checkpoint reports a failed read or write (a full disk among them) as a
# CheckpointException, which derives from BaseException, not Exception: catch it by name.
CAUGHT: tuple[type[BaseException], ...] = (Exception, CheckpointException)

# A test's fault_hook(stage, folder), called on every rank; stage "written": shards and state are
# in the temporary folder, the manifest is not. Raising there is what a disk that fills mid-save
# does; sleeping there is a slow disk (a save still in flight).
FaultHook = Callable[[str, Path], None]


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


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


def hash_files(folder: Path, names: list[str], algorithm: str = CHECKPOINT_HASH) -> dict[str, dict[str, Any]]:
    """fsync, size and digest of each named file, read back in parallel (for files not written
    through runner.checkpoint_io)."""
    files: dict[str, dict[str, Any]] = {}

    def one(name: str) -> None:
        path = folder / name
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
        files[name] = file_entry(path.stat().st_size, hash_file(path, algorithm), algorithm)

    in_parallel(one, names)
    return files


def write_manifest(folder: Path, step: int, metric: float | None, metric_name: str,
                   extra: dict[str, Any] | None = None,
                   files: dict[str, dict[str, Any]] | None = None,
                   algorithm: str = CHECKPOINT_HASH) -> dict[str, Any]:
    """Write manifest.json for ``folder`` (fsynced); returns it. ``files``: the sizes and digests
    the ranks computed while writing; None hashes every file here."""
    if files is None:
        files = hash_files(folder, data_files(folder), algorithm)
    files = dict(sorted(files.items()))
    manifest: dict[str, Any] = {
        "format": FORMAT, "step": int(step), "created": time.time(),
        "metric": metric if metric is None or metric == metric else None,  # NaN -> None
        "metric_name": metric_name, "bytes": sum(f["bytes"] for f in files.values()),
        "hash": algorithm, "files": files, **(extra or {}),
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
    """The folder's verified manifest (every file read and checked, in parallel); raises
    CheckpointError saying what is wrong."""
    manifest = load_manifest(folder)
    verify_files(folder, manifest["files"], manifest["hash"])
    return manifest


def load_manifest(folder: Path) -> dict[str, Any]:
    """The folder's manifest, its own checksum checked (the files are not); ``hash`` is filled in
    for manifests written before it was recorded (sha256). Raises CheckpointError."""
    try:
        return read_checkpoint_manifest(folder)
    except ManifestProblem as exc:
        raise CheckpointError(str(exc)) from None


def verify_files(folder: Path, files: dict[str, dict[str, Any]], algorithm: str = CHECKPOINT_HASH) -> None:
    """Each listed file exists with its size and digest, read in parallel; raises CheckpointError
    on a file that does not."""
    in_parallel(lambda name: verify_file(folder / name, files[name], algorithm), sorted(files))


def check_present(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    """Each listed file exists with its size (no byte is read: the digests are checked by the
    load that reads them); raises CheckpointError."""
    try:
        check_listed_files(folder, files)
    except ManifestProblem as exc:
        raise CheckpointError(str(exc)) from None


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
        _fsync_dir(tmp)  # the files' directory entries are durable before the manifest names them
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


def _checkpoint_error(exc: BaseException) -> CheckpointError | None:
    """The CheckpointError inside a failure (torch.distributed.checkpoint wraps each rank's)."""
    return next((e for e in _causes(exc) if isinstance(e, CheckpointError)), None)


# --- saving the training state (every rank calls these together) ---------------------------------


@dataclass
class SaveOutcome:
    """``committed`` on rank 0 after a commit; ``error`` on rank 0 when the save failed (the other
    ranks only learn ``ok``)."""

    ok: bool
    seconds: float
    committed: Committed | None = None
    error: BaseException | None = None


@dataclass
class Staged:
    """One rank's part of a checkpoint, taken at its step: the model and optimizer state dicts
    (their live tensors; a background save replaces them with a host copy, HostStaging, before
    it writes), this rank's own state and the shared trainer state as bytes."""

    step: int
    state: dict[str, Any]
    rank_bytes: bytes
    trainer_bytes: bytes
    attempt: int | None
    started: float  # time.time() when the save was asked for


def _layout(obj: Any, path: str = "") -> tuple[Any, ...]:
    """The tensors' places, shapes and dtypes in a nested state dict (what host buffers must match)."""
    if isinstance(obj, torch.Tensor):
        return ((path, type(obj).__name__, tuple(obj.shape), str(obj.dtype)),)
    if isinstance(obj, dict):
        inner = tuple(x for k in sorted(obj, key=str) for x in _layout(obj[k], f"{path}.{k}"))
        return ((path, "dict", len(obj)), *inner)
    if isinstance(obj, (list, tuple)):
        return ((path, "list", len(obj)), *(x for i, v in enumerate(obj) for x in _layout(v, f"{path}.{i}")))
    return ()


class HostCopy:
    """Host-memory buffers the state is copied into for a background write, kept from one save to
    the next (pinned when CUDA is there, so the device-to-host copy runs at full speed; allocating
    them afresh would cost more than the copy). Rebuilt when the state's layout changes, e.g. when
    the first optimizer step adds Adam's moments. Costs one copy of this rank's state in RAM."""

    def __init__(self) -> None:
        self._buffers: dict[str, Any] | None = None
        self._layout: tuple[Any, ...] | None = None

    def prepare(self, state: dict[str, Any]) -> None:
        """Buffers shaped like ``state`` (made on the training thread: making them dispatches
        DTensor operations, which training's own run beside a writer thread)."""
        layout = _layout(state)
        if self._buffers is None or layout != self._layout:
            self._buffers = _create_cpu_state_dict(state, pin_memory=torch.cuda.is_available())
            self._layout = layout

    def copy(self, state: dict[str, Any], after: Any = None, device: Any = None) -> dict[str, Any]:
        """``state`` (the one ``prepare`` saw) copied into the buffers, complete when this returns.
        ``after``: a CUDA event recorded on the training stream where the state was taken; the copy
        then runs on a stream of its own on ``device`` (with its index) once that event has passed,
        beside training's kernels."""
        if self._buffers is None:
            self.prepare(state)
        assert self._buffers is not None
        if after is None:
            return _copy_state_dict(state, self._buffers)
        stream = torch.cuda.Stream(device=device)
        with torch.cuda.stream(stream):
            stream.wait_event(after)
            copied = _copy_state_dict(state, self._buffers, non_blocking=True)
        stream.synchronize()
        return copied


class HostStaging:
    """The host copy of one background save, made on the writer thread while training goes on.
    The training thread calls ``wait`` before it changes what is being copied (the next optimizer
    step, a load): it returns at once when the copy is done, as torchtitan's pinned-memory staging
    does at the same point. ``waited``: the seconds the training thread spent in ``wait``, final
    once the copy is done. Made on the training thread, with the state to copy: it shapes the host
    buffers there and marks the CUDA stream's position."""

    def __init__(self, host: HostCopy, state: dict[str, Any], device: Any = None) -> None:
        self.host = host
        host.prepare(state)
        device = torch.device(device) if device is not None else torch.device("cpu")
        if device.type == "cuda" and device.index is None:
            # the writer thread's current device is 0 whatever the training thread's is
            device = torch.device("cuda", torch.cuda.current_device())
        self.device = device
        self.after = None
        if device.type == "cuda":
            self.after = torch.cuda.Event()
            self.after.record(torch.cuda.current_stream(device))
        self.waited = 0.0
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._waiting_since: float | None = None

    def copy(self, staged: Staged) -> Staged:
        """``staged`` with its model and optimizer tensors copied into the host buffers (one
        intra-op thread: see ``_one_thread``); done, failed or not, when this returns."""
        try:
            with _one_thread():
                return dataclasses.replace(staged, state=self.host.copy(staged.state, self.after,
                                                                        self.device))
        finally:
            self.release()

    def release(self) -> None:
        """The copy is done (or will never be): ``wait`` returns. Idempotent."""
        with self._lock:
            if self._done.is_set():
                return
            if self._waiting_since is not None:
                self.waited = time.perf_counter() - self._waiting_since
            self._done.set()

    def wait(self) -> None:
        with self._lock:
            if self._done.is_set():
                return
            self._waiting_since = time.perf_counter()
        self._done.wait()


def stage_training_state(step: int, *, model: Any, optimizer: Any, rank_state: dict[str, Any],
                         trainer_state: dict[str, Any], started: float | None = None) -> Staged:
    """What this rank will write for a checkpoint at ``step``, taken now (on the training thread):
    the model and optimizer state dicts (their live tensors; ``HostStaging`` copies them) and this
    rank's and the trainer's state as bytes. ``started``: when the save began (time.time();
    default now), what the save's seconds count from."""
    started = time.time() if started is None else started
    state: dict[str, Any] = {"model": get_model_state_dict(model)}
    # A fresh optimizer has no state yet; get_optimizer_state_dict would make some with a zero-lr
    # step (changing Adam's step count), so a fresh optimizer is recorded as such.
    has_optim = bool(optimizer.state)
    if has_optim:
        state["optim"] = get_optimizer_state_dict(model, optimizer)
    buf = io.BytesIO()
    torch.save(rank_state, buf)
    trainer = json.dumps({**trainer_state, "optimizer_state": has_optim}).encode("utf-8")
    attempt = trainer_state.get("attempt")
    return Staged(int(step), state, buf.getvalue(), trainer, attempt if isinstance(attempt, int) else None,
                  started)


def write_training_state(store: CheckpointStore, staged: Staged, *, rank: int, device: Any,
                         metric: float | None, metric_name: str, group: Any = None,
                         staging: HostStaging | None = None,
                         on_commit: Callable[[Committed, float], None] | None = None,
                         fault_hook: FaultHook | None = None) -> SaveOutcome:
    """Write model + optimizer (torch.distributed.checkpoint), each rank's state and the shared
    trainer state into a temporary folder, every file hashed and fsynced as it is written, then
    commit it on rank 0. A failure on any rank (a full disk, a fault hook) aborts the save on every
    rank and leaves earlier checkpoints untouched. ``group``: the process group of the ranks'
    agreement (a background writer has its own, so it never meets training's collectives).
    ``staging``: copy the state to host memory first (a background save; a failed copy, e.g. no
    host memory left, is a failed save on every rank). ``on_commit(committed, seconds)`` runs on rank 0 right after the rename, before the ranks meet
    again, so a record of the commit (the checkpoint event) is written even if a rank dies next."""
    step = staged.step
    tmp = store.tmp_dir(step)
    error: BaseException | None = None
    try:
        if staging is not None:
            staged = staging.copy(staged)
        if rank == 0:
            store.prepare(step)
    except CAUGHT as exc:
        error = exc
    ok = agree(error is None, device, group)
    digests = Digests()
    if ok:
        try:
            writer = HashingWriter(tmp, digests, WRITE_THREADS)
            with _quiet_single_process():
                dcp.save(staged.state, storage_writer=writer, process_group=group,
                         no_dist=_world_size(group) == 1)
            write_file(tmp / f"rank{rank}.pt", staged.rank_bytes, digests)
            if rank == 0:
                write_file(tmp / TRAINER_STATE, staged.trainer_bytes, digests)
            if fault_hook is not None:
                fault_hook("written", tmp)
        except CAUGHT as exc:
            error = exc
        ok = agree(error is None, device, group)
    files = ({k: v for part in _all_gather(digests.files(), group) for k, v in part.items()}
             if ok else {})
    committed = None
    if ok and rank == 0:
        try:
            committed = store.commit(tmp, step, metric, metric_name,
                                     {"world_size": _world_size(group), "attempt": staged.attempt},
                                     files=files)
            if on_commit is not None:
                on_commit(committed, time.time() - staged.started)
        except CAUGHT as exc:
            error = exc
    ok = agree(error is None, device, group)
    if not ok and rank == 0:
        store.abort(tmp)
        if error is None:
            error = CheckpointError("another rank failed to write its part of the checkpoint")
    return SaveOutcome(ok, time.time() - staged.started, committed, error if rank == 0 else None)


def save_training_state(store: CheckpointStore, step: int, *, model: Any, optimizer: Any, rank: int,
                        device: Any, rank_state: dict[str, Any], trainer_state: dict[str, Any],
                        metric: float | None, metric_name: str,
                        on_commit: Callable[[Committed, float], None] | None = None,
                        fault_hook: FaultHook | None = None) -> SaveOutcome:
    """Stage and write a checkpoint at ``step`` in one go (the training thread waits for all of it)."""
    staged = stage_training_state(step, model=model, optimizer=optimizer, rank_state=rank_state,
                                  trainer_state=trainer_state)
    return write_training_state(store, staged, rank=rank, device=device, metric=metric,
                                metric_name=metric_name, on_commit=on_commit, fault_hook=fault_hook)


@contextlib.contextmanager
def _quiet_single_process() -> Iterator[None]:
    """torch.distributed.checkpoint warns on every call without a process group; in one process
    that is the intent, not news."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is .*uninitialized")
        yield


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Host-memory copies on one intra-op thread. They are bound by memory bandwidth, so more
    threads gain little, and when the cores are shared (rollout workers, data loaders, other
    jobs) torch's spinning thread team makes a copy 5-10x slower: 0.68 GB took 0.22 s on one
    thread and 1.2-2.6 s on two on the 2-core machine of bench/README.md. A thread that has run
    parallel work keeps its own setting, but the setting is also the default a thread takes when
    it first runs any (OpenMP): so it is put back when the block ends."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _world_size(group: Any = None) -> int:
    return dist.get_world_size(group) if _distributed() else 1


def agree(ok: bool, device: Any, group: Any = None) -> bool:
    """True only if every rank says ok (also a barrier); ``group``: a gloo group of its own."""
    if not _distributed():
        return ok
    flag = torch.tensor([0 if ok else 1], dtype=torch.int32, device="cpu" if group is not None else device)
    dist.all_reduce(flag, op=dist.ReduceOp.SUM, group=group)
    return int(flag.item()) == 0


def _broadcast(value: Any) -> Any:
    if not _distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _all_gather(value: Any, group: Any = None) -> list[Any]:
    if not _distributed():
        return [value]
    out: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(out, value, group=group)
    return out
