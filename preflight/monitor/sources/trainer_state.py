"""TRL's (transformers') ``trainer_state.json``: its ``log_history`` is every ``Trainer.log`` call
so far, one object each (``{"step": 10, "loss": ..., "reward": ..., "completions/clipped_ratio":
...}``; evaluation entries carry ``eval_`` keys).

The Trainer rewrites the whole file at every checkpoint (``OUTPUT_DIR/checkpoint-N/``) and at the
end (``OUTPUT_DIR/``), so it is not appended to: the newest copy is re-read when it changes and
only the entries past those already taken are handed on. A file caught half-written is read again
at the next poll; one that stays unreadable is reported. The history has no clock, so device
hours (and the curve fit) need the TensorBoard log instead; the note says so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .mapping import MappedSource, RecordMapper

STATE_FILE = "trainer_state.json"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")
STALL_POLLS = 3


def find_state_files(root: Path) -> list[Path]:
    """trainer_state.json in ROOT and in its checkpoint-N folders, oldest first."""
    if root.is_file():
        return [root]
    found = []
    top = root / STATE_FILE
    try:
        for child in root.iterdir():
            m = _CHECKPOINT.match(child.name)
            if m and (child / STATE_FILE).is_file():
                found.append((int(m.group(1)), child / STATE_FILE))
    except OSError:
        return []
    found.sort()
    paths = [p for _, p in found]
    if top.is_file():
        paths.append(top)  # written at the end of training: the most complete
    return paths


class TrainerStateSource(MappedSource):
    kind = "trl"
    format = "trainer_state.json log history"

    def __init__(self, root: Path, mapper: RecordMapper) -> None:
        super().__init__(root, mapper)
        self.offset = 0  # entries of log_history taken
        self._stamp: tuple[Path, int, int] | None = None
        self._unreadable = 0

    def poll(self, max_bytes: int = 0) -> list[dict[str, Any]]:
        files = find_state_files(self.path)
        if not files:
            return []
        newest = max(files, key=_mtime)
        try:
            st = newest.stat()
        except OSError:
            return []
        stamp = (newest, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return []
        history = self._history(newest)
        if history is None:
            return []
        self._stamp = stamp
        events: list[dict[str, Any]] = []
        for i, entry in enumerate(history[self.offset:], start=self.offset + 1):
            step = entry.get("step") if isinstance(entry, dict) else None
            if type(step) is not int:
                self._bad_record(i, f"{newest}: log_history entry {i} has no integer 'step'")
                continue
            data = {k: v for k, v in entry.items() if k != "step"}
            events.extend(self.mapper.events(step, data, where=i))
        self.offset = max(self.offset, len(history))
        return events + self.checkpoints.scan()

    poll_typed = poll

    def _history(self, path: Path) -> list[Any] | None:
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
            history = body["log_history"]
            if not isinstance(history, list):
                raise TypeError("'log_history' is not a list")
        except (OSError, ValueError, TypeError, KeyError) as exc:
            self._unreadable += 1
            if self._unreadable == STALL_POLLS or self.final:
                self._bad_record(0, f"{path}: unreadable ({type(exc).__name__}: {exc}); a "
                                    "trainer_state.json holds an object with a 'log_history' list")
            return None
        self._unreadable = 0
        return history


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1
