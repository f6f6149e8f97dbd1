"""The active probes: storage throughput, collective bandwidth, GPU figures, and the checks on them.

The storage probe and the gloo collective run for real (small sizes); the GPU checks read a
measurement planted in the shared memo (the real GPU probe is in test_active_gpu.py, marked gpu).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from preflight.engine import REGISTRY, Context
from preflight.probes_active.cleanup import PREFIX
from preflight.probes_active.collective import (
    CollectiveMeasurement,
    PairRow,
    Row,
    bus_factor,
    run_local,
    sweep_sizes,
)
from preflight.probes_active.gpu import GpuFigures, GpuMeasurement
from preflight.probes_active.storage import Cancelled, measure_storage
from preflight.result import Status
from preflight.spec import load_spec
from tests.fakes import NO_DRIVER, FakeGpuProbe, gpu_probes

MB = 10**6
SPEC = """\
run: {name: act, stage: custom}
hardware: {gpu_required: false, gpus_per_node: 0, nodes: 1, min_host_memory_gb: 1, min_cpus: 1}
storage: {checkpoint_dir: ckpt, min_free_gb: 0.001, checkpoint_size_gb: 0.05}
stack: {packages: {wandb: null}}
model: {name_or_path: tiny, params_b: 0.001}
monitoring: {sinks: [jsonl]}
"""


def run_check(check_id: str, spec_path: Path, probes: object = None, memo: dict[str, object] | None = None,
              level: str = "active") -> object:
    ctx = Context(spec=load_spec(spec_path), probes=probes or gpu_probes(), level=level)
    for key, value in (memo or {}).items():
        ctx.memo(key, lambda value=value: value)
    return REGISTRY[check_id].fn(ctx)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(PREFIX))


def interrupt_once_the_probe_file_exists(proc: subprocess.Popen[str], directory: Path, wait_s: float) -> str:
    """Wait for the probe's file in ``directory``, press Ctrl-C (SIGINT) and return the stderr."""
    deadline = time.monotonic() + wait_s
    while not leftovers(directory) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert leftovers(directory), "the probe never created its file"
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=30)[1]


# --- storage -------------------------------------------------------------------------------------


def test_storage_probe_writes_reads_and_removes_its_file(tmp_path: Path) -> None:
    m = measure_storage(tmp_path, 8 * MB, budget_s=30)
    assert m.written_bytes >= 8 * MB and m.read_bytes == m.written_bytes and not m.truncated
    assert m.write_mb_s > 0 and m.read_mb_s > 0
    assert "fsync" in m.method
    assert leftovers(tmp_path) == []


def test_storage_probe_stops_at_its_budget_and_still_cleans_up(tmp_path: Path) -> None:
    t0 = time.monotonic()
    m = measure_storage(tmp_path, 50_000 * MB, budget_s=0.3)  # 50 GB could never fit in 0.3 s
    assert time.monotonic() - t0 < 5
    assert m.truncated and 0 < m.written_bytes < 50_000 * MB
    assert leftovers(tmp_path) == []


def test_storage_probe_cancelled_mid_write_removes_the_file(tmp_path: Path) -> None:
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    with pytest.raises(Cancelled):
        measure_storage(tmp_path, 50_000 * MB, budget_s=60, cancel=cancel)
    assert leftovers(tmp_path) == []


