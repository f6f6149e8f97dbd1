"""verl's file logger: one JSON object a line, ``{"step": N, "data": {metric: value}}`` (newer
versions add ``"elapsed_seconds"``), appended at every step by ``verl.utils.tracking.FileLogger``
(``trainer.logger=['console','file']``). It writes to ``$VERL_FILE_LOGGER_PATH``, or else to
``$VERL_FILE_LOGGER_ROOT/<project_name>/<experiment_name>.jsonl`` (the root defaults to the
working directory).

The file is followed by byte offset with the same tailer as events.jsonl (partial last lines,
truncation and rotation included); only the test of what a good line is differs.

Speed (bench/bench_monitor_sources.py): a verl record carries dozens of keys and the monitor reads
about eight. With msgspec, lines are decoded into a struct holding only the metric map's exact keys
(the rest are skipped, not built into a dict: about 4x faster); a line that may hold a key only a
wildcard pattern catches (``val-core/...``: its literal prefix appears in the line's bytes) is
decoded whole, so no key the map would match is ever missed.
"""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

from ..tailer import READ_CHUNK, EventTailer, _decode, _DecodeError
from .mapping import VERL_STEP_SECONDS, RecordMapper

try:  # an accelerator only: without it every line is decoded whole
    import msgspec

    _TYPED_ERRORS: tuple[type[Exception], ...] = (*_DecodeError, msgspec.ValidationError)
except ImportError:  # pragma: no cover - exercised only where msgspec is missing
    msgspec = None  # type: ignore[assignment]
    _TYPED_ERRORS = _DecodeError


def is_verl_record(obj: Any) -> bool:
    return (type(obj) is dict and type(obj.get("step")) is int and type(obj.get("data")) is dict)


class VerlLineTailer(EventTailer):
    """EventTailer for verl's lines: a record is an object with an integer ``step`` and a ``data``
    object."""

    NEEDS = "an object without an integer 'step' and a 'data' object (verl's file logger format)"
    typed: Any = None  # msgspec decoder of (step, data: only the mapped keys, elapsed_seconds)
    whole_prefixes: tuple[bytes, ...] = ()  # a line holding one of these is decoded whole

    @staticmethod
    def _accepts(event: Any) -> bool:
        return is_verl_record(event)

    @staticmethod
    def _all_accepted(decoded: list[Any]) -> bool:
        for record in decoded:
            if type(record) is not dict or type(record.get("step")) is not int \
                    or type(record.get("data")) is not dict:
                return False
        return True

    def _decode_all(self, body: bytes, events: list[dict[str, Any]]) -> bool:
        if self.typed is not None:
            return self._decode_typed(body, events)
        return super()._decode_all(body, events)

    def _decode_typed(self, body: bytes, events: list[Any]) -> bool:
        """Typed structs for the lines no wildcard pattern could match, dicts for the others.
        False (nothing taken) on anything unusual: the line-by-line path reports it."""
        try:
            decoded = self.typed.decode_lines(body)
            count = body.count(b"\n") + 1
            if len(decoded) != count:
                return False
            line, counted_to = 0, 0
            for start in _lines_holding(body, self.whole_prefixes):
                line += body.count(b"\n", counted_to, start)
                counted_to = start
                end = body.find(b"\n", start)
                decoded[line] = _decode(body[start:end if end >= 0 else None])
        except _TYPED_ERRORS:
            return False
        for record in decoded:
            if type(record) is dict:
                if not is_verl_record(record):
                    return False
            elif type(record.step) is not int:
                return False
        return self._took(decoded, count, events)


def _lines_holding(body: bytes, prefixes: tuple[bytes, ...]) -> list[int]:
    """The start offsets of the lines of ``body`` that hold one of ``prefixes``, in order."""
    starts: set[int] = set()
    for prefix in prefixes:
        at = body.find(prefix)
        while at >= 0:
            starts.add(body.rfind(b"\n", 0, at) + 1)
            end = body.find(b"\n", at)
            if end < 0:
                break
            at = body.find(prefix, end)
    return sorted(starts)


def _typed_decoder(mapper: RecordMapper) -> tuple[Any, tuple[bytes, ...], list[tuple[str, str]]] | None:
    """The msgspec decoder for the map's exact keys, the wildcard prefixes, and (key, attribute)
    pairs; None without msgspec, or when a wildcard could match any line. The map is fixed for a
    verl file (no override arrives later), so the plan is made once."""
    if msgspec is None or mapper.map is None:
        return None
    exact, prefixes = {VERL_STEP_SECONDS}, set()
    for patterns in mapper.map.patterns.values():
        for pattern in patterns:
            if "*" in pattern:
                prefix = pattern.split("*", 1)[0]
                if not prefix or not prefix.isascii():
                    return None  # json.dumps escapes non-ASCII: the bytes would not show it
                prefixes.add(prefix.encode())
            else:
                exact.add(pattern)
    pairs = [(key, f"k{i}") for i, key in enumerate(sorted(exact))]
    data = msgspec.defstruct("VerlData", [(attr, Any, None) for _, attr in pairs],
                             rename={attr: key for key, attr in pairs})
    record = msgspec.defstruct("VerlRecord", [("step", Any), ("data", data),
                                              ("elapsed_seconds", Any, None)])
    return msgspec.json.Decoder(record), tuple(sorted(prefixes)), pairs


