"""The run directory's state at the gate: what a run dir holds (new, interrupted, finished, another
spec's run, checkpoints nobody recorded, unreadable), the verdict of storage.run_dir with and without
a choice, `preflight launch --resume/--fresh` acting on it, and the runner refusing a hand start."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import run_dir_helpers as helpers
from run_dir_helpers import T0, end, finished_run, interrupted_run, run_start, steps, tree

import preflight.service.launch as service_launch
import runner.__main__ as runner_main
import runner.launch
from preflight.cli import main as preflight
from preflight.rundir import CHECKPOINT_MANIFEST, aside_path
from preflight.runstate import move_aside, read_checkpoints, read_state, record_spec
from preflight.spec import Spec, canonical_sha256, load_spec

SPEC = """\
run: {name: rd, run_dir: runs/rd}
hardware: {gpu_required: false, min_host_memory_gb: 1, min_cpus: 1}
storage: {min_free_gb: 0.001, checkpoint_size_gb: 0.0001, checkpoint_dir: runs/rd/checkpoints}
stack: {packages: {wandb: null, ray: null, transformers: null, accelerate: null}}
monitoring: {sinks: [jsonl]}
training: {batch_size: 512, group_size: 16, max_steps: 20, eval_interval: 5}
checkpoints: {save_interval: 5}
"""
RUN = Path("runs/rd")
CKPT = RUN / "checkpoints"


def write_events(*events: dict[str, Any], run_dir: Path = RUN, tail: str = "") -> None:
    helpers.write_events(run_dir, *events, tail=tail)


def checkpoint(step: int, directory: Path = CKPT) -> Path:
    return helpers.checkpoint(directory, step)


def snapshot(spec: Spec) -> None:
    """RUN_DIR/spec.json as the runner records it at its start."""
    record_spec(spec)


def judged(spec_path: Path, *choice: str, capsys: Any) -> tuple[int, dict[str, Any]]:
    """`preflight check SPEC --only storage.run_dir [--resume|--fresh] --format json`: the exit code
    and the check's result."""
    code = preflight(["check", str(spec_path), "--only", "storage.run_dir", "--format", "json", *choice])
    report = json.loads(capsys.readouterr().out)
    [result] = report["results"]
    return code, result


# --- the states, through the check ---------------------------------------------------------------


def test_a_new_run_dir_passes(write_spec, capsys):
    spec_path = write_spec(SPEC)
    code, result = judged(spec_path, capsys=capsys)
    assert code == 0 and result["status"] == "pass"
    assert result["found"] == "runs/rd holds no run yet; a new run"
    assert result["evidence"]["state"] == "new"


def test_a_new_run_dir_with_resume_warns_that_nothing_is_resumed(write_spec, capsys):
    code, result = judged(write_spec(SPEC), "--resume", capsys=capsys)
    assert code == 0 and result["status"] == "warn"
    assert "starts at step 0" in result["found"] and "run.run_dir" in result["remediation"]


def test_an_interrupted_run_of_the_same_spec_resumes_by_default(write_spec, capsys):
    spec_path = write_spec(SPEC)
    interrupted_run(load_spec(spec_path))
    code, result = judged(spec_path, capsys=capsys)
    assert code == 0 and result["status"] == "pass"
    found = result["found"]
    assert "holds an interrupted run of this spec" in found
    assert "stopped at step 13 without a run_end" in found and "2023-11-14" in found
    assert "resumes by default" in found and "will resume from step 10 (10 steps left" in found
    assert result["evidence"]["state"] == "interrupted" and result["evidence"]["resume_from_step"] == 10
    code, result = judged(spec_path, "--resume", capsys=capsys)  # the same, chosen
    assert code == 0 and result["found"].startswith("--resume: runs/rd holds an interrupted run")
    assert result["found"].endswith("; will resume from step 10 (10 steps left to training.max_steps 20)")
    assert result["evidence"]["choice"] == "resume"


def test_a_run_that_ended_failed_is_interrupted(write_spec, capsys):
    spec_path = write_spec(SPEC)
    spec = load_spec(spec_path)
    write_events(run_start(spec), *steps(1, 12), end(12, "failed", "RuntimeError: worker lost"))
    checkpoint(10)
    code, result = judged(spec_path, capsys=capsys)
    assert code == 0 and "failed at step 12 (RuntimeError: worker lost)" in result["found"]
    assert "will resume from step 10" in result["found"]


