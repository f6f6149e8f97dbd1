"""A metric over steps in bounded memory, for plots of runs of any length.

Points are kept at a step stride that doubles whenever the series reaches its cap (every other
point is dropped then), so a million-step run still holds at most ``cap`` points spread evenly
over the whole run, while a short run keeps every point. The newest point is always kept apart,
so the plot's right edge is the latest value, not the last one the stride happened to keep.
"""

from __future__ import annotations

DEFAULT_CAP = 2048


class Series:
    __slots__ = ("cap", "points", "stride", "last", "count", "_next")

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        if cap < 2:
            raise ValueError("a series needs a cap of at least 2 points")
        self.cap = cap
        self.points: list[tuple[int, float]] = []
        self.stride = 1  # keep a point every `stride` steps
        self.last: tuple[int, float] | None = None
        self.count = 0  # values seen, kept or not
        self._next = -(1 << 62)  # smallest step that will be kept next

    def add(self, step: int, value: float) -> None:
        self.last = (step, value)
        self.count += 1
        if self._next - self.stride <= step < self._next:
            return  # inside the stride; a step far below it (a rollback replaying steps) is kept
        self.points.append((step, value))
        self._next = step + self.stride
        if len(self.points) >= self.cap:
            self.stride *= 2
            self.points = self.points[::2]
            self._next = self.points[-1][0] + self.stride

    def values(self) -> list[tuple[int, float]]:
        """The kept points plus the newest one."""
        if self.last is not None and (not self.points or self.points[-1] != self.last):
            return [*self.points, self.last]
        return list(self.points)
