"""The prompts: loading the rows, fitting and encoding the prompts, and sampling them.

``load_rows`` reads the spec's train/val files (``preflight.data.readers``) or generates the
built-in arithmetic task (``preflight.arithmetic``, split with ``preflight.data.split``).
``PromptSampler`` hands a rank its prompts in a shuffled order, pass after pass, skipping prompts
the policy already always solves (no-positive-resampling); its ``state_dict`` is what a checkpoint
needs for a resumed run to draw exactly the prompts the uninterrupted run would have.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
from torch import Tensor

from preflight.arithmetic import DIFFICULTY_WEIGHTS, generate
from preflight.data.readers import read_split
from preflight.data.split import split_rows

from .algo import PassRateTracker
from .config import DataConfig

Row = dict[str, Any]  # {"id", "prompt", "answer", ...}: one dataset row


def load_rows(data: DataConfig, tokenizer: Any, notes: list[str],
              max_prompt: int) -> tuple[list[Row], list[Row]]:
    """(train rows, val rows), prompts fitting max_prompt tokens; the val rows cut to
    ``data.val_limit``."""
    if data.train_path and data.val_path:
        train_rows, val_rows = _read_files(data.train_path, data.val_path, data, tokenizer, notes,
                                           max_prompt)
    else:
        train_rows, val_rows = _arithmetic_task(data, tokenizer, notes, max_prompt)
    return train_rows, val_rows if data.val_limit is None else val_rows[:data.val_limit]


def _read_files(train_path: str, val_path: str, data: DataConfig, tokenizer: Any, notes: list[str],
                max_prompt: int) -> tuple[list[Row], list[Row]]:
    tables = [read_split(p, name, dict(data.fields), data.domain).table.to_pylist()
              for p, name in ((train_path, "train"), (val_path, "val"))]
    train_rows, val_rows = ([r for r in t if r.get("prompt")] for t in tables)
    for i, r in enumerate(train_rows + val_rows):
        r.setdefault("id", None)
        if r["id"] is None:
            r["id"] = f"row-{i}"
    too_long = sum(n > max_prompt for n in _prompt_lens(tokenizer, [r["prompt"] for r in train_rows + val_rows]))
    if too_long:  # encode_prompts cuts them from the left
        notes.append(f"data: {too_long} prompts longer than max_prompt_tokens={max_prompt} are "
                     "truncated from the left")
    return train_rows, val_rows


def _arithmetic_task(data: DataConfig, tokenizer: Any, notes: list[str],
                     max_prompt: int) -> tuple[list[Row], list[Row]]:
    levels = list(data.task_difficulty or DIFFICULTY_WEIGHTS)
    share = sum(DIFFICULTY_WEIGHTS[d] for d in set(levels))
    # generate enough rows that about `task_rows` remain after keeping only these levels
    n = math.ceil(data.task_rows / share) if share < 1 else data.task_rows
    rows = [r for r in generate(n, seed=data.seed, with_expression=True) if r["difficulty"] in levels]
    shortened = _fit_prompts(rows, tokenizer, max_prompt)
    # split after the prompts are final: the splitter keeps equal prompts in one part, so a
    # problem shown as '(16 + 2) =' in val never also appears, under another story, in train
    tr, va, te = split_rows(rows, seed=data.seed)
    train_rows, val_rows = [rows[i] for i in tr], [rows[i] for i in va]
    kept = ("" if share >= 1 else
            f" (training.task_difficulty: only {'/'.join(sorted(set(levels)))} rows of {n})")
    notes.append(f"data: built-in arithmetic task, {len(rows)} generated rows{kept} split "
                 f"{len(train_rows)}/{len(val_rows)}/{len(te)} (train/val/test)")
    if shortened:
        notes.append(f"data: {shortened} story prompts longer than max_prompt_tokens={max_prompt} "
                     "were replaced by their arithmetic expression ('(48 - 17) * 3 =')")
    return train_rows, val_rows


def _fit_prompts(rows: list[Row], tokenizer: Any, max_prompt: int) -> int:
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


class PromptSampler:
    """This rank's share of the train rows (every world_size-th), drawn in a random order, pass
    after pass. With a ``tracker`` (no-positive-resampling), prompts whose recent pass rate is at
    its threshold are skipped (at most 10 passes' worth of skips per draw, so a policy that
    solves everything still gets prompts)."""

    def __init__(self, rows: list[Row], *, rank: int, world_size: int, seed: int,
                 tracker: PassRateTracker | None = None) -> None:
        self.shard = rows[rank::world_size]
        self.rng = random.Random(seed + rank)
        self.order: list[int] = []
        self.tracker = tracker

    def next(self, n: int) -> list[Row]:
        picked: list[Row] = []
        skipped = 0
        while len(picked) < n:
            if not self.order:
                self.order.extend(self.rng.sample(range(len(self.shard)), len(self.shard)))
            row = self.shard[self.order.pop()]
            if self.tracker is not None and self.tracker.should_drop(row["id"]) \
                    and skipped < 10 * len(self.shard):
                skipped += 1
                continue
            picked.append(row)
        return picked

    def observe(self, rows: list[Row], rewards: Tensor) -> None:
        """Record each prompt's rewards [P, G] for the pass-rate tracker (a no-op without one)."""
        if self.tracker is not None:
            for r, g in zip(rows, rewards, strict=True):
                self.tracker.update(r["id"], g)

    def state_dict(self) -> dict[str, Any]:
        return {"data_rng": self.rng.getstate(), "order": list(self.order),
                "tracker": self.tracker.state_dict() if self.tracker is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.setstate(as_tuples(state["data_rng"]))
        self.order[:] = state["order"]
        if self.tracker is not None and state.get("tracker") is not None:
            self.tracker.load_state_dict(state["tracker"])


def as_tuples(value: Any) -> Any:
    """random.setstate wants tuples all the way down; a checkpoint may hand back lists."""
    return tuple(as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
