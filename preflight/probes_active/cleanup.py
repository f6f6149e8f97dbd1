"""Temporary files and child processes a probe creates are removed however the probe ends.

A probe removes its own file (and stops its own children) in a ``finally``. That is not enough when
the check runs in a daemon thread and the user presses Ctrl-C: the main thread exits and the thread
dies mid-write, its ``finally`` never runs. So every live file and child is also registered here,
and an ``atexit`` hook unlinks and kills whatever is left. Unlinking a file another thread still
holds open is fine on POSIX: the space is freed when the descriptor closes, at the latest when the
process exits.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

PREFIX = ".preflight-probe-"

_files: set[str] = set()
_children: set[subprocess.Popen[bytes]] = set()
_lock = threading.Lock()


@contextlib.contextmanager
def probe_file(directory: Path) -> Iterator[str]:
    """Create an empty file in ``directory`` (named .preflight-probe-*) and always remove it."""
    fd, name = tempfile.mkstemp(prefix=PREFIX, dir=directory)
    os.close(fd)
    with _lock:
        _files.add(name)
    try:
        yield name
    finally:
        remove(name)


def remove(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)
    with _lock:
        _files.discard(name)


def live_files() -> list[str]:
    with _lock:
        return sorted(_files)


def track(proc: subprocess.Popen[bytes]) -> None:
    """Kill this child at exit if it is still running then."""
    with _lock:
        _children.add(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill a child (if it still runs) and reap it."""
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    with _lock:
        _children.discard(proc)


@atexit.register
def _clean_up() -> None:
    for name in live_files():
        remove(name)
    with _lock:
        children = list(_children)
    for proc in children:
        stop(proc)
