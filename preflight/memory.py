"""Memory before launch: what one GPU, one node's host RAM and one checkpoint need, as pure
functions of the model's shape and the run's sizes. docs/memory.md states every formula and
assumption; the checks hw.memory.gpu, hw.memory.host and storage.free_space show the parts.

The estimate follows the built-in runner: a GPU trains its share of the batch
training.micro_batch_size sequences per forward/backward (the whole share when null), keeps every
layer's activations unless training.gradient_checkpointing, generates
training.generation_batch_size completions at once (the whole share when null), takes log-probs
of the response tokens only, and keeps an fp32 reference policy, sharded like the policy, when
kl_beta > 0. Where
frameworks differ it uses the larger figure (18 bytes of model state per parameter in mixed
precision, as DeepSpeed's ZeRO-3 estimator counts, where FSDP2 keeps 16).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .modelinfo import Architecture, ParamCount
from .spec import Spec

GB = 1e9
# Model state per parameter, sharded over the ranks: a 16-bit working copy (2) + fp32 master
# weights (4) + fp32 gradients (4) + Adam's two fp32 moments (8) in mixed precision; fp32 training
# has no separate working copy.
STATE_BYTES = {"bf16": 18, "fp16": 18, "fp32": 16}
COMPUTE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}  # activations, KV cache, gathered layers
CHECKPOINT_BYTES_PER_PARAM = 12  # fp32 weights + Adam's two moments; 16-bit copies are not saved
# Per vocabulary entry and response token, the runner's peak (runner.rollout.sequence_logprobs):
# the fp32 log-softmax kept for the backward, plus the entropy's exp and product on the first
# update (the backward's two gradients of the same size later); the logits are let go at once.
LOGIT_BYTES = 12
REFERENCE_BYTES = 4  # the built-in runner's reference policy: fp32, sharded over the ranks like the policy
GPU_OVERHEAD = 2 * GB  # CUDA context, NCCL buffers, allocator fragmentation
OFFLOAD_BUFFER = 1.5  # DeepSpeed's additional_buffer_factor for states kept in host memory
HEADROOM = 0.10  # under 10 % of the memory left over warns
PHASES = ("activations", "logits", "kv_cache")  # the training pass and the rollout: the larger one counts


@dataclass(frozen=True)
class Workload:
    """The run's sizes that decide memory, per training rank."""

    world: int  # training ranks (GPUs, or CPU workers)
    ranks_per_node: int
    nodes: int
    dtype: str  # model.dtype
    seq_len: int  # prompt + response budgets
    train_tokens: float  # tokens in one forward/backward on one rank
    rollout_seqs: float  # sequences one rank generates at once
    tp: int = 1
    sp: int = 1
    offload: bool = False
    reference: bool = False
    logit_tokens: float | None = None  # response tokens of one forward/backward (None: train_tokens)
    checkpointing: bool = False  # training.gradient_checkpointing
    share: float = 0.0  # completions per rank per step (training.batch_size / world)
    group: int = 1  # training.group_size
    response: int = 0  # training.max_response_tokens
    how: dict[str, str] = field(default_factory=dict)  # where train_tokens / rollout_seqs come from


@dataclass
class Estimate:
    """Bytes per part, how each was computed, and the peak (``total``)."""

    parts: dict[str, float] = field(default_factory=dict)
    formulas: dict[str, str] = field(default_factory=dict)
    total: float = 0.0

    def add(self, name: str, value: float, formula: str) -> None:
        self.parts[name] = value
        self.formulas[name] = formula

    def evidence(self) -> dict[str, str]:
        return {name: f"{gb(v)} = {self.formulas[name]}" for name, v in self.parts.items()}

    def fixed(self) -> float:
        """The parts held throughout, beside the larger of the training pass and the rollout (PHASES)."""
        return sum(v for k, v in self.parts.items() if k not in PHASES)


def gb(n_bytes: float) -> str:
    return f"{n_bytes / GB:,.1f} GB" if n_bytes >= 0.05 * GB else f"{n_bytes / 1e6:,.1f} MB"


# --- the terms ------------------------------------------------------------------------------------


def model_state_bytes(total_params: float, largest_layer: float, world: int, dtype: str,
                      offload: bool = False) -> tuple[float, float]:
    """(sharded states, gathered layer) per GPU under ZeRO-3 / FSDP full sharding.

    Sharded: STATE_BYTES[dtype] x params / world (0 when offloaded to the host). Gathered: the
    largest layer unsharded while it computes, its 16-bit parameters and gradient: 2 x compute
    bytes x largest-layer params (4 x in mixed precision: DeepSpeed's largest_layer_memory)."""
    sharded = 0.0 if offload else STATE_BYTES[dtype] * total_params / world
    return sharded, 2 * COMPUTE_BYTES[dtype] * largest_layer


def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, dtype_bytes: int, tokens: int,
                   sequences: float) -> float:
    """2 (K and V) x layers x KV heads x head_dim x bytes x tokens x sequences."""
    return 2.0 * layers * kv_heads * head_dim * dtype_bytes * tokens * sequences


