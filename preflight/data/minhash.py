"""Near-duplicate detection: MinHash signatures, LSH banding, exact Jaccard verification.

The pipeline over a list of already-normalized texts:

1. **Shingles.** Each text is split on whitespace (exactly ``str.split()``'s words); every word
   gets a stable 64-bit id, a hash of its UTF-8 bytes computed for all words of a chunk of texts at
   once with numpy (never Python's salted ``hash()``, no Python object per word: see
   ``_text_words``), and each run of ``k`` consecutive words is
   combined into one uint64 by a Horner polynomial in wrapping uint64 arithmetic, followed by the
   murmur3 64-bit finalizer. A text with fewer than ``k`` words yields one shingle of all its words;
   an empty text yields none. The same hashes serve the n-gram contamination check
   (:mod:`preflight.data.ngrams`), so the two agree on what a word n-gram is.
2. **Signatures.** ``num_perm`` hash functions ``x -> a*x + b (mod 2**64)`` (``a`` odd, seeded)
   are applied to all shingles of a chunk of documents at once, and ``np.minimum.reduceat`` takes
   the per-document minimum. Ordering by the full 64-bit value and keeping its top 32 bits is the
   same as the minimum of the top 32 bits (multiply-shift hashing), so signatures are uint32.
   Documents without shingles get the all-``SENTINEL`` row, which LSH ignores.
3. **Candidates.** Rows with identical signatures are first collapsed into one cluster each, linked
   as a *star* (the cluster's smallest index paired with every other member) instead of all pairs,
   so a thousand copies of one text cost a thousand pairs, not half a million. The remaining
   distinct rows are cut into ``b`` bands of ``r`` rows (chosen like datasketch's
   ``_optimal_param`` but biased toward recall, see :func:`lsh_params`); rows whose band hashes
   agree share a bucket. A bucket larger than ``max_bucket`` is ordered by the next band's hash and
   paired only within consecutive blocks of ``max_bucket`` members, so it grows linearly.
4. **Verification.** Every candidate pair's exact Jaccard similarity of the shingle-hash sets is
   computed; only pairs at or above the threshold are returned.

Because identical clusters are stars and big buckets are blocked, the returned pairs are a set of
edges whose connected components (:func:`duplicate_groups`) are the near-duplicate groups, not
necessarily every pair of near-duplicates. With ``groups`` and ``cross_only=True`` the pairs are
expanded across identical clusters so that every row with a verified near-duplicate in another
group appears in at least one returned pair with a row of each such group.

numpy is imported inside the functions (the constants below are plain ints, made uint64 where
used): `preflight check` imports this module even when the spec has no data.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

SENTINEL = 0xFFFFFFFF  # the signature value (uint32) of a document with no shingles
_POLY = 0x9E3779B97F4A7C15  # odd multiplier of the Horner polynomial over word ids
_SHORT_TAG = 0xD6E8FEB86659FD93  # mixed into the one shingle of a text shorter than k words
_FMIX1 = 0xFF51AFD7ED558CCD
_FMIX2 = 0xC4CEB9FE1A85EC53
_TEXT_CHUNK = 32768  # documents tokenized at a time (bounds the byte buffer and word arrays held at once)
_LEN_MULT = 0x87C37B91114253D5  # a word's hash starts from its byte length times this
_BLOCK_MULT = 0x4CF5AD432745937F  # odd multiplier applied after each 8-byte block
# Python's whitespace (str.isspace) in UTF-8: single bytes, and the multi-byte characters.
_SPACE_CODES = (9, 10, 11, 12, 13, 28, 29, 30, 31, 32)
_WIDE_SPACES = tuple(chr(c).encode() for c in (0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029,
                                               0x202F, 0x205F, 0x3000))
_SHINGLE_CHUNK = 1 << 18  # shingles hashed at a time in signatures (2 MiB buffers stay in cache)


@dataclass
class NearDupConfig:
    """Parameters of near-duplicate detection (defaults are the field's usual ones)."""

    num_perm: int = 128  # MinHash hash functions
    threshold: float = 0.8  # Jaccard similarity of word shingle sets to count as near-duplicate
    shingle_words: int = 5  # words per shingle
    seed: int = 1  # seeds the hash functions (signatures are comparable only under one seed)
    max_bucket: int = 200  # an LSH bucket larger than this is paired in blocks of this size


def _checked(cfg: NearDupConfig | None) -> NearDupConfig:
    cfg = cfg or NearDupConfig()
    if cfg.num_perm < 1 or cfg.shingle_words < 1 or cfg.max_bucket < 2:
        raise ValueError(f"num_perm and shingle_words must be >= 1 and max_bucket >= 2: {cfg}")
    if not 0.0 < cfg.threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {cfg.threshold}")
    return cfg


# ----------------------------------------------------------------------------------- hashing


@lru_cache(maxsize=1)
def _space_bytes() -> np.ndarray:
    """Which byte values are whitespace on their own (str.isspace's ASCII characters)."""
    import numpy as np

    space = np.zeros(256, dtype=bool)
    space[list(_SPACE_CODES)] = True
    return space


def _word_hashes(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The uint64 id of each byte span ``buf[starts[i] : starts[i] + lengths[i]]``, all at once.

    The span is read in little-endian 8-byte blocks (the last one zero-padded); each block is
    xor-ed into the state, multiplied by an odd constant and folded (``h ^= h >> 29``), starting
    from the length times another constant; murmur3's finalizer mixes the result. For spans of
    up to 8 bytes (most words) the map is one-to-one per length. ``buf`` must hold 8 bytes past
    its last span (they are read and masked off).
    """
    import numpy as np

    n = len(starts)
    h = lengths.astype(np.uint64) * np.uint64(_LEN_MULT)
    if not n:
        return h
    # A uint64 view starting at every byte (unaligned reads): one gather reads a whole block.
    window = np.ndarray(shape=(len(buf) - 7,), dtype="<u8", buffer=buf, offset=0, strides=(1,))
    blocks = (lengths + 7) // 8
    mult, shift = np.uint64(_BLOCK_MULT), np.uint64(29)
    for j in range(int(blocks.max())):
        sel = np.flatnonzero(blocks > j) if j else None  # spans longer than j blocks
        pos = starts + 8 * j if sel is None else starts[sel] + 8 * j
        left = (lengths if sel is None else lengths[sel]) - 8 * j
        # Keep the span's own bytes of the block: shift the bytes past its end out and back.
        drop = np.uint64(64) - (np.minimum(left, 8).astype(np.uint64) << np.uint64(3))
        block = window[pos] << drop
        block >>= drop
        part = h if sel is None else h[sel]
        part ^= block
        part *= mult
        part ^= part >> shift
        if sel is not None:
            h[sel] = part
    return _fmix64(h)


def _text_words(texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Word ids of texts laid end to end, and each text's word count.

    Words are exactly ``str.split()``'s: runs of characters other than Unicode whitespace. The
    texts are encoded and joined by a space into one buffer; the multi-byte whitespace
    characters are overwritten with spaces of the same byte length, so one table lookup per byte
    finds every boundary, and a word's id is the hash of its UTF-8 bytes (``_word_hashes``).
    """
    import numpy as np

    encoded = [t.encode("utf-8", "surrogatepass") if t else b"" for t in texts]
    data = b" ".join(encoded)
    if not data.isascii():
        for seq in _WIDE_SPACES:
            if seq in data:
                data = data.replace(seq, b" " * len(seq))
    n = len(data)
    buf = np.frombuffer(data + bytes(8), dtype=np.uint8)
    space = _space_bytes()[buf[:n]]
    word = ~space
    starts = np.flatnonzero(word & np.concatenate(([True], space[:-1])))
    ends = np.flatnonzero(word & np.concatenate((space[1:], [True]))) + 1
    sizes = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)) + 1  # with the joining space
    text_end = np.cumsum(sizes)
    counts = np.diff(np.searchsorted(starts, text_end - sizes), append=len(starts)).astype(np.int64)
    return _word_hashes(buf, starts, ends - starts), counts


