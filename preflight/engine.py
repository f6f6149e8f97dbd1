"""Planning a spec's checks, running them concurrently, and applying policy.

What a check is, and the registry the check modules fill, live in ``preflight.registry`` (they
are importable from here too). Checks never raise on purpose: a check that raises or outlives its
timeout becomes an ``error`` result, which fails the gate unless waived. Families
(``stack.<package>``) expand into one check per thing the spec names.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from . import checks  # noqa: F401  importing the package registers every built-in check (none imports torch)
from .errors import UnreadableValue
from .registry import (
    DEFAULT_TIMEOUT_S,
    FAMILIES,
    LEVELS,
    REGISTRY,
    CheckDef,
    CheckFn,
    Context,
    Family,
    check,
    family,
)
from .result import WAIVABLE, Outcome, Result, Status
from .spec import Spec

__all__ = [
    "CLUSTER_PREFIX", "DEFAULT_TIMEOUT_S", "FAMILIES", "LEVELS", "REGISTRY", "CheckDef", "CheckFn", "Context",
    "Family", "all_known_ids", "apply_policy", "check", "family", "find_waiver",
    "plan", "run_checks", "selected",
]


CLUSTER_PREFIX = "cluster."  # checks that compare a Ray cluster's nodes: only `check --cluster` plans them
TRAINER_PREFIX = "trainer."  # checks of a framework's run (trainer: in the spec): planned only for one


def _for_framework(check_id: str, spec: Spec) -> bool:
    """trainer.<framework>.* only for that framework's spec, trainer.<name> for any framework's."""
    if not check_id.startswith(TRAINER_PREFIX):
        return True
    parts = check_id.split(".")
    return spec.framework is not None and (len(parts) == 2 or parts[1] == spec.framework)


def plan(spec: Spec, level: str = "node", cluster: bool = False) -> list[CheckDef]:
    """Every check that applies at ``level`` or below, families expanded, in registration order.
    The cluster checks are planned only for a cluster run (``cluster=True``), the trainer checks
    only for a spec whose run a framework launches (its own and the framework-agnostic ones)."""
    allowed = set(LEVELS[: LEVELS.index(level) + 1])
    defs = [d for d in REGISTRY.values() if d.level in allowed and (cluster or not d.id.startswith(CLUSTER_PREFIX))
            and _for_framework(d.id, spec)]
    for fam in FAMILIES.values():
        if fam.level in allowed:
            defs.extend(fam.expand(spec))
    return defs


def all_known_ids(spec: Spec) -> list[str]:
    return [d.id for d in plan(spec, LEVELS[-1], cluster=True)]


def selected(check_id: str, only: list[str] | None) -> bool:
    """Whether `check --only PATTERN...` keeps this check (fnmatch; no patterns keep every check)."""
    return not only or any(fnmatch.fnmatchcase(check_id, p) for p in only)


# --- running ------------------------------------------------------------------------------------


Listener = Callable[[CheckDef], None]
ResultListener = Callable[[Result], None]


def crashed(d: CheckDef, exc: Exception) -> Outcome:
    """The error result of a check that raised: a value of the user's it could not use
    (UnreadableValue) names the field and the fix; anything else is a bug in the check."""
    if isinstance(exc, UnreadableValue):
        return Outcome(Status.ERROR, found=str(exc), remediation=exc.fix,
                       evidence={"field": exc.field, "value": repr(exc.value)})
    return Outcome(
        Status.ERROR,
        found=f"the check itself failed: {type(exc).__name__}: {exc}",
        remediation="this is a bug in the check; report it with the evidence. To launch anyway, "
        f"waive it with a reason: --waive {d.id}=REASON",
        evidence={"traceback": traceback.format_exc(limit=4)},
    )


def run_checks(
    defs: Iterable[CheckDef],
    ctx: Context,
    *,
    item_of: Callable[[str], str] = lambda _id: "other",
    max_workers: int = 8,
    on_start: Listener | None = None,
    on_finish: ResultListener | None = None,
) -> list[Result]:
    """Run checks concurrently, each with its own timeout; results come back in plan order.

    Each check runs in a daemon thread, so one that hangs (a stuck NFS mount, a wedged driver) is
    reported as an error when its timeout passes and never keeps the process alive.
    """
    pending = list(defs)
    order = {d.id: i for i, d in enumerate(pending)}
    severity = ctx.spec.get("checklist.severity", {}) or {}
    done: queue.Queue[tuple[CheckDef, Outcome, float]] = queue.Queue()
    running: dict[str, tuple[CheckDef, float]] = {}
    results: list[Result] = []

    def finish(d: CheckDef, outcome: Outcome, duration: float) -> None:
        result = apply_policy(d, outcome, duration, item_of(d.id), ctx)
        results.append(result)
        if on_finish:
            on_finish(result)

    def worker(d: CheckDef) -> None:
        start = time.perf_counter()
        try:
            outcome = d.fn(ctx)
            if not isinstance(outcome, Outcome):
                raise TypeError(f"check returned {type(outcome).__name__}, not an Outcome")
        except Exception as exc:
            outcome = crashed(d, exc)
        done.put((d, outcome, time.perf_counter() - start))

    while pending or running:
        while pending and len(running) < max_workers:
            d = pending.pop(0)
            if severity.get(d.id) == "off":
                finish(d, Outcome(Status.SKIP, found="turned off by checklist.severity in the spec"), 0.0)
                continue
            running[d.id] = (d, time.perf_counter())
            if on_start:
                on_start(d)
            threading.Thread(target=worker, args=(d,), name=f"check:{d.id}", daemon=True).start()
        if not running:
            continue
        try:
            d, outcome, duration = done.get(timeout=0.02)
            if d.id in running:  # not already reported as timed out
                del running[d.id]
                finish(d, outcome, duration)
        except queue.Empty:
            pass
        now = time.perf_counter()
        for cid, (d, started) in list(running.items()):
            if now - started > d.timeout_s:
                del running[cid]
                finish(d, Outcome(
                    Status.ERROR,
                    found=f"did not finish within {d.timeout_s:g} s",
                    remediation="something it probes is hanging (a stuck mount, driver or network); "
                    "fix that and re-run, or waive the check with a reason",
                ), now - started)
    results.sort(key=lambda r: order.get(r.id, len(order)))
    return results


def apply_policy(d: CheckDef, outcome: Outcome, duration: float, item: str, ctx: Context) -> Result:
    """Turn an outcome into a result: the spec's severity override, then any waiver."""
    result = Result(
        id=d.id, title=d.title, status=outcome.status, level=d.level, item=item,
        expected=outcome.expected, found=outcome.found, remediation=outcome.remediation,
        evidence=outcome.evidence, duration_s=duration,
    )
    override = (ctx.spec.get("checklist.severity", {}) or {}).get(d.id)
    if override == "warn" and result.status == Status.FAIL:
        result.status, result.note = Status.WARN, "a failure only warns: checklist.severity sets this check to warn"
    elif override == "fail" and result.status == Status.WARN:
        result.status, result.note = Status.FAIL, "a warning blocks: checklist.severity sets this check to fail"
    waiver = find_waiver(d.id, ctx.spec.get("waivers", []) or [])
    if waiver is not None:
        expires = waiver.get("expires")
        if expires and dt.date.fromisoformat(expires) < ctx.today:
            result.note = f"waiver expired on {expires}; renew it or fix the check"
        elif result.status in WAIVABLE:
            result.evidence = {**result.evidence, "status_before_waiver": result.status.value}
            result.status, result.waiver = Status.WAIVED, dict(waiver)
        else:
            result.note = "a waiver exists but the check passes; the waiver can be removed"
    return result


def find_waiver(check_id: str, waivers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last waiver whose id or pattern matches (a later, CLI-given waiver wins)."""
    match = None
    for w in waivers:
        if w.get("check") == check_id or fnmatch.fnmatchcase(check_id, w.get("check", "")):
            match = w
    return match
