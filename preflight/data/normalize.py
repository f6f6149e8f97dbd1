"""Text normalization for comparing prompts: one rule for duplicates and leakage, one more step
for contamination, each in two forms.

``normalize_array`` works on a whole pyarrow string column with compute kernels; ``normalize_text``
does the same to one Python string. The rule, in order:

1. Unicode NFKC (compatibility forms folded: full-width letters, ligatures, NBSP -> space ...);
2. lower case (``str.lower`` / ``pc.utf8_lower``; not ``casefold``, which Arrow has no kernel for);
3. every run of whitespace (the characters ``str.isspace`` accepts, the same set Arrow's
   ``utf8_is_space`` uses) becomes one space, and the ends are trimmed.

Known differences between the two forms, all outside ordinary text (a unit test pins the rule on
everything else): Python's ``lower`` uses full and context-sensitive case mappings where Arrow
(utf8proc) maps one code point to one, so "İ" (U+0130) lowers to "i̇" in Python but "i" in Arrow,
and a word-final "Σ" becomes "ς" in Python but "σ" in Arrow; and the two ship different Unicode
versions (Python 3.11: 14.0), so characters added since then may normalize or lower differently.

For n-gram contamination (``decontamination_array`` / ``decontamination_text``) the normalized text
then loses its punctuation, following the convention of the GPT-3 paper's overlap analysis as
lm-evaluation-harness implements it (``lm_eval/decontamination/janitor.py``: ASCII letters lower-
cased, every character of Python's ``string.punctuation`` deleted, words split on whitespace, then
13-grams). Here the deleted set is ``string.punctuation`` plus every other Unicode punctuation
character (category P: curly quotes, dashes, ellipses, CJK marks), so typographic variants match
too; characters are deleted, not replaced by a space, as the harness does ("don't" -> "dont",
"3.5" -> "35"); the whitespace left behind is collapsed again. Lower-casing is the full Unicode one
above, not ASCII only.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

# Exactly the characters for which str.isspace() is true (and pc.utf8_is_space agrees), in RE2 syntax.
WHITESPACE_CLASS = (
    r"[\x{9}-\x{d}\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}"
    r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
)


# string.punctuation and all Unicode punctuation (RE2's \pP holds every category-P character; the
# ASCII symbols of string.punctuation, such as $ + < = > ^ ` | ~, are category S and named one by one)
PUNCTUATION_CLASS = "[\\pP" + "".join(f"\\x{{{ord(c):x}}}" for c in string.punctuation
                                     if not unicodedata.category(c).startswith("P")) + "]"
_PUNCTUATION_CHARS = frozenset(string.punctuation)


# Whitespace other than the plain space: a row holding none of it, no double space and no space
# at either end is already collapsed and trimmed.
OTHER_WHITESPACE = WHITESPACE_CLASS.replace(r"\x{1c}-\x{20}", r"\x{1c}-\x{1f}")
NEEDS_SPACING = rf"  |^ | $|{OTHER_WHITESPACE}"


def normalize_array(arr: pa.Array) -> pa.Array:
    """NFKC, lower case, whitespace runs collapsed to one space and trimmed; nulls stay null.

    The costly steps run only on the rows that need them: NFKC and Unicode lower-casing on rows
    with non-ASCII text (ASCII is NFKC already, and ``ascii_lower`` is 10x cheaper), and the
    whitespace rewrite on rows whose spacing may not be single and trimmed. Cheap scans find
    each set; on typical prompts that is 5x faster than rewriting every row.
    """
    import pyarrow.compute as pc

    non_ascii = pc.fill_null(pc.invert(pc.string_is_ascii(arr)), False)
    out = _only_where(arr, non_ascii, lambda a: pc.utf8_normalize(a, "NFKC"))
    # NFKC makes no ASCII row non-ASCII, so the rows needing more than ASCII lowering are known.
    out = _only_where(pc.ascii_lower(out), non_ascii, pc.utf8_lower)
    return _only_where(out, _may_need_spacing(out, non_ascii),
                       lambda a: pc.utf8_trim(pc.replace_substring_regex(a, WHITESPACE_CLASS + "+", " "), " "))


def _may_need_spacing(arr: pa.Array, non_ascii: pa.Array) -> pa.Array:
    """Every row NEEDS_SPACING matches, and perhaps a few more (rewriting a row that is already
    spaced right changes nothing). ASCII spacing is found with numpy over the string bytes, which
    is several times faster than the regex; the regex runs only on rows with non-ASCII text,
    where the other Unicode spaces can be."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if arr.type != pa.string() or len(arr) == 0:
        return pc.match_substring_regex(arr, NEEDS_SPACING)
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset : arr.offset + n + 1]
    data = arr.buffers()[2]
    rows = np.zeros(n, dtype=bool)
    lo, hi = int(offsets[0]), int(offsets[-1])
    if data is not None and hi > lo:
        text = np.frombuffer(data, np.uint8)[lo:hi]
        starts, ends = offsets[:-1] - lo, offsets[1:] - lo
        # The row holding byte p is the first whose end lies past p (a double space across two
        # rows marks the first, which then ends with a space anyway).
        rows[np.searchsorted(ends, _spacing_bytes(text), side="right")] = True
        filled = np.flatnonzero(ends > starts)
        rows[filled] |= (text[starts[filled]] == 32) | (text[ends[filled] - 1] == 32)
    unusual = np.flatnonzero(non_ascii.to_numpy(zero_copy_only=False))
    if len(unusual):
        matched = pc.match_substring_regex(arr.take(pa.array(unusual)), NEEDS_SPACING)
        rows[unusual[matched.to_numpy(zero_copy_only=False).astype(bool)]] = True
    return pa.array(rows)


