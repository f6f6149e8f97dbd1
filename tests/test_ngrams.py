"""N-gram contamination of train rows against evaluation texts."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from preflight.data.ngrams import contaminated_rows, overlap

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
    assert contaminated_rows([long_train], ["", short_eval], 13)[0].size == 0
    assert contaminated_rows([], [long_train], 13)[0].size == 0
    assert contaminated_rows([long_train], [], 13)[0].size == 0


def test_exact_counts_on_a_handmade_example() -> None:
    assert contaminated_rows(["a b c a b c", "c a b"], ["b c a"], 3)[0].tolist() == [0]  # bca is in row 0 only
    assert contaminated_rows(["a b"], ["a b"], 3)[0].size == 0  # shorter than n: no n-gram
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


def test_train_words_missing_from_the_eval_texts_break_an_n_gram() -> None:
    text = " ".join(VOCAB[:20])
    assert contaminated_rows([text], [text], 13)[0].tolist() == [0]
    words = VOCAB[:20]
    words[6] = "unseen"  # every 13-gram of the 20 words holds position 6 or lies inside 7..19
    rows, _ = contaminated_rows([" ".join(words)], [text], 13)
    assert rows.tolist() == [0]  # words 7..19 are 13 words: still shared
    words[12] = "unseen"
    assert contaminated_rows([" ".join(words)], [text], 13)[0].size == 0


def test_rows_past_a_chunk_boundary_keep_their_indices(monkeypatch) -> None:
    import preflight.data.ngrams as ngrams

    monkeypatch.setattr(ngrams, "CHUNK_TEXTS", 7)
    train = random_texts(50, seed=4)
    evals = random_texts(5, seed=5)
    train[33][0:13] = evals[4][2:15]
    train[7][3:16] = evals[0][0:13]
    rows, examples = contaminated_rows([" ".join(w) for w in train], [" ".join(w) for w in evals], 13)
    assert rows.tolist() == [7, 33] and examples == [(7, 0), (33, 4)]


def naive(train: list[str], evals: list[str], n: int) -> tuple[list[int], list[int]]:
    def grams(t: str) -> set[tuple[str, ...]]:
        w = t.split()
        return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}

    every_eval = set().union(*map(grams, evals)) if evals else set()
    every_train = set().union(*map(grams, train)) if train else set()
    return ([i for i, t in enumerate(train) if grams(t) & every_eval],
            [j for j, t in enumerate(evals) if grams(t) & every_train])


texts = st.lists(st.lists(st.sampled_from("abcdefg"), max_size=9).map(" ".join), max_size=12)


@settings(max_examples=300, deadline=None)
@given(texts, texts, st.integers(1, 4))
def test_overlap_finds_exactly_the_rows_a_naive_set_comparison_finds(train: list[str], evals: list[str],
                                                                     n: int) -> None:
    found = overlap(train, evals, n)
    want_train, want_eval = naive(train, evals, n)
    assert found.train_rows.tolist() == want_train
    assert found.eval_rows.tolist() == want_eval
    for t, e in found.pairs:  # each pair really shares an n-gram
        tw, ew = train[t].split(), evals[e].split()
        assert {tuple(tw[i:i + n]) for i in range(len(tw) - n + 1)} & {tuple(ew[i:i + n]) for i in range(len(ew) - n + 1)}
