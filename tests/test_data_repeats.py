"""Counting repeated rows from cheap keys must give Arrow's exact distinct count, whatever the text."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from preflight.data.repeats import repeated_rows


def exact(column: pa.Array | pa.ChunkedArray) -> int:
    return int(len(column) - column.null_count - pc.count_distinct(column, mode="only_valid").as_py())


def test_counts_each_repeat_after_the_first() -> None:
    assert repeated_rows(pa.array(["a b", "c", "a b", None, None, "", "", "a b"])) == 3
    assert repeated_rows(pa.array([], pa.string())) == 0
    assert repeated_rows(pa.chunked_array([], pa.string())) == 0


def test_texts_alike_where_sampled_are_told_apart() -> None:
    # Same length, same start, end and sampled middle windows; they differ only in between.
    base = "start of a long prompt " + "x" * 40 + " end of the prompt."
    other = base[:40] + "Y" + base[41:]  # byte 40: in no sampled window
    assert repeated_rows(pa.array([base, other])) == 0
    assert repeated_rows(pa.array([base, other, base])) == 1


def test_repeats_across_chunks_and_in_sliced_arrays() -> None:
    rows = pa.array(["p", "prompt one is long enough", "q", "prompt one is long enough", "z"])
    assert repeated_rows(pa.chunked_array([rows.slice(0, 2), rows.slice(2)])) == 1
    assert repeated_rows(rows.slice(2)) == 0  # the earlier copy is outside the slice
    assert repeated_rows(pa.array(["ab", "ab"], pa.large_string())) == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.none() | st.text(alphabet="ab é", max_size=20), max_size=30),
       st.integers(0, 3), st.integers(0, 30))
def test_agrees_with_arrow_distinct_count(values: list[str | None], skip: int, cut: int) -> None:
    arr = pa.array(values, pa.string()).slice(skip)
    assert repeated_rows(arr) == exact(arr)
    cut = min(cut, len(arr))
    chunked = pa.chunked_array([arr.slice(0, cut), arr.slice(cut)], pa.string())
    assert repeated_rows(chunked) == exact(chunked)
