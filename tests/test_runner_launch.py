"""The whole path on this machine: `preflight launch` checks, attests, and starts the runner in
its own process; the runner verifies the attestation and trains with 2 Ray workers under FSDP2
on CPU. Slow (Ray takes ~20-40 s to start a fit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.events import validate_event

SPEC = """\
run: {name: launch-smoke, run_dir: runs/launch-smoke}
hardware: {gpu_required: false, gpus_per_node: 0, min_host_memory_gb: 1, min_cpus: 1}
storage: {min_free_gb: 0.001, checkpoint_size_gb: 0.0001}
stack: {packages: {wandb: null}}
model: {name_or_path: tiny, params_b: 0.001, dtype: fp32}
training: {batch_size: 8, group_size: 2, learning_rate: 1.0e-5, max_steps: 2, eval_interval: 2,
           max_prompt_tokens: 64, max_response_tokens: 8}
checkpoints: {save_interval: 2}
early_stopping: {patience: 1}
distributed: {cpu_workers: 2}
monitoring: {sinks: [jsonl]}
checklist: {severity: {config.batch.range: "off", config.temperature.range: "off"}}
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A finished child of ours lingers as a zombie until reaped; reap it if it is ours.
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True


def events_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def launch_and_wait(folder: Path, wait_s: float) -> tuple[list[dict], str]:
    """`preflight launch` of SPEC from ``folder`` (it attests and starts the runner), then, once the
    run's run_end is written (or the runner exited, or ``wait_s`` passed): its events and the
    runner's log."""
    spec = folder / "spec.yaml"
    spec.write_text(SPEC)
    preflight = str(Path(sys.executable).parent / "preflight")
    proc = subprocess.run([preflight, "launch", str(spec)], capture_output=True, text=True, timeout=120,
                          cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "launched: pid" in proc.stdout
    assert Path(str(spec) + ".attestation.json").is_file()
    pid = int(proc.stdout.split("launched: pid ")[1].split()[0])
    run_dir = folder / "runs" / "launch-smoke"
    events_file = run_dir / "events.jsonl"
    deadline = time.time() + wait_s
    while time.time() < deadline and alive(pid):
        if events_file.is_file() and any(e["type"] == "run_end" for e in events_of(events_file)):
            break
        time.sleep(2)
    log = (run_dir / "runner.log").read_text(errors="replace")
    assert events_file.is_file(), log[-3000:]
    return events_of(events_file), log


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_launch_checks_attests_and_trains_on_two_ray_workers(tmp_path):
    events, log = launch_and_wait(tmp_path, 240)
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "completed", log[-3000:]
    for e in events:
        assert validate_event(e) == [], e
    start = events[0]
    assert start["type"] == "run_start" and start["world_size"] == 2 and start["backend"] == "gloo"
    assert not start.get("forced")
    assert any("fully_shard" in n for n in start["notes"])
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2]
