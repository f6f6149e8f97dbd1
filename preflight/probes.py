"""The machine, reached through small probe interfaces with fakes for tests.

Real probes talk to NVML (nvidia-ml-py, started lazily), psutil, the file system and package
metadata. None of them imports torch, transformers, accelerate or ray: versions come from package
metadata, GPUs from NVML. A probe that cannot answer raises ProbeUnavailable with a one-line reason
and a hint; checks turn that into a fail, an error or a skip, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class ProbeUnavailable(Exception):
    """The thing probed is not there (no driver, no NVML library) or cannot be read."""

    def __init__(self, reason: str, hint: str = "") -> None:
        super().__init__(reason)
        self.reason, self.hint = reason, hint


# --- GPUs ---------------------------------------------------------------------------------------


@dataclass
class GpuInfo:
    index: int  # NVML's index (what nvidia-smi shows), not the CUDA ordinal inside the process
    name: str
    memory_total_bytes: int
    uuid: str = ""
    uncorrected_ecc_errors: int | None = None  # None: not supported / N/A


@dataclass
class UnreadableGpu:
    """A GPU NVML lists but cannot read (fallen off the bus, a driver error): named, with why."""

    index: int
    error: str
    uuid: str = ""


@dataclass
class GpuInventory:
    driver_version: str
    cuda_driver_version: str  # the newest CUDA the driver supports, e.g. "12.4"
    gpus: list[GpuInfo] = field(default_factory=list)  # the visible GPUs NVML could read
    unreadable: list[UnreadableGpu] = field(default_factory=list)  # visible, but NVML failed on them
    visible: str = ""  # how CUDA_VISIBLE_DEVICES narrowed the node's GPUs; "" when it is unset


class GpuProbe(Protocol):
    def inventory(self) -> GpuInventory: ...
    def utilization(self) -> list[float]: ...


CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"


def visible_devices(value: str | None, uuids: list[str]) -> tuple[list[int] | list[str], str]:
    """Which of the node's GPUs (``uuids`` by NVML index) a CUDA process sees under
    CUDA_VISIBLE_DEVICES=``value``, as CUDA reads it (torch.cuda mirrors the same rules), and a
    note on entries that were dropped.

    Unset: every GPU. Empty: none. Indexes (``0,2``; like strtoul, ``1gpu`` reads as 1), or GPU
    UUIDs and unique UUID prefixes (``GPU-8932f937``), or MIG instance UUIDs (``MIG-...``,
    returned as strings for NVML to resolve). The list stops at the first entry that names no GPU
    (a later valid one is ignored too), and a GPU named twice leaves no GPU visible at all.
    """
    if value is None:
        return list(range(len(uuids))), ""
    if value.startswith("MIG-"):
        migs: list[str] = []
        for entry in value.split(","):
            if not entry.startswith("MIG-"):
                return migs, f"stopped at {entry!r}: not a MIG UUID"
            if entry in migs:
                return [], f"{entry} is named twice: CUDA then sees no GPU"
            migs.append(entry)
        return migs, ""
    chosen: list[int] = []
    for entry in value.split(","):
        index = _uuid_index(entry, uuids) if value.startswith("GPU-") else _leading_int(entry.strip(), len(uuids))
        if index < 0:
            return chosen, (f"stopped at {entry!r}: no such GPU on this node (CUDA ignores it and every "
                            "entry after it)" if entry.strip() else "")
        if index in chosen:
            return [], f"GPU {index} is named twice ({entry!r}): CUDA then sees no GPU"
        chosen.append(index)
    return chosen, ""


def without_ray_gpu_override(env: Mapping[str, str]) -> dict[str, str]:
    """The environment to read a node's GPUs from inside a Ray task that asked for none (the
    cluster's node checks): Ray before 2.5x empties CUDA_VISIBLE_DEVICES in such a task
    (RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO), which says nothing about the node. A value the node's
    Ray was started with (a Slurm allocation: "0,1") is kept; later Ray versions pass it through."""
    return {k: v for k, v in env.items() if not (k == CUDA_VISIBLE_DEVICES and v == "")}


def _leading_int(entry: str, count: int) -> int:
    """The index an ordinal entry names, or -1: strtoul's reading (leading digits), within range."""
    digits = re.match(r"[+]?(\d+)", entry)
    if digits is None:
        return -1
    index = int(digits.group(1))
    return index if index < count else -1


