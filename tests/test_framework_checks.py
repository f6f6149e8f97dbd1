"""The checks for runs a framework launches: one breaking case per verl rule (an otherwise clean
import that breaks only that rule), trainer.stack on fake package metadata, the built-in runner's
checks skipping, and `preflight launch` running the framework's command only through the gate."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes import FakePackageProbe, gpu_probes
from framework_corpus import CorpusCase, check_case, import_case
from framework_corpus.verl import gsm8k_files, script

from preflight.cli import main
from preflight.engine import REGISTRY, Context
from preflight.errors import UsageError
from preflight.result import Report, Result, Status
from preflight.rundir import attestation_path
from preflight.service.launch import framework_command, launch
from preflight.spec import load_spec

VERL_RULE_CHECKS = {d.id for d in REGISTRY.values() if d.fn.__module__ == "preflight.checks.trainer_verl"}


def _case(check_id: str, files: Any = None, **changes: str | None) -> CorpusCase:
    return CorpusCase(f"rule-{check_id}", "verl", "-", "", "run.sh", script(**changes), check_id,
                      files or gsm8k_files())


# (check id, rule's field, status, the change that breaks only it)
BREAKING: list[tuple[str, str, str, dict[str, str | None]]] = [
    ("trainer.verl.batch", "trainer.config", "fail", {"data__train_batch_size": "250"}),
    ("trainer.verl.batch", "training.micro_batch_size", "fail",
     {"actor_rollout_ref__actor__ppo_micro_batch_size_per_gpu": "16"}),
    ("trainer.verl.batch", "training.group_size", "warn", {"actor_rollout_ref__rollout__n": "1",
                                                          "actor_rollout_ref__actor__ppo_micro_batch_size_per_gpu": "4"}),
    ("trainer.verl.log_prob", "trainer.config", "fail",
     {"actor_rollout_ref__ref__log_prob_micro_batch_size_per_gpu": None}),
    ("trainer.verl.rollout_memory", "trainer.config", "fail",
     {"actor_rollout_ref__model__path": "Qwen/Qwen2.5-14B-Instruct",
      "actor_rollout_ref__rollout__gpu_memory_utilization": "0.85",
      "actor_rollout_ref__rollout__tensor_model_parallel_size": "2"}),
    ("trainer.verl.parallel", "distributed.tensor_parallel_size", "fail",
     {"actor_rollout_ref__rollout__tensor_model_parallel_size": "4", "trainer__n_gpus_per_node": "6",
      "trainer__nnodes": "2",
      "data__train_batch_size": "192", "actor_rollout_ref__actor__ppo_mini_batch_size": "48",
      "actor_rollout_ref__actor__ppo_micro_batch_size_per_gpu": "4"}),
    ("trainer.verl.parallel", "distributed.sequence_parallel_size", "fail",
     {"actor_rollout_ref__actor__ulysses_sequence_parallel_size": "2",
      "actor_rollout_ref__model__use_remove_padding": "False"}),
    ("trainer.verl.lengths", "training.max_response_tokens", "fail",
     {"actor_rollout_ref__rollout__max_model_len": "1024"}),
    ("trainer.verl.data", "data.train", "fail", {}),
    ("trainer.verl.data", "data.val", "fail", {}),
    ("trainer.verl.retention", "checkpoints.keep_last", "warn", {"trainer__max_actor_ckpt_to_keep": "null"}),
    ("trainer.verl.resume", "trainer.config", "fail", {}),
]


def _files_for(check_id: str, field: str):  # type: ignore[no-untyped-def]
    if check_id == "trainer.verl.data" and field == "data.train":
        return gsm8k_files(data_source="my_math")
    if check_id == "trainer.verl.data":
        def write(root: Path) -> None:
            gsm8k_files()(root)
            from framework_corpus.verl import write_verl_parquet
            write_verl_parquet(root / "data/gsm8k/test.parquet", 1319, raw=True, start=7473)
        return write
    if check_id == "trainer.verl.resume":
        def resume(root: Path) -> None:
            gsm8k_files()(root)
            folder = root / "checkpoints/verl_grpo_example_gsm8k/qwen2_5_0_5b"
            folder.mkdir(parents=True)
            (folder / "latest_checkpointed_iteration.txt").write_text("58", encoding="utf-8")  # the last step
        return resume
    return None


@pytest.mark.parametrize(("check_id", "field", "status", "changes"), BREAKING,
                         ids=[f"{c} {f} [{s}]" for c, f, s, _ in BREAKING])
def test_breaking_one_verl_rule_is_blocked_by_its_check(check_id: str, field: str, status: str,
                                                        changes: dict[str, str | None], tmp_path: Path) -> None:
    case = _case(check_id, _files_for(check_id, field), **changes)
    code, report = check_case(case, tmp_path)
    results = {r["id"]: r for r in report["results"]}
    assert results[check_id]["status"] == status, results[check_id]
    others = {k for k, r in results.items() if r["status"] in ("fail", "error") and k != check_id}
    # the common rule on the mapped fields says the same for an indivisible batch
    also = {"config.batch.divisibility"} if changes.get("data__train_batch_size") == "250" else set()
    assert others <= also, {k: results[k]["found"] for k in others}
    quiet = {k for k in VERL_RULE_CHECKS - {check_id} if results[k]["status"] not in ("pass", "skip")}
    assert quiet == set(), {k: results[k]["found"] for k in quiet}
    assert code == (1 if status == "fail" else 0 if not others else 1)


def test_every_verl_rule_has_a_breaking_case() -> None:
    rules = {(d.id, r.field) for d in REGISTRY.values() if d.id in VERL_RULE_CHECKS for r in d.rules}
    assert rules == {(c, f) for c, f, _, _ in BREAKING}


def test_the_clean_base_passes_every_verl_rule(tmp_path: Path) -> None:
    code, report = check_case(_case("none"), tmp_path)
    results = {r["id"]: r["status"] for r in report["results"]}
    assert code == 0 and all(results[c] == "pass" for c in VERL_RULE_CHECKS - {"trainer.verl.retention"})


def test_a_missing_data_file_fails_instead_of_passing(tmp_path: Path) -> None:
    code, report = check_case(_case("trainer.verl.data", files=lambda root: None), tmp_path)
    data = next(r for r in report["results"] if r["id"] == "trainer.verl.data")
    assert code == 1 and data["status"] == "fail" and "not found" in data["found"]


# --- the built-in runner's checks and trainer.stack ------------------------------------------------


def _spec(tmp_path: Path):  # type: ignore[no-untyped-def]
    return load_spec(import_case(_case("none"), tmp_path))


def test_the_built_in_runners_checks_skip_and_say_why(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    ctx = Context(spec=spec, probes=gpu_probes(), level="active")
    for check_id in ("config.runner", "config.unused", "storage.run_dir", "algo.smoke", "monitor.rules"):
        out = REGISTRY[check_id].fn(ctx)
        assert out.status == Status.SKIP and "launched by verl" in out.found, check_id


def _stack(spec: Any, versions: dict[str, str]) -> Any:
    return REGISTRY["trainer.stack"].fn(Context(spec=spec, probes=gpu_probes(packages=FakePackageProbe(versions))))


def test_trainer_stack_reads_the_framework_and_its_declared_packages_from_metadata(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    good = {"verl": "0.9.1", "vllm": "0.24.0", "torch": "2.11.0", "transformers": "5.9.0", "ray": "2.60.0",
            "tensordict": "0.10.0"}
    assert _stack(spec, good).status == Status.PASS
    missing = _stack(spec, {k: v for k, v in good.items() if k != "verl"})
    assert missing.status == Status.FAIL and "verl is not installed" in missing.found
    old_vllm = _stack(spec, {**good, "vllm": "0.6.3.post1"})  # verl #245
    assert old_vllm.status == Status.FAIL and "vllm 0.6.3.post1 is outside" in old_vllm.found
    assert "pip install 'vllm==0.24.0'" in old_vllm.remediation
    new_tf = _stack(spec, {**good, "transformers": "5.25.0"})  # verl #5937's kind of mismatch
    assert new_tf.status == Status.FAIL
    other = _stack(spec, {**good, "verl": "0.8.0"})
    assert other.status == Status.WARN and "0.9.1's defaults" in other.found


def test_trainer_stack_skips_for_the_built_in_runner(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text("run: {name: plain}\n", encoding="utf-8")
    out = REGISTRY["trainer.stack"].fn(Context(spec=load_spec(spec_path), probes=gpu_probes()))
    assert out.status == Status.SKIP


# --- launch ----------------------------------------------------------------------------------------


def _report(status: Status, level: str = "node") -> Report:
    return Report(spec_path="spec.yaml", spec_sha256="0" * 64, run_name="v", level=level, tool_version="t",
                  started_at="2025-01-01T00:00:00+00:00", duration_s=0.0, fail_on="fail",
                  results=[Result(id="c", title="c", status=status, level=level, item="hardware")], checklist=[])


def _launchable(tmp_path: Path, command: list[str]) -> Path:
    spec_path = import_case(_case("none"), tmp_path)
    doc = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    doc["trainer"]["command"] = command
    doc["trainer"]["env"] = {"PREFLIGHT_TEST_MARK": "from-spec"}
    spec_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return spec_path


def test_launch_runs_the_frameworks_command_in_its_workdir_only_through_the_gate(tmp_path: Path) -> None:
    marker = "import os; open('ran.txt', 'w').write(os.environ['PREFLIGHT_TEST_MARK'])"
    spec = load_spec(_launchable(tmp_path, [sys.executable, "-c", marker]))
    for closed in (_report(Status.FAIL), _report(Status.PASS, level="static")):
        with pytest.raises(UsageError, match="gate has not passed"):
            launch(spec, closed)
    assert not (tmp_path / "ran.txt").exists()
    launched = launch(spec, _report(Status.PASS))
    deadline = time.time() + 30
    while not (tmp_path / "ran.txt").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert (tmp_path / "ran.txt").read_text(encoding="utf-8") == "from-spec"
    assert launched.log.name == "verl.log" and launched.log.is_file()
    assert attestation_path(spec.path).is_file()  # the same attestation as a runner launch


def test_a_spec_without_a_command_cannot_be_launched(tmp_path: Path) -> None:
    spec_path = _launchable(tmp_path, ["x"])
    doc = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    del doc["trainer"]["command"]
    spec_path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(UsageError, match="trainer.command is not set"):
        launch(load_spec(spec_path), _report(Status.PASS))


def test_launch_dry_run_prints_the_command_and_starts_nothing(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = _launchable(tmp_path, [sys.executable, "-c", "open('ran.txt', 'w')"])
    shown = framework_command(load_spec(spec_path)).shown()
    assert shown.startswith(f"cd {tmp_path}") and "PREFLIGHT_TEST_MARK=from-spec" in shown
    code = main(["launch", str(spec_path), "--dry-run"])
    out = capsys.readouterr().out
    assert "would" in out and "PREFLIGHT_TEST_MARK=from-spec" in out and code in (0, 1)
    assert not (tmp_path / "ran.txt").exists()
    assert json.dumps(shown)  # printable as one line


def test_the_consoles_launch_starts_the_frameworks_command_through_the_same_gate(tmp_path: Path) -> None:
    """The TUI's launch button calls PreflightSession.launch, which is the service's launch: a spec
    with trainer: starts the framework's command, not the runner."""
    from preflight.tui.session import (
        PreflightSession,  # the session module itself has no Textual import
    )

    marker = "open('ran.txt', 'w').write('console')"
    session = PreflightSession(_launchable(tmp_path, [sys.executable, "-c", marker]))
    with pytest.raises(UsageError, match="gate has not passed"):
        session.launch()  # no report yet: the gate is closed
    session.report = _report(Status.PASS)
    launched = session.launch()
    deadline = time.time() + 30
    while not (tmp_path / "ran.txt").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert (tmp_path / "ran.txt").read_text(encoding="utf-8") == "console" and launched.log.name == "verl.log"