def word_ids(words: Sequence[str]) -> np.ndarray:
    """Stable uint64 id of each word (a hash of its UTF-8 bytes): equal across processes."""
    import numpy as np

    encoded = [w.encode("utf-8", "surrogatepass") for w in words]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    buf = np.frombuffer(b"".join(encoded) + bytes(8), dtype=np.uint8)
    return _word_hashes(buf, np.cumsum(lengths) - lengths, lengths)


def _fmix64(x: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finalizer, in place."""
    import numpy as np

    s33 = np.uint64(33)
    x ^= x >> s33
    x *= np.uint64(_FMIX1)
    x ^= x >> s33
    x *= np.uint64(_FMIX2)
    x ^= x >> s33
    return x


def _kgrams(ids: np.ndarray, lengths: np.ndarray, k: int, short_as_one: bool) -> tuple[np.ndarray, np.ndarray]:
    """Word k-gram hashes of documents laid end to end.

    ``ids`` holds the word ids of all documents in order, ``lengths`` each document's word count.
    Returns the flat hashes (document order, then position) and the count per document. A document
    shorter than ``k`` words yields one hash of all its words when ``short_as_one``, else none.
    """
    import numpy as np

    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    lengths = np.asarray(lengths, dtype=np.int64)
    n_words = len(ids)
    starts = np.cumsum(lengths) - lengths
    long = lengths >= k
    counts = np.where(long, lengths - k + 1, 0)
    short = np.flatnonzero((lengths > 0) & ~long) if short_as_one else np.empty(0, np.int64)
    counts[short] = 1
    out_starts = np.cumsum(counts) - counts
    out = np.empty(int(counts.sum()), dtype=np.uint64)
    docs = np.flatnonzero(long)
    poly = np.uint64(_POLY)
    if len(docs):
        acc = ids[: n_words - k + 1].copy()
        for j in range(1, k):  # Horner: acc[p] = poly(ids[p], ..., ids[p + k - 1])
            acc *= poly
            acc += ids[j : n_words - k + 1 + j]
        c = counts[docs]
        within = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
        out[np.repeat(out_starts[docs], c) + within] = acc[np.repeat(starts[docs], c) + within]
    if len(short):
        first = starts[short]
        n = lengths[short]
        h = ids[first].copy()
        for j in range(1, k - 1):
            more = np.flatnonzero(n > j)
            h[more] = h[more] * poly + ids[first[more] + j]
        h ^= n.astype(np.uint64) * np.uint64(_SHORT_TAG)
        out[out_starts[short]] = h
    return _fmix64(out), counts


def shingle_corpus(texts: Sequence[str], k: int, short_as_one: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Word ``k``-gram hashes of every text, flat, and offsets (``len(texts) + 1`` of them).

    Text ``i``'s hashes are ``values[offsets[i]:offsets[i + 1]]``, in text order. A text shorter
    than ``k`` words yields one hash of all its words when ``short_as_one`` (MinHash shingles),
    none otherwise (n-grams). Texts are tokenized a chunk at a time to bound memory.
    """
    import numpy as np

    values: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    for lo in range(0, len(texts), _TEXT_CHUNK):
        ids, lengths = _text_words(texts[lo : lo + _TEXT_CHUNK])
        v, c = _kgrams(ids, lengths, k, short_as_one)
        values.append(v)
        counts.append(c)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    if counts:
        np.cumsum(np.concatenate(counts), out=offsets[1:])
    flat = np.concatenate(values) if values else np.empty(0, np.uint64)
    return flat, offsets


def shingle_hashes(text: str, k: int) -> np.ndarray:
    """uint64 hashes of the word ``k``-grams of a normalized text, in order (may repeat).

    A text with fewer than ``k`` words yields one shingle of all its words; an empty text none.
    Deterministic across processes and machines.
    """
    values, _ = shingle_corpus([text], k)
    return values


# -------------------------------------------------------------------------------- signatures


def _hash_params(cfg: NearDupConfig) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    rng = np.random.default_rng(cfg.seed)
    a = rng.integers(0, 2**64, size=cfg.num_perm, dtype=np.uint64, endpoint=False) | np.uint64(1)
    b = rng.integers(0, 2**64, size=cfg.num_perm, dtype=np.uint64, endpoint=False)
    return a, b


def _signatures_flat(values: np.ndarray, offsets: np.ndarray, cfg: NearDupConfig) -> np.ndarray:
    import numpy as np

    n = len(offsets) - 1
    sig = np.full((n, cfg.num_perm), SENTINEL, dtype=np.uint32)
    a, b = _hash_params(cfg)
    counts = np.diff(offsets)
    docs = np.flatnonzero(counts > 0)
    buf = np.empty(min(len(values), _SHINGLE_CHUNK), dtype=np.uint64)
    i = 0
    while i < len(docs):
        # The largest run of non-empty documents whose shingles fit a chunk (at least one).
        j = int(np.searchsorted(offsets[docs + 1], offsets[docs[i]] + _SHINGLE_CHUNK, "right"))
        j = max(j, i + 1)
        chunk_docs = docs[i:j]
        lo, hi = int(offsets[chunk_docs[0]]), int(offsets[chunk_docs[-1] + 1])
        x = values[lo:hi]
        if len(buf) < len(x):
            buf = np.empty(len(x), dtype=np.uint64)
        h = buf[: len(x)]
        seg = offsets[chunk_docs] - lo
        mins = np.empty((len(chunk_docs), cfg.num_perm), dtype=np.uint64)
        for p in range(cfg.num_perm):
            np.multiply(x, a[p], out=h)
            h += b[p]
            np.minimum.reduceat(h, seg, out=mins[:, p])
        mins >>= np.uint64(32)
        sig[chunk_docs] = mins
        i = j
    return sig


def signatures(shingles: list[np.ndarray], cfg: NearDupConfig | None = None) -> np.ndarray:
    """(n_docs, num_perm) uint32 MinHash matrix of per-document shingle hash arrays.

    Documents with no shingles get an all-``SENTINEL`` row, which :func:`lsh_candidates` skips.
    """
    import numpy as np

    cfg = _checked(cfg)
    offsets = np.zeros(len(shingles) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in shingles], out=offsets[1:])
    values = (np.concatenate([np.asarray(s, dtype=np.uint64) for s in shingles])
              if shingles else np.empty(0, np.uint64))
    return _signatures_flat(values, offsets, cfg)


