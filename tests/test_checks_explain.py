"""What users read never cites the internal files: `preflight explain` texts (the checks'
docstrings), the JSON Schemas' descriptions and the comments of the shipped YAML cite the
product's own field reference, docs/reference.md, by a section that exists (1-8)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from preflight.engine import FAMILIES, REGISTRY

REPO = Path(__file__).resolve().parent.parent
INTERNAL = re.compile(r"REFERENCE\.md|PRODUCT\.md")
CITATION = re.compile(r"docs/reference\.md\s+sections?\s+(\d+)(?:\s*(?:-|and)\s*(\d+))?")
SECTIONS = range(1, 9)


def _descriptions(node: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                yield where, value
            else:
                yield from _descriptions(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _descriptions(value, f"{where}/{i}")


def _texts() -> Iterator[tuple[str, str]]:
    for d in REGISTRY.values():
        yield f"explain {d.id}", d.explain
    for fam in FAMILIES.values():
        yield f"explain {fam.pattern}", fam.explain
    for path in sorted((REPO / "schemas").glob("*.schema.json")):
        yield from _descriptions(json.loads(path.read_text(encoding="utf-8")), path.name)
    for path in sorted([*(REPO / "preflight" / "checklists").glob("*.yaml"), *(REPO / "examples").glob("*.yaml")]):
        yield str(path.relative_to(REPO)), path.read_text(encoding="utf-8")


def test_no_user_visible_text_cites_an_internal_file() -> None:
    texts = list(_texts())
    assert len([w for w, _ in texts if w.startswith("explain ")]) > 40
    assert len([w for w, _ in texts if ".schema.json" in w]) > 100
    cited = [where for where, text in texts if INTERNAL.search(text)]
    assert cited == []


def test_citations_of_the_field_reference_name_a_section_that_exists() -> None:
    citations = [(where, m.groups()) for where, text in _texts() for m in CITATION.finditer(text)]
    assert len(citations) >= 8  # the checks, the schema and the pre-start checklist cite it
    wrong = [(where, groups) for where, groups in citations
             if any(g is not None and int(g) not in SECTIONS for g in groups)]
    assert wrong == []


def test_the_citation_pattern_reads_what_the_texts_write() -> None:
    """The two tests above cannot pass by matching nothing."""
    assert INTERNAL.search("see REFERENCE.md section 4") and INTERNAL.search("(PRODUCT.md)")
    assert CITATION.search("(docs/reference.md sections 2 and 4)").groups() == ("2", "4")
    assert CITATION.search("docs/reference.md\n    section 6: 0.9").groups() == ("6", None)
    assert CITATION.search("(docs/reference.md sections 2-4)").groups() == ("2", "4")
