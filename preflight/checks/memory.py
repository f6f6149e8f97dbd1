"""Memory before launch: the per-GPU estimate against the GPUs' memory, and the per-node host RAM
estimate against the host's. The formulas are preflight.memory's (docs/memory.md); the model's
shape comes from its config.json when the folder is local, else from model.params_b."""

from __future__ import annotations

from typing import Any

from ..memory import GB, HEADROOM, Estimate, gb, gpu_estimate, host_estimate, workload
from ..probes import ProbeUnavailable
from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed, skipped, warned
from ._util import gpu_inventory
from .model import model_facts, model_shape
from .storage import checkpoint_bytes

SIZES = ("model.params_b", "model.dtype", "training.batch_size", "training.max_prompt_tokens",
         "training.max_response_tokens", "hardware.gpus_per_node", "hardware.nodes")


def _capacity_gpu(ctx: Context) -> tuple[float, str]:
    """The smallest GPU's memory: measured (NVML, or the cluster's nodes) when this check run
    probes the machine, else hardware.min_vram_gb as the spec states it."""
    stated = float(ctx.spec.get("hardware.min_vram_gb")) * GB
    if ctx.level == "static":
        return stated, f"hardware.min_vram_gb {stated / GB:g} GB (static level: GPUs not probed)"
    snapshot = ctx.peek("cluster.snapshot")
    if snapshot is not None:
        sizes = [(float(v) * GB, node.label) for node in snapshot.answered for r in node.results
                 if r["id"] == "hw.gpu.vram" for v in (r.get("evidence", {}).get("gb_per_gpu") or {}).values()]
        if sizes:
            smallest, label = min(sizes)
            return smallest, f"the smallest GPU in the cluster ({label}, NVML)"
    try:
        inv = gpu_inventory(ctx)
    except ProbeUnavailable as exc:
        return stated, f"hardware.min_vram_gb {stated / GB:g} GB (no GPU visible: {exc.reason})"
    if not inv.gpus:
        return stated, f"hardware.min_vram_gb {stated / GB:g} GB (no GPU on this node)"
    least = min(inv.gpus, key=lambda g: g.memory_total_bytes)
    return float(least.memory_total_bytes), f"the smallest GPU here ({least.name}, NVML)"


def _capacity_host(ctx: Context) -> tuple[float, str]:
    stated = float(ctx.spec.get("hardware.min_host_memory_gb")) * GB
    if ctx.level == "static":
        return stated, f"hardware.min_host_memory_gb {stated / GB:g} GB (static level: host not probed)"
    host = ctx.memo("host", ctx.probes.system.host)
    return float(host.memory_total_bytes), f"this host's RAM ({host.hostname})"


def _verdict(est: Estimate, capacity: float, source: str, what: str, fix: str,
             evidence: dict[str, Any]) -> Outcome:
    found = f"~{gb(est.total)} needed {what}"
    expected = f"<= {gb(capacity)} with 10 % headroom ({source})"
    biggest = max(est.parts, key=lambda k: est.parts[k])
    evidence = {**evidence, **est.evidence(), "estimate": gb(est.total), "capacity": gb(capacity)}
    if est.total > capacity:
        return failed(f"{found}; the largest part is {biggest} ({gb(est.parts[biggest])})", expected, fix, **evidence)
    if est.total > capacity * (1 - HEADROOM):
        return warned(found, expected, "less than 10 % headroom: fragmentation and longer-than-planned "
                      "batches can still run out; " + fix, **evidence)
    return passed(found, expected, **evidence)


def _gpu_fix(biggest: str, share: float, seq_len: int) -> str:
    """What shrinks the part that dominates."""
    fewer = ("fewer or shorter sequences per GPU: lower training.batch_size or spread it over more GPUs "
             "(hardware.nodes), or shorten training.max_response_tokens")
    fixes = {
        "model_states": "shard the model states over more GPUs (hardware.nodes), or set distributed.cpu_offload: true",
        "gathered_layer": "the largest layer must fit unsharded: use GPUs with more memory",
        "reference_policy": ("algorithm.kl_beta > 0 keeps a full fp32 reference policy on every GPU: set "
                             "algorithm.kl_beta: 0 (DAPO and ScaleRL drop the KL term) or use a smaller model"),
        "activations": (f"each GPU trains its whole share ({share:g} sequences of {seq_len:,} tokens) in one "
                        f"forward/backward: {fewer}"),
        "kv_cache": (f"each GPU generates its share ({share:g} completions of up to {seq_len:,} tokens) at once: "
                     f"{fewer}, or split the KV heads with distributed.tensor_parallel_size"),
    }
    fixes["logits"] = fixes["activations"]
    return fixes.get(biggest, fewer) + "; or use GPUs with more memory"