def test_an_imported_spec_validates_and_an_absent_importer_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from preflight.service import importing

    spec_path = import_case(_case("none"), tmp_path)
    assert main(["validate", str(spec_path)]) == 0  # the round trip: import, then validate
    capsys.readouterr()
    monkeypatch.setattr(importing, "FRAMEWORKS", (*importing.FRAMEWORKS, "nosuchframework"))
    with pytest.raises(UsageError, match="no importer for nosuchframework"):
        importing.importer("nosuchframework")
    with pytest.raises(UsageError, match="unknown framework"):
        importing.importer("deepspeed-chat")


def test_rollout_memory_uses_the_gpus_nvml_reports_at_node_level(tmp_path: Path) -> None:
    from fakes import FakeGpuProbe, GpuInfo, GpuInventory

    case = _case("trainer.verl.rollout_memory", actor_rollout_ref__model__path="Qwen/Qwen2.5-7B-Instruct",
                 actor_rollout_ref__rollout__gpu_memory_utilization="0.8")
    spec = load_spec(import_case(case, tmp_path))
    check = REGISTRY["trainer.verl.rollout_memory"].fn
    # 0.8 x 85.5 GB + 7B x (12 B actor + 2 B reference) / 8 + 2 GB fits an H100 (NVML: 85.5 GB) ...
    fits = check(Context(spec=spec, probes=gpu_probes(), level="node"))
    assert fits.status == Status.PASS and "H100" in fits.expected
    # ... not a 48 GB GPU (verl #2858's A5880s), whatever hardware.min_vram_gb says
    small = GpuInventory("550.54.15", "12.4", [GpuInfo(i, "NVIDIA RTX 5880", 48 * 10**9, uuid=f"G{i}",
                                                        uncorrected_ecc_errors=0) for i in range(8)])
    over = check(Context(spec=spec, probes=gpu_probes(gpu=FakeGpuProbe(small)), level="node"))
    assert over.status == Status.FAIL and "gpu_memory_utilization to at most 0.70" in over.remediation


