"""`preflight check` on a spec without data loads neither numpy nor pyarrow.

The data checks, the data commands and the monitor are imported with every `preflight check`
(their modules are imported at the top of the engine and the CLI); numpy and pyarrow cost more
than the rest of a static check together, so the data modules import them inside the functions
that read data. A fresh interpreter per level, since this test process may have loaded them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CPU_SMOKE = REPO / "examples" / "cpu-smoke.yaml"  # declares no data files

SCRIPT = """
import contextlib, io, json, sys
from preflight.cli import main

with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    code = main(["check", sys.argv[1], "--level", sys.argv[2], "--no-attest"])
loaded = sorted(m for m in ("numpy", "pyarrow") if m in sys.modules)
print(json.dumps({"code": code, "loaded": loaded, "data_checks": "preflight.checks.data" in sys.modules}))
"""


@pytest.mark.parametrize("level", ["static", "node"])
def test_check_without_data_leaves_numpy_and_pyarrow_unimported(level: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(CPU_SMOKE), level], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    assert result["data_checks"]  # the data checks were loaded (and skipped): the test sees their imports
    assert result["loaded"] == []
