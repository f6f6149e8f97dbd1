"""N-gram contamination: train rows sharing a word n-gram with evaluation texts.

The usual contamination test (13-gram overlap by default in the checks, configurable): a train row
is contaminated when any ``n`` consecutive words of it also occur, in order, in some evaluation text
(a val/test row or a benchmark file). Texts are already normalized and split on whitespace; a text
with fewer than ``n`` words has no n-grams and so can neither contaminate nor be contaminated.

N-grams are hashed exactly as :mod:`preflight.data.minhash` hashes shingles (stable word
ids combined by a uint64 polynomial), so for a text of at least ``n`` words ``ngram_hashes(t, n)``
is the set of ``shingle_hashes(t, n)``. Two different n-grams share a hash with probability about
2**-64 per pair.

numpy is imported where it is used, so importing this module (as `preflight check` does) is cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .minhash import shingle_corpus

if TYPE_CHECKING:
    import numpy as np


def _ngrams_flat(texts: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat n-gram hashes of all texts and the row each came from (texts shorter than n: none)."""
    import numpy as np

    values, offsets = shingle_corpus(texts, n, short_as_one=False)
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), np.diff(offsets))
    return values, owner


def ngram_hashes(text: str, n: int) -> np.ndarray:
    """Sorted distinct uint64 hashes of the word ``n``-grams of a normalized text."""
    import numpy as np

    values, _ = shingle_corpus([text], n, short_as_one=False)
    return np.unique(values)


def contaminated_rows(train_texts: Sequence[str], eval_texts: Sequence[str], n: int = 13,
                      max_examples: int = 5) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Train rows sharing at least one word ``n``-gram with any evaluation text.

    Returns the sorted int64 indices of those train rows, and up to ``max_examples``
    ``(train_idx, eval_idx)`` pairs for the first of them, where ``eval_idx`` is the first
    evaluation row holding an n-gram of that train row (its first shared n-gram in text order).
    """
    import numpy as np

    eval_values, eval_owner = _ngrams_flat(eval_texts, n)
    empty = np.empty(0, dtype=np.int64)
    if not len(eval_values):
        return empty, []
    order = np.argsort(eval_values, kind="stable")  # stable: first eval row first among equals
    sorted_values = eval_values[order]
    first = np.concatenate(([True], sorted_values[1:] != sorted_values[:-1]))
    uniq = sorted_values[first]
    uniq_row = eval_owner[order][first]  # the first eval row having each distinct n-gram

    hits: list[np.ndarray] = []
    examples: list[tuple[int, int]] = []
    chunk = 65536  # train rows per pass (bounds the flat n-gram array)
    for lo in range(0, len(train_texts), chunk):
        values, owner = _ngrams_flat(train_texts[lo : lo + chunk], n)
        if not len(values):
            continue
        hit = np.isin(values, uniq, assume_unique=False)
        rows = np.unique(owner[hit]) + lo
        hits.append(rows)
        if len(examples) < max_examples and len(rows):
            hit_at = np.flatnonzero(hit)
            # The first hit of each contaminated row (owner is non-decreasing).
            firsts = hit_at[np.concatenate(([True], owner[hit_at][1:] != owner[hit_at][:-1]))]
            for k in firsts[: max_examples - len(examples)].tolist():
                eval_idx = int(uniq_row[np.searchsorted(uniq, values[k])])
                examples.append((int(owner[k]) + lo, eval_idx))
    return (np.concatenate(hits) if hits else empty), examples