def test_an_interrupted_run_without_a_checkpoint_warns_it_starts_again(write_spec, capsys):
    spec_path = write_spec(SPEC)
    interrupted_run(load_spec(spec_path), at=3, checkpoints=())
    code, result = judged(spec_path, capsys=capsys)
    assert code == 0 and result["status"] == "warn"
    assert "holds no checkpoint" in result["found"] and "starts again at step 0" in result["found"]


def test_an_interrupted_run_with_recovery_off_needs_fresh(write_spec, capsys):
    spec_path = write_spec(SPEC + "distributed: {checkpoint_recovery: false}\n")
    interrupted_run(load_spec(spec_path))
    code, result = judged(spec_path, capsys=capsys)
    assert code == 1 and result["status"] == "fail"
    assert "distributed.checkpoint_recovery is false" in result["found"]
    assert "preflight launch" in result["remediation"] and "--fresh" in result["remediation"]
    assert judged(spec_path, "--fresh", capsys=capsys)[0] == 0


def test_a_finished_run_fails_and_names_what_is_there_and_the_three_choices(write_spec, capsys):
    spec_path = write_spec(SPEC)
    finished_run(load_spec(spec_path))
    code, result = judged(spec_path, capsys=capsys)
    assert code == 1 and result["status"] == "fail"
    assert result["found"] == ("runs/rd holds a finished run of this spec: completed at step 20 of "
                               "training.max_steps 20, on 2023-11-14 22:13 UTC")
    fix = result["remediation"]
    assert f"`preflight launch {spec_path} --fresh` moves runs/rd aside to runs/rd.prev-<time>" in fix
    assert "nothing is deleted" in fix and "set run.run_dir to a new folder" in fix
    assert "--resume cannot help: nothing left to train: max_steps reached" in fix
    assert result["evidence"]["state"] == "finished" and result["evidence"]["run_end"] == "completed at step 20"


def test_resume_on_a_finished_run_is_refused_and_fresh_passes(write_spec, capsys):
    spec_path = write_spec(SPEC)
    finished_run(load_spec(spec_path))
    code, result = judged(spec_path, "--resume", capsys=capsys)
    assert code == 1
    assert ("nothing left to train: max_steps reached (the newest checkpoint is step 20, training.max_steps "
            "is 20); raise training.max_steps or use --fresh") in result["found"]
    code, result = judged(spec_path, "--fresh", capsys=capsys)
    assert code == 0 and "it will be moved aside to runs/rd.prev-<time> when the run starts" in result["found"]
    assert RUN.joinpath("events.jsonl").is_file()  # the check itself moves nothing


def test_a_run_early_stopping_ended_cannot_be_resumed_while_it_is_on(write_spec, capsys):
    spec_path = write_spec(SPEC)
    spec = load_spec(spec_path)
    write_events(run_start(spec), *steps(1, 12), end(12, "stopped", "early stopping: no improvement"))
    for step in (0, 10, 12):
        checkpoint(step)
    code, result = judged(spec_path, "--resume", capsys=capsys)
    assert code == 1 and "stopped at step 12 of training.max_steps 20 (early stopping" in result["found"]
    assert "would stop again at once" in result["found"]


def test_raising_max_steps_makes_another_spec_that_resume_continues(write_spec, capsys):
    spec_path = write_spec(SPEC)
    spec = load_spec(spec_path)
    finished_run(spec)
    snapshot(spec)
    spec_path.write_text(SPEC.replace("max_steps: 20", "max_steps: 40"))
    code, result = judged(spec_path, capsys=capsys)
    assert code == 1
    assert "finished run of another spec; changed since: training.max_steps: 20 -> 40" in result["found"]
    assert f"`preflight launch {spec_path} --resume` continues from step 20" in result["remediation"]
    code, result = judged(spec_path, "--resume", capsys=capsys)
    assert code == 0 and "will resume from step 20 (20 steps left to training.max_steps 40)" in result["found"]


def test_another_specs_run_without_a_snapshot_is_refused_by_its_hash(write_spec, capsys):
    spec_path = write_spec(SPEC)
    interrupted_run(load_spec(spec_path))
    spec_path.write_text(SPEC.replace("group_size: 16", "group_size: 8"))
    code, result = judged(spec_path, capsys=capsys)
    assert code == 1 and "interrupted run of another spec (spec_sha256 " in result["found"]
    assert "which fields differ was not recorded" in result["found"]
    assert judged(spec_path, "--resume", capsys=capsys)[0] == 0


