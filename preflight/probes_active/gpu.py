"""Per-GPU host<->device copy bandwidth and a bf16 matmul throughput figure.

Runs in a child process (``measure_gpus``) so the checking process never imports torch and a probe
that hangs in the driver is killed at its budget. Copies use pinned host memory and CUDA events;
the matmul is a square bf16 GEMM (2 n^3 FLOPs each), timed after a warm-up.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .cleanup import stop, track

COPY_BYTES = 256 * 2**20
MATMUL_N = 8192
STARTUP_S = 60.0  # importing torch and creating a CUDA context, on top of the measuring budget


class GpuProbeUnavailable(Exception):
    """No CUDA device to measure (no torch CUDA build, no driver, no GPU), or the probe failed."""


@dataclass
class GpuFigures:
    index: int
    name: str
    h2d_gb_s: float
    d2h_gb_s: float
    matmul_tflops: float


@dataclass
class GpuMeasurement:
    gpus: list[GpuFigures] = field(default_factory=list)
    truncated: bool = False  # the budget ran out before every GPU was measured

    def slowest(self, attr: str) -> GpuFigures | None:
        return min(self.gpus, key=lambda g: float(getattr(g, attr))) if self.gpus else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GpuMeasurement:
        return cls([GpuFigures(**g) for g in d["gpus"]], bool(d.get("truncated")))


def measure_gpus(budget_s: float) -> GpuMeasurement:
    """Measure every visible GPU in a child process; raises GpuProbeUnavailable with the reason."""
    cmd = [sys.executable, "-m", "preflight.probes_active.gpu", "--budget", str(budget_s)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    track(proc)
    try:
        out, err = proc.communicate(timeout=budget_s + STARTUP_S)
    except subprocess.TimeoutExpired:
        raise GpuProbeUnavailable(f"the GPU probe did not finish within {budget_s + STARTUP_S:g} s "
                                  "(a wedged driver?); it was stopped") from None
    finally:
        stop(proc)
    text = out.decode(errors="replace").strip()
    if proc.returncode != 0 or not text:
        last = (text or err.decode(errors="replace").strip()).splitlines()[-1:] or ["no output"]
        raise GpuProbeUnavailable(last[0])
    return GpuMeasurement.from_dict(json.loads(text.splitlines()[-1]))


def _measure_here(budget_s: float) -> GpuMeasurement:
    import torch

    if not torch.cuda.is_available():
        build = "a CPU build of torch" if torch.version.cuda is None else f"torch built for CUDA {torch.version.cuda}"
        raise GpuProbeUnavailable(f"no CUDA device visible to torch ({build})")
    deadline = time.monotonic() + budget_s
    out = GpuMeasurement()
    for i in range(torch.cuda.device_count()):
        if time.monotonic() > deadline:
            out.truncated = True
            break
        dev = torch.device("cuda", i)
        torch.cuda.set_device(dev)
        h2d, d2h = _copy_gb_s(torch, dev)
        out.gpus.append(GpuFigures(i, torch.cuda.get_device_name(dev), h2d, d2h, _matmul_tflops(torch, dev)))
    return out


def _timed(torch: Any, fn: Any, iters: int) -> float:
    """Seconds per call of ``fn`` by CUDA events, after one warm-up call."""
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return float(start.elapsed_time(end)) / 1000 / iters


def _copy_gb_s(torch: Any, dev: Any) -> tuple[float, float]:
    host = torch.empty(COPY_BYTES, dtype=torch.uint8, pin_memory=True)
    device = torch.empty(COPY_BYTES, dtype=torch.uint8, device=dev)
    h2d = _timed(torch, lambda: device.copy_(host, non_blocking=True), 10)
    d2h = _timed(torch, lambda: host.copy_(device, non_blocking=True), 10)
    return COPY_BYTES / h2d / 1e9, COPY_BYTES / d2h / 1e9


def _matmul_tflops(torch: Any, dev: Any) -> float:
    a = torch.randn(MATMUL_N, MATMUL_N, dtype=torch.bfloat16, device=dev)
    b = torch.randn(MATMUL_N, MATMUL_N, dtype=torch.bfloat16, device=dev)
    for _ in range(3):  # clocks ramp up and cuBLAS picks its kernel
        a @ b
    seconds = _timed(torch, lambda: a @ b, 30)
    return 2 * MATMUL_N**3 / seconds / 1e12


def _main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="the preflight GPU probe (prints one JSON line)")
    p.add_argument("--budget", type=float, default=60.0)
    a = p.parse_args(argv)
    try:
        measured = _measure_here(a.budget)
    except GpuProbeUnavailable as exc:
        print(str(exc), file=sys.stderr)
        return 3
    print(json.dumps(measured.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
