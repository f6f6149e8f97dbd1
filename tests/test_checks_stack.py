"""Software stack and monitoring-readiness checks."""

from __future__ import annotations

from pathlib import Path

from fakes import FakePackageProbe, gpu_probes, run_checks_on

from preflight.result import Status

SPEC = "run: {name: r}\nhardware: {nodes: 2}\n"


def test_every_default_package_gets_its_own_check(write_spec):
    results = run_checks_on(write_spec(SPEC), gpu_probes())
    for pkg in ("torch", "transformers", "accelerate", "wandb", "ray"):
        assert results[f"stack.{pkg}"].status == Status.PASS


def test_missing_package_names_the_install_command(write_spec):
    versions = {"torch": "2.5.1", "transformers": "4.46.0", "accelerate": "1.1.0", "wandb": "0.18.0"}
    results = run_checks_on(write_spec(SPEC), gpu_probes(packages=FakePackageProbe(versions=versions)))
    ray = results["stack.ray"]
    assert ray.status == Status.FAIL
    assert ray.found == "not installed"
    assert ray.remediation == "pip install 'ray>=2.0'"


def test_version_outside_the_specifier_fails(write_spec):
    spec = write_spec(SPEC + "stack: {packages: {transformers: '>=4.50,<5'}}\n")
    r = run_checks_on(spec, gpu_probes())["stack.transformers"]
    assert r.status == Status.FAIL and "4.46.0" in r.found and r.remediation == "pip install 'transformers>=4.50,<5'"


def test_local_version_tags_satisfy_plain_specifiers(write_spec):
    spec = write_spec(SPEC + "stack: {packages: {torch: '>=2.4'}}\n")
    assert run_checks_on(spec, gpu_probes())["stack.torch"].status == Status.PASS  # 2.5.1+cu124


def test_python_version(write_spec):
    spec = write_spec(SPEC + "stack: {python: '>=3.12'}\n")
    r = run_checks_on(spec, gpu_probes())["stack.python"]
    assert r.status == Status.FAIL and "3.11.7" in r.found


def test_wandb_without_credentials_fails_and_never_prints_the_key(write_spec, tmp_path: Path):
    spec = write_spec(SPEC + "monitoring: {sinks: [jsonl, wandb]}\n")
    r = run_checks_on(spec, gpu_probes(env={}))["monitor.wandb"]
    assert r.status == Status.FAIL and "WANDB_API_KEY" in r.remediation and "offline" in r.remediation
    r = run_checks_on(spec, gpu_probes(env={"WANDB_API_KEY": "sekrit-value-42"}))["monitor.wandb"]
    assert r.status == Status.PASS
    assert "sekrit" not in repr(r.to_dict())
    r = run_checks_on(spec, gpu_probes(env={"WANDB_MODE": "offline"}))["monitor.wandb"]
    assert r.status == Status.PASS
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password sekrit-netrc\n")
    (tmp_path / ".netrc").chmod(0o600)
    r = run_checks_on(spec, gpu_probes(env={}, home=tmp_path))["monitor.wandb"]
    assert r.status == Status.PASS and "sekrit" not in repr(r.to_dict())


def test_wandb_is_a_default_sink_and_skips_when_dropped(write_spec):
    assert run_checks_on(write_spec(SPEC), gpu_probes(env={}))["monitor.wandb"].status == Status.FAIL
    spec = write_spec(SPEC + "monitoring: {sinks: [jsonl]}\n")
    assert run_checks_on(spec, gpu_probes(env={}))["monitor.wandb"].status == Status.SKIP


def test_data_files_missing_empty_and_lfs_pointer(write_spec, tmp_path: Path):
    (tmp_path / "train.jsonl").write_text('{"prompt": "1+1", "answer": "2"}\n')
    (tmp_path / "val.jsonl").write_text("")
    (tmp_path / "test.jsonl").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n")
    spec = write_spec(SPEC + "data: {train: train.jsonl, val: val.jsonl, test: test.jsonl}\n")
    r = run_checks_on(spec, gpu_probes())["data.files"]
    assert r.status == Status.FAIL
    assert "val: val.jsonl is empty" in r.found
    assert "Git LFS pointer" in r.found and "git lfs pull" in r.found
    spec = write_spec(SPEC + "data: {train: nope.jsonl}\n")
    assert "does not exist" in run_checks_on(spec, gpu_probes())["data.files"].found


def test_code_domain_without_data_fails(write_spec):
    spec = write_spec("run: {name: r, domain: code}\nhardware: {nodes: 2}\n")
    r = run_checks_on(spec, gpu_probes())["data.files"]
    assert r.status == Status.FAIL and "data.train" in r.remediation
