"""N-gram contamination of train rows against evaluation texts."""

from __future__ import annotations

import numpy as np

from preflight.data.minhash import shingle_hashes
from preflight.data.ngrams import contaminated_rows, ngram_hashes

VOCAB = [f"t{i}" for i in range(5000)]


def random_texts(n: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[VOCAB[i] for i in rng.integers(0, len(VOCAB), int(rng.integers(30, 61)))]
            for _ in range(n)]


def test_planted_13_gram_overlap_is_found_with_the_right_rows() -> None:
    train = random_texts(300, seed=1)
    evals = random_texts(40, seed=2)
    train[7][10:23] = evals[3][5:18]  # a 13-word span of eval row 3
    train[250][0:13] = evals[31][-13:]  # at the very start of a train row, end of an eval row
    train[120][4:16] = evals[9][0:12]  # only 12 words: not a 13-gram overlap
    rows, examples = contaminated_rows([" ".join(w) for w in train], [" ".join(w) for w in evals], 13)
    assert rows.tolist() == [7, 250]
    assert rows.dtype == np.int64
    assert examples == [(7, 3), (250, 31)]
    rows12, _ = contaminated_rows([" ".join(w) for w in train], [" ".join(w) for w in evals], 12)
    assert rows12.tolist() == [7, 120, 250]  # n is configurable


def test_texts_shorter_than_n_are_ignored() -> None:
    words = [f"w{i}" for i in range(20)]
    short_eval = " ".join(words[:12])  # 12 words: no 13-gram
    short_train = " ".join(words[2:14])
    long_train = " ".join(words)
    rows, examples = contaminated_rows([short_train, long_train], [short_eval], 13)
    assert rows.size == 0 and examples == []
    rows, examples = contaminated_rows([short_train, long_train], [short_eval, " ".join(words[5:18])], 13)
    assert rows.tolist() == [1] and examples == [(1, 1)]
    assert ngram_hashes(short_eval, 13).size == 0
    assert ngram_hashes("", 13).size == 0
    assert contaminated_rows([], [long_train], 13)[0].size == 0
    assert contaminated_rows([long_train], [], 13)[0].size == 0


def test_exact_counts_on_a_handmade_example() -> None:
    assert ngram_hashes("a b c a b c", 3).size == 3  # abc, bca, cab (abc twice)
    assert ngram_hashes("a b c d", 3).size == 2
    assert ngram_hashes("a b", 3).size == 0
    train = ["a b c d", "x y z", "b c d e", "q r", "c d e f g", "e f g h"]
    evals = ["x y", "c d e f", "z z e f g"]
    # eval 3-grams: row 1 {cde, def}, row 2 {zze, zef, efg}; row 0 has none.
    rows, examples = contaminated_rows(train, evals, 3)
    assert rows.tolist() == [2, 4, 5]
    # Each example names the first eval row holding the train row's first shared n-gram.
    assert examples == [(2, 1), (4, 1), (5, 2)]
    _, few = contaminated_rows(train, evals, 3, max_examples=2)
    assert few == [(2, 1), (4, 1)]


def test_first_eval_row_is_named_when_several_hold_the_n_gram() -> None:
    text = "p q r s t u"
    rows, examples = contaminated_rows(["zz " + text], ["aa " + text, text, text + " bb"], 4)
    assert rows.tolist() == [0] and examples == [(0, 0)]


def test_ngram_hashes_are_the_distinct_shingle_hashes() -> None:
    text = " ".join(VOCAB[:40] + VOCAB[:10])
    expected = np.unique(shingle_hashes(text, 13))
    got = ngram_hashes(text, 13)
    assert got.dtype == np.uint64
    assert got.tolist() == expected.tolist()
    assert got.size == 38  # 38 13-grams, none repeated (the repeat is only 10 words long)
