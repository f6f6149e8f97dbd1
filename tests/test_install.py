"""rl-preflight where ML engineers already work: installed from a built wheel into a fresh venv, its
`cluster` extra without torch, its pre-commit hook run by pre-commit, its GitHub Action against
the published schema, and the Slurm and Kubernetes examples on the CLI's exit codes.

The slow ones build and install packages (from the package index this machine can reach)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

from preflight.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
PIP_QUIET = ["-q", "--disable-pip-version-check"]


def pip(python: Path | str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(python), "-m", "pip", *args, *PIP_QUIET], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


# --- the wheel in a fresh venv ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_built_wheel_installs_into_a_fresh_venv_and_checks_the_examples(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    pip(sys.executable, "wheel", "--no-deps", "-w", str(dist), str(REPO))
    wheel = next(dist.glob("rl_preflight-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    pip(python, "install", "torch==2.13.0")  # the CPU build first, as the README says
    pip(python, "install", f"{wheel}[runner]")
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True,
                            timeout=120, check=True).stdout
    installed = {d["name"].lower() for d in json.loads(listed)}
    assert "rl-preflight" in installed and not {"pytest", "ruff", "mypy"} & installed  # no dev tools
    work = tmp_path / "work"
    work.mkdir()
    for spec in EXAMPLES.glob("*.yaml"):
        (work / spec.name).write_text(spec.read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    preflight = str(venv / "bin" / "preflight")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([preflight, *args], cwd=work, capture_output=True, text=True, timeout=600, env=env)

    smoke = run("check", "cpu-smoke.yaml")
    assert smoke.returncode == 0, smoke.stdout[-3000:] + smoke.stderr[-2000:]
    assert "gate: PASSED" in smoke.stdout and (work / "cpu-smoke.yaml.attestation.json").is_file()
    assert run("verify", "cpu-smoke.yaml").returncode == 0
    for stage in ("stage-small.yaml", "stage-medium.yaml", "stage-large.yaml"):
        gated = run("check", stage)
        assert gated.returncode == 1 and "gate: FAILED" in gated.stdout, (stage, gated.stderr[-2000:])
    schema_line = run("init").stdout.splitlines()[0]
    assert Path(schema_line.split("$schema=", 1)[1]).is_file()  # the installed package's own schema
    # the smoke test's child runs the installed runner, even beside a runner/ package of the user's
    (work / "runner").mkdir()
    (work / "runner" / "__init__.py").write_text("raise SystemExit('shadowed')\n")
    smoke_test = run("check", "cpu-smoke.yaml", "--level", "active", "--only", "algo.smoke")
    assert smoke_test.returncode == 0, smoke_test.stdout[-3000:]
    usage = subprocess.run([str(venv / "bin" / "preflight-runner"), "--help"], cwd=work, capture_output=True,
                           text=True, timeout=120, env=env)
    assert usage.returncode == 0 and "--force" in usage.stdout, usage.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_cluster_extra_brings_ray_without_torch(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    pip(sys.executable, "install", "--dry-run", "--ignore-installed", "--report", str(report), f"{REPO}[cluster]")
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert {"rl-preflight", "ray"} <= names
    assert not {n for n in names if n == "torch" or n.startswith("nvidia-") and n != "nvidia-ml-py"}, names


# --- the pre-commit hook ------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_pre_commit_hook_validates_the_specs_a_commit_touches(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "configs").mkdir(parents=True)
    (project / "configs" / "run.preflight.yaml").write_text((EXAMPLES / "cpu-smoke.yaml").read_text())
    (project / "configs" / "typo.preflight.yaml").write_text("run: {name: x}\ntraining: {batch_sise: 3}\n")
    (project / "unrelated.yaml").write_text("not: a run spec\n")
    git(project, "init", "-q")
    git(project, "add", ".")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    env.pop("PYTHONPATH", None)  # the hook must run the package pre-commit installed

    def hook(*files: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(REPO), "preflight-validate",
                               "--files", *files], cwd=project, capture_output=True, text=True, timeout=1100,
                              env=env)

    bad = hook("configs/run.preflight.yaml", "configs/typo.preflight.yaml", "unrelated.yaml")
    assert bad.returncode == 1, bad.stdout[-3000:] + bad.stderr[-2000:]
    assert "typo.preflight.yaml:2: $.training.batch_sise" in bad.stdout and "== configs/run.preflight.yaml" in bad.stdout
    assert "unrelated.yaml" not in bad.stdout.split("Failed")[-1]  # not a spec by the hook's files pattern
    good = hook("configs/run.preflight.yaml", "unrelated.yaml")
    assert good.returncode == 0, good.stdout[-3000:]


def test_the_hook_definition_runs_preflight_validate() -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "preflight-validate")
    assert hook["entry"] == "preflight validate" and hook["language"] == "python"
    build_parser().parse_args(["validate", "a.preflight.yaml", "b.preflight.yaml"])


# --- the GitHub Action --------------------------------------------------------------------------

# The parts of SchemaStore's github-action.json (https://json.schemastore.org/github-action.json,
# draft-07) a composite action meets: it cannot be fetched at test time, so it is written here.
_OUTPUTS_COMPOSITE = {
    "type": "object", "additionalProperties": False,
    "patternProperties": {"^[_a-zA-Z][a-zA-Z0-9_-]*$": {
        "type": "object", "required": ["description", "value"], "additionalProperties": False,
        "properties": {"description": {"type": "string"}, "value": {"type": "string"}}}},
}
_STEP = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "run": {"type": "string"}, "shell": {"type": "string"}, "uses": {"type": "string"},
        "with": {"type": "object"}, "name": {"type": "string"}, "id": {"type": "string"},
        "if": {"type": "string"}, "env": {"type": "object", "additionalProperties": {"type": "string"}},
        "working-directory": {"type": "string"}, "continue-on-error": {"type": ["boolean", "string"]},
    },
    "oneOf": [{"required": ["run", "shell"]}, {"required": ["uses"]}],
}
GITHUB_ACTION_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema",
    "type": "object", "required": ["name", "description", "runs"], "additionalProperties": False,
    "properties": {
        "name": {"type": "string"}, "author": {"type": "string"}, "description": {"type": "string"},
        "inputs": {"type": "object", "additionalProperties": False, "patternProperties": {
            "^[_a-zA-Z][a-zA-Z0-9_-]*$": {
                "type": "object", "required": ["description"], "additionalProperties": False,
                "properties": {"description": {"type": "string"}, "deprecationMessage": {"type": "string"},
                               "required": {"type": "boolean"}, "default": {"type": "string"}}}}},
        "outputs": {},
        "runs": {"type": "object", "required": ["using", "steps"], "additionalProperties": False,
                 "properties": {"using": {"const": "composite"}, "steps": {"type": "array", "items": _STEP}}},
        "branding": {"type": "object", "additionalProperties": False, "properties": {
            "color": {"enum": ["white", "black", "yellow", "blue", "green", "orange", "red", "purple", "gray-dark"]},
            "icon": {"type": "string"}}},
    },
    "if": {"properties": {"runs": {"properties": {"using": {"const": "composite"}}}}},
    "then": {"properties": {"outputs": _OUTPUTS_COMPOSITE}},
}


def action() -> dict:
    return yaml.safe_load((REPO / "action.yml").read_text())


def test_action_yml_follows_the_github_action_schema() -> None:
    Draft7Validator.check_schema(GITHUB_ACTION_SCHEMA)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in Draft7Validator(GITHUB_ACTION_SCHEMA).iter_errors(action())]
    assert errors == []
    inputs = action()["inputs"]
    assert {"spec", "level", "python", "extras", "fail-on"} <= set(inputs) and inputs["spec"]["required"] is True
    broken = {**action(), "runs": {"using": "composite", "steps": [{"run": "echo no shell"}]}}
    assert list(Draft7Validator(GITHUB_ACTION_SCHEMA).iter_errors(broken))  # the schema does bite


def test_the_action_s_check_step_gates_writes_junit_and_the_step_summary(tmp_path: Path) -> None:
    """The step's own script, run by bash as the runner would, with `preflight` on PATH."""
    step = next(s for s in action()["runs"]["steps"] if s.get("id") == "check")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "preflight"
    shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m preflight \"$@\"\n")
    shim.chmod(0o755)

    def run_step(spec: Path) -> tuple[int, dict[str, str], str]:
        output, summary = tmp_path / "out.txt", tmp_path / "summary.md"
        output.write_text("")
        summary.write_text("")
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SPEC": str(spec),
               "LEVEL": "static", "FAIL_ON": "fail", "JUNIT": str(tmp_path / "junit.xml"),
               "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
        proc = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
        return proc.returncode, outputs, summary.read_text()

    code, outputs, summary = run_step(EXAMPLES / "cpu-smoke.yaml")
    assert code == 0 and outputs["exit-code"] == "0" and "PASSED" in summary.upper()
    assert "<testsuite" in (tmp_path / "junit.xml").read_text()
    code, outputs, _ = run_step(tmp_path / "missing.yaml")
    assert code == 2 and outputs["exit-code"] == "2"


