#!/usr/bin/env bash
# One go on a GPU machine (e.g. an H200): the gpu-marked tests (NVML, the active probes, the runner
# training on CUDA), then the figures the active probes
# measure: per-GPU H2D/D2H copy GB/s and bf16 matmul TFLOP/s, and the NCCL all-reduce busbw
# sweep when there are at least two GPUs (NCCL needs one GPU per rank; on one GPU there is no
# bus to measure, so it says so instead of printing a meaningless figure).
#
#   bench/gpu_probe_check.sh            # from the checkout, with .venv set up (CUDA build of torch)
#
# Exit code: that of the gpu tests (the figures are printed either way).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
echo "== nvidia-smi"
nvidia-smi --query-gpu=index,name,driver_version,pcie.link.gen.current,pcie.link.width.current,power.limit \
  --format=csv 2>&1 | head -20
echo "== gpu-marked tests"
"$PY" -m pytest -q -m gpu tests/test_active_gpu.py tests/test_probes.py tests/test_runner_gpu.py -p no:cacheprovider
status=$?
echo "== figures"
"$PY" - <<'PYEOF'
from preflight.probes_active.collective import CollectiveError, run_local
from preflight.probes_active.gpu import GpuProbeUnavailable, measure_gpus

try:
    m = measure_gpus(240)
except GpuProbeUnavailable as exc:
    raise SystemExit(f"GPU probe unavailable: {exc}")
for g in m.gpus:
    print(f"GPU {g.index} {g.name}: H2D {g.h2d_gb_s:.1f} GB/s, D2H {g.d2h_gb_s:.1f} GB/s, "
          f"bf16 matmul {g.matmul_tflops:.0f} TFLOP/s")
if len(m.gpus) >= 2:
    try:
        c = run_local(2, max_mib=1024, budget_s=180, backend="nccl")
    except CollectiveError as exc:
        print(f"NCCL sweep failed: {exc}")
    else:
        for r in c.rows:
            print(f"NCCL {r.op:<10} {r.bytes / 2**20:>7g} MiB  algbw {r.algbw_gb_s:7.1f} GB/s  "
                  f"busbw {r.busbw_gb_s:7.1f} GB/s")
else:
    print("NCCL busbw: one GPU only; an all-reduce needs two ranks on two GPUs, nothing to measure")
PYEOF
exit $status
