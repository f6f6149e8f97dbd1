"""Faults injected into real training runs on CPU (the tiny model): a crash and resume, a corrupt
newest checkpoint, a full disk, a planted NaN and loss spike, a plateau, low efficiency, and three
kill -9s of a Ray worker in one run. Each test trains, so each is marked slow (it still runs by
default and in CI); the fast unit tests of the same pieces are in test_runner_checkpoint.py and
test_runner_controllers.py. The faults are handed to the Trainer (a planted policy loss, a
checkpoint fault hook, a device meter), never patched into module globals."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from preflight.spec import load_spec
from runner.algo import policy_loss
from runner.checkpoint import read_manifest
from runner.events import validate_event
from runner.train import Trainer

SPEC = """\
run: {{name: recovery, stage: custom, domain: math, run_dir: {run_dir}}}
hardware: {{gpu_required: false, gpus_per_node: 0, nodes: 1, min_host_memory_gb: 1, min_cpus: 1}}
storage: {{checkpoint_dir: {run_dir}/checkpoints, min_free_gb: 0.001, checkpoint_size_gb: 0.0001}}
stack: {{packages: {{wandb: null}}}}
model: {{name_or_path: tiny, params_b: 0.001, dtype: fp32}}
training: {{batch_size: 8, group_size: 2, learning_rate: 1.0e-4, max_steps: {max_steps},
           eval_interval: 2, max_prompt_tokens: 64, max_response_tokens: 6}}
