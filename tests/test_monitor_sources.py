"""Other trainers' logs through the monitor: detection, the metric maps, the alert table, the
checklists and the curve fit, on logs written with the keys verl, OpenRLHF and TRL use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import FakeGpuProbe
from monitor_logs import (
    EXPECTED_ALERTS,
    STEPS,
    openrlhf_scalars,
    trl_logs,
    verl_record,
    write_tensorboard,
    write_trainer_state,
    write_verl,
)

from preflight.errors import PreflightError
from preflight.monitor.core import RunMonitor
from preflight.monitor.metricmap import MetricMap, guess_framework
from preflight.monitor.sources.detect import detect, open_source
from preflight.monitor.sources.gpu import SAMPLES_FILE, GpuSampler

ROOT = Path(__file__).resolve().parents[1]


def follow(path: Path, forced: str | None = None, overrides: dict | None = None,
           devices: int = 1, gpu: bool = False) -> RunMonitor:
    found = detect(path, forced)
    source = open_source(found, overrides, devices=devices, gpu_samples=gpu)
    assert source is not None
    source.final = True
    monitor = RunMonitor(found.run_dir, source=source, source_label=found.describe())
    monitor.poll()
    return monitor


def alerts(monitor: RunMonitor) -> set[tuple[str, int]]:
    return {(a.rule, a.step) for a in monitor.snapshot().alerts}


def test_verl_file_logger_replay_raises_exactly_the_expected_alerts(tmp_path: Path) -> None:
    path = write_verl(tmp_path / "exp.jsonl")
    monitor = follow(path, devices=8)
    snap = monitor.snapshot()
    assert detect(path).kind == "verl"
    assert alerts(monitor) == EXPECTED_ALERTS
    assert snap.last_step == STEPS
    assert snap.malformed_lines == 0
    # Validation from val-core/<data_source>/acc/mean@4, device hours from timing_s/step x 8 devices.
    assert len(snap.validation_points) == STEPS // 10
    assert snap.validation_points[-1][0] == pytest.approx(STEPS * 60 * 8 / 3600)
    assert snap.fit is not None and 0.4 < snap.fit.A < 0.5
    items = {i.id: i.status for group in snap.checklists.values() for i in group}
    assert items["loss_stable"] == "fail"  # the spike at 60 is not answered
    assert items["checkpoint_on_schedule"] == "pending"  # a metrics log holds no checkpoints
    assert "verl file logger" in snap.source


def test_verl_elapsed_seconds_and_partial_lines_are_followed_live(tmp_path: Path) -> None:
    path = tmp_path / "exp.jsonl"
    path.write_text("")
    found = detect(path, "verl")
    source = open_source(found)
    monitor = RunMonitor(found.run_dir, source=source, source_label=found.describe())
    with open(path, "a") as fh:
        for step in range(1, 11):
            fh.write(json.dumps(verl_record(step, elapsed=True)) + "\n")
        fh.write(json.dumps(verl_record(11, elapsed=True))[:30])  # half a line: not yet
        fh.flush()
        monitor.poll()
        assert monitor.snapshot().last_step == 10
        fh.write(json.dumps(verl_record(11, elapsed=True))[30:] + "\n")
        fh.flush()
    monitor.poll()
    snap = monitor.snapshot()
    assert snap.last_step == 11
    assert snap.validation_points == [(pytest.approx(10 * 60 / 3600), pytest.approx(snap.series["val_pass_rate"][0][1]))]
    assert snap.malformed_lines == 0


def test_openrlhf_tensorboard_replay_raises_exactly_the_expected_alerts(tmp_path: Path) -> None:
    logdir = write_tensorboard(tmp_path / "tb" / "run", openrlhf_scalars)
    found = detect(tmp_path / "tb")
    assert found.kind == "tensorboard"
    monitor = follow(tmp_path / "tb")
    snap = monitor.snapshot()
    assert monitor.tailer.mapper.framework == "openrlhf"  # told from its tags
    assert alerts(monitor) == EXPECTED_ALERTS
    assert snap.last_step == STEPS and snap.malformed_lines == 0
    assert snap.fit is not None  # TensorBoard's wall time gives the device hours
    assert logdir.exists()


def test_trl_trainer_state_replay_raises_exactly_the_expected_alerts(tmp_path: Path) -> None:
    out = tmp_path / "trl-out"
    (out / "checkpoint-60").mkdir(parents=True)
    write_trainer_state(out / "checkpoint-60" / "trainer_state.json", steps=60)
    found = detect(out)
    assert (found.kind, found.framework) == ("trl", "trl")
    monitor = follow(out)
    assert monitor.snapshot().last_step == 60
    # The final trainer_state.json holds everything: only the entries past step 60 are new.
    write_trainer_state(out / "trainer_state.json")
    monitor.poll()
    snap = monitor.snapshot()
    assert alerts(monitor) == EXPECTED_ALERTS
    assert snap.last_step == STEPS
    assert any("no clock" in n for n in snap.notes)  # and so no fit: said, not hidden
    assert snap.fit is None
    # checkpoint-60 (its trainer_state.json written) is the run's checkpoint: judged on schedule
    assert snap.latest_checkpoint is not None and snap.latest_checkpoint["step"] == 60
    item = next(i for i in snap.checklists["during_training"] if i.id == "checkpoint_on_schedule")
    assert item.status == "pass" and "step 60" in item.evidence


def test_checkpoint_folders_count_once_complete(tmp_path: Path) -> None:
    from preflight.monitor.sources.checkpoints import CheckpointScanner

    scanner = CheckpointScanner(tmp_path)
    (tmp_path / "checkpoint-50").mkdir()
    (tmp_path / "global_step_40").mkdir()
    assert scanner.scan() == []  # still being written: no trainer_state.json, no verl marker
    (tmp_path / "checkpoint-50" / "trainer_state.json").write_text("{}")
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("40\n")
    assert [e["step"] for e in scanner.scan()] == [40, 50]
    assert scanner.scan() == []  # reported once


def test_trl_tensorboard_keys_map_through_the_train_and_eval_prefixes(tmp_path: Path) -> None:
    def scalars(step: int) -> dict[str, float]:
        out = {}
        for entry in trl_logs(step):
            for k, v in entry.items():
                if k != "step":
                    out[f"eval/{k[5:]}" if k.startswith("eval_") else f"train/{k}"] = v
        return out

    write_tensorboard(tmp_path / "runs" / "Dec05", scalars)
    monitor = follow(tmp_path)
    assert monitor.tailer.mapper.framework == "trl"
    assert alerts(monitor) == EXPECTED_ALERTS


def test_a_spec_metric_map_overrides_a_framework_key(tmp_path: Path) -> None:
    path = tmp_path / "exp.jsonl"
    with open(path, "w") as fh:
        for step in range(1, 31):
            record = verl_record(step)
            record["data"]["my/trunc"] = record["data"].pop("response_length/clip_ratio")
            fh.write(json.dumps(record) + "\n")
    assert ("truncation_high", 21) not in alerts(follow(path))
    assert ("truncation_high", 21) in alerts(follow(path, overrides={"truncation_rate": "my/*"}))


def test_metric_map_means_over_data_sources_and_keeps_order() -> None:
    m = MetricMap.for_framework("verl")
    values = m.values({"val-core/a/acc/mean@4": 0.2, "val-core/b/acc/mean@4": 0.4,
                       "val-core/a/reward/mean@4": 0.9, "val-core/a/acc/best@4/mean": 1.0})
    assert values == {"pass_rate": pytest.approx(0.3)}
    assert guess_framework(["train/policy_loss"]) == "openrlhf"
    assert guess_framework(["train/completions/clipped_ratio"]) == "trl"
    assert guess_framework(["critic/score/mean"]) == "verl"


def test_non_numbers_and_nan_are_reported_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "exp.jsonl"
    with open(path, "w") as fh:
        fh.write(json.dumps({"step": 1, "data": {"actor/pg_loss": "oops", "response_length/mean": 10}}) + "\n")
        fh.write('{"step": 2, "data": {"actor/pg_loss": NaN}}\n')
        fh.write("not json at all\n")
        fh.write(json.dumps({"step": "3", "data": {}}) + "\n")
    snap = follow(path, "verl").snapshot()
    assert snap.malformed_lines == 3
    messages = " ".join(m for _, m in snap.malformed_samples)
    assert "not a number" in messages and "not valid JSON" in messages and "verl's file logger" in messages
    items = {i.id: i for i in snap.checklists["during_training"]}
    assert items["loss_stable"].status == "fail" and "not finite" in items["loss_stable"].evidence


def test_a_corrupt_tensorboard_record_is_reported(tmp_path: Path) -> None:
    write_tensorboard(tmp_path, openrlhf_scalars, steps=5)
    event_file = next(tmp_path.glob("events.out.tfevents.*"))
    data = bytearray(event_file.read_bytes())
    data[-10] ^= 0xFF  # break the last record's CRC
    event_file.write_bytes(bytes(data))
    found = detect(tmp_path)
    source = open_source(found)
    monitor = RunMonitor(found.run_dir, source=source, source_label=found.describe())
    for _ in range(4):  # the bytes stay unread while the file does not grow
        monitor.poll()
    snap = monitor.snapshot()
    assert snap.malformed_lines == 1
    assert "cannot be read" in snap.malformed_samples[0][1]
    # A one-off report (--once) says so at once: it will not poll again.
    once = follow(tmp_path)
    assert once.snapshot().malformed_lines == 1


@pytest.mark.parametrize(("name", "body", "forced", "needle"), [
    ("empty.jsonl", "", None, "--source verl"),
    ("other.jsonl", '{"hello": 1}\n', None, "not a log the monitor knows"),
    ("run-1.wandb", "x", None, "no maintained public reader"),
    ("trainer_state.json", "{}", "verl", "does not fit"),
])
def test_unusable_paths_say_what_to_do(tmp_path: Path, name: str, body: str, forced: str | None,
                                       needle: str) -> None:
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(PreflightError, match=needle):
        detect(path, forced)


def test_the_runner_run_dir_is_still_the_default(tmp_path: Path) -> None:
    assert detect(tmp_path).kind == "events"  # nothing there yet: waiting for events.jsonl
    (tmp_path / "events.jsonl").write_text('{"type": "run_start"}\n')
    assert detect(tmp_path).kind == "events"
    assert detect(tmp_path / "events.jsonl").kind == "events"
    with pytest.raises(PreflightError, match="no such run directory"):
        detect(tmp_path / "missing")


def test_gpu_sampler_fills_in_utilization(tmp_path: Path) -> None:
    clock = iter(float(t) for t in range(10_000, 20_000, 30))
    sampler = GpuSampler(FakeGpuProbe(util=[0.5, 0.7]), tmp_path / SAMPLES_FILE, clock=lambda: next(clock))
    for _ in range(3):
        assert sampler.sample_once()
    path = tmp_path / "exp.jsonl"
    path.write_text("")
    found = detect(path, "verl")
    source = open_source(found, gpu_samples=True)
    source.mapper.clock = lambda: 10_100.0  # the records arrive 40 s after the newest sample
    monitor = RunMonitor(found.run_dir, source=source, source_label=found.describe())
    records = [verl_record(s) for s in range(1, 12)]
    for r in records:  # no step clock in these records: they are timed as they arrive
        del r["data"]["timing_s/step"]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    monitor.poll()
    snap = monitor.snapshot()
    assert [v for _, v in snap.series["utilization"]] == [pytest.approx(0.6)] * 11
    item = next(i for i in snap.checklists["during_training"] if i.id == "utilization_watched")
    assert item.status == "warn" and "NVML sampler" in item.evidence  # 60% < the 70% target


def test_gpu_sampler_reports_nvml_failure(tmp_path: Path) -> None:
    from fakes import NO_DRIVER

    sampler = GpuSampler(FakeGpuProbe(error=NO_DRIVER), tmp_path / SAMPLES_FILE)
    assert not sampler.sample_once()
    assert "no NVIDIA driver" in (sampler.error or "")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "preflight", "monitor", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_cli_states_the_kind_and_reports_verl_alerts(tmp_path: Path) -> None:
    path = write_verl(tmp_path / "exp.jsonl")
    done = run_cli(str(path), "--once", "--format", "json", "--fail-on-alert")
    assert done.returncode == 1, done.stderr
    assert "reading verl file logger" in done.stderr
    body = json.loads(done.stdout)
    assert {(a["rule"], a["step"]) for a in body["alerts"]} == EXPECTED_ALERTS
    assert body["source"].startswith("verl file logger")


def test_cli_refuses_an_unusable_log_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("[1, 2]\n")
    done = run_cli(str(path), "--once")
    assert done.returncode == 2
    assert "not a log the monitor knows" in done.stderr and "Traceback" not in done.stderr
    done = run_cli(str(path), "--source", "trl", "--once")
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_the_fast_verl_path_gives_what_the_plain_path_gives(tmp_path: Path) -> None:
    """msgspec's typed decoding of the mapped keys (the speed path) must not change a thing."""
    from preflight.monitor.render import to_dict

    path = tmp_path / "exp.jsonl"
    records = [verl_record(s, elapsed=s > 100) for s in range(1, STEPS + 1)]
    records[30]["data"]["actor/pg_loss"] = "oops"  # a bad value in a typed line
    records[31]["data"]["response_length/clip_ratio"] = 1  # an int where floats are usual
    path.write_text("".join(json.dumps(r) + "\n" for r in records))

    def snapshot(fast: bool) -> dict:
        found = detect(path)
        source = open_source(found, devices=4)
        source.mapper.clock = lambda: 1_000.0
        if not fast:
            source.tailer.typed, source._getter = None, None
        assert (source.tailer.typed is not None) == fast
        monitor = RunMonitor(found.run_dir, source=source, source_label=found.describe())
        monitor.poll()
        body = to_dict(monitor.snapshot(), include_series=True)
        body["malformed_samples"] = sorted(m["message"] for m in body["malformed_samples"])
        return body

    fast, plain = snapshot(True), snapshot(False)
    assert fast == plain
    assert {(a["rule"], a["step"]) for a in fast["alerts"]} == EXPECTED_ALERTS
    assert fast["malformed_lines"] == 1


def test_a_monitor_attached_to_a_run_hours_in_dates_its_records_now_and_finds_their_gpu_samples(tmp_path) -> None:
    """verl's records carry seconds since the run's start, no wall time: when the monitor attaches an
    hour in, the newest record counts as written now (not an hour ahead), so --sample-gpus'
    utilization reaches the steps that follow."""
    import json as _json

    from preflight.monitor.sources.gpu import GpuSamples
    from preflight.monitor.sources.mapping import RecordMapper

    now = [1_000_000.0]
    samples = tmp_path / "gpu_samples.jsonl"
    samples.write_text("".join(_json.dumps({"time": now[0] - 20 + k, "utilization": 0.9}) + "\n" for k in range(60)),
                       encoding="utf-8")
    mapper = RecordMapper("verl", gpu_samples=GpuSamples(samples), clock=lambda: now[0])
    first = mapper.events(100, {"actor/pg_loss": 0.5}, elapsed=3600.0)
    now[0] += 30
    later = mapper.events(101, {"actor/pg_loss": 0.4}, elapsed=3630.0)
    step = next(e for e in later if e["type"] == "step")
    assert abs(step["time"] - now[0]) < 1e-6 and abs(step["utilization"] - 0.9) < 1e-9, (first, later)
