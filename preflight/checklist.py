"""The pre-start checklist: which checklist item each check serves.

The built-in checklist is a YAML file validated by schemas/checklist.schema.json. A spec may add
items (matched first) and reference checks by id or fnmatch pattern.
"""

from __future__ import annotations

import fnmatch
from functools import cache
from pathlib import Path

from .errors import SpecError, SpecProblem
from .result import ChecklistItem
from .schemas import validation_errors
from .spec import Spec
from .yamlio import json_path, load_yaml, read_text

BUILTIN = Path(__file__).parent / "checklists" / "prestart.yaml"


@cache
def load_checklist(path: Path = BUILTIN) -> tuple[ChecklistItem, ...]:
    data, lines = load_yaml(read_text(path, "checklist"), str(path))
    errors = validation_errors(data, "checklist")
    if errors:
        raise SpecError(str(path), [
            SpecProblem(e.message, json_path(list(e.absolute_path)), rule=str(e.validator)) for e in errors])
    return tuple(ChecklistItem(i["id"], i["title"], list(i["checks"])) for i in data["items"])


def checklist_for(spec: Spec) -> list[ChecklistItem]:
    extra = [ChecklistItem(i["id"], i["title"], list(i["checks"])) for i in spec.get("checklist.items", []) or []]
    return extra + list(load_checklist())


def item_of(check_id: str, items: list[ChecklistItem]) -> str:
    for item in items:
        if any(fnmatch.fnmatchcase(check_id, pattern) for pattern in item.checks):
            return item.id
    return "other"


def unknown_references(spec: Spec, known_ids: list[str]) -> list[SpecProblem]:
    """Waivers, severities and checklist items that name no check: a typo would silently do nothing."""
    problems: list[SpecProblem] = []

    def matches(pattern: str) -> bool:
        return any(fnmatch.fnmatchcase(i, pattern) for i in known_ids)

    def problem(pattern: str, where: tuple[str | int, ...], what: str) -> SpecProblem:
        import difflib

        close = difflib.get_close_matches(pattern, known_ids, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else "list the checks with `preflight list`"
        return SpecProblem(f"{what} '{pattern}' matches no check", json_path(list(where)),
                           line=spec.line_at(where), rule="unknown-check", hint=hint)

    for i, w in enumerate(spec.user.get("waivers", []) or []):
        if not matches(w["check"]):
            problems.append(problem(w["check"], ("waivers", i, "check"), "waiver for"))
    for cid in (spec.user.get("checklist", {}) or {}).get("severity", {}) or {}:
        if not matches(cid):
            problems.append(problem(cid, ("checklist", "severity", cid), "severity for"))
    for i, item in enumerate((spec.user.get("checklist", {}) or {}).get("items", []) or []):
        for j, pattern in enumerate(item["checks"]):
            if not matches(pattern):
                problems.append(problem(pattern, ("checklist", "items", i, "checks", j), "checklist item entry"))
    return problems