checkpoints: {{save_interval: 2, save_best_only: false, keep_last: 3}}
early_stopping: {early}
distributed: {{cpu_workers: 2, max_retries: 3}}
monitoring: {{sinks: [jsonl]}}
checklist: {{severity: {{config.batch.range: "off", config.temperature.range: "off"}}}}
{extra}"""


def _spec(tmp_path: Path, name: str, max_steps: int = 4, extra: str = "",
          early: str = "{enabled: false}"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC.format(run_dir=tmp_path / name, max_steps=max_steps, extra=extra,
                                early=early))
    return load_spec(path)


def _events(run_dir: Path) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    for event in events:
        assert validate_event(event) == [], event
    return events


def _of(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


def _alternating_reward(prompts: list[str], completions: list[str], rows: list[dict]) -> list[float]:
    """Mixed groups, so every step has a policy gradient."""
    return [float(i % 2) for i in range(len(completions))]


def train(spec, run_dir: Path, **kwargs: Any) -> dict[str, Any]:
    """runner.train.train with mixed rewards, so every step has a policy gradient (a test may
    hand in another reward, a planted loss, a fault hook or a meter)."""
    kwargs.setdefault("reward", _alternating_reward)
    return Trainer(spec, run_dir, **kwargs).fit()


def _plant(on_calls: dict[int, Any]):
    """policy_loss misbehaving on its Nth calls (1-based; one call per RL step): a callable gets
    the loss and returns the one to use, or raises."""
    calls = {"n": 0}

    def planted(*args, **kwargs):
        loss, stats = policy_loss(*args, **kwargs)
        calls["n"] += 1
        fault = on_calls.get(calls["n"])
        return (fault(loss) if fault else loss), stats

    return planted


def _crash(loss):
    raise RuntimeError("planted crash")


def _losses_by_step(events: list[dict]) -> dict[int, tuple[float, float, float]]:
    """Each step's (loss, gradient norm, entropy) as finally trained (a replayed step's last
    record wins). The on-policy loss alone is ~0 at most steps; the three together tell any two
    different updates apart."""
    return {e["step"]: (e["loss"], e["grad_norm"], e["entropy"]) for e in _of(events, "step")}


def _assert_no_gap(steps: list[dict], max_steps: int) -> None:
    """Steps go up by one; a step may only go back (a replay) with a higher attempt."""
    for before, after in zip(steps, steps[1:], strict=False):
        if after["step"] <= before["step"]:
            assert after["attempt"] > before["attempt"], (before, after)
        else:
            assert after["step"] == before["step"] + 1, (before, after)
    assert steps[0]["step"] == 1 and steps[-1]["step"] == max_steps


@pytest.mark.slow  # a few training runs of the tiny model: 5-30 s here
def test_a_resumed_run_repeats_the_uninterrupted_runs_losses_exactly(tmp_path):
    whole = _spec(tmp_path, "whole", max_steps=5)
    train(whole, whole.run_dir, val_limit=4)
    expected = _losses_by_step(_events(whole.run_dir))
    assert len(expected) == 5 and len({grad for _, grad, _ in expected.values()}) == 5

    broken = _spec(tmp_path, "broken", max_steps=5)
    # dies in step 4: step 3 is logged, the last checkpoint is 2
    with pytest.raises(RuntimeError, match="planted crash"):
        train(broken, broken.run_dir, val_limit=4, loss_fn=_plant({4: _crash}))
    # the crashed attempt's event stream was closed on the way out: every event it emitted is on disk
    assert [e["step"] for e in _of(_events(broken.run_dir), "step")] == [1, 2, 3]

    summary = train(broken, broken.run_dir, val_limit=4)

    events = _events(broken.run_dir)
    recovery = _of(events, "recovery")
    assert len(recovery) == 1 and recovery[0]["attempt"] == 1
    assert recovery[0]["from_checkpoint"].endswith("step_000002")
    assert "without a run_end" in recovery[0]["reason"]
    steps = _of(events, "step")
    assert [(e["step"], e["attempt"]) for e in steps] == [(1, 0), (2, 0), (3, 0), (3, 1), (4, 1),
                                                          (5, 1)]
    _assert_no_gap(steps, 5)
    assert _losses_by_step(events) == expected  # bit for bit, replayed step 3 included
    assert steps[2]["grad_norm"] == steps[3]["grad_norm"]
    assert summary["status"] == "completed" and summary["resumed_from"].endswith("step_000002")
    assert summary["val_pass_rate_start"] is not None  # carried over from the first attempt


@pytest.mark.slow  # a few training runs of the tiny model: 5-30 s here
def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    spec = _spec(tmp_path, "corrupt", max_steps=4)
    train(spec, spec.run_dir, val_limit=4)
    first = _losses_by_step(_events(spec.run_dir))
    ckpts = spec.checkpoint_dir
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_000000", "step_000002", "step_000004"]
    shard = next((ckpts / "step_000004").glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:-1000])  # truncated

    summary = train(spec, spec.run_dir, val_limit=4)

    events = _events(spec.run_dir)
    recovery = _of(events, "recovery")[-1]
    assert recovery["from_checkpoint"].endswith("step_000002")
    assert [Path(r["path"]).name for r in recovery["rejected"]] == ["step_000004"]
    assert "truncated" in recovery["rejected"][0]["problem"]
    assert "failed verification" in recovery["reason"]
    replayed = [e for e in _of(events, "step") if e["attempt"] == 1]
    assert [e["step"] for e in replayed] == [3, 4]
    assert _losses_by_step(replayed) == {3: first[3], 4: first[4]}
    assert summary["status"] == "completed"
    assert read_manifest(ckpts / "step_000004")["step"] == 4  # rewritten, valid again
    assert (ckpts / "step_000004.corrupt").is_dir()


@pytest.mark.slow  # a few training runs of the tiny model: 5-30 s here
@pytest.mark.parametrize("background", [False, True], ids=["blocking", "async"])
def test_a_disk_that_fills_during_a_save_stops_cleanly_and_keeps_the_previous_checkpoint(tmp_path,
                                                                                         background):
    spec = _spec(tmp_path, "full", max_steps=8)
    spec.data["checkpoints"]["async"] = background

    def no_space_at_step_4(stage: str, folder: Path) -> None:
        if folder.name.endswith("step_000004"):
            (folder / "rank0.pt").write_bytes(b"\0" * 10)  # half written
            raise OSError(errno.ENOSPC, "No space left on device")

    summary = train(spec, spec.run_dir, val_limit=4, fault_hook=no_space_at_step_4)

    events = _events(spec.run_dir)
    # a blocking save fails the step it belongs to; a background one is noticed at the first step
    # boundary after it failed, and at the latest by the next save (step 6), which waits for it
    last = summary["steps"]
    assert summary["status"] == "failed" and (4 <= last <= 6 if background else last == 4)
    error = _of(events, "error")[-1]
    assert error["step"] == 4 and error["exception"] == "OSError"
    assert "No space left" in error["message"] and "Earlier checkpoints are intact" in error["message"]
    assert "storage.checkpoint_dir" in error["message"]
    end = events[-1]
    assert end["type"] == "run_end" and end["status"] == "failed" and end["step"] == last
    assert "checkpoint at step 4 could not be written" in end["reason"]
    assert sorted(p.name for p in spec.checkpoint_dir.iterdir()) == ["step_000000", "step_000002"]
    assert read_manifest(spec.checkpoint_dir / "step_000002")["step"] == 2
    assert [e["step"] for e in _of(events, "checkpoint")] == [0, 2]

    summary = train(spec, spec.run_dir, val_limit=4)  # space freed: the next start resumes
    assert summary["status"] == "completed" and summary["resumed_from"].endswith("step_000002")


# A training run in a process of its own whose checkpoint at step 4 stalls after its shards are
# written (a slow disk): the save is in flight, the loop goes on, and the test kills the process.
_STALLED_SAVE = """
import sys, time
from pathlib import Path
from preflight.spec import load_spec
from runner.train import Trainer

