"""One breaking spec per rule of the trainer.trl.* and trainer.openrlhf.* checks: a spec imported
from a published configuration, changed so that it breaks only that rule, is blocked (or warned) by
that check, while the unchanged spec passes it."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from framework_sources import published_trl_openrlhf as pub

from preflight.checks import trainer_openrlhf, trainer_trl
from preflight.cli import main
from preflight.frameworks import openrlhf, trl
from preflight.registry import REGISTRY


@dataclass(frozen=True)
class Case:
    check: str
    config: dict[str, Any]
    expect: str = "fail"
    says: str = ""
    spec: dict[str, Any] = field(default_factory=dict)  # dotted spec fields to set
    launcher: dict[str, Any] = field(default_factory=dict)
    model_folder: bool = False  # point the model at a local folder without a chat template


TRL_CASES = [
    Case("trainer.trl.generation_batch", {"per_device_train_batch_size": 1}, launcher={"num_processes": 3},
         says="num_generations 8"),
    Case("trainer.trl.generation_batch", {"generation_batch_size": 30}, launcher={"generation_batch_size_given": True},
         says="not a multiple"),
    Case("trainer.trl.num_generations", {"num_generations": 1}, says="num_generations 1"),
    Case("trainer.trl.eval_batch", {"do_eval": True, "eval_strategy": "steps", "per_device_eval_batch_size": 1},
         says="eval batch 4"),
    Case("trainer.trl.vllm_gpus", {"use_vllm": True, "vllm_mode": "server"},
         launcher={"vllm_server_gpus": 1, "vllm_server_devices": "0"}, says="both use GPU 0"),
    Case("trainer.trl.memory", {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.97},
         says="reserves"),
    # no vLLM on the training GPUs, but plain DDP keeps all 18 B x 14B params of state on every GPU
    Case("trainer.trl.memory", {}, spec={"model.params_b": 14}, says="18 B x P on every GPU"),
    Case("trainer.trl.lengths", {"use_vllm": True, "vllm_max_model_length": 256}, says="vllm_max_model_length 256"),
    Case("trainer.trl.auto_find_batch_size", {"auto_find_batch_size": True}, says="on"),
    Case("trainer.trl.rewards", {"reward_funcs": ["acuracy_reward"]}, says="acuracy_reward unknown"),
]

OPENRLHF_CASES = [
    Case("trainer.openrlhf.train_batch", {"train_batch_size": 100}, says="train_batch_size 100"),
    Case("trainer.openrlhf.rollout_batch", {"n_samples_per_prompt": 1}, says="x 1 samples"),
    Case("trainer.openrlhf.rollout_batch", {"rollout_batch_size": 100}, expect="warn", says="= 800"),
    Case("trainer.openrlhf.colocation", {"vllm_num_engines": 3}, says="3 x vllm_tensor_parallel_size 2 = 6"),
    Case("trainer.openrlhf.memory", {"vllm_enable_sleep": False, "vllm_gpu_memory_utilization": 0.95},
         says="reserves"),
    # vLLM sleeps while the actor trains, but ZeRO-0 keeps all 18 B x 14B params of state on every GPU
    Case("trainer.openrlhf.memory", {"zero_stage": 0}, spec={"model.params_b": 14}, says="18 B x P on every GPU"),
    Case("trainer.openrlhf.chat_template", {}, model_folder=True, says="has no chat template"),
    Case("trainer.openrlhf.host_memory", {"adam_offload": True}, spec={"hardware.min_host_memory_gb": 64},
         says="adam_offload"),
    Case("trainer.openrlhf.lengths", {"max_len": 1000}, says="max_len 1000"),
]


def _base(framework: str, tmp_path: Path) -> dict[str, Any]:
    if framework == "trl":
        source = tmp_path / "grpo.yaml"
        source.write_text(pub.TRL_CLIS_GRPO_CONFIG_NUM_PROCESSES, encoding="utf-8")
        return dict(trl.import_source(source, environ={"HOME": str(tmp_path)}).spec)
    source = tmp_path / "dapo.sh"
    source.write_text(pub.OPENRLHF_TRAIN_DAPO_RAY_HYBRID_ENGINE, encoding="utf-8")
    return dict(openrlhf.import_source(source, version="0.8.11", environ={"HOME": str(tmp_path)}).spec)


def _statuses(tmp_path: Path, spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    report = tmp_path / "report.json"
    code = main(["check", str(path), "--level", "static", "--format", "json", "--output", str(report)])
    assert code in (0, 1)
    return {r["id"]: r for r in json.loads(report.read_text(encoding="utf-8"))["results"]}


def _set(spec: dict[str, Any], dotted: str, value: Any) -> None:
    node = spec
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _broken(base: dict[str, Any], case: Case, tmp_path: Path) -> dict[str, Any]:
    spec = copy.deepcopy(base)
    spec["trainer"]["config"].update(case.config)
    spec["trainer"].setdefault("launcher", {}).update(case.launcher)
    for dotted, value in case.spec.items():
        _set(spec, dotted, value)
    if case.model_folder:
        folder = tmp_path / "Llama-3.2-1B"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({
            "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
            "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
            "max_position_embeddings": 131072, "tie_word_embeddings": True}), encoding="utf-8")
        (folder / "tokenizer.json").write_text("{}", encoding="utf-8")
        spec["model"]["name_or_path"] = str(folder)
        spec["model"]["params_b"] = 1.2
        spec["trainer"]["config"]["pretrain"] = str(folder)
    return spec


@pytest.mark.parametrize("framework,case", [("trl", c) for c in TRL_CASES] + [("openrlhf", c) for c in OPENRLHF_CASES],
                         ids=[f"{c.check}-{c.expect}" for c in TRL_CASES + OPENRLHF_CASES])
def test_breaking_one_rule_is_caught_by_its_check(framework: str, case: Case, tmp_path: Path) -> None:
    base = _base(framework, tmp_path)
    healthy = _statuses(tmp_path, base)[case.check]
    assert healthy["status"] in ("pass", "skip"), healthy
    result = _statuses(tmp_path, _broken(base, case, tmp_path))[case.check]
    assert result["status"] == case.expect, result
    assert case.says in result["found"] + result["expected"], result["found"]


def test_another_frameworks_checks_are_not_run_for_a_spec(tmp_path: Path) -> None:
    """A TRL spec gets no OpenRLHF rows at all (the engine plans trainer.<framework>.* for that
    framework only), and the other way round."""
    trl = _statuses(tmp_path, _base("trl", tmp_path))
    assert not any(c.check in trl for c in OPENRLHF_CASES) and any(c.check in trl for c in TRL_CASES)
    openrlhf = _statuses(tmp_path, _base("openrlhf", tmp_path))
    assert not any(c.check in openrlhf for c in TRL_CASES) and any(c.check in openrlhf for c in OPENRLHF_CASES)


def test_every_rule_of_these_checks_has_a_breaking_case() -> None:
    modules = {trainer_trl.__name__, trainer_openrlhf.__name__}
    checks = {d.id for d in REGISTRY.values() if d.fn.__module__ in modules and d.rules}
    assert checks == {c.check for c in TRL_CASES + OPENRLHF_CASES}
    for d in REGISTRY.values():
        if d.fn.__module__ in modules:
            for rule in d.rules:
                kinds = {c.expect for c in TRL_CASES + OPENRLHF_CASES if c.check == d.id}
                if "warn" in rule.severity:
                    assert kinds >= {"warn", "fail"}, d.id


@pytest.mark.parametrize("framework", ["trl", "openrlhf"])
def test_a_hand_written_config_without_the_batch_keys_is_an_error_not_a_guess(framework: str, tmp_path: Path) -> None:
    spec = _base(framework, tmp_path)
    key = "num_generations" if framework == "trl" else "train_batch_size"
    del spec["trainer"]["config"][key]
    statuses = _statuses(tmp_path, spec)
    ours = {k: v for k, v in statuses.items() if k.startswith(f"trainer.{framework}.")}
    assert ours and all(v["status"] == "error" and key in v["found"] for v in ours.values())


@pytest.mark.parametrize("framework,where,key,value", [
    ("trl", "launcher", "num_processes", "four"),
    ("trl", "config", "vllm_gpu_memory_utilization", "high"),
    ("openrlhf", "config", "generate_max_len", "2k"),
    ("openrlhf", "config", "init_kl_coef", "0.01x"),
])
def test_a_hand_edited_word_where_a_number_belongs_is_an_error_naming_the_field(
        framework: str, where: str, key: str, value: str, tmp_path: Path) -> None:
    spec = _base(framework, tmp_path)
    spec["trainer"].setdefault(where, {})[key] = value
    if key == "vllm_gpu_memory_utilization":
        spec["trainer"]["config"].update(use_vllm=True, vllm_mode="colocate")
    if key == "init_kl_coef":
        spec["trainer"]["config"]["colocate_all_models"] = True
    errors = {k: v for k, v in _statuses(tmp_path, spec).items() if v["status"] == "error"}
    assert errors, "an unusable value must not pass"
    for result in errors.values():
        assert f"trainer.{where}.{key} is {value!r}" in result["found"], result
        assert "bug in the check" not in result["remediation"]
