"""Where a rank runs and how the ranks work together: the device, FSDP2, and the reductions.

``world(rank, world_size)`` takes the place from torch.distributed when it is initialized (a Ray
Train worker, a ``torch.distributed`` process) and from the caller otherwise. ``shard`` wraps the
policy with FSDP2 ``fully_shard`` on a one-dimensional device mesh, each decoder layer a unit of its
own, then the root. ``mean_across`` / ``sum_across`` all-reduce a few floats so that every rank
decides alike (the stability guard, the kept-groups count) and rank 0 logs the world's numbers; in
one process they hand the values back unchanged.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

REDUCE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}  # distributed.gradient_compression


def distributed() -> bool:
    """True when this process is one of several ranks of an initialized process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world(rank: int, world_size: int) -> tuple[int, int]:
    """(rank, world size): the process group's when there is one, else the given ones."""
    if distributed():
        return dist.get_rank(), dist.get_world_size()
    return rank, world_size


def backend_name() -> str:
    """The process group's backend, "none" in one process (the run_start record)."""
    return str(dist.get_backend()) if distributed() else "none"


def pick_device(wants_gpu: bool, rank: int, notes: list[str]) -> torch.device:
    """This rank's GPU (LOCAL_RANK, else rank modulo the visible GPUs) when the spec wants GPUs
    and one is visible; the CPU otherwise (with a note when GPUs were wanted)."""
    if wants_gpu and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count()))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        return device
    if wants_gpu:
        notes.append("hardware: the spec wants GPUs but none is visible; running on cpu")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"


def shard(model: Any, head: torch.nn.Module | None, *, world_size: int, device: torch.device,
          compression: str, bucket_size_mb: Any, notes: list[str]) -> None:
    """FSDP2 ``fully_shard`` in place: each decoder layer, then ``head`` (an fp32 LM head that is
    not tied to the embeddings: its own unit with fp32 parameters, so it really computes in fp32
    under bf16 training), then the root. Mixed precision is bf16 parameters on a GPU (gradients
    reduced in ``compression``'s dtype), fp32 on a CPU."""
    mesh = init_device_mesh(device.type, (world_size,))
    if device.type == "cuda":
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16,
                                  reduce_dtype=REDUCE_DTYPES.get(compression, torch.float32))
    else:
        mp = MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32)
        notes.append("fsdp2: mixed precision is fp32 on cpu (bf16 params apply on GPU only)")
        if compression != "none":
            notes.append(f"gradient_compression={compression}: not applied on cpu/gloo; "
                         "gradients are reduced in fp32")
    notes.append(f"bucket_size_mb={bucket_size_mb}: not applicable to FSDP2 "
                 "(it all-gathers and reduce-scatters per fully_shard unit, no DDP buckets)")
    layers = getattr(getattr(model, "model", None), "layers", None) or []
    for layer in layers:
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    if head is not None:
        fully_shard(head, mesh=mesh, mp_policy=MixedPrecisionPolicy(param_dtype=torch.float32,
                                                                    reduce_dtype=torch.float32))
    fully_shard(model, mesh=mesh, mp_policy=mp)
    notes.append(f"fsdp2: fully_shard on a {device.type} mesh of {world_size} "
                 f"({len(layers)} decoder layers, then the root), backend {dist.get_backend()}")


def mean_across(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Mean of each value over the ranks (NaN stays NaN); a no-op in one process."""
    if not distributed():
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist(), strict=True))


def sum_across(values: list[float], device: torch.device) -> list[float]:
    """Sum of each value over the ranks; a no-op in one process."""
    if not distributed():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(x) for x in t.tolist()]


def barrier() -> None:
    """Wait for every rank (no rank leaves and tears down the group while others still reduce)."""
    if distributed():
        dist.barrier()
