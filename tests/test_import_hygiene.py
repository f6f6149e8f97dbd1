"""The check path never imports torch, transformers, accelerate or ray.

Importing torch alone takes seconds; `preflight check` reads versions from package metadata and
talks to GPUs through NVML instead. Each command runs in a fresh interpreter, because this test
process may already have imported any of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from preflight.rundir import attestation_path

REPO = Path(__file__).resolve().parent.parent
CPU_SMOKE = REPO / "examples" / "cpu-smoke.yaml"
HEAVY = ("torch", "transformers", "accelerate", "ray")
# Also reported (not asserted) so a regression shows what else came along.
WATCHED = (*HEAVY, "numpy", "pandas", "scipy", "pyarrow", "wandb", "textual")

SCRIPT = """
import contextlib, io, json, sys
from preflight.cli import main

commands = json.loads(sys.argv[1])
codes = []
for argv in commands:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        codes.append(main(argv))
watched = json.loads(sys.argv[2])
loaded = sorted(m for m in watched if m in sys.modules or any(k.startswith(m + ".") for k in sys.modules))
print(json.dumps({"codes": codes, "loaded": loaded}))
"""


def test_cli_commands_leave_torch_transformers_accelerate_and_ray_unimported(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    commands = [
        ["check", str(CPU_SMOKE), "--level", "node", "--no-attest", "--format", "json",
         "--output", str(report)],
        ["validate", str(CPU_SMOKE)],
        ["list"],
        ["explain", "hw.gpu.vram"],
    ]
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(commands), json.dumps(WATCHED)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert dict(zip(("check", "validate", "list", "explain"), result["codes"], strict=True)) == {
        "check": 0, "validate": 0, "list": 0, "explain": 0}
    heavy = [m for m in result["loaded"] if m in HEAVY]
    assert heavy == [], f"the check path imported {heavy} (all watched modules loaded: {result['loaded']})"
    assert json.loads(report.read_text(encoding="utf-8"))["status"] == "pass"


def test_check_writes_nothing_into_the_checkout_with_no_attest(tmp_path: Path) -> None:
    attestation = attestation_path(CPU_SMOKE)
    before = attestation.stat().st_mtime_ns if attestation.exists() else None
    proc = subprocess.run(
        [sys.executable, "-m", "preflight", "check", str(CPU_SMOKE), "--no-attest", "--format", "json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    after = attestation.stat().st_mtime_ns if attestation.exists() else None
    assert before == after, "--no-attest wrote the attestation next to the example"
