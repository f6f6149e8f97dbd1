"""Validation: the pass rate of greedy decoding on the val split, over every rank's share of it."""

from __future__ import annotations

import math
from typing import Any

import torch

from .data import Row, encode_prompts
from .parallel import sum_across
from .rollout import generate


class Evaluator:
    """Greedy-decodes each rank's share of ``rows`` (every world_size-th) and scores it with the
    reward; ``pass_rate(chunk)`` is the world's mean reward and the number of prompts scored."""

    def __init__(self, rows: list[Row], *, reward: Any, rank: int, world_size: int, max_prompt: int,
                 max_new: int, device: torch.device) -> None:
        self.rows = rows
        self.mine = rows[rank::world_size]
        self.reward = reward
        self.world_size = world_size
        self.max_prompt = max_prompt
        self.max_new = max_new
        self.device = device

    def pass_rate(self, model: Any, tokenizer: Any, chunk: int) -> tuple[float, int]:
        """(pass rate, prompts scored), decoding ``chunk`` prompts per generate call."""
        model.eval()
        chunk = max(chunk, 1)
        # every rank makes the same number of generate calls (FSDP forwards are collectives)
        calls = math.ceil(math.ceil(len(self.rows) / self.world_size) / chunk)
        correct = 0.0
        for c in range(calls):
            part = self.mine[c * chunk:(c + 1) * chunk]
            rows = part or self.rows[:1]  # a dummy batch keeps this rank in step with the others
            enc = encode_prompts(tokenizer, [r["prompt"] for r in rows], self.max_prompt, self.device)
            seqs, _, _ = generate(model, tokenizer, enc, max_new_tokens=self.max_new, temperature=None)
            texts = tokenizer.batch_decode(seqs[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            if part:
                correct += sum(self.reward([r["prompt"] for r in rows], texts, rows))
        correct, n = sum_across([correct, float(len(self.mine))], self.device)
        return (correct / n if n else float("nan")), int(n)
