"""Memory before launch: the per-GPU estimate against the GPUs' memory, and the per-node host RAM
estimate against the host's. The formulas are preflight.memory's (docs/memory.md); the model's
shape comes from its config.json when the folder is local, else from model.params_b."""

from __future__ import annotations

from typing import Any

from ..memory import (
    GB,
    HEADROOM,
    PHASES,
    Estimate,
    Fit,
    Workload,
    fitting_sizes,
    gb,
    gpu_estimate,
    host_estimate,
    workload,
)
from ..probes import ProbeUnavailable
from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed, skipped, warned
from ._framework import launched_by_framework
from ._util import gpu_inventory
from .model import model_facts, model_shape
from .storage import checkpoint_bytes

SIZES = ("model.params_b", "model.dtype", "training.batch_size", "training.max_prompt_tokens",
         "training.max_response_tokens", "hardware.gpus_per_node", "hardware.nodes")


def gpu_capacity(ctx: Context) -> tuple[float, str]:
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


def _gpu_fix(est: Estimate, work: Workload, fit: Fit, budget: float) -> str:
    """What shrinks the parts over ``budget`` (the GPU's memory less the 10 % headroom): the
    micro-batch, activation checkpointing and generation chunk that would fit (fitting_sizes),
    else fewer or shorter sequences; for the fixed parts, sharding, offload or bigger GPUs."""
    fewer = ("fewer or shorter sequences per GPU: lower training.batch_size or spread it over more GPUs "
             "(hardware.nodes), or shorten training.max_response_tokens")
    room = budget - est.fixed()
    fixes = []
    if est.parts["activations"] + est.parts["logits"] > room:
        if fit.micro is not None:
            knobs = f"training.micro_batch_size: {fit.micro}"
            if fit.checkpointing and not work.checkpointing:
                knobs += " and training.gradient_checkpointing: true"
            fixes.append(f"set {knobs} (each GPU then trains {fit.micro} of its {work.share:g} sequences per "
                         "forward/backward, the gradients accumulated)")
        else:
            fixes.append(f"not even one sequence of {work.seq_len:,} tokens per forward/backward fits with "
                         f"gradient checkpointing: {fewer}, or shorten training.max_prompt_tokens / "
                         "max_response_tokens")
    if est.parts["kv_cache"] > room:
        if fit.generation is not None:
            fixes.append(f"set training.generation_batch_size: {fit.generation} (each GPU then generates "
                         f"{fit.generation} of its {work.share:g} completions at once)")
        else:
            fixes.append(f"not even one group of {work.group} completions of {work.seq_len:,} tokens fits in "
                         f"the KV cache: {fewer}, or shorten training.max_response_tokens")
    biggest = max((k for k in est.parts if k not in PHASES), key=lambda k: est.parts[k])
    if room < 0 or not fixes:
        fixes.append({
            "model_states": "shard the model states over more GPUs (hardware.nodes)",
            "gathered_layer": "the largest layer must fit unsharded: use GPUs with more memory",
            "reference_policy": ("algorithm.kl_beta > 0 keeps an fp32 reference policy (sharded): set "
                                 "algorithm.kl_beta: 0 (DAPO and ScaleRL drop the KL term), shard over more GPUs "
                                 "or use a smaller model"),
        }.get(biggest, fewer))
    return "; ".join(fixes) + "; or use GPUs with more memory"