def test_the_example_workflow_uses_the_action_s_inputs() -> None:
    workflow = yaml.safe_load((EXAMPLES / "ci" / "preflight.yml").read_text())
    steps = workflow["jobs"]["specs"]["steps"]
    used = next(s for s in steps if "rl-preflight" in s.get("uses", ""))
    assert set(used["with"]) <= set(action()["inputs"])


# --- Slurm and Kubernetes ------------------------------------------------------------------------


def test_the_slurm_prolog_drains_only_a_node_that_fails(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "preflight").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m preflight \"$@\"\n")
    (bin_dir / "preflight").chmod(0o755)
    node = textwrap.dedent("""\
        run: {name: node-health}
        hardware: {gpu_required: false, min_host_memory_gb: 1, min_cpus: %d}
        storage: {min_free_gb: 0.001, checkpoint_size_gb: 0.0001}
        stack: {packages: {wandb: null}}
        monitoring: {sinks: [jsonl]}
        """)
    healthy, short, broken = tmp_path / "ok.yaml", tmp_path / "short.yaml", tmp_path / "broken.yaml"
    healthy.write_text(node % 1)
    short.write_text(node % 4096)  # no node here has 4096 CPUs: the node fails
    broken.write_text("run: {name: x}\nhardware: {gpus_per_nod: 8}\n")

    def prolog(spec: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PREFLIGHT_NODE_SPEC": str(spec),
               "PREFLIGHT_LOG_DIR": str(tmp_path / "log"), "SLURM_JOB_ID": "42", "SLURM_JOB_GPUS": "0,1"}
        return subprocess.run(["bash", str(EXAMPLES / "slurm" / "prolog.sh")], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    assert prolog(healthy).returncode == 0
    failed = prolog(short)
    assert failed.returncode == 1 and "failed its checks" in failed.stderr
    unjudged = prolog(broken)
    assert unjudged.returncode == 0 and "could not judge" in unjudged.stderr and "not draining" in unjudged.stderr
    assert "gpus_per_nod" in next((tmp_path / "log").glob("prolog-42-*.log")).read_text()


def test_the_sbatch_script_and_the_kubernetes_job_call_real_commands() -> None:
    for script in (EXAMPLES / "slurm").glob("*"):
        assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0, script
    job = yaml.safe_load((EXAMPLES / "kubernetes" / "preflight-job.yaml").read_text())
    pod = job["spec"]["template"]["spec"]
    init = pod["initContainers"][0]["command"]
    assert init[0] == "preflight"
    build_parser().parse_args(init[1:])  # argparse exits on anything it does not know
    trainer = pod["containers"][0]["command"]
    scripts = (REPO / "pyproject.toml").read_text()
    assert trainer[0] == "preflight-runner" and 'preflight-runner = "runner.__main__:main"' in scripts
    envs = [{e["name"]: e["value"] for e in c["env"]} for c in (pod["initContainers"][0], pod["containers"][0])]
    assert envs[0] == envs[1] and "PREFLIGHT_ATTESTATION_DIR" in envs[0]  # both find the attestation


def test_every_preflight_command_in_the_readme_parses() -> None:
    commands = []
    in_block = False
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() in ("```bash", "```sh")
            continue
        text = line.split(" #")[0].strip()
        if in_block and text.startswith("preflight "):
            commands.append(shlex.split(text)[1:])
    assert len(commands) > 20
    for argv in commands:
        build_parser().parse_args(argv)
