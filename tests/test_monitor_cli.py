"""`preflight monitor RUN_DIR`: exit codes, text and JSON output, sign-offs, following a run."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from preflight.cli import main
from preflight.rundir import EVENTS_FILE, events_path
from preflight.schemas import validation_errors


def step(n: int, **metrics: Any) -> dict[str, Any]:
    base = {"type": "step", "time": float(n), "step": n, "loss": 0.5, "pass_rate": 0.5,
            "gen_len_mean": 800.0, "truncation_rate": 0.01, "utilization": 0.9, "grad_norm": 1.0,
            "utilization_source": "gpu", "lr": 1e-6, "batch_size": 64, "device_hours": n / 10}
    base.update(metrics)
    return base


def write(run_dir: Path, events: list[dict[str, Any]], extra: str = "") -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(events_path(run_dir), "a") as f:
        f.writelines(json.dumps(e) + "\n" for e in events)
        f.write(extra)
    return run_dir


def healthy_run(tmp_path: Path, end: bool = True) -> Path:
    events: list[dict[str, Any]] = [{"type": "run_start", "time": 0.0, "run": "healthy", "spec_sha256": "0" * 64,
                                     "world_size": 1, "backend": "cpu", "device": "cpu", "notes": [],
                                     "config": {"training": {"learning_rate": 1e-6}}}]
    for n in range(1, 301):
        events.append(step(n))
        if n % 20 == 0:
            events.append({"type": "validation", "time": float(n), "step": n, "n": 100,
                           "pass_rate": 0.6 + 0.2 * n / 300, "device_hours": n / 10})
        if n % 100 == 0:
            events.append({"type": "checkpoint", "time": float(n), "step": n, "path": f"c/{n}", "bytes": 1,
                           "seconds": 1.0, "metric": None})
    if end:
        events.append({"type": "run_end", "time": 301.0, "step": 300, "status": "completed", "reason": None})
    return write(tmp_path / "run", events)


def test_a_missing_run_directory_is_exit_2_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", str(tmp_path / "nope"), "--once"]) == 2
    err = capsys.readouterr().err
    assert "nope: no such run directory" in err and "run.run_dir" in err and "Traceback" not in err
    (tmp_path / "file").write_text("x")
    assert main(["monitor", str(tmp_path / "file"), "--once"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_events_jsonl_that_is_a_folder_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events_path(tmp_path).mkdir()
    assert main(["monitor", str(tmp_path), "--once"]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_bad_arguments_are_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", str(tmp_path), "--once", "--target", "60"]) == 2
    assert "--target 60.0: a pass rate between 0 and 1" in capsys.readouterr().err
    assert main(["monitor", str(tmp_path), "--once", "--exclude-hours", "-1"]) == 2
    assert "--exclude-hours -1.0: device hours, 0 or more" in capsys.readouterr().err
    assert main(["monitor", str(tmp_path), "--once", "--spec", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml" in capsys.readouterr().err


def test_once_text_shows_status_alerts_checklists_and_the_fit(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    run = write(tmp_path / "run", [step(n) for n in range(1, 30)] + [step(30, truncation_rate=0.2)],
                extra="half a line\n")
    assert main(["monitor", str(run), "--once"]) == 0
    out = capsys.readouterr().out
    assert "running at step 30" in out
    assert ("[critical] truncation_high: truncation rate 20.0% > 10.0% at step 30 -> review stability"
            in out)
    assert "During training checklist:" in out and "Optimization checklist:" in out
    assert "PENDING Model architecture is reviewed" in out
    assert "Curve fit (ScaleRL): not enough points yet: no validation results" in out
    assert f"Malformed lines in {run}/{EVENTS_FILE}: 1, skipped" in out
    assert "line 31: not valid JSON: half a line" in out


def test_fail_on_alert_exits_1_only_while_a_rule_is_in_alert(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = write(tmp_path / "bad", [step(n, utilization=0.4) for n in range(1, 20)])
    assert main(["monitor", str(bad), "--once", "--fail-on-alert"]) == 1
    assert main(["monitor", str(bad), "--once"]) == 0  # without the flag alerts are only reported
    assert main(["monitor", str(healthy_run(tmp_path)), "--once", "--fail-on-alert"]) == 0
    capsys.readouterr()


def test_json_output_follows_the_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = healthy_run(tmp_path)
    assert main(["monitor", str(run), "--once", "--format", "json", "--series", "--exclude-hours", "2"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert validation_errors(body, "monitor") == []
    assert body["status"] == "completed" and body["last_step"] == 300 and body["run_name"] == "healthy"
    assert body["latest"]["val_pass_rate"] == {"step": 300, "value": pytest.approx(0.8)}
    assert len(body["series"]["loss"]) == 300
    assert body["fit"] is not None and 0 < body["fit"]["A"] <= 1
    assert body["latest_checkpoint"]["step"] == 300
    statuses = {i["id"]: i["status"] for i in body["checklists"]["during_training"]}
    assert statuses["checkpoint_on_schedule"] == "pass" and statuses["performance_improving"] == "pass"


def test_an_empty_run_directory_is_waiting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["monitor", str(tmp_path), "--once", "--format", "json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["status"] == "waiting" and body["events_seen"] == 0
    assert validation_errors(body, "monitor") == []


def test_sign_off_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = healthy_run(tmp_path)
    assert main(["monitor", str(run), "--sign-off", "architecture_reviewed", "--by", "ana",
                 "--note", "attention and MoE router reviewed"]) == 0
    assert "signed off architecture_reviewed as ana" in capsys.readouterr().out
    assert main(["monitor", str(run), "--once", "--format", "json"]) == 0
    body = json.loads(capsys.readouterr().out)
    [review] = [i for i in body["checklists"]["optimization"] if i["id"] == "architecture_reviewed"]
    assert review["status"] == "pass" and "ana" in review["evidence"]
    assert main(["monitor", str(run), "--sign-off", "loss_stable", "--by", "ana"]) == 2
    assert "not a sign-off item" in capsys.readouterr().err
    assert main(["monitor", str(run), "--sign-off", "ack:utilisation_low", "--by", "ana"]) == 2
    assert "no alert rule 'utilisation_low'; rules: pass_rate_low, loss_spike" in capsys.readouterr().err
    assert main(["monitor", str(run), "--sign-off", "ack:utilization_low", "--by", "ana"]) == 0


def test_following_prints_alerts_as_they_come_and_stops_at_run_end(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write(tmp_path / "run", [step(1)])

    def writer() -> None:
        for n in range(2, 40):
            write(run, [step(n, utilization=0.3 if n > 20 else 0.9)])
            time.sleep(0.005)
        write(run, [{"type": "run_end", "time": 41.0, "step": 39, "status": "stopped", "reason": "early stop"}])

    thread = threading.Thread(target=writer)
    thread.start()
    started = time.monotonic()
    code = main(["monitor", str(run), "--interval", "0.02", "--fail-on-alert"])
    thread.join()
    assert time.monotonic() - started < 30
    out = capsys.readouterr().out
    assert code == 1  # utilization is still low at the end
    assert "alert: [warn] utilization_low: utilization 30.0% < 70.0% at step 21" in out
    assert "checklist: " in out
    assert "stopped (early stop) at step 39" in out
    assert out.count("Alerts (") == 1  # the full report once, at the end


def test_following_in_json_prints_one_object_a_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = healthy_run(tmp_path)
    assert main(["monitor", str(run), "--format", "json", "--interval", "0.01"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2  # the state when it was first read, then the final report
    assert all(validation_errors(body, "monitor") == [] for body in lines)
    assert lines[-1]["status"] == "completed" and lines[-1]["last_step"] == 300


def test_a_spec_that_is_not_the_runs_is_noted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "cpu-smoke.yaml"
    run = healthy_run(tmp_path)  # its run_start names spec_sha256 0000...
    assert main(["monitor", str(run), "--once", "--spec", str(example)]) == 0
    out = capsys.readouterr().out
    assert "Note: the run started from another spec (sha256 000000000000...)" in out
    assert f"Judged against run spec {example}." in out


def test_the_text_report_of_a_finished_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = healthy_run(tmp_path)
    assert main(["monitor", str(run), "--once", "--exclude-hours", "2", "--target", "0.75"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"healthy ({run}): completed at step 300; 320 events, 30 device hours, 1 rank\n")
    assert "latest: pass rate 50.0%, validation pass rate 80.0%, loss 0.5," in out
    assert "Curve fit (ScaleRL): A = " in out and "; 75% after " in out
    assert "Latest checkpoint: step 300, c/300, 1 bytes" in out
    assert "PASS    Checkpoints are saved on schedule" in out
    assert "Judged against the run's own configuration (run_start event)." in out


def test_a_file_of_only_malformed_lines_is_not_reported_as_not_written(tmp_path: Path,
                                                                        capsys: Any) -> None:
    run = write(tmp_path / "run", [], extra="[1]\nnot json\n")
    assert main(["monitor", str(run), "--once"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "not written yet" not in first
    assert "2 malformed line(s)" in first
