"""The gate and the runner agree: a spec the static gate passes never makes the runner's setup
refuse it, and where the runner would adjust a value (with a note in its events) or ignore it,
the gate has warned first.

The property test draws run specs over the fields the runner's setup reads (world, batch and
groups, cadences, the controllers, the algorithm's pieces, lengths, data and reward), runs every
static check on each, and then builds what runner.train.Trainer builds before it trains, without
a model: the TrainConfig (and with it the batch plan, the data and the loss settings), the reward,
the Controllers (stability guard, early stopping, dynamic batch), the micro-batches and generation
chunks of each rank's share, the overlong shaping, the
prompt budget against the model's positions and the Trainer's algorithm notes, and the collective
backend runner.launch picks. The constants the checks mirror from the runner are held against
the runner's own values first.
"""

from __future__ import annotations

import inspect
import json
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from preflight import presets
from preflight.checks import runner_fit, stack
from preflight.data.split import split_rows
from preflight.engine import Context, plan, run_checks
from preflight.probes import Probes
from preflight.result import Status
from preflight.spec import load_spec
from runner import controllers, model, rewards, warm_start
from runner.algo import overlong_shaping
from runner.config import ConfigError, TrainConfig
from runner.controllers import Controllers, next_batch_size
from runner.events import SINK_NAMES
from runner.launch import backend_for
from runner.policy import prompt_budget
from runner.train import Trainer

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "runspec.schema.json"

# --- the constants the checks mirror, against the runner's own ---------------------------------


def test_the_checks_mirror_the_runners_constants() -> None:
    assert inspect.signature(model.build_tiny_model).parameters["max_positions"].default == presets.TINY_POSITIONS
    assert runner_fit.TINY == model.TINY
    assert presets.WARM_START_CHECK_STEPS == warm_start.WARM_START_CHECK
    guard = inspect.signature(controllers.StabilityGuard).parameters["min_history"].default
    assert guard == presets.SPIKE_MIN_HISTORY
    assert tuple(rewards.reward_names()) == presets.BUILTIN_REWARDS
    ratios = inspect.signature(split_rows).parameters["ratios"].default
    assert ratios[1] == presets.ARITHMETIC_VAL_FRACTION


def test_the_metrics_the_checks_accept_are_the_ones_the_runner_computes() -> None:
    assert set(presets.TRACKED_METRICS) == set(controllers.METRICS)
    for metric, better in presets.METRIC_BETTER.items():
        assert controllers.METRICS[metric][1] == better, metric
    validation = {m for m, (source, _) in controllers.METRICS.items() if source == "validation"}
    assert validation == {m for m, kind in presets.TRACKED_METRICS.items() if kind == "validation"}


def test_every_sink_the_spec_allows_is_one_the_runner_builds() -> None:
    allowed = json.loads(SCHEMA.read_text())["properties"]["monitoring"]["properties"]["sinks"]["items"]["enum"]
    assert set(allowed) <= set(SINK_NAMES)
    assert set(stack.SINK_PACKAGES) <= set(allowed)


# --- the property -------------------------------------------------------------------------------

SOUND_METRICS = [m for m in presets.TRACKED_METRICS if m in presets.METRIC_BETTER]


def _oops(draw: st.DrawFn) -> bool:
    """One draw in eight carries a mistake, so about a third of the specs are sound throughout."""
    return draw(st.sampled_from([False] * 7 + [True]))  # shrinks toward no mistake


def _world(draw: st.DrawFn) -> dict[str, Any]:
    gpu = draw(st.booleans())
    nodes = draw(st.sampled_from([1, 1, 2, 3]))
    per_node = (0 if _oops(draw) else draw(st.sampled_from([1, 2, 8]))) if gpu else 0
    backend = draw(st.sampled_from(["nccl", "gloo"])) if _oops(draw) else "auto"
    return {"hardware": {"gpu_required": gpu, "gpus_per_node": per_node, "nodes": nodes},
            "distributed": {"cpu_workers": draw(st.integers(1, 4)), "backend": backend,
                            "ray_address": "auto" if nodes > 1 and not _oops(draw) else ""}}


