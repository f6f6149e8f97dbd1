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

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..metricmap import STEP_FIELD, MetricMap, guess_framework
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
        self._last_time: float | None = None

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
        self._records += 1
        values = self.map.values(data)
        hours, when = self._clock(data, wall, elapsed)
        out: list[dict[str, Any]] = []
        step_event: dict[str, Any] = {"type": "step", "step": step, "time": when}
        nonfinite: list[str] = []
        for metric, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.bad(where, f"step {step}: the value for {metric} is "
                                f"{type(value).__name__} {str(value)[:40]!r}, not a number")
                continue
            number = float(value)
            if metric == "pass_rate":
                if math.isfinite(number):
                    out.append({"type": "validation", "step": step, "pass_rate": number,
                                "device_hours": hours, "time": when})
                continue
            name = STEP_FIELD[metric]
            if math.isfinite(number):
                step_event[name] = number
            else:
                step_event[name] = None
                nonfinite.append(name)
        if len(step_event) > 3 or nonfinite:
            if nonfinite:
                step_event["nonfinite"] = nonfinite
            if hours is not None:
                step_event["device_hours"] = hours
            self._add_utilization(step_event, when)
            out.insert(0, step_event)
        if out:
            self._mapped_any = True
        return out

    def _clock(self, data: Mapping[str, Any], wall: float | None,
               elapsed: float | None) -> tuple[float | None, float]:
        """(device hours so far or None, the record's time in seconds since the epoch)."""
        now = self.clock()
        if self._first_seen is None:
            self._first_seen = now
        seconds: float | None = None
        if wall is not None:
            if self._first_wall is None:
                self._first_wall = wall
            seconds, when = wall - self._first_wall, wall
        else:
            step_s = data.get(VERL_STEP_SECONDS)
            if isinstance(step_s, (int, float)) and not isinstance(step_s, bool) and math.isfinite(step_s):
                self._step_seconds += float(step_s)
                seconds = self._step_seconds
            if elapsed is not None:
                seconds = elapsed
            when = self._first_seen + seconds if seconds is not None else now
        if seconds is not None:
            self._has_clock = True
        self._last_time = when
        hours = seconds * self.devices / 3600.0 if seconds is not None else None
        return hours, when

    def _add_utilization(self, event: dict[str, Any], when: float) -> None:
        if self.gpu_samples is None or "utilization" in event:
            return
        util = self.gpu_samples.utilization_at(when)
        if util is not None:
            event["utilization"] = util
            event["utilization_source"] = "NVML sampler (--sample-gpus)"

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