def activation_values_per_token_layer(a: Architecture) -> int:
    """Values a decoder layer keeps per token for the backward pass, without recomputation and
    with FlashAttention/SDPA (no score matrix): the attention's norm input and output (2h), Q, K,
    V (q_dim + 2 kv_dim), the attention output (q_dim); the MLP's norm input and output (2h), and
    gate, up, act(gate), act(gate)*up (4 i), with i the width a token passes through (top-k experts
    plus a shared expert in a MoE)."""
    width = a.intermediate
    if a.is_moe:
        width = a.experts_per_token * a.expert_intermediate + a.shared_intermediate
    return 4 * a.hidden + 2 * a.q_dim + 2 * a.kv_dim + 4 * width


def activation_bytes(a: Architecture, tokens: float, dtype_bytes: int, checkpointing: bool = False) -> float:
    """Without recomputation every layer keeps all its values; with activation checkpointing each
    layer keeps only its input (h values per token) and the backward recomputes one layer at a
    time, whose full values exist once: tokens x (L x h + values per layer) x bytes."""
    if checkpointing:
        return tokens * (a.layers * a.hidden + activation_values_per_token_layer(a)) * dtype_bytes
    return tokens * a.layers * activation_values_per_token_layer(a) * dtype_bytes


def logits_bytes(vocab: int, tokens: float) -> float:
    return LOGIT_BYTES * vocab * tokens


def checkpoint_bytes(total_params: float) -> float:
    """One checkpoint of model + optimizer: fp32 weights and Adam's two moments, 12 B per parameter."""
    return CHECKPOINT_BYTES_PER_PARAM * total_params


# --- per GPU and per node -------------------------------------------------------------------------


def gpu_estimate(a: Architecture, p: ParamCount, w: Workload) -> Estimate:
    """One rank's peak: model states + gathered layer + reference + overhead + the larger of the
    training pass (activations and logits) and the rollout's KV cache."""
    c = COMPUTE_BYTES[w.dtype]
    est = Estimate()
    sharded, gathered = model_state_bytes(p.total, p.largest_layer, w.world, w.dtype, w.offload)
    if w.offload:
        est.add("model_states", 0.0, "params, gradients and Adam states offloaded to host memory")
    else:
        est.add("model_states", sharded, f"{STATE_BYTES[w.dtype]} B x {p.total / 1e9:.3g}B params / "
                f"{w.world} ranks ({w.dtype}: " + ("fp32 params, grads, Adam moments)" if w.dtype == "fp32"
                                                   else "16-bit copy, fp32 master, grads, Adam moments)"))
    est.add("gathered_layer", gathered, f"2 x {c} B x {p.largest_layer / 1e6:,.0f}M params of the largest "
            "layer, unsharded while it computes")
    if w.reference:
        est.add("reference_policy", REFERENCE_BYTES * p.total / w.world,
                f"{REFERENCE_BYTES} B x {p.total / 1e9:.3g}B params / {w.world} ranks: the frozen fp32 reference, "
                "sharded like the policy (kl_beta > 0)")
    values = activation_values_per_token_layer(a)
    acts = activation_bytes(a, w.train_tokens, c, w.checkpointing)
    est.add("activations", acts,
            (f"{w.train_tokens:,.0f} tokens x ({a.layers} layers x {a.hidden:,} (each layer's input) + {values:,} "
             f"(one layer recomputed)) x {c} B" if w.checkpointing else
             f"{w.train_tokens:,.0f} tokens x {a.layers} layers x {values:,} values x {c} B")
            + f" ({w.how.get('train', '')})")
    logit_tokens = w.train_tokens if w.logit_tokens is None else w.logit_tokens
    est.add("logits", logits_bytes(a.vocab, logit_tokens),
            f"{LOGIT_BYTES} B x vocabulary {a.vocab:,} x {logit_tokens:,.0f} response tokens (fp32 log-softmax, "
            "the entropy's temporaries or the gradients)")
    kv_heads = math.ceil(a.kv_heads / w.tp)
    seqs = w.rollout_seqs * w.tp
    est.add("kv_cache", kv_cache_bytes(a.layers, kv_heads, a.head_dim, c, w.seq_len, seqs),
            f"2 x {a.layers} layers x {kv_heads} KV heads x {a.head_dim} x {c} B x {w.seq_len:,} tokens x "
            f"{seqs:,.0f} sequences ({w.how.get('rollout', '')})")
    est.add("overhead", GPU_OVERHEAD, "CUDA context, NCCL buffers, allocator fragmentation")
    est.total = est.fixed() + max(est.parts["activations"] + est.parts["logits"], est.parts["kv_cache"])
    return est


def host_estimate(p: ParamCount, w: Workload, checkpoint: float, checkpoint_how: str) -> Estimate:
    """One node's host RAM: the model states offloaded there, and each rank's shard of a checkpoint
    (``checkpoint`` bytes in all) staged in host memory while it is written."""
    est = Estimate()
    if w.offload:
        est.add("offloaded_states", STATE_BYTES[w.dtype] * p.total / w.nodes * OFFLOAD_BUFFER,
                f"{STATE_BYTES[w.dtype]} B x {p.total / 1e9:.3g}B params / {w.nodes} nodes x "
                f"{OFFLOAD_BUFFER} (DeepSpeed's buffer factor)")
    est.add("checkpoint_staging", checkpoint * w.ranks_per_node / w.world,
            f"one checkpoint of {gb(checkpoint)} ({checkpoint_how}) x {w.ranks_per_node}/{w.world} ranks on "
            "this node (each rank's shard passes through host memory while it is written)")
    est.total = sum(est.parts.values())
    return est


