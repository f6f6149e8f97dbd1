"""The storage probe's write and read throughput next to `dd` on the same directory and file size.

dd is what an operator would run by hand: `dd if=RANDOM of=F bs=4M count=N oflag=direct
conv=fsync` to write (RANDOM: a file of random bytes in memory, /dev/shm, because the probe
writes random bytes and some storage treats zeros specially) (O_DIRECT and the fsync inside the timing, as the probe does) and `dd if=F
of=/dev/null bs=4M iflag=direct` to read back. Where the directory refuses O_DIRECT, both sides
fall back to buffered I/O with fsync (dd without oflag/iflag=direct, the probe dropping the page
cache before reading). Rounds alternate which of the two goes first (the file system is still
freeing the last file when the next write starts) and sync before each; dd's own timing is used
(its copy loop, without process start-up). The median of each is compared.

    .venv/bin/python bench/bench_storage_probe.py [--dir DIR] [--mb 512] [--rounds 9]

Goal: the probe's figures within 15 % of dd's (ratio probe / dd between 0.85 and 1.15).
Exit codes: 0 measured (goal met or not), 1 dd failed, 2 bad arguments or no dd.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from preflight.probes_active.storage import DEFAULT_BLOCK, measure_storage, o_direct_supported  # noqa: E402

MB = 10**6


def dd_seconds(stderr: str) -> float:
    """dd's own timing ('... copied, 0.123 s, 2.2 GB/s'): its copy loop, without process start-up."""
    m = re.search(r"copied, ([0-9.]+) s", stderr)
    if not m:
        raise subprocess.CalledProcessError(0, "dd", stderr=stderr.encode())
    return float(m.group(1))


def dd_input_seconds(blocks: int, source: Path) -> float:
    """What dd spends reading its input alone (to /dev/null): the probe has no input to read, so on
    storage as fast as memory this is a visible part of dd's write time."""
    cmd = ["dd", f"if={source}", "of=/dev/null", f"bs={DEFAULT_BLOCK}", f"count={blocks}"]
    return dd_seconds(subprocess.run(cmd, check=True, capture_output=True, text=True).stderr)


def dd_round(directory: Path, blocks: int, direct: bool, source: Path) -> tuple[float, float]:
    """(write MB/s, read MB/s) by dd; the file is removed afterwards."""
    path = directory / ".preflight-bench-dd"
    bs = f"bs={DEFAULT_BLOCK}"
    write = ["dd", f"if={source}", f"of={path}", bs, f"count={blocks}", "conv=fsync"] + (["oflag=direct"] if direct else [])
    read = ["dd", f"if={path}", "of=/dev/null", bs] + (["iflag=direct"] if direct else [])
    try:
        write_s = dd_seconds(subprocess.run(write, check=True, capture_output=True, text=True).stderr)
        if not direct:  # match the probe: drop the (clean) pages so the read hits the device
            fd = os.open(path, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        read_s = dd_seconds(subprocess.run(read, check=True, capture_output=True, text=True).stderr)
    finally:
        path.unlink(missing_ok=True)
    size = blocks * DEFAULT_BLOCK / MB
    return size / write_s, size / read_s


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", type=Path, help="directory to measure (default: a temporary one under the cwd)")
    p.add_argument("--mb", type=int, default=512, help="file size, MB (rounded to whole 4 MiB blocks)")
    p.add_argument("--rounds", type=int, default=9)
    a = p.parse_args()
    if shutil.which("dd") is None:
        print("dd not found", file=sys.stderr)
        return 2
    own = a.dir is None
    directory = Path(tempfile.mkdtemp(prefix="bench-storage-", dir=".")) if own else a.dir
    try:
        blocks = max(a.mb * MB // DEFAULT_BLOCK, 1)
        size = blocks * DEFAULT_BLOCK  # the same bytes on both sides
        direct = o_direct_supported(directory)
        # dd writes the same kind of bytes as the probe: random ones, from a file in memory.
        # Zeros are not a fair peer: some storage detects them (thin provisioning, compression,
        # qemu's detect-zeroes) and writes them faster or slower than real data.
        source = Path(tempfile.mkdtemp(prefix="bench-src-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        source = source / "random"
        with open(source, "wb") as fh:
            for _ in range(blocks):
                fh.write(os.urandom(DEFAULT_BLOCK))
        probe_w, probe_r, dd_w, dd_r, dd_in = [], [], [], [], []
        for i in range(a.rounds):
            # Who goes first alternates: the file system is still freeing the previous file's
            # blocks when the next write starts, which would always penalise the second one.
            for side in (("probe", "dd") if i % 2 == 0 else ("dd", "probe")):
                os.sync()
                if side == "probe":
                    m = measure_storage(directory, size, budget_s=600, direct=direct)
                    probe_w.append(m.write_mb_s)
                    probe_r.append(m.read_mb_s)
                    continue
                try:
                    w, r = dd_round(directory, blocks, direct, source)
                except subprocess.CalledProcessError as exc:
                    print(f"dd failed: {exc.stderr.decode(errors='replace').strip()}", file=sys.stderr)
                    return 1
                dd_w.append(w)
                dd_r.append(r)
                dd_in.append(dd_input_seconds(blocks, source))
    finally:
        if own:
            shutil.rmtree(directory, ignore_errors=True)
        if "source" in locals():
            shutil.rmtree(source.parent, ignore_errors=True)
    print(f"directory {directory}, file {size / MB:,.0f} MB in {DEFAULT_BLOCK // 2**20} MiB blocks, "
          f"{'O_DIRECT' if direct else 'buffered + page cache dropped'}, fsync, {a.rounds} rounds (median)")
    ok = True
    for what, ours, peer in (("write", probe_w, dd_w), ("read", probe_r, dd_r)):
        ratio = statistics.median(ours) / statistics.median(peer)
        ok &= 0.85 <= ratio <= 1.15
        print(f"  {what:5}  probe {statistics.median(ours):7,.0f} MB/s ({min(ours):,.0f}-{max(ours):,.0f})   "
              f"dd {statistics.median(peer):7,.0f} MB/s ({min(peer):,.0f}-{max(peer):,.0f})   ratio probe/dd {ratio:.2f}")
    write_s = size / MB / statistics.median(dd_w)
    input_s = statistics.median(dd_in)
    print(f"  dd's input alone (random file to /dev/null): {input_s:.3f} s = {input_s / write_s:.0%} of its write "
          f"time; without it dd would write {size / MB / max(write_s - input_s, 1e-9):,.0f} MB/s "
          f"(ratio {statistics.median(probe_w) / (size / MB / max(write_s - input_s, 1e-9)):.2f})")
    print(f"goal: within 15 % of dd: {'met' if ok else 'NOT met'} (the ranges show how noisy this machine is; "
          "on a shared machine raise --rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
