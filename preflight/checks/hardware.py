"""GPUs through NVML: count, model, memory, driver and ECC health."""

from __future__ import annotations

import re

from ..probes import GpuInventory, ProbeUnavailable, UnreadableGpu
from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed, skipped, warned
from ._util import (
    GB,
    gb,
    gpu_inventory,
    gpus_required,
    inventory_or_outcome,
    no_gpu_reason,
    plural,
    version_tuple,
)

NOT_REQUIRED = "the spec does not require GPUs (hardware.gpu_required is false or gpus_per_node is 0)"


@check("hw.gpu.count", "GPUs on this node", "node", rules=(
    Rule("hardware.gpus_per_node", ("hardware.gpu_required", "machine: GPUs on this node (NVML)"), "fail",
         "the node has at least hardware.gpus_per_node GPUs"),
))
def gpu_count(ctx: Context) -> Outcome:
    """Counts the GPUs this process may use against hardware.gpus_per_node (default 8): the ones
    NVML sees, narrowed by CUDA_VISIBLE_DEVICES as CUDA reads it (indexes, GPU UUIDs or MIG UUIDs;
    empty hides every GPU; the list stops at the first entry that names no GPU), so a Slurm or
    Kubernetes allocation counts as what the job was given.

    Fewer fails: the run's world size would not fit. More passes and says how many are unused.
    A visible GPU that NVML cannot read fails, named with NVML's error (the other GPUs are still
    read and judged). No NVIDIA driver or NVML library fails when the spec needs GPUs, with a
    hint; otherwise skips.
    """
    if not gpus_required(ctx):
        return skipped(NOT_REQUIRED)
    want = int(ctx.spec.get("hardware.gpus_per_node"))
    expected = f">= {plural(want, 'GPU')} per node"
    try:
        inv = gpu_inventory(ctx)  # zero GPUs is a count, not a missing inventory
    except ProbeUnavailable as exc:
        return failed(no_gpu_reason(exc), expected, exc.hint)
    have = len(inv.gpus)
    visible = f" ({inv.visible})" if inv.visible else ""
    evidence = {"gpus": [g.name for g in inv.gpus], **({"visible": inv.visible} if inv.visible else {})}
    if inv.unreadable:
        return failed(f"{plural(have, 'readable GPU')}{visible}; {unreadable_text(inv)}", expected,
                      "check the GPU with `nvidia-smi` (reset it, or drain the node), or leave it out with "
                      "CUDA_VISIBLE_DEVICES", unreadable=[vars(u) for u in inv.unreadable], **evidence)
    if have < want:
        hint = (f"run on nodes with {want} GPUs, or set hardware.gpus_per_node: {have} (the batch size "
                "must then still divide the world size)")
        if inv.visible:
            hint += "; or make more GPUs visible (CUDA_VISIBLE_DEVICES)"
        return failed(f"{plural(have, 'GPU')}{visible}", expected, hint, **evidence)
    note = f" ({have - want} unused)" if have > want else ""
    return passed(f"{plural(have, 'GPU')}{note}{visible}", expected, **evidence)


def unreadable_text(inv: GpuInventory) -> str:
    def name(u: UnreadableGpu) -> str:  # a MIG UUID NVML does not know has no index
        return u.uuid if u.index < 0 else f"GPU {u.index}" + (f" ({u.uuid})" if u.uuid else "")

    return "; ".join(f"{name(u)} unreadable: {u.error}" for u in inv.unreadable)


def _unread_note(inv: GpuInventory) -> str:
    """What the model, memory and ECC checks say about GPUs they could not look at."""
    return f" ({len(inv.unreadable)} unreadable GPU(s) not judged here: see hw.gpu.count)" if inv.unreadable else ""


def _model_matches(name: str, allowed: list[str]) -> bool:
    # Whole-word match: "H100" matches "NVIDIA H100 80GB HBM3", and "H20" does not match "H200".
    return any(re.search(rf"(?<![A-Za-z0-9]){re.escape(a)}(?![A-Za-z0-9])", name, re.I) for a in allowed)


@check("hw.gpu.model", "GPU model is allowed", "node", rules=(
    Rule("hardware.gpu_models", ("machine: GPU names (NVML)",), "fail",
         "every GPU's name contains one of hardware.gpu_models"),
))
def gpu_model(ctx: Context) -> Outcome:
    """Every GPU's NVML name must contain one of hardware.gpu_models as a whole word.

    Default list: A100, H100 and newer data-centre GPUs (docs/reference.md section 1: "A100 / H100 or newer").
    """
    if not gpus_required(ctx):
        return skipped(NOT_REQUIRED)
    allowed = list(ctx.spec.get("hardware.gpu_models"))
    expected = "one of " + ", ".join(allowed)
    inv = inventory_or_outcome(ctx, expected)
    if isinstance(inv, Outcome):
        return inv
    bad = [f"GPU {g.index}: {g.name}" for g in inv.gpus if not _model_matches(g.name, allowed)]
    names = sorted({g.name for g in inv.gpus})
    if bad:
        return failed("; ".join(bad), expected,
                      "run on an allowed GPU model, or add this model to hardware.gpu_models if it is "
                      "known to fit the run", gpus=names)
    return passed(", ".join(names) + _unread_note(inv), expected)