def test_storage_check_fails_when_the_stated_need_is_above_the_measurement(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(SPEC.replace("checkpoint_size_gb: 0.05", "checkpoint_size_gb: 0.05, min_write_mb_s: 1.0e9")
                      + "active: {storage_file_mb: 4}\n")
    out = run_check("storage.throughput", spec)
    assert out.status == Status.FAIL
    assert "MB/s" in out.found and "1,000,000,000 MB/s" in out.expected
    assert "save less often" in out.remediation
    # the built-in runner saves in the background by default: the remedy says so, not "go async"
    assert "already writes checkpoints in the background" in out.remediation


def test_a_slow_disk_s_remedy_for_blocking_saves_suggests_background_saves(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(SPEC.replace("checkpoint_size_gb: 0.05", "checkpoint_size_gb: 0.05, min_write_mb_s: 1.0e9")
                      + "active: {storage_file_mb: 4}\n" + "checkpoints: {async: false}\n")
    out = run_check("storage.throughput", spec)
    assert out.status == Status.FAIL and "write checkpoints asynchronously" in out.remediation


def test_storage_check_derives_the_need_from_checkpoint_size_and_save_interval(write_spec: Callable[..., Path]) -> None:
    # 8 x H100, a 70B model: a ~840 GB checkpoint every 100 steps; 5 % of the interval to write it.
    spec = write_spec("run: {name: big, stage: large}\nmodel: {params_b: 70}\nactive: {storage_file_mb: 4}\n"
                      "storage: {checkpoint_dir: ckpt}\n")
    out = run_check("storage.throughput", spec)
    need = out.evidence["need"]
    assert "840.0 GB" in need and "5%" in need and "save interval" in need
    assert out.status in (Status.PASS, Status.FAIL)  # depends on this disk; the need is what is asserted


CTRL_C_SCRIPT = """
import sys, threading
from pathlib import Path
from preflight.probes_active.storage import measure_storage
# As in `preflight check`: the probe runs in a daemon thread, the main thread waits.
t = threading.Thread(target=measure_storage, args=(Path(sys.argv[1]), 10**12, 120), daemon=True)
t.start()
print("started", flush=True)
t.join()
"""


def test_ctrl_c_during_the_storage_probe_leaves_no_file_behind(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    err = interrupt_once_the_probe_file_exists(proc, tmp_path, wait_s=10)
    assert "KeyboardInterrupt" in err
    assert leftovers(tmp_path) == []


def test_ctrl_c_during_preflight_check_level_active_leaves_no_file_behind(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    spec = tmp_path / "run.yaml"
    spec.write_text(SPEC.replace("ckpt", str(ckpt)) + "active: {storage_file_mb: 1000000, storage_budget_s: 120}\n")
    proc = subprocess.Popen([sys.executable, "-m", "preflight", "check", str(spec), "--level", "active",
                             "--only", "storage.throughput", "--no-attest"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = interrupt_once_the_probe_file_exists(proc, ckpt, wait_s=30)
    assert proc.returncode == 130 and "interrupted" in err
    assert leftovers(ckpt) == []


# --- collective ----------------------------------------------------------------------------------

RANKS_CTRL_C_SCRIPT = """
import threading
from preflight.probes_active.collective import run_local
t = threading.Thread(target=run_local, args=(2, 4096, 300), daemon=True)
t.start()
t.join()
"""


@pytest.mark.slow
def test_ctrl_c_during_the_collective_probe_stops_its_ranks() -> None:
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", RANKS_CTRL_C_SCRIPT], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    ranks: list[psutil.Process] = []
    while len(ranks) < 2 and time.monotonic() < deadline:
        ranks = [c for c in psutil.Process(proc.pid).children() if "collective" in " ".join(c.cmdline())]
        time.sleep(0.05)
    assert len(ranks) == 2, "the ranks never started"
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    gone, alive = psutil.wait_procs(ranks, timeout=10)
    assert alive == [], f"ranks still running after Ctrl-C: {[p.pid for p in alive]}"



def test_bus_bandwidth_factors_follow_nccl_tests() -> None:
    assert bus_factor("all_reduce", 2) == 1.0
    assert bus_factor("all_reduce", 8) == pytest.approx(1.75)
    assert bus_factor("all_gather", 8) == pytest.approx(0.875)
    assert sweep_sizes(1) == [64 * 1024, 256 * 1024, 1024 * 1024]


@pytest.mark.slow
def test_gloo_sweep_on_two_local_ranks_reports_algbw_and_busbw() -> None:
    m = run_local(2, max_mib=1, budget_s=60)
    assert m.backend == "gloo" and m.world == 2 and not m.truncated
    assert [(r.op, r.bytes) for r in m.rows][:2] == [("all_reduce", 65536), ("all_gather", 65536)]
    for r in m.rows:
        assert r.algbw_gb_s == pytest.approx(r.bytes / r.time_s / 1e9)
        assert r.busbw_gb_s == pytest.approx(r.algbw_gb_s * bus_factor(r.op, 2))


@pytest.mark.slow
def test_three_local_ranks_measure_every_pair() -> None:
    m = run_local(3, max_mib=0.25, budget_s=60)
    assert sorted((p.a, p.b) for p in m.pairs) == [(0, 1), (0, 2), (1, 2)]
    assert all(p.busbw_gb_s > 0 for p in m.pairs)


def _measurement(busbw: float, pairs: list[PairRow] | None = None) -> CollectiveMeasurement:
    rows = [Row("all_reduce", 64 * 2**20, 0.1, busbw, busbw), Row("all_gather", 64 * 2**20, 0.1, busbw, busbw / 2)]
    return CollectiveMeasurement("gloo", 3, rows, pairs or [], names=["node-a", "node-b", "node-c"])


class _Snapshot:  # what the collective check reads in cluster mode
    def __init__(self, m: CollectiveMeasurement) -> None:
        self.collective, self.collective_error = m, ""


def test_collective_across_nodes_below_the_need_fails_naming_the_slowest_pair(
        write_spec: Callable[..., Path]) -> None:
    spec = write_spec(SPEC.replace("nodes: 1", "nodes: 3") + "network: {min_gbps: 100}\n")
    pairs = [PairRow(0, 1, 2**24, 3.0), PairRow(0, 2, 2**24, 0.4), PairRow(1, 2, 2**24, 2.9)]
    out = run_check("network.collective", spec, memo={"cluster.snapshot": _Snapshot(_measurement(1.0, pairs))})
    assert out.status == Status.FAIL
    assert "slowest pair: node-a <-> node-c at 0.40 GB/s" in out.found
    assert "8.0 Gbit/s" in out.found and "100 Gbit/s" in out.expected


@pytest.mark.slow
def test_local_collective_shortfall_on_a_multi_node_run_only_warns(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(SPEC.replace("nodes: 1", "nodes: 2") + "network: {min_gbps: 100000}\n"
                      "active: {collective_max_mib: 0.0625}\n")
    out = run_check("network.collective", spec, probes=gpu_probes(gpu=FakeGpuProbe(error=NO_DRIVER)))
    assert out.status == Status.WARN
    assert "2 local ranks" in out.found and "--cluster" in out.remediation


# --- GPU figures (planted measurement) -----------------------------------------------------------

GPU_SPEC = "run: {name: g, stage: small}\nactive: {gpu_budget_s: 30}\n"


def _gpus(*figures: tuple[float, float, float]) -> GpuMeasurement:
    return GpuMeasurement([GpuFigures(i, "NVIDIA H100 80GB HBM3", h2d, d2h, tf)
                           for i, (h2d, d2h, tf) in enumerate(figures)])


def test_a_gpu_in_a_slow_pcie_slot_fails_the_copy_check_by_index(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(GPU_SPEC)
    out = run_check("hw.gpu.copy_bandwidth", spec, memo={"active.gpu": _gpus((52, 50, 700), (12, 13, 700))})
    assert out.status == Status.FAIL
    assert out.found.startswith("GPU 1 (NVIDIA H100 80GB HBM3): H2D 12.0, D2H 13.0 < 35 GB/s")
    assert "H100: >= 35 GB/s" in out.expected


def test_a_throttled_gpu_fails_the_matmul_check(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(GPU_SPEC)
    out = run_check("hw.gpu.matmul", spec, memo={"active.gpu": _gpus((52, 50, 700), (52, 50, 300))})
    assert out.status == Status.FAIL and "GPU 1" in out.found and "300 TFLOP/s" in out.found
    assert ">= 494 TFLOP/s (50% of 989)" in out.expected
    healthy = run_check("hw.gpu.matmul", spec, memo={"active.gpu": _gpus((52, 50, 700))})
    assert healthy.status == Status.PASS and "700 TFLOP/s" in healthy.found


def test_without_cuda_the_gpu_checks_fail_with_the_reason(write_spec: Callable[..., Path]) -> None:
    out = run_check("hw.gpu.matmul", write_spec(GPU_SPEC))  # this machine: CPU torch, no GPU
    assert out.status == Status.FAIL and "could not measure" in out.found


def test_budget_uses_the_measured_matmul_throughput_at_level_active(write_spec: Callable[..., Path]) -> None:
    spec = write_spec(GPU_SPEC + "hardware: {nodes: 2}\n")
    datasheet = run_check("budget.gpu_hours", spec, level="static")
    measured = run_check("budget.gpu_hours", spec, memo={"active.gpu": _gpus((52, 50, 156))})
    # The default hardware.gpu_models list starts with A100: 312 TFLOP/s on its datasheet.
    assert "312 TFLOP/s, datasheet" in datasheet.found and "small stage: 1,000-5,000" in datasheet.expected
    assert "156 TFLOP/s, measured" in measured.found and "planned steps" in measured.found
    # Half the throughput, twice the GPU hours.
    assert measured.evidence["gpu_hours_per_step"] == pytest.approx(2 * datasheet.evidence["gpu_hours_per_step"],
                                                                    rel=0.01)


def test_active_checks_stay_out_of_node_level_and_never_import_torch_there(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import sys
        from preflight.engine import plan
        from preflight.spec import load_spec
        ids = [d.id for d in plan(load_spec(sys.argv[1]), "node")]
        assert not any(i in ids for i in ("storage.throughput", "network.collective", "hw.gpu.matmul")), ids
        assert "torch" not in sys.modules
        print("ok")
    """)
    spec = tmp_path / "run.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert proc.stdout.strip() == "ok", proc.stderr
