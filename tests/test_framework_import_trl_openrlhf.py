"""The TRL and OpenRLHF importers on their frameworks' published GRPO configurations: each imports,
round-trips (the spec validates; importing twice gives the same spec) and passes `--level static`."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import pytest
from framework_sources import published_trl_openrlhf as pub
from framework_sources.published import OPENRLHF_TRAIN_GRPO_RAY_HYBRID_ENGINE

from preflight.cli import main
from preflight.frameworks import openrlhf, trl
from preflight.frameworks.base import ImportProblem
from preflight.spec import load_spec


def _import(module: Any, tmp_path: Path, name: str, text: str, **kw: Any) -> dict[str, Any]:
    source = tmp_path / name
    source.write_text(text, encoding="utf-8")
    return dict(module.import_source(source, environ={"HOME": str(tmp_path)}, **kw).spec)


def _static(tmp_path: Path, spec: dict[str, Any]) -> tuple[int, dict[str, str]]:
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    load_spec(path)  # validates against the schema (raises SpecError otherwise)
    report = tmp_path / "report.json"
    code = main(["check", str(path), "--level", "static", "--format", "json", "--output", str(report)])
    results = json.loads(report.read_text(encoding="utf-8"))["results"]
    return code, {r["id"]: r["status"] for r in results}


def _blocking(statuses: dict[str, str]) -> set[str]:
    return {k for k, v in statuses.items() if v in ("fail", "error")}


TRL_SOURCES = {
    "grpo_config.yaml": pub.TRL_CLIS_GRPO_CONFIG,
    "grpo_np.yaml": pub.TRL_CLIS_GRPO_CONFIG_NUM_PROCESSES,
    "run_zero2.sh": pub.TRL_CLIS_GRPO_ACCELERATE_CONFIG,
    "run_np.sh": pub.TRL_CLIS_GRPO_NUM_PROCESSES,
}


@pytest.mark.parametrize("name", sorted(TRL_SOURCES))
def test_trls_published_grpo_configs_round_trip_and_pass_static(name: str, tmp_path: Path) -> None:
    spec = _import(trl, tmp_path, name, TRL_SOURCES[name])
    assert spec == _import(trl, tmp_path, name, TRL_SOURCES[name])  # import twice, same spec
    assert spec["trainer"]["framework"] == "trl" and spec["model"]["name_or_path"] == "Qwen/Qwen2.5-0.5B"
    config = spec["trainer"]["config"]
    assert config["reward_funcs"] == ["accuracy_reward"] and config["num_generations"] == 8
    code, statuses = _static(tmp_path, spec)
    assert code == 0, _blocking(statuses)
    assert statuses["trainer.trl.generation_batch"] == "pass" and statuses["trainer.trl.rewards"] == "pass"


def test_the_process_count_comes_from_the_config_the_cli_or_trls_accelerate_profile(tmp_path: Path) -> None:
    procs = {n: _import(trl, tmp_path, n, t)["trainer"]["launcher"]["num_processes"] for n, t in TRL_SOURCES.items()}
    assert procs["grpo_np.yaml"] == 4 and procs["run_np.sh"] == 4
    assert procs["run_zero2.sh"] == 8  # TRL's zero2 profile says num_processes: 8
    launcher = _import(trl, tmp_path, "run_zero2.sh", pub.TRL_CLIS_GRPO_ACCELERATE_CONFIG)["trainer"]["launcher"]
    assert launcher["distributed_type"] == "DEEPSPEED" and launcher["zero_stage"] == 2
    # no accelerate config anywhere and no --num_processes: the assumption is said, not hidden
    assumed = trl.import_source(tmp_path / "grpo_config.yaml", environ={"HOME": str(tmp_path)})
    assert any("ASSUMED 8" in n for n in assumed.notes)


def test_an_accelerate_launch_reads_its_config_file_and_excludes_the_vllm_servers_gpu(tmp_path: Path) -> None:
    (tmp_path / "zero3.yaml").write_text(pub.TRL_ACCELERATE_ZERO3, encoding="utf-8")
    (tmp_path / "grpo.yaml").write_text(pub.TRL_CLIS_GRPO_CONFIG + "use_vllm: true\nvllm_mode: server\n"
                                        "per_device_train_batch_size: 8\n", encoding="utf-8")
    script = ("CUDA_VISIBLE_DEVICES=0 trl vllm-serve --model Qwen/Qwen2.5-0.5B &\n"
              "CUDA_VISIBLE_DEVICES=1,2,3,4,5,6,7 accelerate launch --config_file zero3.yaml --num_processes 7 \\\n"
              "    trl/scripts/grpo.py --config grpo.yaml\n")
    spec = _import(trl, tmp_path, "run.sh", script)
    launcher = spec["trainer"]["launcher"]
    assert launcher["num_processes"] == 7 and launcher["vllm_server_gpus"] == 1
    assert launcher["distributed_type"] == "DEEPSPEED" and spec["hardware"]["gpus_per_node"] == 7
    assert spec["training"]["batch_size"] == 7 * 8
    code, statuses = _static(tmp_path, spec)
    assert statuses["trainer.trl.vllm_gpus"] == "pass" and statuses["trainer.trl.generation_batch"] == "pass"
    assert code == 0, _blocking(statuses)


def test_an_unknown_trl_key_is_exit_2_with_a_did_you_mean(tmp_path: Path) -> None:
    source = tmp_path / "grpo.yaml"
    source.write_text(pub.TRL_CLIS_GRPO_CONFIG + "num_generation: 8\n", encoding="utf-8")
    with pytest.raises(ImportProblem) as err:
        trl.import_source(source, environ={"HOME": str(tmp_path)})
    assert "num_generation" in str(err.value) and "did you mean num_generations" in str(err.value)
    assert main(["check", str(source)]) == 2  # not a spec either: never a pass


def test_without_trl_installed_the_builtin_table_gives_the_same_spec(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    installed = _import(trl, tmp_path, "grpo.yaml", pub.TRL_CLIS_GRPO_CONFIG_NUM_PROCESSES)
    real = importlib.metadata.version

    def no_trl(name: str) -> str:
        if name == "trl":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", no_trl)
    builtin = _import(trl, tmp_path, "grpo.yaml", pub.TRL_CLIS_GRPO_CONFIG_NUM_PROCESSES)
    assert builtin["trainer"]["defaults"] == "builtin" and builtin["trainer"]["version"] == "1.16.0"
    if installed["trainer"]["version"] == "1.16.0":
        assert builtin["trainer"]["config"] == installed["trainer"]["config"]
    with pytest.raises(ImportProblem, match="no defaults for TRL 0.3.0"):
        _import(trl, tmp_path, "grpo.yaml", pub.TRL_CLIS_GRPO_CONFIG, version="0.3.0")


OPENRLHF_SOURCES = {
    "train_grpo_ray_hybrid_engine.sh": pub.OPENRLHF_TRAIN_GRPO_RAY_HYBRID_ENGINE_K3,
    "train_dapo_ray_hybrid_engine.sh": pub.OPENRLHF_TRAIN_DAPO_RAY_HYBRID_ENGINE,
}


@pytest.mark.parametrize("name", sorted(OPENRLHF_SOURCES))
def test_openrlhfs_published_scripts_round_trip_and_pass_static(name: str, tmp_path: Path) -> None:
    spec = _import(openrlhf, tmp_path, name, OPENRLHF_SOURCES[name], version="0.8.11")
    assert spec == _import(openrlhf, tmp_path, name, OPENRLHF_SOURCES[name], version="0.8.11")
    assert spec["trainer"]["defaults"] == "builtin" and spec["trainer"]["command"][:3] == [
        "python3", "-m", "openrlhf.cli.train_ppo_ray"]
    training = spec["training"]
    assert (training["batch_size"], training["group_size"], training["micro_batch_size"]) == (128, 8, 8)
    assert (training["max_prompt_tokens"], training["max_response_tokens"]) == (1024, 1024)
    assert spec["hardware"] == {"nodes": 1, "gpus_per_node": 8}
    code, statuses = _static(tmp_path, spec)
    assert {k for k in statuses if k.startswith("trainer.openrlhf.") and statuses[k] in ("fail", "error")} == set()
    assert statuses["trainer.openrlhf.memory"] == "pass"  # the actor's footprint, as ZeRO shards it
    assert code == 0, _blocking(statuses)


def test_the_dapo_scripts_clip_higher_maps_into_the_spec(tmp_path: Path) -> None:
    spec = _import(openrlhf, tmp_path, "dapo.sh", pub.OPENRLHF_TRAIN_DAPO_RAY_HYBRID_ENGINE, version="0.8.11")
    assert (spec["training"]["clip_low"], spec["training"]["clip_high"]) == (0.2, 0.3)
    assert spec["checkpoints"]["save_interval"] == 20 and spec["checkpoints"]["keep_last"] == 3
    assert spec["algorithm"]["kl_beta"] == 1e-3


def test_the_older_published_grpo_script_is_blocked_as_openrlhfs_own_assert_would(tmp_path: Path) -> None:
    """At 00ef17c the example paired --advantage_estimator group_norm with --n_samples_per_prompt 1,
    which OpenRLHF 0.6.0's train_ppo_ray.py rejects after parsing ("group_norm requires
    n_samples_per_prompt > 1"): a true failure, found before any GPU is touched."""
    spec = _import(openrlhf, tmp_path, "grpo.sh", OPENRLHF_TRAIN_GRPO_RAY_HYBRID_ENGINE, version="0.6.0")
    code, statuses = _static(tmp_path, spec)
    assert code == 1
    # OpenRLHF's own rule knows its estimators; the built-in runner's group-size rule skips framework runs
    assert statuses["trainer.openrlhf.rollout_batch"] == "fail" and statuses["config.group_size"] == "skip"