spec, marker = load_spec(sys.argv[1]), Path(sys.argv[2])

def slow_disk(stage, folder):
    if folder.name.endswith("step_000004"):
        marker.write_text(stage)
        time.sleep(600)

def reward(prompts, completions, rows):
    return [float(i % 2) for i in range(len(completions))]

Trainer(spec, spec.run_dir, val_limit=4, reward=reward, fault_hook=slow_disk).fit()
"""


def _logged_steps(run_dir: Path) -> list[int]:
    """Step numbers in events.jsonl so far (a line being written is skipped)."""
    path, steps = run_dir / "events.jsonl", []
    for line in (path.read_text().splitlines() if path.is_file() else []):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("type") == "step":
            steps.append(event["step"])
    return steps


@pytest.mark.slow  # two training runs and one killed process: 20-60 s here
@pytest.mark.timeout(400)
def test_a_kill_9_during_a_background_save_leaves_the_previous_checkpoint_and_resumes_exactly(tmp_path):
    whole = _spec(tmp_path, "whole", max_steps=6)
    train(whole, whole.run_dir, val_limit=4)
    expected = _losses_by_step(_events(whole.run_dir))

    spec = _spec(tmp_path, "killed", max_steps=6)
    marker = tmp_path / "save-4-in-flight"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, "-c", _STALLED_SAVE, str(tmp_path / "killed.yaml"), str(marker)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        # the save of step 4 is written but not committed, and the loop has trained step 5 meanwhile
        while not (marker.is_file() and 5 in _logged_steps(spec.run_dir)):
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else proc.returncode
            assert time.monotonic() < deadline, "the run never got to step 5 with the save in flight"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    ckpts = spec.checkpoint_dir
    assert sorted(p.name for p in ckpts.iterdir()) == [".tmp-step_000004", "step_000000", "step_000002"]
    assert not (ckpts / ".tmp-step_000004" / "manifest.json").exists()
    assert read_manifest(ckpts / "step_000002")["step"] == 2  # every file verifies
    killed = _events(spec.run_dir)
    saves = _of(killed, "checkpoint")
    assert [e["step"] for e in saves] == [0, 2]
    assert all(0 <= e["blocked_seconds"] <= e["seconds"] for e in saves)

    summary = train(spec, spec.run_dir, val_limit=4)

    events = _events(spec.run_dir)
    recovery = _of(events, "recovery")
    assert len(recovery) == 1 and recovery[0]["from_checkpoint"].endswith("step_000002")
    assert "without a run_end" in recovery[0]["reason"]
    assert not (ckpts / ".tmp-step_000004").exists()  # the half-done save is cleaned at the start
    _assert_no_gap(_of(events, "step"), 6)
    assert _losses_by_step(events) == expected  # bit for bit, the steps replayed from 3 included
    assert summary["status"] == "completed"
    assert read_manifest(ckpts / "step_000004")["step"] == 4  # written again, whole this time


@pytest.mark.slow  # two short training runs: the same state saved in the background and blocking
def test_a_background_save_writes_the_state_of_its_step_while_training_goes_on(tmp_path):
    blocking = _spec(tmp_path, "blocking", max_steps=4)
    blocking.data["checkpoints"]["async"] = False
    train(blocking, blocking.run_dir, val_limit=4)
    background = _spec(tmp_path, "background", max_steps=4)
    train(background, background.run_dir, val_limit=4)

    for step in (0, 2, 4):
        a = read_manifest(blocking.checkpoint_dir / f"step_{step:06d}")["files"]
        b = read_manifest(background.checkpoint_dir / f"step_{step:06d}")["files"]
        # the model, optimizer and random streams saved are the step's, not a later one's
        same = ("__0_0.distcp", "rank0.pt")
        assert {n: a[n]["xxh3_128"] for n in same} == {n: b[n]["xxh3_128"] for n in same}, step
    sync_events = _of(_events(blocking.run_dir), "checkpoint")
    assert all(e["blocked_seconds"] == e["seconds"] for e in sync_events)
    async_events = _of(_events(background.run_dir), "checkpoint")
    assert [e["step"] for e in async_events] == [0, 2, 4]
    assert all(e["blocked_seconds"] <= e["seconds"] for e in async_events)


@pytest.mark.slow  # two short training runs
def test_the_optimizer_step_after_a_background_save_waits_for_its_host_copy(tmp_path, monkeypatch):
    """The copy to host memory runs behind the next rollout. Here the copy of step 2's save starts
    only once the training thread waits for it (a handshake, not a race), so the next optimizer
    step must wait (else it would change the weights being copied): the checkpoint holds step 2's
    state, the same as a blocking save's, and the wait is counted as blocked."""
    from runner.checkpoint import HostStaging

    blocking = _spec(tmp_path, "blocking", max_steps=3)
    blocking.data["checkpoints"]["async"] = False
    train(blocking, blocking.run_dir, val_limit=4)

    real_init, real_copy, real_wait = HostStaging.__init__, HostStaging.copy, HostStaging.wait

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.waited_for = threading.Event()  # this save's copy is being waited for

    def copy_once_waited_for(self, staged):
        if staged.step == 2:
            self.waited_for.wait(timeout=20)  # without the optimizer's pre-hook nobody waits: a torn copy
            time.sleep(0.2)
        return real_copy(self, staged)

    def wait(self):
        self.waited_for.set()
        return real_wait(self)

    monkeypatch.setattr(HostStaging, "__init__", init)
    monkeypatch.setattr(HostStaging, "copy", copy_once_waited_for)
    monkeypatch.setattr(HostStaging, "wait", wait)
    background = _spec(tmp_path, "background", max_steps=3)
    train(background, background.run_dir, val_limit=4)
    for step in (0, 2, 3):
        a = read_manifest(blocking.checkpoint_dir / f"step_{step:06d}")["files"]
        b = read_manifest(background.checkpoint_dir / f"step_{step:06d}")["files"]
        shards = sorted(n for n in a if n.endswith(".distcp"))
        assert len(shards) == 2 and shards == sorted(n for n in b if n.endswith(".distcp"))
        assert {n: a[n]["xxh3_128"] for n in shards} == {n: b[n]["xxh3_128"] for n in shards}, step
    saves = {e["step"]: e for e in _of(_events(background.run_dir), "checkpoint")}
    assert 0.2 <= saves[2]["blocked_seconds"] <= saves[2]["seconds"]


