"""N-gram contamination: train rows sharing a word n-gram with evaluation texts.

The usual contamination test (13-gram overlap by default in the checks, configurable): a train row
is contaminated when any ``n`` consecutive words of it also occur, in order, in some evaluation text
(a val/test row or a benchmark file). Texts are already normalized (words separated by single
spaces); a text with fewer than ``n`` words has no n-grams and so can neither contaminate nor be
contaminated.

Words and n-grams are handled as columns, not Python strings: the evaluation texts' distinct words
are the vocabulary, each train word is looked up in it with Arrow's ``index_in`` (a train n-gram
holding a word no evaluation text has cannot be shared, so it is never hashed), and each n-gram is
a uint64 polynomial of random values drawn per vocabulary word, computed with numpy over the flat
word arrays. Two different n-grams share a hash with probability about 2**-64 per pair. On a
million rows this is an order of magnitude faster than hashing word strings in Python.

``overlap`` reports both sides: every train row sharing an n-gram with an evaluation text and every
evaluation row sharing one with a train text, each paired with a row of the other side.

Prompt templates are left out first (``template_phrases``): RL datasets often wrap every problem in
the same instruction ("let's think step by step and output the final answer after ..."), and an
n-gram spanning the end of one problem and such an instruction is shared by unrelated rows. A
template is word text that, in a sample of a split's rows, lies in 5-grams held by at least 20 %
(and at least 20) of the rows; ``split_templates`` cuts each text at every such phrase, and no
n-gram crosses a cut. An evaluation problem quoted in a train row is no template (it is in one or a
few rows), so it is still found; template text alone is never a leak.

numpy and pyarrow are imported where they are used, so importing this module (as `preflight
check` does) is cheap.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

TEMPLATE_WORDS = 5  # templates are found through word 5-grams ...
TEMPLATE_SHARE = 0.2  # ... that at least this share of a split's sampled rows hold ...
TEMPLATE_MIN_ROWS = 20  # ... and at least this many of them
TEMPLATE_SAMPLE = 5_000  # rows sampled per split (evenly spaced) to find templates
CUT = "\x00"  # what a template becomes in a text; texts are split there


CHUNK_TEXTS = 65_536  # train texts hashed at a time (bounds the flat word and n-gram arrays)
_MULTIPLIER = 0x9E3779B97F4A7C15  # odd: the polynomial's base
_SEED = 0x5EED_13  # the random word values are fixed, so results never depend on the run


@dataclass
class Overlap:
    """Rows of both sides that share an n-gram, and which row of the other side each shares it with."""

    train_rows: np.ndarray  # sorted int64 indices of train rows sharing an n-gram with an evaluation row
    train_partner: np.ndarray  # for each: the first evaluation row holding its first shared n-gram
    eval_rows: np.ndarray  # sorted int64 indices of evaluation rows sharing an n-gram with a train row
    eval_partner: np.ndarray  # for each: the first train row holding its first shared n-gram

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """(train, eval) row pairs naming every row involved on either side; sorted, no repeats."""
        return sorted({*zip(self.train_rows.tolist(), self.train_partner.tolist(), strict=True),
                       *zip(self.eval_partner.tolist(), self.eval_rows.tolist(), strict=True)})


def _as_array(texts: Sequence[str | None] | pa.Array) -> pa.Array:
    import pyarrow as pa

    if isinstance(texts, pa.ChunkedArray):
        return texts.combine_chunks()
    return texts if isinstance(texts, pa.Array) else pa.array(list(texts), pa.string())


def _word_ids(texts: pa.Array, vocabulary: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The flat vocabulary index of every word of the texts (-1: not in it), and each text's
    number of words (a null or empty text has none)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = pc.if_else(pc.equal(texts, ""), pa.scalar(None, pa.string()), texts)
    lists = pc.split_pattern(texts, " ")
    counts = np.asarray(pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False), np.int64)
    ids = pc.index_in(pc.list_flatten(lists), value_set=vocabulary)
    return np.asarray(pc.fill_null(ids, -1).to_numpy(zero_copy_only=False), np.int64), counts


def _ngram_values(ids: np.ndarray, counts: np.ndarray, n: int, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hash of every word n-gram without an unknown word, in text order, and its text."""
    import numpy as np

    per = np.maximum(counts - n + 1, 0)
    total = int(per.sum())
    if not total:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), per)
    text_start = np.cumsum(counts) - counts
    pos = np.arange(total, dtype=np.int64) + np.repeat(text_start - (np.cumsum(per) - per), per)
    values = table[ids]  # an unknown word (-1) takes the last entry; its n-grams are dropped below
    # every window of n flat words, by contiguous slices (fast), then the windows inside one text
    width = len(values) - n + 1
    windows = values[:width].copy()
    base = np.uint64(_MULTIPLIER)
    with np.errstate(over="ignore"):
        for k in range(1, n):
            windows *= base
            windows += values[k : k + width]
    hashed = windows[pos]
    unknown = ids < 0
    if unknown.any():
        seen = np.concatenate(([0], np.cumsum(unknown)))
        known = seen[pos + n] == seen[pos]
        hashed, owner = hashed[known], owner[known]
    return hashed, owner


