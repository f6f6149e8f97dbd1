"""The product's citations point into its own docs/, and the sections they name exist.

Users read `preflight explain`, help texts, schema descriptions and the docs; a citation of a file
they do not have (the team's internal notes) or of a section that does not exist is a dead end.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "docs" / "reference.md"
INTERNAL = ("REFERENCE" + ".md", "PRODUCT" + ".md")  # spelled apart so this file does not match
CITATION = re.compile(r"docs/reference\.md,?\s+(sections?)\s+([0-9](?:[0-9.,\s\-–and]*[0-9])?)")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".json", ".toml", ".tcss", ".sh", ""}


def _tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    files = [REPO / line for line in out.stdout.splitlines()]
    return [f for f in files if f.is_file() and f.suffix in TEXT_SUFFIXES and "__snapshots__" not in f.parts]


def _sections() -> set[str]:
    """'4', '4.1', ... for every numbered heading of docs/reference.md."""
    found = set()
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#{2,4}\s+(\d+(?:\.\d+)*)\.?\s", line)
        if m:
            found.add(m.group(1))
    return found


def test_nothing_cites_the_teams_internal_files() -> None:
    offenders = []
    for path in _tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if any(name in line for name in INTERNAL):
                offenders.append(f"{path.relative_to(REPO)}:{n}")
    assert offenders == [], "cite docs/reference.md instead: " + ", ".join(offenders)


def test_every_citation_of_the_reference_names_a_section_that_exists() -> None:
    sections = _sections()
    assert {"1", "4", "4.1", "8.6"} <= sections  # the reader itself works
    cited = 0
    missing = []
    for path in _tracked_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for m in CITATION.finditer(text):
            for number in re.findall(r"\d+(?:\.\d+)*", m.group(2)):
                cited += 1
                if number not in sections:
                    line = text[: m.start()].count("\n") + 1
                    missing.append(f"{path.relative_to(REPO)}:{line} cites section {number}")
    assert cited > 10, "the citation pattern found almost nothing: is it still the house style?"
    assert missing == []


def test_relative_links_in_the_docs_resolve() -> None:
    broken = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(REPO)} -> {target}")
    assert broken == []
