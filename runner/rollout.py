"""Rollouts and the policy update on them: sample, score, take log-probabilities, backward.

``generate`` samples G completions per prompt (or decodes greedily), ``generate_in_chunks`` a
bounded number at a time; ``score_groups`` turns their raw rewards into advantages (overlong
shaping, the zero-variance filter, group and batch normalization); ``policy_backward`` computes
the spec's policy loss on a ``Rollout`` and its gradients (the caller decides whether to step),
in one pass or accumulated over micro-batches. The training loop (runner.train) and the basic
algorithm test (runner.smoke) both use these, so the smoke test runs exactly the trained loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from preflight.spec import Spec

from .algo import (
    ADDITIVE_STATS,
    LossConfig,
    aggregation_weights,
    compute_advantages,
    overlong_shaping,
    policy_loss,
    zero_variance_mask,
)
from .parallel import distributed

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# policy_loss's signature: (config, logp, old_logp, advantages, mask, group, ref_logp) -> (loss,
# stats), with weights= as well on a micro-batch; a test hands in a planted one (a NaN, a spike)
LossFn = Callable[..., tuple[Tensor, dict[str, float]]]


def loss_config(spec: Spec) -> LossConfig:
    """The spec's policy-loss settings (algorithm.* and the clip range)."""
    cfg = spec.get
    return LossConfig(
        loss=str(cfg("algorithm.loss")), aggregation=str(cfg("algorithm.loss_aggregation")),
        eps_low=float(cfg("training.clip_low")), eps_high=float(cfg("training.clip_high")),
        kl_beta=float(cfg("algorithm.kl_beta")), std_normalize=bool(cfg("algorithm.advantage_std_normalize")),
        batch_norm=bool(cfg("algorithm.batch_advantage_norm")))


@dataclass(frozen=True)
class RewardShaping:
    """What happens to raw rewards before the advantages: DAPO's overlong shaping (``buffer``
    tokens before the limit, ``penalty`` per token into it) and the zero-variance filter."""

    overlong: bool
    buffer: int
    penalty: float
    filter_zero_variance: bool

    @classmethod
    def from_spec(cls, spec: Spec) -> RewardShaping:
        cfg = spec.get
        overlong = bool(cfg("algorithm.overlong_shaping"))
        return cls(overlong=overlong,
                   buffer=int(cfg("algorithm.overlong_buffer_tokens")) if overlong else 0,
                   penalty=float(cfg("algorithm.overlong_penalty_factor")) if overlong else 0.0,
                   filter_zero_variance=bool(cfg("algorithm.zero_variance_filter"))
                   or bool(cfg("algorithm.dynamic_sampling")))


