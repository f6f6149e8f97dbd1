"""What a check is, what it sees, and where it registers: the contract between the check modules
and the engine.

A check is a function ``(Context) -> Outcome`` registered with ``@check`` under a stable dotted id
with a title and a level; a family (``@family``, e.g. ``stack.<package>``) expands into one check
per thing the spec names. The check modules import this module, and the engine imports the check
modules (which fills ``REGISTRY`` and ``FAMILIES``): neither imports the other both ways.
"""

from __future__ import annotations

import datetime as dt
import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .result import Outcome
from .spec import Spec

LEVELS = ("static", "node", "active")
DEFAULT_TIMEOUT_S = 15.0

CheckFn = Callable[["Context"], Outcome]


@dataclass(frozen=True)
class Rule:
    """One relation a check enforces: ``field`` is constrained by ``related``.

    ``related`` names other spec fields (``training.clip_high``) or facts the check reads, written
    ``model: ...`` (the model's config.json and tokenizer), ``data: ...`` (the dataset),
    ``machine: ...`` (this node or the cluster) or ``run dir: ...``. ``severity`` says what breaking
    it gives: ``fail``, ``warn``, or both with the line between them (``warn; fail beyond 10x``).
    ``preflight list --rules`` and docs/rules.md are generated from these.
    """

    field: str
    related: tuple[str, ...]
    severity: str
    says: str  # the rule in one line


@dataclass(frozen=True)
class CheckDef:
    id: str
    title: str
    level: str
    fn: CheckFn
    explain: str = ""  # what it verifies, its thresholds and remediation (the docstring)
    timeout_s: float = DEFAULT_TIMEOUT_S
    rules: tuple[Rule, ...] = ()  # the relations between fields it enforces


@dataclass(frozen=True)
class Family:
    """Checks whose instances come from the spec, such as one ``stack.<package>`` per package."""

    pattern: str  # e.g. "stack.<package>"
    title: str
    level: str
    expand: Callable[[Spec], list[CheckDef]]
    explain: str = ""


REGISTRY: dict[str, CheckDef] = {}
FAMILIES: dict[str, Family] = {}

F = TypeVar("F", bound=Callable[..., Any])


def check(id: str, title: str, level: str, timeout_s: float = DEFAULT_TIMEOUT_S,
          rules: tuple[Rule, ...] = ()) -> Callable[[F], F]:
    """Register a check function under a stable id, with the field relations it enforces."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}")

    def register(fn: F) -> F:
        if id in REGISTRY:
            raise ValueError(f"check id {id!r} registered twice")
        REGISTRY[id] = CheckDef(id, title, level, fn, _dedent(fn.__doc__), timeout_s, tuple(rules))
        return fn

    return register


def family(pattern: str, title: str, level: str) -> Callable[[F], F]:
    """Register a function ``(Spec) -> list[CheckDef]`` that expands into per-spec checks."""

    def register(fn: F) -> F:
        FAMILIES[pattern] = Family(pattern, title, level, fn, _dedent(fn.__doc__))
        return fn

    return register


def _dedent(doc: str | None) -> str:
    return inspect.cleandoc(doc) if doc else ""


@dataclass
class Context:
    """What a check sees: the spec, the probes, and a memo so a probe runs once per check run."""

    spec: Spec
    probes: Any  # preflight.probes.Probes; Any keeps this module free of probe imports
    today: dt.date = field(default_factory=dt.date.today)
    level: str = "node"  # the deepest level planned: a static check may use an active measurement
    _memo: dict[str, Any] = field(default_factory=dict)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """Compute once across concurrent checks; an exception is remembered and re-raised."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._memo:
                try:
                    self._memo[key] = (True, compute())
                except Exception as exc:  # remembered so every check reports the same failure
                    self._memo[key] = (False, exc)
            ok, value = self._memo[key]
        if not ok:
            raise value
        return value

    def peek(self, key: str) -> Any:
        """A memoized value if some check computed it, else None (never computes)."""
        with self._guard:
            entry = self._memo.get(key)
        return entry[1] if entry and entry[0] else None
