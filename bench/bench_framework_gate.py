"""Which misconfigurations of the corpus each framework's own validation catches, and when; and the
time to a verdict: preflight's gate against the framework's own start-up to its error.

The corpus is tests/framework_corpus/<framework>.py (every framework module there, loaded by path):
each case is a launch script or config reconstructed from a public thread. For each case:

- preflight: `preflight import FRAMEWORK SOURCE -o spec.yaml` then `preflight check spec.yaml
  --level static`, both as subprocesses (Python start-up included), in a fresh directory that is
  also $HOME and holds the case's data files. Caught = exit 1 with the case's check among the
  blocking ones.
- the framework: bench/own_validation_<framework>.py's ``validate(case)`` where that file exists
  (each runs the framework's own validation on CPU in a child process and reports caught / when /
  seconds / error); a framework without one is listed as not measured.

Both run alternately, case by case, so machine load hits both alike. Medians are over the cases
each side measured. `--ray` also times `ray.init()` + shutdown once in a child process: verl runs
it before its validate_config, so a real verl launch reaches its first config error that much later.

    .venv/bin/python bench/bench_framework_gate.py [--only verl] [--ray] [--markdown]

Exit codes: 0 measured; 1 a preflight verdict differs from the corpus (a case not blocked by its
check); 2 bad arguments or no corpus.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import pkgutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "framework_corpus"


def corpus_modules() -> dict[str, ModuleType]:
    """framework name -> its corpus module, from the files in tests/framework_corpus/."""
    sys.path.insert(0, str(CORPUS.parent))
    importlib.import_module("framework_corpus")
    found = {}
    for info in pkgutil.iter_modules([str(CORPUS)]):
        found[info.name] = importlib.import_module(f"framework_corpus.{info.name}")
    return found


def own_validation(framework: str) -> ModuleType | None:
    path = REPO / "bench" / f"own_validation_{framework}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"own_validation_{framework}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ours(case: Any) -> dict[str, Any]:
    """preflight's verdict on the case: import + static check, as two subprocesses."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if case.files is not None:
            case.files(root)
        (root / case.source_name).write_text(case.source, encoding="utf-8")
        env = {**os.environ, "HOME": str(root), "PYTHONPATH": str(REPO)}
        cmd = [sys.executable, "-m", "preflight"]
        start = time.perf_counter()
        version = case.extra.get("version")  # the framework version the thread ran, as the corpus tests import it
        imported = subprocess.run([*cmd, "import", case.framework, case.source_name, "-o", "spec.yaml",
                                   *(["--version", str(version)] if version else [])], cwd=root,
                                  env=env, capture_output=True, text=True, check=False)
        if imported.returncode != 0:
            return {"caught": False, "seconds": time.perf_counter() - start, "by": "",
                    "error": imported.stderr.strip()[-300:]}
        checked = subprocess.run([*cmd, "check", "spec.yaml", "--level", "static", "--format", "json", "--output",
                                  "report.json"], cwd=root, env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        if not (root / "report.json").exists():  # exit 2: the spec could not be judged
            return {"caught": False, "seconds": seconds, "by": "", "error": checked.stderr.strip()[-300:]}
        report = json.loads((root / "report.json").read_text(encoding="utf-8"))
    blocking = sorted(r["id"] for r in report["results"] if r["status"] in ("fail", "error"))
    caught = checked.returncode == 1 and case.blocked_by in blocking
    return {"caught": caught, "seconds": seconds, "by": case.blocked_by if caught else ", ".join(blocking),
            "error": ""}


def ray_init_seconds() -> float | None:
    code = "import time; t = time.perf_counter(); import ray; ray.init(num_cpus=1); ray.shutdown(); " \
           "print(time.perf_counter() - t)"
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
        return float(proc.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return None


def run(frameworks: list[str], markdown: bool, ray: bool) -> int:
    modules = corpus_modules()
    chosen = [f for f in frameworks if f in modules] if frameworks else sorted(modules)
    if not chosen:
        print(f"no corpus for {', '.join(frameworks) or 'any framework'} in {CORPUS}", file=sys.stderr)
        return 2
    rows, mismatched = [], 0
    for framework in chosen:
        hook = own_validation(framework)
        for case in modules[framework].CASES:
            mine = ours(case)
            theirs = hook.validate(case) if hook is not None else None
            mismatched += not mine["caught"]
            rows.append((case, mine, theirs))
            print(f"  {case.id}: preflight {'caught' if mine['caught'] else 'MISSED'} in {mine['seconds']:.2f} s; "
                  f"{framework}: " + ("not measured (no bench/own_validation_" + framework + ".py)" if theirs is None
                                      else f"{'caught' if theirs['caught'] else 'not caught'} "
                                           f"({theirs['seconds']:.2f} s): {theirs['when']}"), file=sys.stderr)
    print(_table(rows, markdown))
    print(_summary(rows, chosen, ray_init_seconds() if ray else None))
    return 1 if mismatched else 0


def _table(rows: list[tuple[Any, dict[str, Any], dict[str, Any] | None]], markdown: bool) -> str:
    head = ["case", "thread", "preflight (static)", "s", "framework's own validation", "s"]
    lines = []
    for case, mine, theirs in rows:
        own = "not measured" if theirs is None else (("caught: " if theirs["caught"] else "no: ") + theirs["when"])
        lines.append([case.id, case.thread, mine["by"] if mine["caught"] else f"MISSED ({mine['by']})",
                      f"{mine['seconds']:.2f}", own, "" if theirs is None else f"{theirs['seconds']:.2f}"])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(cell.replace("|", "/") for cell in line) + " |" for line in lines]
        return "\n".join(out)
    return "\n".join("  ".join(line) for line in [head, *lines])


def _summary(rows: list[tuple[Any, dict[str, Any], dict[str, Any] | None]], chosen: list[str],
             ray_s: float | None) -> str:
    out = []
    for framework in chosen:
        mine = [m for c, m, _ in rows if c.framework == framework]
        theirs = [t for c, _, t in rows if c.framework == framework and t is not None]
        ours_median = statistics.median(m["seconds"] for m in mine)
        line = (f"{framework}: {len(mine)} cases; preflight blocks {sum(m['caught'] for m in mine)}, "
                f"median {ours_median:.2f} s to a verdict")
        if theirs:
            caught = [t for t in theirs if t["caught"]]
            line += f"; {framework}'s own validation catches {len(caught)} before GPU work"
            if caught:
                theirs_median = statistics.median(t["seconds"] for t in caught)
                line += (f", median {theirs_median:.2f} s from start to its error "
                         f"({theirs_median / ours_median:.1f}x preflight's time)")
        else:
            line += f"; {framework}'s own validation not measured"
        out.append(line)
    if ray_s is not None:
        out.append(f"ray.init + shutdown here: {ray_s:.2f} s (verl runs ray.init before validate_config)")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], metavar="FRAMEWORK")
    parser.add_argument("--markdown", action="store_true", help="the table as markdown (for bench/README.md)")
    parser.add_argument("--ray", action="store_true", help="also time ray.init once")
    args = parser.parse_args(argv)
    return run(args.only, args.markdown, args.ray)


if __name__ == "__main__":
    sys.exit(main())
