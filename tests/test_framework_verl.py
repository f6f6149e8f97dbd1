"""`preflight import verl`: verl's published GRPO examples imported, round-tripped and passing the
static gate; Hydra's override grammar; unknown keys refused with verl's own key names; defaults from
an installed verl or the built-in table."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from framework_corpus.verl import gsm8k_files, script, write_verl_parquet
from framework_sources.published import (
    VERL_RUN_QWEN2_5_3B_GSM8K_GRPO_LORA,
    VERL_RUN_QWEN2_7B,
    VERL_RUN_QWEN2_7B_MATH,
)

from preflight.cli import main
from preflight.frameworks import verl
from preflight.frameworks.base import ImportProblem
from preflight.frameworks.hydra import OverrideError, parse_override, parse_value
from preflight.spec import load_spec

PUBLISHED = {
    "run_qwen2-7b.sh": VERL_RUN_QWEN2_7B,
    "run_qwen2-7b_math.sh": VERL_RUN_QWEN2_7B_MATH,
    "run_qwen2_5-3b_gsm8k_grpo_lora.sh": VERL_RUN_QWEN2_5_3B_GSM8K_GRPO_LORA,
}


def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$HOME with the data files verl's examples name, in verl's format."""
    monkeypatch.setenv("HOME", str(tmp_path))
    gsm8k_files()(tmp_path)
    write_verl_parquet(tmp_path / "data/math/train.parquet", 7500, "lighteval/MATH")
    write_verl_parquet(tmp_path / "data/math/test.parquet", 5000, "lighteval/MATH", start=7500)
    return tmp_path


def _import(tmp_path: Path, name: str, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, Path, str]:
    source = tmp_path / name
    source.write_text(text, encoding="utf-8")
    spec = tmp_path / (name + ".yaml")
    code = main(["import", "verl", str(source), "-o", str(spec)])
    return code, spec, capsys.readouterr().err