@pytest.mark.slow  # a few training runs of the tiny model: 5-30 s here
def test_repeated_nan_skips_then_rolls_back_with_a_lower_learning_rate(tmp_path):
    spec = _spec(tmp_path, "nan", max_steps=5, extra="stability: {nonfinite_limit: 2, lr_factor: 0.5}\n")
    nan = float("nan")
    planted = _plant({3: lambda loss: loss * nan, 4: lambda loss: loss * nan})

    summary = train(spec, spec.run_dir, val_limit=4, loss_fn=planted)

    events = _events(spec.run_dir)
    actions = _of(events, "action")
    assert [(a["kind"], a["step"]) for a in actions] == [("skip_step", 3), ("skip_step", 4),
                                                         ("rollback", 2)]
    assert "non_finite" in actions[2]["cause"] and "x0.5" in actions[2]["cause"]
    recovery = _of(events, "recovery")
    assert len(recovery) == 1 and recovery[0]["attempt"] == 1
    assert recovery[0]["from_checkpoint"].endswith("step_000002")
    assert recovery[0]["lr"] == pytest.approx(0.5e-4)
    steps = _of(events, "step")
    assert [(e["step"], e["attempt"]) for e in steps] == [(1, 0), (2, 0), (3, 0), (4, 0), (3, 1),
                                                          (4, 1), (5, 1)]
    _assert_no_gap(steps, 5)
    assert [e["lr"] for e in steps] == pytest.approx([1e-4] * 4 + [0.5e-4] * 3)
    assert all(e["loss"] is not None for e in steps if e["attempt"] == 1)
    assert summary["status"] == "completed"


