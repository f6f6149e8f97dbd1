"""How fast is the monitor core? Replay and live following, against a named peer.

1. Replay: generate an event log (default 1,000,000 lines, in a temporary directory: a run_start,
   step events with every field the runner writes, a validation and a checkpoint every 100 steps,
   an alert and an action now and then), then time ``RunMonitor(run_dir).poll()`` reading it all
   (file reads, decoding, the rules and series) plus one ``snapshot()`` (checklists and the
   curve fit). The peer is the least any Python follower does: ``json.loads`` on every line of the
   same file, nothing else. Prints events per second of both and the ratio. Goal: >= 200,000
   events/s for the monitor.

2. Following (headless): a writer *process* appends step events at --rate events/s (default
   1,000) for --seconds (default 10); this process follows it as `preflight monitor` does
   (poll, and a snapshot after each poll that found something) every --interval seconds, and
   reports its CPU time (time.process_time) as a share of one core. Goal: under 20 %. The TUI
   bench can put its rendering on top of the same loop.

    .venv/bin/python bench/bench_monitor.py                 # both parts, 1M lines
    .venv/bin/python bench/bench_monitor.py --lines 200000  # quicker
    .venv/bin/python bench/bench_monitor.py --skip-follow
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from preflight.monitor.core import RunMonitor  # noqa: E402
from preflight.rundir import events_path  # noqa: E402
from runner.events import JsonlSink  # noqa: E402

REPLAY_GOAL = 200_000  # events per second
CPU_GOAL = 0.20  # share of one core while following 1,000 events/s


def step_event(step: int, rng: random.Random, t0: float) -> dict[str, object]:
    """A step event with the runner's fields and plausible values."""
    return {
        "time": t0 + step * 2.0, "type": "step", "step": step,
        "loss": 0.3 + rng.gauss(0, 0.02), "pass_rate": min(0.95, 0.1 + step / 2e6 + rng.random() * 0.05),
        "gen_len_mean": 900 + rng.random() * 200, "truncation_rate": rng.random() * 0.05,
        "utilization": 0.75 + rng.random() * 0.2, "utilization_source": "gpu",
        "grad_norm": 0.8 + rng.random() * 0.4, "lr": 1e-6, "batch_size": 64,
        "clip_frac_low": rng.random() * 0.01, "clip_frac_high": rng.random() * 0.02,
        "entropy": 0.6 + rng.random() * 0.1, "tokens_per_s": 50_000 + rng.random() * 5_000,
        "memory_gib": 61.5, "energy_j": 5000.0 + rng.random() * 100, "device_hours": step * 0.0045,
        "kept_groups_frac": 0.9, "attempt": 0,
    }


