"""A lexicon filter: whole-word, case-insensitive matches of a word list, with an allow-list.

The default lexicon is the word list that the better-profanity package ships; it is read as a
file, not imported. No model is downloaded.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DEFAULT_SOURCE = "better-profanity's profanity_wordlist.txt"


def default_lexicon_path() -> Path | None:
    from importlib.util import find_spec

    spec = find_spec("better_profanity")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "profanity_wordlist.txt"
    return path if path.is_file() else None


def load_lexicon(path: Path) -> list[str]:
    """One term per line; blank lines and # comments ignored; lower-cased, de-duplicated."""
    terms = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        term = line.split("#", 1)[0].strip().lower()
        if term:
            terms.append(term)
    return sorted(set(terms))


@dataclass
class Matcher:
    terms: list[str]
    allow: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        kept = sorted((t for t in self.terms if t not in self.allow), key=len, reverse=True)
        # Word boundaries that also work for terms with punctuation (e.g. "a$$"): no letter or
        # digit right before or after the match.
        body = "|".join(re.escape(t) for t in kept) or r"(?!x)x"
        self._rx = re.compile(rf"(?<![\w]){'(?:' + body + ')'}(?![\w])", re.IGNORECASE)

    def hits(self, text: str) -> list[str]:
        return [m.group(0).lower() for m in self._rx.finditer(text)]


@lru_cache(maxsize=8)
def matcher_for(lexicon: str | None, allow: tuple[str, ...]) -> tuple[Matcher, str]:
    path = Path(lexicon) if lexicon else default_lexicon_path()
    if path is None:
        raise FileNotFoundError("no lexicon: set data.toxicity.lexicon, or install better-profanity")
    return Matcher(load_lexicon(path), {a.lower() for a in allow}), str(path) if lexicon else DEFAULT_SOURCE


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
