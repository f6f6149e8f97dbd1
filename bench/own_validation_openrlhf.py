"""OpenRLHF's own validation of a corpus case, for bench/bench_framework_gate.py: run
train_ppo_ray.py's argument parsing and the asserts it makes after parsing, stopping before
``train(args)`` (where ``ray.init`` and the engines start), in a fresh Python process.

train_ppo_ray.py imports torch, ray, deepspeed and vLLM at its top, so this runs only where OpenRLHF
and those import (a GPU machine's image); elsewhere the record says why and ``caught`` is False.
The asserts after ``ray.init`` (colocation) and DeepSpeed's own batch check at engine start are
not reached here: a case they catch is reported as not caught by this stage.
"""

from __future__ import annotations

import importlib.util
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

MODULE = "openrlhf.cli.train_ppo_ray"
# Runs train_ppo_ray.py as __main__ with its last statement `train(args)` removed.
CHILD = r"""
import ast, importlib.util, json, sys, time
t0 = time.perf_counter()
spec = importlib.util.find_spec("openrlhf.cli.train_ppo_ray")
tree = ast.parse(open(spec.origin, encoding="utf-8").read())
main = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)][-1]
main.body = [s for s in main.body if not (isinstance(s, ast.Expr) and ast.unparse(s).startswith(("train(", "submit(")))]
sys.argv = ["train_ppo_ray.py"] + json.loads(sys.stdin.read())
error = ""
try:
    exec(compile(tree, spec.origin, "exec"), {"__name__": "__main__", "__file__": spec.origin})
except SystemExit as exc:
    error = "" if exc.code in (0, None) else f"argparse exit {exc.code}"
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"
print(json.dumps({"error": error, "seconds": time.perf_counter() - t0}))
"""


def _flags(case: CorpusCase, root: Path) -> list[str]:
    spec = json.loads(import_case(case, root).read_text(encoding="utf-8"))
    argv = spec["trainer"]["command"]
    return argv[argv.index(MODULE) + 1:]


def validate(case: CorpusCase) -> dict[str, Any]:
    """{caught, when, seconds, error}: OpenRLHF's parsing and post-parse asserts on the case's flags."""
    try:
        found = importlib.util.find_spec("openrlhf") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        return {"caught": False, "when": "not run: openrlhf is not installed here", "seconds": 0.0,
                "error": "openrlhf imports torch, ray, deepspeed and vllm (and flash-attn) at the top of "
                         "train_ppo_ray.py; they have no CPU-only install, so its own checks cannot run on "
                         "this machine"}
    with tempfile.TemporaryDirectory() as tmp:
        flags = _flags(case, Path(tmp))
        start = time.perf_counter()
        child = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(flags), capture_output=True,
                               text=True, timeout=600, cwd=tmp)
        seconds = time.perf_counter() - start
    try:
        out = json.loads(child.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"caught": False, "when": "not run: train_ppo_ray.py did not import", "seconds": seconds,
                "error": (child.stderr or child.stdout)[-500:]}
    when = "train_ppo_ray.py argparse and post-parse asserts (before ray.init)"
    return {"caught": bool(out["error"]), "when": when if out["error"] else when + ": no error",
            "seconds": seconds, "error": out["error"]}


if __name__ == "__main__":
    from framework_corpus.openrlhf import CASES

    for c in CASES:
        print(c.id, json.dumps(validate(c))[:300])
