"""The basic algorithm test: runner.smoke in-process, and the algo.smoke check through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from preflight.spec import load_spec  # noqa: E402
from runner.smoke import corrupt, run_smoke  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

SPEC = """\
run: {name: smoke-test, domain: math}
model: {name_or_path: tiny}
training: {batch_size: 16, group_size: 4, learning_rate: 1.0e-4, max_response_tokens: 6,
           max_prompt_tokens: 16, task_difficulty: [easy], task_rows: 200}
"""


def _spec(write_spec, extra: str = ""):
    return load_spec(write_spec(SPEC + extra))


def test_corrupt_changes_the_last_digit_and_keeps_the_shape():
    assert corrupt("42") == "43"
    assert corrupt("-19") == "-10"
    assert corrupt("3.5") == "3.6"
    assert corrupt("yes") == "yes (wrong)"


def test_cpu_smoke_spec_passes_with_finite_steps_that_move_the_parameters(write_spec):
    result = run_smoke(_spec(write_spec), steps=2)
    assert result.ok, result.problems
    assert len(result.steps) == 2
    assert all(s["grad_norm"] > 0 for s in result.steps)
    assert result.param_change > 0
    assert (result.reward_reference, result.reward_corrupted) == (1.0, 0.0)


@pytest.mark.parametrize("algorithm", [
    "{loss: cispo, loss_aggregation: prompt, batch_advantage_norm: true}",
    "{loss: ppo_clip, loss_aggregation: sequence, kl_beta: 0.05, advantage_std_normalize: false}",
    "{zero_variance_filter: true, overlong_shaping: true, overlong_buffer_tokens: 2}",
])
def test_each_algorithm_variant_runs(write_spec, algorithm):
    result = run_smoke(_spec(write_spec, f"algorithm: {algorithm}\n"), steps=1)
    assert result.ok, result.problems


def _constant_reward(prompts, completions, rows):
    return [1.0] * len(completions)


def test_a_reward_that_cannot_tell_right_from_wrong_fails(write_spec):
    plugin = f"{__name__}:_constant_reward"
    spec = load_spec(write_spec(SPEC.replace("domain: math}", f"domain: math, reward: '{plugin}'}}")))
    result = run_smoke(spec, steps=1)
    assert not result.ok
    assert any("degenerate reward" in p for p in result.problems)
    assert result.reward_reference == result.reward_corrupted == 1.0


def test_a_reward_plugin_that_cannot_be_loaded_is_named(write_spec):
    spec = load_spec(write_spec(SPEC.replace("domain: math}", "domain: math, reward: 'no_such_module:f'}")))
    result = run_smoke(spec, steps=1)
    assert not result.ok
    assert any("cannot load the reward" in p and "no_such_module" in p for p in result.problems)


def test_data_the_runner_would_refuse_is_a_finding_not_a_traceback(write_spec):
    # a code run needs data files: the built-in task is arithmetic
    spec = load_spec(write_spec(SPEC.replace("domain: math}", "domain: code}")))
    result = run_smoke(spec, steps=1)
    assert not result.ok
    assert any("run.domain code needs data.train and data.val" in p for p in result.problems)


def test_a_non_finite_loss_is_reported(write_spec):
    from runner.algo import policy_loss

    def nan_loss(*args, **kwargs):
        loss, stats = policy_loss(*args, **kwargs)
        return loss * float("nan"), stats

    result = run_smoke(_spec(write_spec), steps=1, loss_fn=nan_loss)
    assert not result.ok
    assert any("non-finite" in p for p in result.problems)
    assert result.param_change == 0.0  # the optimizer never stepped on a NaN


def test_a_zero_learning_rate_is_caught_because_nothing_moves(write_spec):
    spec = load_spec(write_spec(SPEC.replace("learning_rate: 1.0e-4", "learning_rate: 1.0e-30")))
    result = run_smoke(spec, steps=1)
    # AdamW's first step is ~lr in size: 1e-30 vanishes in float32 next to weights of ~1e-2
    assert not result.ok
    assert any("did not move" in p for p in result.problems)


@pytest.mark.slow
def test_command_line_json_is_strict_and_exit_codes_follow_the_verdict(write_spec):
    path = write_spec(SPEC)
    out = subprocess.run([sys.executable, "-m", "runner.smoke", str(path), "--json", "--steps", "1"],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout, parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert payload["ok"] is True and payload["steps"][0]["step"] == 1

    bad = subprocess.run([sys.executable, "-m", "runner.smoke", str(path.with_name("missing.yaml"))],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "missing.yaml" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_the_active_check_runs_the_smoke_test_in_a_child_and_gates_on_it(write_spec):
    path = write_spec(SPEC)
    out = subprocess.run([sys.executable, "-m", "preflight", "check", str(path), "--level", "active",
                          "--only", "algo.*", "--format", "json", "--no-attest"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    report = json.loads(out.stdout)
    (result,) = report["results"]
    assert result["id"] == "algo.smoke" and result["status"] == "pass", result
    assert "parameters moved" in result["found"]
    assert out.returncode == 0


def test_the_check_says_how_to_install_the_runner_when_torch_is_missing(write_spec, monkeypatch):
    import importlib.util

    from preflight.checks import algo as algo_check
    from preflight.engine import Context
    from preflight.result import Status

    real = importlib.util.find_spec
    monkeypatch.setattr(algo_check.importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    outcome = algo_check.algo_smoke(Context(spec=_spec(write_spec), probes=None))
    assert outcome.status is Status.FAIL
    assert "torch" in outcome.found and "rl-preflight[runner]" in outcome.remediation


def test_the_check_module_keeps_torch_out_of_preflight():
    # the check path imports the check module, never runner.smoke (torch) itself
    code = ("import sys, preflight.checks.algo; "
            "print('torch' in sys.modules, 'runner.smoke' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.split() == ["False", "False"]
