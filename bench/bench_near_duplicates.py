"""Near-duplicate detection: preflight's MinHash LSH against rensa (Rust) and datasketch.

Generates a seeded corpus (unrelated documents of 30-80 words drawn from a Zipf-like vocabulary,
plus planted pairs: a 60-word document and a copy with 1-3 words changed, or an exact copy), then
times, end to end from the texts:

(a) ``preflight.data.minhash.near_duplicate_pairs`` (128 hashes, threshold 0.8, word 5-gram
    shingles, candidates verified by exact Jaccard);
(b) rensa + exact verification, the speed peer: the same word 5-gram shingles as Python strings,
    ``RMinHash.from_token_sets(num_perm=128)`` (its batch API), ``RMinHashLSH(threshold=0.8,
    num_perm=128, num_bands=RENSA_BANDS)``, ``insert_many`` and ``query_all``, then every
    candidate pair verified by the exact Jaccard of its two shingle sets (Python sets), as
    preflight verifies its own. 16 bands of 8 rows is the fastest band count that reaches
    recall >= 0.99 here (8 bands: 0.47; 32 bands: 1.0 with more candidates, slower);
(c) datasketch: ``MinHash(num_perm=128)`` per document fed with ``update_batch`` over the same word
    5-gram shingles (UTF-8 bytes of the words joined by a space), ``MinHashLSH(threshold=0.8,
    num_perm=128)``, insert all, query all. Its candidate pairs are its output and are scored as
    they are; scores after exact verification are printed for information (not timed).

Truth: the planted pairs whose true Jaccard of 5-shingle sets is at least 0.8 (recall is measured
against them). A reported pair counts as correct for precision when its true Jaccard is at least
0.8, computed exactly on the shingle strings.

    .venv/bin/python bench/bench_near_duplicates.py              # 100k rows
    .venv/bin/python bench/bench_near_duplicates.py --quick      # 20k rows
    .venv/bin/python bench/bench_near_duplicates.py --rows 50000 --skip-datasketch
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from preflight.data.minhash import NearDupConfig, lsh_params, near_duplicate_pairs  # noqa: E402

NUM_PERM = 128
THRESHOLD = 0.8
K = 5
RENSA_BANDS = 16


def make_corpus(rows: int, seed: int = 0) -> tuple[list[str], list[tuple[int, int]]]:
    """Seeded texts and the planted near-duplicate pairs (i, j).

    ``rows // 20`` planted pairs with true Jaccard >= 0.8 (a tenth of them exact copies, the rest
    a 60-word document with 1-3 words changed), ``rows // 100`` hard-negative pairs (3-5 words
    changed, 0.5 <= J < 0.8) and unrelated documents of 30-80 words for the rest.
    """
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(20000)])
    cdf = np.cumsum(1.0 / np.arange(1, len(vocab) + 1))
    cdf /= cdf[-1]

    def doc(n_words: int) -> list[str]:
        return vocab[np.searchsorted(cdf, rng.random(n_words))].tolist()

    def true_j(a: list[str], b: list[str]) -> float:
        sa, sb = shingle_strings(" ".join(a)), shingle_strings(" ".join(b))
        return len(sa & sb) / len(sa | sb)

    def edited(base: list[str], lo: float, hi: float) -> list[str]:
        # Change 1-3 (near-duplicates) or 3-5 (hard negatives) words until lo <= J < hi.
        for _ in range(1000):
            copy = list(base)
            n_changes = int(rng.integers(1, 4)) if lo >= THRESHOLD else int(rng.integers(3, 6))
            for pos in rng.choice(len(base), size=n_changes, replace=False):
                copy[pos] = f"x{int(rng.integers(1_000_000))}"
            if lo <= true_j(base, copy) < hi:
                return copy
        raise RuntimeError("could not plant an edit in range")

    n_pos, n_neg = rows // 20, rows // 100
    texts: list[str | None] = [None] * rows
    slots = rng.permutation(rows)
    planted: list[tuple[int, int]] = []
    for p in range(n_pos + n_neg):
        i, j = int(slots[2 * p]), int(slots[2 * p + 1])
        base = doc(60)
        if p >= n_pos:  # a hard negative: 0.5 <= J < 0.8, not a near-duplicate
            copy = edited(base, 0.5, THRESHOLD)
        else:  # one in ten positives is an exact copy
            copy = list(base) if p % 10 == 0 else edited(base, THRESHOLD, 1.01)
            planted.append((min(i, j), max(i, j)))
        texts[i], texts[j] = " ".join(base), " ".join(copy)
    for s in slots[2 * (n_pos + n_neg) :]:
        texts[int(s)] = " ".join(doc(int(rng.integers(30, 81))))
    return [t for t in texts if t is not None], planted


def shingle_strings(text: str) -> set[bytes]:
    words = text.split()
    if len(words) < K:
        return {" ".join(words).encode("utf-8")} if words else set()
    return {" ".join(words[p : p + K]).encode("utf-8") for p in range(len(words) - K + 1)}


class TrueJaccard:
    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.cache: dict[int, set[bytes]] = {}

    def __call__(self, i: int, j: int) -> float:
        a = self.cache.setdefault(i, shingle_strings(self.texts[i]))
        b = self.cache.setdefault(j, shingle_strings(self.texts[j]))
        union = len(a | b)
        return len(a & b) / union if union else 0.0


def run_rensa_verified(texts: list[str], bands: int = RENSA_BANDS) -> set[tuple[int, int]]:
    """rensa's MinHash LSH candidates, each verified by the exact Jaccard of its shingle sets."""
    from rensa import RMinHash, RMinHashLSH

    shingles = []
    for text in texts:
        words = text.split()
        if len(words) < K:
            shingles.append([" ".join(words)] if words else [])
        else:
            shingles.append([" ".join(words[p : p + K]) for p in range(len(words) - K + 1)])
    sketches = RMinHash.from_token_sets(shingles, num_perm=NUM_PERM, seed=1)
    lsh = RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=bands)
    lsh.insert_many(sketches)
    candidates = {(min(i, j), max(i, j)) for i, found in enumerate(lsh.query_all(sketches)) for j in found if j != i}
    sets: dict[int, set[str]] = {}
    pairs: set[tuple[int, int]] = set()
    for i, j in candidates:
        a = sets.get(i) or sets.setdefault(i, set(shingles[i]))
        b = sets.get(j) or sets.setdefault(j, set(shingles[j]))
        inter = len(a & b)
        union = len(a) + len(b) - inter
        if union and inter / union >= THRESHOLD:
            pairs.add((i, j))
    return pairs


