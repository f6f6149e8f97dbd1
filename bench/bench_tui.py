"""How much CPU does the run console use while following a fast run?

A writer process appends step events at --rate events/s (default 1,000) for --seconds (default 10).
The console, `preflight tui --attach RUN_DIR`, runs as its own process on a pseudo-terminal of
80x24 (so Textual renders and writes every frame as it would over SSH; this script drains the
output), and its CPU time (user + system, all threads, from psutil) is measured from after its
start-up until the writer stops, as a share of one core. Goal: under 20 %.

The named peer, measured in the same run: the headless follow loop of bench/bench_monitor.py
(`RunMonitor.poll()` and a snapshot after each poll that found something, as `preflight monitor`
does) following the same writer. The ratio console / peer is what the screen costs on top.

    .venv/bin/python bench/bench_tui.py
    .venv/bin/python bench/bench_tui.py --rate 5000 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_monitor import WRITER, follow  # noqa: E402

CPU_GOAL = 0.20
STARTUP_S = 4.0  # the console's imports and first frame, left out of the measurement


def run_start(events: Path) -> None:
    events.write_text(json.dumps({"time": time.time(), "type": "run_start", "run": "bench-tui",
                                  "spec_sha256": "0" * 64, "world_size": 1, "backend": "cpu",
                                  "device": "cpu", "config": {}, "notes": []}) + "\n")


DRAINED = [0]  # bytes the console wrote to its terminal: shows it really drew the frames


def open_console(run_dir: Path) -> tuple[subprocess.Popen[bytes], int, threading.Thread]:
    """`preflight tui --attach RUN_DIR` on an 80x24 pseudo-terminal whose output is drained."""
    import fcntl
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
    proc = subprocess.Popen([sys.executable, "-m", "preflight", "tui", "--attach", str(run_dir)],
                            stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env,
                            start_new_session=True)
    os.close(slave)

    def drain() -> None:
        try:
            while chunk := os.read(master, 65536):
                DRAINED[0] += len(chunk)
        except OSError:
            pass  # the console exited and the terminal closed

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    return proc, master, reader


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def measure_console(run_dir: Path, rate: float, seconds: float) -> tuple[int, float, float]:
    events = run_dir / "events.jsonl"
    run_start(events)
    console, master, reader = open_console(run_dir)
    ps = psutil.Process(console.pid)
    try:
        time.sleep(STARTUP_S)
        if console.poll() is not None:
            raise SystemExit(f"the console exited early (code {console.returncode})")
        cpu0, wall0, drawn0 = cpu_seconds(ps), time.perf_counter(), DRAINED[0]
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(events), str(rate), str(seconds),
                                   str(REPO)])
        writer.wait(timeout=seconds + 30)
        time.sleep(0.5)  # the console catches up with the last events
        cpu, wall = cpu_seconds(ps) - cpu0, time.perf_counter() - wall0
        print(f"console drew {(DRAINED[0] - drawn0) / 1024:,.0f} KiB of terminal output while following")
        lines = events.read_bytes().count(b"\n")
        os.write(master, b"q")  # quit as a user would; it must exit by itself
        console.wait(timeout=10)
    finally:
        if console.poll() is None:
            os.killpg(console.pid, signal.SIGKILL)
            console.wait()
        os.close(master)
        reader.join(timeout=2)
    return lines, cpu, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=1000.0, help="events per second the writer appends")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long the writer writes")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rp-bench-tui-"))
    try:
        (tmp / "console").mkdir()
        (tmp / "peer").mkdir()
        lines, cpu, wall = measure_console(tmp / "console", args.rate, args.seconds)
        console_share = cpu / wall
        print(f"console: `preflight tui --attach` on an 80x24 pty, {lines:,} events at {args.rate:,.0f}/s "
              f"over {wall:.1f} s; CPU {cpu:.2f} s = {console_share * 100:.1f}% of one core")
        seen, peer_cpu, peer_wall = follow(tmp / "peer", args.rate, args.seconds, 0.1)
        peer_share = peer_cpu / peer_wall
        print(f"peer:    headless follow loop (bench_monitor.follow, poll every 0.1 s), {seen:,} events "
              f"over {peer_wall:.1f} s; CPU {peer_cpu:.2f} s = {peer_share * 100:.1f}% of one core")
        ratio = console_share / peer_share if peer_share > 0 else float("inf")
        print(f"ratio console / peer: {ratio:.2f}x; goal console < {CPU_GOAL * 100:.0f}% of one core: "
              f"{'met' if console_share < CPU_GOAL else 'NOT met'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
