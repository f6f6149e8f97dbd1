"""The CLI in-process: waivers, checklist items, formats, init, list and the exit-code contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from preflight.cli import main

CPU = """\
run: {name: cli-run}
hardware: {gpu_required: false, min_host_memory_gb: 1, min_cpus: 1}
storage: {min_free_gb: 0.001, checkpoint_size_gb: 0.0001}
stack: {packages: {wandb: null}}
monitoring: {sinks: [jsonl]}
training: {batch_size: 512, group_size: 16, max_steps: 2000}
"""


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_waiver_turns_a_failure_into_waived_and_records_the_reason(write_spec, capsys):
    spec = write_spec(CPU.replace("min_cpus: 1", "min_cpus: 4096"))
    code, out, _ = run(capsys, "check", str(spec), "--format", "json")
    assert code == 1
    code, out, err = run(capsys, "check", str(spec), "--format", "json",
                         "--waive", "host.cpus=dev box, the real run is on the cluster")
    assert code == 0, err
    report = json.loads(out)
    cpus = next(r for r in report["results"] if r["id"] == "host.cpus")
    assert cpus["status"] == "waived"
    assert cpus["waiver"]["reason"] == "dev box, the real run is on the cluster"
    assert cpus["waiver"]["by"] == "command line"
    assert Path(str(spec) + ".attestation.json").is_file()


def test_bad_waive_arguments_exit_2(write_spec, capsys):
    spec = write_spec(CPU)
    code, _, err = run(capsys, "check", str(spec), "--waive", "host.cpus")
    assert code == 2 and "CHECK_ID=REASON" in err
    code, _, err = run(capsys, "check", str(spec), "--waive", "host.cpu=long enough reason")
    assert code == 2 and "did you mean 'host.cpus'" in err


def test_spec_checklist_items_group_checks_and_unknown_references_exit_2(write_spec, capsys):
    spec = write_spec(CPU + "checklist:\n  items:\n    - {id: storage-ready, title: Storage is ready, checks: ['storage.*']}\n")
    code, out, _ = run(capsys, "check", str(spec), "--format", "json", "--no-attest")
    report = json.loads(out)
    item = next(i for i in report["checklist"] if i["id"] == "storage-ready")
    assert item["checks"] == ["storage.checkpoint_dir", "storage.free_space", "storage.run_dir"]
    bad = write_spec(CPU + "waivers:\n  - {check: hw.gpu.vrma, reason: typo in the check id}\n", "bad.yaml")
    code, _, err = run(capsys, "validate", str(bad))
    assert code == 2
    assert "bad.yaml:" in err and "$.waivers[0].check" in err and "did you mean 'hw.gpu.vram'" in err


def test_fail_on_warn_turns_a_warning_into_exit_1(write_spec, capsys):
    spec = write_spec(CPU.replace("max_steps: 2000", "max_steps: 2000, learning_rate: 3.0e-5"))  # 3x the band: warns
    assert run(capsys, "check", str(spec), "--no-attest")[0] == 0
    code, out, _ = run(capsys, "check", str(spec), "--no-attest", "--fail-on", "warn")
    assert code == 1 and "config.lr.range" in out


def test_several_formats_in_one_run(write_spec, tmp_path, capsys):
    spec = write_spec(CPU)
    code, out, err = run(capsys, "check", str(spec), "--no-attest", "--format", "json", "--output", "r.json",
                         "--format", "junit", "--output", "r.xml", "--format", "markdown")
    assert code == 0
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "pass"
    assert (tmp_path / "r.xml").read_text().startswith("<?xml")
    assert out.lstrip().startswith("#")  # markdown on stdout
    assert "\x1b[" not in err  # no progress drawn when stderr is not a terminal
    code, _, err = run(capsys, "check", str(spec), "--format", "json", "--format", "text")
    assert code == 2 and "stdout" in err


def test_github_format_appends_the_job_summary(write_spec, tmp_path, capsys, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    spec = write_spec(CPU.replace("min_cpus: 1", "min_cpus: 4096"))
    code, out, _ = run(capsys, "check", str(spec), "--format", "github")
    assert code == 1
    assert "::error" in out and "host.cpus" in out
    assert "host.cpus" in summary.read_text()


def test_static_level_writes_no_attestation(write_spec, capsys):
    spec = write_spec(CPU)
    code, _, err = run(capsys, "check", str(spec), "--level", "static")
    assert code == 0 and "no attestation" in err
    assert not Path(str(spec) + ".attestation.json").exists()


def test_verify_exit_codes(write_spec, capsys):
    spec = write_spec(CPU)
    code, out, _ = run(capsys, "verify", str(spec))
    assert code == 1 and "no attestation" in out
    assert run(capsys, "check", str(spec))[0] == 0
    code, out, _ = run(capsys, "verify", str(spec))
    assert code == 0 and out.startswith("ok:")


@pytest.mark.parametrize("stage", ["small", "medium", "large", "custom"])
def test_init_writes_a_spec_that_loads_with_the_stage_defaults(tmp_path, capsys, stage):
    target = tmp_path / f"{stage}.yaml"
    assert run(capsys, "init", "--stage", stage, "--output", str(target))[0] == 0
    assert run(capsys, "validate", str(target))[0] in (0, 1)
    code, _, err = run(capsys, "init", "--output", str(target))
    assert code == 2 and "--force" in err


def test_list_shows_every_check_with_level_and_item(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0
    assert "hw.gpu.vram" in out and "stack.<package>" in out and "algorithm" in out


def test_no_command_and_unknown_options_exit_2(capsys):
    assert run(capsys)[0] == 2
    assert run(capsys, "check")[0] == 2
    assert run(capsys, "check", "x.yaml", "--level", "bogus")[0] == 2
