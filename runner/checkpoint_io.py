"""Checkpoint files hashed as they are written and verified as they are read: one pass over the bytes.

torch.distributed.checkpoint writes its shards and ``.metadata`` through a ``FileSystemBase`` (the
``fs`` of ``FileSystemWriter``; torch's fsspec writer swaps it the same way). ``HashingFileSystem``
hands out streams that update a hash with every block on its way to the file, so the digest of
each file is known when it is closed, with no second read; runner.checkpoint_storage writes the
tensors through them and verifies each file while it reads it (``hash_range``, ``check_entry``),
so a file whose digest differs from the manifest's fails the load with ``CheckpointError`` naming
the file. Files written by several threads or ranks are hashed by the thread that writes them, in
parallel.

The hash is xxHash's XXH3-128 (the ``xxhash`` package): ~25 GB/s on one core, against ~1.8 GB/s for
sha256, so hashing is no longer a measurable part of a save. It guards against torn, truncated and
bit-rotted files, not against someone forging a checkpoint (the manifest records the algorithm;
older manifests with sha256 still verify).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, cast

import torch
from torch.distributed.checkpoint.filesystem import FileSystem

from preflight.checkpoint_manifest import (
    CHECKPOINT_HASH,
    CHECKPOINT_HASHES,
    LEGACY_CHECKPOINT_HASH,
    ManifestProblem,
    check_file_size,
)
from preflight.errors import PreflightError

CHUNK = 8 << 20  # bytes read at a time when only hashing (gaps between items, whole-file checks)
SYNC_EVERY = 64 << 20  # bytes written between two background fdatasyncs of a shard


class CheckpointError(PreflightError):
    """A checkpoint could not be written or read; the message names the folder and the fix."""


def new_hash(algorithm: str) -> Any:
    """A streaming hash object (``update``, ``hexdigest``) for a manifest's algorithm."""
    if algorithm == LEGACY_CHECKPOINT_HASH:
        return hashlib.sha256()
    if algorithm == CHECKPOINT_HASH:
        try:
            import xxhash  # the runner's dependency (pyproject: runner extra)
        except ImportError:
            raise CheckpointError("checkpoints are hashed with xxh3_128, and the xxhash package is not "
                                  "installed here: pip install xxhash") from None
        return xxhash.xxh3_128()
    raise CheckpointError(f"unknown checkpoint hash {algorithm!r} (known: {', '.join(CHECKPOINT_HASHES)})")


def hash_bytes(data: bytes | memoryview, algorithm: str = CHECKPOINT_HASH) -> str:
    h = new_hash(algorithm)
    h.update(data)
    return str(h.hexdigest())


def hash_file(path: Path, algorithm: str = CHECKPOINT_HASH) -> str:
    """The digest of a file, read once in large blocks."""
    h = new_hash(algorithm)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return str(h.hexdigest())


def file_entry(size: int, digest: str, algorithm: str = CHECKPOINT_HASH) -> dict[str, Any]:
    """One file's line in the manifest: its size and its digest under the algorithm's name."""
    return {"bytes": int(size), algorithm: digest}


class Digests:
    """Each written file's size and digest by name, filled from the writing threads."""

    def __init__(self, algorithm: str = CHECKPOINT_HASH) -> None:
        self.algorithm = algorithm
        self._files: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def add(self, name: str, size: int, digest: str) -> None:
        with self._lock:
            self._files[name] = file_entry(size, digest, self.algorithm)

    def rename(self, old: str, new: str) -> None:
        with self._lock:
            if old in self._files:
                self._files[new] = self._files.pop(old)

    def files(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._files)


