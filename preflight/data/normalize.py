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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

# Exactly the characters for which str.isspace() is true (and pc.utf8_is_space agrees), in RE2 syntax.
WHITESPACE_CLASS = (
    r"[\x{9}-\x{d}\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}"
    r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
)


def normalize_array(arr: pa.Array) -> pa.Array:
    """NFKC, lower case, whitespace runs collapsed to one space and trimmed; nulls stay null."""
    import pyarrow.compute as pc

    out = pc.utf8_normalize(arr, "NFKC")
    out = pc.utf8_lower(out)
    out = pc.replace_substring_regex(out, WHITESPACE_CLASS + "+", " ")
    return pc.utf8_trim(out, " ")


def normalize_text(s: str) -> str:
    """The same rule as ``normalize_array`` for one string."""
    return " ".join(unicodedata.normalize("NFKC", s).lower().split())
