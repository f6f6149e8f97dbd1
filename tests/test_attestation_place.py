"""Where the gate's attestation goes: --attestation, $PREFLIGHT_ATTESTATION_DIR, next to the spec,
or the state directory when the spec sits on a read-only mount; `check`, `verify`, `launch`'s
runner and the runner's own gate all find it there, and nothing says PASSED before it is written."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from preflight.cli import main
from preflight.rundir import ATTESTATION_DIR_ENV, ATTESTATION_ENV, attestation_place
from preflight.spec import load_spec
from runner.authorize import authorize

CPU = """\
run: {name: ro-run, run_dir: %s}
hardware: {gpu_required: false, min_host_memory_gb: 1, min_cpus: 1}
storage: {min_free_gb: 0.001, checkpoint_size_gb: 0.0001}
stack: {packages: {wandb: null}}
monitoring: {sinks: [jsonl]}
training: {batch_size: 512, group_size: 16, max_steps: 2000}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[bool]:
    """``folder`` bind-mounted read-only over itself (root can write through chmod, not through a
    read-only mount). Yields False when this machine cannot mount: the caller fakes it then."""
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
    if mounted and subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)],
                                  capture_output=True).returncode != 0:
        subprocess.run(["umount", str(folder)], check=True)
        mounted = False
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def ro_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A passing spec in a read-only folder (a ConfigMap mount), the state dir under tmp_path."""
    folder = tmp_path / "configmap"
    folder.mkdir()
    spec = folder / "run.yaml"
    spec.write_text(CPU % (tmp_path / "runs" / "ro-run"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv(ATTESTATION_DIR_ENV, raising=False)
    monkeypatch.delenv(ATTESTATION_ENV, raising=False)
    with read_only(folder) as mounted:
        if not mounted:  # no mount here: the folder answers "not writable" and refuses files
            import preflight.rundir as rundir

            real_access = rundir.os.access
            monkeypatch.setattr(rundir.os, "access", lambda p, mode: False if Path(p) == folder
                                else real_access(p, mode))
        yield spec


def test_a_read_only_spec_folder_sends_the_attestation_to_the_state_dir_and_everyone_finds_it(
        ro_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", str(ro_spec))
    assert code == 0, out + err
    assert "internal error" not in err and "PASSED" in out
    written = Path(err.split("attestation written: ")[1].split(" (")[0])
    assert written.is_file() and written.is_relative_to(tmp_path / "state" / "rl-preflight" / "attestations")
    assert f"the spec's folder {ro_spec.parent} is not writable" in err
    assert not Path(f"{ro_spec}.attestation.json").exists()
    code, out, _ = run(capsys, "verify", str(ro_spec))
    assert code == 0 and out.startswith("ok: ")
    assert authorize(load_spec(ro_spec)).ok  # the runner's gate looks in the same place


def test_no_writable_place_is_exit_2_with_the_fix_and_never_a_passed_verdict(
        ro_spec: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the attestation folder should be")
    code, out, err = run(capsys, "check", str(ro_spec), "--attestation", str(blocker / "att.json"))
    assert code == 2
    assert "PASSED" not in out and "gate:" not in out
    assert f"could not be written to {blocker / 'att.json'}" in err
    assert "--attestation PATH" in err and ATTESTATION_DIR_ENV in err
    assert "internal error" not in err


def test_the_flag_and_the_environment_choose_the_place_for_check_verify_and_the_runner(
        write_spec, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec(CPU % (tmp_path / "runs" / "ro-run"))
    chosen = tmp_path / "gate" / "mine.json"
    code, _, err = run(capsys, "check", str(spec), "--attestation", str(chosen))
    assert code == 0 and chosen.is_file() and f"attestation written: {chosen} (--attestation)" in err
    assert not Path(f"{spec}.attestation.json").exists()
    code, out, _ = run(capsys, "verify", str(spec))
    assert code == 1 and "no attestation at" in out  # not where the default looks
    code, out, _ = run(capsys, "verify", str(spec), "--attestation", str(chosen))
    assert code == 0, out
    monkeypatch.setenv(ATTESTATION_ENV, str(chosen))  # what `launch` hands the runner it starts
    assert authorize(load_spec(spec)).ok
    monkeypatch.delenv(ATTESTATION_ENV)

    folder = tmp_path / "attestations"
    monkeypatch.setenv(ATTESTATION_DIR_ENV, str(folder))
    code, _, err = run(capsys, "check", str(spec))
    place = attestation_place(spec)
    assert code == 0 and place.path.parent == folder and place.path.is_file()
    assert f"(${ATTESTATION_DIR_ENV})" in err
    assert run(capsys, "verify", str(spec))[0] == 0 and authorize(load_spec(spec)).ok


def test_two_specs_of_one_name_never_share_a_state_dir_attestation(tmp_path: Path) -> None:
    env = {ATTESTATION_DIR_ENV: str(tmp_path / "att")}
    a = attestation_place(tmp_path / "a" / "run.yaml", env=env).path
    b = attestation_place(tmp_path / "b" / "run.yaml", env=env).path
    assert a != b and a.parent == b.parent and a.name.startswith("run.yaml.")
    assert attestation_place(tmp_path / "run.yaml", env={}).path == tmp_path / "run.yaml.attestation.json"
