"""A trainer's metric record (a step and a dict of values) -> the monitor's step and validation
events, through the framework's MetricMap.

One record can hold training metrics (a step event), a validation score (a validation event), or
both (verl logs its validation into the same step's record). Values that are NaN or infinite
become null and are named in the step event's ``nonfinite`` list, as the runner writes them; a
mapped value that is not a number is reported as a malformed record, never guessed at.

Device hours, which the ScaleRL fit runs on, come from the record's own clock: verl's
``elapsed_seconds`` (newer file loggers) or the sum of its ``timing_s/step``, TensorBoard's wall
time since the first event; times the number of devices (``--devices``, the spec's world size,
or 1). A log with no clock at all (trainer_state.json) gets no fit, and a note says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..metricmap import STEP_FIELD, MetricMap, guess_framework
from .checkpoints import CheckpointScanner
from .gpu import GpuSamples

MAX_SAMPLES = 20
VERL_STEP_SECONDS = "timing_s/step"


class RecordMapper:
    """Maps records in arrival order; keeps the clock and the counts of bad records."""

    def __init__(self, framework: str | None, overrides: Mapping[str, Any] | None = None,
                 devices: int = 1, gpu_samples: GpuSamples | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.overrides = dict(overrides or {})
        self.map: MetricMap | None = None
        if framework is not None:
            self.map = MetricMap.for_framework(framework, self.overrides)
        self.devices = max(1, int(devices))
        self.gpu_samples = gpu_samples
        self.clock = clock
        self.malformed = 0
        self.malformed_samples: list[tuple[int, str]] = []
        self.notes: list[str] = []
        self._first_wall: float | None = None
        self._first_seen: float | None = None
        self._step_seconds = 0.0  # verl: the sum of timing_s/step so far
        self._has_clock = False
        self._records = 0
        self._mapped_any = False
        self._last_step_time: float | None = None

    @property
    def framework(self) -> str | None:
        return self.map.framework if self.map is not None else None

    def learn_framework(self, keys: list[str]) -> bool:
        """For a log whose writer is not known yet (TensorBoard): name it from its keys."""
        if self.map is not None:
            return True
        name = guess_framework(keys)
        if name is not None:
            self.map = MetricMap.for_framework(name, self.overrides)
        return self.map is not None

    def bad(self, where: int, message: str) -> None:
        self.malformed += 1
        if len(self.malformed_samples) < MAX_SAMPLES:
            self.malformed_samples.append((where, message))

    def events(self, step: int, data: Mapping[str, Any], wall: float | None = None,
               elapsed: float | None = None, where: int = 0) -> list[dict[str, Any]]:
        """The events of one record: a step event, a validation event, both or none."""
        assert self.map is not None, "learn_framework first"
        return self.emit(step, self.map.values(data), data.get(VERL_STEP_SECONDS), wall, elapsed, where)

    def emit(self, step: int, values: Mapping[str, Any], step_seconds: Any = None,
             wall: float | None = None, elapsed: float | None = None,
             where: int = 0) -> list[dict[str, Any]]:
        """The events for a record's monitor metrics (``values``: metric -> raw value)."""
        return self.emit_pairs(step, tuple(values), tuple(values.values()), step_seconds, wall,
                               elapsed, where)

    def emit_pairs(self, step: int, names: Sequence[str], found: Sequence[Any], step_seconds: Any = None,
                   wall: float | None = None, elapsed: float | None = None,
                   where: int = 0) -> list[dict[str, Any]]:
        """``emit`` with the metrics and their values side by side (None: not in the record).
        The hot path of every reader here: kept to one plain loop and dict stores."""
        self._records += 1
        hours, when = self._clock(step_seconds, wall, elapsed)
        out: list[dict[str, Any]] = []
        event: dict[str, Any] = {"type": "step", "step": step, "time": when}
        nonfinite: list[str] | None = None
        for metric, value in zip(names, found):  # noqa: B905 - the same length by construction
            if value is None:
                continue
            kind = type(value)
            if kind is not float:
                if kind is not int:
                    self.bad(where, f"step {step}: the value for {metric} is "
                                    f"{kind.__name__} {str(value)[:40]!r}, not a number")
                    continue
                value = float(value)
            finite = value - value == 0.0  # False for NaN and infinities
            if metric == "pass_rate":
                if finite:
                    out.append({"type": "validation", "step": step, "pass_rate": value,
                                "device_hours": hours, "time": when})
                continue
            name = STEP_FIELD[metric]
            if finite:
                event[name] = value
            else:
                event[name] = None
                nonfinite = [*(nonfinite or ()), name]
        if len(event) > 3 or nonfinite:
            if nonfinite:
                event["nonfinite"] = nonfinite
            if hours is not None:
                event["device_hours"] = hours
            if self.gpu_samples is not None:
                self._add_utilization(event, when)
            out.insert(0, event)
            self._mapped_any = True
        elif out:
            self._mapped_any = True
        return out

    def emit_plain_steps(self, steps: Sequence[int], rows: Sequence[Sequence[Any]], names: Sequence[str],
                         where: int = 0) -> list[dict[str, Any]]:
        """Step events for many records at once, each ``row`` the values of the step metrics
        ``names`` (no pass_rate) then the step's seconds (verl's timing_s/step), no other clock.
        The fast path of verl's reader: a row with anything unusual in it (a non-number, NaN)
        goes through ``emit_pairs``, so the result is the same either way."""
        fields = [STEP_FIELD[n] for n in names]
        out: list[dict[str, Any]] = []
        scale = self.devices / 3600.0
        for step, row in zip(steps, rows):  # noqa: B905 - one row per step by construction
            step_s = row[-1]
            event = {"type": "step", "step": step}
            plain = self.gpu_samples is None and (type(step_s) is float or step_s is None)
            if plain:
                for name, value in zip(fields, row):  # noqa: B905 - the row is one longer: its clock
                    if value is None:
                        continue
                    if type(value) is not float or value - value != 0.0:
                        plain = False
                        break
                    event[name] = value
            if not plain or len(event) == 2:
                out.extend(self.emit_pairs(step, names, row[:-1], step_s, where=where))
                continue
            self._records += 1
            self._mapped_any = True
            if step_s is not None and step_s - step_s == 0.0:
                self._step_seconds += step_s
                self._has_clock = True
                event["time"] = self._anchor(self._step_seconds) + self._step_seconds
                event["device_hours"] = self._step_seconds * scale
            elif self._has_clock:
                event["time"] = self._anchor(self._step_seconds) + self._step_seconds
                event["device_hours"] = self._step_seconds * scale
            else:
                event["time"] = self.clock()
            out.append(event)
        return out

    def _clock(self, step_seconds: Any, wall: float | None,
               elapsed: float | None) -> tuple[float | None, float]:
        """(device hours so far or None, the record's time in seconds since the epoch)."""
        seconds: float | None = None
        if wall is not None:
            if self._first_wall is None:
                self._first_wall = wall
            seconds, when = wall - self._first_wall, wall
        else:
            if (type(step_seconds) is float or type(step_seconds) is int) \
                    and step_seconds - step_seconds == 0:  # a finite number (NaN - NaN is NaN)
                self._step_seconds += step_seconds
                seconds = self._step_seconds
            if elapsed is not None:
                seconds = elapsed
            when = self._anchor(seconds) + seconds if seconds is not None else self.clock()
        if seconds is None:
            return None, when
        self._has_clock = True
        return seconds * self.devices / 3600.0, when

    def _anchor(self, seconds: float) -> float:
        """The run's start on this clock, for a log whose records carry seconds since the start but
        no wall time: the newest record read counts as written now, so a monitor attached to a run
        hours in dates the records that follow where they belong (and finds their GPU samples)."""
        start = self.clock() - seconds
        self._first_seen = start if self._first_seen is None else min(self._first_seen, start)
        return self._first_seen

    def _add_utilization(self, event: dict[str, Any], when: float) -> None:
        if self.gpu_samples is None or "utilization" in event:
            return
        util = self.gpu_samples.utilization_at(when, since=self._last_step_time)
        self._last_step_time = when
        if util is not None:
            event["utilization"] = util
            event["utilization_source"] = "NVML sampler (--sample-gpus)"

    def close(self) -> None:
        if self.gpu_samples is not None:
            self.gpu_samples.close()  # the samples file, kept open between reads

    def summary_notes(self) -> list[str]:
        """What the snapshot should say about this log (no clock; nothing mapped)."""
        notes = list(self.notes)
        if self._records and not self._has_clock:
            notes.append("this log carries no clock, so there are no device hours and no "
                         "ScaleRL fit; TensorBoard or verl's file logger have one")
        if self._records and not self._mapped_any and self.map is not None:
            notes.append(f"{self._records} record(s) read but none holds a key of the "
                         f"{self.map.framework} metric map; set monitoring.metric_map in the spec")
        return notes


class MappedSource:
    """What the TensorBoard and trainer_state.json readers share: the mapper, the checkpoints
    saved next to the log, and bad records of their own, reported before the mapper's."""

    def __init__(self, path: Path, mapper: RecordMapper) -> None:
        self.path = Path(path)
        self.mapper = mapper
        self.caught_up = True
        self.final = False  # a one-off read (--once): what is there now is all there is
        self.error: str | None = None
        self.checkpoints = CheckpointScanner(self.path)
        self._bad = 0
        self._bad_samples: list[tuple[int, str]] = []

    @property
    def malformed(self) -> int:
        return self._bad + self.mapper.malformed

    @property
    def malformed_samples(self) -> list[tuple[int, str]]:
        return [*self._bad_samples, *self.mapper.malformed_samples]

    def _bad_record(self, where: int, message: str) -> None:
        self._bad += 1
        if len(self._bad_samples) < MAX_SAMPLES:
            self._bad_samples.append((where, message))

    def notes(self) -> list[str]:
        return self.mapper.summary_notes()

    def close(self) -> None:
        self.mapper.close()
