"""EventTailer: follows events.jsonl by byte offset through partial lines, truncation, rotation
and bad lines, without ever raising on what is in the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from preflight.monitor import tailer as tailer_module
from preflight.monitor.tailer import EventTailer
from preflight.rundir import EVENTS_FILE, events_path


def line(step: int, **extra: object) -> str:
    return json.dumps({"type": "step", "time": 1.0, "step": step, **extra}) + "\n"


def append(path: Path, text: str | bytes) -> None:
    with open(path, "ab") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def steps(events: list[dict]) -> list[int]:
    return [e["step"] for e in events]


def test_a_file_that_does_not_exist_yet_gives_nothing_then_its_events(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    t = EventTailer(path)
    assert t.poll() == []
    assert t.poll() == []
    assert t.error is None
    append(path, line(1) + line(2))
    assert steps(t.poll()) == [1, 2]


def test_only_new_events_are_returned_and_the_file_is_not_read_again(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    append(path, line(1) + line(2))
    t = EventTailer(path)
    assert steps(t.poll()) == [1, 2]
    assert t.poll() == []
    append(path, line(3))
    assert steps(t.poll()) == [3]
    assert t.offset == path.stat().st_size
    assert t.lines_read == 3  # each line decoded exactly once


def test_a_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    full = line(7, loss=0.5)
    append(path, line(6) + full[:15])
    t = EventTailer(path)
    assert steps(t.poll()) == [6]
    append(path, full[15:-1])  # still no newline
    assert t.poll() == []
    append(path, "\n")
    events = t.poll()
    assert steps(events) == [7] and events[0]["loss"] == 0.5
    assert t.malformed == 0


def test_a_truncated_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    append(path, line(1) + line(2) + line(3))
    t = EventTailer(path)
    assert steps(t.poll()) == [1, 2, 3]
    with open(path, "w") as f:  # truncate in place (same inode)
        f.write(line(10))
    assert steps(t.poll()) == [10]
    assert t.truncations == 1 and t.rotations == 0


def test_rotation_finishes_the_old_file_then_follows_the_new_one(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    append(path, line(1))
    t = EventTailer(path)
    assert steps(t.poll()) == [1]
    append(path, line(2) + line(3)[:-1])  # appended before the rotation, last line unterminated
    os.rename(path, tmp_path / (EVENTS_FILE + ".1"))
    assert steps(t.poll()) == [2, 3]  # moved away, nothing new yet: the old file is finished
    append(path, line(4) + line(5))
    assert steps(t.poll()) == [4, 5]
    assert t.rotations == 1
    append(path, line(6))
    assert steps(t.poll()) == [6]


def test_rotation_seen_at_the_same_poll_as_the_new_file(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    append(path, line(1))
    t = EventTailer(path)
    t.poll()
    append(path, line(2))
    os.rename(path, tmp_path / "old.jsonl")
    append(path, line(3))
    assert steps(t.poll()) == [2, 3]


def test_malformed_lines_are_counted_with_their_line_numbers_and_never_raise(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    append(path, line(1) + "not json at all\n" + "[1, 2]\n" + '{"step": 3}\n' + "\n" + "   \n"
           + '{"type": "step", "step": 4, "loss": 0.1\n' + line(5))
    append(path, b'{"type": "step", "step": 6, "note": "\xff\xfe"}\n' + line(7).encode())
    t = EventTailer(path)
    assert steps(t.poll()) == [1, 5, 7]
    assert t.malformed == 5  # blank lines are not errors
    numbers = [n for n, _ in t.malformed_samples]
    assert numbers == [2, 3, 4, 7, 9]
    messages = dict(t.malformed_samples)
    assert messages[2].startswith("not valid JSON: not json at all")
    assert "a JSON array, not an object" in messages[3]
    assert "without a string 'type'" in messages[4]


def test_samples_are_capped_but_the_count_goes_on(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    append(path, "oops\n" * 50 + line(1))
    t = EventTailer(path, max_samples=3)
    assert steps(t.poll()) == [1]
    assert t.malformed == 50 and len(t.malformed_samples) == 3


def test_nan_and_infinity_from_other_writers_are_read(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    append(path, '{"type": "step", "step": 1, "loss": NaN, "grad_norm": Infinity}\n')
    [event] = EventTailer(path).poll()
    assert event["loss"] != event["loss"] and event["grad_norm"] == float("inf")


def test_a_line_without_end_is_dropped_past_the_limit_and_reading_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tailer_module, "MAX_LINE", 100)
    path = events_path(tmp_path)
    append(path, line(1) + "x" * 150)
    t = EventTailer(path)
    assert steps(t.poll()) == [1]
    append(path, "y" * 150)
    assert t.poll() == []
    append(path, "z\n" + line(2))
    assert steps(t.poll()) == [2]
    assert t.malformed == 1 and "longer than" in t.malformed_samples[0][1]


def test_max_bytes_bounds_one_poll_and_caught_up_says_when_done(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    append(path, "".join(line(i) for i in range(100)))
    t = EventTailer(path)
    seen: list[int] = []
    polls = 0
    while True:
        got = t.poll(max_bytes=500)
        seen += steps(got)
        polls += 1
        assert len(got) <= 500 // 40 + 1
        if t.caught_up:
            break
    assert seen == list(range(100)) and polls > 5


def test_a_directory_at_the_path_is_an_error_message_not_an_exception(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    path.mkdir()
    t = EventTailer(path)
    assert t.poll() == []
    assert t.error is not None and EVENTS_FILE in t.error


def test_the_typed_poll_gives_step_objects_and_other_events_as_dicts(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    append(path, line(1, loss=0.5, extra_field=[1, 2]) + json.dumps(
        {"type": "validation", "time": 2.0, "step": 1, "pass_rate": 0.4}) + "\n" + line(2))
    t = EventTailer(path)
    first, validation, second = t.poll_typed()
    assert (first.step, first.loss, first.utilization) == (1, 0.5, None)
    assert validation == {"type": "validation", "time": 2.0, "step": 1, "pass_rate": 0.4}
    assert second.step == 2


def test_the_typed_poll_falls_back_line_by_line_and_still_counts_bad_lines(tmp_path: Path) -> None:
    path = events_path(tmp_path)
    append(path, line(1) + "oops\n" + json.dumps({"type": "from_the_future", "time": 1.0}) + "\n"
           + '{"type": "step", "time": 1.0}\n' + line(2))
    t = EventTailer(path)
    events = t.poll_typed()
    assert [e.get("type") for e in events] == ["step", "from_the_future", "step", "step"]
    assert [e.get("step") for e in events] == [1, None, None, 2]  # dicts on this path
    assert t.malformed == 1 and t.malformed_samples[0][0] == 2