def test_a_spec_whose_only_edit_is_its_waivers_is_the_same_spec(write_spec, capsys):
    spec_path = write_spec(SPEC)
    spec = load_spec(spec_path)
    interrupted_run(spec)
    snapshot(spec)
    spec_path.write_text(SPEC + "waivers: [{check: host.cpus, reason: 'the cluster nodes have 96 cores'}]\n")
    code, result = judged(spec_path, capsys=capsys)
    assert code == 0 and "of this spec; only its waivers changed since" in result["found"]
    assert "will resume from step 10" in result["found"]


def test_checkpoints_no_event_records_need_a_choice(write_spec, capsys):
    spec_path = write_spec(SPEC.replace("checkpoint_dir: runs/rd/checkpoints", "checkpoint_dir: ckpt/rd"))
    checkpoint(10, Path("ckpt/rd"))
    code, result = judged(spec_path, capsys=capsys)
    assert code == 1
    assert "ckpt/rd holds 1 checkpoint(s) up to step 10" in result["found"]
    assert "records no run that wrote them" in result["found"]
    assert "moves runs/rd and ckpt/rd aside" in result["remediation"]
    code, result = judged(spec_path, "--resume", capsys=capsys)
    assert code == 0 and "will resume from step 10" in result["found"]


def test_a_damaged_newest_checkpoint_is_skipped_for_the_one_before(write_spec, capsys):
    spec_path = write_spec(SPEC)
    interrupted_run(load_spec(spec_path), checkpoints=(0, 10, 12))
    (CKPT / "step_000012" / "__0_0.distcp").write_bytes(b"short")
    code, result = judged(spec_path, capsys=capsys)
    assert code == 0 and "will resume from step 10" in result["found"]
    assert "1 newer checkpoint(s) fail verification" in result["found"] and "step_000012" in result["found"]


def test_a_newest_checkpoint_the_runner_would_not_load_is_not_named_as_the_resume_point(write_spec, capsys):
    """A manifest whose files are hashed with an algorithm the runner does not know (written by
    another version) is skipped by the runner's resume, so the gate skips it too."""
    spec_path = write_spec(SPEC)
    interrupted_run(load_spec(spec_path), checkpoints=(0, 10, 12))
    path = CKPT / "step_000012" / CHECKPOINT_MANIFEST
    manifest = json.loads(path.read_text())
    manifest.pop("manifest_sha256")
    manifest["hash"] = "blake3"
    manifest["files"] = {name: {"bytes": e["bytes"], "blake3": "0" * 64} for name, e in manifest["files"].items()}
    manifest["manifest_sha256"] = canonical_sha256(manifest)
    path.write_text(json.dumps(manifest))
    code, result = judged(spec_path, capsys=capsys)
    assert code == 0 and "will resume from step 10" in result["found"]
    assert "step_000012" in result["found"] and "blake3" in result["found"]


@pytest.mark.parametrize(("damage", "says"), [
    ("garbage", "line(s) are not events"),
    ("no start", "event(s) before any run_start"),
    ("bytes", "but not one complete event"),
    ("a folder", "cannot open"),
    ("checkpoint dir is a file", "is a file, not a folder"),
])
def test_an_unreadable_run_dir_is_an_error_never_a_pass(write_spec, capsys, damage, says):
    spec_path = write_spec(SPEC)
    spec = load_spec(spec_path)
    RUN.mkdir(parents=True)
    events = RUN / "events.jsonl"
    if damage == "garbage":
        write_events(run_start(spec), *steps(1, 3))
        with open(events, "a") as fh:
            fh.write("not json\n{broken\n")
    elif damage == "no start":
        write_events(*steps(1, 3))
    elif damage == "bytes":
        events.write_bytes(b"\x00" * 64)
    elif damage == "a folder":
        events.mkdir()
    else:
        write_events(run_start(spec), *steps(1, 3))
        CKPT.write_text("oops")
    code, result = judged(spec_path, capsys=capsys)
    assert code == 1 and result["status"] == "error"
    assert result["found"].startswith("cannot tell what runs/rd holds") and says in result["found"]
    assert "--fresh" in result["remediation"] and "--resume cannot help" in result["remediation"]
    assert judged(spec_path, "--resume", capsys=capsys)[1]["status"] == "error"
    assert judged(spec_path, "--fresh", capsys=capsys)[0] == 0