class VerlFileSource:
    """The monitor's events from a verl file-logger JSONL file."""

    kind = "verl"
    format = "verl file logger (JSON Lines)"

    def __init__(self, path: Path, mapper: RecordMapper) -> None:
        self.path = Path(path)
        self.tailer = VerlLineTailer(self.path)
        self.mapper = mapper
        self._plan: list[tuple[str, tuple[str, ...]]] = []  # metric -> attributes, in pattern order
        self._getter: Any = None  # all single-key metrics' values (and the step's seconds) at once
        self._names: tuple[str, ...] = ()
        typed = _typed_decoder(mapper)
        if typed is not None and mapper.map is not None:
            self.tailer.typed, self.tailer.whole_prefixes, pairs = typed
            attr = dict(pairs)
            self._step_attr = attr[VERL_STEP_SECONDS]
            self._plan = [(metric, tuple(attr[p] for p in patterns if p in attr))
                          for metric, patterns in mapper.map.patterns.items()]
            self._plan = [(m, attrs) for m, attrs in self._plan if attrs]
            if all(len(attrs) == 1 for _, attrs in self._plan) and \
                    all(m != "pass_rate" for m, _ in self._plan):  # one key a metric: one C call
                self._names = tuple(m for m, _ in self._plan)
                self._getter = operator.attrgetter(*(a[0] for _, a in self._plan), self._step_attr)

    # The EventTailer interface RunMonitor reads ---------------------------------------------------

    @property
    def caught_up(self) -> bool:
        return self.tailer.caught_up

    @property
    def malformed(self) -> int:
        return self.tailer.malformed + self.mapper.malformed

    @property
    def malformed_samples(self) -> list[tuple[int, str]]:
        return [*self.tailer.malformed_samples, *self.mapper.malformed_samples]

    @property
    def error(self) -> str | None:
        return self.tailer.error

    @property
    def offset(self) -> int:
        return self.tailer.offset

    def poll(self, max_bytes: int = READ_CHUNK) -> list[dict[str, Any]]:
        records: list[Any] = self.tailer.poll(max_bytes)  # dicts, or VerlRecord structs
        if self._getter is not None:
            return self._poll_fast(records)
        return self._map(records)

    def _poll_fast(self, records: list[Any]) -> list[dict[str, Any]]:
        """Runs of plain typed records (no elapsed_seconds) go to the mapper in one call; the
        rest one by one, in order."""
        events: list[dict[str, Any]] = []
        getter, run_steps, run_rows = self._getter, [], []
        for record in records:
            if type(record) is not dict and record.elapsed_seconds is None:
                run_steps.append(record.step)
                run_rows.append(getter(record.data))
                continue
            if run_steps:
                events.extend(self.mapper.emit_plain_steps(run_steps, run_rows, self._names))
                run_steps, run_rows = [], []
            events.extend(self._map([record]))
        if run_steps:
            events.extend(self.mapper.emit_plain_steps(run_steps, run_rows, self._names))
        return events

    def _map(self, records: list[Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        mapper = self.mapper
        plan = self._plan
        for record in records:
            if type(record) is dict:
                elapsed = record.get("elapsed_seconds")
                if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)):
                    elapsed = None
                events.extend(mapper.events(record["step"], record["data"], elapsed=elapsed))
                continue
            # The typed struct: only the mapped exact keys were decoded; the first present wins.
            data = record.data
            elapsed = record.elapsed_seconds
            if type(elapsed) is not float and type(elapsed) is not int:
                elapsed = None
            if self._getter is not None:
                *found, step_seconds = self._getter(data)
                events.extend(mapper.emit_pairs(record.step, self._names, found, step_seconds, elapsed))
                continue
            values = {}
            for metric, attrs in plan:
                for attr in attrs:
                    value = getattr(data, attr)
                    if value is not None:
                        values[metric] = value
                        break
            events.extend(mapper.emit(record.step, values, getattr(data, self._step_attr), elapsed=elapsed))
        return events

    poll_typed = poll

    def notes(self) -> list[str]:
        return self.mapper.summary_notes()

    def close(self) -> None:
        self.tailer.close()
        self.mapper.close()