@pytest.mark.slow  # a few training runs of the tiny model: 5-30 s here
def test_a_loss_spike_alerts_and_with_rollback_on_rolls_back(tmp_path):
    spec = _spec(tmp_path, "spike", max_steps=6, extra=(
        "stability: {spike_window: 4, spike_threshold: 50, spike_action: rollback}\n"))
    planted = _plant({5: lambda loss: loss + 1000.0})  # judged from step 5: 4 losses before

    summary = train(spec, spec.run_dir, val_limit=4, loss_fn=planted)

    events = _events(spec.run_dir)
    alerts = _of(events, "alert")
    assert [(a["rule"], a["step"], a["severity"]) for a in alerts] == [("loss_spike", 5, "critical")]
    assert "robust z-score" in alerts[0]["message"] and "rolling back" in alerts[0]["action"]
    assert [(a["kind"], a["step"]) for a in _of(events, "action")] == [("skip_step", 5),
                                                                       ("rollback", 4)]
    assert _of(events, "recovery")[0]["from_checkpoint"].endswith("step_000004")
    steps = _of(events, "step")
    _assert_no_gap(steps, 6)
    assert [e["step"] for e in steps if e["attempt"] == 1] == [5, 6]
    assert summary["status"] == "completed"


@pytest.mark.slow  # a few training runs of the tiny model: 5-30 s here
def _no_reward(prompts: list[str], completions: list[str], rows: list[dict]) -> list[float]:
    return [0.0] * len(completions)


@pytest.mark.slow
def test_early_stopping_stops_a_plateau_and_names_the_best_step(tmp_path):
    spec = _spec(tmp_path, "plateau", max_steps=8,
                 early="{enabled: true, patience: 2, min_delta: 0.001}")
    spec.data["training"]["eval_interval"] = 1

    summary = train(spec, spec.run_dir, val_limit=4, reward=_no_reward)

    events = _events(spec.run_dir)
    assert [e["pass_rate"] for e in _of(events, "validation")] == [0.0] * 4  # steps 0-3
    stop = _of(events, "action")[-1]
    assert stop["kind"] == "early_stop" and stop["step"] == 3 and stop["best_step"] == 1
    assert "best 0 at step 1" in stop["cause"]
    end = events[-1]
    assert end["status"] == "stopped" and end["step"] == 3 and "step 1" in end["reason"]
    assert summary["status"] == "stopped" and summary["steps"] == 3
    assert (spec.checkpoint_dir / "step_000003").is_dir()  # the stop is checkpointed

    again = train(spec, spec.run_dir, val_limit=4, reward=_no_reward)  # a restart does not undo the stop
    assert again["status"] == "stopped" and again["steps"] == 3


@pytest.mark.slow  # a few training runs of the tiny model: 5-30 s here
class _IdleMeter:
    """A device that is busy 5 % of the time, whatever the batch."""

    source = "cpu"

    def utilization(self) -> float:
        return 0.05

    def memory_gib(self) -> float:
        return 1.0

    def energy_j(self) -> None:
        return None


@pytest.mark.slow
def test_the_batch_grows_under_low_efficiency_never_past_the_maximum(tmp_path):
    spec = _spec(tmp_path, "batch", max_steps=5, extra=(
        "dynamic_batch: {enabled: true, efficiency: utilization, target_efficiency: 0.8,\n"
        "                every_steps: 1, max_batch_size: 15, lr_scaling: linear}\n"))

    train(spec, spec.run_dir, val_limit=4, meter=_IdleMeter())

    events = _events(spec.run_dir)
    changes = _of(events, "batch_size")
    assert [(c["step"], c["old"], c["new"]) for c in changes] == [(1, 8, 10), (2, 10, 12), (3, 12, 14)]
    assert all(c["new"] % 2 == 0 and c["new"] <= 15 and c["unit"] == "completions" for c in changes)
    assert all(c["efficiency"] == pytest.approx(0.05) for c in changes)
    steps = _of(events, "step")
    assert [e["batch_size"] for e in steps] == [4, 5, 6, 7, 7]  # prompts = completions / group
    assert [e["lr"] for e in steps] == pytest.approx([1e-4 * b / 8 for b in (8, 10, 12, 14, 14)])


