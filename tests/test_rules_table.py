"""The rules table is generated from the checks, covers every run-spec field, and is what the docs show."""

from __future__ import annotations

import json
from pathlib import Path

from preflight.cli import main
from preflight.service.catalog import rules_markdown, rules_table, unrelated_fields

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "schemas" / "runspec.schema.json"
FACT_KINDS = ("model:", "data:", "machine:", "run dir:")


def _schema_fields(node: dict, path: tuple[str, ...] = ()) -> set[str]:
    """Every leaf of the run-spec schema as a dotted path (objects with properties are walked)."""
    if node.get("type") == "object" and "properties" in node:
        out: set[str] = set()
        for key, child in node["properties"].items():
            out |= _schema_fields(child, (*path, key))
        return out
    return {".".join(path)}


def _fields() -> set[str]:
    return _schema_fields(json.loads(SCHEMA.read_text(encoding="utf-8")))


def test_docs_rules_page_is_the_generated_table() -> None:
    page = REPO / "docs" / "rules.md"
    assert page.read_text(encoding="utf-8") == rules_markdown(), (
        "docs/rules.md is stale: regenerate it with `preflight list --rules --format markdown > docs/rules.md`")


def test_every_schema_field_is_in_a_rule_or_says_why_not() -> None:
    fields = _fields()
    in_rules = {r.field for r in rules_table()} | {x for r in rules_table() for x in r.related}
    unrelated = set(unrelated_fields())
    assert sorted(unrelated - fields) == [], "UNRELATED names fields the schema does not have"
    assert sorted(unrelated & in_rules) == [], "a field is both in a rule and listed as unrelated"
    assert sorted(fields - in_rules - unrelated) == [], (
        "fields no rule mentions: add the rule (rules= on the check that enforces it) or list the field "
        "in preflight/checks/unrelated.py with the reason")


def test_every_rule_names_real_fields_or_facts() -> None:
    fields = _fields()
    wrong = []
    for r in rules_table():
        for name in (r.field, *r.related):
            if name not in fields and not name.startswith(FACT_KINDS):
                wrong.append(f"{r.check}: {name}")
        if not (r.severity.startswith(("fail", "warn", "error")) and r.says):
            wrong.append(f"{r.check}: severity {r.severity!r}, says {r.says!r}")
    assert wrong == []


def test_list_rules_prints_the_table(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["list", "--rules"]) == 0
    text = capsys.readouterr().out
    rows = rules_table()
    assert f"{len(rows)} rules" in text
    assert all(r.check in text for r in rows)
    assert main(["list", "--rules", "--format", "markdown"]) == 0
    assert capsys.readouterr().out == rules_markdown()
