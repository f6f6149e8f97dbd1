"""Reading other trainers' logs: TensorBoard event files against TensorBoard's own reader, and
verl's file-logger JSON Lines against a plain json.loads loop. Single process, files on local disk,
page cache warm (each is read once untimed first).

- TensorBoard: ``TensorBoardSource`` (tensorboard's RawEventFileLoader, Event parsing, scalars
  grouped by step, mapped to the monitor's events) against ``EventFileLoader(path).Load()`` alone
  (the maintained reader, parsing included, nothing done with the events). Goal: >= 0.9x.
- verl: ``VerlFileSource`` (byte-offset tailer, msgspec when installed, the metric map) in records
  a second; the peer is ``json.loads`` on each line with nothing mapped. Goal: >= 200k records/s.

The logs carry the keys these trainers write (tests/monitor_logs.py) at a realistic width: verl's
~30 metric keys a step, OpenRLHF's ~10 scalars a step.

    python bench/bench_monitor_sources.py [--steps 200000] [--tb-steps 20000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from monitor_logs import openrlhf_scalars, verl_record, write_tensorboard  # noqa: E402

from preflight.monitor.sources.mapping import RecordMapper  # noqa: E402
from preflight.monitor.sources.tensorboard import TensorBoardSource  # noqa: E402
from preflight.monitor.sources.verl import VerlFileSource  # noqa: E402


def best(fn, repeat: int = 3) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    fn()  # warm the page cache
    times, count = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = fn()
        times.append(time.perf_counter() - start)
    return min(times), count


def bench_verl(tmp: Path, steps: int) -> None:
    path = tmp / "exp.jsonl"
    with open(path, "w") as fh:
        for step in range(1, steps + 1):
            fh.write(json.dumps(verl_record(step % 1000 + 1) | {"step": step}) + "\n")

    def ours() -> int:
        source = VerlFileSource(path, RecordMapper("verl"))
        events = 0
        while True:
            events += len(source.poll())
            if source.caught_up:
                break
        source.close()
        assert source.malformed == 0
        return source.tailer.lines_read

    def peer() -> int:
        n = 0
        with open(path, "rb") as fh:
            for line in fh:
                json.loads(line)
                n += 1
        return n

    t_ours, n = best(ours)
    t_peer, _ = best(peer)
    size = path.stat().st_size / 2**20
    print(f"verl file logger, {n:,} records ({size:.0f} MiB):")
    print(f"  preflight VerlFileSource   {n / t_ours:12,.0f} records/s")
    print(f"  json.loads per line (peer) {n / t_peer:12,.0f} records/s")
    print(f"  ratio {t_peer / t_ours:.2f}x the peer; goal >= 200,000 records/s: "
          f"{'met' if n / t_ours >= 200_000 else 'NOT met'}")


def bench_tensorboard(tmp: Path, steps: int) -> None:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    logdir = write_tensorboard(tmp / "tb", openrlhf_scalars, steps=steps)
    event_file = next(logdir.glob("events.out.tfevents.*"))

    def ours() -> int:
        source = TensorBoardSource(logdir, RecordMapper("openrlhf"))
        source.final = True
        events = 0
        while True:
            events += len(source.poll(1 << 30))
            if source.caught_up:
                break
        assert source.malformed == 0
        return source.records

    def peer() -> int:
        return sum(1 for _ in EventFileLoader(str(event_file)).Load())

    t_ours, records = best(ours)
    t_peer, events = best(peer)
    size = event_file.stat().st_size / 2**20
    print(f"TensorBoard, {steps:,} steps, {events:,} event records ({size:.1f} MiB):")
    print(f"  preflight TensorBoardSource        {t_ours:7.3f} s ({records:,} steps mapped)")
    print(f"  EventFileLoader alone (peer)       {t_peer:7.3f} s")
    ratio = t_peer / t_ours
    print(f"  ratio {ratio:.2f}x the maintained reader alone; goal >= 0.9x: "
          f"{'met' if ratio >= 0.9 else 'NOT met'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200_000, help="verl records")
    parser.add_argument("--tb-steps", type=int, default=20_000, help="TensorBoard steps")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sources-") as name:
        bench_verl(Path(name), args.steps)
        bench_tensorboard(Path(name), args.tb_steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
