"""The one report builder, and a check pass on this machine into a report.

Cluster mode (``preflight.cluster.run``) builds its report here too, from the driver's checks and
every node's results: a report has one shape whichever way its checks ran.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..checklist import checklist_for, item_of
from ..engine import CheckDef, Context, plan, run_checks, selected
from ..gate import fingerprint
from ..probes import Probes
from ..progress import Progress
from ..result import ChecklistItem, Report, Result
from ..spec import Spec

OnStart = Callable[[CheckDef], None]
OnFinish = Callable[[Result], None]


class Clock:
    """When a check pass began (the report's started_at) and how long it has taken (duration_s)."""

    def __init__(self) -> None:
        self.started_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self._t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0


def run_planned(defs: list[CheckDef], ctx: Context, items: list[ChecklistItem], *,
                on_start: OnStart | None = None, on_finish: OnFinish | None = None) -> list[Result]:
    """Run ``defs``, each result filed under the checklist item it serves."""
    return run_checks(defs, ctx, item_of=lambda cid: item_of(cid, items), on_start=on_start, on_finish=on_finish)


def build_report(spec: Spec, level: str, fail_on: str, clock: Clock, *, results: list[Result],
                 checklist: list[ChecklistItem], ctx: Context, machine: dict[str, Any],
                 nodes: list[dict[str, Any]] | None = None) -> Report:
    """The report of one check pass. ``machine`` is the fingerprint the attestation binds to;
    ``ctx`` hands over what the checks found beyond their results (every leak, for --export-leaks)."""
    return Report(
        spec_path=str(spec.path), spec_sha256=spec.sha256, run_name=spec.name, level=level,
        tool_version=__version__, started_at=clock.started_at, duration_s=clock.elapsed(), fail_on=fail_on,
        results=results, checklist=checklist, fingerprint=machine,
        artifacts={"leaks": ctx.peek("data.leaks")}, nodes=list(nodes or []),
    )


def run_report(spec: Spec, level: str, fail_on: str, probes: Any = None, show_progress: bool = True,
               only: list[str] | None = None, on_start: OnStart | None = None,
               on_finish: OnFinish | None = None) -> Report:
    """Run the spec's checks on this machine into a report; ``on_start``/``on_finish`` also hear of
    each check (the console). ``only``: fnmatch patterns of the checks to run (all when empty)."""
    probes = probes or Probes()
    clock = Clock()
    items = checklist_for(spec)
    defs = [d for d in plan(spec, level) if selected(d.id, only)]
    ctx = Context(spec=spec, probes=probes, level=level)
    with Progress(len(defs), enabled=None if show_progress else False) as progress:
        def check_started(d: CheckDef) -> None:
            progress.started(d)
            if on_start is not None:
                on_start(d)

        def check_finished(r: Result) -> None:
            progress.finished(r)
            if on_finish is not None:
                on_finish(r)

        results = run_planned(defs, ctx, items, on_start=check_started, on_finish=check_finished)
    # At static level nothing about this machine was looked at: nothing to bind an attestation to.
    machine = fingerprint(probes) if level != "static" else {}
    return build_report(spec, level, fail_on, clock, results=results, checklist=items, ctx=ctx, machine=machine)
