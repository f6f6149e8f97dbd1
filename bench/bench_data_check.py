"""The full data check on 1M JSONL rows against pyarrow merely parsing the same files.

Generates train/val/test JSONL (1M rows in all, 0.9/0.05/0.05, prompts of 40-70 words) in a
temporary directory, then alternately runs, each in its own process:
  - peer:      pyarrow.json.read_json on the three files (parse only);
  - preflight: `preflight check SPEC --only` the data checks of the goal (format, duplicates,
               exact leakage, length, stratification, split ratios).
Prints the median wall time of each, the ratio (goal: at most 2.5x) and the peak RSS of the
preflight process (goal: under 2 GB).

    .venv/bin/python bench/bench_data_check.py [--rows 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKS = ["data.format", "data.duplicates", "data.leakage.exact", "data.length", "data.stratification",
          "data.splits"]
# Each child prints its own peak RSS (KiB) as the last line of stderr.
RSS = "import resource, sys; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
PARSE = f"""
import sys, pyarrow.json as pj
for f in sys.argv[1:]:
    pj.read_json(f)
{RSS}
"""
CHECK = f"""
import sys
from preflight.cli import main
code = main(sys.argv[1:])
{RSS}
sys.exit(code)
"""


def generate(folder: Path, rows: int, seed: int = 0) -> dict[str, Path]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(30_000)]
    levels = ("easy", "medium", "hard")
    counts = {"train": rows * 90 // 100, "val": rows * 5 // 100}
    counts["test"] = rows - counts["train"] - counts["val"]
    paths = {}
    i = 0
    for name, n in counts.items():
        path = folder / f"{name}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for _ in range(n):
                prompt = " ".join(rng.choices(vocab, k=rng.randint(40, 70)))
                fh.write(json.dumps({"id": f"r{i}", "prompt": prompt, "answer": str(rng.randrange(10**6)),
                                     "difficulty": levels[i % 3]}) + "\n")
                i += 1
        paths[name] = path
    return paths


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        sys.exit(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return wall, int(proc.stderr.strip().splitlines()[-1]) * 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        paths = generate(folder, args.rows)
        size = sum(p.stat().st_size for p in paths.values())
        print(f"generated {args.rows:,} rows ({size / 1e6:,.0f} MB) in {time.perf_counter() - t0:.1f} s")
        spec = folder / "run.yaml"
        spec.write_text("run: {name: bench}\nhardware: {gpu_required: false}\ntraining: {max_prompt_tokens: 512}\n"
                        "data:\n" + "".join(f"  {k}: {p}\n" for k, p in paths.items()), encoding="utf-8")
        check_cmd = [sys.executable, "-c", CHECK, "check", str(spec), "--format", "json",
                     "--output", str(folder / "r.json")]
        for c in CHECKS:
            check_cmd += ["--only", c]
        parse_cmd = [sys.executable, "-c", PARSE, *map(str, paths.values())]
        peer, ours, rss, peer_rss = [], [], 0, 0
        for _ in range(args.rounds):
            wall, peak = timed(parse_cmd)
            peer.append(wall)
            peer_rss = max(peer_rss, peak)
            wall, peak = timed(check_cmd)
            ours.append(wall)
            rss = max(rss, peak)
        report = json.loads((folder / "r.json").read_text())
        bad = [r["id"] for r in report["results"] if r["status"] not in ("pass", "skip")]
    p_med, o_med = statistics.median(peer), statistics.median(ours)
    print(f"{args.rounds} rounds, alternating")
    print(f"  pyarrow.json.read_json (parse only)  median {p_med:6.2f} s   peak RSS {peer_rss / 2**30:.2f} GiB")
    print(f"  preflight data checks                median {o_med:6.2f} s   peak RSS {rss / 2**30:.2f} GiB")
    print(f"ratio preflight / parse: {o_med / p_med:.2f}x")
    print(f"goal <= 2.5x the parse time: {'met' if o_med / p_med <= 2.5 else 'not met'}")
    print(f"goal peak memory < 2 GB: {'met' if rss < 2e9 else 'not met'}")
    if bad:
        print(f"note: checks not passing on the generated data: {', '.join(bad)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
