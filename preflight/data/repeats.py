"""How many rows of a string column repeat an earlier row, without hashing every string in Arrow.

Arrow's ``count_distinct`` copies every distinct string into its hash table: on a million
prompts that is most of the time of the duplicate check. Here each row first gets a cheap key
from its length and four 8-byte windows of its text (start, end and two between), read straight
from the column's buffers with numpy. Rows whose key no other row has are distinct for certain;
only rows that share a key (true repeats, or texts alike in every sampled place) are compared
exactly, with ``count_distinct`` on those rows alone. The count is therefore exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant (golden ratio): spreads each window over the key


def valid_row_keys(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """The key of each non-null row and that row's index, or None for a column of large or view
    strings (no int32 offsets to read). Equal texts have equal keys."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    keys, rows = [np.empty(0, np.uint64)], [np.empty(0, np.int64)]
    base = 0
    for chunk in chunks:
        if chunk.type != pa.string():
            return None
        valid = np.flatnonzero(pc.is_valid(chunk).to_numpy(zero_copy_only=False))
        keys.append(_row_keys(chunk)[valid])
        rows.append(valid + base)
        base += len(chunk)
    return np.concatenate(keys), np.concatenate(rows)


def repeated_rows(column: pa.ChunkedArray | pa.Array,
                  keyed: tuple[np.ndarray, np.ndarray] | None = None) -> int:
    """Non-null rows equal to an earlier non-null row (nulls never count); ``keyed``: the
    column's ``valid_row_keys``, when already made."""
    import numpy as np
    import pyarrow as pa

    keyed = keyed if keyed is not None else valid_row_keys(column)
    if keyed is None:
        return _exact(column)
    key, rows = keyed
    if not len(key):
        return 0
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    shared = rows[counts[inverse.reshape(-1)] > 1]
    if not len(shared):
        return 0
    return _exact(column.take(pa.array(shared)))


def _exact(values: pa.ChunkedArray | pa.Array) -> int:
    import pyarrow.compute as pc

    distinct = pc.count_distinct(values, mode="only_valid").as_py()
    return int(len(values) - values.null_count - distinct)


def _row_keys(arr: pa.Array) -> np.ndarray:
    """A uint64 per row that depends only on the row's text (nulls get some key)."""
    import numpy as np

    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset : arr.offset + n + 1].astype(np.int64)
    data = arr.buffers()[2]
    size = int(offsets[-1]) if n else 0
    if data is None or size == 0:
        return (offsets[1:] - offsets[:-1]).astype(np.uint64)
    text = np.frombuffer(data, np.uint8)[:size]
    if size < 8:  # too short for one window: pad a copy
        text = np.concatenate([text, np.zeros(8 - size, np.uint8)])
    # Every 8-byte window of the buffer as a little-endian uint64 (a strided view, no copy).
    windows = np.ndarray(shape=(len(text) - 7,), dtype="<u8", buffer=text, strides=(1,))
    starts, ends = offsets[:-1], offsets[1:]
    length = ends - starts
    last = len(text) - 8
    # The last 8 bytes of the row; a shorter row sits in the top bytes of the window ending at
    # its end (or at the start of a buffer whose first row is short): shift it down and mask.
    at = np.clip(ends - 8, 0, last)
    shift = (np.clip(starts - at, 0, 7) * 8).astype(np.uint64)
    mask = np.where(length >= 8, np.uint64(0xFFFFFFFFFFFFFFFF),
                    (np.uint64(1) << (np.clip(length, 0, 7) * 8).astype(np.uint64)) - np.uint64(1))
    key = ((windows[at] >> shift) & mask) ^ length.astype(np.uint64)
    long = length >= 8
    span = np.where(long, length - 8, 0)
    for place in (starts, starts + span // 3, starts + 2 * span // 3):
        word = np.where(long, windows[np.clip(place, 0, last)], np.uint64(0))
        key = (key * np.uint64(_MIX)) ^ word
    return key
