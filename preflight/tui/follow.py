"""The follow loop behind the console: feed a RunMonitor from a live run directory (attach) or
play a finished run's events back at N times their recorded pace (replay), and publish the
latest snapshot at most a few times a second.

No Textual here: the console runs ``Follower.run`` in a thread worker and a UI timer picks up
``latest`` when ``version`` moved, so a run writing thousands of events a second costs the screen
a few redraws a second, not one per event. The bench runs the same loop headless.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

POLL_INTERVAL_S = 0.1  # how often the events file is read while following a live run
SNAPSHOT_INTERVAL_S = 0.2  # the most often a new snapshot is taken (5 Hz)
MAX_REPLAY_GAP_S = 1.0  # a replay plays any pause between two events in at most this long
REPLAY_READ_BYTES = 1 << 18  # a replay reads the file in chunks of this size...
REPLAY_AHEAD = 10_000  # ...while fewer than this many events wait for the replay clock


class Follower:
    """One run directory followed into snapshots; ``run(should_stop)`` loops until told to stop."""

    def __init__(self, monitor: Any, *, replay_speed: float | None = None,
                 poll_interval: float = POLL_INTERVAL_S, snapshot_interval: float = SNAPSHOT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if replay_speed is not None and replay_speed <= 0:
            raise ValueError("the replay speed must be above 0")
        self.monitor = monitor
        self.replay_speed = replay_speed
        self.poll_interval, self.snapshot_interval = poll_interval, snapshot_interval
        self.clock = clock
        self.latest: Any = None  # the newest MonitorSnapshot (replaced whole, read without a lock)
        self.version = 0  # bumped with every new snapshot
        self.replay_done = False
        self.error: str | None = None  # a failure in the monitor, shown instead of a crash
        self._dirty = True
        self._last_snapshot = -1e18
        self._buffer: deque[dict[str, Any]] = deque()
        self._virtual: float | None = None  # the replay clock, in the run's own (event) time
        self._last_tick: float | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.monitor.run_dir)

    def tick(self) -> None:
        """Take in what is new, and publish a snapshot if enough time passed since the last."""
        changed = self.monitor.poll() if self.replay_speed is None else self._replay_tick()
        self._dirty = self._dirty or bool(changed)
        now = self.clock()
        if self._dirty and now - self._last_snapshot >= self.snapshot_interval:
            self.publish(now)

    def publish(self, now: float | None = None) -> None:
        self.latest = self.monitor.snapshot()
        self.version += 1
        self._dirty = False
        self._last_snapshot = self.clock() if now is None else now

    def invalidate(self) -> None:
        """Something outside the events changed (a sign-off): take a new snapshot at the next tick."""
        self._dirty = True

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Tick until ``should_stop()``; a monitor failure is kept in ``error`` and ends the loop."""
        try:
            while not should_stop():
                self.tick()
                time.sleep(self.poll_interval)
        except Exception as exc:  # the console must show why it stopped, not die with a traceback
            self.error = f"{type(exc).__name__}: {exc}"
            self.version += 1

    # Replay -------------------------------------------------------------------------------------

    def _replay_tick(self) -> bool:
        # The monitor's own tailer reads the file (so malformed lines are counted where the
        # snapshot looks for them); the events are held back and fed at the replay clock's pace.
        assert self.replay_speed is not None
        tailer = self.monitor.tailer
        if len(self._buffer) < REPLAY_AHEAD:
            self._buffer.extend(tailer.poll(REPLAY_READ_BYTES))
        now = self.clock()
        elapsed = 0.0 if self._last_tick is None else now - self._last_tick
        self._last_tick = now
        if not self._buffer:
            finished = tailer.caught_up
            changed = finished and not self.replay_done  # the status line says "done": redraw
            self.replay_done = finished
            return changed
        first = _time_of(self._buffer[0])
        if self._virtual is None:
            self._virtual = first if first is not None else 0.0
        self._virtual += elapsed * self.replay_speed
        self._shorten_pause()  # the buffer may have just been refilled after a pause
        due: list[dict[str, Any]] = []
        while self._buffer:
            t = _time_of(self._buffer[0])
            if t is not None and t > self._virtual:
                break
            due.append(self._buffer.popleft())
        if due:
            self.monitor.feed(due)
        self._shorten_pause()
        return bool(due)

    def _shorten_pause(self) -> None:
        """Move the replay clock so the next event is at most MAX_REPLAY_GAP_S (real time) away:
        an hour the run spent waiting plays back in a second."""
        assert self._virtual is not None and self.replay_speed is not None
        nxt = _time_of(self._buffer[0]) if self._buffer else None
        longest = MAX_REPLAY_GAP_S * self.replay_speed
        if nxt is not None and nxt - self._virtual > longest:
            self._virtual = nxt - longest


def _time_of(event: dict[str, Any]) -> float | None:
    t = event.get("time")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else None
