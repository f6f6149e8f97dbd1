"""GPU, host, storage and network checks against fake probes."""

from __future__ import annotations

from pathlib import Path

from fakes import (
    GB,
    NO_DRIVER,
    FakeGpuProbe,
    FakePackageProbe,
    FakeSystemProbe,
    gpu_probes,
    h100_node,
    run_checks_on,
)

from preflight.probes import GpuInfo, GpuInventory, Nic
from preflight.result import Status

GPU_SPEC = """\
run: {name: gpu-run, stage: custom}
hardware: {nodes: 2}
storage: {checkpoint_dir: ckpt}
"""


def test_healthy_h100_node_passes_every_hardware_check(write_spec):
    results = run_checks_on(write_spec(GPU_SPEC), gpu_probes())
    for cid in ("hw.gpu.count", "hw.gpu.model", "hw.gpu.vram", "hw.gpu.driver", "hw.gpu.ecc",
                "host.memory", "host.cpus", "storage.checkpoint_dir", "storage.free_space", "network.link_speed"):
        assert results[cid].status == Status.PASS, (cid, results[cid].found)
    assert "85.5 GB" in results["hw.gpu.vram"].found


def test_nvml_is_queried_once_for_all_gpu_checks(write_spec):
    probe = FakeGpuProbe(h100_node())
    run_checks_on(write_spec(GPU_SPEC), gpu_probes(gpu=probe))
    # five GPU checks run concurrently, and NVML is started once for all of them.
    assert probe.calls == 1


def test_no_driver_fails_with_a_hint_when_gpus_are_required(write_spec):
    results = run_checks_on(write_spec(GPU_SPEC), gpu_probes(gpu=FakeGpuProbe(error=NO_DRIVER)))
    count = results["hw.gpu.count"]
    assert count.status == Status.FAIL
    assert "no NVIDIA driver found" in count.found
    assert "gpu_required: false" in count.remediation
    assert results["hw.gpu.vram"].status == Status.FAIL
    assert ">= 80 GB per GPU" in results["hw.gpu.vram"].expected
    assert results["hw.gpu.ecc"].status == Status.SKIP


def test_no_driver_skips_when_the_spec_needs_no_gpus(write_spec):
    spec = write_spec("run: {name: cpu}\nhardware: {gpu_required: false}\n")
    results = run_checks_on(spec, gpu_probes(gpu=FakeGpuProbe(error=NO_DRIVER)))
    for cid in ("hw.gpu.count", "hw.gpu.model", "hw.gpu.vram", "hw.gpu.driver", "hw.gpu.ecc"):
        assert results[cid].status == Status.SKIP
        assert "does not require GPUs" in results[cid].found


def test_too_few_gpus_and_wrong_model_and_small_memory_fail(write_spec):
    inv = GpuInventory("550.54.15", "12.4", [
        GpuInfo(0, "NVIDIA A10G", 24 * 2**30, uncorrected_ecc_errors=0),
        GpuInfo(1, "NVIDIA A10G", 24 * 2**30, uncorrected_ecc_errors=0),
    ])
    results = run_checks_on(write_spec(GPU_SPEC), gpu_probes(gpu=FakeGpuProbe(inv)))
    assert results["hw.gpu.count"].status == Status.FAIL
    assert results["hw.gpu.count"].found == "2 GPUs"
    model = results["hw.gpu.model"]
    assert model.status == Status.FAIL and "A10G" in model.found and "H100" in model.expected
    vram = results["hw.gpu.vram"]
    assert vram.status == Status.FAIL and "25.8 GB" in vram.found


def test_gpu_model_matching_is_whole_word(write_spec):
    spec = write_spec("run: {name: r}\nhardware: {nodes: 2, gpu_models: [H20], gpus_per_node: 1}\n")
    inv = GpuInventory("550", "12.4", [GpuInfo(0, "NVIDIA H200", 150 * GB)])
    assert run_checks_on(spec, gpu_probes(gpu=FakeGpuProbe(inv)))["hw.gpu.model"].status == Status.FAIL
    inv = GpuInventory("550", "12.4", [GpuInfo(0, "NVIDIA H20", 100 * GB)])
    assert run_checks_on(spec, gpu_probes(gpu=FakeGpuProbe(inv)))["hw.gpu.model"].status == Status.PASS


def test_driver_older_than_torch_cuda_major_fails_minor_warns(write_spec):
    spec = write_spec(GPU_SPEC)
    old = gpu_probes(gpu=FakeGpuProbe(h100_node(driver="470.82", cuda="11.4")))
    r = run_checks_on(spec, old)["hw.gpu.driver"]
    assert r.status == Status.FAIL and "CUDA 12.4" in r.expected and "11.4" in r.found
    minor = gpu_probes(gpu=FakeGpuProbe(h100_node(driver="535.104", cuda="12.2")))
    assert run_checks_on(spec, minor)["hw.gpu.driver"].status == Status.WARN