def run_datasketch(texts: list[str]) -> set[tuple[int, int]]:
    from datasketch import MinHash, MinHashLSH

    sketches = []
    for text in texts:
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch(list(shingle_strings(text)))
        sketches.append(m)
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    with lsh.insertion_session() as session:
        for i, m in enumerate(sketches):
            session.insert(i, m)
    pairs: set[tuple[int, int]] = set()
    for i, m in enumerate(sketches):
        for j in lsh.query(m):
            if j != i:
                pairs.add((min(i, j), max(i, j)))
    return pairs


def score(name: str, pairs: set[tuple[int, int]], truth: set[tuple[int, int]],
          jac: TrueJaccard) -> tuple[float, float]:
    correct = sum(1 for i, j in pairs if jac(i, j) >= THRESHOLD)
    recall = len(pairs & truth) / len(truth) if truth else 1.0
    precision = correct / len(pairs) if pairs else 1.0
    print(f"  {name:<34} pairs {len(pairs):>7}  recall {recall:.4f}  precision {precision:.4f}")
    return recall, precision


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="20k rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of preflight and rensa (best kept)")
    parser.add_argument("--skip-datasketch", action="store_true", help="only preflight and rensa")
    parser.add_argument("--skip-rensa", action="store_true", help="only preflight and datasketch")
    args = parser.parse_args(argv)
    rows = 20_000 if args.quick else args.rows

    texts, planted = make_corpus(rows, args.seed)
    jac = TrueJaccard(texts)
    truth = {p for p in planted if jac(*p) >= THRESHOLD}
    bands, r = lsh_params(NUM_PERM, THRESHOLD)
    print(f"{len(texts)} rows, {len(planted)} planted pairs, {len(truth)} with true Jaccard >= "
          f"{THRESHOLD} (the truth); {NUM_PERM} hashes, word {K}-gram shingles")
    print(f"preflight LSH: {bands} bands x {r} rows; candidates verified by exact Jaccard")

    cfg = NearDupConfig(num_perm=NUM_PERM, threshold=THRESHOLD, shingle_words=K)
    # Alternate the two timed contenders for --rounds rounds and keep each one's best time, so a
    # burst of load on a shared machine does not decide the ratio.
    t_ours = t_rensa = float("inf")
    rensa_pairs: set[tuple[int, int]] | None = None
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        ours = near_duplicate_pairs(texts, cfg)
        t_ours = min(t_ours, time.perf_counter() - t0)
        if args.skip_rensa:
            continue
        try:
            t0 = time.perf_counter()
            rensa_pairs = run_rensa_verified(texts)
            t_rensa = min(t_rensa, time.perf_counter() - t0)
        except ImportError:
            print("rensa is not installed (pip install -e '.[bench]'): skipped")
            args.skip_rensa = True
    t_theirs = float("nan")
    theirs: set[tuple[int, int]] = set()
    if not args.skip_datasketch:
        t0 = time.perf_counter()
        theirs = run_datasketch(texts)
        t_theirs = time.perf_counter() - t0

    print(f"time  preflight           {t_ours:8.2f} s (best of {args.rounds})")
    if rensa_pairs is not None:
        print(f"time  rensa + verify      {t_rensa:8.2f} s (best of {args.rounds}; {RENSA_BANDS} bands)")
    if not args.skip_datasketch:
        print(f"time  datasketch          {t_theirs:8.2f} s")
    ours_pairs = {(i, j) for i, j, _ in ours}
    rec, prec = score("preflight", ours_pairs, truth, jac)
    if rensa_pairs is not None:
        score("rensa + exact verify", rensa_pairs, truth, jac)
    if not args.skip_datasketch:
        score("datasketch (as is)", theirs, truth, jac)
        score("datasketch (after exact verify)", {p for p in theirs if jac(*p) >= THRESHOLD}, truth, jac)
    if rensa_pairs is not None:
        vs_rensa = t_rensa / t_ours
        print(f"ratio rensa + verify / preflight: {vs_rensa:.2f}x")
        print(f"as fast as rensa + verify (>= 1.0x): {'met' if vs_rensa >= 1.0 else 'not met'} ({vs_rensa:.2f}x)")
    if not args.skip_datasketch:
        ratio = t_theirs / t_ours
        print(f"ratio datasketch / preflight: {ratio:.1f}x")
        print(f">= 5x faster than datasketch: {'met' if ratio >= 5 else 'not met'} ({ratio:.1f}x)")
    print(f"recall >= 0.99: {'met' if rec >= 0.99 else 'not met'} ({rec:.4f})")
    print(f"precision >= 0.95: {'met' if prec >= 0.95 else 'not met'} ({prec:.4f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
