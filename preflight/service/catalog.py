"""The checks that exist: one explained (`preflight explain`), all of them listed (`preflight list`)."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass

from ..checklist import item_of, load_checklist
from ..engine import FAMILIES, REGISTRY, CheckDef, Family, plan
from ..errors import UsageError
from .check import load_checked_spec


@dataclass(frozen=True)
class CheckInfo:
    """A check (or a family of checks) as `explain` and `list` show it."""

    id: str  # as shown: the id, or 'ID (one of FAMILY-PATTERN)' for a member of a family
    title: str
    level: str
    item: str  # the checklist item it serves
    explain: str = ""  # what it verifies, its thresholds and its remediation


def describe_check(check_id: str) -> CheckInfo:
    """One check by id (a registered check, or a member of a family such as stack.<package>)."""
    entry: CheckDef | Family | None = REGISTRY.get(check_id)
    shown_id = check_id
    if entry is None:
        family = next((f for f in FAMILIES.values()
                       if fnmatch.fnmatchcase(check_id, f.pattern.split("<")[0] + "*")), None)
        if family is not None:
            entry, shown_id = family, f"{check_id} (one of {family.pattern})"
    if entry is None:
        known = list(REGISTRY) + [f.pattern for f in FAMILIES.values()]
        close = difflib.get_close_matches(check_id, known, n=1)
        raise UsageError(f"no check '{check_id}'" + (f"; did you mean '{close[0]}'?" if close else "")
                         + " (see `preflight list`)")
    item = item_of(check_id, list(load_checklist()))
    return CheckInfo(shown_id, entry.title, entry.level, item, entry.explain)


def list_checks(spec_path: str | None = None) -> list[CheckInfo]:
    """Every check and family; for a spec, its own checks with the families expanded (stack.<package>)."""
    items = list(load_checklist())
    if spec_path:
        rows = [(d.id, d.level, d.title) for d in plan(load_checked_spec(spec_path), "active", cluster=True)]
    else:
        rows = [(d.id, d.level, d.title) for d in REGISTRY.values()]
        rows += [(f.pattern, f.level, f.title) for f in FAMILIES.values()]
    return [CheckInfo(cid, title, level, item_of(cid, items)) for cid, level, title in rows]
