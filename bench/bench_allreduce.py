"""The gloo all-reduce / all-gather sweep on local ranks: what `--level active` measures.

Starts the ranks as child processes (as the network.collective check does), sweeps message sizes
from 64 KiB up, and prints time, algbw and busbw per size by the nccl-tests formulas (all-reduce
busbw = algbw x 2(n-1)/n, all-gather busbw = algbw x (n-1)/n). It sets no speed goal (there is
no gloo counterpart of nccl-tests to hold it against); it shows what the check would compare with
network.min_gbps on this machine, and with --ranks 3 or more the busbw of every pair of ranks.

    .venv/bin/python bench/bench_allreduce.py [--ranks 2] [--max-mib 64]

Exit codes: 0 measured, 1 the ranks failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from preflight.probes_active.collective import CollectiveError, run_local  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--max-mib", type=float, default=64)
    p.add_argument("--budget", type=float, default=120)
    a = p.parse_args()
    try:
        m = run_local(a.ranks, a.max_mib, a.budget)
    except CollectiveError as exc:
        print(f"the ranks failed: {exc}", file=sys.stderr)
        return 1
    print(f"{m.backend}, {m.world} local ranks{', stopped at the budget' if m.truncated else ''}")
    print(f"{'op':<11} {'size':>10} {'time':>10} {'algbw':>11} {'busbw':>11}")
    for r in m.rows:
        print(f"{r.op:<11} {r.bytes / 2**20:>7g} MiB {r.time_s * 1e3:>7.2f} ms {r.algbw_gb_s:>6.2f} GB/s "
              f"{r.busbw_gb_s:>6.2f} GB/s")
    for p_ in m.pairs:
        print(f"pair {m.name(p_.a)} <-> {m.name(p_.b)}: busbw {p_.busbw_gb_s:.2f} GB/s")
    peak = m.peak_busbw("all_reduce")
    if peak:
        print(f"peak all-reduce busbw {peak.busbw_gb_s:.2f} GB/s = {peak.busbw_gb_s * 8:.1f} Gbit/s "
              f"(compare with network.min_gbps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
