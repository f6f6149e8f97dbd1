"""Whether the runner the console launched is still alive, and if not, what its log said last.

A runner that exits before writing an event (the gate refused it, the environment is broken)
would otherwise leave the console "waiting for events.jsonl" forever; this says why instead.
Only watched, never signalled: the console must not stop a run.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

TAIL_BYTES = 4096


class RunnerWatch:
    def __init__(self, pid: int, log: Path) -> None:
        self.pid, self.log = pid, log
        self.exit_message: str | None = None

    def check(self) -> str | None:
        """None while the runner runs; once it has exited, a one-line message (kept)."""
        if self.exit_message is not None:
            return self.exit_message
        try:
            alive = psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            alive = False
        if alive:
            return None
        code = self._reap()
        how = f" (code {code})" if code is not None else ""
        last = last_line(self.log)
        self.exit_message = f"runner pid {self.pid} exited{how}: " + (last or f"see {self.log}")
        return self.exit_message

    def _reap(self) -> int | None:
        """The exit code, when the runner is this process's child (launched from this console)."""
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return None  # not our child, or already reaped
        return os.waitstatus_to_exitcode(status) if pid else None


def last_line(path: Path) -> str:
    """The last non-empty line of a log, read from its end (logs can be large)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(fh.tell() - TAIL_BYTES, 0))
            lines = [ln for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""