def test_min_driver_version_is_enforced(write_spec):
    spec = write_spec("run: {name: r}\nhardware: {nodes: 2, min_driver_version: '560.28.03'}\n")
    r = run_checks_on(spec, gpu_probes())["hw.gpu.driver"]
    assert r.status == Status.FAIL and "560.28.03" in r.remediation


def test_ecc_errors_fail_and_na_is_not_an_error(write_spec):
    inv = h100_node(2)
    inv.gpus[1].uncorrected_ecc_errors = 3
    spec = write_spec("run: {name: r}\nhardware: {gpus_per_node: 2}\n")
    r = run_checks_on(spec, gpu_probes(gpu=FakeGpuProbe(inv)))["hw.gpu.ecc"]
    assert r.status == Status.FAIL and "GPU 1: 3" in r.found
    for g in inv.gpus:
        g.uncorrected_ecc_errors = None
    r = run_checks_on(spec, gpu_probes(gpu=FakeGpuProbe(inv)))["hw.gpu.ecc"]
    assert r.status == Status.SKIP and r.evidence["errors"] == {"0": "N/A", "1": "N/A"}


def test_torch_cpu_build_fails_a_gpu_run(write_spec):
    probes = gpu_probes(packages=FakePackageProbe(torch_cuda=None))
    r = run_checks_on(write_spec(GPU_SPEC), probes)["stack.torch_build"]
    assert r.status == Status.FAIL and "CPU-only" in r.found


def test_host_memory_and_cpus(write_spec):
    probes = gpu_probes(system=FakeSystemProbe(memory_bytes=64 * GB, cpus=8))
    results = run_checks_on(write_spec(GPU_SPEC), probes)
    assert results["host.memory"].status == Status.FAIL and "64.0 GB" in results["host.memory"].found
    assert results["host.cpus"].status == Status.FAIL and results["host.cpus"].expected == ">= 32"


def test_free_space_uses_the_checkpoint_estimate_when_larger(write_spec):
    # 70B params x 12 B = 840 GB a checkpoint; best + latest + one in flight = 2.52 TB.
    spec = write_spec("run: {name: r}\nmodel: {params_b: 70}\nhardware: {nodes: 2}\n")
    r = run_checks_on(spec, gpu_probes(system=FakeSystemProbe(free_bytes=2000 * GB)))["storage.free_space"]
    assert r.status == Status.FAIL
    assert "2,520.0 GB" in r.expected
    assert "840.0 GB" in r.evidence["checkpoint_size"]
    ok = run_checks_on(spec, gpu_probes(system=FakeSystemProbe(free_bytes=3000 * GB)))["storage.free_space"]
    assert ok.status == Status.PASS


def test_unwritable_checkpoint_dir_fails(write_spec):
    probes = gpu_probes(system=FakeSystemProbe(unwritable={"ckpt"}))
    r = run_checks_on(write_spec(GPU_SPEC), probes)["storage.checkpoint_dir"]
    assert r.status == Status.FAIL and "Permission denied" in r.found


def test_real_checkpoint_dir_probe_creates_nothing(write_spec, tmp_path: Path):
    from preflight.probes import Probes, RealSystemProbe

    target = tmp_path / "not" / "yet"
    spec = write_spec(f"run: {{name: r}}\nstorage: {{checkpoint_dir: '{target}'}}\nhardware: {{gpu_required: false}}\n")
    probes = Probes(gpu=FakeGpuProbe(error=NO_DRIVER), system=RealSystemProbe(), packages=FakePackageProbe())
    r = run_checks_on(spec, probes)["storage.checkpoint_dir"]
    assert r.status == Status.PASS
    assert not (tmp_path / "not").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    spec = write_spec(f"run: {{name: r}}\nstorage: {{checkpoint_dir: '{blocker}/sub'}}\nhardware: {{gpu_required: false}}\n")
    assert run_checks_on(spec, probes)["storage.checkpoint_dir"].status == Status.FAIL


def test_network_speed_fail_unknown_warn_single_node_skip(write_spec):
    slow = FakeSystemProbe(nic_list=[Nic("lo", 0, True, True), Nic("eth0", 1000, True, False)])
    r = run_checks_on(write_spec(GPU_SPEC), gpu_probes(system=slow))["network.link_speed"]
    assert r.status == Status.FAIL and "1 Gbit/s" in r.found and ">= 10 Gbit/s" in r.expected
    unknown = FakeSystemProbe(nic_list=[Nic("lo", 0, True, True), Nic("eth0", 0, True, False)])
    r = run_checks_on(write_spec(GPU_SPEC), gpu_probes(system=unknown))["network.link_speed"]
    assert r.status == Status.WARN and "unknown" in r.found and "ethtool" in r.remediation
    single = write_spec("run: {name: r}\nhardware: {nodes: 1}\n")
    assert run_checks_on(single, gpu_probes(system=slow))["network.link_speed"].status == Status.SKIP


def test_named_interface_missing_fails(write_spec):
    spec = write_spec("run: {name: r}\nhardware: {nodes: 2}\nnetwork: {interfaces: [ib7]}\n")
    r = run_checks_on(spec, gpu_probes())["network.link_speed"]
    assert r.status == Status.FAIL and "ib7" in r.found
