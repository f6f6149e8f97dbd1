"""Live progress of running checks on stderr: a spinner per running check and a bar.

Only drawn when stderr is a terminal, so machine-readable output on stdout (or a CI log) is never
mixed with it.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from .engine import CheckDef
from .result import Result

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
MAX_LINES = 6


class Progress:
    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        # sys.stderr is looked up now, not at import: it may have been replaced since (tests, IDEs).
        stream = stream if stream is not None else sys.stderr
        self.total, self.stream = total, stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.running: dict[str, float] = {}
        self.done = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._drawn = 0
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=1)
            self._clear()

    def started(self, d: CheckDef) -> None:
        with self._lock:
            self.running[d.id] = time.monotonic()

    def finished(self, r: Result) -> None:
        with self._lock:
            self.running.pop(r.id, None)
            self.done += 1

    def _loop(self) -> None:
        frame = 0
        while not self._stop.wait(0.08):
            self._draw(FRAMES[frame % len(FRAMES)])
            frame += 1

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")
            self.stream.flush()
            self._drawn = 0

    def _draw(self, spin: str) -> None:
        with self._lock:
            now = time.monotonic()
            running = sorted(self.running.items(), key=lambda kv: kv[1])[:MAX_LINES]
            done, total = self.done, self.total
        width = 30
        filled = int(width * done / max(total, 1))
        lines = [f"  {spin} {cid:<32} {now - t0:5.1f}s" for cid, t0 in running]
        lines.append(f"  [{'#' * filled}{'.' * (width - filled)}] {done}/{total} checks")
        self._clear()
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn = len(lines)