# ----------------------------------------------------------------------------------------- LSH


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    import numpy as np

    return float(((y[1:] + y[:-1]) * np.diff(x)).sum() / 2)


def _optimal_param(threshold: float, num_perm: int, fp_weight: float, fn_weight: float) -> tuple[int, int]:
    """datasketch's criterion: the (bands, rows) minimizing the weighted areas of false positives
    (candidate probability below ``threshold``) and false negatives (its complement above)."""
    import numpy as np

    best, best_err = (1, 1), float("inf")
    below = np.linspace(0.0, threshold, 1001)
    above = np.linspace(threshold, 1.0, 1001)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = _trapezoid(1 - (1 - below**r) ** b, below)
            fn = _trapezoid((1 - above**r) ** b, above)
            err = fp_weight * fp + fn_weight * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


_PARAM_CACHE: dict[tuple[int, float], tuple[int, int]] = {}


def lsh_params(num_perm: int, threshold: float) -> tuple[int, int]:
    """(bands, rows per band) for the candidate search.

    datasketch's ``_optimal_param`` tuned for ``threshold - 0.1`` with false negatives weighted
    0.8 and false positives 0.2: every candidate is verified by its exact Jaccard afterwards, so a
    false positive costs one set intersection while a false negative is a missed duplicate. For
    128 hashes at 0.8 this gives 18 bands of 7 rows: a pair at Jaccard 0.8 becomes a candidate
    with probability about 0.986 (0.999 at 0.85), versus 0.40 for datasketch's 9 x 13 at 0.8.
    """
    key = (num_perm, round(threshold, 6))
    if key not in _PARAM_CACHE:
        tune = min(max(threshold - 0.1, 0.05), 0.95)
        _PARAM_CACHE[key] = _optimal_param(tune, num_perm, 0.2, 0.8)
    return _PARAM_CACHE[key]