def write_file(path: Path, data: bytes, digests: Digests) -> None:
    """Write ``data``, fsync it and record its digest (the small per-rank and trainer files)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    digests.add(path.name, len(data), hash_bytes(data, digests.algorithm))


class _HashingStream(io.RawIOBase):
    """A binary file whose every write also updates a hash (torch only writes, tells and fsyncs).

    Every SYNC_EVERY bytes it also starts an fdatasync on a helper thread, so the disk writes
    while torch serializes the rest and the fsync at the end has little left to flush (the idea
    of RocksDB's bytes_per_sync). That sync's own errors are ignored: the final fsync is the one
    that counts, and it raises."""

    def __init__(self, raw: IO[bytes], algorithm: str) -> None:
        super().__init__()
        self.raw = raw
        self.hash = new_hash(algorithm)
        self.size = 0
        self._unsynced = 0
        self._sync: threading.Thread | None = None

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        self.hash.update(view)
        self.size += len(view)
        written = self.raw.write(view)
        self._unsynced += len(view)
        if self._unsynced >= SYNC_EVERY and (self._sync is None or not self._sync.is_alive()):
            self.raw.flush()
            self._sync = threading.Thread(target=_sync_quietly, args=(self.raw.fileno(),), daemon=True)
            self._sync.start()
            self._unsynced = 0
        return len(view) if written is None else written

    def tell(self) -> int:
        return self.raw.tell()

    def flush(self) -> None:
        if not self.raw.closed:
            self.raw.flush()

    def fileno(self) -> int:
        return self.raw.fileno()

    def close(self) -> None:
        if self._sync is not None:
            self._sync.join()  # never leave a sync running on a descriptor about to be closed
        if not self.closed:
            self.raw.close()
        super().close()


def _sync_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        getattr(os, "fdatasync", os.fsync)(fd)  # macOS has no fdatasync


class HashingFileSystem(FileSystem):
    """torch's local file system, with written files hashed on the way (reads are left as they are)."""

    def __init__(self, digests: Digests) -> None:
        self.digests = digests

    @contextlib.contextmanager
    def create_stream(self, path: str | os.PathLike, mode: str) -> Generator[io.IOBase, None, None]:
        if "w" not in mode:
            with super().create_stream(path, mode) as plain:
                yield plain
            return
        with open(path, mode) as raw:
            stream = _HashingStream(cast(IO[bytes], raw), self.digests.algorithm)
            try:
                yield stream
                stream.flush()  # a no-op once torch closed it
            finally:
                stream.close()  # also on an error: waits for its background sync first
        self.digests.add(Path(path).name, stream.size, str(stream.hash.hexdigest()))

    def rename(self, path: str | os.PathLike, new_path: str | os.PathLike) -> None:
        super().rename(path, new_path)  # .metadata.tmp -> .metadata: the digest follows the name
        self.digests.rename(Path(path).name, Path(new_path).name)


def hash_range(f: Any, h: Any, start: int, end: int | None) -> int:
    """Hash the file from ``start`` to ``end`` (None: to its end); returns where it stopped. Between
    torch's items there is nothing, so this reads only what a load skips (and checks the end)."""
    f.seek(start)
    pos = start
    while end is None or pos < end:
        block = f.read(CHUNK if end is None else min(CHUNK, end - pos))
        if not block:
            break
        h.update(block)
        pos += len(block)
    return pos


def expected_entry(path: Path, expected: dict[str, dict[str, Any]], algorithm: str) -> dict[str, Any]:
    entry = expected.get(path.name)
    if entry is None or algorithm not in entry:
        raise CheckpointError(f"{path}: not listed in the manifest with a {algorithm} digest")
    return entry


def check_entry(path: Path, size: int, digest: str, entry: dict[str, Any], algorithm: str) -> None:
    if size != entry.get("bytes"):
        raise CheckpointError(f"{path}: {size} bytes, the manifest says {entry.get('bytes')} "
                              "(truncated or rewritten)")
    if digest != entry[algorithm]:
        raise CheckpointError(f"{path}: {algorithm} differs from the manifest (corrupted)")


def read_verified(path: Path, expected: dict[str, dict[str, Any]], algorithm: str) -> bytes:
    """A small file's bytes (per-rank state, trainer state, .metadata), verified as read."""
    entry = expected_entry(path, expected, algorithm)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: listed in the manifest but unreadable ({exc.strerror or exc})") from None
    check_entry(path, len(data), hash_bytes(data, algorithm), entry, algorithm)
    return data


def check_size(path: Path, entry: dict[str, Any]) -> None:
    """The file exists with the size its manifest entry lists; raises CheckpointError."""
    try:
        check_file_size(path, entry)
    except ManifestProblem as exc:
        raise CheckpointError(str(exc)) from None


def verify_file(path: Path, entry: dict[str, Any], algorithm: str) -> None:
    """A whole-file check (size, then digest); raises CheckpointError."""
    check_size(path, entry)
    if hash_file(path, algorithm) != entry.get(algorithm):
        raise CheckpointError(f"{path}: {algorithm} differs from the manifest (corrupted)")


def in_parallel(fn: Callable[[Any], None], args: Iterable[Any], threads: int = 4) -> None:
    """Run ``fn`` over ``args`` on a few threads (file reads and hashes release the GIL); the first
    error is raised."""
    todo = list(args)
    if len(todo) <= 1:
        for a in todo:
            fn(a)
        return

    # Read here, not in the pool threads: a pool thread that first asks while another has set 1
    # would read 1 (the setting is also the default of threads that start later) and put it back.
    before = torch.get_num_threads()

    def one_thread(a: Any) -> None:
        torch.set_num_threads(1)  # this pool thread's own copies: see runner.checkpoint._one_thread
        try:
            fn(a)
        finally:
            torch.set_num_threads(before)

    with ThreadPoolExecutor(max_workers=min(threads, len(todo))) as pool:
        for future in [pool.submit(one_thread, a) for a in todo]:
            future.result()