def test_a_flag_of_another_openrlhf_version_is_exit_2_with_a_did_you_mean(tmp_path: Path) -> None:
    source = tmp_path / "grpo.sh"
    source.write_text(OPENRLHF_TRAIN_GRPO_RAY_HYBRID_ENGINE, encoding="utf-8")
    with pytest.raises(ImportProblem) as err:
        openrlhf.import_source(source, version="0.8.11", environ={"HOME": str(tmp_path)})
    assert "--use_kl_estimator_k3" in str(err.value) and "did you mean --kl_estimator" in str(err.value)


@pytest.mark.parametrize("name,text,says", [
    ("grpo.yaml", "num_generations: [8\n", "is not valid YAML"),
    ("grpo.yaml", "- a list\n", "must be a mapping"),
    ("run.sh", "echo hello\n", "no TRL training command"),
    ("run.sh", "trl grpo --num_generations 'eight\n", "never closes"),
    ("run.sh", "accelerate launch --config_file missing.yaml trl/scripts/grpo.py --num_generations 8\n",
     "not here"),
    ("run.sh", "trl grpo --config absent.yaml\n", "absent.yaml does not exist"),
    ("run.sh", "trl grpo stray --num_generations 8\n", "follows no option"),
])
def test_a_trl_source_that_cannot_be_read_is_exit_2_naming_file_and_fix(name: str, text: str, says: str,
                                                                         tmp_path: Path) -> None:
    source = tmp_path / name
    source.write_text(text, encoding="utf-8")
    with pytest.raises(ImportProblem) as err:
        trl.import_source(source, environ={"HOME": str(tmp_path)})
    assert says in str(err.value) and "hint:" in str(err.value)


