"""verl's file logger: one JSON object a line, ``{"step": N, "data": {metric: value}}`` (newer
versions add ``"elapsed_seconds"``), appended at every step by ``verl.utils.tracking.FileLogger``
(``trainer.logger=['console','file']``). It writes to ``$VERL_FILE_LOGGER_PATH``, or else to
``$VERL_FILE_LOGGER_ROOT/<project_name>/<experiment_name>.jsonl`` (the root defaults to the
working directory).

The file is followed by byte offset with the same tailer as events.jsonl (partial last lines,
truncation and rotation included); only the test of what a good line is differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..tailer import READ_CHUNK, EventTailer, _decode_lines, _DecodeError
from .mapping import RecordMapper


def is_verl_record(obj: Any) -> bool:
    return (type(obj) is dict and type(obj.get("step")) is int and type(obj.get("data")) is dict)


class VerlLineTailer(EventTailer):
    """EventTailer for verl's lines: a record is an object with an integer ``step`` and a ``data``
    object."""

    NEEDS = "an object without an integer 'step' and a 'data' object (verl's file logger format)"

    @staticmethod
    def _accepts(event: Any) -> bool:
        return is_verl_record(event)

    def _decode_all(self, body: bytes, events: list[dict[str, Any]]) -> bool:
        if _decode_lines is None:
            return False
        try:
            decoded = _decode_lines(body)
        except _DecodeError:
            return False
        count = body.count(b"\n") + 1
        if len(decoded) != count:
            return False
        for record in decoded:
            if type(record) is not dict or type(record.get("step")) is not int \
                    or type(record.get("data")) is not dict:
                return False
        events.extend(decoded)
        self._line_no += count
        self.lines_read += count
        return True


class VerlFileSource:
    """The monitor's events from a verl file-logger JSONL file."""

    kind = "verl"
    format = "verl file logger (JSON Lines)"

    def __init__(self, path: Path, mapper: RecordMapper) -> None:
        self.path = Path(path)
        self.tailer = VerlLineTailer(self.path)
        self.mapper = mapper

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
        events: list[dict[str, Any]] = []
        mapper_events = self.mapper.events
        for record in self.tailer.poll(max_bytes):
            elapsed = record.get("elapsed_seconds")
            if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)):
                elapsed = None
            events.extend(mapper_events(record["step"], record["data"], elapsed=elapsed))
        return events

    poll_typed = poll

    def notes(self) -> list[str]:
        return self.mapper.summary_notes()

    def close(self) -> None:
        self.tailer.close()
