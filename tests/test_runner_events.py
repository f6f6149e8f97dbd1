"""The run event stream: EventWriter, the JSONL file, the sinks behind the fan-out, the schema."""

from __future__ import annotations

import io
import json
import math
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from preflight.rundir import EVENT_TYPES
from runner.events import (
    EventWriter,
    FanOut,
    JsonlSink,
    NullSink,
    SinkUnavailable,
    StdoutSink,
    TensorBoardSink,
    WandbSink,
    make_sinks,
    scalar_metrics,
    validate_event,
)

SHA = "ab" * 32

STEP = dict(step=3, loss=0.42, pass_rate=0.625, gen_len_mean=143.5, truncation_rate=0.0,
            utilization=0.83, utilization_source="gpu", grad_norm=1.7, lr=1e-6, batch_size=64,
            clip_frac_low=0.01, clip_frac_high=0.02, entropy=0.9, tokens_per_s=1234.5,
            memory_gib=12.25, energy_j=None, device_hours=0.5, attempt=0)

ONE_OF_EACH: list[tuple[str, dict[str, Any]]] = [
    ("run_start", dict(run="demo", spec_sha256=SHA, world_size=1, backend="cpu", device="cpu",
                       config={"lr": 1e-6, "batch_size": 64},
                       notes=["fp32_lm_head: not applicable on cpu"], warnings=[],
                       forced=True, reason="gate overridden for a smoke test")),
    ("phase", dict(name="warm_start", step=0)),
    ("step", STEP),
    ("validation", dict(step=3, pass_rate=0.7, n=50, device_hours=0.5)),
    ("checkpoint", dict(step=3, path="ckpt/step-3", bytes=1024, seconds=0.2, blocked_seconds=0.01, metric=0.7,
                        metric_name="validation_pass_rate")),
    ("alert", dict(rule="pass_rate_low", message="pass rate 0.55 < 0.60", action="change the recipe",
                   step=3, severity="critical")),
    ("action", dict(step=3, kind="lr_reduce", cause="loss_spike")),
    ("recovery", dict(step=2, attempt=1, from_checkpoint="ckpt/step-2", reason="NaN loss")),
    ("batch_size", dict(step=4, old=64, new=32, reason="out of memory")),
    ("run_end", dict(step=4, status="completed", reason="max_steps reached")),
    ("error", dict(message="CUDA error", step=None, exception="RuntimeError")),
]


