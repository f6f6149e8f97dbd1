"""Rollouts and the policy update on them: sample, score, take log-probabilities, backward.

``generate`` samples G completions per prompt (or decodes greedily); ``score_groups`` turns their
raw rewards into advantages (overlong shaping, the zero-variance filter, group and batch
normalization); ``policy_backward`` computes the spec's policy loss on a ``Rollout`` and its
gradients (the caller decides whether to step). The training loop (runner.train) and the basic
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
    LossConfig,
    compute_advantages,
    overlong_shaping,
    policy_loss,
    token_logprobs,
    zero_variance_mask,
)
from .parallel import distributed

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# policy_loss's signature: (config, logp, old_logp, advantages, mask, group, ref_logp) -> (loss,
# stats); a test hands in a planted one (a NaN, a spike) instead
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


def sequence_logprobs(model: Any, seqs: Tensor, attn: Tensor, n_completion: int,
                      with_entropy: bool = False) -> tuple[Tensor, Tensor | None]:
    """log pi(token) for the last ``n_completion`` tokens of ``seqs`` [B, T] (float32), and
    optionally the per-token entropy of the policy there. (``model``: a causal LM, also the
    FSDP-wrapped one.)"""
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
                    loss_fn: LossFn = policy_loss
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
    loss, stats = loss_fn(loss_cfg, logp, old_logp, rollout.adv, rollout.loss_mask, rollout.group,
                          rollout.ref_logp)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    gn = gn.full_tensor() if hasattr(gn, "full_tensor") else gn
    return loss, stats, gn, old_logp, entropy
