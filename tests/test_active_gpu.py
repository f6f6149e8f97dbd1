"""The GPU probes on a real GPU (marked gpu: run with `pytest -m gpu` on a GPU machine).

They assert that the figures are plausible for a data-centre GPU and that the active checks pass
on a healthy one; bench/gpu_probe_check.sh runs them and prints the figures.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from preflight.engine import REGISTRY, Context
from preflight.probes import Probes
from preflight.probes_active.collective import run_local
from preflight.probes_active.gpu import measure_gpus
from preflight.result import Status
from preflight.spec import load_spec

pytestmark = pytest.mark.gpu


def _gpu_count() -> int:
    try:
        return len(measure_gpus(5).gpus)
    except Exception:
        return 0


def test_every_gpu_gets_plausible_copy_and_matmul_figures() -> None:
    m = measure_gpus(120)
    assert m.gpus and not m.truncated
    for g in m.gpus:
        assert 5 < g.h2d_gb_s < 1000 and 5 < g.d2h_gb_s < 1000, g
        assert 20 < g.matmul_tflops < 5000, g


def test_the_active_gpu_checks_and_the_budget_pass_on_a_healthy_gpu(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(f"run: {{name: g, stage: small}}\nhardware: {{gpus_per_node: {max(_gpu_count(), 1)}}}\n")
    ctx = Context(spec=load_spec(spec), probes=Probes(), level="active")
    copy = REGISTRY["hw.gpu.copy_bandwidth"].fn(ctx)
    matmul = REGISTRY["hw.gpu.matmul"].fn(ctx)
    budget = REGISTRY["budget.gpu_hours"].fn(ctx)
    assert copy.status == Status.PASS, copy.found
    assert matmul.status == Status.PASS, matmul.found
    assert "measured" in budget.found, budget.found


def test_nccl_all_reduce_between_two_gpus() -> None:
    if _gpu_count() < 2:
        pytest.skip("NCCL needs a GPU per rank: this machine has fewer than 2")
    m = run_local(2, max_mib=256, budget_s=120, backend="nccl")
    peak = m.peak_busbw("all_reduce")
    assert m.backend == "nccl" and peak is not None and peak.busbw_gb_s > 1
