"""All-reduce and all-gather bandwidth over a sweep of message sizes, with torch.distributed.

Figures follow nccl-tests (docs/reference.md section 8): ``algbw = bytes / time``; all-reduce
``busbw = algbw * 2 (n-1)/n``; all-gather ``busbw = algbw * (n-1)/n``, where for all-gather
``bytes`` is the whole gathered buffer (each rank contributes bytes / n). The time of one operation
is the slowest rank's average over the timed iterations. With more than two ranks, every pair of
ranks then runs an all-reduce of its own, so a slow link can be named.

``rank_main`` is what every rank runs: in a child process on this machine (``run_local``, ranks
over loopback), or in a Ray task on each node of a cluster (preflight.cluster). Nothing here
imports torch at module level; the children do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .cleanup import stop, track

KIB, MIB = 2**10, 2**20
SMALLEST = 64 * KIB
GB = 1e9  # bandwidth in GB/s, as nccl-tests prints it
OPS = ("all_reduce", "all_gather")


class CollectiveError(Exception):
    """The ranks could not start, meet or finish; the message says what happened."""


def bus_factor(op: str, n: int) -> float:
    """busbw / algbw for ``op`` on ``n`` ranks (nccl-tests)."""
    if n < 2:
        return 0.0
    return 2 * (n - 1) / n if op == "all_reduce" else (n - 1) / n


def sweep_sizes(max_mib: float) -> list[int]:
    """64 KiB, 256 KiB, 1 MiB, ... up to ``max_mib`` (always at least the smallest)."""
    sizes, size = [], SMALLEST
    while size <= max_mib * MIB:
        sizes.append(size)
        size *= 4
    return sizes or [SMALLEST]


def iterations(size: int) -> int:
    """Timed iterations per size: many for latency-bound small messages, a few for large ones."""
    return 20 if size <= MIB else 10 if size <= 16 * MIB else 5


@dataclass
class Row:
    op: str
    bytes: int
    time_s: float
    algbw_gb_s: float
    busbw_gb_s: float


@dataclass
class PairRow:
    a: int
    b: int
    bytes: int
    busbw_gb_s: float


@dataclass
class CollectiveMeasurement:
    backend: str
    world: int
    rows: list[Row] = field(default_factory=list)
    pairs: list[PairRow] = field(default_factory=list)
    truncated: bool = False  # the sweep stopped at its time budget
    names: list[str] = field(default_factory=list)  # who each rank is (a node, or "local rank i")

    def peak_busbw(self, op: str = "all_reduce") -> Row | None:
        """The op's row with the highest bus bandwidth (the bandwidth-bound end of the sweep)."""
        rows = [r for r in self.rows if r.op == op]
        return max(rows, key=lambda r: r.busbw_gb_s) if rows else None

    def slowest_pair(self) -> PairRow | None:
        return min(self.pairs, key=lambda p: p.busbw_gb_s) if self.pairs else None

    def name(self, rank: int) -> str:
        return self.names[rank] if rank < len(self.names) else f"rank {rank}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CollectiveMeasurement:
        return cls(backend=d["backend"], world=d["world"], rows=[Row(**r) for r in d["rows"]],
                   pairs=[PairRow(**p) for p in d["pairs"]], truncated=d["truncated"],
                   names=list(d.get("names", [])))


def rank_main(rank: int, world: int, master: str, backend: str, sizes: list[int], budget_s: float,
              device: str = "cpu", pairwise: bool = True) -> dict[str, Any] | None:
    """Run the sweep as one rank; rank 0 returns the measurement as a dict, the others None."""
    import datetime as dt

    import torch
    import torch.distributed as dist

    deadline = time.monotonic() + budget_s
    dist.init_process_group(backend, init_method=f"tcp://{master}", rank=rank, world_size=world,
                            timeout=dt.timedelta(seconds=max(budget_s, 30)))
    try:
        dev = torch.device(device)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)

        def sync() -> None:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)

        def slowest(seconds: float) -> float:
            t = torch.tensor([seconds], dtype=torch.float64, device=dev)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            return float(t.item())

        def keep_going() -> bool:  # rank 0's clock decides for everyone
            flag = torch.tensor([1 if time.monotonic() < deadline else 0], device=dev)
            dist.broadcast(flag, src=0)
            return bool(flag.item())

        out = CollectiveMeasurement(backend=backend, world=world)
        for size in sizes:
            if not keep_going():
                out.truncated = True
                break
            for op in OPS:
                seconds = _time_op(op, size, world, dev, dist, torch, sync)
                seconds = slowest(seconds)
                alg = size / seconds / GB
                out.rows.append(Row(op, size, seconds, alg, alg * bus_factor(op, world)))
        if pairwise and world > 2 and out.rows and not out.truncated:
            out.pairs = _pairs(rank, world, min(max(r.bytes for r in out.rows), 16 * MIB), dev, dist, torch, sync)
        return out.to_dict() if rank == 0 else None
    finally:
        dist.destroy_process_group()