def write_log(path: Path, lines: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    t0 = 1.7e9
    encode = JsonlSink.encode
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        head = {"time": t0, "type": "run_start", "run": "bench", "spec_sha256": "0" * 64, "world_size": 8,
                "backend": "nccl", "device": "cuda:0 (NVIDIA H100)", "notes": [],
                "config": {"training": {"learning_rate": 1e-6, "batch_size": 512, "eval_interval": 100}}}
        f.write(encode(head) + "\n")
        written += 1
        step = 0
        batch: list[str] = []
        while written < lines:
            step += 1
            batch.append(encode(step_event(step, rng, t0)))
            written += 1
            if step % 100 == 0:
                rate = 0.2 + 0.4 / (1 + (2000 / max(step * 0.0045, 1e-9)) ** 1.5)
                batch.append(encode({"time": t0 + step * 2, "type": "validation", "step": step,
                                     "pass_rate": rate, "n": 1000, "device_hours": step * 0.0045}))
                batch.append(encode({"time": t0 + step * 2, "type": "checkpoint", "step": step,
                                     "path": f"ckpt/step_{step}", "bytes": 16 << 30, "seconds": 41.0,
                                     "metric": rate, "metric_name": "validation_pass_rate"}))
                written += 2
            if step % 5000 == 0:
                batch.append(encode({"time": t0 + step * 2, "type": "alert", "step": step, "rule": "loss_spike",
                                     "message": "loss spike", "action": "update applied", "severity": "warn"}))
                batch.append(encode({"time": t0 + step * 2, "type": "action", "step": step, "kind": "lr_reduce",
                                     "cause": "loss_spike: learning rate x0.5"}))
                written += 2
            if len(batch) >= 10_000:
                f.write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            f.write("\n".join(batch) + "\n")
    return written


def peer_json_loads(path: Path) -> tuple[int, float, float]:
    """Lines, wall seconds, CPU seconds."""
    t, c = time.perf_counter(), time.process_time()
    n = 0
    with open(path, "rb") as f:
        for line in f:
            json.loads(line)
            n += 1
    return n, time.perf_counter() - t, time.process_time() - c


def replay(path_dir: Path) -> tuple[int, float, float, float]:
    """Events, wall and CPU seconds of the poll, wall seconds of the snapshot."""
    t, c = time.perf_counter(), time.process_time()
    monitor = RunMonitor(path_dir)
    monitor.poll()
    read, cpu = time.perf_counter() - t, time.process_time() - c
    t = time.perf_counter()
    monitor.snapshot()
    snap = time.perf_counter() - t
    events = monitor.state.events_seen
    monitor.close()
    return events, read, cpu, snap


WRITER = r"""
import json, random, sys, time
sys.path.insert(0, sys.argv[4])
from bench.bench_monitor import step_event
from runner.events import JsonlSink
path, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rng = random.Random(1)
t0 = time.time()
step = 0
with open(path, "a", encoding="utf-8") as f:
    while True:
        now = time.time() - t0
        if now >= seconds:
            break
        due = int(now * rate)
        while step < due:
            step += 1
            f.write(JsonlSink.encode(step_event(step, rng, t0)) + "\n")
        f.flush()
        time.sleep(0.01)
    f.write(json.dumps({"time": time.time(), "type": "run_end", "step": step, "status": "completed",
                        "reason": None}) + "\n")
"""


def follow(run_dir: Path, rate: float, seconds: float, interval: float) -> tuple[int, float, float]:
    events = events_path(run_dir)
    events.write_text(json.dumps({"time": time.time(), "type": "run_start", "run": "follow",
                                  "spec_sha256": "0" * 64, "world_size": 1, "backend": "cpu",
                                  "device": "cpu", "config": {}, "notes": []}) + "\n")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(events), str(rate), str(seconds), str(REPO)])
    monitor = RunMonitor(run_dir)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        while True:
            if monitor.poll():
                monitor.snapshot()
            if monitor.state.status == "completed" and monitor.caught_up:
                break
            if writer.poll() is not None and not monitor.poll() and monitor.caught_up:
                break
            time.sleep(interval)
    finally:
        writer.wait(timeout=seconds + 30)
        monitor.close()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return monitor.state.events_seen, cpu, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=1000.0, help="events per second written while following")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long the writer writes")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between polls while following")
    ap.add_argument("--skip-follow", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rp-bench-monitor-"))
    try:
        run_dir = tmp / "replay"
        run_dir.mkdir()
        t = time.perf_counter()
        n = write_log(events_path(run_dir), args.lines)
        size = (events_path(run_dir)).stat().st_size
        print(f"generated {n:,} lines ({size / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s")
        peer_n, peer_s, peer_cpu = peer_json_loads(events_path(run_dir))
        events, read_s, read_cpu, snap_s = replay(run_dir)
        ours, peer = events / read_s, peer_n / peer_s
        # Per CPU second too: on a shared machine the wall figure also measures the neighbours.
        print(f"peer  json.loads per line      : {peer_n:,} lines in {peer_s:.2f} s = {peer:,.0f} lines/s "
              f"({peer_n / peer_cpu:,.0f} per CPU second)")
        print(f"ours  RunMonitor.poll (replay) : {events:,} events in {read_s:.2f} s = {ours:,.0f} events/s "
              f"({events / read_cpu:,.0f} per CPU second); snapshot {snap_s * 1000:.0f} ms")
        print(f"ratio ours / peer: {ours / peer:.2f}x; goal >= {REPLAY_GOAL:,} events/s: "
              f"{'met' if ours >= REPLAY_GOAL else 'NOT met'}")
        if not args.skip_follow:
            fdir = tmp / "follow"
            fdir.mkdir()
            seen, cpu, wall = follow(fdir, args.rate, args.seconds, args.interval)
            share = cpu / wall
            print(f"follow: {seen:,} events written at {args.rate:,.0f}/s over {wall:.1f} s; monitor CPU "
                  f"{cpu:.2f} s = {share * 100:.1f}% of one core (poll every {args.interval} s); goal < "
                  f"{CPU_GOAL * 100:.0f}%: {'met' if share < CPU_GOAL else 'NOT met'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
