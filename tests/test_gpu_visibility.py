"""The GPUs a run may use are the ones CUDA_VISIBLE_DEVICES leaves visible (as CUDA reads it), and
a GPU NVML cannot read is a result naming that GPU, not the end of the inventory. NVML is faked
(tests/fakes.py FakeNvml), the probe and the checks are the real ones."""

from __future__ import annotations

import pytest
from fakes import FakeNvml, FakeNvmlGpu, fake_nvml_node, gpu_probes, run_checks_on

from preflight.probes import (
    NvmlGpuProbe,
    ProbeUnavailable,
    visible_devices,
    without_ray_gpu_override,
)
from preflight.result import Status

GPU_SPEC = """\
run: {name: gpu-run, stage: custom}
hardware: {gpus_per_node: %d}
storage: {checkpoint_dir: ckpt}
"""

UUIDS = ["GPU-8932f937-aaaa", "GPU-8932f111-bbbb", "GPU-12345678-cccc", "GPU-abcdef00-dddd"]


@pytest.mark.parametrize(("value", "chosen"), [
    (None, [0, 1, 2, 3]),           # unset: every GPU
    ("", []),                       # empty: none
    ("2,0", [2, 0]),                # indexes, in the order given
    (" 1, 3", [1, 3]),              # spaces around an index are read past
    ("1gpu", [1]),                  # strtoul: the leading digits
    ("0,9,1", [0]),                 # the first index that names no GPU ends the list
    ("0,-1,1", [0]),
    ("0,0", []),                    # a GPU named twice: CUDA sees none
    ("GPU-12345678-cccc,GPU-abcdef", [2, 3]),   # UUIDs and unique prefixes
    ("GPU-8932f", []),              # an ambiguous prefix names no GPU
    ("GPU-abcdef00,GPU-nope,GPU-12345678", [3]),
    ("GPU-abcdef00,1", [3]),        # a UUID list stops at an index
    ("0,GPU-abcdef00", [0]),        # and an index list at a UUID
    ("GPU-abcdef00,GPU-abcdef00-dddd", []),
    ("MIG-1111,MIG-2222", ["MIG-1111", "MIG-2222"]),
])
def test_cuda_visible_devices_is_read_as_cuda_reads_it(value, chosen):
    assert visible_devices(value, UUIDS)[0] == chosen


def inventory(nvml: FakeNvml, visible: str | None):
    return NvmlGpuProbe(env={} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}, nvml=nvml).inventory()


def test_the_probe_lists_only_the_visible_gpus_by_their_nvml_index():
    node = fake_nvml_node(8)
    assert [g.index for g in inventory(node, None).gpus] == list(range(8))
    inv = inventory(node, "4,6")
    assert [g.index for g in inv.gpus] == [4, 6]
    assert inv.visible == "CUDA_VISIBLE_DEVICES='4,6': 2 of 8 GPUs visible"
    inv = inventory(node, f"{node.gpus[5].uuid},{node.gpus[1].uuid[:12]}")
    assert [g.index for g in inv.gpus] == [5, 1] and inv.gpus[0].uuid == node.gpus[5].uuid
    inv = inventory(node, "1,12,2")
    assert [g.index for g in inv.gpus] == [1] and "stopped at '12'" in inv.visible
    assert inventory(node, "").gpus == []


def test_a_slurm_allocation_of_four_gpus_fails_an_eight_gpu_spec_and_says_why(write_spec):
    results = run_checks_on(write_spec(GPU_SPEC % 8), gpu_probes(gpu=NvmlGpuProbe(
        env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, nvml=fake_nvml_node(8))))
    count = results["hw.gpu.count"]
    assert count.status == Status.FAIL
    assert count.found.startswith("4 GPUs") and "CUDA_VISIBLE_DEVICES='0,1,2,3'" in count.found
    assert "CUDA_VISIBLE_DEVICES" in count.remediation
    four = run_checks_on(write_spec(GPU_SPEC % 4), gpu_probes(gpu=NvmlGpuProbe(
        env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, nvml=fake_nvml_node(8))))
    assert four["hw.gpu.count"].status == Status.PASS and four["hw.gpu.vram"].status == Status.PASS


def test_an_empty_cuda_visible_devices_leaves_a_gpu_run_no_gpu(write_spec):
    results = run_checks_on(write_spec(GPU_SPEC % 1), gpu_probes(gpu=NvmlGpuProbe(
        env={"CUDA_VISIBLE_DEVICES": ""}, nvml=fake_nvml_node(2))))
    assert results["hw.gpu.count"].status == Status.FAIL
    assert "0 GPUs" in results["hw.gpu.count"].found and "0 of 2 GPUs visible" in results["hw.gpu.count"].found
    assert results["hw.gpu.vram"].status == Status.FAIL