# --- Ray: kill -9 a worker three times in one run ----------------------------------------------------


def _kill_worker_at(run_dir: Path, targets: list[int], done: threading.Event,
                    killed: list[tuple[int, int, int]]) -> None:
    """Watch events.jsonl; once attempt k logs step targets[k], kill -9 the rank-1 worker."""
    events_file, pid_file = run_dir / "events.jsonl", run_dir / "workers" / "rank1.pid"
    while not done.is_set() and len(killed) < len(targets):
        time.sleep(0.05)
        if not events_file.is_file():
            continue
        k = len(killed)
        for line in events_file.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("type") == "step" and event.get("attempt") == k \
                    and event["step"] >= targets[k]:
                pid = int(pid_file.read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append((k, event["step"], pid))
                break


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_three_kill_9s_of_a_ray_worker_each_resume_from_the_latest_checkpoint(tmp_path):
    from runner.launch import run

    max_steps = 10
    spec = _spec(tmp_path, "ray", max_steps=max_steps)
    targets = sorted(random.Random(5).sample(range(2, max_steps), 3))
    done, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_worker_at, args=(spec.run_dir, targets, done, killed),
                              daemon=True)
    killer.start()
    try:
        summary = run(spec)
    finally:
        done.set()
        killer.join(5)

    assert len(killed) == 3, killed
    events = _events(spec.run_dir)
    assert summary["status"] == "completed" and summary["steps"] == max_steps
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "completed"
    steps = _of(events, "step")
    _assert_no_gap(steps, max_steps)
    recoveries = _of(events, "recovery")
    assert [r["attempt"] for r in recoveries] == [1, 2, 3]
    # each recovery resumed from the newest checkpoint committed before it
    for recovery in recoveries:
        before = events[:events.index(recovery)]
        newest = max(e["step"] for e in _of(before, "checkpoint"))
        assert recovery["from_checkpoint"].endswith(f"step_{newest:06d}"), (recovery, newest)
        assert recovery["step"] == newest
    assert sorted({e["attempt"] for e in steps}) == [0, 1, 2, 3]


@pytest.mark.slow  # two short training starts
def test_a_checkpoint_of_another_model_is_a_clear_error_not_a_traceback(tmp_path):
    from preflight.errors import PreflightError
    from runner.model import build_tiny_model, build_tokenizer

    spec = _spec(tmp_path, "other", max_steps=1)
    train(spec, spec.run_dir, val_limit=4)
    tok = build_tokenizer()
    narrower = build_tiny_model(tok, hidden=32)
    with pytest.raises(PreflightError, match="does not load into this run") as err:
        train(spec, spec.run_dir, val_limit=4, policy=(narrower, tok))
    assert "storage.checkpoint_dir" in str(err.value) and "step_000001" in str(err.value)


@pytest.mark.slow  # one short training run
def test_a_restart_before_any_checkpoint_is_a_recovery_from_step_0(tmp_path):
    spec = _spec(tmp_path, "early-crash", max_steps=1)
    spec.run_dir.mkdir(parents=True)
    # an attempt that died while starting: its run_start, then half a line
    (spec.run_dir / "events.jsonl").write_text(
        json.dumps({"type": "run_start", "time": 1.0}) + "\n" + '{"type": "st')

    summary = train(spec, spec.run_dir, val_limit=4)

    events = [json.loads(line) for line in (spec.run_dir / "events.jsonl").read_text().splitlines()
              if line.startswith('{"time"')]
    recovery = _of(events, "recovery")
    assert len(recovery) == 1 and recovery[0]["from_checkpoint"] is None
    assert recovery[0]["attempt"] == 1 and "restarted from step 0" in recovery[0]["reason"]
    assert [(e["step"], e["attempt"]) for e in _of(events, "step")] == [(1, 1)]
    assert summary["status"] == "completed"