def test_the_half_line_a_killed_runner_leaves_is_not_damage(write_spec, capsys):
    spec_path = write_spec(SPEC)
    spec = load_spec(spec_path)
    write_events(run_start(spec), *steps(1, 5), tail='{"type": "step", "ti')  # killed mid-write
    assert judged(spec_path, capsys=capsys)[0] == 0
    with open(RUN / "events.jsonl", "a") as fh:  # the next start ends that line, then writes its own
        fh.write("\n")
    write_events(run_start(spec), *steps(6, 7))
    checkpoint(5)
    code, result = judged(spec_path, capsys=capsys)
    assert code == 0 and "2 start(s) so far" in result["found"] and "will resume from step 5" in result["found"]


def test_a_failed_start_before_training_leaves_a_new_run_dir(write_spec, capsys):
    spec_path = write_spec(SPEC)
    write_events({"type": "error", "time": T0, "step": 0, "message": "boom"}, end(0, "failed", "boom"))
    code, result = judged(spec_path, capsys=capsys)
    assert code == 0 and "holds no run yet (events.jsonl records 1 start(s) that failed" in result["found"]


def test_fresh_refuses_to_move_a_run_dir_holding_the_spec(write_spec, capsys):
    spec_path = write_spec(SPEC.replace("runs/rd", "."), name="run.yaml")
    write_events(run_start(load_spec(spec_path)), *steps(1, 3), end(3), run_dir=Path("."))
    code, result = judged(spec_path, "--fresh", capsys=capsys)
    assert code == 1 and "working directory" in result["found"]


def test_the_checkpoint_layout_is_the_runners(tmp_path):
    """The gate reads checkpoints without torch: what runner.checkpoint writes, it reads, and the
    manifests these tests write are ones the runner accepts."""
    import runner.checkpoint as rc

    real = tmp_path / "ck" / rc.step_dir_name(7)
    real.mkdir(parents=True)
    (real / ".metadata").write_bytes(b"m")
    rc.write_manifest(real, 7, 0.5, "validation_accuracy")
    ours = checkpoint(9, tmp_path / "ck")
    assert rc.load_manifest(ours)["step"] == 9
    found, problem = read_checkpoints(tmp_path / "ck")
    assert problem == "" and found.committed == 2 and found.newest is not None and found.newest.step == 9
    (ours / CHECKPOINT_MANIFEST).unlink()
    found, _ = read_checkpoints(tmp_path / "ck")
    assert found.committed == 1 and found.newest is not None and found.newest.step == 7


def test_move_aside_renames_and_never_overwrites(write_spec):
    spec = load_spec(write_spec(SPEC.replace("checkpoint_dir: runs/rd/checkpoints", "checkpoint_dir: ckpt/rd")))
    finished_run(spec)
    checkpoint(3, Path("ckpt/rd"))
    before = {"run": tree(RUN), "ckpt": tree(Path("ckpt/rd"))}
    now = dt.datetime(2025, 1, 2, 10, 15, 0)
    taken = aside_path(RUN, now)
    taken.mkdir(parents=True)  # an earlier --fresh in the same second
    moved = move_aside(spec, now)
    assert [(a.name, b.name) for a, b in moved] == [("rd", "rd.prev-20250102-101500-2"),
                                                    ("rd", "rd.prev-20250102-101500")]
    assert tree(Path("runs/rd.prev-20250102-101500-2")) == before["run"]
    assert tree(Path("ckpt/rd.prev-20250102-101500")) == before["ckpt"]
    assert not RUN.exists() and not Path("ckpt/rd").exists() and read_state(spec).kind == "new"


# --- preflight launch ----------------------------------------------------------------------------


@pytest.fixture
def started(monkeypatch):
    """Stand in for the runner process: record the command `preflight launch` would run."""
    commands: list[list[str]] = []
    real = service_launch.runner_command

    def stand_in(spec: Spec, local: bool = False) -> list[str]:
        commands.append(real(spec, local))
        return [sys.executable, "-c", "pass"]

    monkeypatch.setattr(service_launch, "runner_command", stand_in)
    return commands


def launched(spec_path: Path, *flags: str, capsys: Any) -> tuple[int, str, str]:
    code = preflight(["launch", str(spec_path), *flags])
    out, err = capsys.readouterr()
    return code, out, err


