"""Helpers for the checks that relate fields to each other: the findings of one check (each a
warning or a failure with its fix), whether the user wrote a field, and the thresholds table a
check's `preflight explain` text ends with (generated from preflight.presets, so it cannot drift).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..result import Outcome, failed, passed, warned
from ..spec import Spec

F = TypeVar("F", bound=Callable[..., Any])


def with_thresholds(text: str) -> Callable[[F], F]:
    """Append ``text`` (a table built from the presets) to the check's docstring, which is what
    `preflight explain` shows. Put it below ``@check`` so the check registers the full text."""

    def add(fn: F) -> F:
        fn.__doc__ = inspect.cleandoc(fn.__doc__ or "") + "\n\n" + text.strip()
        return fn

    return add


def table(header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> str:
    """A plain-text table for `preflight explain`."""
    rows = [header, *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def user_set(spec: Spec, dotted: str) -> bool:
    """Whether the spec's file itself sets ``dotted`` (not a default, not the stage preset)."""
    node: Any = spec.user
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@dataclass
class Findings:
    """What one check found wrong: failures and warnings, each with its fix. ``outcome`` turns
    them into the check's result: failed if anything failed, warned if anything warned."""

    fails: list[str] = field(default_factory=list)
    warns: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)

    def fail(self, what: str, fix: str) -> None:
        self.fails.append(what)
        self.fixes.append(fix)

    def warn(self, what: str, fix: str) -> None:
        self.warns.append(what)
        self.fixes.append(fix)

    def outcome(self, found: str, expected: str, **evidence: Any) -> Outcome:
        problems = self.fails + self.warns
        if not problems:
            return passed(found, expected, **evidence)
        shown = "; ".join(problems)
        fix = "; ".join(dict.fromkeys(self.fixes))
        if self.fails:
            return failed(shown, expected, fix, **evidence)
        return warned(shown, expected, fix, **evidence)