def _static(spec: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict[str, Any]]]:
    code = main(["check", str(spec), "--level", "static", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    return code, {r["id"]: r for r in report["results"]}


# --- the published examples ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_a_published_example_imports_round_trips_and_keeps_its_values(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    home = _home(tmp_path, monkeypatch)
    code, spec_path, err = _import(home, name, PUBLISHED[name], capsys)
    assert code == 0, err
    text = spec_path.read_text(encoding="utf-8")
    assert text.startswith("# Imported by `preflight import verl")
    spec = load_spec(spec_path)  # the schema accepts it
    config = spec.get("trainer.config")
    assert spec.framework == "verl" and spec.get("trainer.defaults") in ("builtin", "installed")
    assert spec.get("trainer.command")[:3] == ["python3", "-m", "verl.trainer.main_ppo"]
    prompts, n = config["data"]["train_batch_size"], config["actor_rollout_ref"]["rollout"]["n"]
    assert spec.get("training.batch_size") == prompts * n and spec.get("training.group_size") == n == 5
    assert spec.get("training.micro_batch_size") == config["actor_rollout_ref"]["actor"]["ppo_micro_batch_size_per_gpu"]
    assert spec.get("training.gradient_checkpointing") is True
    assert spec.get("algorithm.kl_beta") == 0.001 and spec.get("distributed.tensor_parallel_size") == 2
    assert spec.get("monitoring.sinks") == ["jsonl", "stdout", "wandb"]
    assert spec.get("data.train") == str(home / "data/gsm8k/train.parquet")
    # max_steps from the counted rows: verl's dataloader drops the last partial batch
    rows = 7473 + (7500 if "math" in name else 0)
    assert spec.get("training.max_steps") == rows // prompts * 15
    # verl keeps every checkpoint by default: keep_last is every save, so the disk check counts them all
    assert spec.get("checkpoints.keep_last") == spec.get("training.max_steps") // 20
    # importing again gives the same file
    again = home / "again.yaml"
    assert main(["import", "verl", str(home / name), "-o", str(again)]) == 0
    assert again.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_a_published_example_passes_every_rule_at_static_level(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    home = _home(tmp_path, monkeypatch)
    _, spec_path, _ = _import(home, name, PUBLISHED[name], capsys)
    code, results = _static(spec_path, capsys)
    blocking = {k: r["found"] for k, r in results.items() if r["status"] in ("fail", "error")}
    # every verl rule ran on the real config and data, and passed (retention only warns: verl keeps all)
    for check_id in ("trainer.verl.batch", "trainer.verl.log_prob", "trainer.verl.rollout_memory",
                     "trainer.verl.parallel", "trainer.verl.lengths", "trainer.verl.data", "trainer.verl.resume"):
        assert results[check_id]["status"] == "pass", (check_id, results[check_id]["found"])
    assert results["trainer.verl.retention"]["status"] == "warn"
    assert results["config.runner"]["status"] == "skip" and "launched by verl" in results["config.runner"]["found"]
    # the built-in runner's memory estimate does not apply (verl's own split is trainer.verl.rollout_memory)
    assert results["hw.memory.gpu"]["status"] == "skip" and "launched by verl" in results["hw.memory.gpu"]["found"]
    assert blocking == {} and code == 0, blocking


def test_printed_to_stdout_without_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    home = _home(tmp_path, monkeypatch)
    (home / "run.sh").write_text(VERL_RUN_QWEN2_7B, encoding="utf-8")
    assert main(["import", "verl", str(home / "run.sh")]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["trainer"]["framework"] == "verl"


# --- Hydra's grammar -------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [
    ("null", None), ("True", True), ("false", False), ("1e-6", 1e-6), ("1024", 1024), ("0.6", 0.6),
    ("error", "error"), ("[console,wandb]", ["console", "wandb"]), ("['a', 'b']", ["a", "b"]),
    ('["console","wandb"]', ["console", "wandb"]), ("[]", []), ("{a: 1, b: x}", {"a": 1, "b": "x"}),
    ("'1024'", "1024"), ("${oc.env:HOME}", "${oc.env:HOME}"), ("low_var_kl", "low_var_kl"),
])
def test_override_values_parse_as_hydra_parses_them(raw: str, value: Any) -> None:
    assert parse_value(raw) == value


def test_additions_deletions_and_refusals(tmp_path: Path) -> None:
    assert parse_override("+trainer.val_before_train=False").op == "add"
    assert parse_override("++a.b=1").op == "force"
    assert parse_override("~trainer.logger").op == "delete"
    with pytest.raises(OverrideError):
        parse_override("trainer.nnodes")  # no value
    source = tmp_path / "run.sh"
    source.write_text(script(**{"+trainer.extra_flag": "1", "~trainer.logger": None}).replace(
        "+trainer.extra_flag=1", "+trainer.extra_flag=1 \\\n    ~trainer.logger"), encoding="utf-8")
    imported = verl.import_source(source, environ={"HOME": str(tmp_path)})
    config = imported.spec["trainer"]["config"]
    assert config["trainer"]["extra_flag"] == 1 and "logger" not in config["trainer"]


def test_an_unknown_key_is_exit_2_with_the_nearest_verl_key_and_the_plus_rule(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "run.sh"
    source.write_text(script(actor_rollout_ref__actor__ppo_micro_batch_size_per_gpus="8"), encoding="utf-8")
    assert main(["import", "verl", str(source)]) == 2
    err = capsys.readouterr().err
    written = next(i for i, line in enumerate(source.read_text().splitlines(), 1) if "_per_gpus=" in line)
    assert str(source) in err and f"line {written}:" in err  # the line the key is written on
    assert "'actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu'" in err
    assert "+actor_rollout_ref.actor.ppo_micro_batch_size_per_gpus=" in err


def test_adding_a_key_that_exists_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "run.sh"
    source.write_text("python3 -m verl.trainer.main_ppo +trainer.nnodes=2 actor_rollout_ref.model.path=m\n",
                      encoding="utf-8")
    with pytest.raises(ImportProblem, match="already in the configuration"):
        verl.import_source(source, environ={})


def test_an_unset_variable_in_a_number_names_the_key_and_the_variable(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "run.sh"
    source.write_text(script(data__train_batch_size="$BATCH"), encoding="utf-8")
    assert main(["import", "verl", str(source)]) == 2
    err = capsys.readouterr().err
    assert "data.train_batch_size" in err and "$BATCH" in err and "export it" in err


def test_a_script_without_verls_trainer_and_a_missing_rollout_name(tmp_path: Path) -> None:
    source = tmp_path / "run.sh"
    source.write_text("echo hello\n", encoding="utf-8")
    with pytest.raises(ImportProblem, match="verl.trainer.main_ppo"):
        verl.import_source(source, environ={})
    source.write_text(script(actor_rollout_ref__rollout__name=None), encoding="utf-8")
    with pytest.raises(ImportProblem, match="rollout.name"):
        verl.import_source(source, environ={"HOME": str(tmp_path)})


def test_interpolations_resolve_against_the_overrides(tmp_path: Path) -> None:
    source = tmp_path / "run.sh"
    source.write_text(script(), encoding="utf-8")
    config = verl.import_source(source, environ={"HOME": str(tmp_path)}).spec["trainer"]["config"]
    assert config["trainer"]["default_local_dir"] == "checkpoints/verl_grpo_example_gsm8k/qwen2_5_0_5b"
    assert config["actor_rollout_ref"]["rollout"]["prompt_length"] == 512  # ${oc.select:data.max_prompt_length,512}


# --- YAML configs, versions and the installed verl -------------------------------------------------


def test_a_hydra_yaml_config_imports_and_refuses_unknown_keys(tmp_path: Path) -> None:
    gsm8k_files(train_rows=512, test_rows=64)(tmp_path)
    config = {"data": {"train_files": f"{tmp_path}/data/gsm8k/train.parquet",
                       "val_files": f"{tmp_path}/data/gsm8k/test.parquet", "train_batch_size": 64},
              "actor_rollout_ref": {"model": {"path": "Qwen/Qwen2.5-0.5B-Instruct"},
                                    "actor": {"ppo_mini_batch_size": 16, "ppo_micro_batch_size_per_gpu": 2},
                                    "rollout": {"name": "vllm", "n": 4, "log_prob_micro_batch_size_per_gpu": 4}},
              "trainer": {"total_epochs": 3}}
    source = tmp_path / "grpo.yaml"
    source.write_text(yaml.safe_dump(config), encoding="utf-8")
    spec = verl.import_source(source, environ={}).spec
    assert spec["training"]["batch_size"] == 256 and spec["training"]["max_steps"] == 512 // 64 * 3
    assert "command" not in spec["trainer"]
    config["trainer"]["total_epoch"] = 3
    source.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(ImportProblem, match="trainer.total_epochs"):
        verl.import_source(source, environ={})


def test_an_unknown_builtin_version_is_exit_2_naming_the_known_ones(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "run.sh"
    source.write_text(script(), encoding="utf-8")
    assert main(["import", "verl", str(source), "--version", "0.0.1"]) == 2
    assert verl.BUILTIN_VERSION in capsys.readouterr().err


def test_the_installed_verls_own_defaults_are_used_without_importing_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    config_dir = site / "verl" / "trainer" / "config"
    config_dir.mkdir(parents=True)
    (site / "verl" / "__init__.py").write_text("raise RuntimeError('imported')\n", encoding="utf-8")
    defaults = yaml.safe_load((Path(verl.__file__).parent / "defaults/verl-0.9.1.yaml").read_text(encoding="utf-8"))
    defaults["actor_rollout_ref"]["rollout"]["gpu_memory_utilization"] = 0.42
    (config_dir / verl.GENERATED).write_text(yaml.safe_dump(defaults), encoding="utf-8")
    dist = site / "verl-0.8.5.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: verl\nVersion: 0.8.5\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    source = tmp_path / "run.sh"
    source.write_text(script(actor_rollout_ref__rollout__gpu_memory_utilization=None), encoding="utf-8")
    spec = verl.import_source(source, environ={"HOME": str(tmp_path)}).spec
    assert spec["trainer"]["defaults"] == "installed" and spec["trainer"]["version"] == "0.8.5"
    assert spec["trainer"]["config"]["actor_rollout_ref"]["rollout"]["gpu_memory_utilization"] == 0.42
    assert "verl" not in sys.modules


def test_relative_paths_are_taken_from_where_verl_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "verl-checkout"
    gsm8k_files(train_rows=2560, test_rows=64)(work)
    (work / "run.sh").write_text(script(data__train_files="data/gsm8k/train.parquet",
                                        data__val_files="data/gsm8k/test.parquet"), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # preflight runs from another folder than the script's
    assert main(["import", "verl", str(work / "run.sh"), "-o", "spec.yaml"]) == 0
    spec = load_spec(elsewhere / "spec.yaml")
    assert spec.get("data.train") == str(work / "data/gsm8k/train.parquet")
    assert spec.get("storage.checkpoint_dir").startswith(str(work / "checkpoints"))
    assert spec.get("training.max_steps") == 2560 // 256 * 2
    _, results = _static(elsewhere / "spec.yaml", capsys)
    assert results["trainer.verl.data"]["status"] == "pass", results["trainer.verl.data"]["found"]


def test_a_default_value_is_expanded_as_bash_expands_it() -> None:
    """preflight.frameworks.shell: the word of ${VAR:-word} loses its quotes and has its own
    expansions done (verl's DAPO recipes write RAY_ADDRESS=${RAY_ADDRESS:-"http://localhost:8265"}
    and TRAIN_FILE=${TRAIN_FILE:-"${RAY_DATA_HOME}/data/dapo-math-17k.parquet"})."""
    from preflight.frameworks.shell import read_script

    text = ('RAY_DATA_HOME=${RAY_DATA_HOME:-"${HOME}/verl"}\n'
            'TRAIN_FILE=${TRAIN_FILE:-"${RAY_DATA_HOME}/data/dapo-math-17k.parquet"}\n'
            "NNODES=${NNODES:-'4'}\n"
            'python3 -m verl.trainer.main_ppo data.train_files="${TRAIN_FILE}" trainer.nnodes=$NNODES\n')
    argv = read_script(text, environ={"HOME": "/home/u"}).commands[0].argv
    assert argv[3:] == ["data.train_files=/home/u/verl/data/dapo-math-17k.parquet", "trainer.nnodes=4"]


def test_import_replaces_an_earlier_import_but_not_a_spec_someone_wrote(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "run.sh"
    source.write_text(script(), encoding="utf-8")
    spec = tmp_path / "run.yaml"
    spec.write_text("run: {name: mine}\n", encoding="utf-8")
    assert main(["import", "verl", str(source), "-o", str(spec)]) == 2
    assert "--force" in capsys.readouterr().err and spec.read_text(encoding="utf-8") == "run: {name: mine}\n"
    assert main(["import", "verl", str(source), "-o", str(spec), "--force"]) == 0
    assert main(["import", "verl", str(source), "-o", str(spec)]) == 0  # an earlier import is replaced