def _training(draw: st.DrawFn, tiny: bool, world: int) -> dict[str, Any]:
    group = 1 if _oops(draw) else draw(st.sampled_from([2, 4, 5, 8, 16]))
    batch = draw(st.integers(1, 4096)) if _oops(draw) else draw(st.integers(1, 8)) * world * group
    steps = draw(st.integers(20, 300))
    ev = draw(st.integers(steps + 1, 2 * steps)) if _oops(draw) else draw(st.integers(1, steps))
    lr = 1e-2 if _oops(draw) else (3e-4 if tiny else 1e-6)
    prompt, response = ((200, 255) if _oops(draw) else (16, 6)) if tiny else (1024, draw(st.sampled_from([512, 4096])))
    warm = draw(st.sampled_from([0, 0, 100]))
    return {"batch_size": batch, "group_size": group, "max_steps": steps, "eval_interval": ev, "learning_rate": lr,
            "max_prompt_tokens": prompt, "max_response_tokens": response, "warm_start_steps": warm,
            "warm_start_target": 0 if _oops(draw) else draw(st.sampled_from([None, 0.3])),
            "warm_start_lr": 3e-3 if tiny else 1e-4, **_passes(draw, batch // world, group)}


def _passes(draw: st.DrawFn, share: int, group: int) -> dict[str, Any]:
    """Micro-batches and generation chunks of a rank's share: null, a divisor of it (a multiple of
    the group for a chunk), more than it, or (a mistake) any size."""
    divisors = [d for d in range(1, share + 1) if share % d == 0] or [1]
    micro = draw(st.sampled_from([None, *divisors, 2 * share + 1]))
    chunks = [d for d in divisors if d % group == 0] or [None]
    chunk = draw(st.sampled_from([None, *chunks, 2 * share + group]))
    if _oops(draw):
        micro = draw(st.integers(1, 64))
    if _oops(draw):
        chunk = draw(st.integers(1, 64))
    return {"micro_batch_size": micro, "generation_batch_size": chunk,
            "gradient_checkpointing": draw(st.booleans())}


def _controllers(draw: st.DrawFn, steps: int, batch: int, unit: int) -> dict[str, Any]:
    metric = draw(st.sampled_from(["validation_loss", "bleu"])) if _oops(draw) else draw(st.sampled_from(SOUND_METRICS))
    stop = draw(st.sampled_from(SOUND_METRICS))
    mode = presets.METRIC_BETTER[stop] if not _oops(draw) else draw(st.sampled_from(["max", "min"]))
    grow = batch * 2 // unit * unit if unit and not _oops(draw) else draw(st.integers(1, 8192))
    return {
        "checkpoints": {"save_interval": draw(st.integers(1, steps)), "metric": metric},
        "early_stopping": {"enabled": draw(st.booleans()), "metric": stop, "mode": mode, "patience": 1},
        "stability": {"spike_action": draw(st.sampled_from(["alert", "rollback"])), "max_rollbacks": 3},
        "dynamic_batch": {"enabled": draw(st.booleans()), "max_batch_size": max(grow, 1),
                          "every_steps": steps if _oops(draw) else 1,
                          "target_efficiency": 0.0 if _oops(draw) else 0.8,
                          "efficiency": "utilization" if _oops(draw) else "auto",
                          "lr_scaling": draw(st.sampled_from(["none", "sqrt"]))},
    }


@st.composite
def run_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A schema-valid run spec over what the runner's setup reads: each part sound, or (one draw
    in eight) carrying a mistake real specs carry."""
    spec = _world(draw)
    hw, dist = spec["hardware"], spec["distributed"]
    world = hw["nodes"] * hw["gpus_per_node"] if hw["gpu_required"] and hw["gpus_per_node"] else dist["cpu_workers"]
    tiny = draw(st.booleans())
    training = _training(draw, tiny, world)
    unit = world * training["group_size"]
    spec.update(_controllers(draw, training["max_steps"], training["batch_size"], unit))
    response = training["max_response_tokens"]
    spec.update({
        "run": {"name": "prop", "domain": draw(st.sampled_from(["code", "chat"])) if _oops(draw) else "math"},
        "model": {"name_or_path": "tiny", "params_b": 0.001} if tiny else {"name_or_path": "Qwen/Qwen2.5-7B",
                                                                           "params_b": 7.6},
        "training": training,
        "algorithm": {"dynamic_sampling": draw(st.booleans()), "overlong_shaping": draw(st.booleans()),
                      "overlong_buffer_tokens": response if _oops(draw) else max(response // 5, 1),
                      "max_off_policy_steps": draw(st.sampled_from([0, 0, 4])),
                      "loss": draw(st.sampled_from(["ppo_clip", "cispo"])),
                      "kl_beta": draw(st.sampled_from([0.0, 0.001]))},
        "monitoring": {"sinks": ["jsonl"]},
    })
    if _oops(draw):
        spec["run"]["reward"] = draw(st.sampled_from(["chat", "bleu"]))
    data = {"train": "t.jsonl"} if _oops(draw) else draw(st.sampled_from([{}, {"train": "t.jsonl", "val": "v.jsonl"}]))
    if data:
        spec["data"] = data
    return spec


def _gate(spec_path: Path) -> tuple[bool, dict[str, Status], Any]:
    spec = load_spec(spec_path)
    results = run_checks(plan(spec, "static"), Context(spec=spec, probes=Probes(), level="static"))
    statuses = {r.id: r.status for r in results}
    return not any(s in (Status.FAIL, Status.ERROR) for s in statuses.values()), statuses, spec


def _runner_setup(spec: Any) -> tuple[TrainConfig, list[str]]:
    """What the Trainer builds before its first step, without loading a model; returns the config
    and the notes (the runner's record of what it adjusted)."""
    config = TrainConfig.from_spec(spec, world_size=spec.world_size)
    rewards.reward_for(spec)
    notes: list[str] = []
    ctl = Controllers(stability=config.stability, early_stopping=config.early_stopping,
                      dynamic_batch=config.dynamic_batch, checkpoint_metric=config.checkpoints.metric,
                      batch_size=config.batch.batch_size, unit=config.batch.unit, notes=notes)
    if ctl.batcher is not None:
        assert next_batch_size(config.batch.batch_size, config.dynamic_batch.factor,
                               config.dynamic_batch.max_batch_size, config.batch.unit) > config.batch.batch_size, \
            "the dynamic batch could never grow"
    positions = presets.TINY_POSITIONS if config.model_name == model.TINY else None
    prompt_budget(SimpleNamespace(config=SimpleNamespace(max_position_embeddings=positions)),
                  config.max_prompt, config.max_new, notes)
    Trainer._algorithm_notes(SimpleNamespace(notes=notes), config)  # type: ignore[arg-type]
    if config.shaping.overlong:
        overlong_shaping(torch.tensor([1, config.max_new]), config.max_new,
                         min(config.shaping.buffer, config.max_new), config.shaping.penalty)
    return config, notes


# A note the runner writes when it adjusts the spec, and the check that must have said so first.
NOTE_CHECKS = {
    "max_prompt_tokens: cut": "config.runner",
    "dynamic_sampling:": "config.algorithm",
    "overlong_shaping: buffer cut": "config.overlong",
    "early_stopping.metric": "config.early_stopping.metric",
}

CPU_SMOKE_LIKE = {"run": {"name": "prop"}, "hardware": {"gpu_required": False, "gpus_per_node": 0},
                  "model": {"name_or_path": "tiny", "params_b": 0.001},
                  "training": {"batch_size": 8, "group_size": 4, "max_prompt_tokens": 16, "max_response_tokens": 6,
                               "learning_rate": 3e-4, "max_steps": 100, "eval_interval": 10},
                  "checkpoints": {"save_interval": 10}, "early_stopping": {"patience": 3},
                  "monitoring": {"sinks": ["jsonl"]}}


@settings(max_examples=250, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(run_specs())
@example(CPU_SMOKE_LIKE)
@example({**CPU_SMOKE_LIKE, "distributed": {"cpu_workers": 2},
          "training": {**CPU_SMOKE_LIKE["training"], "batch_size": 4}})  # 4 % 2 and 4 % 4, not 4 % 8
@example({**CPU_SMOKE_LIKE, "data": {"train": "t.jsonl"}})  # the runner would fall back to arithmetic
@example({**CPU_SMOKE_LIKE, "run": {"name": "prop", "domain": "chat"}})  # no built-in chat reward
def test_a_spec_the_gate_passes_sets_the_runner_up(spec_dict: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(json.dumps(spec_dict), encoding="utf-8")
        passed, statuses, spec = _gate(path)
        try:
            config, notes = _runner_setup(spec)
        except (ConfigError, rewards.RewardError, ValueError, AssertionError) as exc:
            assert not passed, f"the gate passed a spec the runner refuses: {exc}"
            return
    if not passed:
        return
    for note in notes:
        for start, check_id in NOTE_CHECKS.items():
            if start in note:
                assert statuses[check_id] in (Status.WARN, Status.FAIL), f"runner: {note!r}; {check_id} said nothing"
    assert backend_for(spec) == ("nccl" if spec.uses_gpus else "gloo")
    if int(spec.get("algorithm.max_off_policy_steps")) > 0:  # the runner trains synchronously
        assert statuses["config.algorithm"] == Status.WARN
    if spec.uses_gpus and spec.get("model.dtype") != "bf16":  # the runner trains in bf16 on GPUs
        assert statuses["config.runner"] == Status.WARN
    assert config.batch.prompts_per_rank >= 1
    share = config.batch.batch_size // config.batch.world_size
    for size in (config.batch.micro, config.batch.generation):  # a size above the share changes nothing: warned
        if size is not None and size > share:
            assert statuses["config.batch.micro"] == Status.WARN


def test_the_property_sees_specs_that_pass(tmp_path: Path) -> None:
    """The property's interesting side is exercised: a sound spec passes and sets the runner up."""
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(CPU_SMOKE_LIKE), encoding="utf-8")
    passed, statuses, spec = _gate(path)
    assert passed, {k: v for k, v in statuses.items() if v in (Status.FAIL, Status.ERROR)}
    config, notes = _runner_setup(spec)
    assert config.batch.prompts_per_rank == 1 and not any("cut" in n for n in notes)


@pytest.mark.parametrize("change, check_id", [
    ({"training": {"batch_size": 4}, "distributed": {"cpu_workers": 2}}, "config.batch.divisibility"),
    ({"training": {"batch_size": 24, "micro_batch_size": 5}}, "config.batch.micro"),
    ({"training": {"batch_size": 24, "generation_batch_size": 6}}, "config.batch.micro"),
    ({"training": {"batch_size": 24, "generation_batch_size": 8}}, "config.batch.micro"),  # a share of 12
    ({"data": {"train": "t.jsonl"}}, "config.runner"),
    ({"run": {"name": "prop", "domain": "code"}}, "config.runner"),
    ({"run": {"name": "prop", "domain": "chat"}}, "config.runner"),
])
def test_where_the_runner_refuses_the_gate_has_failed(change: dict[str, Any], check_id: str, tmp_path: Path) -> None:
    spec_dict = json.loads(json.dumps(CPU_SMOKE_LIKE))
    for section, values in change.items():
        spec_dict.setdefault(section, {}).update(values)
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec_dict), encoding="utf-8")
    passed, statuses, spec = _gate(path)
    assert not passed and statuses[check_id] == Status.FAIL
    with pytest.raises((ConfigError, rewards.RewardError)) as refused:
        _runner_setup(spec)
    assert any(word in str(refused.value) for word in ("data.", "batch_size", "chat"))