def test_launch_on_a_new_or_interrupted_run_dir_starts_and_resumes_by_default(write_spec, capsys, started):
    spec_path = write_spec(SPEC)
    code, out, _ = launched(spec_path, capsys=capsys)
    assert code == 0 and "launched: pid" in out and started[-1][-1] == str(spec_path)
    RUN.joinpath("runner.log").unlink()
    interrupted_run(load_spec(spec_path))
    code, out, _ = launched(spec_path, capsys=capsys)
    assert code == 0 and "will resume from step 10" in out and "--resume" not in started[-1]


def test_launch_refuses_a_finished_run_and_moves_nothing(write_spec, capsys, started):
    spec_path = write_spec(SPEC)
    finished_run(load_spec(spec_path))
    before = tree(RUN)
    code, out, err = launched(spec_path, capsys=capsys)
    assert code == 1 and started == []
    assert "storage.run_dir" in out and "finished run of this spec" in out and "not launching" in err
    assert tree(RUN) == before
    code, out, err = launched(spec_path, "--resume", capsys=capsys)
    assert code == 1 and started == [] and "nothing left to train: max_steps reached" in out


def test_launch_fresh_moves_the_old_run_aside_losing_nothing_and_says_where(write_spec, capsys, started):
    spec_path = write_spec(SPEC.replace("checkpoint_dir: runs/rd/checkpoints", "checkpoint_dir: ckpt/rd"))
    finished_run(load_spec(spec_path))
    checkpoint(30, Path("ckpt/rd"))
    before = {"run": tree(RUN), "ckpt": tree(Path("ckpt/rd"))}
    code, out, _ = launched(spec_path, "--fresh", capsys=capsys)
    assert code == 0 and len(started) == 1 and "--fresh" not in started[0] and "--resume" not in started[0]
    [run_aside] = Path("runs").glob("rd.prev-*")
    [ckpt_aside] = Path("ckpt").glob("rd.prev-*")
    assert f"--fresh: moved {RUN.absolute()} aside to {run_aside.absolute()}" in out
    assert f"--fresh: moved {Path('ckpt/rd').absolute()} aside to {ckpt_aside.absolute()}" in out
    assert tree(run_aside) == before["run"] and tree(ckpt_aside) == before["ckpt"]
    assert sorted(p.name for p in RUN.iterdir()) == ["runner.log"]  # the new run's dir, empty but its log


def test_launch_resume_passes_the_choice_to_the_runner(write_spec, capsys, started):
    spec_path = write_spec(SPEC)
    spec = load_spec(spec_path)
    finished_run(spec)
    snapshot(spec)
    spec_path.write_text(SPEC.replace("max_steps: 20", "max_steps: 40"))
    code, out, _ = launched(spec_path, "--resume", capsys=capsys)
    assert code == 0 and started[-1][-1] == "--resume" and "will resume from step 20" in out


def test_launch_refuses_what_changed_since_the_check(write_spec, capsys, started):
    """The console's check may be minutes old: the launch judges the run dir again."""
    from preflight.errors import UsageError
    from preflight.service.check import load_checked_spec
    from preflight.service.launch import launch
    from preflight.service.report import run_report

    spec = load_checked_spec(str(write_spec(SPEC)))
    report = run_report(spec, "node", "fail", show_progress=False)
    assert report.passed
    finished_run(spec)  # a run finished meanwhile
    with pytest.raises(UsageError, match="not launching: runs/rd holds a finished run"):
        launch(spec, report)
    assert started == []


