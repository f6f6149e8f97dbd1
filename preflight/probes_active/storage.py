"""Sequential write and read throughput of a directory, the way a checkpoint is written.

The file is written in large blocks and fsynced (the write only counts once it is on the device),
then read back. O_DIRECT is used where the file system supports it, so neither direction is served
by the page cache; where it is not (tmpfs, some network file systems) the write is still fsynced
and the clean pages are dropped with posix_fadvise(DONTNEED) before reading, and the measurement
says which way it went. The probe stops at its time budget and reports what it measured so far.
"""

from __future__ import annotations

import mmap
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .cleanup import probe_file

MB = 10**6
DEFAULT_BLOCK = 4 * 2**20  # 4 MiB: large enough that syscalls do not dominate, aligned for O_DIRECT
WRITE_SHARE = 0.6  # of the time budget; the read-back gets the rest


@dataclass
class StorageMeasurement:
    directory: str
    file_bytes: int  # what was asked for
    written_bytes: int
    read_bytes: int
    write_s: float
    read_s: float
    direct: bool  # O_DIRECT for both directions
    cache_dropped: bool  # without O_DIRECT: pages dropped before the read-back
    truncated: bool  # stopped at the time budget before the whole file was done

    @property
    def write_mb_s(self) -> float:
        return self.written_bytes / MB / self.write_s if self.write_s > 0 else 0.0

    @property
    def read_mb_s(self) -> float:
        return self.read_bytes / MB / self.read_s if self.read_s > 0 else 0.0

    @property
    def method(self) -> str:
        if self.direct:
            return "O_DIRECT + fsync"
        return "buffered + fsync, " + ("page cache dropped before reading" if self.cache_dropped
                                       else "read may be served from the page cache")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(write_mb_s=round(self.write_mb_s, 1), read_mb_s=round(self.read_mb_s, 1),
                   method=self.method)
        return out


class Cancelled(Exception):
    """The caller asked the probe to stop (Ctrl-C, or the check run is over)."""


def measure_storage(directory: Path, file_bytes: int, budget_s: float, *, block_bytes: int = DEFAULT_BLOCK,
                    direct: bool | None = None, cancel: threading.Event | None = None) -> StorageMeasurement:
    """Write ``file_bytes`` to a temporary file in ``directory``, fsync, read it back; remove it.

    ``direct=None`` tries O_DIRECT and falls back; True insists (OSError when unsupported); False
    never uses it. Raises OSError when the directory cannot take the file (with the reason).
    """
    deadline = time.monotonic() + budget_s
    block = mmap.mmap(-1, block_bytes)  # page-aligned, as O_DIRECT requires
    block.write(os.urandom(block_bytes))  # incompressible, so compressing file systems cannot cheat
    with probe_file(directory) as path:
        fd, used_direct = _open(path, os.O_WRONLY, direct)
        try:
            written, write_s, truncated = _write(fd, block, file_bytes,
                                                 time.monotonic() + budget_s * WRITE_SHARE, cancel)
        finally:
            os.close(fd)
        fd, read_direct = _open(path, os.O_RDONLY, used_direct)
        try:
            dropped = read_direct or _drop_cache(fd)
            read, read_s, read_cut = _read(fd, block, written, deadline, cancel)
        finally:
            os.close(fd)
    return StorageMeasurement(str(directory), file_bytes, written, read, write_s, read_s,
                              used_direct and read_direct, dropped, truncated or read_cut)


def o_direct_supported(directory: Path) -> bool:
    """Whether files in ``directory`` can be opened with O_DIRECT (tmpfs, for one, refuses)."""
    if not hasattr(os, "O_DIRECT"):
        return False
    with probe_file(directory) as path:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_DIRECT))
        except OSError:
            return False
    return True


def _open(path: str, flags: int, direct: bool | None) -> tuple[int, bool]:
    if direct is not False and hasattr(os, "O_DIRECT"):
        try:
            return os.open(path, flags | os.O_DIRECT), True
        except OSError:
            if direct:
                raise
    elif direct:
        raise OSError("O_DIRECT is not available on this platform")
    return os.open(path, flags), False


def _write(fd: int, block: mmap.mmap, total: int, deadline: float,
           cancel: threading.Event | None) -> tuple[int, float, bool]:
    """Write whole blocks until ``total`` bytes or the deadline; the fsync is inside the timing."""
    size = len(block)

    def write(done: int) -> int:
        return os.write(fd, block if total - done >= size else memoryview(block)[: _tail(total - done)])

    return _transfer(write, total, deadline, cancel, finish=lambda: os.fsync(fd))


def _tail(remaining: int) -> int:
    """The last, short write: rounded up to 4 KiB so it stays legal under O_DIRECT."""
    return -(-remaining // 4096) * 4096


def _read(fd: int, block: mmap.mmap, total: int, deadline: float,
          cancel: threading.Event | None) -> tuple[int, float, bool]:
    return _transfer(lambda done: os.readv(fd, [block]), total, deadline, cancel)


def _transfer(move: Callable[[int], int], total: int, deadline: float, cancel: threading.Event | None,
              finish: Callable[[], object] | None = None) -> tuple[int, float, bool]:
    """Call ``move(bytes done so far)`` until ``total`` bytes, the deadline, or a call that moves
    nothing; then ``finish`` (inside the timing). Returns (bytes, seconds, cut short)."""
    done = 0
    t0 = time.perf_counter()
    while done < total:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        if time.monotonic() > deadline:
            break
        n = move(done)
        if n <= 0:
            break
        done += n
    if finish is not None:
        finish()
    return done, time.perf_counter() - t0, done < total


def _drop_cache(fd: int) -> bool:
    """Ask the kernel to drop this file's (clean, just fsynced) pages so the read hits the device."""
    if not hasattr(os, "posix_fadvise"):
        return False
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except OSError:
        return False
    return True
