"""A training repository's own `runner/` package in the working directory (or on PYTHONPATH) never
stands in for ours: not for `preflight launch`'s runner, not for the smoke test's child, not in
Ray's workers; and the runner is told where its attestation was written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import runner
from preflight.entrypoint import (
    BOOTSTRAP,
    INSTALL_ROOT,
    module_command,
)
from preflight.rundir import ATTESTATION_ENV
from preflight.service.launch import runner_command, start_runner
from preflight.service.report import run_report
from preflight.spec import load_spec

SHADOW = "raise SystemExit('the shadowing runner package ran instead of rl-preflight\\'s')\n"

CPU = """\
run: {name: shadow-run, run_dir: runs/shadow-run}
hardware: {gpu_required: false, min_host_memory_gb: 1, min_cpus: 1}
storage: {min_free_gb: 0.001, checkpoint_size_gb: 0.0001}
stack: {packages: {wandb: null}}
monitoring: {sinks: [jsonl]}
"""


@pytest.fixture
def shadowed(tmp_path: Path) -> Path:
    """A working directory whose own runner/ package would exit with a message if imported."""
    (tmp_path / "runner").mkdir()
    (tmp_path / "runner" / "__init__.py").write_text(SHADOW)
    (tmp_path / "runner" / "__main__.py").write_text(SHADOW)
    return tmp_path


def test_the_plain_module_command_is_shadowed_which_is_why_we_do_not_use_it(shadowed: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "runner", "--help"], cwd=shadowed, capture_output=True,
                          text=True, timeout=60)
    assert "shadowing runner package ran" in proc.stderr


def test_the_runner_command_runs_our_runner_from_a_shadowing_directory_and_pythonpath(
        shadowed: Path, write_spec) -> None:
    spec = load_spec(write_spec(CPU))
    cmd = runner_command(spec)
    assert cmd[:2] == [sys.executable, "-c"] and cmd[-1] == str(spec.path)
    env = {**os.environ, "PYTHONPATH": f"{shadowed}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([*cmd[:-1], "--help"], cwd=shadowed, capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "usage: python -m runner" in proc.stdout and "shadowing" not in proc.stderr
    # the runner module itself, run by file under the name __main__ as -m would
    probe = subprocess.run(module_command("runner.smoke", "--help"), cwd=shadowed, capture_output=True,
                           text=True, timeout=120, env=env)
    assert probe.returncode == 0 and "usage: python -m runner.smoke" in probe.stdout, probe.stderr


def test_a_plug_in_in_the_working_directory_still_imports_after_ours(shadowed: Path) -> None:
    (shadowed / "my_rewards.py").write_text("def score(*a):\n    return 1.0\n")
    code = "import json, runner, my_rewards; print(json.dumps([runner.__file__, my_rewards.__file__]))"
    (shadowed / "probe.py").write_text(code)
    proc = subprocess.run([sys.executable, "-c", BOOTSTRAP, str(INSTALL_ROOT), "probe"], cwd=shadowed,
                          capture_output=True, text=True, timeout=60)
    ours, plugin = json.loads(proc.stdout)
    assert Path(ours) == INSTALL_ROOT / "runner" / "__init__.py"
    assert Path(plugin) == shadowed / "my_rewards.py"


def test_launch_tells_the_runner_where_the_attestation_is(tmp_path: Path, write_spec) -> None:
    spec = load_spec(write_spec(CPU))
    report = run_report(spec, "static", "fail", show_progress=False)
    seen = tmp_path / "seen.txt"
    chosen = tmp_path / "elsewhere" / "att.json"
    launched = start_runner(spec, report, attestation=chosen, command=[
        sys.executable, "-c", f"import os; open({str(seen)!r}, 'w').write(os.environ[{ATTESTATION_ENV!r}])"])
    deadline = 100
    while not seen.exists() and deadline:
        subprocess.run(["sleep", "0.1"])
        deadline -= 1
    assert launched.pid and chosen.is_file()
    assert seen.read_text() == str(chosen.absolute())


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ray_workers_import_our_runner_not_the_working_directory_s(shadowed: Path) -> None:
    """Ray puts the driver's working directory first on its workers' paths; with the job config
    from ray_paths_from_this_install ours comes first, and the working directory right after."""
    script = shadowed / "driver.py"
    script.write_text(
        "import json, os, sys, tempfile\n"
        "import ray\n"
        "from preflight.entrypoint import ray_paths_from_this_install\n"
        "with ray_paths_from_this_install() as paths:\n"
        "    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix='rlpf-'), **paths)\n"
        "assert os.getcwd() == sys.argv[1]\n"
        "@ray.remote\n"
        "def where(cwd):\n"
        "    import runner\n"
        "    return [runner.__file__, os.path.realpath(cwd) in map(os.path.realpath, sys.path)]\n"
        "print('RESULT', json.dumps(ray.get(where.remote(sys.argv[1]))))\n"
        "ray.shutdown()\n")
    proc = subprocess.run([sys.executable, str(script), str(shadowed)], cwd=shadowed, capture_output=True,
                          text=True, timeout=150, env={**os.environ, "PYTHONPATH": str(INSTALL_ROOT)})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, proc.stderr[-3000:]
    origin, cwd_on_path = json.loads(line[len("RESULT "):])
    assert Path(origin) == Path(runner.__file__)
    assert cwd_on_path  # the user's plug-ins (run.reward) still import in the workers


@pytest.mark.slow
@pytest.mark.timeout(500)
def test_preflight_launch_trains_with_our_runner_beside_a_shadowing_runner_package(shadowed: Path) -> None:
    """The whole path from a training repository's folder that has its own runner/: `preflight
    launch` checks, attests and starts the runner, whose Ray workers train to the end."""
    from test_runner_launch import launch_and_wait

    events, log = launch_and_wait(shadowed, 300)
    assert "shadowing runner package ran" not in log, log[-3000:]
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "completed", log[-3000:]