def read_events(path: Path) -> list[dict[str, Any]]:
    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} in {path}")

    return [json.loads(line, parse_constant=no_constants)
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.closed = 0

    def log(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def close(self) -> None:
        self.closed += 1


# --- the file and the schema -------------------------------------------------------------------


def test_every_event_type_validates_against_the_schema(tmp_path: Path) -> None:
    assert {kind for kind, _ in ONE_OF_EACH} == set(EVENT_TYPES)
    with EventWriter(tmp_path / "run") as writer:
        for kind, fields in ONE_OF_EACH:
            writer.emit(kind, **fields)
    written = read_events(tmp_path / "run" / "events.jsonl")
    assert [e["type"] for e in written] == [kind for kind, _ in ONE_OF_EACH]
    for event in written:
        assert isinstance(event["time"], float) and abs(event["time"] - time.time()) < 60
        assert validate_event(event) == [], event


@pytest.mark.parametrize(("kind", "fields", "where"), [
    ("step", {**STEP, "pass_rate": "high"}, "pass_rate"),
    ("step", {k: v for k, v in STEP.items() if k != "utilization"}, "utilization"),
    ("step", {**STEP, "utilization_source": "tpu"}, "utilization_source"),
    ("step", {**STEP, "truncation_rate": 1.5}, "truncation_rate"),
    ("run_end", {"step": 1, "status": "crashed", "reason": None}, "status"),
    ("alert", {"rule": "x", "message": "m", "action": "a", "step": 1, "severity": "loud"}, "severity"),
    ("run_start", {**ONE_OF_EACH[0][1], "reason": None}, "reason"),
    ("run_start", {k: v for k, v in ONE_OF_EACH[0][1].items() if k != "reason"}, "reason"),
    ("batch_size", {"step": 1, "old": 8, "new": 0, "reason": "r"}, "new"),
    ("checkpoint", {**ONE_OF_EACH[4][1], "blocked_seconds": -0.1}, "blocked_seconds"),
    ("error", {"message": "boom"}, "step"),
    ("nonsense", {}, "type"),
])
def test_the_schema_checks_types_and_required_fields(kind: str, fields: dict[str, Any], where: str) -> None:
    errors = validate_event({"time": 1.0, "type": kind, **fields})
    assert errors, (kind, fields)
    assert any(where in e for e in errors), errors


def test_attempt_defaults_to_zero_and_may_be_left_out() -> None:
    fields = {k: v for k, v in STEP.items() if k != "attempt"}
    assert validate_event({"time": 1.0, "type": "step", **fields}) == []
    assert validate_event({"time": 1.0, "type": "step", **fields, "attempt": -1}) != []


def test_other_ranks_write_nothing(tmp_path: Path) -> None:
    sink = Recorder()
    writer = EventWriter(tmp_path / "run", rank=1, sinks=[sink])
    assert writer.emit("step", **STEP) is None
    assert writer.flush(1.0)
    writer.close()
    assert not (tmp_path / "run").exists()
    assert sink.events == []


def test_nonfinite_floats_become_null_and_are_named(tmp_path: Path) -> None:
    with EventWriter(tmp_path) as writer:
        writer.emit("step", **{**STEP, "loss": float("nan"), "grad_norm": float("inf"),
                               "entropy": np.float32("nan"), "lr": np.float64(2e-6)},
                    config={"clip": -math.inf, "ok": 1.0})
    text = (tmp_path / "events.jsonl").read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    (event,) = read_events(tmp_path / "events.jsonl")
    assert event["loss"] is None and event["grad_norm"] is None and event["entropy"] is None
    assert event["lr"] == pytest.approx(2e-6)
    assert event["config"] == {"clip": None, "ok": 1.0}
    assert event["nonfinite"] == ["loss", "grad_norm", "entropy", "config.clip"]
    assert validate_event(event) == []


def test_a_resumed_writer_appends(tmp_path: Path) -> None:
    with EventWriter(tmp_path) as first:
        first.emit("phase", name="rl", step=0)
        first.emit("step", **STEP)
    # A crash left half a line behind; the next event still starts a line of its own.
    with open(tmp_path / "events.jsonl", "a", encoding="utf-8") as f:
        f.write('{"type": "st')
    with EventWriter(tmp_path) as second:
        second.emit("recovery", step=3, attempt=1, from_checkpoint=None, reason="preempted")
    lines = (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4
    assert json.loads(lines[0])["type"] == "phase"
    assert json.loads(lines[-1])["type"] == "recovery"


class SlowJsonl(JsonlSink):
    def write_line(self, line: str) -> None:
        time.sleep(0.005)
        super().write_line(line)


class FullDiskJsonl(JsonlSink):
    """events.jsonl on a disk that is full until ``full`` is set False."""

    full = True

    def write_line(self, line: str) -> None:
        if self.full:
            raise OSError(28, "No space left on device")
        super().write_line(line)


def test_emit_does_not_wait_for_a_slow_file_system(tmp_path: Path) -> None:
    writer = EventWriter(tmp_path, jsonl=SlowJsonl(tmp_path / "events.jsonl"))
    start = time.perf_counter()
    for i in range(100):
        writer.emit("step", **{**STEP, "step": i})
    assert time.perf_counter() - start < 0.1
    assert not writer.flush(timeout=0.01)  # still writing
    assert writer.flush(timeout=10)
    writer.close()
    assert [e["step"] for e in read_events(tmp_path / "events.jsonl")] == list(range(100))


def test_a_write_error_is_counted_reported_once_and_retried(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jsonl = FullDiskJsonl(tmp_path / "events.jsonl")
    writer = EventWriter(tmp_path, jsonl=jsonl)
    for i in range(3):
        writer.emit("step", **{**STEP, "step": i})  # must not raise
    assert writer.flush(5)
    assert writer.write_errors == 3
    assert writer.pending == 3
    err = capsys.readouterr().err
    assert err.count("No space left on device") == 1
    assert "events.jsonl" in err

    jsonl.full = False
    writer.emit("step", **{**STEP, "step": 3})
    writer.close()
    assert writer.pending == 0
    assert [e["step"] for e in read_events(tmp_path / "events.jsonl")] == [0, 1, 2, 3]


def test_an_unusable_run_dir_does_not_raise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x", encoding="utf-8")
    sink = Recorder()
    writer = EventWriter(blocker / "run", sinks=[sink])
    writer.emit("phase", name="rl", step=0)
    writer.emit("step", **STEP)
    writer.close()
    assert writer.write_errors >= 1
    assert [e["type"] for e in sink.events] == ["phase", "step"]  # the other sinks still get them
    assert "cannot write" in capsys.readouterr().err


def test_emit_after_close_is_dropped_quietly(tmp_path: Path) -> None:
    writer = EventWriter(tmp_path)
    writer.close()
    writer.close()
    assert writer.emit("step", **STEP) is None
    assert writer.dropped == 1


# --- sinks ---------------------------------------------------------------------------------------


def test_the_fan_out_calls_every_sink_even_when_one_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    class Broken(Recorder):
        def log(self, event: dict[str, Any]) -> None:
            raise ValueError("tracker down")

    a, broken, b = Recorder(), Broken(), Recorder()
    with EventWriter(tmp_path, sinks=[a, broken, NullSink(), b]) as writer:
        for kind, fields in ONE_OF_EACH:
            writer.emit(kind, **fields)
    kinds = [kind for kind, _ in ONE_OF_EACH]
    assert [e["type"] for e in a.events] == kinds
    assert [e["type"] for e in b.events] == kinds
    assert a.closed == broken.closed == b.closed == 1
    assert capsys.readouterr().err.count("tracker down") == 1

    fan = FanOut([a, b])
    fan.log({"type": "phase", "time": 1.0, "name": "rl", "step": 0})
    assert a.events[-1] == b.events[-1]


def test_stdout_sink_prints_one_line_per_step_validation_and_alert() -> None:
    out = io.StringIO()
    sink = StdoutSink(stream=out)
    for kind, fields in ONE_OF_EACH:
        sink.log({"time": 1.0, "type": kind, **fields})
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("step 3 |") and "loss 0.42" in lines[0] and "util 0.83(gpu)" in lines[0]
    assert lines[1].startswith("validation step 3") and "pass 0.700" in lines[1]
    assert lines[2].startswith("ALERT CRITICAL pass_rate_low at step 3")
    sink.log({"time": 1.0, "type": "step", "step": 4, "loss": None})
    assert "loss n/a" in out.getvalue().splitlines()[-1]


def test_scalar_metric_names_are_namespaced_with_units() -> None:
    metrics = scalar_metrics({"type": "step", "time": 1.0, **STEP})
    assert metrics["loss/policy"] == 0.42
    assert metrics["reward/pass_rate"] == 0.625
    assert metrics["gen/len_mean(tokens)"] == 143.5
    assert metrics["gen/truncation_rate"] == 0.0
    assert metrics["perf/utilization"] == 0.83
    assert metrics["perf/tokens_per_s"] == 1234.5
    assert metrics["memory/max_reserved(GiB)"] == 12.25
    assert metrics["time/device_hours"] == 0.5
    assert "energy/step(J)" not in metrics  # null is left out
    assert scalar_metrics({"type": "validation", "step": 1, "pass_rate": 0.5, "n": 10})[
        "validation/pass_rate"] == 0.5
    assert scalar_metrics({"type": "alert", "step": 1}) == {}


def test_wandb_and_tensorboard_sinks_name_the_missing_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(RuntimeError, match="pip install wandb"):
        WandbSink(project="p", entity=None, mode="offline")
    with pytest.raises(RuntimeError, match="pip install tensorboard"):
        TensorBoardSink(tmp_path / "tb")
    # a declared sink that cannot be opened stops the run: its metrics would otherwise go nowhere
    with pytest.raises(SinkUnavailable) as raised:
        make_sinks(["jsonl", "stdout", "wandb", "tensorboard", "carrier-pigeon"],
                   tmp_path, {"project": "p", "mode": "offline"})
    message = str(raised.value)
    assert "pip install wandb" in message and "pip install tensorboard" in message
    assert "carrier-pigeon" in message and "monitoring.sinks" in message


def test_wandb_sink_logs_namespaced_scalars_by_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, Any] = {"log": [], "finished": 0}

    class FakeRun:
        def log(self, metrics: dict[str, float], step: int | None = None) -> None:
            calls["log"].append((step, metrics))

        def finish(self) -> None:
            calls["finished"] += 1

    def init(**kwargs: Any) -> FakeRun:
        calls["init"] = kwargs
        return FakeRun()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    sinks, warnings = make_sinks(["wandb"], tmp_path, {"project": "p", "entity": "e", "mode": "offline"})
    assert warnings == []
    with EventWriter(tmp_path, sinks=sinks) as writer:
        writer.emit("phase", name="rl", step=0)
        writer.emit("step", **STEP)
        writer.emit("validation", step=3, pass_rate=0.7, n=50, device_hours=0.5)
    assert calls["init"]["mode"] == "offline" and calls["init"]["project"] == "p"
    assert calls["init"]["dir"] == str(tmp_path)
    assert [step for step, _ in calls["log"]] == [3, 3]
    assert calls["log"][0][1]["loss/policy"] == 0.42
    assert calls["log"][1][1] == {"validation/pass_rate": 0.7, "validation/n(prompts)": 50,
                                  "time/device_hours": 0.5}
    assert calls["finished"] == 1


def test_tensorboard_sink_writes_scalars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scalars: list[tuple[str, float, int]] = []

    class FakeWriter:
        def __init__(self, log_dir: str, flush_secs: int) -> None:
            self.log_dir = log_dir

        def add_scalar(self, name: str, value: float, global_step: int, walltime: float) -> None:
            scalars.append((name, value, global_step))

        def close(self) -> None:
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    sink = TensorBoardSink(tmp_path / "tb")
    sink.log({"type": "step", "time": 1.0, **STEP})
    sink.close()
    assert ("memory/max_reserved(GiB)", 12.25, 3) in scalars
