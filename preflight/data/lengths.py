"""Token lengths of prompts and answers: counted with a local tokenizer, or estimated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ESTIMATE_NOTE = ("estimated, not tokenized: max(4/3 tokens per word, 1 token per 4 characters); name a local "
                 "tokenizer in data.tokenizer for exact counts")


@dataclass
class Lengths:
    tokens: np.ndarray  # per row; 0 for a missing text
    exact: bool
    how: str


def tokenizer_file(name: str) -> Path:
    path = Path(name)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer at {path} (give a tokenizer.json or a folder holding one)")
    return path


def token_lengths(texts: pa.Array | pa.ChunkedArray, tokenizer: str | None = None) -> Lengths:
    if tokenizer:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise RuntimeError("data.tokenizer is set but the `tokenizers` package is not installed "
                               "(pip install tokenizers)") from exc
        path = tokenizer_file(tokenizer)
        tok = Tokenizer.from_file(str(path))
        values = [t or "" for t in texts.to_pylist()]
        counts = np.zeros(len(values), dtype=np.int64)
        step = 4096
        for start in range(0, len(values), step):
            enc = tok.encode_batch(values[start:start + step], add_special_tokens=False)
            counts[start:start + len(enc)] = [len(e.ids) for e in enc]
        return Lengths(counts, True, f"counted with {path}")
    words = pc.fill_null(pc.count_substring_regex(texts, r"\S+"), 0).to_numpy(zero_copy_only=False)
    chars = pc.fill_null(pc.utf8_length(texts), 0).to_numpy(zero_copy_only=False)
    estimate = np.maximum(np.ceil(words * 4 / 3), np.ceil(chars / 4)).astype(np.int64)
    return Lengths(estimate, False, ESTIMATE_NOTE)
