"""N-gram contamination: train rows sharing a word n-gram with evaluation texts.

The usual contamination test (13-gram overlap by default in the checks, configurable): a train row
is contaminated when any ``n`` consecutive words of it also occur, in order, in some evaluation text
(a val/test row or a benchmark file). Texts are already normalized and split on whitespace; a text
with fewer than ``n`` words has no n-grams and so can neither contaminate nor be contaminated.

N-grams are hashed exactly as :mod:`preflight.data.minhash` hashes shingles (stable BLAKE2b word
ids combined by a uint64 polynomial), so for a text of at least ``n`` words ``ngram_hashes(t, n)``
is the set of ``shingle_hashes(t, n)``. Two different n-grams share a hash with probability about
2**-64 per pair.

``overlap`` reports both sides: every train row sharing an n-gram with an evaluation text and every
evaluation row sharing one with a train text, each paired with a row of the other side.

Prompt templates are left out first (``template_phrases``): RL datasets often wrap every problem in
the same instruction ("let's think step by step and output the final answer after ..."), and an
n-gram spanning the end of one problem and such an instruction is shared by unrelated rows. A
template is word text that, in a sample of a split's rows, lies in 5-grams held by at least 20 %
(and at least 20) of the rows; ``split_templates`` cuts each text at every such phrase, and no
n-gram crosses a cut. An evaluation problem quoted in a train row is no template (it is in one or a
few rows), so it is still found; template text alone is never a leak.

numpy is imported where it is used, so importing this module (as `preflight check` does) is cheap.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .minhash import shingle_corpus

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

TEMPLATE_WORDS = 5  # templates are found through word 5-grams ...
TEMPLATE_SHARE = 0.2  # ... that at least this share of a split's sampled rows hold ...
TEMPLATE_MIN_ROWS = 20  # ... and at least this many of them
TEMPLATE_SAMPLE = 5_000  # rows sampled per split (evenly spaced) to find templates
CUT = "\x00"  # what a template becomes in a text; texts are split there


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


@dataclass
class Overlap:
    """Rows of both sides that share an n-gram, and which row of the other side each shares it with."""

    train_rows: np.ndarray  # sorted int64 indices of train rows sharing an n-gram with an evaluation row
    eval_rows: np.ndarray  # sorted int64 indices of evaluation rows sharing an n-gram with a train row
    # (train, eval): each train row with the first evaluation row holding its first shared n-gram, and
    # each evaluation row with the first train row holding its first shared n-gram; sorted, no repeats
    pairs: list[tuple[int, int]] = field(default_factory=list)


def overlap(train_texts: Sequence[str], eval_texts: Sequence[str], n: int = 13,
            train_owner: np.ndarray | None = None, eval_owner: np.ndarray | None = None) -> Overlap:
    """Every train row and every evaluation row that share a word ``n``-gram.

    ``train_owner`` / ``eval_owner`` map each text to its row when a row was cut into several
    texts (``split_templates``); owners must not decrease. Without them each text is a row."""
    import numpy as np

    empty = np.empty(0, dtype=np.int64)
    ev, eo = _ngrams_flat(eval_texts, n)
    if eval_owner is not None:
        eo = eval_owner[eo]
    if not len(ev):
        return Overlap(empty, empty)
    order = np.argsort(ev, kind="stable")  # stable: the first eval row first among equals
    sorted_values = ev[order]
    first = np.concatenate(([True], sorted_values[1:] != sorted_values[:-1]))
    uniq, uniq_row = sorted_values[first], eo[order][first]
    hashes, owners = [], []
    chunk = 65536  # train texts per pass (bounds the flat n-gram array)
    for lo in range(0, len(train_texts), chunk):
        values, owner = _ngrams_flat(train_texts[lo : lo + chunk], n)
        hit = np.isin(values, uniq)
        hashes.append(values[hit])
        rows = owner[hit] + lo
        owners.append(train_owner[rows] if train_owner is not None else rows)
    shared = np.concatenate(hashes) if hashes else np.empty(0, np.uint64)
    by_train = np.concatenate(owners) if owners else empty
    if not len(shared):
        return Overlap(empty, empty)
    firsts = np.concatenate(([True], by_train[1:] != by_train[:-1]))  # by_train does not decrease
    train_rows = by_train[firsts]
    train_partner = uniq_row[np.searchsorted(uniq, shared[firsts])]
    distinct, at = np.unique(shared, return_index=True)  # each shared n-gram's first train row
    at_eval = np.flatnonzero(np.isin(ev, distinct))
    efirst = at_eval[np.concatenate(([True], eo[at_eval][1:] != eo[at_eval][:-1]))]
    eval_rows = eo[efirst]
    eval_partner = by_train[at][np.searchsorted(distinct, ev[efirst])]
    pairs = sorted({*zip(train_rows.tolist(), train_partner.tolist(), strict=True),
                    *zip(eval_partner.tolist(), eval_rows.tolist(), strict=True)})
    return Overlap(train_rows.astype(np.int64), eval_rows.astype(np.int64), pairs)


def template_phrases(splits: Iterable[Sequence[str | None]]) -> list[str]:
    """Template text shared by many rows of a split (see the module docstring), longest first.

    Texts are normalized (single spaces). Each split is sampled on its own: a template of train is
    also cut out of the evaluation texts, and the other way round."""
    found: set[str] = set()
    for texts in splits:
        step = max(1, math.ceil(len(texts) / TEMPLATE_SAMPLE))
        sample = [t.split() for t in texts[::step] if t]
        need = max(TEMPLATE_MIN_ROWS, math.ceil(TEMPLATE_SHARE * len(sample)))
        if len(sample) < need:
            continue
        m = TEMPLATE_WORDS
        held: Counter[tuple[str, ...]] = Counter()
        for words in sample:
            held.update(set(zip(*(words[i:] for i in range(m)), strict=False)))
        frequent = {g for g, c in held.items() if c >= need}
        if not frequent:
            continue
        spans: Counter[str] = Counter()
        for words in sample:
            covered = [False] * len(words)
            for i in range(len(words) - m + 1):
                if tuple(words[i : i + m]) in frequent:
                    covered[i : i + m] = [True] * m
            spans.update(set(_runs(words, covered)))
        found |= {p for p, c in spans.items() if c >= need}
    return sorted(found, key=lambda p: (-len(p), p))


def _runs(words: list[str], covered: list[bool]) -> list[str]:
    """The maximal runs of covered words, each as text."""
    out, run = [], []
    for w, c in zip(words, covered, strict=True):
        if c:
            run.append(w)
        elif run:
            out.append(" ".join(run))
            run = []
    if run:
        out.append(" ".join(run))
    return out


def split_templates(texts: pa.Array, phrases: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Each text cut at every template phrase (whole words only): the pieces, and the index of
    the text each piece came from (not decreasing). Null texts give no piece."""
    import numpy as np
    import pyarrow.compute as pc

    cut = texts
    for phrase in phrases:
        pattern = "(?:^| )" + "".join(c if c.isalnum() or c == " " else f"\\x{{{ord(c):x}}}" for c in phrase) + "(?: |$)"
        cut = pc.replace_substring_regex(cut, pattern, CUT)
    pieces = pc.split_pattern(cut, CUT)
    offsets = np.asarray(pieces.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    sizes = np.diff(offsets) * np.asarray(pc.is_valid(pieces).to_numpy(zero_copy_only=False), dtype=np.int64)
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), sizes)
    values = pieces.flatten().to_pylist()  # flatten drops the null rows' (empty) lists
    return [v.strip() for v in values], owner