class _Members:
    """Membership in a sorted array of distinct uint64 hashes: a bitmap of their top bits rules out
    almost every other value with one lookup, and only the few left are binary-searched. (np.isin
    hashes both arrays again on every call, and a binary search of each value misses the cache
    some twenty times: both are several times slower on a million rows.)"""

    def __init__(self, sorted_set: np.ndarray) -> None:
        import numpy as np

        self.values = sorted_set
        bits = int(min(26, max(10, math.ceil(math.log2(len(sorted_set) * 16 + 1)))))  # about 1/16 filled
        self.shift = np.uint64(64 - bits)
        self.bitmap = np.zeros(1 << bits, dtype=bool)
        self.bitmap[sorted_set >> self.shift] = True

    def __call__(self, values: np.ndarray) -> np.ndarray:
        import numpy as np

        found = np.zeros(len(values), dtype=bool)
        if not len(self.values):
            return found
        maybe = np.flatnonzero(self.bitmap[values >> self.shift])
        some = values[maybe]
        at = np.minimum(np.searchsorted(self.values, some), len(self.values) - 1)
        found[maybe] = self.values[at] == some
        return found


def _hashed_ngrams(texts: pa.Array, n: int, owner: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, pa.Array,
                                                                                np.ndarray]:
    """Every word n-gram of the texts hashed over the texts' own vocabulary: the hashes, their rows
    (through ``owner`` when given), and the vocabulary and word-value table that other texts must be
    hashed with to be compared."""
    import numpy as np
    import pyarrow.compute as pc

    vocabulary = pc.unique(pc.list_flatten(pc.split_pattern(pc.drop_null(texts), " ")))
    table = np.random.default_rng(_SEED).integers(0, np.iinfo(np.uint64).max, size=len(vocabulary) + 1,
                                                  dtype=np.uint64, endpoint=True)
    values, rows = _ngram_values(*_word_ids(texts, vocabulary), n, table)
    return values, (owner[rows] if owner is not None else rows), vocabulary, table


def overlap(train_texts: Sequence[str | None] | pa.Array, eval_texts: Sequence[str | None] | pa.Array, n: int = 13,
            train_owner: np.ndarray | None = None, eval_owner: np.ndarray | None = None) -> Overlap:
    """Every train row and every evaluation row that share a word ``n``-gram.

    Texts are normalized strings (a Python sequence or a pyarrow array). ``train_owner`` /
    ``eval_owner`` map each text to its row when a row was cut into several texts
    (``split_templates``); owners must not decrease. Without them each text is a row."""
    import numpy as np

    empty = np.empty(0, dtype=np.int64)
    nothing = Overlap(empty, empty, empty, empty)
    evals, train = _as_array(eval_texts), _as_array(train_texts)
    ev, eo, vocabulary, table = _hashed_ngrams(evals, n, eval_owner)
    if not len(ev):
        return nothing
    order = np.argsort(ev, kind="stable")  # stable: the first eval row first among equals
    sorted_values = ev[order]
    first = np.concatenate(([True], sorted_values[1:] != sorted_values[:-1]))
    uniq, uniq_row = sorted_values[first], eo[order][first]
    in_eval = _Members(uniq)
    hashes, owners = [], []
    for lo in range(0, len(train), CHUNK_TEXTS):
        values, owner = _ngram_values(*_word_ids(train.slice(lo, CHUNK_TEXTS), vocabulary), n, table)
        hit = in_eval(values)
        hashes.append(values[hit])
        rows = owner[hit] + lo
        owners.append(train_owner[rows] if train_owner is not None else rows)
    shared = np.concatenate(hashes) if hashes else np.empty(0, np.uint64)
    by_train = np.concatenate(owners) if owners else empty
    if not len(shared):
        return nothing
    firsts = np.concatenate(([True], by_train[1:] != by_train[:-1]))  # by_train does not decrease
    train_partner = uniq_row[np.searchsorted(uniq, shared[firsts])]
    distinct, at = np.unique(shared, return_index=True)  # each shared n-gram's first train row
    at_eval = np.flatnonzero(_Members(distinct)(ev))
    efirst = at_eval[np.concatenate(([True], eo[at_eval][1:] != eo[at_eval][:-1]))]
    eval_partner = by_train[at][np.searchsorted(distinct, ev[efirst])]
    return Overlap(by_train[firsts], train_partner.astype(np.int64), eo[efirst], eval_partner.astype(np.int64))


