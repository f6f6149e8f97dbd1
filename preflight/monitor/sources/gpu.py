"""GPU utilization for trainers that do not log it: ``preflight monitor --sample-gpus``.

``GpuSampler`` asks the NVML probe (preflight.probes, a fake in the tests) for every GPU's
utilization every few seconds and appends one line to ``RUN/gpu_samples.jsonl``:
``{"time": 1712345678.9, "utilization": 0.83, "gpus": [0.81, 0.85]}`` (fractions, the mean over
the GPUs). ``GpuSamples`` reads that file back with the event tailer (by byte offset, like every
other JSON Lines log here) and gives a step the mean utilization of the samples since the step
before it. The file sits next to the run, so a second monitor, a plot or a replay later sees the
same numbers.
"""

from __future__ import annotations

import bisect
import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..tailer import EventTailer

SAMPLES_FILE = "gpu_samples.jsonl"
DEFAULT_INTERVAL_S = 5.0
MAX_AGE_S = 120.0  # a step more than this after the newest sample gets none
MAX_SAMPLES_KEPT = 100_000


class GpuSampler:
    """Samples in a daemon thread until ``stop()``; ``sample_once`` is the unit the tests drive."""

    def __init__(self, probe: Any, path: Path, interval: float = DEFAULT_INTERVAL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.probe, self.path, self.interval, self.clock = probe, Path(path), interval, clock
        self.error: str | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample_once(self) -> bool:
        """One sample appended; False (with ``error`` set) when NVML could not be read."""
        try:
            gpus = [float(u) for u in self.probe.utilization()]
        except Exception as exc:  # ProbeUnavailable, or a driver error: report it, keep following
            self.error = f"GPU sampling failed: {exc}"
            return False
        if not gpus:
            self.error = "GPU sampling: NVML reports no GPUs on this machine"
            return False
        line = {"time": self.clock(), "utilization": sum(gpus) / len(gpus), "gpus": gpus}
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line) + "\n")
        except OSError as exc:
            self.error = f"cannot write {self.path}: {exc.strerror or exc}"
            return False
        self.error = None
        self.samples += 1
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _SampleTailer(EventTailer):
    """The samples file's lines: every JSON object is handed on (GpuSamples checks its fields)."""

    @staticmethod
    def _accepts(event: Any) -> bool:
        return type(event) is dict

    @staticmethod
    def _all_accepted(decoded: list[Any]) -> bool:
        return all(type(e) is dict for e in decoded)


class GpuSamples:
    """The samples in RUN/gpu_samples.jsonl, read as the file grows."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.times: list[float] = []
        self.values: list[float] = []
        self._tailer = _SampleTailer(self.path)
        self._bad = 0  # objects without a numeric time and utilization

    @property
    def bad_lines(self) -> int:
        return self._tailer.malformed + self._bad

    def refresh(self) -> None:
        while True:
            for body in self._tailer.poll():
                self._take(body)
            if self._tailer.caught_up:
                break
        if len(self.times) > MAX_SAMPLES_KEPT:
            self.times, self.values = self.times[::2], self.values[::2]

    def close(self) -> None:
        self._tailer.close()

    def _take(self, body: dict[str, Any]) -> None:
        try:
            when, util = float(body["time"]), float(body["utilization"])
        except (ValueError, TypeError, KeyError):
            self._bad += 1
            return
        if math.isfinite(when) and math.isfinite(util) and (not self.times or when >= self.times[-1]):
            self.times.append(when)
            self.values.append(util)

    def utilization_at(self, when: float, since: float | None = None) -> float | None:
        """The mean of the samples in (since, when], or the newest one before ``when`` if it is
        recent; None when there is none."""
        self.refresh()
        hi = bisect.bisect_right(self.times, when)
        if hi == 0:
            return None
        lo = bisect.bisect_right(self.times, since) if since is not None else hi - 1
        window = self.values[min(lo, hi - 1):hi]
        if when - self.times[hi - 1] > MAX_AGE_S:
            return None
        return sum(window) / len(window)
