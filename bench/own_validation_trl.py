"""TRL's own validation of a corpus case, for bench/bench_framework_gate.py: build
``trl.GRPOConfig`` from the options the case's source sets, in a fresh Python process, and report
whether TRL raised and how long TRL's start-up to its verdict took (interpreter, ``import trl``,
GRPOConfig construction).

GRPOConfig checks its batch arithmetic at construction, with the process count of the process
that builds it: here one CPU process. At a real launch TRL counts accelerate's processes, so a case
whose fault is the process count (a GPU given to a vLLM server) is judged here with one process;
``when`` says so. Faults outside GRPOConfig (memory, the model's context, reward signatures) surface
in TRL only once the trainer, the model or vLLM starts; they are reported as not caught here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from framework_corpus import CorpusCase, import_case  # noqa: E402

# Builds GRPOConfig from JSON keyword arguments on stdin; prints the outcome and the timings.
CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
kwargs = json.loads(sys.stdin.read())
try:
    import dataclasses, trl
except Exception as exc:
    print(json.dumps({"imported": False, "error": f"{type(exc).__name__}: {exc}"}))
    raise SystemExit(0)
t1 = time.perf_counter()
names = {f.name for f in dataclasses.fields(trl.GRPOConfig)}
try:
    trl.GRPOConfig(**{k: v for k, v in kwargs.items() if k in names})
    error = ""
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"
t2 = time.perf_counter()
print(json.dumps({"imported": True, "error": error, "import_s": t1 - t0, "construct_s": t2 - t1,
                  "version": trl.__version__}))
"""


def _given_options(case: CorpusCase, root: Path) -> dict[str, Any]:
    spec = json.loads(import_case(case, root).read_text(encoding="utf-8"))
    config, launcher = spec["trainer"]["config"], spec["trainer"].get("launcher", {})
    return {k: config[k] for k in launcher.get("given", []) if k in config}


def validate(case: CorpusCase) -> dict[str, Any]:
    """{caught, when, seconds, error}: TRL's GRPOConfig on the case's options, in a child process."""
    with tempfile.TemporaryDirectory() as tmp:
        kwargs = _given_options(case, Path(tmp))
        kwargs.setdefault("output_dir", str(Path(tmp) / "out"))
        kwargs["use_cpu"] = True  # the bench machine may have no GPU; bf16 then needs no GPU either
        start = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(kwargs), capture_output=True,
                               text=True, timeout=300, cwd=tmp)
        seconds = time.perf_counter() - start
    try:
        out = json.loads(child.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"caught": False, "when": "not run: the child process failed", "seconds": seconds,
                "error": (child.stderr or child.stdout)[-500:]}
    if not out["imported"]:
        return {"caught": False, "when": "not run: trl does not import here", "seconds": seconds,
                "error": out["error"]}
    when = (f"GRPOConfig construction (TRL {out['version']}, one CPU process; import {out['import_s']:.2f} s, "
            f"construction {out['construct_s']:.3f} s)")
    return {"caught": bool(out["error"]), "when": when if out["error"] else when + ": no error", "seconds": seconds,
            "error": out["error"]}


if __name__ == "__main__":
    from framework_corpus.trl import CASES

    for c in CASES:
        print(c.id, json.dumps(validate(c))[:300])