def _row_hash(block: np.ndarray, seed: int) -> np.ndarray:
    """One uint64 per row of a uint32 matrix (random odd multipliers; equal rows hash equal)."""
    import numpy as np

    mult = np.random.default_rng([seed, block.shape[1]]).integers(
        0, 2**64, size=block.shape[1], dtype=np.uint64) | np.uint64(1)
    acc = np.empty(block.shape[0], dtype=np.uint64)
    for lo in range(0, block.shape[0], 4096):  # row chunks that stay in cache
        part = block[lo : lo + 4096].astype(np.uint64)
        part *= mult
        part.sum(axis=1, dtype=np.uint64, out=acc[lo : lo + 4096])  # wraps mod 2**64
    return _fmix64(acc)


def _identical_reps(sig: np.ndarray) -> np.ndarray:
    """For each row, the smallest index with an identical signature (-1 for sentinel rows)."""
    import numpy as np

    n = sig.shape[0]
    rep = np.arange(n, dtype=np.int64)
    if n == 0:
        return rep
    valid = ~(sig == np.uint32(SENTINEL)).all(axis=1)
    rep[~valid] = -1
    idx = np.flatnonzero(valid)
    if len(idx) < 2:
        return rep
    keys = _row_hash(sig[idx], seed=0x5EED)
    perm = np.argsort(keys, kind="stable")  # stable: ascending index within equal keys
    order, ks = idx[perm], keys[perm]
    run_start = np.flatnonzero(np.concatenate(([True], ks[1:] != ks[:-1])))
    sizes = np.diff(np.append(run_start, len(ks)))
    first = np.repeat(order[run_start], sizes)
    dup = np.flatnonzero(order != first)
    if len(dup):
        # Compare the rows themselves: guards against 64-bit hash collisions.
        same = (sig[order[dup]] == sig[first[dup]]).all(axis=1)
        rep[order[dup[same]]] = first[dup[same]]
    return rep