@check("hw.memory.gpu", "Memory estimate fits each GPU", "static", rules=(
    Rule("hardware.min_vram_gb", (*SIZES, "distributed.tensor_parallel_size", "distributed.sequence_parallel_size",
                                  "distributed.cpu_offload", "algorithm.kl_beta", "model: config.json shape",
                                  "machine: GPU memory (NVML)"),
         "fail; warn under 10 % headroom",
         "the per-GPU estimate (model states, gathered layer, activations and logits or the rollout's KV "
         "cache) fits the GPUs' memory"),
    Rule("training.micro_batch_size", ("training.gradient_checkpointing", "training.max_prompt_tokens",
                                       "training.max_response_tokens", "hardware.min_vram_gb",
                                       "model: config.json shape"), "fail; warn under 10 % headroom",
         "one micro-batch's activations and logits fit beside the model states (the remedy names the size that does)"),
    Rule("training.gradient_checkpointing", ("training.micro_batch_size", "hardware.min_vram_gb"),
         "fail; warn under 10 % headroom",
         "without recomputation every layer keeps its activations: on when a micro-batch needs it to fit"),
    Rule("training.generation_batch_size", ("training.group_size", "training.max_prompt_tokens",
                                            "training.max_response_tokens", "hardware.min_vram_gb",
                                            "model: config.json shape"), "fail; warn under 10 % headroom",
         "the KV cache of the completions generated at once fits beside the model states"),
))
def gpu_memory(ctx: Context) -> Outcome:
    """Estimates one GPU's peak memory and compares it with the smallest GPU's memory (NVML at
    --level node, else hardware.min_vram_gb): over fails, under 10 % headroom warns. The parts
    (bytes, P = parameters, world = training GPUs; docs/memory.md):

    - model states: 18 B x P / world in bf16/fp16 (16-bit copy 2 + fp32 master 4 + fp32 grads 4 +
      Adam moments 8; DeepSpeed ZeRO-3's count), 16 B in fp32; 0 with distributed.cpu_offload
    - gathered layer: 2 x compute bytes x the largest layer's params (unsharded while it computes)
    - reference policy (algorithm.kl_beta > 0): 4 B x P / world, fp32, sharded like the policy
    - activations: tokens x layers x (4h + 2 q_dim + 2 kv_dim + 4 i) x compute bytes, no
      recomputation, FlashAttention (no score matrix); with training.gradient_checkpointing
      tokens x (layers x h + (4h + 2 q_dim + 2 kv_dim + 4 i)) x compute bytes: each layer's input
      kept, one layer's values recomputed at a time. tokens = sequences per forward/backward
      (training.micro_batch_size, else the GPU's whole share of the batch) x (max_prompt_tokens +
      max_response_tokens) / sequence_parallel_size
    - logits: 12 B x vocabulary x response tokens of the pass (the runner's fp32 log-softmax and
      the entropy's temporaries, or the backward's gradients)
    - KV cache: 2 x layers x ceil(KV heads / tp) x head_dim x compute bytes x (prompt + response)
      x sequences in flight (training.generation_batch_size, else the GPU's share of the batch;
      x tp), at maximum length
    - 2 GB for the CUDA context, NCCL buffers and fragmentation

    Peak = states + gathered + reference + overhead + max(activations + logits, KV cache). The
    reference's log-prob pass runs per micro-batch without gradients, below the training pass. The
    remedy names the largest training.micro_batch_size (with gradient_checkpointing when it needs
    it) and training.generation_batch_size that bring the peak under 90 % of the GPU. The
    shape comes from config.json when model.name_or_path is a local folder, else from
    model.params_b and a published shape of that size (said in the evidence)."""
    if not ctx.spec.uses_gpus:
        return skipped("the run uses no GPUs: its memory is host memory (see hw.memory.host)")
    framework = launched_by_framework(ctx, "this estimate (one pass per micro-batch, the rollout's KV cache at "
                                           "maximum length)")
    if framework is not None:
        return framework
    shape = model_shape(ctx)
    count = shape.count
    work = workload(ctx.spec)
    est = gpu_estimate(shape.arch, count, work)
    capacity, where = gpu_capacity(ctx)
    budget = capacity * (1 - HEADROOM)
    # the sizes that would fit are searched only when the estimate is over the line
    fix = _gpu_fix(est, work, fitting_sizes(shape.arch, count, work, budget), budget) if est.total > budget else ""
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