@check("hw.memory.gpu", "Memory estimate fits each GPU", "static", rules=(
    Rule("hardware.min_vram_gb", (*SIZES, "distributed.tensor_parallel_size", "distributed.sequence_parallel_size",
                                  "distributed.cpu_offload", "algorithm.kl_beta", "model: config.json shape",
                                  "machine: GPU memory (NVML)"),
         "fail; warn under 10 % headroom",
         "the per-GPU estimate (model states, gathered layer, activations and logits or the rollout's KV "
         "cache) fits the GPUs' memory"),
))
def gpu_memory(ctx: Context) -> Outcome:
    """Estimates one GPU's peak memory and compares it with the smallest GPU's memory (NVML at
    --level node, else hardware.min_vram_gb): over fails, under 10 % headroom warns. The parts
    (bytes, P = parameters, world = training GPUs; docs/memory.md):

    - model states: 18 B x P / world in bf16/fp16 (16-bit copy 2 + fp32 master 4 + fp32 grads 4 +
      Adam moments 8; DeepSpeed ZeRO-3's count), 16 B in fp32; 0 with distributed.cpu_offload
    - gathered layer: 2 x compute bytes x the largest layer's params (unsharded while it computes)
    - reference policy (algorithm.kl_beta > 0): 4 B x P, a full fp32 copy per GPU
    - activations: tokens x layers x (4h + 2 q_dim + 2 kv_dim + 4 i) x compute bytes, no
      recomputation, FlashAttention (no score matrix); tokens = the GPU's share of the batch x
      (max_prompt_tokens + max_response_tokens), all in one pass as the built-in runner trains
    - logits: 8 B x vocabulary x tokens (fp32 logits and their gradient)
    - KV cache: 2 x layers x ceil(KV heads / tp) x head_dim x compute bytes x (prompt + response)
      x sequences in flight (the GPU's share of the batch x tp), at maximum length
    - 2 GB for the CUDA context, NCCL buffers and fragmentation

    Peak = states + gathered + reference + overhead + max(activations + logits, KV cache). The
    shape comes from config.json when model.name_or_path is a local folder, else from
    model.params_b and a published shape of that size (said in the evidence)."""
    if not ctx.spec.uses_gpus:
        return skipped("the run uses no GPUs: its memory is host memory (see hw.memory.host)")
    shape = model_shape(ctx)
    count = shape.count
    work = workload(ctx.spec)
    est = gpu_estimate(shape.arch, count, work)
    capacity, where = _capacity_gpu(ctx)
    fix = _gpu_fix(max(est.parts, key=lambda k: est.parts[k]), work.rollout_seqs, work.seq_len)
    return _verdict(est, capacity, where, f"per GPU ({count.describe()} params, {work.dtype}, {work.world} GPUs)",
                    fix, {"model": shape.source})


@check("hw.memory.host", "Host RAM for offload and checkpoints", "static", rules=(
    Rule("hardware.min_host_memory_gb", ("distributed.cpu_offload", "model.params_b", "storage.checkpoint_size_gb",
                                         "hardware.gpus_per_node", "hardware.nodes", "machine: host RAM"),
         "fail; warn under 10 % headroom",
         "host RAM holds the offloaded model states and the checkpoint shards being written"),
))
def host_memory(ctx: Context) -> Outcome:
    """Estimates one node's host RAM and compares it with this host's (--level node) or
    hardware.min_host_memory_gb: over fails, under 10 % headroom warns. The parts:

    - offloaded states (distributed.cpu_offload): 18 B x P / nodes x 1.5 in bf16 (DeepSpeed
      ZeRO-3 offload's estimate with its buffer factor), 16 B in fp32
    - checkpoint staging: one checkpoint (storage.checkpoint_size_gb, or 12 B x P: the estimate
      storage.free_space uses) x the node's share of the ranks: each rank's
      shard passes through host memory while it is written

    A CPU run's own training memory (the workers' activations) is not estimated here."""
    shape = model_shape(ctx)
    count = shape.count
    checkpoint, how = checkpoint_bytes(ctx.spec, model_facts(ctx))
    est = host_estimate(count, workload(ctx.spec), checkpoint, how)
    capacity, where = _capacity_host(ctx)
    fix = ("use nodes with more RAM (and raise hardware.min_host_memory_gb to match), spread the run over "
           "more nodes, or turn off distributed.cpu_offload")
    return _verdict(est, capacity, where, f"per node ({count.describe()} params)", fix, {"model": shape.source})
