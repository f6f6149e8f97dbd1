"""The RL algorithm pieces of a GRPO / DAPO / ScaleRL trainer, as small pure functions on tensors.

Each piece is switchable by its caller and documents its formula and source. Read top to bottom:

1. Advantages: `group_advantages` (GRPO / Dr.GRPO), `batch_normalize` (ScaleRL),
   `zero_variance_mask` (DAPO dynamic sampling, ScaleRL zero-variance filtering),
   `overlong_shaping` (DAPO reward shaping).
2. Per-token policy losses: `ratio_and_clip_fraction`, `ppo_clip_loss` (PPO / DAPO clip-higher),
   `cispo_loss` (MiniMax-M1 / ScaleRL), `kl_k3` (GRPO's KL estimator).
3. Reduction to a scalar: `aggregate` ("token" / "sequence" / "prompt"), and `aggregation_weights`,
   the same as per-token weights over the whole batch (for micro-batches).
4. Curriculum: `PassRateTracker` (ScaleRL no-positive-resampling).
5. Numerics: `fp32_logits` (ScaleRL FP32 LM head), `token_logprobs`, `finite`.
6. The combination a trainer calls: `LossConfig`, `compute_advantages`, `policy_loss`.

Shapes: P prompts, G completions per prompt (the group size), B = P * G completions, T tokens.
Completions of one prompt are contiguous rows: row `p * G + g` is completion g of prompt p, which
is what `rewards[P, G].reshape(-1)` gives. `mask[B, T]` is 1.0 on response tokens, 0.0 on prompt
and padding; every masked-out position is ignored, even when it holds NaN or Inf.

Sources (see also docs/reference.md section 8):
  PPO       Schulman et al. 2017, arXiv:1707.06347
  GRPO      Shao et al. 2024 (DeepSeekMath), arXiv:2402.03300
  Dr.GRPO   Liu et al. 2025 (Understanding R1-Zero-Like Training), arXiv:2503.20783
  DAPO      Yu et al. 2025, arXiv:2503.14476
  CISPO     MiniMax 2025 (MiniMax-M1), arXiv:2506.13585
  ScaleRL   Khatri et al. 2025 (The Art of Scaling RL Compute for LLMs), arXiv:2510.13786
  k3        Schulman 2020, "Approximating KL Divergence" (blog note)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

Stats = dict[str, float]

# --------------------------------------------------------------------------------------------
# Small masked helpers
# --------------------------------------------------------------------------------------------


def _masked(x: Tensor, mask: Tensor) -> Tensor:
    """x where mask is set, 0 elsewhere; a NaN/Inf under the mask never leaks (unlike x * mask)."""
    return torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """sum(x * mask) / max(sum(mask), 1): 0 when nothing is masked in."""
    return _masked(x, mask).sum() / mask.sum().clamp(min=1)


# --------------------------------------------------------------------------------------------
# 1. Advantages and reward shaping
# --------------------------------------------------------------------------------------------


def group_advantages(rewards: Tensor, std_normalize: bool = True, eps: float = 1e-6) -> Tensor:
    """Group-relative advantages, one per completion.

    GRPO (arXiv:2402.03300):   A_i = (r_i - mean(r)) / (std(r) + eps)
    Dr.GRPO (arXiv:2503.20783), std_normalize=False:   A_i = r_i - mean(r)

    mean and std run over the G completions of the same prompt (the last axis). std is the
    POPULATION std (unbiased=False, divide by G, not G - 1). A group whose rewards are all equal
    gets advantages of exactly 0.0 (set explicitly, so float rounding of the mean cannot leave
    a 1e-8 residue, and no 0 / 0 appears even with eps=0).

    rewards: [P, G]  ->  advantages [P, G] (float32 at least).
    """
    r = rewards if rewards.is_floating_point() else rewards.float()
    centred = r - r.mean(dim=-1, keepdim=True)
    if std_normalize:
        std = r.std(dim=-1, unbiased=False, keepdim=True)
        centred = centred / (std + eps)
    varied = zero_variance_mask(r).unsqueeze(-1)
    return _masked(centred, varied.expand_as(centred))


def batch_normalize(adv: Tensor, mask_groups: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """ScaleRL batch-level advantage normalization (arXiv:2510.13786).

        A'_i = (A_i - mean_batch(A)) / (std_batch(A) + eps)

    mean and (population) std run over ALL completions in the batch, not per group. Applied to
    group-centred advantages (r_i - mean_group) the batch mean is 0, so this is ScaleRL's
    "centre per prompt, scale by the batch std".

    mask_groups (optional, bool): which entries take part, e.g. `zero_variance_mask(rewards)`
    ([P] for adv [P, G], broadcast over the group) or a mask of adv's own shape. Entries left out
    neither enter the mean/std nor keep a value: they come back as 0.0. If no entry takes part,
    everything is 0.0.
    """
    a = adv if adv.is_floating_point() else adv.float()
    if mask_groups is None:
        keep = torch.ones_like(a, dtype=torch.bool)
    else:
        keep = mask_groups.bool()
        keep = keep.reshape(keep.shape + (1,) * (a.dim() - keep.dim())).expand_as(a)
    w = keep.to(a.dtype)
    n = w.sum().clamp(min=1)
    mean = _masked(a, keep).sum() / n
    var = _masked((a - mean) ** 2, keep).sum() / n
    return _masked((a - mean) / (var.sqrt() + eps), keep)


def zero_variance_mask(rewards: Tensor) -> Tensor:
    """True for the prompts to KEEP: those whose G rewards are not all equal.

    A group with identical rewards has zero advantage for every completion, so it carries no
    policy-gradient signal. DAPO dynamic sampling (arXiv:2503.14476) keeps drawing until a batch
    holds only such mixed groups; ScaleRL zero-variance filtering (arXiv:2510.13786) drops them
    from the loss. Exact comparison, no tolerance.

    rewards: [P, G]  ->  bool [P].
    """
    return (rewards != rewards[..., :1]).any(dim=-1)


def overlong_shaping(lengths: Tensor, max_len: int, buffer_len: int, factor: float) -> Tensor:
    """DAPO soft overlong punishment (arXiv:2503.14476): the penalty to ADD to each reward.

        exceed  = length - (max_len - buffer_len)
        penalty = clamp(-exceed / buffer_len * factor, min=-factor, max=0)

    0 up to max_len - buffer_len, then linear down to -factor at length == max_len, and -factor
    beyond (a truncated completion).

    lengths: [B] (ints or floats)  ->  float32 [B].
    """
    if buffer_len <= 0 or buffer_len > max_len:
        raise ValueError(f"buffer_len must be in 1..max_len ({max_len}), got {buffer_len}")
    exceed = lengths.to(torch.float32) - float(max_len - buffer_len)
    return (-exceed / buffer_len * factor).clamp(min=-abs(factor), max=0.0)


# --------------------------------------------------------------------------------------------
# 2. Per-token policy losses
# --------------------------------------------------------------------------------------------


def ratio_and_clip_fraction(
    logp: Tensor,
    old_logp: Tensor,
    mask: Tensor,
    eps_low: float | None = 0.2,
    eps_high: float | None = 0.28,
    adv: Tensor | None = None,
) -> tuple[Tensor, Stats]:
    """Importance ratio r_t = exp(logp_t - old_logp_t) and how often its clip binds.

    The log-ratio is set to 0 on masked-out tokens BEFORE exp, so padding can never make an Inf
    whose gradient turns into NaN. Keeps the autograd graph (the ratio carries gradient to logp).

    Stats (fractions of the masked-in tokens, Python floats):
      clip_frac_low   r_t < 1 - eps_low    (and A < 0 when adv is given)
      clip_frac_high  r_t > 1 + eps_high   (and A > 0 when adv is given)
      ratio_mean      mean r_t
    With adv given these are the tokens where the PPO clip takes over and the gradient is 0; without
    it, every token outside the band (CISPO truncates its weight whatever the sign of A).
    A bound of None means no clip on that side (its fraction is 0).

    logp, old_logp, mask: [B, T]; adv: [B] or [B, T].
    """
    m = mask.bool()
    log_ratio = _masked(logp - old_logp, m)
    ratio = torch.exp(log_ratio)
    with torch.no_grad():
        r = ratio.detach()
        a = None if adv is None else (adv.unsqueeze(-1) if adv.dim() == 1 else adv).expand_as(r)
        low = torch.zeros_like(m) if eps_low is None else r < 1.0 - eps_low
        high = torch.zeros_like(m) if eps_high is None else r > 1.0 + eps_high
        if a is not None:
            low, high = low & (a < 0), high & (a > 0)
        stats = {
            "clip_frac_low": float(_masked_mean(low.float(), m)),
            "clip_frac_high": float(_masked_mean(high.float(), m)),
            "ratio_mean": float(_masked_mean(r, m)),
        }
    return ratio, stats


def ppo_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
) -> tuple[Tensor, Stats]:
    """PPO clipped surrogate with DAPO clip-higher (asymmetric) bounds, per token.

        r_t    = exp(logp_t - old_logp_t)
        loss_t = -min(r_t * A, clip(r_t, 1 - eps_low, 1 + eps_high) * A)

    PPO arXiv:1707.06347; GRPO uses eps_low = eps_high = 0.2; DAPO (arXiv:2503.14476) raises the
    upper bound to eps_high = 0.28 so low-probability tokens can grow (against entropy collapse).
    d loss_t / d logp_t = -r_t * A where the unclipped term is taken, 0 where the clip binds
    (A > 0 and r_t > 1 + eps_high, or A < 0 and r_t < 1 - eps_low).

    logp, old_logp, mask: [B, T]; adv: [B] (one per completion) or [B, T].
    Returns the per-token loss [B, T] (0 on masked-out tokens) and stats from
    `ratio_and_clip_fraction` with adv (fractions where the clip binds).
    """
    ratio, stats = ratio_and_clip_fraction(logp, old_logp, mask, eps_low, eps_high, adv=adv)
    a = adv.unsqueeze(-1) if adv.dim() == 1 else adv
    unclipped = ratio * a
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * a
    return _masked(-torch.minimum(unclipped, clipped), mask), stats


def cispo_loss(
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    eps_high: float = 0.28,
    eps_low: float | None = None,
) -> tuple[Tensor, Stats]:
    """CISPO: REINFORCE with a truncated, stop-gradient importance weight, per token.

        r_t    = exp(logp_t - old_logp_t)
        w_t    = sg(clip(r_t, 1 - eps_low, 1 + eps_high))     (eps_low=None: no lower bound)
        loss_t = -w_t * A * logp_t
        d loss_t / d logp_t = -w_t * A      (never 0: every token keeps its gradient)

    MiniMax-M1 (arXiv:2506.13585); the loss of the ScaleRL recipe (arXiv:2510.13786). Unlike
    PPO clipping, a clipped token still contributes gradient, only with a bounded weight. Note the
    loss VALUE scales with logp_t; only its gradient is meaningful.

    logp, old_logp, mask: [B, T]; adv: [B] or [B, T]. Returns the per-token loss [B, T] (0 on
    masked-out tokens) and stats: clip_frac_high / clip_frac_low = fractions of tokens whose weight
    was truncated, ratio_mean.
    """
    ratio, stats = ratio_and_clip_fraction(logp, old_logp, mask, eps_low, eps_high, adv=None)
    lower = None if eps_low is None else 1.0 - eps_low
    weight = ratio.detach().clamp(min=lower, max=1.0 + eps_high)
    a = adv.unsqueeze(-1) if adv.dim() == 1 else adv
    return _masked(-weight * a * logp, mask), stats


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(pi || pi_ref) on tokens sampled from pi (as in GRPO).

        log_ratio = ref_logp - logp
        k3        = exp(log_ratio) - log_ratio - 1        (>= 0, exactly 0 where equal)

    Unbiased and never negative (Schulman 2020, "Approximating KL Divergence"; GRPO
    arXiv:2402.03300). d k3 / d logp = 1 - exp(log_ratio). Mask it with `aggregate`.
    """
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1.0