_BLOCK = 1 << 16  # bytes scanned at a time: the scratch arrays stay in cache and on the heap


def _spacing_bytes(text: np.ndarray) -> np.ndarray:
    """Positions in ``text`` (UTF-8 bytes) of a control character (every ASCII space but ' ' is
    one; any other costs only a needless rewrite) or of the first of two spaces in a row."""
    import numpy as np

    found = []
    for at in range(0, len(text), _BLOCK):
        part = text[at : at + _BLOCK + 1]  # one byte more: a pair across two blocks
        space = part == 32
        hit = part < 32
        hit[:-1] |= space[:-1] & space[1:]
        if hit.any():
            found.append(np.flatnonzero(hit) + at)
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


def _only_where(arr: pa.Array, mask: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """``fn`` applied to the rows where ``mask`` is true; the other rows are kept as they are."""
    import pyarrow.compute as pc

    mask = pc.fill_null(mask, False)
    hits = pc.sum(mask).as_py() or 0
    if hits == 0:
        return arr
    if hits == len(arr):
        return fn(arr)
    return pc.replace_with_mask(arr, mask, fn(pc.filter(arr, mask)))


def normalize_text(s: str) -> str:
    """The same rule as ``normalize_array`` for one string."""
    return " ".join(unicodedata.normalize("NFKC", s).lower().split())


def decontamination_array(normalized: pa.Array) -> pa.Array:
    """An already ``normalize_array``-ed column with its punctuation deleted and its spacing
    collapsed again (see the module docstring); nulls stay null. Only rows that may hold
    punctuation (an ASCII punctuation byte, or any non-ASCII text) go through the regex."""
    import pyarrow.compute as pc

    def delete(a: pa.Array) -> pa.Array:
        deleted = pc.replace_substring_regex(a, PUNCTUATION_CLASS, "")
        return pc.utf8_trim(pc.replace_substring_regex(deleted, " {2,}", " "), " ")

    return _only_where(normalized, _may_hold_punctuation(normalized), delete)


def contamination_text(table: Any) -> pa.Array:
    """What contamination compares in each row of a split's table: the conversation of a chat
    prompt (every turn but the system's), else the prompt; normalized, punctuation deleted."""
    import pyarrow.compute as pc

    text = pc.coalesce(table.column("conversation"), table.column("prompt"))
    text = text.combine_chunks() if hasattr(text, "combine_chunks") else text
    return decontamination_array(normalize_array(text))


@cache
def _punctuation_bytes() -> np.ndarray:
    """Per byte value: may it belong to a punctuation character (ASCII punctuation, or any byte
    of non-ASCII UTF-8)?"""
    import numpy as np

    table = np.zeros(256, dtype=bool)
    table[[ord(c) for c in string.punctuation]] = True
    table[128:] = True
    return table


def _may_hold_punctuation(arr: pa.Array) -> pa.Array:
    """Every row holding a byte of an ASCII punctuation character or a non-ASCII byte (the
    Unicode punctuation is among those), found with numpy over the string bytes."""
    import numpy as np
    import pyarrow as pa

    if arr.type != pa.string() or len(arr) == 0:
        return pa.array(np.ones(len(arr), dtype=bool))
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset : arr.offset + n + 1]
    data = arr.buffers()[2]
    rows = np.zeros(n, dtype=bool)
    lo, hi = int(offsets[0]), int(offsets[-1])
    if data is not None and hi > lo:
        text = np.frombuffer(data, np.uint8)[lo:hi]
        ends = offsets[1:] - lo
        for at in range(0, len(text), _BLOCK):
            hit = np.flatnonzero(_punctuation_bytes()[text[at : at + _BLOCK]]) + at
            rows[np.searchsorted(ends, hit, side="right")] = True
    return pa.array(rows)


def decontamination_text(s: str) -> str:
    """``decontamination_array`` for one string (from the raw text: it normalizes first)."""
    kept = "".join(c for c in normalize_text(s)
                   if c not in _PUNCTUATION_CHARS and not unicodedata.category(c).startswith("P"))
    return " ".join(kept.split())  # a space either side of deleted punctuation is now doubled
