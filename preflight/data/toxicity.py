"""A lexicon filter: whole-word, case-insensitive matches of a term list, with an allow-list.

The default lexicon is ``obscenities.txt`` beside this module: unambiguous English obscenities
and slurs, chosen for precision (see that file's header for what is left out and why). It was
chosen by measurement against better-profanity's word list and the alt-profanity-check classifier
on real clean datasets and planted obscenities (bench/bench_data_quality.py, numbers in
bench/README.md and in data.toxicity's explain text). No model is downloaded; pyarrow is imported
only by ``scan_column``.

Term syntax (the default list and user lists alike): one term per line, ``#`` starts a comment.
A term matches as a whole word: no letter, digit or underscore directly before or after. A term of
several words matches them separated by whitespace or hyphens. A leading or trailing ``*`` lets the
word go on with more letters (``fuck*``: fucking; ``*fucker``: motherfucker); a ``*`` inside a term
is a literal character (``f*ck``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

DEFAULT_LEXICON = Path(__file__).with_name("obscenities.txt")
DEFAULT_SOURCE = "preflight's list of unambiguous obscenities and slurs"
_GAP = r"[\s\-]+"  # between the words of a multi-word term
_RE2_GAP = r"[^\pL\pN]+"  # the same, loosened for the RE2 prefilter (every whitespace and hyphen is in it)
_RE2_SPECIAL = set("\\.^$|?*+()[]{}")
_LOWER_DIFFERENCES = {"σ": "[σς]", "ς": "[σς]", "\u0307": "\u0307?"}  # see _word_core


def default_lexicon_path() -> Path:
    return DEFAULT_LEXICON


def load_lexicon(path: Path) -> list[str]:
    """One term per line; blank lines and # comments ignored; lower-cased, de-duplicated."""
    terms = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        term = " ".join(line.split("#", 1)[0].split()).lower()
        if term:
            terms.append(term)
    return sorted(set(terms))


def _word_pattern(word: str) -> str:
    head = r"\w*" if word.startswith("*") and len(word) > 1 else ""
    tail = r"\w*" if word.endswith("*") and len(word) > 1 else ""
    core = word[1 if head else 0 : len(word) - 1 if tail else len(word)]
    return head + re.escape(core) + tail


def _word_core(word: str) -> str:
    """The literal part of a word of a term (its wildcards dropped), escaped for RE2.

    Python's ``str.lower`` and Arrow's ``utf8_lower`` differ on two letters only: "İ" lowers to
    "i" plus a combining dot in Python but to "i" in Arrow, and a word-final "Σ" to "ς" in Python
    but "σ" in Arrow. The combining dot is made optional and the sigmas interchangeable, so the
    prefilter still finds every text the exact match finds.
    """
    core = word[1:] if word.startswith("*") and len(word) > 1 else word
    core = core[:-1] if core.endswith("*") and len(core) > 1 else core
    return "".join("\\" + ch if ch in _RE2_SPECIAL else _LOWER_DIFFERENCES.get(ch, ch) for ch in core)


def term_pattern(term: str) -> str:
    """The regular expression of one lower-case term (without the word boundaries around it)."""
    return _GAP.join(_word_pattern(w) for w in term.split())


@dataclass
class Matcher:
    """Finds the terms in texts, compared in lower case (``str.lower``)."""

    terms: list[str]
    allow: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.allow = {" ".join(a.lower().split()) for a in self.allow}
        kept = sorted({" ".join(t.lower().split()) for t in self.terms} - self.allow - {""}, key=len, reverse=True)
        body = "|".join(term_pattern(t) for t in kept) or r"(?!x)x"
        # Word boundaries that also work for terms with punctuation (e.g. "sh!t"): no letter,
        # digit or underscore right before or after the match.
        self._rx = re.compile(rf"(?<!\w)(?:{body})(?!\w)")
        # A looser pattern for RE2 (pyarrow): each term's literal words with any run of
        # non-alphanumerics between them, no boundaries. Every text the exact pattern matches
        # also matches this one, so it can pick the rows worth a look (see scan_column).
        self.prefilter = "|".join(_RE2_GAP.join(_word_core(w) for w in t.split()) for t in kept) or None

    def hits(self, text: str) -> list[str]:
        """The matched text of each hit in ``text``, lower-cased, whitespace collapsed (hyphens
        kept: "f---ing" stays itself); a hit is allowed when it, or it with hyphens read as
        spaces, is in the allow-list."""
        found = (" ".join(m.group(0).split()) for m in self._rx.finditer(text.lower()))
        return [f for f in found if f not in self.allow and " ".join(f.replace("-", " ").split()) not in self.allow]


def matcher_for(lexicon: str | None, allow: tuple[str, ...]) -> tuple[Matcher, str]:
    """The matcher of a lexicon file (None, "" or "default": the shipped list) and its description.
    Raises FileNotFoundError for a lexicon file that is not there."""
    if lexicon in (None, "", "default"):
        return _matcher(None, 0, tuple(allow))
    path = Path(str(lexicon))
    if not path.is_file():
        raise FileNotFoundError(2, "no such lexicon file", str(path))
    return _matcher(str(path), path.stat().st_mtime_ns, tuple(allow))  # an edited file is read again


@lru_cache(maxsize=8)
def _matcher(path: str | None, mtime_ns: int, allow: tuple[str, ...]) -> tuple[Matcher, str]:
    if path is None:
        terms = load_lexicon(DEFAULT_LEXICON)
        return Matcher(terms, set(allow)), f"{DEFAULT_SOURCE} ({len(terms)} terms)"
    return Matcher(load_lexicon(Path(path)), set(allow)), path


def scan(texts: Iterable[str | None], matcher: Matcher) -> tuple[list[int], Counter[str]]:
    """Indices of texts with at least one hit, and how often each term was hit."""
    flagged: list[int] = []
    terms: Counter[str] = Counter()
    for i, text in enumerate(texts):
        if not text:
            continue
        found = matcher.hits(text)
        if found:
            flagged.append(i)
            terms.update(found)
    return flagged, terms


def scan_column(column: Any, matcher: Matcher) -> tuple[list[int], Counter[str]]:
    """``scan`` over an Arrow string column (array or chunked array), row indices into it.

    RE2 (pyarrow's ``match_substring_regex`` on the lower-cased column) picks the rows holding
    a term's words at all; only those are matched exactly in Python, so a clean column of a
    million rows is scanned at RE2's speed.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if matcher.prefilter is None or len(column) == 0:
        return [], Counter()
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.string())
    try:
        mask = pc.match_substring_regex(pc.utf8_lower(column), pattern=matcher.prefilter)
    except pa.ArrowInvalid:  # a term RE2 cannot take: look at every row
        return scan(column.to_pylist(), matcher)
    rows = pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()
    flagged, terms = scan(column.take(pa.array(rows, pa.int64())).to_pylist(), matcher)
    return [rows[i] for i in flagged], terms