def test_a_gpu_nvml_cannot_read_is_named_with_its_error_and_the_rest_are_still_judged(write_spec):
    node = fake_nvml_node(8, **{"3": {"read_error": "GPU is lost"}, "6": {"handle_error": "Unknown Error"}})
    inv = inventory(node, None)
    assert [g.index for g in inv.gpus] == [0, 1, 2, 4, 5, 7]
    assert [(u.index, u.error) for u in inv.unreadable] == [(3, "NVML: GPU is lost"), (6, "NVML: Unknown Error")]
    assert inv.unreadable[0].uuid == node.gpus[3].uuid
    results = run_checks_on(write_spec(GPU_SPEC % 4), gpu_probes(gpu=NvmlGpuProbe(env={}, nvml=node)))
    count = results["hw.gpu.count"]
    assert count.status == Status.FAIL
    assert "GPU 3" in count.found and "GPU is lost" in count.found and "GPU 6" in count.found
    assert "CUDA_VISIBLE_DEVICES" in count.remediation
    vram = results["hw.gpu.vram"]
    assert vram.status == Status.PASS and "2 unreadable GPU(s)" in vram.found
    assert results["hw.gpu.model"].status == Status.PASS and results["hw.gpu.ecc"].status == Status.PASS
    # leaving the lost GPUs out with CUDA_VISIBLE_DEVICES passes
    fine = run_checks_on(write_spec(GPU_SPEC % 4), gpu_probes(gpu=NvmlGpuProbe(
        env={"CUDA_VISIBLE_DEVICES": "0,1,2,4"}, nvml=node)))
    assert fine["hw.gpu.count"].status == Status.PASS, fine["hw.gpu.count"].found


def test_mig_instances_are_read_by_their_uuid():
    node = FakeNvml([FakeNvmlGpu(uuid="GPU-aaaa", migs={"MIG-1111": ("NVIDIA A100 MIG 3g.40gb", 40 * 10**9)}),
                     FakeNvmlGpu(uuid="GPU-bbbb", migs={"MIG-2222": ("NVIDIA A100 MIG 3g.40gb", 40 * 10**9)})])
    inv = inventory(node, "MIG-2222")
    assert [(g.index, g.name, g.uuid) for g in inv.gpus] == [(1, "NVIDIA A100 MIG 3g.40gb", "MIG-2222")]
    inv = inventory(node, "MIG-2222,MIG-9999")
    assert len(inv.gpus) == 1 and [u.error for u in inv.unreadable] == ["NVML: Not Found"]


def test_nvml_failing_before_any_gpu_is_still_a_probe_error():
    class Broken(FakeNvml):
        def nvmlDeviceGetCount(self) -> int:
            raise self.NVMLError("Driver Not Loaded")

    with pytest.raises(ProbeUnavailable, match="Driver Not Loaded"):
        inventory(Broken(), None)


def test_the_cluster_node_task_reads_the_node_s_gpus_not_ray_s_empty_assignment():
    """Ray (before 2.5x) sets CUDA_VISIBLE_DEVICES='' in a task that asked for no GPUs, as the
    node checks do; the node has its GPUs all the same. A value the node was started with stays."""
    node = fake_nvml_node(4)
    in_task = {"CUDA_VISIBLE_DEVICES": "", "PATH": "/bin"}
    assert len(inventory(node, "").gpus) == 0
    assert len(NvmlGpuProbe(env=without_ray_gpu_override(in_task), nvml=node).inventory().gpus) == 4
    slurm = {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert without_ray_gpu_override(slurm) == slurm


def test_the_monitors_gpu_sampler_reads_the_visible_gpus_and_skips_an_unreadable_one() -> None:
    """`preflight monitor --sample-gpus` samples the GPUs this process may use, in CUDA's order,
    and a GPU NVML cannot read is left out rather than ending the sampling."""
    from preflight.probes import NvmlGpuProbe

    node = fake_nvml_node(4, **{"0": {"busy": 10}, "1": {"busy": 20}, "2": {"busy": 30, "handle_error": "GPU lost"},
                                "3": {"busy": 40}})
    assert NvmlGpuProbe(env={}, nvml=node).utilization() == [0.1, 0.2, 0.4]
    assert NvmlGpuProbe(env={"CUDA_VISIBLE_DEVICES": "3,1"}, nvml=node).utilization() == [0.4, 0.2]
    assert NvmlGpuProbe(env={"CUDA_VISIBLE_DEVICES": ""}, nvml=node).utilization() == []
