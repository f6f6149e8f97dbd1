"""The RL training loop: GRPO / DAPO / ScaleRL on a verifiable task, readable top to bottom.

``train(spec, run_dir, rank=..., world_size=...)`` is what every worker runs (a Ray Train worker,
a ``torch.distributed`` process, or the only process). In order:

1. Setup: seed, device, the policy (``runner.model.load_policy``), FP32 LM head, FSDP2
   ``fully_shard`` on a device mesh when torch.distributed is initialized, AdamW.
2. Data: the spec's train/val files, or the built-in arithmetic task (one ``generate`` call, split
   with ``split_rows``).
3. Optional supervised warm start (phase "warm_start") so the random tiny model has a non-zero
   pass rate before RL; then phase "rl".
4. Each RL step: sample G completions per prompt, score them, shape and normalize the rewards into
   advantages, filter, then the policy loss (the first update's own log-probs are the sampling
   policy's), backward, clip, and step unless the loss or the gradient norm is not finite;
   ``algorithm.updates_per_batch`` more clipped updates on the same rollouts.
5. Validation (greedy decode on the val split) every ``eval_interval`` steps; metrics are
   all-reduced across ranks and rank 0 writes events.jsonl (``runner.events.EventWriter``).
6. Around each step, the automatic decisions (``runner.controllers``): the stability guard (skip a
   non-finite update; roll back to the last good checkpoint with a lower lr on repeats or a loss
   spike), early stopping on the evaluated metric, the dynamic batch size; and a checkpoint
   (``runner.checkpoint``) every ``save_interval`` steps, at step 0 and at the end. Started on a
   run dir that has a verified checkpoint, the loop resumes from it (a new attempt).

The algorithm pieces themselves live in ``runner.algo``; this file only wires them together.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from preflight.spec import Spec

from .algo import (
    LossConfig,
    PassRateTracker,
    compute_advantages,
    finite,
    fp32_logits,
    overlong_shaping,
    policy_loss,
    token_logprobs,
    zero_variance_mask,
)
from .checkpoint import (
    CAUGHT,
    CheckpointError,
    CheckpointStore,
    Committed,
    choose_checkpoint,
    disk_full,
    load_training_state,
    save_training_state,
)
from .controllers import (
    DynamicBatch,
    EarlyStopping,
    MetricWindow,
    StabilityGuard,
    ThroughputEfficiency,
    scaled_lr,
)
from .events import EVENTS_FILE, EventWriter, make_sinks
from .model import TINY, load_policy
from .rewards import reward_for

WARM_START_WARMUP = 50  # linear LR warmup steps of the supervised warm start (at most a tenth of it)
WARM_START_CHECK = 25  # with training.warm_start_target: steps between two looks at the pass rate
DEMO_ROWS = 2000  # default training.task_rows: rows of the built-in math task before the split
GIB = 1024 ** 3


# ---------------------------------------------------------------------------------------------
# Small helpers: the FP32 head, distributed reductions, device metrics
# ---------------------------------------------------------------------------------------------


class FP32LMHead(nn.Module):
    """The LM head computing its logits in float32 (ScaleRL): ``fp32_logits(h, W)``.

    It keeps the original Linear's parameters, so a checkpoint's keys do not change meaning, and
    it is what ``generate`` calls too: sampling and training see the same fp32 logits.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias

    def forward(self, hidden: Tensor) -> Tensor:
        return fp32_logits(hidden, self.weight, self.bias)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _mean_across(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Mean of each value over the ranks (NaN stays NaN); a no-op in one process."""
    if not _distributed():
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= dist.get_world_size()
    return dict(zip(keys, t.tolist(), strict=True))


def _sum_across(values: list[float], device: torch.device) -> list[float]:
    if not _distributed():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


class DeviceMeter:
    """Utilization, memory and energy of this rank: NVML on a GPU, the process on a CPU.

    Never raises: a reading it cannot take is None.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.source = "gpu" if device.type == "cuda" else "cpu"
        self._nvml: Any = None
        self._handle: Any = None
        self._energy_mj: float | None = None
        self._proc: Any = None
        try:
            import psutil

            self._proc = psutil.Process()
            self._proc.cpu_percent(None)  # starts the interval
        except Exception:
            self._proc = None
        if self.source == "gpu":
            try:
                import pynvml

                pynvml.nvmlInit()
                index = device.index if device.index is not None else torch.cuda.current_device()
                self._nvml = pynvml
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                self._energy_mj = float(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
            except Exception:
                self._handle = None

    def utilization(self) -> float | None:
        try:
            if self._handle is not None:
                return self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu / 100.0
            if self._proc is not None:
                # busy share of the cores this rank computes on (its torch threads; a Ray CPU
                # worker gets one), not of the whole machine that other ranks share
                cores = max(1, min(torch.get_num_threads(), os.cpu_count() or 1))
                return min(max(self._proc.cpu_percent(None) / 100.0 / cores, 0.0), 1.0)
        except Exception:
            pass
        return None

    def memory_gib(self) -> float | None:
        try:
            if self.device.type == "cuda":
                return torch.cuda.max_memory_reserved(self.device) / GIB
            if self._proc is not None:
                return self._proc.memory_info().rss / GIB
        except Exception:
            pass
        return None

    def energy_j(self) -> float | None:
        """Joules since the last call (NVML's energy counter), None where it cannot be read."""
        if self._handle is None or self._energy_mj is None:
            return None
        try:
            now = float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception:
            return None
        used, self._energy_mj = (now - self._energy_mj) / 1000.0, now
        return max(used, 0.0)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return "cpu"


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def load_rows(spec: Spec, tokenizer: Any, notes: list[str],
              max_prompt: int) -> tuple[list[dict], list[dict]]:
    """(train rows, val rows), each ``{"id", "prompt", "answer", ...}``, prompts fitting
    max_prompt tokens."""
    domain = spec.get("run.domain", "math")
    train_path, val_path = spec.get("data.train"), spec.get("data.val")
    if train_path and val_path:
        from preflight.data.readers import read_split

        fields = spec.get("data.fields") or {}
        tables = [read_split(p, name, fields, domain).table.to_pylist()
                  for p, name in ((train_path, "train"), (val_path, "val"))]
        train_rows, val_rows = ([r for r in t if r.get("prompt")] for t in tables)
        for i, r in enumerate(train_rows + val_rows):
            r.setdefault("id", None)
            if r["id"] is None:
                r["id"] = f"row-{i}"
    else:
        from preflight.arithmetic import DIFFICULTY_WEIGHTS, generate
        from preflight.data.split import split_rows

        seed = int(spec.get("training.seed", 0))
        levels = list(spec.get("training.task_difficulty") or DIFFICULTY_WEIGHTS)
        wanted = int(spec.get("training.task_rows", DEMO_ROWS) or DEMO_ROWS)
        share = sum(DIFFICULTY_WEIGHTS[d] for d in set(levels))
        # generate enough rows that about `wanted` remain after keeping only these levels
        n = math.ceil(wanted / share) if share < 1 else wanted
        rows = [r for r in generate(n, seed=seed, with_expression=True) if r["difficulty"] in levels]
        shortened = _fit_prompts(rows, tokenizer, max_prompt)
        # split after the prompts are final: the splitter keeps equal prompts in one part, so a
        # problem shown as '(16 + 2) =' in val never also appears, under another story, in train
        tr, va, te = split_rows(rows, seed=seed)
        train_rows, val_rows = [rows[i] for i in tr], [rows[i] for i in va]
        kept = ("" if share >= 1 else
                f" (training.task_difficulty: only {'/'.join(sorted(set(levels)))} rows of {n})")
        notes.append(f"data: built-in arithmetic task, {len(rows)} generated rows{kept} split "
                     f"{len(train_rows)}/{len(val_rows)}/{len(te)} (train/val/test)")
        if shortened:
            notes.append(f"data: {shortened} story prompts longer than max_prompt_tokens={max_prompt} "
                         "were replaced by their arithmetic expression ('(48 - 17) * 3 =')")
        return train_rows, val_rows
    too_long = sum(n > max_prompt for n in _prompt_lens(tokenizer, [r["prompt"] for r in train_rows + val_rows]))
    if too_long:  # encode_prompts cuts them from the left
        notes.append(f"data: {too_long} prompts longer than max_prompt_tokens={max_prompt} are "
                     "truncated from the left")
    return train_rows, val_rows


def _fit_prompts(rows: list[dict], tokenizer: Any, max_prompt: int) -> int:
    """Replace each built-in story prompt that does not fit max_prompt tokens by its arithmetic
    expression ('(48 - 17) * 3 ='), the same problem for a small context; returns how many.
    (An expression that still does not fit is cut from the left by encode_prompts.)"""
    lengths = _prompt_lens(tokenizer, [r["prompt"] for r in rows])
    long = [r for r, n in zip(rows, lengths, strict=True) if n > max_prompt]
    for r in long:
        r["prompt"] = f"{r['expression']} ="
    return len(long)


def _prompt_lens(tokenizer: Any, texts: list[str]) -> list[int]:
    """Token counts, in one batched tokenizer call (a call per text costs ~0.2 ms each)."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts)["input_ids"]]


def encode_prompts(tokenizer: Any, prompts: list[str], max_prompt: int,
                   device: torch.device) -> dict[str, Tensor]:
    """Left-padded (and, if needed, left-truncated) prompt ids and attention mask."""
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, truncation=True,
                        max_length=max_prompt)
    finally:
        tokenizer.truncation_side = side
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


# ---------------------------------------------------------------------------------------------
# Rollouts and log-probabilities
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def generate(model: nn.Module, tokenizer: Any, prompt: dict[str, Tensor], *, max_new_tokens: int,
             temperature: float | None, repeat: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Sample (temperature) or greedily decode (temperature None) ``repeat`` completions per prompt.

    Returns (sequences [B, P + T], completion mask [B, T] (1.0 up to and including the first EOS),
    truncated [B] (hit max_new_tokens without EOS)); B = prompts x repeat, rows of one prompt
    contiguous. Under FSDP every rank runs the same number of forward passes (synced_gpus).
    """
    ids = prompt["input_ids"].repeat_interleave(repeat, dim=0)
    attn = prompt["attention_mask"].repeat_interleave(repeat, dim=0)
    sampling = temperature is not None and temperature > 0
    out = model.generate(
        input_ids=ids, attention_mask=attn, max_new_tokens=max_new_tokens, min_new_tokens=1,
        do_sample=sampling, temperature=temperature if sampling else None, top_k=0 if sampling else None,
        top_p=1.0 if sampling else None, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, synced_gpus=_distributed(),
    )
    completion = out[:, ids.shape[1]:]
    # pad to max_new_tokens so every rank has the same shapes
    if completion.shape[1] < max_new_tokens:
        fill = completion.new_full((completion.shape[0], max_new_tokens - completion.shape[1]),
                                   tokenizer.pad_token_id)
        completion = torch.cat([completion, fill], dim=1)
    is_eos = completion == tokenizer.eos_token_id
    # mask: positions up to and including the first EOS
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    mask = (~after_eos).float()
    truncated = ~is_eos.any(dim=1)
    return torch.cat([ids, completion], dim=1), mask, truncated


def sequence_logprobs(model: nn.Module, seqs: Tensor, attn: Tensor, n_completion: int,
                      with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """log pi(token) for the last ``n_completion`` tokens of ``seqs`` [B, T] (float32), and
    optionally the per-token entropy of the policy there."""
    position_ids = (attn.long().cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=seqs, attention_mask=attn, position_ids=position_ids,
                   logits_to_keep=n_completion + 1).logits[:, :-1]
    logp = token_logprobs(logits, seqs[:, -n_completion:])
    entropy = None
    if with_entropy:
        with torch.no_grad():  # a statistic, never part of the loss's graph
            lp = torch.log_softmax(logits.detach().float(), dim=-1)
            entropy = -(lp.exp() * lp).sum(dim=-1)
    return logp, entropy


def loss_config(spec: Spec) -> LossConfig:
    """The spec's policy-loss settings (algorithm.* and the clip range)."""
    cfg = spec.get
    return LossConfig(
        loss=str(cfg("algorithm.loss")), aggregation=str(cfg("algorithm.loss_aggregation")),
        eps_low=float(cfg("training.clip_low")), eps_high=float(cfg("training.clip_high")),
        kl_beta=float(cfg("algorithm.kl_beta")), std_normalize=bool(cfg("algorithm.advantage_std_normalize")),
        batch_norm=bool(cfg("algorithm.batch_advantage_norm")))


def score_groups(spec: Spec, loss_cfg: LossConfig, raw: Tensor, lengths: Tensor, group: int,
                 max_new: int) -> tuple[Tensor, Tensor]:
    """From raw rewards [B] and completion lengths [B]: (advantages [B], kept groups [P]).

    The spec's overlong shaping (DAPO) first, then the zero-variance filter (a kept mask of all
    True when it is off), then the group (and optionally batch) normalization."""
    shaped = raw
    if spec.get("algorithm.overlong_shaping"):
        buffer = min(int(spec.get("algorithm.overlong_buffer_tokens")), max_new)
        shaped = raw + overlong_shaping(lengths, max_new, buffer,
                                        float(spec.get("algorithm.overlong_penalty_factor")))
    rewards = shaped.view(-1, group)
    filtering = bool(spec.get("algorithm.zero_variance_filter")) or bool(spec.get("algorithm.dynamic_sampling"))
    keep = (zero_variance_mask(rewards) if filtering
            else torch.ones(rewards.shape[0], dtype=torch.bool, device=raw.device))
    return compute_advantages(loss_cfg, rewards, keep if filtering else None).reshape(-1), keep


@dataclass(frozen=True)
class Rollout:
    """One batch of sampled completions, scored: what a policy update needs."""

    seqs: Tensor  # [B, P + T] prompt + completion ids
    attn: Tensor  # [B, P + T]
    n_new: int  # T
    adv: Tensor  # [B] advantages
    loss_mask: Tensor  # [B, T] completion tokens that count (filtered groups are 0)
    group: int
    ref_logp: Tensor | None  # the frozen reference's log-probs, for the KL term


def policy_backward(model: nn.Module, optimizer: torch.optim.Optimizer, loss_cfg: LossConfig,
                    rollout: Rollout, old_logp: Tensor | None, grad_clip: float
                    ) -> tuple[Tensor, dict[str, float], Tensor, Tensor, Tensor | None]:
    """The policy loss on a rollout, backward, and gradient clipping (the caller steps).

    Returns (loss, stats, grad norm, old_logp, per-token entropy or None). With old_logp None (the
    first update on a rollout) the policy is still the one that sampled, so its own log-probs,
    detached, are old_logp: no separate forward pass is needed, and the entropy comes along.
    """
    first = old_logp is None
    logp, entropy = sequence_logprobs(model, rollout.seqs, rollout.attn, rollout.n_new, with_entropy=first)
    if old_logp is None:
        old_logp = logp.detach()
    loss, stats = policy_loss(loss_cfg, logp, old_logp, rollout.adv, rollout.loss_mask, rollout.group,
                              rollout.ref_logp)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    gn = gn.full_tensor() if hasattr(gn, "full_tensor") else gn
    return loss, stats, gn, old_logp, entropy


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------


def train(spec: Spec, run_dir: Path, *, rank: int = 0, world_size: int = 1,
          forced_reason: str | None = None, max_steps: int | None = None,
          warm_start_steps: int | None = None, warm_start_lr: float | None = None,
          val_limit: int | None = None,
          policy: tuple[nn.Module, Any] | None = None, sinks: list[Any] | None = None) -> dict[str, Any]:
    """Train the spec's policy with RL; returns a summary (steps, validation pass rates, ...).

    rank / world_size: this worker's place; when torch.distributed is initialized they are taken
    from it. max_steps overrides training.max_steps. warm_start_steps / warm_start_lr override
    training.warm_start_steps / training.warm_start_lr: steps > 0 run a supervised warm start
    (prompt + " " + answer, at that lr) before RL. policy: a (model, tokenizer) pair to
    train instead of loading model.name_or_path (tests, the algo.smoke check). sinks: extra metric
    sinks instead of monitoring.sinks.
    """
    t_start = time.time()
    run_dir = Path(run_dir)
    if _distributed():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    cfg = spec.get
    steps_total = int(max_steps if max_steps is not None else cfg("training.max_steps"))
    batch_size, group = int(cfg("training.batch_size")), int(cfg("training.group_size"))
    if batch_size % (world_size * group):
        raise ValueError(f"training.batch_size {batch_size} must split into groups of {group} "
                         f"on each of {world_size} ranks")
    prompts_per_rank = batch_size // world_size // group
    max_prompt, max_new = int(cfg("training.max_prompt_tokens")), int(cfg("training.max_response_tokens"))
    temperature = float(cfg("training.temperature"))
    eval_interval = max(int(cfg("training.eval_interval")), 1)
    if warm_start_steps is None:
        warm_start_steps = int(cfg("training.warm_start_steps", 0) or 0)
    if warm_start_lr is None:
        warm_start_lr = float(cfg("training.warm_start_lr", 1e-3))
    notes: list[str] = []

    # --- 1. setup: seed, device, policy, FSDP2, optimizer -------------------------------------
    seed = int(cfg("training.seed", 0))
    random.seed(seed + rank)
    torch.manual_seed(seed + rank)  # different samples per rank; weights come from the model's seed
    wants_gpu = spec.uses_gpus
    if wants_gpu and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count()))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        if wants_gpu:
            notes.append("hardware: the spec wants GPUs but none is visible; running on cpu")
    backend = device.type

    model, tokenizer = policy if policy is not None else load_policy(cfg("model.name_or_path"))
    is_tiny = policy is None and str(cfg("model.name_or_path")) == TINY
    model.to(device)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id

    fp32_head = bool(cfg("algorithm.fp32_lm_head"))
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is getattr(model.get_input_embeddings(), "weight", None)
    if fp32_head and isinstance(head, nn.Linear):
        model.set_output_embeddings(FP32LMHead(head))
        if device.type == "cpu":
            notes.append("fp32_lm_head: logits are fp32 anyway on cpu (the model runs in fp32)")
    elif fp32_head:
        notes.append(f"fp32_lm_head: the output layer is a {type(head).__name__}, not a Linear; not applied")

    kl_beta = float(cfg("algorithm.kl_beta"))
    reference = copy.deepcopy(model).eval().requires_grad_(False) if kl_beta > 0 else None

    compression = str(cfg("distributed.gradient_compression"))
    if _distributed():
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(backend, (world_size,))
        if device.type == "cuda":
            reduce = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(compression, torch.float32)
            mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=reduce)
        else:
            mp = MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32)
            notes.append("fsdp2: mixed precision is fp32 on cpu (bf16 params apply on GPU only)")
            if compression != "none":
                notes.append(f"gradient_compression={compression}: not applied on cpu/gloo; "
                             "gradients are reduced in fp32")
        notes.append(f"bucket_size_mb={cfg('distributed.bucket_size_mb')}: not applicable to FSDP2 "
                     "(it all-gathers and reduce-scatters per fully_shard unit, no DDP buckets)")
        layers = getattr(getattr(model, "model", None), "layers", None) or []
        for layer in layers:
            fully_shard(layer, mesh=mesh, mp_policy=mp)
        if fp32_head and isinstance(model.get_output_embeddings(), FP32LMHead) and not tied:
            # its own unit with fp32 params, so the head really is fp32 even under bf16 training
            fully_shard(model.get_output_embeddings(), mesh=mesh,
                        mp_policy=MixedPrecisionPolicy(param_dtype=torch.float32,
                                                       reduce_dtype=torch.float32))
        fully_shard(model, mesh=mesh, mp_policy=mp)
        notes.append(f"fsdp2: fully_shard on a {backend} mesh of {world_size} "
                     f"({len(layers)} decoder layers, then the root), backend {dist.get_backend()}")
    elif world_size > 1:
        notes.append(f"world_size={world_size} requested but torch.distributed is not initialized; "
                     "training this process alone")
    if reference is not None:
        reference.to(device)
        notes.append("kl: the frozen reference policy is a full copy on every rank (not sharded)")

    lr = float(cfg("training.learning_rate"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    loss_cfg = loss_config(spec)
    reward_fn: Callable[..., list[float]] = reward_for(spec)
    if cfg("algorithm.dynamic_sampling"):
        notes.append("dynamic_sampling: zero-variance groups are dropped from the batch, not redrawn")
    tracker = (PassRateTracker(float(cfg("algorithm.positive_resampling_threshold")))
               if cfg("algorithm.no_positive_resampling") else None)
    if cfg("algorithm.overlong_shaping") and max_new < int(cfg("algorithm.overlong_buffer_tokens")):
        notes.append(f"overlong_shaping: buffer cut to max_response_tokens={max_new}")
    grad_clip = float(cfg("training.grad_clip"))
    updates_per_batch = max(int(cfg("algorithm.updates_per_batch", 1) or 1), 1)

    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if positions and max_prompt + max_new > positions:
        max_prompt = max(positions - max_new, 1)
        notes.append(f"max_prompt_tokens: cut to {max_prompt} so prompt + response fit the model's "
                     f"{positions} positions")

    # --- 2. data ---------------------------------------------------------------------------------
    train_rows, val_rows = load_rows(spec, tokenizer, notes, max_prompt)
    if val_limit is None:
        val_limit = int(cfg("training.val_prompts", 256) or 0) or len(val_rows)
    val_rows = val_rows[:val_limit]
    shard = train_rows[rank::world_size]  # each rank its own prompts
    rng = random.Random(seed + rank)
    order: list[int] = []

    def next_prompts(n: int) -> list[dict]:
        picked: list[dict] = []
        skipped = 0
        while len(picked) < n:
            if not order:
                order.extend(rng.sample(range(len(shard)), len(shard)))
            row = shard[order.pop()]
            if tracker is not None and tracker.should_drop(row["id"]) and skipped < 10 * len(shard):
                skipped += 1
                continue
            picked.append(row)
        return picked

    if is_tiny and warm_start_steps <= 0:
        notes.append("warm start: none; the random tiny model starts RL from a pass rate near 0")

    # --- 3. events -------------------------------------------------------------------------------
    extra_sinks, warnings = (sinks, []) if sinks is not None else (
        make_sinks(cfg("monitoring.sinks") or [], run_dir, cfg("monitoring.wandb")) if rank == 0 else ([], []))
    # attempt: 0 on a fresh run dir; every start on a run dir that already has a run_start, and every
    # rollback, is a recovery and a new attempt; step events carry it, so replayed steps are told apart
    attempt, previous_end = _previous_attempts(run_dir) if rank == 0 else (0, None)
    events = EventWriter(run_dir, rank=rank, sinks=extra_sinks)
    config = {
        "algorithm": cfg("algorithm"), "training": {**cfg("training"), "max_steps": steps_total},
        "model": cfg("model.name_or_path"), "loss": vars(loss_cfg).copy(),
        "prompts_per_rank": prompts_per_rank, "warm_start_steps": warm_start_steps,
        "train_rows": len(train_rows), "val_rows": len(val_rows), "optimizer": "AdamW(weight_decay=0)",
        # what the runner may do on its own during the run (runner.controllers, runner.checkpoint)
        **{k: cfg(k) for k in ("checkpoints", "stability", "early_stopping", "dynamic_batch")},
        "checkpoint_dir": str(spec.checkpoint_dir),
    }
    start: dict[str, Any] = dict(run=spec.name, spec_sha256=spec.sha256, world_size=world_size,
                                 backend=dist.get_backend() if _distributed() else "none",
                                 device=_device_name(device), config=config,
                                 notes=notes, warnings=warnings, spec_path=str(spec.path.resolve()))
    if forced_reason is not None:
        start.update(forced=True, reason=forced_reason)
    events.emit("run_start", **start)
    meter = DeviceMeter(device)

    hours_before = 0.0  # device hours of the attempts before this one (from the checkpoint)

    def device_hours() -> float:
        return hours_before + (time.time() - t_start) / 3600.0 * world_size

    # --- validation: greedy decode on this rank's share of the val split ----------------------
    def validate(step: int) -> float:
        rate, n = pass_rate_on_val()
        events.emit("validation", step=step, pass_rate=rate, n=n, device_hours=device_hours())
        return rate

    def pass_rate_on_val() -> tuple[float, int]:
        model.eval()
        mine = val_rows[rank::world_size]
        chunk = max(prompts_per_rank * group, 1)
        # every rank makes the same number of generate calls (FSDP forwards are collectives)
        calls = math.ceil(math.ceil(len(val_rows) / world_size) / chunk)
        correct = 0.0
        for c in range(calls):
            rows = mine[c * chunk:(c + 1) * chunk] or val_rows[:1]  # a dummy batch keeps step
            enc = encode_prompts(tokenizer, [r["prompt"] for r in rows], max_prompt, device)
            seqs, _, _ = generate(model, tokenizer, enc, max_new_tokens=max_new, temperature=None)
            texts = tokenizer.batch_decode(seqs[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            if mine[c * chunk:(c + 1) * chunk]:
                correct += sum(reward_fn([r["prompt"] for r in rows], texts, rows))
        correct, n = _sum_across([correct, float(len(mine))], device)
        return (correct / n if n else float("nan")), int(n)

    # --- checkpoints and the automatic controllers (REFERENCE.md sections 4-6) --------------------
    base_lr = lr  # the learning rate before stability rollbacks lower it (batch changes may scale it)
    ckpt_metric = MetricWindow(str(cfg("checkpoints.metric")))
    store = CheckpointStore(spec.checkpoint_dir, save_best_only=bool(cfg("checkpoints.save_best_only")),
                            keep_last=int(cfg("checkpoints.keep_last")), mode=ckpt_metric.mode)
    save_interval = max(int(cfg("checkpoints.save_interval")), 1)
    ckpt_value: tuple[float | None, int | None] = (None, None)  # (value, step of its evaluation)
    guard = StabilityGuard(
        nonfinite_limit=int(cfg("stability.nonfinite_limit")), lr_factor=float(cfg("stability.lr_factor")),
        spike_threshold=float(cfg("stability.spike_threshold")), window=int(cfg("stability.spike_window")),
        spike_action=str(cfg("stability.spike_action")))
    max_rollbacks = int(cfg("stability.max_rollbacks"))
    stop_metric = MetricWindow(str(cfg("early_stopping.metric")))
    stopper = EarlyStopping(patience=int(cfg("early_stopping.patience")),
                            min_delta=float(cfg("early_stopping.min_delta")),
                            mode=str(cfg("early_stopping.mode"))) \
        if cfg("early_stopping.enabled") and stop_metric.known else None
    if cfg("early_stopping.enabled") and not stop_metric.known:
        notes.append(f"early_stopping.metric {stop_metric.name!r} is not computed by this runner; "
                     "early stopping is off")
    batcher = DynamicBatch(batch_size, unit=world_size * group,
                           maximum=int(cfg("dynamic_batch.max_batch_size")),
                           target=float(cfg("dynamic_batch.target_efficiency")),
                           factor=float(cfg("dynamic_batch.factor")),
                           every_steps=int(cfg("dynamic_batch.every_steps"))) \
        if cfg("dynamic_batch.enabled") else None
    throughput = ThroughputEfficiency()
    val_rates: dict[int, float] = {}

    def trainer_state(at: int) -> dict[str, Any]:
        """What every rank shares, for the checkpoint (JSON)."""
        return {"step": at, "attempt": attempt, "base_lr": base_lr, "batch_size": batch_size,
                "val_rates": {str(k): v for k, v in val_rates.items()}, "device_hours": device_hours(),
                "ckpt_value": list(ckpt_value), "guard": guard.state_dict(),
                "early_stopping": stopper.state_dict() if stopper else None,
                "dynamic_batch": batcher.state_dict() if batcher else None,
                "throughput": throughput.state_dict(), "ckpt_metric": ckpt_metric.state_dict(),
                "stop_metric": stop_metric.state_dict(), "world_size": world_size}

    def save(at: int) -> bool:
        """Checkpoint at step ``at``; False (with an error event) when it could not be written."""
        events.flush()  # the event log covers every step the checkpoint does: a resume leaves no gap

        def committed(done: Committed, seconds: float) -> None:
            # rank 0, right after the rename: the event is on disk before the ranks meet again
            deleted = store.prune()
            events.emit("checkpoint", step=at, path=str(done.path), bytes=done.bytes,
                        seconds=seconds, metric=ckpt_value[0], metric_name=ckpt_metric.name,
                        metric_step=ckpt_value[1], deleted=[str(p) for p in deleted])
            events.flush()

        outcome = save_training_state(
            store, at, model=model, optimizer=optimizer, rank=rank, device=device,
            rank_state=_rank_state(rng, order, tracker, device), trainer_state=trainer_state(at),
            metric=ckpt_value[0], metric_name=ckpt_metric.name, on_commit=committed)
        if not outcome.ok and outcome.error is not None:
            err = outcome.error
            fix = ("free space there or point storage.checkpoint_dir at a larger disk"
                   if disk_full(err) else "fix the cause")
            events.emit("error", step=at, exception=type(err).__name__,
                        message=f"checkpoint at step {at} not written to {store.root}: {err}. "
                                f"Earlier checkpoints are intact; {fix}, then start the runner again "
                                "to resume from the latest one")
        return outcome.ok

    def restore(target: Committed) -> int:
        """Load a checkpoint into this process (model, optimizer, RNG, data position,
        controllers); returns its step."""
        nonlocal base_lr, batch_size, prompts_per_rank, hours_before, ckpt_value
        state, mine = load_training_state(target.path, model=model, optimizer=optimizer, rank=rank)
        if mine is not None:
            _restore_rank_state(mine, rng, order, tracker)
        else:
            notes.append(f"resume: {target.path} has no state for rank {rank} (written by a world of "
                         f"{state.get('world_size')}); this rank's sampling streams start afresh")
        base_lr, batch_size = float(state["base_lr"]), int(state["batch_size"])
        prompts_per_rank = batch_size // world_size // group
        hours_before = float(state["device_hours"])
        val_rates.clear()
        val_rates.update({int(k): v for k, v in state["val_rates"].items()})
        ckpt_value = (state["ckpt_value"][0], state["ckpt_value"][1])
        guard.load_state_dict(state["guard"])
        if stopper and state.get("early_stopping"):
            stopper.load_state_dict(state["early_stopping"])
        if batcher and state.get("dynamic_batch"):
            batcher.load_state_dict(state["dynamic_batch"])
        throughput.load_state_dict(state["throughput"])
        ckpt_metric.load_state_dict(state["ckpt_metric"])
        stop_metric.load_state_dict(state["stop_metric"])
        for g in optimizer.param_groups:
            g["lr"] = base_lr * guard.lr_scale
        return int(state["step"])

    # --- resume: a run dir with a valid checkpoint continues from the latest one ----------------
    resumed: Committed | None = None
    start_step = 0
    if cfg("distributed.checkpoint_recovery"):
        resumed, rejected = choose_checkpoint(store, rank)
        if resumed is not None:
            try:
                start_step = restore(resumed)
            except CAUGHT as exc:
                raise CheckpointError(
                    f"{resumed.path}: verified, but it does not load into this run ({type(exc).__name__}: "
                    f"{exc}); it was written for another model or optimizer. Point "
                    "storage.checkpoint_dir at a new folder, or set distributed.checkpoint_recovery: "
                    "false to start afresh") from exc
            warm_start_steps = 0  # the checkpoint already holds its effect
        if resumed is not None or attempt > 0 or rejected:
            why = (f"the previous attempt {previous_end}" if attempt > 0 else
                   "checkpoints found in storage.checkpoint_dir")
            attempt = max(attempt, 1)
            what = (f"resumed from step {start_step}" if resumed is not None else
                    "no valid checkpoint; restarted from step 0")
            skipped_note = (f"; {len(rejected)} newer checkpoint(s) failed verification and were "
                            "skipped" if rejected else "")
            events.emit("recovery", step=start_step, attempt=attempt,
                        from_checkpoint=str(resumed.path) if resumed else None,
                        reason=f"{what}: {why}{skipped_note}",
                        rejected=[{"path": path, "problem": problem} for path, problem in rejected],
                        lr=optimizer.param_groups[0]["lr"])
            events.flush()

    # --- 4. optional supervised warm start ------------------------------------------------------
    if warm_start_steps > 0:
        events.emit("phase", name="warm_start", step=0, steps=warm_start_steps, lr=warm_start_lr)
        sft = torch.optim.AdamW(model.parameters(), lr=warm_start_lr, weight_decay=0.0)
        # a linear warmup: at warm_start_lr from the first step, Adam's early, noisy second-moment
        # estimates throw a random model about (the pass rate after the same steps is far lower)
        warmup = max(1, min(WARM_START_WARMUP, warm_start_steps // 10))
        ramp = torch.optim.lr_scheduler.LambdaLR(sft, lambda i: min(1.0, (i + 1) / warmup))
        eos = tokenizer.eos_token
        target = cfg("training.warm_start_target")
        done, reached = warm_start_steps, None
        for ws_step in range(1, warm_start_steps + 1):
            model.train()
            rows = next_prompts(prompts_per_rank * group)
            enc = encode_prompts(tokenizer, [r["prompt"] for r in rows], max_prompt, device)
            tgt = tokenizer([f" {r['answer']}{eos}" for r in rows], add_special_tokens=False,
                            return_tensors="pt", padding=True)
            tgt_ids = tgt["input_ids"].to(device)
            # right-pad the target after the left-padded prompt
            tgt_mask = tgt["attention_mask"].to(device).flip(1) if tokenizer.padding_side == "left" \
                else tgt["attention_mask"].to(device)
            if tokenizer.padding_side == "left":
                tgt_ids = _left_to_right(tgt_ids, tgt["attention_mask"].to(device), tokenizer.pad_token_id)
            seqs = torch.cat([enc["input_ids"], tgt_ids], dim=1)
            attn = torch.cat([enc["attention_mask"], tgt_mask], dim=1)
            logp, _ = sequence_logprobs(model, seqs, attn, tgt_ids.shape[1])
            loss = -(logp * tgt_mask).sum() / tgt_mask.sum().clamp(min=1)
            sft.zero_grad(set_to_none=True)
            loss.backward()
            gn = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            if finite(loss.detach(), gn):
                sft.step()
            ramp.step()
            # a pass-rate target gives RL the same starting point on any machine and world size:
            # the warm start's curve is steep (a few dozen steps apart can mean 15 % or 45 %)
            if target is not None and ws_step % WARM_START_CHECK == 0:
                rate, _ = pass_rate_on_val()
                if rate >= float(target):
                    done, reached = ws_step, rate
                    break
        del sft, ramp
        events.emit("phase", name="rl", step=0, warm_start_steps_done=done,
                    **({} if target is None else {"warm_start_target": float(target),
                                                   "target_reached": reached is not None}))

    # --- 5. RL -----------------------------------------------------------------------------------
    losses: list[float] = []
    skipped_steps = 0
    status, end_reason = "completed", None
    if stopper is not None and stopper.stopped and start_step < steps_total:
        # resumed from the checkpoint an early stop wrote: the stop stands
        status, end_reason = "stopped", f"early stopping had stopped this run (best step {stopper.best_step})"
    if resumed is None:
        val_rates[0] = validate(0)
        ckpt_value = (ckpt_metric.at_eval(val_rates[0]), 0)
        stop_metric.at_eval(val_rates[0])  # the step-0 value is a reference, never a stop candidate
        # the checkpoint every rollback can reach: the policy RL starts from
        if not save(0):
            status, end_reason = "failed", "the step-0 checkpoint could not be written"
    step = start_step
    while step < steps_total and status == "completed":
        step += 1
        t0 = time.time()
        model.eval()
        rows = next_prompts(prompts_per_rank)
        prompts = [r["prompt"] for r in rows]
        enc = encode_prompts(tokenizer, prompts, max_prompt, device)
        data_s = time.time() - t0  # picking and tokenizing the prompts: the data pipeline's share
        seqs, mask, truncated = generate(model, tokenizer, enc, max_new_tokens=max_new,
                                         temperature=temperature, repeat=group)
        n_new = mask.shape[1]
        texts = tokenizer.batch_decode(seqs[:, -n_new:], skip_special_tokens=True)
        group_rows = [r for r in rows for _ in range(group)]
        raw = torch.tensor(reward_fn([r["prompt"] for r in group_rows], texts, group_rows),
                           dtype=torch.float32, device=device)
        lengths = mask.sum(dim=1)
        if tracker is not None:
            for r, g in zip(rows, raw.view(len(rows), group), strict=True):
                tracker.update(r["id"], g)
        adv, keep = score_groups(spec, loss_cfg, raw, lengths, group, max_new)
        kept_world = _sum_across([float(keep.sum())], device)[0]
        loss_mask = mask * keep.repeat_interleave(group).unsqueeze(1).float()
        attn = torch.cat([enc["attention_mask"].repeat_interleave(group, dim=0), mask.long()], dim=1)

        stats: dict[str, float] = {"clip_frac_low": 0.0, "clip_frac_high": 0.0}
        rollback_cause: str | None = None
        loss_value, grad_norm, entropy = float("nan"), float("nan"), float("nan")
        skip: str | None = None
        if kept_world == 0:
            skip = "every group had equal rewards (zero variance); no update"
        else:
            with torch.no_grad():
                ref_logp = (sequence_logprobs(reference, seqs, attn, n_new)[0]
                            if reference is not None else None)
            model.train()
            rollout = Rollout(seqs, attn, n_new, adv, loss_mask, group, ref_logp)
            loss, stats, gn, old_logp, ent = policy_backward(model, optimizer, loss_cfg, rollout, None, grad_clip)
            assert ent is not None
            entropy = float((ent * mask).sum() / mask.sum().clamp(min=1))
            loss_value, grad_norm = float(loss.detach()), float(gn)
            # the guard must decide alike on every rank: it sees the world's mean loss (NaN when any
            # rank's is) and the global gradient norm
            verdict = guard.check(_mean_across({"loss": loss_value}, device)["loss"], grad_norm)
            if verdict.alert:
                events.emit("alert", step=step, rule="loss_spike", message=verdict.cause,
                            severity="critical" if verdict.rollback else "warn",
                            action=("update skipped; rolling back to the last good checkpoint with "
                                    f"the learning rate x{guard.lr_factor:g}") if verdict.rollback else
                                   ("update applied; check the data and the learning rate, or set "
                                    "stability.spike_action: rollback"))
            if verdict.skip:
                skip = verdict.cause
                optimizer.zero_grad(set_to_none=True)
                events.emit("action", step=step, kind="skip_step",
                            cause=f"{verdict.cause}; optimizer step skipped")
            else:
                optimizer.step()
                # GRPO's mu > 1: more updates on the same rollouts, now off-policy, so the clipped
                # ratio against old_logp bounds how far they move the policy
                for _ in range(updates_per_batch - 1):
                    loss, stats, extra, _, _ = policy_backward(model, optimizer, loss_cfg, rollout,
                                                               old_logp, grad_clip)
                    if _sum_across([0.0 if finite(loss.detach(), extra) else 1.0], device)[0]:
                        optimizer.zero_grad(set_to_none=True)
                        break  # a non-finite extra update is dropped; the first one stands
                    optimizer.step()
            rollback_cause = verdict.cause if verdict.rollback else None
        if skip is not None:
            skipped_steps += 1
        dt = max(time.time() - t0, 1e-9)
        trained_tokens = float(loss_mask.sum()) if kept_world else 0.0
        utilization = meter.utilization()
        metrics = _mean_across({
            "loss": loss_value, "pass_rate": float(raw.mean()), "gen_len_mean": float(lengths.mean()),
            "truncation_rate": float(truncated.float().mean()), "grad_norm": grad_norm,
            "clip_frac_low": stats["clip_frac_low"], "clip_frac_high": stats["clip_frac_high"],
            "entropy": entropy, "tokens_per_s": (float(lengths.sum()) + trained_tokens) / dt,
            "utilization": float("nan") if utilization is None else utilization,
            "memory_gib": meter.memory_gib() or 0.0,
            "kept_groups": float(keep.float().mean()), "data_wait_frac": min(data_s / dt, 1.0),
        }, device)
        metrics["tokens_per_s"] *= world_size  # the world's throughput
        energy = meter.energy_j()
        if energy is not None:
            energy = _sum_across([energy], device)[0]
        fields: dict[str, Any] = dict(
            step=step, **{k: v for k, v in metrics.items() if k != "kept_groups"},
            utilization_source=meter.source, lr=optimizer.param_groups[0]["lr"],
            batch_size=prompts_per_rank * world_size, energy_j=energy, device_hours=device_hours(),
            kept_groups_frac=metrics["kept_groups"], attempt=attempt)
        if skip is not None:
            fields["skipped"] = skip
        events.emit("step", **fields)
        losses.append(loss_value)
        ckpt_metric.add_step(fields)
        stop_metric.add_step(fields)

        # --- stability: repeated non-finite steps or a spike roll back to the last good checkpoint
        if rollback_cause is not None:
            if guard.rollbacks >= max_rollbacks:
                status, end_reason = "failed", (f"{rollback_cause}; stability.max_rollbacks="
                                                f"{max_rollbacks} rollbacks already made")
                events.emit("action", step=step, kind="stop", cause=end_reason)
                break
            target, rejected = choose_checkpoint(store, rank)
            if target is None:
                status, end_reason = "failed", f"{rollback_cause}; no valid checkpoint to roll back to"
                events.emit("action", step=step, kind="stop", cause=end_reason)
                break
            carried = guard.carry()
            step = restore(target)
            guard.lr_scale, guard.rollbacks = carried["lr_scale"], carried["rollbacks"]
            guard.rolled_back()
            for g in optimizer.param_groups:
                g["lr"] = base_lr * guard.lr_scale
            attempt += 1
            events.emit("action", step=step, kind="rollback",
                        cause=f"{rollback_cause}; learning rate x{guard.lr_factor:g} -> "
                              f"{optimizer.param_groups[0]['lr']:.3g}")
            events.emit("recovery", step=step, attempt=attempt, from_checkpoint=str(target.path),
                        reason=f"stability rollback {guard.rollbacks}/{max_rollbacks}: {rollback_cause}",
                        rejected=[{"path": path, "problem": problem} for path, problem in rejected],
                        lr=optimizer.param_groups[0]["lr"])
            continue

        # --- validation, the best-checkpoint metric, early stopping --------------------------------
        if step % eval_interval == 0 or step == steps_total:
            val_rates[step] = validate(step)
            ckpt_value = (ckpt_metric.at_eval(val_rates[step]), step)
            value = stop_metric.at_eval(val_rates[step])
            if stopper is not None and value is not None and stopper.update(step, value) \
                    and step < steps_total:
                status = "stopped"
                end_reason = (f"early stopping: {stop_metric.name} did not improve by more than "
                              f"{stopper.min_delta:g} in {stopper.patience} evaluations; best "
                              f"{stopper.best:.4g} at step {stopper.best_step}")
                events.emit("action", step=step, kind="early_stop", cause=end_reason,
                            best_step=stopper.best_step, best=stopper.best)

        # --- dynamic batch size: grow while efficiency is below the target --------------------------
        if batcher is not None:
            source = str(cfg("dynamic_batch.efficiency"))
            efficiency: float | None
            if source == "utilization" or (source == "auto" and meter.source == "gpu"):
                efficiency = metrics["utilization"]
            else:
                efficiency = throughput(metrics["tokens_per_s"])
            new = batcher.observe(efficiency)
            if new is not None:
                old, batch_size = batch_size, new
                prompts_per_rank = batch_size // world_size // group
                base_lr = scaled_lr(base_lr, old, new, str(cfg("dynamic_batch.lr_scaling")))
                for g in optimizer.param_groups:
                    g["lr"] = base_lr * guard.lr_scale
                events.emit("batch_size", step=step, old=old, new=new, unit="completions",
                            efficiency=batcher.last_efficiency, lr=optimizer.param_groups[0]["lr"],
                            reason=f"mean efficiency {batcher.last_efficiency:.3f} over "
                                   f"{batcher.every_steps} steps < target {batcher.target:g}")

        # a periodic save waits out a non-finite streak, so a rollback lands before the trouble
        periodic = step % save_interval == 0 and guard.nonfinite_streak == 0
        if (periodic or step == steps_total or status != "completed") and not save(step):
            status, end_reason = "failed", f"the checkpoint at step {step} could not be written"

    gain = ({"val_pass_rate_start": val_rates[0], "val_pass_rate_final": val_rates[max(val_rates)]}
            if 0 in val_rates else {})  # RL's gain, from the validation right after any warm start
    events.emit("run_end", step=step, status=status, reason=end_reason, **gain)
    events.close()
    if _distributed():
        dist.barrier()  # no rank leaves (and tears down the process group) while others still reduce
    return {
        "status": status, "reason": end_reason, "steps": step, "skipped_steps": skipped_steps,
        "losses": losses, "validation": val_rates, "val_pass_rate_start": val_rates.get(0),
        "val_pass_rate_final": val_rates[max(val_rates)] if val_rates else None,
        "world_size": world_size, "attempt": attempt,
        "resumed_from": str(resumed.path) if resumed is not None else None,
        "device": _device_name(device), "notes": notes, "seconds": time.time() - t_start,
        "events": str(run_dir / EVENTS_FILE),
    }


def _left_to_right(ids: Tensor, attn: Tensor, pad_id: int) -> Tensor:
    """Move left padding to the right: [p p a b] -> [a b p p] per row."""
    out = torch.full_like(ids, pad_id)
    for i in range(ids.shape[0]):
        row = ids[i][attn[i].bool()]
        out[i, :row.numel()] = row
    return out


# ---------------------------------------------------------------------------------------------
# Resume helpers: attempts, and the per-rank state a checkpoint carries
# ---------------------------------------------------------------------------------------------


def _previous_attempts(run_dir: Path) -> tuple[int, str | None]:
    """(attempt number for this start, how the previous attempt ended) from RUN_DIR/events.jsonl:
    0 on a fresh run dir, else 1 + the recoveries recorded so far."""
    import json

    path = run_dir / EVENTS_FILE
    if not path.is_file():
        return 0, None
    starts = recoveries = 0
    last_end: str | None = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if '"run_start"' not in line and '"recovery"' not in line and '"run_end"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue  # half a line from a crash
            kind = event.get("type")
            if kind == "run_start":
                starts, last_end = starts + 1, None
            elif kind == "recovery":
                recoveries += 1
            elif kind == "run_end":
                last_end = f"ended with status {event.get('status')!r} at step {event.get('step')}"
    if starts == 0:
        return 0, None
    return recoveries + 1, last_end or "ended without a run_end (a crashed or killed worker)"


def _rank_state(rng: random.Random, order: list[int], tracker: PassRateTracker | None,
                device: torch.device) -> dict[str, Any]:
    """This rank's random streams and data position: what makes a resumed run repeat exactly."""
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "python_rng": random.getstate(),
        "data_rng": rng.getstate(),
        "order": list(order),
        "tracker": tracker.state_dict() if tracker is not None else None,
    }


def _restore_rank_state(state: dict[str, Any], rng: random.Random, order: list[int],
                        tracker: PassRateTracker | None) -> None:
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"])
    random.setstate(_as_tuples(state["python_rng"]))
    rng.setstate(_as_tuples(state["data_rng"]))
    order[:] = state["order"]
    if tracker is not None and state.get("tracker") is not None:
        tracker.load_state_dict(state["tracker"])


def _as_tuples(value: Any) -> Any:
    """random.setstate wants tuples all the way down; a checkpoint may hand back lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