def _uuid_index(entry: str, uuids: list[str]) -> int:
    """The one GPU whose UUID starts with ``entry``; -1 for none, or for an ambiguous prefix."""
    matches = [i for i, uuid in enumerate(uuids) if entry.startswith("GPU-") and uuid and uuid.startswith(entry)]
    return matches[0] if len(matches) == 1 else -1


class NvmlGpuProbe:
    """Reads the GPUs this process may use through NVML: the ones CUDA_VISIBLE_DEVICES leaves
    visible (``env``; default the process environment). Fields a GPU does not support are None;
    a GPU NVML fails on is listed as unreadable with its error, and the others are still read.
    ``nvml``: the NVML binding (pynvml); tests pass a fake."""

    def __init__(self, env: Mapping[str, str] | None = None, nvml: Any = None) -> None:
        self._env, self._nvml = env, nvml

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        """NVML initialized for the body, shut down after it; an NVML error becomes ProbeUnavailable."""
        nvml = self._nvml if self._nvml is not None else _import_pynvml()
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise ProbeUnavailable(_nvml_reason(exc), _nvml_hint(exc)) from None
        try:
            yield nvml
        except nvml.NVMLError as exc:
            raise ProbeUnavailable(f"NVML query failed: {exc}", "check `nvidia-smi` on this node") from None
        finally:
            with contextlib.suppress(nvml.NVMLError):
                nvml.nvmlShutdown()

    def _visible(self, uuids: list[str]) -> tuple[str | None, list[int] | list[str], str]:
        """CUDA_VISIBLE_DEVICES as ``env`` has it, and ``visible_devices`` of it for these GPUs."""
        value = (os.environ if self._env is None else self._env).get(CUDA_VISIBLE_DEVICES)
        return (value, *visible_devices(value, uuids))

    def inventory(self) -> GpuInventory:
        with self._session() as nvml:
            driver = _text(nvml.nvmlSystemGetDriverVersion())
            cuda = nvml.nvmlSystemGetCudaDriverVersion_v2()
            inv = GpuInventory(driver, f"{cuda // 1000}.{(cuda % 1000) // 10}")
            self._read_visible(nvml, int(nvml.nvmlDeviceGetCount()), inv)
            return inv

    def _read_visible(self, nvml: Any, count: int, inv: GpuInventory) -> None:
        handles: dict[int, Any] = {}
        failures: dict[int, str] = {}
        for i in range(count):
            try:
                handles[i] = nvml.nvmlDeviceGetHandleByIndex(i)
            except nvml.NVMLError as exc:
                failures[i] = f"NVML: {exc}"
        uuids = [(_optional(lambda h=handles[i]: _text(nvml.nvmlDeviceGetUUID(h))) or "") if i in handles else ""
                 for i in range(count)]
        value, chosen, note = self._visible(uuids)
        for entry in chosen:
            if isinstance(entry, str):  # a MIG instance: NVML finds it by its UUID
                _read_one(nvml, lambda e=entry: nvml.nvmlDeviceGetHandleByUUID(e), -1, entry, inv)
            elif entry in failures:
                inv.unreadable.append(UnreadableGpu(entry, failures[entry], uuids[entry]))
            else:
                _read_one(nvml, lambda e=entry: handles[e], entry, uuids[entry], inv)
        if value is not None:
            inv.visible = (f"{CUDA_VISIBLE_DEVICES}={value!r}: {len(chosen)} of {count} GPUs visible"
                           + (f"; {note}" if note else ""))

    def utilization(self) -> list[float]:
        """Each visible GPU's busy share over NVML's last sample period, 0..1 (`preflight monitor
        --sample-gpus`), in the order CUDA_VISIBLE_DEVICES gives them; a GPU NVML cannot read is
        left out."""
        with self._session() as nvml:
            count = int(nvml.nvmlDeviceGetCount())
            uuids = [_optional(lambda i=i: _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i)))) or ""
                     for i in range(count)]
            _, chosen, _ = self._visible(uuids)
            busy = []
            for entry in chosen:
                handle = _optional(lambda e=entry: nvml.nvmlDeviceGetHandleByUUID(e) if isinstance(e, str)
                                   else nvml.nvmlDeviceGetHandleByIndex(e))
                rate = None if handle is None else _optional(
                    lambda h=handle: nvml.nvmlDeviceGetUtilizationRates(h).gpu / 100.0)
                if rate is not None:
                    busy.append(float(rate))
            return busy


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise ProbeUnavailable("the nvidia-ml-py package is not installed", "pip install nvidia-ml-py") from None
    return pynvml