# --- the spec's sizes -----------------------------------------------------------------------------


def workload(spec: Spec) -> Workload:
    """The memory-relevant sizes of a spec, per rank: the tokens of one training pass (a
    micro-batch of training.micro_batch_size sequences, or the rank's whole share of the batch)
    and the sequences generated at once (training.generation_batch_size, or the whole share)."""
    world = spec.world_size
    nodes = int(spec.get("hardware.nodes"))
    gpus = spec.uses_gpus
    per_node = int(spec.get("hardware.gpus_per_node")) if gpus else math.ceil(world / nodes)
    response = int(spec.get("training.max_response_tokens"))
    seq = int(spec.get("training.max_prompt_tokens")) + response
    share = int(spec.get("training.batch_size")) / world
    # the built-in runner has no sequence or tensor parallelism and no CPU offload (config.unused
    # warns when they are set): counting them would pass what it cannot hold; a framework's run has them
    runner = spec.framework is None
    sp = 1 if runner else int(spec.get("distributed.sequence_parallel_size") or 1)
    tp = 1 if runner else int(spec.get("distributed.tensor_parallel_size") or 1)
    offload = False if runner else bool(spec.get("distributed.cpu_offload"))
    micro, chunk = spec.get("training.micro_batch_size"), spec.get("training.generation_batch_size")
    seqs = min(float(micro), share) if micro else share
    split = f" / sp {sp}" if sp > 1 else ""
    train_how = (f"a micro-batch of {seqs:g} sequences x {seq:,} tokens{split}" if micro else
                 f"the rank's whole share, {share:g} sequences x {seq:,} tokens{split}, in one pass")
    rollout = min(float(chunk), share) if chunk else share
    rollout_how = (f"generation_batch_size: {rollout:g} completions at once" if chunk else
                   f"the rank's whole share of the batch, {share:g} completions, at once")
    return Workload(
        world=world, ranks_per_node=per_node, nodes=nodes, dtype=str(spec.get("model.dtype")), seq_len=seq,
        train_tokens=seqs * seq / sp, rollout_seqs=rollout, tp=tp,
        sp=sp, offload=offload, reference=float(spec.get("algorithm.kl_beta")) > 0,
        logit_tokens=seqs * response / sp, checkpointing=bool(spec.get("training.gradient_checkpointing")),
        share=share, group=int(spec.get("training.group_size")), response=response,
        how={"train": train_how + (", activation checkpointing" if spec.get("training.gradient_checkpointing")
                                   else ", no activation recomputation"),
             "rollout": rollout_how + " at full length"},
    )


# --- what would fit -------------------------------------------------------------------------------


def share_divisors(share: int, step: int = 1) -> list[int]:
    """The multiples of ``step`` that divide a rank's ``share``, ascending: the micro-batch and
    generation chunk sizes the runner accepts (runner.config.BatchPlan; config.batch.micro checks them)."""
    return [d for d in range(step, share + 1, step) if share % d == 0]


@dataclass(frozen=True)
class Fit:
    """The largest sizes that bring the training pass and the rollout under a GPU's ``budget``:
    a micro-batch (None: not even one sequence per pass fits), whether that needs activation
    checkpointing, and a generation chunk of whole groups (None: not even one group fits)."""

    micro: int | None
    checkpointing: bool
    generation: int | None


def fitting_sizes(a: Architecture, p: ParamCount, w: Workload, budget: float) -> Fit:
    """What ``hw.memory.gpu``'s remedy proposes: the largest divisor of the rank's share whose
    training pass fits beside the fixed parts (with the spec's checkpointing setting first, then
    with checkpointing), and the largest multiple of group_size dividing the share whose KV cache
    fits."""
    room = budget - gpu_estimate(a, p, w).fixed()
    share = max(int(w.share), 1)
    divisors = share_divisors(share)[::-1]  # largest first
    c = COMPUTE_BYTES[w.dtype]

    def training(seqs: int, checkpointing: bool) -> float:
        return (activation_bytes(a, seqs * w.seq_len / w.sp, c, checkpointing)
                + logits_bytes(a.vocab, seqs * w.response / w.sp))

    micro, checkpointing = None, w.checkpointing
    for option in ((w.checkpointing,) if w.checkpointing else (False, True)):
        micro = next((d for d in divisors if training(d, option) <= room), None)
        if micro is not None:
            checkpointing = option
            break
    kv_heads = math.ceil(a.kv_heads / w.tp)
    generation = next((d for d in share_divisors(share, w.group)[::-1] if
                       kv_cache_bytes(a.layers, kv_heads, a.head_dim, c, w.seq_len, d * w.tp) <= room), None)
    return Fit(micro, checkpointing, generation)
