"""The runner refuses to start without a fresh, matching, passing attestation."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

import runner.__main__ as runner_main
import runner.launch
from preflight.cli import main as preflight

SPEC = """\
run: {name: gated, run_dir: runs/gated}
hardware: {gpu_required: false, min_host_memory_gb: 1, min_cpus: 1}
storage: {min_free_gb: 0.001, checkpoint_size_gb: 0.0001}
stack: {packages: {wandb: null, ray: null, transformers: null, accelerate: null}}
monitoring: {sinks: [jsonl]}
training: {batch_size: 512, group_size: 16, max_steps: 2000}
"""


@pytest.fixture
def started(monkeypatch):
    """Stand in for the training run: record what the runner would start with."""
    calls = []

    def fake_run(spec, forced_reason=None, local=False):
        calls.append({"spec": spec, "forced_reason": forced_reason})
        return {"status": "completed", "events": str(spec.run_dir / "events.jsonl")}

    monkeypatch.setattr(runner.launch, "run", fake_run)
    return calls


def test_no_attestation_refuses_with_exit_1_and_says_what_to_run(write_spec, capsys, started):
    spec = write_spec(SPEC)
    assert runner_main.main([str(spec)]) == 1
    err = capsys.readouterr().err
    assert "refusing to start" in err and "no attestation" in err and "preflight check" in err
    assert started == []


def test_passing_attestation_starts(write_spec, capsys, started):
    spec = write_spec(SPEC)
    assert preflight(["check", str(spec), "--format", "json"]) == 0
    assert runner_main.main([str(spec)]) == 0
    assert len(started) == 1 and started[0]["forced_reason"] is None


def test_changed_spec_refuses(write_spec, capsys, started):
    spec = write_spec(SPEC)
    assert preflight(["check", str(spec), "--format", "json"]) == 0
    spec.write_text(SPEC.replace("max_steps: 2000", "max_steps: 2500"))
    assert runner_main.main([str(spec)]) == 1
    assert "spec changed" in capsys.readouterr().err and started == []


def attest_then_edit(spec: Path, edit) -> None:
    """Pass the check, then change the attestation it wrote (as time or a failure would)."""
    assert preflight(["check", str(spec), "--format", "json"]) == 0
    att = Path(str(spec) + ".attestation.json")
    body = json.loads(att.read_text())
    edit(body)
    att.write_text(json.dumps(body))


def test_stale_attestation_refuses(write_spec, capsys, started):
    spec = write_spec(SPEC)
    attest_then_edit(spec, lambda body: body.update(
        created_at=(dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=30)).isoformat()))
    assert runner_main.main([str(spec)]) == 1
    assert "stale after 24 h" in capsys.readouterr().err and started == []


def test_failed_attestation_refuses(write_spec, capsys, started):
    spec = write_spec(SPEC)
    attest_then_edit(spec, lambda body: body["report"].update(status="fail"))
    assert runner_main.main([str(spec)]) == 1
    assert "did not pass" in capsys.readouterr().err and started == []


def test_force_needs_a_reason_and_records_it(write_spec, capsys, started):
    spec = write_spec(SPEC)
    assert runner_main.main([str(spec), "--force"]) == 2
    assert "--reason" in capsys.readouterr().err
    assert runner_main.main([str(spec), "--force", "--reason", "hotfix rerun approved by alice"]) == 0
    assert started[0]["forced_reason"] == "hotfix rerun approved by alice"
    assert "starting past the gate" in capsys.readouterr().err


def test_bad_spec_is_exit_2(tmp_path, capsys, started):
    assert runner_main.main([str(tmp_path / "missing.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_launch_refuses_when_the_gate_fails(write_spec, capsys):
    spec = write_spec(SPEC.replace("min_cpus: 1", "min_cpus: 4096"))
    assert preflight(["launch", str(spec)]) == 1
    out, err = capsys.readouterr()
    assert "host.cpus" in out and "not launching" in err
    assert not Path("runs/gated/runner.log").exists()


def test_the_runner_refuses_as_its_own_process(write_spec, tmp_path):
    spec = write_spec(SPEC)
    proc = subprocess.run([sys.executable, "-m", "runner", str(spec)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 1
    assert "refusing to start" in proc.stderr and "Traceback" not in proc.stderr


def test_a_run_that_dies_ends_its_event_stream_as_failed(write_spec, monkeypatch, capsys):
    import runner.train
    from runner.events import validate_event

    def boom(*args, **kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(runner.train, "train", boom)
    spec = write_spec(SPEC)
    with pytest.raises(RuntimeError, match="worker lost"):
        runner_main.main([str(spec), "--force", "--reason", "testing the failure path", "--local"])
    events = [json.loads(x) for x in Path("runs/gated/events.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events] == ["error", "run_end"]
    assert events[-1]["status"] == "failed" and "worker lost" in events[-1]["reason"]
    assert all(validate_event(e) == [] for e in events)


def test_a_missing_model_directory_is_a_message_and_exit_2_not_a_traceback(write_spec, capsys):
    # no preflight check looks for the model directory: the runner's driver does, before any
    # worker starts (in a Ray worker the error would come back wrapped, as a traceback)
    spec = write_spec(SPEC + "model: {name_or_path: ./no-such-model, params_b: 0.001, dtype: fp32}\n")
    assert runner_main.main([str(spec), "--force", "--reason", "testing a missing model"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model' does not exist" in err and "hf download" in err and "Traceback" not in err
    assert not Path("runs/gated/events.jsonl").exists()  # nothing was started


def test_a_reward_plug_in_that_cannot_be_imported_is_a_message_and_exit_2(write_spec, capsys):
    # only the active check level loads the reward before a run
    spec = write_spec(SPEC.replace("run: {name: gated,", "run: {name: gated, reward: 'no_such_module:f',")
                      + "model: {name_or_path: tiny, params_b: 0.001, dtype: fp32}\n")
    assert runner_main.main([str(spec), "--force", "--reason", "testing a broken plug-in"]) == 2
    err = capsys.readouterr().err
    assert "run.reward: cannot import reward plug-in module 'no_such_module'" in err
    assert not Path("runs/gated/events.jsonl").exists()  # found before Ray or a worker started


@pytest.mark.slow
def test_an_active_launch_gates_on_the_basic_algorithm_test(write_spec, capsys):
    # a reward plug-in that cannot be imported: the smoke test says so and nothing is started
    spec = write_spec(SPEC.replace("run: {name: gated,", "run: {name: gated, reward: 'no_such_module:f',")
                      + "active: {storage_file_mb: 8, collective_max_mib: 1}\n"
                      + "checklist: {severity: {config.batch.range: 'off'}}\n")
    assert preflight(["launch", str(spec), "--level", "active"]) == 1
    out, err = capsys.readouterr()
    assert "algo.smoke" in out and "cannot load the reward" in out and "no_such_module" in out
    assert "not launching" in err
    assert not Path("runs/gated/runner.log").exists()
