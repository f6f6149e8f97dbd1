"""RunMonitor: reading the file and feeding the same events as dicts end in the same state."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from preflight.monitor.core import RunMonitor
from preflight.monitor.render import to_dict
from preflight.rundir import events_path


def run_events(n: int = 400, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = [{"type": "run_start", "time": 0.0, "run": "same", "world_size": 4,
                                     "spec_sha256": "0" * 64, "backend": "nccl", "device": "cuda",
                                     "notes": [], "config": {}}]
    for s in range(1, n + 1):
        events.append({"type": "step", "time": float(s), "step": s, "loss": 1 + rng.gauss(0, 0.02)
                       + (3 if s == 250 else 0), "pass_rate": rng.random(), "gen_len_mean": 900.0,
                       "truncation_rate": 0.2 if 300 < s < 320 else 0.01, "utilization": rng.random(),
                       "grad_norm": 1.0, "utilization_source": "gpu", "lr": 1e-6, "batch_size": 64,
                       "device_hours": s / 10, "tokens_per_s": 1e4, "nonfinite": [] if s != 5 else ["loss"]})
        if s % 50 == 0:
            events.append({"type": "validation", "time": float(s), "step": s, "n": 10,
                           "pass_rate": 0.3 + s / 2000, "device_hours": s / 10})
        if s % 100 == 0:
            events.append({"type": "checkpoint", "time": float(s), "step": s, "path": "c", "bytes": 5,
                           "seconds": 1.0, "metric": None})
    events[5]["loss"] = None  # step 5: a non-finite loss
    events.append({"type": "run_end", "time": 1e4, "step": n, "status": "completed", "reason": None})
    return events


def comparable(m: RunMonitor) -> dict[str, Any]:
    body = to_dict(m.snapshot(), include_series=True)
    body.pop("run_dir")
    return body


def test_reading_the_file_and_feeding_dicts_agree(tmp_path: Path) -> None:
    events = run_events()
    events_path(tmp_path).write_text("".join(json.dumps(e) + "\n" for e in events))
    read = RunMonitor(tmp_path)
    read.poll()
    fed = RunMonitor(tmp_path / "elsewhere")
    fed.feed(events)
    assert comparable(read) == comparable(fed)
    assert read.state.events_seen == len(events)
    assert {a["rule"] for a in comparable(read)["alerts"]} >= {"loss_spike", "truncation_high",
                                                              "utilization_low", "pass_rate_low"}


def test_poll_with_a_byte_budget_reads_a_slice_at_a_time(tmp_path: Path) -> None:
    events = run_events()
    events_path(tmp_path).write_text("".join(json.dumps(e) + "\n" for e in events))
    m = RunMonitor(tmp_path)
    assert m.poll(max_bytes=10_000) and not m.caught_up
    first = m.state.events_seen
    assert 0 < first < len(events)
    while not m.caught_up:
        m.poll(max_bytes=10_000)
    assert m.state.events_seen == len(events) and m.snapshot().status == "completed"
    assert m.poll() is False  # nothing new


def test_series_stay_bounded_and_span_the_whole_run() -> None:
    from preflight.monitor.series import Series, SeriesGroup
    from preflight.monitor.stepevent import StepEvent

    series, group = Series(cap=64), SeriesGroup(("loss",), cap=64)
    for s in range(1, 100_001):
        series.add(s, float(s))
        if not group.next_step - group.stride <= s < group.next_step:
            group.keep(s, StepEvent(step=s, loss=float(s)))
    for points in (series.values(), group.values("loss", StepEvent(step=100_000, loss=1e5))):
        steps = [p[0] for p in points]
        assert len(points) <= 65 and steps == sorted(steps)
        assert steps[0] == 1 and steps[-1] == 100_000  # first and newest kept
        gaps = [b - a for a, b in zip(steps, steps[1:-1], strict=False)]
        assert max(gaps) <= 2 * min(gaps)  # evenly spread, not bunched at the start


def test_a_short_run_keeps_every_point() -> None:
    m = RunMonitor("unused")
    m.feed(run_events(n=300))
    series = m.snapshot().series
    assert [s for s, _ in series["loss"]] == [s for s in range(1, 301) if s != 5]  # 5: non-finite
    assert [s for s, _ in series["val_pass_rate"]] == [50, 100, 150, 200, 250, 300]


def test_without_the_fast_decoders_the_result_is_the_same(tmp_path: Path, monkeypatch) -> None:
    import preflight.monitor.tailer as tailer_module

    events = run_events(n=200)
    events_path(tmp_path).write_text("".join(json.dumps(e) + "\n" for e in events) + "oops\n")
    fast = RunMonitor(tmp_path)
    fast.poll()
    monkeypatch.setattr(tailer_module, "decode_typed_lines", None)
    monkeypatch.setattr(tailer_module, "_decode_lines", None)
    monkeypatch.setattr(tailer_module, "_decode", json.loads)
    monkeypatch.setattr(tailer_module, "_DecodeError", (ValueError, RecursionError))
    slow = RunMonitor(tmp_path)
    slow.poll()
    assert comparable(fast) == comparable(slow)
