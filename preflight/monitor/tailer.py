"""Follow RUN_DIR/events.jsonl as it grows: new complete events since the last poll.

The tailer keeps the file open and remembers its byte offset, so each poll reads only what was
appended (never the whole file again). A line without its newline yet is kept for the next poll.
It notices a truncated file (the size went below the offset: start again from byte 0) and a rotated
one (the path now names another inode: finish the old file through the open handle, then switch).
A line that is not a JSON object with a string ``type`` is counted in ``malformed`` with a sample,
never raised: a half-written or corrupted line must not stop the console watching a live run.

Lines are decoded with msgspec when it is installed (about 4x faster than the json module on step
events) and with the standard library otherwise; both give the same dicts. A whole slice is
decoded in one call when every line in it is a good event, and line by line (to find and count
the bad ones) otherwise. ``poll_typed`` is the monitor's own faster read: step events become
``StepEvent`` objects holding only the fields the monitor uses (see stepevent.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ..rundir import events_path
from .stepevent import StepEvent, decode_typed_lines

try:  # an accelerator only: the json fallback gives the same result
    import msgspec

    _decoder = msgspec.json.Decoder()
    _decode: Callable[[bytes], Any] = _decoder.decode
    _decode_lines: Callable[[bytes], list[Any]] | None = _decoder.decode_lines
    _DecodeError: tuple[type[Exception], ...] = (msgspec.DecodeError, UnicodeDecodeError,
                                                 RecursionError)
except ImportError:  # pragma: no cover - exercised only where msgspec is missing
    _decode = json.loads
    _decode_lines = None
    _DecodeError = (ValueError, RecursionError)

# Bytes per poll by default. Small slices are faster overall: the events of one slice are still in
# the CPU cache while the monitor applies them (256 KiB measured ~1.5x faster than 4 MiB).
READ_CHUNK = 256 << 10
MAX_LINE = 16 << 20  # a 'line' longer than this is dropped as malformed instead of held in memory
MAX_SAMPLES = 20  # malformed lines kept as examples (the count goes on)
_SAMPLE_CHARS = 80
_BLANK = object()  # an empty or whitespace-only line: skipped, not an error
_INVALID = object()  # not JSON at all
_TOO_LONG = object()


def _slow_decode(line: bytes) -> Any:
    """The rare path: a line the fast decoder refused. The json module also reads NaN and
    Infinity, which other writers produce; anything still unreadable is _INVALID (or _BLANK)."""
    if not line.strip():
        return _BLANK
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return _INVALID


def _json_kind(value: Any) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


class EventTailer:
    """New events of one JSON Lines file since the last ``poll()``.

    ``poll(max_bytes)`` returns the complete events in at most about ``max_bytes`` of new data
    (a line longer than that is still read whole); ``caught_up`` says whether the poll reached
    the end of the file, so a caller that wants everything polls until it is True.
    """

    NEEDS = "an object without a string 'type'"  # what a decoded object lacked, for the sample

    def __init__(self, path: Path | str, max_samples: int = MAX_SAMPLES) -> None:
        self.path = Path(path)
        self.malformed = 0
        self.malformed_samples: list[tuple[int, str]] = []  # (line number in its file, message)
        self.lines_read = 0  # complete lines seen (blank ones included), over every file
        self.rotations = 0
        self.truncations = 0
        self.caught_up = True
        self.error: str | None = None  # why the file cannot be read right now (permission, a folder)
        self._max_samples = max_samples
        self._fh: IO[bytes] | None = None
        self._ino: tuple[int, int] | None = None
        self._offset = 0
        self._partial = b""
        self._line_no = 0  # lines of the current file taken so far
        self._skipping = False  # inside a line longer than MAX_LINE
        self._typed = False  # this poll decodes step events to StepEvent objects

    @property
    def offset(self) -> int:
        """Bytes of the current file consumed (a partial last line included)."""
        return self._offset

    def poll(self, max_bytes: int = READ_CHUNK) -> list[dict[str, Any]]:
        return self._poll(max_bytes, typed=False)

    def poll_typed(self, max_bytes: int = READ_CHUNK) -> list[Any]:
        """Like ``poll``, but step events come as ``StepEvent`` objects where they can (what
        RunMonitor reads; see stepevent.py); other events, and step events on a line-by-line
        fallback, are dicts."""
        return self._poll(max_bytes, typed=True)

    def _poll(self, max_bytes: int, typed: bool) -> list[Any]:
        events: list[Any] = []
        self._typed = typed and decode_typed_lines is not None
        self.caught_up = True
        if self._fh is not None:
            self._follow_rotation_or_truncation(events)
        if self._fh is None and not self._open():
            return events
        assert self._fh is not None
        try:
            data = self._fh.read(max(1, max_bytes))
        except OSError as exc:
            self.error = f"cannot read {self.path}: {exc.strerror or exc}"
            self._close()
            return events
        if not data:
            return events
        self._offset += len(data)
        self.caught_up = len(data) < max_bytes
        self._take(data, events)
        return events

    def close(self) -> None:
        self._close()

    # ---------------------------------------------------------------------------------------------

    def _open(self) -> bool:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - kept open between polls
        except FileNotFoundError:
            self.error = None  # not written yet: the run has not started
            return False
        except OSError as exc:
            self.error = f"cannot open {self.path}: {exc.strerror or exc}"
            return False
        st = os.fstat(fh.fileno())
        self._fh, self._ino = fh, (st.st_dev, st.st_ino)
        self._offset, self._partial, self._line_no, self.error = 0, b"", 0, None
        self._skipping = False
        return True

    def _close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            finally:
                self._fh, self._ino = None, None

    def _follow_rotation_or_truncation(self, events: list[dict[str, Any]]) -> None:
        assert self._fh is not None
        try:
            st = os.stat(self.path)
            now: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            now = None  # moved away and not recreated yet: finish the old file below
        if now == self._ino:
            if st.st_size < self._offset:  # truncated in place (or rewritten shorter)
                self.truncations += 1
                self._fh.seek(0)
                self._offset, self._partial, self._line_no = 0, b"", 0
                self._skipping = False
            return
        # Rotated (or deleted): what was appended to the old file before the switch still counts.
        rest = self._fh.read()
        if (rest or self._partial) and not rest.endswith(b"\n"):
            rest += b"\n"  # the old file's last line is complete: nothing more will come
        self._take(rest, events)
        if now is None:
            return  # keep the old handle until a new file appears at the path
        self.rotations += 1
        self._close()

    def _take(self, data: bytes, events: list[dict[str, Any]]) -> None:
        """Decode the complete lines of ``_partial + data``; keep the unfinished tail."""
        if self._partial:
            data = self._partial + data
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) > MAX_LINE:  # a writer that never ends its line must not fill memory
                self._skipping = True
                data = b""
            self._partial = data
            return
        if self._skipping:  # the rest of an over-long line: drop it and count it once
            self._skipping = False
            self._line_no += 1
            self.lines_read += 1
            self._bad(self._line_no, b"", _TOO_LONG)
            data = data[data.find(b"\n") + 1:]
            cut = data.rfind(b"\n")
            if cut < 0:
                self._partial = data
                return
        self._partial = data[cut + 1:]
        if self._typed and self._decode_all_typed(data[:cut], events):
            return
        if _decode_lines is not None and self._decode_all(data[:cut], events):
            return
        lines = data[:cut].split(b"\n")
        first = self._line_no
        self._line_no += len(lines)
        self.lines_read += len(lines)
        append = events.append
        for i, line in enumerate(lines):
            try:
                event = _decode(line)
            except _DecodeError:
                event = _slow_decode(line)
            if self._accepts(event):
                append(event)
            elif event is not _BLANK:
                self._bad(first + i + 1, line, event)

    @staticmethod
    def _accepts(event: Any) -> bool:
        """Whether a decoded line is a record this tailer returns (a subclass reads other logs)."""
        return type(event) is dict and type(event.get("type")) is str

    def _decode_all(self, body: bytes, events: list[dict[str, Any]]) -> bool:
        """The fast path: decode every line of ``body`` in one call. True if all of them were
        events; otherwise nothing is taken and the line-by-line path finds the bad ones."""
        assert _decode_lines is not None
        try:
            decoded = _decode_lines(body)
        except _DecodeError:
            return False
        count = body.count(b"\n") + 1
        # A blank line (skipped by decode_lines) or two values on one line make the counts differ.
        if len(decoded) != count or not self._all_accepted(decoded):
            return False
        return self._took(decoded, count, events)

    @staticmethod
    def _all_accepted(decoded: list[Any]) -> bool:
        """``_accepts`` for every record of a slice, written out (the fast path's check)."""
        return all(type(e) is dict and type(e.get("type")) is str for e in decoded)

    def _took(self, decoded: list[Any], count: int, events: list[Any]) -> bool:
        """A fast path's slice of ``count`` lines, all good: hand them on and count them."""
        events.extend(decoded)
        self._line_no += count
        self.lines_read += count
        return True

    def _decode_all_typed(self, body: bytes, events: list[Any]) -> bool:
        """The fastest path: step events straight into StepEvent objects, the other (known)
        types decoded again as dicts. False, with nothing taken, on anything unusual (a bad
        line, an unknown type, a blank line): the other paths sort that out."""
        assert decode_typed_lines is not None
        try:
            decoded = decode_typed_lines(body)
        except _DecodeError:
            return False
        count = body.count(b"\n") + 1
        if len(decoded) != count:
            return False
        others = [i for i, e in enumerate(decoded) if type(e) is not StepEvent]
        if others:
            lines = body.split(b"\n")
            for i in others:
                decoded[i] = _decode(lines[i])  # valid JSON objects: the typed decode proved it
        return self._took(decoded, count, events)

    def _bad(self, number: int, line: bytes, parsed: Any) -> None:
        self.malformed += 1
        if len(self.malformed_samples) >= self._max_samples:
            return
        if parsed is _TOO_LONG:
            why = f"a line longer than {MAX_LINE >> 20} MiB, skipped"
        elif parsed is _INVALID:
            why = "not valid JSON"
        elif not isinstance(parsed, dict):
            why = f"a JSON {_json_kind(parsed)}, not an object"
        else:
            why = self.NEEDS
        text = line[:_SAMPLE_CHARS].decode("utf-8", "replace")
        more = "..." if len(line) > _SAMPLE_CHARS else ""
        self.malformed_samples.append((number, f"{why}: {text}{more}"))


def read_events(run_dir: Path | str) -> Iterator[dict[str, Any]]:
    """Every complete event in RUN_DIR/events.jsonl now, in order (none when there is no file).

    The runner's resume logic reads its own past through this, so the runner and the monitor agree
    on what an event is: a line that is not a JSON object with a string ``type`` (half a line from
    a crash) is skipped.
    """
    tailer = EventTailer(events_path(run_dir))
    try:
        while True:
            yield from tailer.poll()
            if tailer.caught_up:
                return
    finally:
        tailer.close()