def test_trainer_checks_are_planned_only_for_their_frameworks_specs(tmp_path: Path) -> None:
    from preflight.engine import plan

    plain = tmp_path / "plain.yaml"
    plain.write_text("run: {name: plain}\n", encoding="utf-8")
    assert not [d.id for d in plan(load_spec(plain), "active") if d.id.startswith("trainer.")]
    ids = {d.id for d in plan(_spec(tmp_path / "v"), "active") if d.id.startswith("trainer.")}
    assert ids == VERL_RULE_CHECKS | {"trainer.stack"}  # no other framework's checks


def _edited(tmp_path: Path, edit: Any) -> dict[str, dict[str, Any]]:
    """A published verl example imported, then hand-edited by ``edit(spec)``, checked at static level."""
    spec_path = import_case(_case("trainer.verl.batch"), tmp_path)
    spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
    edit(spec)
    spec_path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    report = tmp_path / "report.json"
    main(["check", str(spec_path), "--level", "static", "--format", "json", "--output", str(report)])
    return {r["id"]: r for r in json.loads(report.read_text(encoding="utf-8"))["results"]}


def test_a_hand_edited_number_written_as_text_is_read_never_taken_for_zero(tmp_path: Path) -> None:
    """'4096' (quoted) is read as 4096, so the lengths over max_model_len fail; they passed as 0 + 0."""
    def edit(spec: dict[str, Any]) -> None:
        config = spec["trainer"]["config"]
        config["data"]["max_prompt_length"], config["data"]["max_response_length"] = "4096", "8192"
        config["actor_rollout_ref"]["rollout"]["max_model_len"] = "4096"
    lengths = _edited(tmp_path, edit)["trainer.verl.lengths"]
    assert lengths["status"] == "fail" and "= 12288" in lengths["found"], lengths