@torch.no_grad()
def generate(model: Any, tokenizer: PreTrainedTokenizerBase, prompt: dict[str, Tensor], *,
             max_new_tokens: int, temperature: float | None,
             repeat: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """Sample (temperature) or greedily decode (temperature None) ``repeat`` completions per prompt.

    Returns (sequences [B, P + T], completion mask [B, T] (1.0 up to and including the first EOS),
    truncated [B] (hit max_new_tokens without EOS)); B = prompts x repeat, rows of one prompt
    contiguous. Under FSDP every rank runs the same number of forward passes (synced_gpus).
    (``model``: a Hugging Face causal LM, also the FSDP-wrapped one.)
    """
    ids = prompt["input_ids"].repeat_interleave(repeat, dim=0)
    attn = prompt["attention_mask"].repeat_interleave(repeat, dim=0)
    sampling = temperature is not None and temperature > 0
    out = model.generate(
        input_ids=ids, attention_mask=attn, max_new_tokens=max_new_tokens, min_new_tokens=1,
        do_sample=sampling, temperature=temperature if sampling else None, top_k=0 if sampling else None,
        top_p=1.0 if sampling else None, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, synced_gpus=distributed(),
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


def generate_in_chunks(model: Any, tokenizer: PreTrainedTokenizerBase, prompt: dict[str, Tensor], *,
                       max_new_tokens: int, temperature: float | None, repeat: int,
                       completions: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """``generate``, ``completions`` at a time (training.generation_batch_size: whole groups of
    ``repeat``), which bounds the KV cache in flight; one call when None or when it covers every
    prompt. The prompts keep the batch's padding, so the rows come back as one call makes them."""
    rows = prompt["input_ids"].shape[0]
    per_call = rows if not completions else max(completions // repeat, 1)
    if per_call >= rows:
        return generate(model, tokenizer, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                        repeat=repeat)
    parts = [generate(model, tokenizer, {k: v[i:i + per_call] for k, v in prompt.items()},
                      max_new_tokens=max_new_tokens, temperature=temperature, repeat=repeat)
             for i in range(0, rows, per_call)]
    seqs, masks, truncated = zip(*parts, strict=True)
    return torch.cat(seqs), torch.cat(masks), torch.cat(truncated)


def sequence_logprobs(model: Any, seqs: Tensor, attn: Tensor, n_completion: int,
                      with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """log pi(token) for the last ``n_completion`` tokens of ``seqs`` [B, T] (float32), and
    optionally the per-token entropy of the policy there. (``model``: a causal LM, also the
    FSDP-wrapped one.)"""
    position_ids = (attn.long().cumsum(dim=1) - 1).clamp(min=0)
    # token_logprobs spelled out, so that the logits are let go as soon as their log-softmax exists
    # and the entropy reuses that log-softmax: per response token and vocabulary entry the peak is
    # the log-softmax kept for the backward plus the entropy's two temporaries (preflight's memory
    # estimate counts 12 bytes), not also the logits and a second log-softmax
    lp = torch.log_softmax(model(input_ids=seqs, attention_mask=attn, position_ids=position_ids,
                                 logits_to_keep=n_completion + 1).logits[:, :-1].float(), dim=-1)
    logp = lp.gather(-1, seqs[:, -n_completion:].long().unsqueeze(-1)).squeeze(-1)
    entropy = None
    if with_entropy:
        with torch.no_grad():  # a statistic, never part of the loss's graph
            plain = lp.detach()
            entropy = -(plain.exp() * plain).sum(dim=-1)
    return logp, entropy


def micro_slices(rows: int, micro: int | None) -> list[slice]:
    """The rows of each micro-batch: one slice of all ``rows`` when ``micro`` is None or covers
    them; else runs of ``micro`` rows (the last one shorter when micro does not divide rows, as
    after a dynamic batch resize)."""
    if not micro or micro >= rows:
        return [slice(0, rows)]
    return [slice(i, min(i + micro, rows)) for i in range(0, rows, micro)]


@torch.no_grad()
def reference_logprobs(model: Any, seqs: Tensor, attn: Tensor, n_completion: int,
                       micro: int | None = None) -> Tensor:
    """A frozen model's log-probs of the completions, ``micro`` rows per forward pass (all at
    once when None)."""
    return torch.cat([sequence_logprobs(model, seqs[s], attn[s], n_completion)[0]
                      for s in micro_slices(seqs.shape[0], micro)])


def score_groups(shaping: RewardShaping, loss_cfg: LossConfig, raw: Tensor, lengths: Tensor,
                 group: int, max_new: int) -> tuple[Tensor, Tensor]:
    """From raw rewards [B] and completion lengths [B]: (advantages [B], kept groups [P]).

    The overlong shaping (DAPO) first, then the zero-variance filter (a kept mask of all True when
    it is off), then the group (and optionally batch) normalization."""
    shaped = raw
    if shaping.overlong:
        shaped = raw + overlong_shaping(lengths, max_new, min(shaping.buffer, max_new), shaping.penalty)
    rewards = shaped.view(-1, group)
    filtering = shaping.filter_zero_variance
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


def policy_backward(model: Any, optimizer: torch.optim.Optimizer, loss_cfg: LossConfig,
                    rollout: Rollout, old_logp: Tensor | None, grad_clip: float,
                    loss_fn: LossFn = policy_loss, micro: int | None = None
                    ) -> tuple[Tensor, dict[str, float], Tensor, Tensor, Tensor | None]:
    """The policy loss on a rollout, backward, and gradient clipping (the caller steps).

    Returns (loss, stats, grad norm, old_logp, per-token entropy or None). With old_logp None (the
    first update on a rollout) the policy is still the one that sampled, so its own log-probs,
    detached, are old_logp: no separate forward pass is needed, and the entropy comes along.
    ``micro`` (training.micro_batch_size): forward and backward ``micro`` rows at a time, the
    gradients accumulated (see ``_accumulate``); None, or one covering every row, is one pass.
    """
    if len(micro_slices(rollout.seqs.shape[0], micro)) > 1:
        return _accumulate(model, optimizer, loss_cfg, rollout, old_logp, grad_clip, loss_fn, micro)
    first = old_logp is None
    logp, entropy = sequence_logprobs(model, rollout.seqs, rollout.attn, rollout.n_new, with_entropy=first)
    if old_logp is None:
        old_logp = logp.detach()
    loss, stats = loss_fn(loss_cfg, logp, old_logp, rollout.adv, rollout.loss_mask, rollout.group,
                          rollout.ref_logp)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    gn = gn.full_tensor() if hasattr(gn, "full_tensor") else gn
    return loss, stats, gn, old_logp, entropy


def _accumulate(model: Any, optimizer: torch.optim.Optimizer, loss_cfg: LossConfig, rollout: Rollout,
                old_logp: Tensor | None, grad_clip: float, loss_fn: LossFn, micro: int | None
                ) -> tuple[Tensor, dict[str, float], Tensor, Tensor, Tensor | None]:
    """policy_backward over micro-batches: each one's loss is its part of the whole batch's
    (runner.algo.aggregation_weights, so a token mean divides by the tokens of the whole batch),
    its backward adds to the gradients, and the clip and the returned loss and stats are those of
    the one pass. Under FSDP2 each backward reduce-scatters its gradients into the sharded ones:
    skipping that until the last micro-batch (set_requires_gradient_sync) would keep every
    layer's unsharded fp32 gradient on every GPU, 4 bytes x parameters, which no large model fits
    (DeepSpeed refuses no_sync under ZeRO-3 for the same reason)."""
    first = old_logp is None
    weights = aggregation_weights(rollout.loss_mask, loss_cfg.aggregation, rollout.group)
    optimizer.zero_grad(set_to_none=True)
    losses: list[Tensor] = []
    olds: list[Tensor] = []
    entropies: list[Tensor] = []
    parts: list[tuple[dict[str, float], float]] = []
    for rows in micro_slices(rollout.seqs.shape[0], micro):
        logp, entropy = sequence_logprobs(model, rollout.seqs[rows], rollout.attn[rows], rollout.n_new,
                                          with_entropy=first)
        old = logp.detach() if old_logp is None else old_logp[rows]
        ref = None if rollout.ref_logp is None else rollout.ref_logp[rows]
        loss, stats = loss_fn(loss_cfg, logp, old, rollout.adv[rows], rollout.loss_mask[rows], rollout.group,
                              ref, weights=weights[rows])
        loss.backward()
        losses.append(loss.detach())
        olds.append(old)
        if entropy is not None:
            entropies.append(entropy)
        parts.append((stats, float(rollout.loss_mask[rows].sum())))
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    gn = gn.full_tensor() if hasattr(gn, "full_tensor") else gn
    return (torch.stack(losses).sum(), _combined(parts), gn,
            torch.cat(olds) if old_logp is None else old_logp, torch.cat(entropies) if first else None)


def _combined(parts: list[tuple[dict[str, float], float]]) -> dict[str, float]:
    """The one-pass stats from the micro-batches' (stats, masked-in tokens): the weighted sums
    added, the token means weighted by each micro-batch's tokens (0 when no token counts)."""
    tokens = sum(n for _, n in parts)
    out: dict[str, float] = {}
    for key in parts[0][0]:
        if key in ADDITIVE_STATS:
            out[key] = sum(stats[key] for stats, _ in parts)
        else:
            out[key] = sum(stats[key] * n for stats, n in parts) / tokens if tokens else 0.0
    return out