def test_a_config_file_the_script_names_that_is_not_text_is_exit_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00num_generations: 8\n")
    source = tmp_path / "run.sh"
    source.write_text("trl grpo --config binary.yaml\n", encoding="utf-8")
    with pytest.raises(ImportProblem, match=r"binary.yaml: cannot be read") as err:
        trl.import_source(source, environ={"HOME": str(tmp_path)})
    assert "hint: give the GRPOConfig YAML that --config names" in str(err.value)


@pytest.mark.parametrize("flags,says", [
    ("--train_batch_size", "needs a value"),
    ("--train_batch_size many", "expects int values"),
    ("--advantage_estimator grpoo", "is not one of"),
    ("--pretrain m stray", "follows no flag"),
])
def test_an_openrlhf_flag_that_cannot_be_read_is_exit_2(flags: str, says: str, tmp_path: Path) -> None:
    source = tmp_path / "train.sh"
    source.write_text(f"python3 -m openrlhf.cli.train_ppo_ray --pretrain m {flags}\n", encoding="utf-8")
    with pytest.raises(ImportProblem, match=says):
        openrlhf.import_source(source, version="0.8.11", environ={"HOME": str(tmp_path)})


def test_a_script_without_the_openrlhf_command_is_exit_2(tmp_path: Path) -> None:
    source = tmp_path / "train.sh"
    source.write_text("python3 -m openrlhf.cli.train_sft --pretrain m\n", encoding="utf-8")
    with pytest.raises(ImportProblem, match="no `openrlhf.cli.train_ppo_ray` command"):
        openrlhf.import_source(source, version="0.8.11", environ={"HOME": str(tmp_path)})