@pytest.mark.parametrize("key,value", [("n_gpus_per_node", 0), ("n_gpus_per_node", "eight")])
def test_an_unusable_value_is_an_error_naming_the_field_not_a_bug_in_the_check(tmp_path: Path, key: str,
                                                                              value: Any) -> None:
    results = _edited(tmp_path, lambda spec: spec["trainer"]["config"]["trainer"].__setitem__(key, value))
    batch = results["trainer.verl.batch"]
    assert batch["status"] == "error" and f"trainer.config.trainer.{key} is {value!r}" in batch["found"], batch
    assert "bug in the check" not in batch["remediation"]


def test_the_resume_check_reads_the_checkpoint_dir_with_its_name_filled_in(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """storage.checkpoint_dir 'ckpt/{name}' is where verl's marker is looked for, as every other
    checkpoint check reads it (it used to look in a folder literally called '{name}')."""
    monkeypatch.chdir(tmp_path)

    def edit(spec: dict[str, Any]) -> None:
        spec["storage"]["checkpoint_dir"] = "ckpt/{name}"
        folder = tmp_path / "ckpt" / spec["run"]["name"]
        folder.mkdir(parents=True)
        (folder / "latest_checkpointed_iteration.txt").write_text("1000000\n", encoding="utf-8")
    resume = _edited(tmp_path, edit)["trainer.verl.resume"]
    assert "no latest_checkpointed_iteration.txt" not in resume["found"], resume


def test_trainer_stack_checks_both_rollout_engines_unless_the_config_names_one() -> None:
    """verl's unused engine is left out only when rollout.name says which one runs; a config without
    the name (or with a null section) has both checked rather than neither."""
    from preflight.checks.trainer_stack import _not_needed

    named = {"actor_rollout_ref": {"rollout": {"name": "vllm"}}}
    assert _not_needed("verl", named, "sglang") and not _not_needed("verl", named, "vllm")
    for config in ({}, {"actor_rollout_ref": None}, {"actor_rollout_ref": {"rollout": {}}}):
        assert not _not_needed("verl", config, "vllm") and not _not_needed("verl", config, "sglang")
