"""How fast is `preflight check` next to `python -m torch.utils.collect_env`?

Both answer "is this machine ready for a torch run?"; collect_env imports torch to do it, while
preflight's check path reads package metadata and talks to NVML instead. The two commands run
alternately as subprocesses in one process (so drift in machine load hits both alike), from an
empty temporary directory, and the wall time of each is taken with time.perf_counter.

    .venv/bin/python bench/bench_check_speed.py [--rounds 7]

Goals: preflight at least 10x faster than collect_env, and under 0.5 s median wall.
Exit codes: 0 measured (whether or not the goals are met), 1 a command failed, 2 torch is not
installed so collect_env cannot be measured (or bad arguments).

Bytecode: by default both commands get a private bytecode cache in the temporary directory
(PYTHONPYCACHEPREFIX, PYTHONDONTWRITEBYTECODE unset) and an untimed warm-up round fills it, so
each is timed as an installed package runs: from compiled bytecode. Some sandboxes set
PYTHONDONTWRITEBYTECODE=1, which makes every run recompile preflight's own modules from source
(torch's installed modules keep their .pyc); --no-bytecode-cache measures that, environment as is.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "examples" / "cpu-smoke.yaml"
SPEEDUP_GOAL = 10.0
WALL_GOAL_S = 0.5


def preflight_command() -> list[str]:
    """The console script installed next to this interpreter (python -m preflight if absent)."""
    script = Path(sys.executable).parent / ("preflight.exe" if os.name == "nt" else "preflight")
    return [str(script)] if script.exists() else [sys.executable, "-m", "preflight"]


def run_once(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, check=False)
    return time.perf_counter() - start, proc


def fail(name: str, cmd: list[str], proc: subprocess.CompletedProcess[str]) -> int:
    print(f"error: {name} exited {proc.returncode}: {' '.join(cmd)}", file=sys.stderr)
    print(proc.stderr.strip() or proc.stdout.strip()[-2000:], file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=7, help="timed runs of each command (default 7)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs of each first (default 1)")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="inherit the environment as is instead of a private bytecode cache")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.warmup < 0:
        ap.error("--rounds must be >= 1 and --warmup >= 0")

    if importlib.util.find_spec("torch") is None:  # finds torch without importing it
        print(f"torch is not installed in {sys.executable}: collect_env cannot be measured; "
              "install the runner extra (pip install -e '.[runner]')", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="bench-check-speed-") as tmp:
        cwd = Path(tmp)
        env = dict(os.environ)
        if not args.no_bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(cwd / "pycache")
        env.setdefault("NO_COLOR", "1")
        commands = {
            "preflight check": preflight_command() + [
                "check", str(SPEC), "--level", "node", "--no-attest",
                "--format", "json", "--output", str(cwd / "report.json")],
            "collect_env": [sys.executable, "-m", "torch.utils.collect_env"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for n in range(args.warmup + args.rounds):
            for name, cmd in commands.items():
                wall, proc = run_once(cmd, cwd, env)
                if proc.returncode != 0:
                    return fail(name, cmd, proc)
                if n >= args.warmup:
                    times[name].append(wall)

    mode = "environment as is" if args.no_bytecode_cache else "private bytecode cache, warmed"
    print(f"{args.rounds} rounds, alternating, {args.warmup} warm-up; {mode}; {os.cpu_count()} CPUs")
    print(f"  {'command':<16} {'median':>8} {'min':>8} {'max':>8}")
    for name, ts in times.items():
        print(f"  {name:<16} {statistics.median(ts):>7.3f}s {min(ts):>7.3f}s {max(ts):>7.3f}s")
    pf = statistics.median(times["preflight check"])
    ce = statistics.median(times["collect_env"])
    ratio = ce / pf
    print(f"ratio collect_env / preflight check (medians): {ratio:.1f}x")
    print(f"goal >= {SPEEDUP_GOAL:g}x faster than collect_env: {'met' if ratio >= SPEEDUP_GOAL else 'NOT met'}")
    print(f"goal < {WALL_GOAL_S:g} s median wall: {'met' if pf < WALL_GOAL_S else 'NOT met'} ({pf:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
