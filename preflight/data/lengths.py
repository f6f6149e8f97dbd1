"""Token lengths of prompts and answers: counted with a local tokenizer, or estimated.

numpy and pyarrow are imported where they are used: `preflight check` imports this module even
for a spec without data, and must not pay for them then.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model import DataFileError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

ESTIMATE_NOTE = ("estimated, not tokenized: one token per 4 UTF-8 bytes (about 4 characters of English, "
                 "0.75 per CJK character); name a local tokenizer in data.tokenizer for exact counts")


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
        raise DataFileError(str(path), "no tokenizer there", "give a tokenizer.json or a folder holding one")
    return path


def load_tokenizer(path: Path) -> Any:
    """The tokenizer in a tokenizer.json; DataFileError when the file is not one."""
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise RuntimeError("data.tokenizer is set but the `tokenizers` package is not installed "
                           "(pip install tokenizers)") from exc
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust side raises a bare Exception for any file it cannot parse
        raise DataFileError(str(path), f"not a readable tokenizer.json ({exc})",
                            "point at the tokenizer.json a Hugging Face tokenizer saves") from None


def token_lengths(texts: pa.Array | pa.ChunkedArray, tokenizer: str | None = None) -> Lengths:
    """Tokens per text: counted with ``tokenizer``, or estimated from the UTF-8 length, which
    Arrow knows from its offsets without reading the text (a million rows in milliseconds)."""
    import numpy as np
    import pyarrow.compute as pc

    if tokenizer:
        path = tokenizer_file(tokenizer)
        tok = load_tokenizer(path)
        values = [t or "" for t in texts.to_pylist()]
        counts = np.zeros(len(values), dtype=np.int64)
        step = 4096
        for start in range(0, len(values), step):
            enc = tok.encode_batch(values[start:start + step], add_special_tokens=False)
            counts[start:start + len(enc)] = [len(e.ids) for e in enc]
        return Lengths(counts, True, f"counted with {path}")
    size = pc.fill_null(pc.binary_length(texts), 0).to_numpy(zero_copy_only=False)
    estimate = np.ceil(size / 4).astype(np.int64)
    return Lengths(estimate, False, ESTIMATE_NOTE)