def _read_one(nvml: Any, handle_of: Any, index: int, uuid: str, inv: GpuInventory) -> None:
    """Read one GPU into ``inv.gpus``, or into ``inv.unreadable`` with NVML's error."""
    try:
        h = handle_of()
        if index < 0:  # a MIG instance: the index of the GPU it is carved from
            parent = _optional(lambda: int(nvml.nvmlDeviceGetIndex(
                nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(h))))
            index = parent if parent is not None else -1
        info = GpuInfo(
            index=index,
            name=_text(nvml.nvmlDeviceGetName(h)),
            memory_total_bytes=int(nvml.nvmlDeviceGetMemoryInfo(h).total),
            uuid=_optional(lambda: _text(nvml.nvmlDeviceGetUUID(h))) or uuid,
            uncorrected_ecc_errors=_optional(lambda: int(nvml.nvmlDeviceGetTotalEccErrors(
                h, nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nvml.NVML_VOLATILE_ECC))),
        )
    except nvml.NVMLError as exc:
        inv.unreadable.append(UnreadableGpu(index, f"NVML: {exc}", uuid))
        return
    inv.gpus.append(info)


def _nvml_reason(exc: Exception) -> str:
    name = type(exc).__name__
    if "LibraryNotFound" in name:
        return "no NVIDIA driver found (the NVML library libnvidia-ml.so is not installed)"
    if "DriverNotLoaded" in name:
        return "the NVIDIA driver is installed but not loaded"
    if "NoPermission" in name:
        return "no permission to talk to the NVIDIA driver"
    return f"NVML could not start: {exc}"


def _nvml_hint(exc: Exception) -> str:
    name = type(exc).__name__
    if "LibraryNotFound" in name:
        return "run on a GPU node, or set hardware.gpu_required: false for a CPU-only run"
    if "DriverNotLoaded" in name:
        return "load the driver (`sudo modprobe nvidia`) or check `nvidia-smi`"
    return "check `nvidia-smi` on this node"


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional(get):  # type: ignore[no-untyped-def]
    """A field this GPU or driver does not support is None (shown as N/A), never an exception."""
    try:
        return get()
    except Exception:
        return None


# --- host, disk, network ------------------------------------------------------------------------


@dataclass
class HostInfo:
    memory_total_bytes: int
    cpu_count: int
    hostname: str
    os: str
    machine: str


@dataclass
class Nic:
    name: str
    speed_mbps: int  # 0 when the kernel does not know (virtual NICs)
    is_up: bool
    is_loopback: bool


@dataclass
class DiskUsage:
    total_bytes: int
    free_bytes: int


class SystemProbe(Protocol):
    def host(self) -> HostInfo: ...
    def nics(self) -> list[Nic]: ...
    def disk_usage(self, path: Path) -> DiskUsage: ...
    def try_write(self, directory: Path) -> None: ...


class RealSystemProbe:
    def host(self) -> HostInfo:
        import psutil

        return HostInfo(
            memory_total_bytes=int(psutil.virtual_memory().total),
            cpu_count=os.cpu_count() or 1,
            hostname=platform.node(),
            os=f"{platform.system()} {platform.release()}",
            machine=platform.machine(),
        )

    def nics(self) -> list[Nic]:
        import psutil

        stats = psutil.net_if_stats()
        return [
            Nic(name, int(s.speed or 0), bool(s.isup), name == "lo" or name.startswith("lo"))
            for name, s in sorted(stats.items())
        ]

    def disk_usage(self, path: Path) -> DiskUsage:
        usage = shutil.disk_usage(existing_parent(path))
        return DiskUsage(usage.total, usage.free)

    def try_write(self, directory: Path) -> None:
        """Prove the directory is writable, or could be created, without leaving anything behind.

        An existing directory gets a small file written, fsynced and removed. A missing one is not
        created (a check should not change the machine): its nearest existing ancestor must accept
        a new directory instead. Raises OSError with the reason.
        """
        if directory.exists():
            if not directory.is_dir():
                raise NotADirectoryError(f"{directory} exists and is not a directory")
            fd, name = tempfile.mkstemp(prefix=".preflight-", dir=directory)
            try:
                os.write(fd, b"preflight write test\n")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(name)
            return
        parent = existing_parent(directory)
        if not parent.is_dir():
            raise NotADirectoryError(f"{parent} is in the way: it exists and is not a directory")
        os.rmdir(tempfile.mkdtemp(prefix=".preflight-", dir=parent))