def test_a_process_count_that_is_not_a_number_names_the_file(tmp_path: Path) -> None:
    source = tmp_path / "grpo.yaml"
    source.write_text(pub.TRL_CLIS_GRPO_CONFIG + "num_processes: four\n", encoding="utf-8")
    with pytest.raises(ImportProblem, match=r"grpo.yaml: num_processes: must be a whole number"):
        trl.import_source(source, environ={"HOME": str(tmp_path)})


def test_an_older_trl_config_is_read_against_the_builtin_0_19_1_table(tmp_path: Path) -> None:
    text = pub.TRL_CLIS_GRPO_CONFIG.replace("accuracy_reward", "think_format_reward") + "max_prompt_length: 700\n"
    spec = _import(trl, tmp_path, "grpo.yaml", text, version="0.19.1")
    assert spec["trainer"]["version"] == "0.19.1" and spec["trainer"]["defaults"] == "builtin"
    assert spec["training"]["max_prompt_tokens"] == 700
    assert spec["trainer"]["config"]["vllm_mode"] == "server"  # 0.19's default (1.16's is colocate)
    with pytest.raises(ImportProblem, match="max_prompt_length"):  # TRL 1.16 has no such field any more
        _import(trl, tmp_path, "grpo.yaml", text, version="1.16.0")


def test_an_installed_openrlhf_is_read_from_its_source_text_not_imported(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "openrlhf"
    (package / "cli").mkdir(parents=True)
    # it would fail to import (no torch, ray here): only its text is read
    (package / "cli" / "train_ppo_ray.py").write_text(
        "import torch, ray\nimport argparse\nparser = argparse.ArgumentParser()\n"
        'parser.add_argument("--pretrain", type=str, default=None)\n'
        'parser.add_argument("--train_batch_size", type=int, default=64)\n'
        'parser.add_argument("--colocate_all_models", action="store_true", default=False)\n', encoding="utf-8")
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda n: "9.9.9" if n == "openrlhf" else real(n))
    monkeypatch.setattr(openrlhf, "package_dir", lambda n: package if n == "openrlhf" else None)
    options, version, origin = openrlhf.table(None)
    assert (version, origin) == ("9.9.9", "installed")
    assert options["train_batch_size"].default == 64 and options["colocate_all_models"].flag
    assert set(options) == {"pretrain", "train_batch_size", "colocate_all_models"}


def test_colocated_vllm_memory_counts_the_model_states_as_the_launch_shards_them(tmp_path: Path) -> None:
    base = ("model_name_or_path: Qwen/Qwen2.5-1.5B-Instruct\ndataset_name: trl-lib/tldr\nreward_funcs:\n"
            "- accuracy_reward\nuse_vllm: true\nvllm_mode: colocate\nvllm_gpu_memory_utilization: 0.6\n"
            "per_device_train_batch_size: 2\nnum_generations: 8\nnum_processes: 8\n")
    ddp = _static(tmp_path, _import(trl, tmp_path, "ddp.yaml", base))[1]
    zero3 = _static(tmp_path, _import(trl, tmp_path, "z3.yaml", base + "accelerate_config: zero3\n"))[1]
    # 1.5B: 18 B x P = 27 GB of states on every GPU under DDP does not fit beside vLLM's 48 GB of 80;
    # sharded over 8 GPUs by ZeRO-3 it does
    assert ddp["trainer.trl.memory"] == "fail" and zero3["trainer.trl.memory"] == "pass"


