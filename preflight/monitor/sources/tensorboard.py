"""TensorBoard event files (``events.out.tfevents.*``), as transformers/TRL, OpenRLHF and verl
write them with their TensorBoard loggers, followed live.

Records are read with TensorBoard's own maintained reader, ``RawEventFileLoader``
(tensorboard.backend.event_processing.event_file_loader): it keeps each file open at its offset,
returns only the records written since the last call, and leaves a record that is still being
written for the next one. Each record is parsed with ``event_pb2.Event``; scalar values
(``simple_value``, or a one-element tensor from newer writers) are grouped by step, and a step is
handed on once a later step shows up, or once the file stops growing.

A directory is searched for event files (sub-directories included: transformers writes
``OUTPUT_DIR/runs/<date>_<host>/``), again and again, so a file that appears later (a resumed run)
is followed too. Bytes that stay unread at the end of a file that no longer grows are a cut or
corrupt record: reported as malformed, never skipped in silence.

The tensorboard package is imported when a TensorBoard log is opened (``pip install
rl-preflight[monitor]``); without it the monitor says what to install.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ...errors import PreflightError
from .mapping import MappedSource, RecordMapper

TFEVENTS_GLOB = "events.out.tfevents.*"
RESCAN_S = 2.0  # how often a directory is searched for new event files
STALL_POLLS = 3  # polls without growth before unread bytes count as a bad record
MAX_PENDING = 50_000  # records held back while the writer's framework is not known yet
_RECORD_OVERHEAD = 16  # length (8) + its CRC (4) + the data's CRC (4)


def find_event_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    try:
        return sorted(p for p in root.rglob(TFEVENTS_GLOB) if p.is_file())
    except OSError:
        return []


def _load_reader() -> tuple[Any, Any]:
    try:
        from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
        from tensorboard.compat.proto import event_pb2
    except ImportError:
        raise PreflightError("reading TensorBoard logs needs the tensorboard package: "
                             "pip install 'rl-preflight[monitor]' (or pip install tensorboard)") from None
    return RawEventFileLoader, event_pb2


class _File:
    """One event file: its reader, the bytes it has consumed, and the step being gathered."""

    def __init__(self, path: Path, loader_cls: Any) -> None:
        self.path = path
        self.loader = loader_cls(str(path))
        self.consumed = 0
        self.last_size = -1
        self.stalled = 0
        self.reported = False
        self.step: int | None = None
        self.wall = 0.0
        self.values: dict[str, Any] = {}


class TensorBoardSource(MappedSource):
    """The monitor's events from the TensorBoard files under a path (a file or a directory).
    ``final`` (a one-off read) hands on the last step at the end of the file."""

    kind = "tensorboard"
    format = "TensorBoard event files"

    def __init__(self, root: Path, mapper: RecordMapper, clock: Any = time.monotonic) -> None:
        self._loader_cls, self._pb = _load_reader()
        super().__init__(root, mapper)
        self.clock = clock
        self._files: dict[Path, _File] = {}
        self._last_scan = -1e18
        self._pending: list[tuple[int, dict[str, Any], float, int]] = []
        self._tags: set[str] = set()
        self.records = 0
        self._notes: list[str] = []

    @property
    def offset(self) -> int:
        return sum(f.consumed for f in self._files.values())

    def files(self) -> list[Path]:
        return list(self._files)

    def poll(self, max_bytes: int = 1 << 18) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._scan():
            events.extend(self.checkpoints.scan())
        budget = max(1, max_bytes)
        self.caught_up = True
        for f in list(self._files.values()):
            budget -= self._read(f, budget, events)
            if budget <= 0:
                self.caught_up = False
                break
        return events

    poll_typed = poll

    def notes(self) -> list[str]:
        notes = [*self._notes, *self.mapper.summary_notes()]
        if self.mapper.framework is None and self._tags:
            notes.append(f"cannot tell which trainer wrote {self.path} from its tags "
                         f"({', '.join(sorted(self._tags)[:5])}, ...); pass --source verl|trl|openrlhf")
        return notes

    def close(self) -> None:
        self._files.clear()
        super().close()

    # ---------------------------------------------------------------------------------------------

    def _scan(self) -> bool:
        """Look for new event files (at most every RESCAN_S); True when it looked."""
        now = self.clock()
        if now - self._last_scan < RESCAN_S and self._files:
            return False
        self._last_scan = now
        for path in find_event_files(self.path):
            if path not in self._files:
                try:
                    self._files[path] = _File(path, self._loader_cls)
                except Exception as exc:  # the reader refuses a file it cannot open
                    self._bad_record(0, f"{path}: cannot be opened as an event file ({exc})")
        return True

    def _read(self, f: _File, budget: int, events: list[dict[str, Any]]) -> int:
        """Read one file's new records (up to about ``budget`` bytes); the bytes consumed."""
        used = 0
        parse = self._pb.Event.FromString
        for raw in f.loader.Load():
            used += len(raw) + _RECORD_OVERHEAD
            try:
                event = parse(raw)
            except Exception:  # DecodeError: a record whose CRCs matched but is not an Event
                self._bad_record(f.consumed + used, f"{f.path}: a record that is not a TensorBoard Event")
                continue
            self._take(f, event, events)
            if used >= budget:
                break
        f.consumed += used
        self._check_stall(f, used, events, budget_hit=used >= budget)
        return used

    def _take(self, f: _File, event: Any, events: list[dict[str, Any]]) -> None:
        if not event.HasField("summary"):
            return  # the file_version record, graphs, session logs
        step = int(event.step)
        if f.step is not None and step != f.step:
            self._flush(f, events)
        f.step, f.wall = step, event.wall_time
        for value in event.summary.value:
            kind = value.WhichOneof("value")
            if kind == "simple_value":
                f.values[value.tag] = value.simple_value
            elif kind == "tensor":
                number = _tensor_scalar(value.tensor)
                if number is not None:
                    f.values[value.tag] = number

    def _flush(self, f: _File, events: list[dict[str, Any]]) -> None:
        if f.step is None or not f.values:
            f.step, f.values = None, {}
            return
        self.records += 1
        self._pending.append((f.step, f.values, f.wall, f.consumed))
        self._tags.update(f.values)
        f.step, f.values = None, {}
        self._drain(events)

    def _drain(self, events: list[dict[str, Any]]) -> None:
        if not self.mapper.learn_framework(sorted(self._tags)):
            if len(self._pending) > MAX_PENDING:
                self._pending = self._pending[-MAX_PENDING:]
            return
        pending, self._pending = self._pending, []
        pending.sort(key=lambda r: (r[2], r[0]))
        for step, values, wall, where in pending:
            events.extend(self.mapper.events(step, values, wall=wall, where=where))

    def _check_stall(self, f: _File, used: int, events: list[dict[str, Any]], budget_hit: bool) -> None:
        """Hand on the last step of a file that stopped growing; report bytes that stay unread."""
        try:
            size = os.stat(f.path).st_size
        except OSError:
            return
        if used:
            f.stalled, f.last_size = 0, size
            if self.final and not budget_hit:
                self._flush(f, events)  # --once: the step gathered last is all there is
        elif size == f.last_size:
            f.stalled += 1
            self._flush(f, events)  # nothing new since the last poll: the step is complete
        else:
            f.stalled, f.last_size = 0, size
        stopped_short = self.final and not budget_hit  # a one-off read will not come back
        if size > f.consumed and (f.stalled >= STALL_POLLS or stopped_short) and not f.reported:
            f.reported = True
            self._bad_record(f.consumed, f"{f.path}: {size - f.consumed} byte(s) after offset "
                                         f"{f.consumed} cannot be read (a cut or corrupt record); "
                                         "anything written after them is not seen")


def _tensor_scalar(tensor: Any) -> float | None:
    """A scalar from a TensorProto (what newer writers use instead of simple_value)."""
    for name in ("float_val", "double_val", "int_val", "int64_val"):
        values = getattr(tensor, name)
        if len(values) == 1:
            return float(values[0])
    if tensor.tensor_content:
        from tensorboard.util import tensor_util  # numpy-backed, only for packed tensors

        array = tensor_util.make_ndarray(tensor)
        if array.size == 1:
            return float(array.reshape(-1)[0])
    return None
