"""The optional supervised warm start before RL (phase "warm_start").

A randomly initialized model almost never solves a prompt, so RL on it sees groups that all score
0 and learns nothing. A short supervised pass on prompt + " " + answer gives it a non-zero pass
rate first; with a pass-rate target it ends as soon as the validation pass rate reaches it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .algo import finite
from .config import WarmStartConfig
from .data import PromptSampler, encode_prompts
from .rollout import micro_slices, sequence_logprobs

WARM_START_WARMUP = 50  # linear LR warmup steps of the supervised warm start (at most a tenth of it)
WARM_START_CHECK = 25  # with training.warm_start_target: steps between two looks at the pass rate


@dataclass(frozen=True)
class WarmStartResult:
    steps_done: int
    reached: float | None  # the pass rate that met the target, None when it was not met (or none)


def warm_start(model: Any, tokenizer: Any, settings: WarmStartConfig, *, sampler: PromptSampler,
               batch: int, max_prompt: int, grad_clip: float, device: torch.device,
               pass_rate: Callable[[], float], micro: int | None = None) -> WarmStartResult:
    """``settings.steps`` supervised steps at most, ``batch`` rows each (``micro`` rows per
    forward/backward, the gradients accumulated; None: all at once); ``pass_rate()`` is asked
    every WARM_START_CHECK steps when there is a target."""
    sft = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.0)
    # a linear warmup: at warm_start_lr from the first step, Adam's early, noisy second-moment
    # estimates throw a random model about (the pass rate after the same steps is far lower)
    warmup = max(1, min(WARM_START_WARMUP, settings.steps // 10))
    ramp = torch.optim.lr_scheduler.LambdaLR(sft, lambda i: min(1.0, (i + 1) / warmup))
    for step in range(1, settings.steps + 1):
        model.train()
        sft.zero_grad(set_to_none=True)
        loss = _answer_backward(model, tokenizer, sampler.next(batch), max_prompt, device, micro)
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if finite(loss.detach(), gn):
            sft.step()
        ramp.step()
        # a pass-rate target gives RL the same starting point on any machine and world size:
        # the warm start's curve is steep (a few dozen steps apart can mean 15 % or 45 %)
        if settings.target is not None and step % WARM_START_CHECK == 0:
            rate = pass_rate()
            if rate >= settings.target:
                return WarmStartResult(step, rate)
    return WarmStartResult(settings.steps, None)


def _answer_backward(model: Any, tokenizer: Any, rows: list[dict[str, Any]], max_prompt: int,
                     device: torch.device, micro: int | None) -> Tensor:
    """The mean negative log-likelihood of " answer<eos>" after each row's prompt, backward (in
    micro-batches of ``micro`` rows, each one's part divided by the whole batch's target tokens);
    returns the loss, detached."""
    enc = encode_prompts(tokenizer, [r["prompt"] for r in rows], max_prompt, device)
    tgt = tokenizer([f" {r['answer']}{tokenizer.eos_token}" for r in rows], add_special_tokens=False,
                    return_tensors="pt", padding=True)
    tgt_ids = tgt["input_ids"].to(device)
    # right-pad the target after the left-padded prompt
    tgt_mask = tgt["attention_mask"].to(device).flip(1) if tokenizer.padding_side == "left" \
        else tgt["attention_mask"].to(device)
    if tokenizer.padding_side == "left":
        tgt_ids = _left_to_right(tgt_ids, tgt["attention_mask"].to(device), tokenizer.pad_token_id)
    seqs = torch.cat([enc["input_ids"], tgt_ids], dim=1)
    attn = torch.cat([enc["attention_mask"], tgt_mask], dim=1)
    total = tgt_mask.sum().clamp(min=1)
    parts = []
    for s in micro_slices(seqs.shape[0], micro):  # one slice of every row when micro is None
        logp, _ = sequence_logprobs(model, seqs[s], attn[s], tgt_ids.shape[1])
        part = -(logp * tgt_mask[s]).sum() / total
        part.backward()
        parts.append(part.detach())
    return torch.stack(parts).sum()


def _left_to_right(ids: Tensor, attn: Tensor, pad_id: int) -> Tensor:
    """Move left padding to the right: [p p a b] -> [a b p p] per row."""
    out = torch.full_like(ids, pad_id)
    for i in range(ids.shape[0]):
        row = ids[i][attn[i].bool()]
        out[i, :row.numel()] = row
    return out
