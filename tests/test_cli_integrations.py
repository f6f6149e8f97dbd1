"""What editors, shells and hooks call: `validate` over many files, `completion`, and the schema
line `init` writes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from preflight.cli import main
from preflight.schemas import schema_path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_reports_each_of_many_files_and_exits_with_the_worst(tmp_path, capsys):
    good = EXAMPLES / "cpu-smoke.yaml"
    typo = tmp_path / "typo.yaml"
    typo.write_text("run: {name: x}\ntraining: {batch_sise: 3}\n")
    code, out, err = run(capsys, "validate", str(good), str(typo), str(tmp_path / "missing.yaml"))
    assert code == 2
    assert f"== {good}" in out and "gate: PASSED" in out
    assert f"{typo}:2: $.training.batch_sise" in err and "did you mean 'batch_size'" in err
    assert f"{tmp_path / 'missing.yaml'}: no such file" in err
    too_fast = tmp_path / "lr.yaml"  # valid, but a rule fails (a learning rate 10^5 x the usual)
    too_fast.write_text("run: {name: x}\ntraining: {learning_rate: 0.5}\n", encoding="utf-8")
    assert run(capsys, "validate", str(good), str(too_fast))[0] == 1
    code, out, _ = run(capsys, "validate", str(good), str(good), "--format", "json")
    assert code == 0 and [r["status"] for r in json.loads(out)] == ["pass", "pass"]
    code, _, err = run(capsys, "validate", str(good), str(good), "--format", "junit")
    assert code == 2 and "one spec" in err


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_are_generated_from_the_parser(shell, capsys):
    code, out, _ = run(capsys, "completion", shell)
    assert code == 0
    option = "-l attestation" if shell == "fish" else "--attestation"
    for word in ("check", "launch", "validate", "completion", option, "split", "static node active"):
        assert word in out, (shell, word)
    if shell != "bash" and shutil.which(shell):  # a syntax check where the shell is installed
        proc = subprocess.run([shell, "-n"], input=out, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_bash_loads_the_completion_and_completes_subcommands_options_and_choices(capsys):
    _, script, _ = run(capsys, "completion", "bash")
    probe = script + r'''
t() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); COMPREPLY=(); _preflight; echo "${COMPREPLY[*]}"; }
t preflight ch
t preflight check run.yaml --le
t preflight check run.yaml --level ""
t preflight check run.yaml --format json --fail-on ""
t preflight data sp
t preflight schema r
complete -p preflight
'''
    proc = subprocess.run(["bash", "--norc", "--noprofile"], input=probe, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:6] == ["check", "--level", "static node active", "fail warn", "split", "runspec report"]
    assert lines[6].endswith("-F _preflight preflight")


def test_init_points_editors_at_a_schema_file_the_user_has(tmp_path, capsys):
    target = tmp_path / "cfg" / "run.yaml"
    target.parent.mkdir()
    code, _, err = run(capsys, "init", "--stage", "medium", "-o", str(target))
    assert code == 0
    first = target.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=./runspec.schema.json"
    copy = target.parent / "runspec.schema.json"
    assert json.loads(copy.read_text()) == json.loads(schema_path("runspec").read_text())
    errors = list(Draft202012Validator(json.loads(copy.read_text())).iter_errors(yaml.safe_load(target.read_text())))
    assert errors == [] and "rl-preflight.dev" not in target.read_text()
    # a second spec in the same folder reuses the copy; a foreign file of that name is not overwritten
    assert run(capsys, "init", "-o", str(target.parent / "b.yaml"))[0] == 0
    copy.write_text("{}")
    code, _, err = run(capsys, "init", "-o", str(target.parent / "c.yaml"))
    assert code == 2 and "runspec.schema.json exists" in err and copy.read_text() == "{}"
    # to stdout: the installed package's own schema file, by path
    code, out, _ = run(capsys, "init")
    line = out.splitlines()[0]
    assert line.startswith("# yaml-language-server: $schema=")
    assert Path(line.split("=", 1)[1]).is_file()