def ray_temp_dir(env: Mapping[str, str], ray_address: str = "") -> tuple[Path, str]:
    """Where Ray keeps its session files and spills objects on this node, and why there.

    With a Ray cluster (an address), Ray's own default: $RAY_TMPDIR, else $TMPDIR, else /tmp,
    then /ray. Without one, the runner starts a local Ray in a private folder under the system
    temp dir (tempfile's $TMPDIR, $TEMP, $TMP, else /tmp)."""
    if ray_address:
        for var in ("RAY_TMPDIR", "TMPDIR"):
            if env.get(var):
                return Path(env[var]) / "ray", f"${var}/ray (Ray's temp and spill dir)"
        return Path("/tmp/ray"), "/tmp/ray (Ray's default temp and spill dir)"
    for var in ("TMPDIR", "TEMP", "TMP"):
        if env.get(var):
            return Path(env[var]), f"${var} (the runner's local Ray session and spill dir goes there)"
    return Path(tempfile.gettempdir()), "the system temp dir (the runner's local Ray session and spill dir)"


def existing_parent(path: Path) -> Path:
    """The path itself or its nearest existing ancestor (a checkpoint dir may not exist yet)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# --- software -----------------------------------------------------------------------------------


@dataclass
class TorchBuild:
    version: str
    cuda: str | None  # "12.4", or None for a CPU build


class PackageProbe(Protocol):
    def version(self, name: str) -> str | None: ...
    def python_version(self) -> str: ...
    def torch_build(self) -> TorchBuild | None: ...


class MetadataPackageProbe:
    """Versions from installed package metadata; importing the packages would take seconds.

    The dist-info folder names on sys.path (``torch-2.13.0+cpu.dist-info``) already hold every
    name and version, so one directory listing answers all packages; parsing each METADATA file
    through importlib.metadata costs far more. importlib.metadata is the fallback for anything the
    listing does not cover (eggs, zip imports).
    """

    def __init__(self, paths: list[str] | None = None) -> None:
        self._paths = paths
        self._index: dict[str, tuple[str, Path]] | None = None

    def _installed(self) -> dict[str, tuple[str, Path]]:
        if self._index is None:
            index: dict[str, tuple[str, Path]] = {}
            for entry in self._paths if self._paths is not None else sys.path:
                try:
                    names = os.listdir(entry or ".")
                except OSError:
                    continue
                for name in names:
                    stem, dot, ext = name.rpartition(".")
                    if ext not in ("dist-info", "egg-info") or "-" not in stem:
                        continue
                    dist, _, version = stem.partition("-")
                    # The first entry on sys.path wins, as it does for imports.
                    index.setdefault(normalize(dist), (version.split("-")[0], Path(entry or ".")))
            self._index = index
        return self._index

    def version(self, name: str) -> str | None:
        found = self._installed().get(normalize(name))
        if found:
            return found[0]
        from importlib import metadata  # the slow, thorough path: eggs, zip imports

        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    def python_version(self) -> str:
        return ".".join(map(str, sys.version_info[:3]))

    def torch_build(self) -> TorchBuild | None:
        found = self._installed().get("torch")
        if found is None:
            return None
        version, site = found
        # torch/version.py holds `cuda = '12.4'` or `cuda = None`; read it as text, never import it.
        try:
            text = (site / "torch" / "version.py").read_text(encoding="utf-8")
        except OSError:
            text = ""
        m = re.search(r"^cuda\s*(?::\s*[^=]+)?=\s*['\"]([0-9.]+)['\"]", text, re.M)
        if m:
            return TorchBuild(version, m.group(1))
        if text:
            return TorchBuild(version, None)
        # No version.py to read: fall back to the wheel's local version tag (+cu124 / +cpu).
        tag = re.search(r"\+cu(\d+)(\d)$", version)
        return TorchBuild(version, f"{tag.group(1)}.{tag.group(2)}" if tag else None)


def normalize(name: str) -> str:
    """PEP 503 name normalisation: Typing_Extensions and typing.extensions are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the bundle ---------------------------------------------------------------------------------


@dataclass
class Probes:
    gpu: GpuProbe = field(default_factory=NvmlGpuProbe)
    system: SystemProbe = field(default_factory=RealSystemProbe)
    packages: PackageProbe = field(default_factory=MetadataPackageProbe)
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    home: Path = field(default_factory=Path.home)