def shared_ngram_pairs(texts: Sequence[str | None] | pa.Array, n: int = 13,
                       owner: np.ndarray | None = None) -> np.ndarray:
    """Rows of ONE set that share a word ``n``-gram with another of its rows, as an ``(k, 2)``
    int64 array of pairs ``(first, row)``: each such row linked to the first row holding that
    n-gram, which is enough to join them all into one group (the splitter keeps such rows on one
    side, so that the contamination check finds nothing between the splits it writes). ``owner``
    maps texts to rows as in ``overlap``."""
    import numpy as np

    values, rows, _, _ = _hashed_ngrams(_as_array(texts), n, owner)
    if not len(values):
        return np.empty((0, 2), np.int64)
    order = np.lexsort((rows, values))  # by n-gram, then row: each run starts at its first row
    v, r = values[order], rows[order]
    starts = np.concatenate(([True], v[1:] != v[:-1]))
    first = r[starts][np.cumsum(starts) - 1]
    linked = r != first
    return np.unique(np.stack([first[linked], r[linked]], axis=1), axis=0).astype(np.int64)


def contaminated_rows(train_texts: Sequence[str], eval_texts: Sequence[str], n: int = 13,
                      max_examples: int = 5) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Train rows sharing at least one word ``n``-gram with any evaluation text: their sorted
    int64 indices, and up to ``max_examples`` ``(train_idx, eval_idx)`` pairs for the first of
    them (``eval_idx``: the first evaluation row holding that train row's first shared n-gram)."""
    found = overlap(train_texts, eval_texts, n)
    examples = list(zip(found.train_rows.tolist(), found.train_partner.tolist(), strict=True))[:max_examples]
    return found.train_rows, examples


def template_phrases(splits: Iterable[Sequence[str | None] | pa.Array]) -> list[str]:
    """Template text shared by many rows of a split (see the module docstring), longest first.

    Texts are normalized (single spaces). Each split is sampled on its own: a template of train is
    also cut out of the evaluation texts, and the other way round."""
    found: set[str] = set()
    for texts in splits:
        step = max(1, math.ceil(len(texts) / TEMPLATE_SAMPLE))
        sample = [t.split() for t in _every(texts, step) if t]
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


def _every(texts: Sequence[str | None] | pa.Array, step: int) -> list[str | None]:
    """Every ``step``-th text, as Python strings (an Arrow array converts only those)."""
    import pyarrow as pa

    if isinstance(texts, pa.Array | pa.ChunkedArray):
        import numpy as np

        return list(texts.take(pa.array(np.arange(0, len(texts), step))).to_pylist())
    return list(texts[::step])


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


def split_templates(texts: pa.Array, phrases: Sequence[str]) -> tuple[pa.Array, np.ndarray | None]:
    """Each text cut at every template phrase (whole words only): the pieces, and the index of
    the text each piece came from (not decreasing). Null texts give no piece. Without phrases: the
    texts themselves, and None (each piece is its own text)."""
    import numpy as np
    import pyarrow.compute as pc

    if not phrases:
        return texts, None
    cut = texts
    for phrase in phrases:
        pattern = "(?:^| )" + "".join(c if c.isalnum() or c == " " else f"\\x{{{ord(c):x}}}" for c in phrase) + "(?: |$)"
        cut = pc.replace_substring_regex(cut, pattern, CUT)
    pieces = pc.split_pattern(cut, CUT)
    sizes = np.asarray(pc.fill_null(pc.list_value_length(pieces), 0).to_numpy(zero_copy_only=False), np.int64)
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), sizes)
    return pc.utf8_trim(pc.list_flatten(pieces), " "), owner
