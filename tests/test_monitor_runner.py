"""The monitor follows a real (tiny, CPU) training run while it writes its events."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from preflight.monitor.core import RunMonitor
from preflight.spec import load_spec

SPEC = """\
run: {{name: monitored, stage: custom, domain: math, run_dir: {run_dir}}}
hardware: {{gpu_required: false, gpus_per_node: 0, nodes: 1, min_host_memory_gb: 4, min_cpus: 2}}
storage: {{checkpoint_dir: {run_dir}/checkpoints, min_free_gb: 1, checkpoint_size_gb: 0.05}}
stack: {{packages: {{wandb: null}}}}
model: {{name_or_path: tiny, params_b: 0.001, dtype: fp32}}
training: {{batch_size: 8, group_size: 2, learning_rate: 1.0e-5, max_steps: 8, eval_interval: 2,
           max_prompt_tokens: 256, max_response_tokens: 8}}
checkpoints: {{save_interval: 4}}
early_stopping: {{enabled: false}}
distributed: {{cpu_workers: 1}}
monitoring: {{sinks: [jsonl]}}
checklist: {{severity: {{config.batch.range: "off", config.temperature.range: "off"}}}}
"""


@pytest.mark.slow
def test_the_monitor_follows_a_training_run_as_it_writes(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from runner.train import train

    spec_path = tmp_path / "run.yaml"
    spec_path.write_text(SPEC.format(run_dir=tmp_path / "run"), encoding="utf-8")
    spec = load_spec(spec_path)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            train(spec, spec.run_dir, val_limit=4)
        except BaseException as exc:  # reported by the assertion below
            failure.append(exc)

    thread = threading.Thread(target=run)
    monitor = RunMonitor(spec.run_dir, spec=spec)
    thread.start()
    seen_steps: set[int] = set()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        monitor.poll()
        snap = monitor.snapshot()
        if snap.last_step is not None:
            seen_steps.add(snap.last_step)
        if snap.status != "waiting" and snap.status != "running" and monitor.caught_up:
            break
        time.sleep(0.05)
    thread.join(timeout=60)
    assert not failure, failure
    snap = monitor.snapshot()
    assert snap.status == "completed" and snap.last_step == 8
    assert snap.malformed_lines == 0
    assert len(seen_steps) > 1  # it watched the run progress, not just its end
    assert [s for s, _ in snap.series["loss"]] == list(range(1, 9))
    assert [s for s, _ in snap.series["val_pass_rate"]][:1] == [0]
    assert snap.run_name == "monitored" and snap.world_size == 1
    assert snap.settings_source == f"run spec {spec_path}"
    items = {i.id: i for group in snap.checklists.values() for i in group}
    assert items["utilization_watched"].status in ("pass", "warn")  # CPU utilization is reported
    assert items["distributed_efficiency"].status == "pass"  # one rank
