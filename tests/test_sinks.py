"""Every declared metric sink is usable or nothing starts: the gate reads each sink's package from
metadata (never importing it) and a wandb sink's credentials; the runner, started by hand past
the gate, refuses before any worker starts instead of dropping the sink."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fakes import FakePackageProbe, gpu_probes, run_checks_on

from preflight.result import Status
from runner.__main__ import main as runner_main
from runner.events import SinkUnavailable, require_sinks

SPEC = """\
run: {name: sink-run, run_dir: runs/sink-run}
hardware: {gpu_required: false, gpus_per_node: 0, min_host_memory_gb: 1, min_cpus: 1}
storage: {min_free_gb: 0.001, checkpoint_size_gb: 0.0001}
stack: {packages: {wandb: null}}
model: {name_or_path: tiny, params_b: 0.001, dtype: fp32}
monitoring: {sinks: %s}
"""


def packages(*installed: str) -> FakePackageProbe:
    """What package metadata says is installed: name-version pairs."""
    return FakePackageProbe(versions=dict(d.split("-", 1) for d in installed))


def test_a_tensorboard_sink_without_its_package_fails_the_gate(write_spec, tmp_path: Path) -> None:
    spec = write_spec(SPEC % "[jsonl, tensorboard]")
    results = run_checks_on(spec, gpu_probes(packages=packages("torch-2.13.0", "wandb-0.18.0")))
    sinks = results["stack.sinks"]
    assert sinks.status == Status.FAIL
    assert "not installed: tensorboard" in sinks.found and "monitoring.sinks" in sinks.remediation
    installed = run_checks_on(spec, gpu_probes(packages=packages("torch-2.13.0", "tensorboard-2.21.0")))
    assert installed["stack.sinks"].status == Status.PASS


def test_a_wandb_sink_without_credentials_fails_the_gate(write_spec, tmp_path: Path) -> None:
    spec = write_spec(SPEC % "[jsonl, wandb]")
    results = run_checks_on(spec, gpu_probes(env={}, packages=packages("torch-2.13.0", "wandb-0.18.0")))
    assert results["monitor.wandb"].status == Status.FAIL
    assert results["stack.sinks"].status == Status.PASS


def test_the_runner_refuses_to_start_without_a_declared_sink_s_package(
        write_spec, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # find_spec("tensorboard") -> None
    with pytest.raises(SinkUnavailable, match=r"'tensorboard' needs the tensorboard package"):
        require_sinks(["jsonl", "tensorboard"])
    require_sinks(["jsonl", "stdout"])
    spec = write_spec(SPEC % "[jsonl, tensorboard]")
    code = runner_main([str(spec), "--force", "--reason", "testing the sink refusal"])
    err = capsys.readouterr().err
    assert code == 2
    assert "runner: metric sinks in monitoring.sinks cannot be opened" in err and "pip install tensorboard" in err
    assert not (spec.parent / "runs" / "sink-run" / "events.jsonl").exists()  # nothing started
