"""A metric over steps in bounded memory, for plots of runs of any length.

Points are kept at a step stride that doubles whenever the series reaches its cap (every other
point is dropped then), so a million-step run still holds at most ``cap`` points spread evenly
over the whole run, while a short run keeps every point. The newest point is always kept apart,
so the plot's right edge is the latest value, not the last one the stride happened to keep.
"""

from __future__ import annotations

from typing import Any

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


class SeriesGroup:
    """Several step-event fields kept at one shared stride, so the hot path of a step event is a
    single comparison (``due``) instead of one per series; ``keep`` runs only for kept steps.

    The newest value of each field is not stored here: the caller hands the latest event to
    ``values`` (the monitor keeps it anyway for the checklists).
    """

    def __init__(self, names: tuple[str, ...], cap: int = DEFAULT_CAP) -> None:
        if cap < 2:
            raise ValueError("a series needs a cap of at least 2 points")
        self.names = names
        self.cap = cap
        self.steps: list[int] = []
        self.points: dict[str, list[tuple[int, float]]] = {n: [] for n in names}
        self.stride = 1
        self.next_step = -(1 << 62)  # steps in [next_step - stride, next_step) are skipped

    def keep(self, step: int, event: Any) -> None:
        """Keep this step's values (``event`` a StepEvent, whose fields include ``names``)."""
        for name in self.names:
            value = getattr(event, name)
            if value is not None:
                if type(value) is not float:
                    value = _as_float(value)
                self.points[name].append((step, value))
        self.steps.append(step)
        self.next_step = step + self.stride
        if len(self.steps) >= self.cap:
            self.stride *= 2
            kept = set(self.steps[::2])
            self.steps = self.steps[::2]
            for name in self.names:
                self.points[name] = [p for p in self.points[name] if p[0] in kept]
            self.next_step = self.steps[-1] + self.stride

    def values(self, name: str, latest: Any) -> list[tuple[int, float]]:
        """The kept points of ``name`` plus the newest step event's value (a StepEvent or None)."""
        points = self.points[name]
        if latest is not None:
            step, value = latest.step, getattr(latest, name)
            if type(step) is int and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and (not points or points[-1][0] != step):
                return [*points, (step, float(value))]
        return list(points)


def _as_float(value: object) -> float:
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected a number, found {type(value).__name__} {value!r}")