def _pairs_in_runs(order: np.ndarray, keys: np.ndarray, next_keys: np.ndarray,
                   max_bucket: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs within runs of equal ``keys`` (``order`` sorted by key); runs larger than
    ``max_bucket`` are re-sorted by ``next_keys`` and paired within blocks of ``max_bucket``."""
    import numpy as np

    m = len(order)
    if m < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    run_start = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    run_end = np.append(run_start[1:], m)
    sizes = run_end - run_start
    block_start = [run_start[sizes >= 2]]
    block_end = [run_end[sizes >= 2]]
    big = np.flatnonzero(sizes > max_bucket)
    if len(big):
        order = order.copy()
        keep = sizes[sizes >= 2] <= max_bucket
        block_start, block_end = [block_start[0][keep]], [block_end[0][keep]]
        for r in big:
            s, e = int(run_start[r]), int(run_end[r])
            members = order[s:e]
            order[s:e] = members[np.argsort(next_keys[members], kind="stable")]
            starts = np.arange(s, e, max_bucket)
            block_start.append(starts)
            block_end.append(np.minimum(starts + max_bucket, e))
    bs = np.concatenate(block_start)
    be = np.concatenate(block_end)
    lens = be - bs
    pos = np.repeat(bs, lens) + (np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens))
    end_at = np.zeros(m, dtype=np.int64)
    end_at[pos] = np.repeat(be, lens)
    left: list[np.ndarray] = []
    right: list[np.ndarray] = []
    d = 1
    # Offsets d = 1, 2, ...: position p pairs with p + d while both lie in the same block.
    while len(pos):
        pos = pos[pos + d < end_at[pos]]
        if not len(pos):
            break
        left.append(order[pos])
        right.append(order[pos + d])
        d += 1
    if not left:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(left), np.concatenate(right)


def _band_candidates(sig: np.ndarray, rows: np.ndarray, cfg: NearDupConfig) -> np.ndarray:
    """Pairs of ``rows`` sharing at least one band bucket, as sorted unique (i, j), i < j."""
    import numpy as np

    bands, r = lsh_params(cfg.num_perm, cfg.threshold)
    if len(rows) < 2:
        return np.empty((0, 2), dtype=np.int64)
    sub = sig if len(rows) == len(sig) else sig[rows]
    keys = [_row_hash(sub[:, i * r : (i + 1) * r], seed=cfg.seed + i) for i in range(bands)]
    codes: list[np.ndarray] = []
    for i in range(bands):
        order = np.argsort(keys[i], kind="stable")
        left, right = _pairs_in_runs(order, keys[i][order], keys[(i + 1) % bands], cfg.max_bucket)
        if len(left):
            a, b = rows[left], rows[right]
            codes.append(np.minimum(a, b) * len(sig) + np.maximum(a, b))
    if not codes:
        return np.empty((0, 2), dtype=np.int64)
    code = np.unique(np.concatenate(codes))
    return np.stack([code // len(sig), code % len(sig)], axis=1)


def _star_pairs(rep: np.ndarray) -> np.ndarray:
    import numpy as np

    members = np.flatnonzero((rep >= 0) & (rep != np.arange(len(rep))))
    return np.stack([rep[members], members], axis=1).astype(np.int64)


def lsh_candidates(sig: np.ndarray, cfg: NearDupConfig | None = None) -> np.ndarray:
    """(m, 2) int64 candidate pairs ``i < j`` from MinHash signatures, sorted, unique.

    Rows with identical signatures form one cluster linked as a star (smallest index to each
    other member), not all pairs; the distinct signatures then go through LSH banding
    (:func:`lsh_params`), with buckets over ``cfg.max_bucket`` members ordered by the next band's
    hash and paired only within consecutive blocks of ``max_bucket``. So the result does not list
    every pair of an identical cluster (take the connected components, :func:`duplicate_groups`),
    and an oversized bucket is searched only partly (its members usually share other bands too).
    Sentinel rows (no shingles) never appear.
    """
    import numpy as np

    cfg = _checked(cfg)
    rep = _identical_reps(sig)
    rows = np.flatnonzero(rep == np.arange(len(rep)))
    pairs = np.concatenate([_star_pairs(rep), _band_candidates(sig, rows, cfg)])
    if not len(pairs):
        return pairs
    code = np.unique(pairs[:, 0] * len(sig) + pairs[:, 1])
    return np.stack([code // len(sig), code % len(sig)], axis=1)


# ------------------------------------------------------------------------------- verification


class _Sets:
    """Shingle sets of documents, built on first use, and their exact Jaccard similarity."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray) -> None:
        self._values, self._offsets = values, offsets
        self._sets: dict[int, frozenset[int]] = {}

    def get(self, i: int) -> frozenset[int]:
        s = self._sets.get(i)
        if s is None:
            s = frozenset(self._values[self._offsets[i] : self._offsets[i + 1]].tolist())
            self._sets[i] = s
        return s

    def jaccard(self, i: int, j: int) -> float:
        a, b = self.get(i), self.get(j)
        inter = len(a & b) if len(a) <= len(b) else len(b & a)
        union = len(a) + len(b) - inter
        return inter / union if union else 0.0


def _cross_expand(verified: list[tuple[int, int]], rep: np.ndarray,
                  groups: np.ndarray) -> set[tuple[int, int]]:
    """Cross-group pairs implied by verified pairs and identical-signature clusters.

    Every member of a cluster is paired with the first member of each other group in its own
    cluster, and, for each verified pair between clusters, with the first member of each other
    group in the other cluster. Linear in cluster sizes times the number of groups.
    """
    import numpy as np

    members: dict[int, list[int]] = {}
    for c in {int(rep[i]) for pair in verified for i in pair}:
        members[c] = [c]
    if members:
        others = np.flatnonzero((rep >= 0) & (rep != np.arange(len(rep))))
        for m in others[np.isin(rep[others], list(members))].tolist():
            members[int(rep[m])].append(m)
    first: dict[int, dict[int, int]] = {}
    for c, ms in members.items():
        f: dict[int, int] = {}
        for m in ms:
            f.setdefault(int(groups[m]), m)
        first[c] = f

    out: set[tuple[int, int]] = set()

    def link(xs: list[int], target: dict[int, int]) -> None:
        for x in xs:
            gx = int(groups[x])
            for g, y in target.items():
                if g != gx and x != y:
                    out.add((min(x, y), max(x, y)))

    linked: set[tuple[int, int]] = set()
    for i, j in verified:
        ci, cj = int(rep[i]), int(rep[j])
        for c, d in ((ci, cj), (cj, ci)):
            if (c, d) not in linked:
                linked.add((c, d))
                link(members[c], first[d])
    return out


def near_duplicate_pairs(texts: Sequence[str], cfg: NearDupConfig | None = None,
                         groups: Sequence[int] | np.ndarray | None = None,
                         cross_only: bool = False) -> list[tuple[int, int, float]]:
    """Verified near-duplicate pairs ``(i, j, jaccard)``, ``i < j``, sorted, of normalized texts.

    ``jaccard`` is the exact Jaccard similarity of the two texts' word-shingle hash sets and is at
    least ``cfg.threshold``. Identical texts are linked as a star, so the pairs connect each group
    without listing all of its pairs (see :func:`lsh_candidates`). With ``groups`` (one label per
    text, e.g. the split) and ``cross_only=True``, only pairs whose groups differ are returned,
    expanded so that each text with a near-duplicate in another group is paired with a text of
    every such group.
    """
    import numpy as np

    cfg = _checked(cfg)
    if cross_only and groups is None:
        raise ValueError("cross_only=True needs groups")
    if groups is not None and len(groups) != len(texts):
        raise ValueError(f"groups has {len(groups)} labels for {len(texts)} texts")
    values, offsets = shingle_corpus(texts, cfg.shingle_words)
    sig = _signatures_flat(values, offsets, cfg)
    rep = _identical_reps(sig)
    rows = np.flatnonzero(rep == np.arange(len(rep)))
    sets = _Sets(values, offsets)
    stars = _star_pairs(rep)
    bands = _band_candidates(sig, rows, cfg)
    threshold = cfg.threshold
    # A star member whose exact Jaccard with its representative falls short (two different
    # shingle sets with equal signatures: vanishingly rare) is dropped with its star pair.
    verified: list[tuple[int, int]] = []
    scores: dict[tuple[int, int], float] = {}
    for i, j in itertools.chain(stars.tolist(), bands.tolist()):
        jac = sets.jaccard(i, j)
        if jac >= threshold:
            verified.append((i, j))
            scores[(i, j)] = jac
    if cross_only:
        g = np.asarray(groups)
        out: list[tuple[int, int, float]] = []
        for i, j in sorted(_cross_expand(verified, rep, g)):
            jac = scores[(i, j)] if (i, j) in scores else sets.jaccard(i, j)
            if jac >= threshold:
                out.append((i, j, jac))
        return out
    return sorted((i, j, scores[(i, j)]) for i, j in verified)


def duplicate_groups(n: int, pairs: Iterable[tuple[int, ...]]) -> np.ndarray:
    """Connected components of ``n`` indices under ``pairs`` (union-find).

    Each pair's first two entries are the indices (so the ``(i, j, jaccard)`` triples of
    :func:`near_duplicate_pairs` work as they are). Returns an int64 array whose entry ``k`` is the
    smallest index in ``k``'s component; a row with no pair is its own label.
    """
    import numpy as np

    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for pair in pairs:
        a, b = find(int(pair[0])), find(int(pair[1]))
        if a != b:
            if a < b:
                parent[b] = a
            else:
                parent[a] = b
    return np.fromiter((find(x) for x in range(n)), dtype=np.int64, count=n)
