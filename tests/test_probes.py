"""Real probes on this machine, and the package probe on a synthetic site-packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from preflight.probes import MetadataPackageProbe, NvmlGpuProbe, ProbeUnavailable, RealSystemProbe


def make_site(tmp_path: Path, torch_version: str, cuda_line: str | None) -> Path:
    site = tmp_path / "site"
    (site / f"torch-{torch_version}.dist-info").mkdir(parents=True)
    (site / "Typing_Extensions-4.12.2.dist-info").mkdir()
    (site / "legacy_pkg-1.0-py3.11.egg-info").mkdir()
    if cuda_line is not None:
        (site / "torch").mkdir()
        (site / "torch" / "version.py").write_text(f"__version__ = '{torch_version}'\n{cuda_line}\n")
    return site


def test_versions_come_from_dist_info_names(tmp_path: Path):
    probe = MetadataPackageProbe([str(make_site(tmp_path, "2.5.1+cu124", "cuda: Optional[str] = '12.4'"))])
    assert probe.version("torch") == "2.5.1+cu124"
    assert probe.version("typing-extensions") == "4.12.2"
    assert probe.version("legacy-pkg") == "1.0"
    assert probe.version("certainly-not-installed-pkg") is None
    build = probe.torch_build()
    assert build is not None and build.cuda == "12.4"


def test_cpu_torch_build_and_missing_version_file(tmp_path: Path):
    cpu = MetadataPackageProbe([str(make_site(tmp_path / "a", "2.13.0+cpu", "cuda: Optional[str] = None"))])
    assert cpu.torch_build().cuda is None  # type: ignore[union-attr]
    tagged = MetadataPackageProbe([str(make_site(tmp_path / "b", "2.4.0+cu121", None))])
    assert tagged.torch_build().cuda == "12.1"  # type: ignore[union-attr]
    assert MetadataPackageProbe([str(tmp_path / "empty")]).torch_build() is None


def test_no_nvml_here_is_a_clear_probe_error():
    try:
        NvmlGpuProbe().inventory()
    except ProbeUnavailable as exc:
        assert exc.reason and exc.hint
    else:  # pragma: no cover - only on a GPU machine
        pytest.skip("this machine has an NVIDIA driver")


def test_real_system_probe_reads_this_machine(tmp_path: Path):
    probe = RealSystemProbe()
    host = probe.host()
    assert host.cpu_count >= 1 and host.memory_total_bytes > 2**28
    assert any(n.is_loopback for n in probe.nics())
    assert probe.disk_usage(tmp_path / "missing" / "dir").free_bytes > 0
    probe.try_write(tmp_path)
    assert list(tmp_path.iterdir()) == []  # the write test leaves nothing behind


@pytest.mark.gpu
def test_nvml_on_a_real_gpu_reports_memory_and_driver():
    inv = NvmlGpuProbe().inventory()
    assert inv.gpus, "no GPU visible to NVML"
    assert inv.driver_version and inv.cuda_driver_version
    assert all(g.memory_total_bytes > 10**9 and g.name for g in inv.gpus)