@pytest.mark.parametrize("command,processes,machines", [
    ("torchrun --nproc_per_node=6 --nnodes 2 train.py", 12, 2),
    ("python train.py", 1, 1),
    ("accelerate launch --num_processes=8 --num_machines 2 -m open_r1.grpo", 8, 2),
])
def test_the_launchers_process_count(command: str, processes: int, machines: int, tmp_path: Path) -> None:
    (tmp_path / "grpo.yaml").write_text(pub.TRL_CLIS_GRPO_CONFIG, encoding="utf-8")
    spec = _import(trl, tmp_path, "run.sh", f"{command} --config grpo.yaml --num_generations 4\n")
    launcher = spec["trainer"]["launcher"]
    assert (launcher["num_processes"], launcher["num_machines"]) == (processes, machines)
    assert spec["trainer"]["config"]["num_generations"] == 4 and spec["hardware"]["nodes"] == machines


def test_an_open_r1_recipe_yaml_is_read_with_open_r1s_own_arguments(tmp_path: Path) -> None:
    """A recipe of open-r1's (huggingface/open-r1 recipes/*/grpo/config_demo_code.yaml, less the keys
    TRL 0.19 removed) holds open-r1's own script arguments beside GRPOConfig's: imported on its own it
    is read as open-r1's grpo.py reads it, and the spec says so, instead of an 'unknown option'."""
    recipe = ("model_name_or_path: Qwen/Qwen2.5-1.5B-Instruct\ndataset_name: open-r1/verifiable-coding-problems"
              "-python-10k\nsystem_prompt: \"You are a helpful AI Assistant.\"\nbeta: 0.01\nuse_vllm: true\n"
              "gradient_accumulation_steps: 4\nmax_prompt_length: 1024\nmax_completion_length: 2048\n"
              "max_steps: 500\nnum_generations: 14\nper_device_train_batch_size: 16\nreward_funcs:\n- code\n"
              "- format\nreward_weights:\n- 1.0\n- 0.1\nsave_steps: 50\nsave_total_limit: 1\n")
    source = tmp_path / "config_demo_code.yaml"
    source.write_text(recipe, encoding="utf-8")
    imported = trl.import_source(source, version="0.19.1", environ={"HOME": str(tmp_path)})
    assert any("open-r1 recipe" in n and "system_prompt" in n for n in imported.notes), imported.notes
    assert imported.spec["trainer"]["config"]["reward_funcs"] == ["code", "format"]
    plain = tmp_path / "plain.yaml"
    plain.write_text("num_generations: 8\nsystem_prompt_typo: x\n", encoding="utf-8")
    with pytest.raises(ImportProblem, match="system_prompt_typo"):
        trl.import_source(plain, version="0.19.1", environ={"HOME": str(tmp_path)})


def test_a_hand_edited_length_limit_that_is_no_number_is_an_error_naming_the_field(tmp_path: Path) -> None:
    """max_len / vllm_max_model_length written as a word: the lengths checks name the field (they
    reported a bug in the check); a number written as text is read."""
    spec = _import(openrlhf, tmp_path, "train.sh", pub.OPENRLHF_TRAIN_GRPO_RAY_HYBRID_ENGINE_K3, version="0.8.11")
    spec["trainer"]["config"]["max_len"] = "many"
    assert _static(tmp_path, spec)[1]["trainer.openrlhf.lengths"] == "error"
    spec["trainer"]["config"]["max_len"] = "1024"
    assert _static(tmp_path, spec)[1]["trainer.openrlhf.lengths"] == "fail"  # below 1024 + 1024
    spec = _import(trl, tmp_path, "grpo.yaml", pub.TRL_CLIS_GRPO_CONFIG
                   + "use_vllm: true\nvllm_mode: colocate\nvllm_max_model_length: long\n")
    path = tmp_path / "trl.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    report = tmp_path / "trl-report.json"
    main(["check", str(path), "--level", "static", "--format", "json", "--output", str(report)])
    lengths = next(r for r in json.loads(report.read_text(encoding="utf-8"))["results"]
                   if r["id"] == "trainer.trl.lengths")
    assert lengths["status"] == "error" and "trainer.config.vllm_max_model_length" in lengths["found"], lengths
    assert "bug in the check" not in lengths["remediation"]