@check("hw.gpu.vram", "GPU memory per GPU", "node", rules=(
    Rule("hardware.min_vram_gb", ("machine: GPU memory (NVML)",), "fail",
         "every GPU has at least hardware.min_vram_gb"),
))
def gpu_vram(ctx: Context) -> Outcome:
    """Each GPU's total memory (NVML) against hardware.min_vram_gb (default 80 GB, SI gigabytes).

    An "80GB" A100 or H100 reports about 85 GB (80 GiB), so it passes the 80 GB default.
    """
    if not gpus_required(ctx):
        return skipped(NOT_REQUIRED)
    need = float(ctx.spec.get("hardware.min_vram_gb"))
    expected = f">= {need:g} GB per GPU"
    inv = inventory_or_outcome(ctx, expected)
    if isinstance(inv, Outcome):
        return inv
    small = [g for g in inv.gpus if g.memory_total_bytes < need * GB]
    least = min(inv.gpus, key=lambda g: g.memory_total_bytes)
    per_gpu = {str(g.index): round(g.memory_total_bytes / GB, 1) for g in inv.gpus}
    if small:
        return failed(
            f"{plural(len(small), 'GPU')} with {gb(least.memory_total_bytes)} ({least.name})", expected,
            "use GPUs with more memory, or shrink the per-GPU footprint (smaller model, more FSDP "
            "shards, shorter max_response_tokens) and lower hardware.min_vram_gb", gb_per_gpu=per_gpu)
    return passed(f"{gb(least.memory_total_bytes)} on the smallest GPU{_unread_note(inv)}", expected,
                  gb_per_gpu=per_gpu)


@check("hw.gpu.driver", "NVIDIA driver supports the stack", "node", rules=(
    Rule("hardware.min_driver_version", ("machine: NVIDIA driver", "machine: torch's CUDA build"),
         "fail; warn on an older CUDA minor version", "the driver is new enough for the spec and for torch's CUDA"),
))
def gpu_driver(ctx: Context) -> Outcome:
    """The driver version against hardware.min_driver_version, and the CUDA version torch was built
    for (read from torch's files, without importing it) against the newest CUDA the driver supports.

    A driver older than torch's CUDA major version fails (CUDA will not initialise); an older minor
    version warns (minor-version compatibility works, but PTX JIT and newer features may not).
    """
    if not gpus_required(ctx):
        return skipped(NOT_REQUIRED)
    minimum = ctx.spec.get("hardware.min_driver_version")
    try:
        inv = gpu_inventory(ctx)
    except ProbeUnavailable as exc:
        return failed(f"no driver: {exc.reason}", f"driver >= {minimum}" if minimum else "a working NVIDIA driver",
                      exc.hint)
    found = f"driver {inv.driver_version} (CUDA {inv.cuda_driver_version})"
    if minimum and version_tuple(inv.driver_version) < version_tuple(minimum):
        return failed(found, f"driver >= {minimum}", f"upgrade the NVIDIA driver to {minimum} or newer")
    torch = ctx.probes.packages.torch_build()
    if torch is None or torch.cuda is None:
        what = "torch is not installed" if torch is None else f"torch {torch.version} is a CPU build"
        return passed(f"{found}; {what} (see stack.torch_build)", "driver supports torch's CUDA")
    expected = f"driver supports CUDA {torch.cuda} (torch {torch.version})"
    have, need = version_tuple(inv.cuda_driver_version), version_tuple(torch.cuda)
    if have[:1] < need[:1]:
        return failed(found, expected, f"upgrade the driver to one that supports CUDA {torch.cuda}, or install "
                      f"a torch build for CUDA {inv.cuda_driver_version} or older")
    if have[:2] < need[:2]:
        return warned(found, expected, "minor-version compatibility applies; upgrade the driver to avoid "
                      "PTX JIT failures")
    return passed(found, expected)


@check("hw.gpu.ecc", "No uncorrected GPU memory errors", "node", rules=(
    Rule("hardware.max_uncorrected_ecc_errors", ("machine: uncorrected ECC errors (NVML)",), "fail",
         "no GPU has more uncorrected ECC errors than allowed"),
))
def gpu_ecc(ctx: Context) -> Outcome:
    """Uncorrected (volatile) ECC errors per GPU since boot against
    hardware.max_uncorrected_ecc_errors (default 0). A GPU that does not report ECC shows N/A."""
    if not gpus_required(ctx):
        return skipped(NOT_REQUIRED)
    limit = int(ctx.spec.get("hardware.max_uncorrected_ecc_errors"))
    try:
        inv = gpu_inventory(ctx)
    except ProbeUnavailable as exc:
        return skipped(f"nothing to check: {no_gpu_reason(exc)} (see hw.gpu.count)")
    counts = {str(g.index): ("N/A" if g.uncorrected_ecc_errors is None else g.uncorrected_ecc_errors)
              for g in inv.gpus}
    known = {i: c for i, c in counts.items() if isinstance(c, int)}
    if not known:
        return skipped("no GPU reports ECC counters (ECC off or not supported)", errors=counts)
    bad = {i: c for i, c in known.items() if c > limit}
    if bad:
        worst = ", ".join(f"GPU {i}: {c}" for i, c in bad.items())
        return failed(f"uncorrected ECC errors on {worst}", f"<= {limit} per GPU",
                      "drain this node and have the GPU checked (reset or RMA); a run on it may crash or "
                      "corrupt silently", errors=counts)
    return passed(f"{max(known.values())} uncorrected errors at most{_unread_note(inv)}", f"<= {limit} per GPU",
                  errors=counts)