def test_launch_and_check_take_one_choice_only(write_spec, capsys):
    spec_path = write_spec(SPEC)
    assert preflight(["launch", str(spec_path), "--resume", "--fresh"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


# --- the runner started by hand -----------------------------------------------------------------


@pytest.fixture
def trained(monkeypatch):
    calls: list[Spec] = []

    def fake_run(spec, forced_reason=None, local=False):
        calls.append(spec)
        return {"status": "completed", "events": str(spec.run_dir / "events.jsonl")}

    monkeypatch.setattr(runner.launch, "run", fake_run)
    return calls


def test_the_runner_refuses_a_finished_run_without_a_choice(write_spec, capsys, trained):
    spec_path = write_spec(SPEC)
    assert preflight(["check", str(spec_path), "--format", "json"]) == 0  # attested on a new run dir
    capsys.readouterr()
    finished_run(load_spec(spec_path))  # then the run finished
    assert runner_main.main([str(spec_path)]) == 1
    err = capsys.readouterr().err
    assert "refusing to start: runs/rd holds a finished run of this spec" in err
    assert f"`python -m runner {spec_path} --fresh` moves runs/rd aside" in err and trained == []
    assert runner_main.main([str(spec_path), "--force", "--reason", "the gate is down today"]) == 1
    assert "refusing to start: runs/rd holds a finished run" in capsys.readouterr().err and trained == []
    assert runner_main.main([str(spec_path), "--resume"]) == 1
    assert "nothing left to train: max_steps reached" in capsys.readouterr().err and trained == []


def test_the_runner_started_fresh_moves_the_run_aside_and_records_its_spec(write_spec, capsys, trained):
    spec_path = write_spec(SPEC)
    assert preflight(["check", str(spec_path), "--format", "json"]) == 0
    capsys.readouterr()
    finished_run(load_spec(spec_path))
    before = tree(RUN)
    assert runner_main.main([str(spec_path), "--fresh"]) == 0
    err = capsys.readouterr().err
    [aside] = Path("runs").glob("rd.prev-*")
    assert f"--fresh: moved {RUN.absolute()} aside to {aside.absolute()}" in err
    assert tree(aside) == before and len(trained) == 1
    recorded = json.loads((RUN / "spec.json").read_text())
    assert recorded["spec_sha256"] == load_spec(spec_path).sha256 and recorded["data"]["training"]["max_steps"] == 20


def test_the_runner_resumes_an_interrupted_run_without_being_told(write_spec, capsys, trained):
    spec_path = write_spec(SPEC)
    assert preflight(["check", str(spec_path), "--format", "json"]) == 0
    interrupted_run(load_spec(spec_path))
    assert runner_main.main([str(spec_path)]) == 0 and len(trained) == 1
    assert "will resume from step 10" in capsys.readouterr().err


def test_the_runner_refuses_as_its_own_process_on_a_finished_run(write_spec, tmp_path):
    spec_path = write_spec(SPEC)
    finished_run(load_spec(spec_path))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([sys.executable, "-m", "runner", str(spec_path), "--force", "--reason",
                           "no gate on this box"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=env)
    assert proc.returncode == 1, proc.stderr
    assert "refusing to start: runs/rd holds a finished run" in proc.stderr and "Traceback" not in proc.stderr


# --- one real run: what the runner itself leaves is what the gate reads ---------------------------

REAL = """\
run: {name: real, stage: custom, domain: math, run_dir: runs/real}
hardware: {gpu_required: false, gpus_per_node: 0, nodes: 1, min_host_memory_gb: 1, min_cpus: 1}
storage: {checkpoint_dir: runs/real/checkpoints, min_free_gb: 0.001, checkpoint_size_gb: 0.0001}
stack: {packages: {wandb: null}}
model: {name_or_path: tiny, params_b: 0.001, dtype: fp32}
training: {batch_size: 4, group_size: 2, learning_rate: 1.0e-4, max_steps: 2,
           eval_interval: 2, max_prompt_tokens: 64, max_response_tokens: 4}
checkpoints: {save_interval: 2, save_best_only: false, keep_last: 3}
early_stopping: {enabled: false}
distributed: {cpu_workers: 1}
monitoring: {sinks: [jsonl]}
"""
FORCED = ["--force", "--reason", "a local test run, no gate", "--local"]


@pytest.mark.slow  # two short training runs of the tiny model on CPU
def test_a_real_finished_run_is_refused_and_raising_max_steps_resumes_it(write_spec, capsys):
    spec_path = write_spec(REAL)
    assert runner_main.main([str(spec_path), *FORCED]) == 0
    capsys.readouterr()
    run_dir = Path("runs/real")
    assert read_state(load_spec(spec_path)).kind == "finished"
    # the same start again would "resume" into an instant success: refused, and so is --resume
    assert runner_main.main([str(spec_path), *FORCED]) == 1
    assert "refusing to start: runs/real holds a finished run of this spec: completed at step 2" in (
        capsys.readouterr().err)
    assert runner_main.main([str(spec_path), *FORCED, "--resume"]) == 1
    assert "nothing left to train: max_steps reached" in capsys.readouterr().err
    # raise max_steps: another spec (spec.json names the change), which --resume continues
    spec_path.write_text(REAL.replace("max_steps: 2", "max_steps: 3"))
    code, result = judged(spec_path, "--resume", capsys=capsys)
    assert code == 0 and "changed since: training.max_steps: 2 -> 3" in result["found"]
    assert "will resume from step 2 (1 steps left" in result["found"]
    assert runner_main.main([str(spec_path), *FORCED, "--resume"]) == 0
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2, 3]
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "completed" and events[-1]["step"] == 3
