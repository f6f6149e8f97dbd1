"""Near-duplicate detection: MinHash LSH recall and precision on planted data, and its edge cases."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preflight.data.minhash import (
    SENTINEL,
    NearDupConfig,
    duplicate_groups,
    lsh_candidates,
    lsh_params,
    near_duplicate_pairs,
    shingle_corpus,
    shingle_hashes,
    signatures,
    word_ids,
)

REPO = Path(__file__).resolve().parent.parent
K = 5
VOCAB = [f"v{i}" for i in range(3000)]


def true_jaccard(a: str, b: str, k: int = K) -> float:
    def shingles(text: str) -> set[tuple[str, ...]]:
        w = text.split()
        if len(w) < k:
            return {tuple(w)} if w else set()
        return {tuple(w[p : p + k]) for p in range(len(w) - k + 1)}

    sa, sb = shingles(a), shingles(b)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 0.0


def make_corpus(n_docs: int, seed: int) -> tuple[list[str], list[tuple[int, int]]]:
    """Unrelated docs of 30-80 words, planted edits (1-3 words of a 60-word doc changed) and exact
    copies, shuffled. Returns the texts and the planted (i, j) pairs."""
    rng = np.random.default_rng(seed)

    def doc(n: int) -> list[str]:
        return [VOCAB[i] for i in rng.integers(0, len(VOCAB), n)]

    items: list[tuple[str, int]] = []  # (text, planted pair id or -1)
    n_edit, n_copy = n_docs // 10, n_docs // 50
    for p in range(n_edit + n_copy):
        base = doc(60)
        copy = list(base)
        if p < n_edit:
            for pos in rng.choice(60, size=int(rng.integers(1, 4)), replace=False):
                copy[pos] = f"new{p}_{pos}"
        items += [(" ".join(base), p), (" ".join(copy), p)]
    while len(items) < n_docs:
        items.append((" ".join(doc(int(rng.integers(30, 81)))), -1))
    order = rng.permutation(len(items))
    texts = [items[k][0] for k in order]
    where: dict[int, list[int]] = {}
    for pos, k in enumerate(order):
        if items[k][1] >= 0:
            where.setdefault(items[k][1], []).append(pos)
    return texts, [(min(v), max(v)) for v in where.values()]


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[tuple[int, int]]]:
    return make_corpus(5000, seed=7)


def test_recall_and_precision_on_planted_near_duplicates(corpus: tuple[list[str], list[tuple[int, int]]]) -> None:
    texts, planted = corpus
    positives = {p for p in planted if true_jaccard(texts[p[0]], texts[p[1]]) >= 0.8}
    assert len(positives) > 200  # enough planted positives for the rates to mean something
    assert len(positives) < len(planted)  # and some planted edits fall below the threshold

    pairs = near_duplicate_pairs(texts)
    found = {(i, j) for i, j, _ in pairs}
    recall = len(found & positives) / len(positives)
    assert recall >= 0.95, recall
    for i, j, jac in pairs:  # precision 1.0: every pair is verified with its real Jaccard
        assert i < j
        assert jac == pytest.approx(true_jaccard(texts[i], texts[j]))
        assert jac >= 0.8
    assert pairs == sorted(pairs)


def test_cross_only_returns_only_pairs_across_groups(corpus: tuple[list[str], list[tuple[int, int]]]) -> None:
    texts, _ = corpus
    groups = np.random.default_rng(3).integers(0, 3, len(texts))
    every = near_duplicate_pairs(texts)
    cross = near_duplicate_pairs(texts, groups=groups, cross_only=True)
    assert cross
    assert all(groups[i] != groups[j] for i, j, _ in cross)
    assert {(i, j) for i, j, _ in cross} == {(i, j) for i, j, _ in every if groups[i] != groups[j]}
    with pytest.raises(ValueError):
        near_duplicate_pairs(texts, cross_only=True)


def test_identical_texts_link_as_a_star_not_all_pairs() -> None:
    rng = np.random.default_rng(1)
    same = " ".join(VOCAB[i] for i in rng.integers(0, len(VOCAB), 50))
    others = [" ".join(VOCAB[i] for i in rng.integers(0, len(VOCAB), 50)) for _ in range(200)]
    texts = others[:100] + [same] * 1000 + others[100:]
    start = time.perf_counter()
    pairs = near_duplicate_pairs(texts)
    assert time.perf_counter() - start < 5
    assert len(pairs) == 999  # a star around the first copy, not 499,500 pairs
    assert all(jac == 1.0 for _, _, jac in pairs)
    labels = duplicate_groups(len(texts), pairs)
    assert set(labels[100:1100].tolist()) == {100}
    assert labels[:100].tolist() == list(range(100))


def test_cross_only_pairs_every_copy_with_each_other_group() -> None:
    rng = np.random.default_rng(2)
    base = [VOCAB[i] for i in rng.integers(0, len(VOCAB), 60)]
    near = list(base)
    near[30] = "changed"
    texts = [" ".join(base)] * 6 + [" ".join(near)] * 3
    groups = [0, 0, 1, 1, 2, 0, 1, 1, 0]
    pairs = near_duplicate_pairs(texts, groups=groups, cross_only=True)
    assert all(groups[i] != groups[j] for i, j, _ in pairs)
    partners: dict[int, set[int]] = {i: set() for i in range(len(texts))}
    for i, j, _ in pairs:
        partners[i].add(groups[j])
        partners[j].add(groups[i])
    for i in range(len(texts)):  # every text meets every other group it near-duplicates
        assert partners[i] == {0, 1, 2} - {groups[i]}, (i, partners[i])


def test_big_lsh_bucket_is_paired_in_blocks() -> None:
    rng = np.random.default_rng(4)
    sig = rng.integers(0, 2**31, size=(1000, 128), dtype=np.uint32)
    sig[:, :7] = 12345  # every row shares band 0; the rest are distinct
    cfg = NearDupConfig(max_bucket=50)
    cand = lsh_candidates(sig, cfg)
    # 20 blocks of 50 members, all pairs within each block: linear in the bucket, not 499,500.
    assert len(cand) == 20 * (50 * 49 // 2)
    assert (cand[:, 0] < cand[:, 1]).all()
    assert set(cand.ravel().tolist()) == set(range(1000))
    assert len(set(duplicate_groups(1000, cand.tolist()).tolist())) == 20


def test_empty_and_short_texts() -> None:
    assert shingle_hashes("", K).size == 0
    assert shingle_hashes("   \n ", K).size == 0
    assert shingle_hashes("a b", K).size == 1
    assert shingle_hashes("a b c d e f g", K).size == 3
    assert shingle_hashes("a b", K)[0] != shingle_hashes("a b c", K)[0]
    texts = ["", "", "a b", "a b", "a c", "", "one two three four five six"]
    pairs = near_duplicate_pairs(texts)
    assert pairs == [(2, 3, 1.0)]
    sig = signatures([shingle_hashes(t, K) for t in texts])
    assert sig.shape == (len(texts), 128) and sig.dtype == np.uint32
    assert (sig[[0, 1, 5]] == SENTINEL).all()
    assert not (sig[2] == SENTINEL).all()
    assert near_duplicate_pairs([]) == []
    assert near_duplicate_pairs([""] * 20) == []


def test_shingle_hashes_match_the_corpus_path_and_word_order_matters() -> None:
    texts = ["a b c d e f", "", "x y", "f e d c b a"]
    values, offsets = shingle_corpus(texts, K)
    for i, text in enumerate(texts):
        assert values[offsets[i] : offsets[i + 1]].tolist() == shingle_hashes(text, K).tolist()
    assert not set(shingle_hashes(texts[0], K).tolist()) & set(shingle_hashes(texts[3], K).tolist())
    assert word_ids(["a", "b", "a"]).tolist()[0] == word_ids(["a"]).tolist()[0]


def test_signature_agreement_estimates_jaccard(corpus: tuple[list[str], list[tuple[int, int]]]) -> None:
    texts, planted = corpus
    sig = signatures([shingle_hashes(texts[i], K) for pair in planted[:100] for i in pair])
    for k, (i, j) in enumerate(planted[:100]):
        estimate = float((sig[2 * k] == sig[2 * k + 1]).mean())
        assert abs(estimate - true_jaccard(texts[i], texts[j])) < 0.2


def test_lsh_parameters_favour_recall() -> None:
    bands, rows = lsh_params(128, 0.8)
    assert bands * rows <= 128
    assert 1 - (1 - 0.8**rows) ** bands >= 0.98  # a pair at the threshold is almost surely a candidate
    assert 1 - (1 - 0.3**rows) ** bands < 0.01  # an unrelated-ish pair almost never


def test_same_pairs_and_signatures_on_every_run(corpus: tuple[list[str], list[tuple[int, int]]]) -> None:
    texts = corpus[0][:1000]
    assert near_duplicate_pairs(texts) == near_duplicate_pairs(texts)
    shingles = [shingle_hashes(t, K) for t in texts[:50]]
    assert (signatures(shingles, NearDupConfig(seed=5)) == signatures(shingles, NearDupConfig(seed=5))).all()
    assert (signatures(shingles, NearDupConfig(seed=5)) != signatures(shingles, NearDupConfig(seed=6))).any()


def test_shingle_hashes_are_equal_in_another_process() -> None:
    text = "the quick brown fox jumps over the lazy dog ünïcödé 数据"
    code = ("from preflight.data.minhash import shingle_hashes; "
            f"print(shingle_hashes({text!r}, 5).tolist())")
    outputs = set()
    for salt in ("1", "2"):
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                              env={"PYTHONHASHSEED": salt, "PATH": ""}, timeout=60, check=True)
        outputs.add(proc.stdout.strip())
    assert outputs == {str(shingle_hashes(text, 5).tolist())}


def test_duplicate_groups_are_connected_components() -> None:
    labels = duplicate_groups(7, [(5, 6, 0.9), (1, 3, 1.0), (3, 4, 0.85), (6, 2, 0.8)])
    assert labels.tolist() == [0, 1, 2, 1, 1, 2, 2]
    assert duplicate_groups(3, []).tolist() == [0, 1, 2]


words = st.lists(st.sampled_from(["a", "b", "c", "d", "ä"]), max_size=12).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(st.lists(words, max_size=12))
def test_pairs_are_exactly_those_verified_among_candidates(texts: list[str]) -> None:
    pairs = near_duplicate_pairs(texts, NearDupConfig(threshold=0.5, shingle_words=3))
    assert all(i < j for i, j, _ in pairs)
    for i, j, jac in pairs:
        assert jac == pytest.approx(true_jaccard(texts[i], texts[j], 3)) and jac >= 0.5
    for text in texts:
        n = len(text.split())
        assert shingle_hashes(text, 3).size == (max(n - 2, 1) if n else 0)
    # Pairs at Jaccard 1 (identical shingle sets) always end up in one group.
    labels = duplicate_groups(len(texts), pairs)
    for i, j in itertools.combinations(range(len(texts)), 2):
        if texts[i].split() and true_jaccard(texts[i], texts[j], 3) == 1.0:
            assert labels[i] == labels[j]


# Text with every kind of Python whitespace, multi-byte letters and a lone surrogate: the numpy
# tokenizer must see exactly str.split()'s words, and give equal words equal ids (distinct words
# distinct ids) wherever they occur.
_SPACES = [" ", "\t", "\n", "\x0b", "\x0c", "\r", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0", "\u1680",
           "\u2000", "\u2005", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
_LETTERS = ["a", "b", "ab", "abcdefgh", "abcdefghi", "x" * 17, "é", "数据", "\u200b", "\ud800", "_", "0"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_SPACES + _LETTERS), max_size=14).map("".join), max_size=10))
def test_words_are_exactly_str_split_and_ids_are_one_to_one(texts: list[str]) -> None:
    from preflight.data.minhash import _text_words

    ids, counts = _text_words(texts)
    assert counts.tolist() == [len(t.split()) for t in texts]
    words = [w for t in texts for w in t.split()]
    assert ids.tolist() == word_ids(words).tolist()
    assert len(set(zip(words, ids.tolist(), strict=True))) == len(set(words)) == len(set(ids.tolist()))


def test_word_ids_of_a_large_vocabulary_do_not_collide() -> None:
    words = [f"w{i}" for i in range(200_000)] + ["".join(chr(0x4E00 + (i * 7 + j) % 2000) for j in range(12))
                                                 for i in range(50_000)]
    assert len(set(word_ids(words).tolist())) == len(set(words))