def _time_op(op: str, size: int, world: int, dev: Any, dist: Any, torch: Any, sync: Any) -> float:
    """Average seconds of one ``op`` on ``size`` bytes, after a warm-up."""
    if op == "all_reduce":
        buf = torch.ones(size // 4, dtype=torch.float32, device=dev)

        def run() -> None:
            dist.all_reduce(buf)
    else:
        chunk = torch.ones(max(size // 4 // world, 1), dtype=torch.float32, device=dev)
        gathered = [torch.empty_like(chunk) for _ in range(world)]

        def run() -> None:
            dist.all_gather(gathered, chunk)
    run()
    sync()
    n = iterations(size)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(n):
        run()
    sync()
    return (time.perf_counter() - t0) / n


def _pairs(rank: int, world: int, size: int, dev: Any, dist: Any, torch: Any, sync: Any) -> list[PairRow]:
    """An all-reduce between each pair of ranks in turn (every rank creates every group, as
    torch.distributed requires); the lower rank of each pair records its time."""
    pairs = [(a, b) for a in range(world) for b in range(a + 1, world)]
    times = torch.zeros(len(pairs), dtype=torch.float64, device=dev)
    for k, (a, b) in enumerate(pairs):
        group = dist.new_group([a, b])
        if rank in (a, b):
            buf = torch.ones(size // 4, dtype=torch.float32, device=dev)
            dist.all_reduce(buf, group=group)
            sync()
            t0 = time.perf_counter()
            for _ in range(iterations(size)):
                dist.all_reduce(buf, group=group)
            sync()
            if rank == a:
                times[k] = (time.perf_counter() - t0) / iterations(size)
        dist.barrier()
    dist.all_reduce(times)  # each slot was written by one rank only
    return [PairRow(a, b, size, size / float(t) / GB * bus_factor("all_reduce", 2))
            for (a, b), t in zip(pairs, times.tolist(), strict=True)]


def free_port(host: str = "127.0.0.1") -> int:
    import socket  # here, not at the top: `preflight check` loads this module

    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def run_local(world: int, max_mib: float, budget_s: float, backend: str = "gloo",
              startup_s: float = 60.0) -> CollectiveMeasurement:
    """Start ``world`` ranks as child processes on this machine and run the sweep over loopback.

    The children are killed when the budget (plus start-up time, importing torch) runs out, on
    Ctrl-C, or at exit. Raises CollectiveError with the failing rank's last words.
    """
    master = f"127.0.0.1:{free_port()}"
    sizes = ",".join(map(str, sweep_sizes(max_mib)))
    out_dir = tempfile.mkdtemp(prefix="preflight-collective-")
    result = os.path.join(out_dir, "rank0.json")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for rank in range(world):
            device = f"cuda:{rank}" if backend == "nccl" else "cpu"
            cmd = [sys.executable, "-m", "preflight.probes_active.collective", "--rank", str(rank),
                   "--world", str(world), "--master", master, "--backend", backend, "--sizes", sizes,
                   "--budget", str(budget_s), "--device", device, "--out", result]
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
            track(proc)
            procs.append(proc)
        deadline = time.monotonic() + budget_s + startup_s
        for rank, proc in enumerate(procs):
            try:
                _, err = proc.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                raise CollectiveError(f"the ranks did not finish within {budget_s + startup_s:g} s "
                                      "(budget plus start-up); they were stopped") from None
            if proc.returncode != 0:
                last = (err or b"").decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise CollectiveError(f"rank {rank} exited with code {proc.returncode}: {last[0]}")
        with open(result, encoding="utf-8") as fh:
            measured = CollectiveMeasurement.from_dict(json.load(fh))
        measured.names = [f"local rank {r}" for r in range(world)]
        return measured
    finally:
        for proc in procs:
            stop(proc)
        for name in os.listdir(out_dir):
            os.unlink(os.path.join(out_dir, name))
        os.rmdir(out_dir)


def _main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="one rank of the preflight collective probe")
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--world", type=int, required=True)
    p.add_argument("--master", required=True, help="HOST:PORT of rank 0's rendezvous")
    p.add_argument("--backend", default="gloo", choices=("gloo", "nccl"))
    p.add_argument("--sizes", required=True, help="comma-separated message sizes in bytes")
    p.add_argument("--budget", type=float, default=60.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="rank 0 writes the measurement here as JSON (default: stdout)")
    a = p.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",")]
    result = rank_main(a.rank, a.world, a.master, a.backend, sizes, a.budget, a.device)
    if result is not None:
        text = json.dumps(result)
        if a.out:
            with open(a.out, "w", encoding="utf-8") as fh:
                fh.write(text)
        else:
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
