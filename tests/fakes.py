"""Fake probes: every check is testable on a machine without GPUs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from preflight.probes import (
    DiskUsage,
    GpuInfo,
    GpuInventory,
    HostInfo,
    Nic,
    Probes,
    ProbeUnavailable,
    TorchBuild,
)

GB = 10**9
H100_BYTES = 85_520_809_984  # what NVML reports for an "80GB" H100


def h100_node(n: int = 8, driver: str = "550.54.15", cuda: str = "12.4") -> GpuInventory:
    return GpuInventory(driver, cuda, [
        GpuInfo(i, "NVIDIA H100 80GB HBM3", H100_BYTES, uuid=f"GPU-{i:04d}", uncorrected_ecc_errors=0)
        for i in range(n)
    ])


@dataclass
class FakeGpuProbe:
    inv: GpuInventory | None = None
    error: ProbeUnavailable | None = None
    calls: int = 0
    util: list[float] | None = None  # what utilization() returns (the monitor's GPU sampler)

    def inventory(self) -> GpuInventory:
        self.calls += 1
        if self.error is not None:
            raise self.error
        assert self.inv is not None
        return self.inv

    def utilization(self) -> list[float]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return list(self.util or [])


NO_DRIVER = ProbeUnavailable(
    "no NVIDIA driver found (the NVML library libnvidia-ml.so is not installed)",
    "run on a GPU node, or set hardware.gpu_required: false for a CPU-only run",
)


@dataclass
class FakeSystemProbe:
    memory_bytes: int = 1024 * GB
    cpus: int = 96
    nic_list: list[Nic] = field(default_factory=lambda: [Nic("lo", 0, True, True), Nic("ib0", 200_000, True, False)])
    free_bytes: int = 5000 * GB
    unwritable: set[str] = field(default_factory=set)
    hostname: str = "node-0"

    def host(self) -> HostInfo:
        return HostInfo(self.memory_bytes, self.cpus, self.hostname, "Linux 6.8", "x86_64")

    def nics(self) -> list[Nic]:
        return list(self.nic_list)

    def disk_usage(self, path: Path) -> DiskUsage:
        return DiskUsage(10 * self.free_bytes, self.free_bytes)

    def try_write(self, directory: Path) -> None:
        if str(directory) in self.unwritable:
            raise PermissionError(13, "Permission denied")


@dataclass
class FakePackageProbe:
    versions: dict[str, str] = field(default_factory=lambda: {
        "torch": "2.5.1+cu124", "transformers": "4.46.0", "accelerate": "1.1.0", "wandb": "0.18.0", "ray": "2.40.0"})
    python: str = "3.11.7"
    torch_cuda: str | None = "12.4"

    def version(self, name: str) -> str | None:
        return self.versions.get(name)

    def python_version(self) -> str:
        return self.python

    def torch_build(self) -> TorchBuild | None:
        if "torch" not in self.versions:
            return None
        return TorchBuild(self.versions["torch"], self.torch_cuda)


def gpu_probes(**kw: object) -> Probes:
    """A healthy 8 x H100 node with a matching stack; override any part with keyword arguments."""
    return Probes(
        gpu=kw.pop("gpu", FakeGpuProbe(h100_node())),  # type: ignore[arg-type]
        system=kw.pop("system", FakeSystemProbe()),  # type: ignore[arg-type]
        packages=kw.pop("packages", FakePackageProbe()),  # type: ignore[arg-type]
        env=kw.pop("env", {"WANDB_API_KEY": "secret-key-123"}),  # type: ignore[arg-type]
        home=kw.pop("home", Path("/nonexistent-home")),  # type: ignore[arg-type]
    )


def run_checks_on(spec_path: Path, probes: Probes, level: str = "node") -> dict[str, object]:
    """Run every check of a spec against fake probes; results keyed by check id."""
    from preflight.checklist import checklist_for, item_of
    from preflight.engine import Context, plan, run_checks
    from preflight.spec import load_spec

    spec = load_spec(spec_path)
    items = checklist_for(spec)
    results = run_checks(plan(spec, level), Context(spec=spec, probes=probes), item_of=lambda c: item_of(c, items))
    return {r.id: r for r in results}


# --- a fake NVML binding (the pynvml module), for preflight.probes.NvmlGpuProbe ---------------


class FakeNVMLError(Exception):
    """pynvml.NVMLError: str() is NVML's own text ("GPU is lost")."""


@dataclass
class FakeNvmlGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    memory: int = H100_BYTES
    uuid: str = ""
    ecc: int | None = 0
    handle_error: str = ""  # nvmlDeviceGetHandleByIndex fails with this text
    read_error: str = ""    # nvmlDeviceGetName/MemoryInfo fail with this text
    migs: dict[str, tuple[str, int]] = field(default_factory=dict)  # MIG UUID -> (name, memory)
    busy: int = 0  # nvmlDeviceGetUtilizationRates(...).gpu, percent


@dataclass
class FakeNvml:
    """The parts of pynvml NvmlGpuProbe calls, over a list of fake GPUs (NVML index = position)."""

    gpus: list[FakeNvmlGpu] = field(default_factory=list)
    driver: str = "550.54.15"
    cuda: int = 12040
    NVMLError = FakeNVMLError
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
    NVML_VOLATILE_ECC = 0

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        return self.cuda

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> tuple[int, str]:
        if self.gpus[i].handle_error:
            raise FakeNVMLError(self.gpus[i].handle_error)
        return (i, "")

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> tuple[int, str]:
        for i, gpu in enumerate(self.gpus):
            if uuid in gpu.migs:
                return (i, uuid)
        raise FakeNVMLError("Not Found")

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, h: tuple[int, str]) -> tuple[int, str]:
        return (h[0], "")

    def nvmlDeviceGetIndex(self, h: tuple[int, str]) -> int:
        return h[0]

    def _gpu(self, h: tuple[int, str]) -> FakeNvmlGpu:
        gpu = self.gpus[h[0]]
        if gpu.read_error:
            raise FakeNVMLError(gpu.read_error)
        return gpu

    def nvmlDeviceGetName(self, h: tuple[int, str]) -> bytes:
        gpu = self._gpu(h)
        return (gpu.migs[h[1]][0] if h[1] else gpu.name).encode()

    def nvmlDeviceGetMemoryInfo(self, h: tuple[int, str]) -> SimpleNamespace:
        gpu = self._gpu(h)
        return SimpleNamespace(total=gpu.migs[h[1]][1] if h[1] else gpu.memory)

    def nvmlDeviceGetUUID(self, h: tuple[int, str]) -> str:
        return h[1] or self.gpus[h[0]].uuid or f"GPU-{h[0]:08x}-0000-0000-0000-000000000000"

    def nvmlDeviceGetUtilizationRates(self, h: tuple[int, str]) -> SimpleNamespace:
        return SimpleNamespace(gpu=self._gpu(h).busy, memory=0)

    def nvmlDeviceGetTotalEccErrors(self, h: tuple[int, str], kind: int, counter: int) -> int:
        ecc = self._gpu(h).ecc
        if ecc is None:
            raise FakeNVMLError("Not Supported")
        return ecc


def fake_nvml_node(n: int = 8, **changes: dict[str, object]) -> FakeNvml:
    """An n x H100 node; ``changes`` maps a GPU index (as text) to fields of that GPU."""
    gpus = [FakeNvmlGpu(uuid=f"GPU-{i}a{i}b0000-1111-2222-3333-44445555666{i}") for i in range(n)]
    for index, fields in changes.items():
        for key, value in fields.items():
            setattr(gpus[int(index)], key, value)
    return FakeNvml(gpus)