# --------------------------------------------------------------------------------------------
# 3. Loss aggregation
# --------------------------------------------------------------------------------------------

AGGREGATIONS = ("token", "sequence", "prompt")


def aggregate(per_token: Tensor, mask: Tensor, mode: str, group_size: int) -> Tensor:
    """Reduce a per-token loss [B, T] to a scalar; the three modes weigh tokens differently.

    "token"     DAPO token-level (arXiv:2503.14476): sum_{b,t} m*l / sum_{b,t} m.
                Every response token in the batch weighs the same; long answers count more.
    "sequence"  GRPO sample-level (arXiv:2402.03300): mean_b [ sum_t m*l / sum_t m ].
                Every completion weighs the same, whatever its length.
    "prompt"    ScaleRL prompt-level (arXiv:2510.13786): the tokens of the G completions of a
                prompt are averaged together, then prompts are averaged:
                mean_p [ sum_{b in p, t} m*l / sum_{b in p, t} m ].

    A completion (or, for "prompt", a whole group) with no masked-in token is left out of the
    outer mean instead of giving 0/0; if nothing at all is masked in, the result is 0.0 (with a
    zero, finite gradient). Masked-out values are ignored even when NaN/Inf. The token count is
    that of this call: with gradient accumulation, compute the normalizer over the whole batch.

    per_token, mask: [B, T]; group_size: G (B must be a multiple; rows contiguous per prompt).
    """
    m = mask.to(per_token.dtype)
    x = _masked(per_token, mask)
    if mode == "token":
        return x.sum() / m.sum().clamp(min=1)
    if mode == "sequence":
        sums, counts = x.sum(dim=-1), m.sum(dim=-1)
    elif mode == "prompt":
        rows = per_token.shape[0]
        if group_size < 1 or rows % group_size:
            raise ValueError(f"{rows} completions do not split into groups of {group_size}")
        sums = x.reshape(rows // group_size, -1).sum(dim=-1)
        counts = m.reshape(rows // group_size, -1).sum(dim=-1)
    else:
        raise ValueError(f"unknown aggregation {mode!r}; expected one of {AGGREGATIONS}")
    present = counts > 0
    means = _masked(sums / counts.clamp(min=1), present)
    return means.sum() / present.sum().clamp(min=1)


def aggregation_weights(mask: Tensor, mode: str, group_size: int) -> Tensor:
    """Per-token weights w [B, T] with sum(w * l) == aggregate(l, mask, mode, group_size) for any l.

    Every mode is a weighted sum of the masked-in tokens: "token" 1 / (tokens in the batch);
    "sequence" 1 / (tokens of the completion x completions present); "prompt" 1 / (tokens of the
    group x groups present); 0 on masked-out tokens. Computed once over the whole batch, the
    weights let micro-batches (any rows, a group split over two included) add up to the one-pass
    loss: a micro-batch's part is sum(w[rows] * l[rows]), never a mean over the micro-batch alone.
    """
    m = mask.float()
    if mode == "token":
        return m / m.sum().clamp(min=1)
    if mode == "sequence":
        counts = m.sum(dim=-1, keepdim=True)
        present = (counts > 0).sum().clamp(min=1)
        return m / counts.clamp(min=1) / present
    if mode == "prompt":
        rows = m.shape[0]
        if group_size < 1 or rows % group_size:
            raise ValueError(f"{rows} completions do not split into groups of {group_size}")
        counts = m.reshape(rows // group_size, -1).sum(dim=-1)
        present = (counts > 0).sum().clamp(min=1)
        per_row = counts.clamp(min=1).repeat_interleave(group_size).unsqueeze(-1)
        return m / per_row / present
    raise ValueError(f"unknown aggregation {mode!r}; expected one of {AGGREGATIONS}")


# --------------------------------------------------------------------------------------------
# 4. Curriculum: no-positive-resampling
# --------------------------------------------------------------------------------------------


class PassRateTracker:
    """Running pass rate per prompt id, for ScaleRL no-positive-resampling (arXiv:2510.13786).

        rate(id) = sum of all rewards seen for id / number of rewards seen for id

    (the mean reward over all its groups so far; with 0/1 rewards, the pass rate). A prompt whose
    rate reaches `threshold` (0.9) is too easy to teach anything more: `should_drop` says to stop
    sampling it. A prompt never seen is never dropped. `state_dict` / `load_state_dict` carry the
    counts through a checkpoint (plain Python values, JSON-friendly when ids are str).
    """

    def __init__(self, threshold: float = 0.9) -> None:
        self.threshold = float(threshold)
        self._sum: dict[Any, float] = {}
        self._count: dict[Any, int] = {}

    def update(self, prompt_id: Any, rewards: Tensor | Iterable[float]) -> None:
        """Add one group's rewards (a tensor or any iterable of numbers) for prompt_id."""
        values = [float(v) for v in (rewards.flatten().tolist() if isinstance(rewards, Tensor)
                                     else rewards)]
        self._sum[prompt_id] = self._sum.get(prompt_id, 0.0) + math.fsum(values)
        self._count[prompt_id] = self._count.get(prompt_id, 0) + len(values)

    def pass_rate(self, prompt_id: Any) -> float | None:
        """The running mean reward of prompt_id, or None if nothing was seen."""
        count = self._count.get(prompt_id, 0)
        return self._sum[prompt_id] / count if count else None

    def should_drop(self, prompt_id: Any) -> bool:
        """True when prompt_id's running pass rate >= threshold."""
        rate = self.pass_rate(prompt_id)
        return rate is not None and rate >= self.threshold

    def __len__(self) -> int:
        return len(self._count)

    def state_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "sum": dict(self._sum), "count": dict(self._count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.threshold = float(state["threshold"])
        self._sum = {k: float(v) for k, v in state["sum"].items()}
        self._count = {k: int(v) for k, v in state["count"].items()}


# --------------------------------------------------------------------------------------------
# 5. Numerics
# --------------------------------------------------------------------------------------------


def fp32_logits(hidden: Tensor, lm_head_weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """LM-head logits computed in float32 whatever the input dtype (ScaleRL FP32 logits).

        logits = float32(hidden) @ float32(W)^T (+ float32(bias))

    A bf16 LM head rounds every logit to 8 bits of mantissa; the log-probabilities of the trainer
    and of the generator then disagree, which biases the importance ratio. ScaleRL
    (arXiv:2510.13786) computes the head in FP32. hidden [..., H], W [V, H] -> float32 [..., V].
    """
    logits = hidden.float() @ lm_head_weight.float().T
    return logits if bias is None else logits + bias.float()


def token_logprobs(logits: Tensor, tokens: Tensor) -> Tensor:
    """log pi(token_t) per position, in float32: log_softmax(float32(logits))[..., token_t].

    logits [B, T, V], tokens [B, T] (int) -> float32 [B, T]. The caller aligns them: logits at
    position t must be the prediction for tokens[:, t] (i.e. shifted by one from the input ids).
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)


def finite(*tensors: Tensor | float) -> bool:
    """True when every element of every argument is finite (no NaN, no +-Inf).

    A trainer skips the optimizer step when the loss or the gradient norm is not finite. Accepts
    tensors and plain numbers; no arguments -> True.
    """
    return all(bool(torch.isfinite(torch.as_tensor(t)).all()) for t in tensors)


# --------------------------------------------------------------------------------------------
# 6. The combination a trainer calls
# --------------------------------------------------------------------------------------------

LOSSES = ("ppo_clip", "cispo")
# policy_loss's stats that micro-batches add up (weighted sums); the others are token means
ADDITIVE_STATS = ("pg_loss", "loss", "kl")


@dataclass(frozen=True)
class LossConfig:
    """Which pieces the policy loss uses.

    loss           "ppo_clip" (PPO / GRPO / DAPO) or "cispo" (MiniMax-M1 / ScaleRL)
    aggregation    "token" | "sequence" | "prompt"  (see `aggregate`)
    eps_low        PPO lower clip; for CISPO the lower truncation of the weight (None = none)
    eps_high       PPO upper clip / CISPO upper truncation
    kl_beta        weight of the k3 KL to a reference policy (0 = no KL term)
    std_normalize  divide group-centred advantages by the group std (GRPO) or not (Dr.GRPO)
    batch_norm     then normalize advantages over the whole batch (ScaleRL)
    """

    loss: str = "ppo_clip"
    aggregation: str = "token"
    eps_low: float | None = 0.2
    eps_high: float = 0.28
    kl_beta: float = 0.0
    std_normalize: bool = True
    batch_norm: bool = False

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; expected one of {LOSSES}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {self.aggregation!r}; expected one of {AGGREGATIONS}")
        if self.loss == "ppo_clip" and self.eps_low is None:
            raise ValueError("ppo_clip needs eps_low (None is only meaningful for cispo)")
        if (self.eps_low is not None and self.eps_low < 0) or self.eps_high < 0 or self.kl_beta < 0:
            raise ValueError("eps_low, eps_high and kl_beta must be >= 0")

    @classmethod
    def grpo(cls) -> LossConfig:
        """GRPO as published: symmetric clip 0.2, per-sequence mean, group-std advantages."""
        return cls(loss="ppo_clip", aggregation="sequence", eps_low=0.2, eps_high=0.2)

    @classmethod
    def dapo(cls) -> LossConfig:
        """DAPO: clip-higher 0.2 / 0.28, token-level mean, no KL."""
        return cls(loss="ppo_clip", aggregation="token", eps_low=0.2, eps_high=0.28)

    @classmethod
    def scalerl(cls) -> LossConfig:
        """ScaleRL loss pieces: CISPO (upper truncation only; eps_high is this module's default,
        tune it), prompt-level mean, group-centred advantages scaled by the batch std."""
        return cls(loss="cispo", aggregation="prompt", eps_low=None, eps_high=0.28,
                   std_normalize=False, batch_norm=True)


def compute_advantages(cfg: LossConfig, rewards: Tensor, keep: Tensor | None = None) -> Tensor:
    """Advantages [P, G] for cfg: `group_advantages`, then `batch_normalize` if cfg.batch_norm.

    keep (bool [P], e.g. `zero_variance_mask(rewards)`): prompts that stay in the batch; the
    batch statistics run over those only and the others get 0.0. Flatten with .reshape(-1).
    """
    adv = group_advantages(rewards, std_normalize=cfg.std_normalize)
    if cfg.batch_norm:
        adv = batch_normalize(adv, keep)
    elif keep is not None:
        adv = _masked(adv, keep.bool().unsqueeze(-1).expand_as(adv))
    return adv


def policy_loss(
    cfg: LossConfig,
    logp: Tensor,
    old_logp: Tensor,
    adv: Tensor,
    mask: Tensor,
    group_size: int,
    ref_logp: Tensor | None = None,
    weights: Tensor | None = None,
) -> tuple[Tensor, Stats]:
    """The scalar loss to backpropagate, and its stats.

        loss = aggregate(per_token_policy_loss) + kl_beta * aggregate(k3(logp, ref_logp))

    the KL term only when kl_beta > 0 and ref_logp is given; both aggregated with cfg.aggregation.
    adv: [B], or [P, G] (flattened to [B]; a 2-D adv of logp's exact shape is read as per-token
    [B, T]). Stats (floats): pg_loss, loss, clip_frac_low,
    clip_frac_high, ratio_mean, and kl (the aggregated k3) whenever ref_logp is given.

    weights (a micro-batch's rows of `aggregation_weights` over the whole batch): the sums are
    weighted by them instead of aggregated over these rows alone, so the micro-batches' losses
    and their ADDITIVE_STATS add up to the one-pass values (the other stats are means over the
    micro-batch's masked-in tokens).
    """
    if adv.dim() == 2 and adv.shape != logp.shape:
        adv = adv.reshape(-1)
    if cfg.loss == "ppo_clip":
        assert cfg.eps_low is not None  # checked in LossConfig
        per_token, stats = ppo_clip_loss(logp, old_logp, adv, mask, cfg.eps_low, cfg.eps_high)
    else:
        per_token, stats = cispo_loss(logp, old_logp, adv, mask, cfg.eps_high, cfg.eps_low)
    pg = (aggregate(per_token, mask, cfg.aggregation, group_size) if weights is None
          else (_masked(per_token, mask) * weights).sum())
    loss = pg
    stats = {"pg_loss": float(pg.detach()), **stats}
    if ref_logp is not None:
        # Inputs masked first, so a padding position is k3(0, 0) = 0 in value and in gradient.
        k3 = kl_k3(_masked(logp, mask), _masked(ref_logp, mask))
        kl = (aggregate(k3, mask, cfg.aggregation, group_size) if weights is None
              else (_masked(k3, mask) * weights).sum())
        stats["kl"] = float(kl.detach())
        if cfg.kl_beta > 0:
            loss = loss + cfg.kl_beta * kl
    stats["loss"] = float(loss.detach())
    return loss, stats
