"""The preflight screen's model: one spec's checks, their live results, waivers and the gate.

No Textual here, so the flow (run, waive with a reason, launch only through an open gate) is
tested and reused without a terminal. Checks run through the CLI's own ``run_report`` and the
launch goes through the CLI's own ``start_runner``: the TUI and ``preflight launch`` cannot drift.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..checklist import checklist_for
from ..engine import CheckDef, Context, apply_policy, plan
from ..errors import UsageError
from ..result import Outcome, Report, Result, Status

MIN_REASON = 8  # the CLI's --waive and the runner's --reason ask for the same
WAIVABLE = (Status.FAIL, Status.ERROR, Status.WARN)
WAIVED_BY = "preflight tui"

Launcher = Callable[[Any, Report], Any]  # (spec, passing report) -> cli.Launched


class PreflightSession:
    """Runs a spec's checks and keeps what the screen shows; thread-safe for one running check pass."""

    def __init__(self, spec_path: str | Path, *, level: str = "node", fail_on: str = "fail",
                 probes: Any = None, waivers: list[dict[str, Any]] | None = None) -> None:
        from ..cli import load_checked_spec

        self.spec_path = str(spec_path)
        self.level, self.fail_on, self.probes = level, fail_on, probes
        self.waivers: list[dict[str, Any]] = list(waivers or [])
        # A bad spec raises here, before any screen is drawn, so the CLI can print it and exit 2.
        self.spec = load_checked_spec(self.spec_path, self.waivers)
        self.items = checklist_for(self.spec)
        self.defs: dict[str, CheckDef] = {d.id: d for d in plan(self.spec, level)}
        self.results: dict[str, Result] = {}
        self.running: set[str] = set()
        self.report: Report | None = None
        self._lock = threading.Lock()

    # What to show -------------------------------------------------------------------------------

    def groups(self) -> list[tuple[str, str, list[str]]]:
        """(item id, item title, check ids) in checklist order, for every item with a check."""
        from ..checklist import item_of

        by_item: dict[str, list[str]] = {}
        for cid in self.defs:
            by_item.setdefault(item_of(cid, self.items), []).append(cid)
        titles = {i.id: i.title for i in self.items}
        order = [i.id for i in self.items] + sorted(set(by_item) - set(titles))
        return [(iid, titles.get(iid, iid), by_item[iid]) for iid in order if iid in by_item]

    def state_of(self, check_id: str) -> str:
        """'queued', 'running' or the result's status value."""
        with self._lock:
            if check_id in self.results:
                return self.results[check_id].status.value
            return "running" if check_id in self.running else "queued"

    @property
    def finished(self) -> bool:
        return self.report is not None

    @property
    def gate_open(self) -> bool:
        """The checks finished, passed (or were waived) and probed this machine: a launch may go.
        A static-level pass never opens it, as `preflight check --level static` writes no
        attestation: the spec alone says nothing about the machine the run starts on."""
        return self.report is not None and self.report.status == "pass" and self.level != "static"

    def gate_summary(self) -> str:
        if self.report is None:
            done = len(self.results)
            return f"checking: {done}/{len(self.defs)} done"
        blocking = [r.id for r in self.report.results if r.status.blocks
                    or (self.fail_on == "warn" and r.status == Status.WARN)]
        if not blocking and self.level == "static":
            return "gate: PASSED at static level - launching needs --level node"
        if not blocking:
            return "gate: PASSED - ready to launch"
        shown = ", ".join(blocking[:3]) + (f" and {len(blocking) - 3} more" if len(blocking) > 3 else "")
        return f"gate: FAILED - fix or waive {shown}"

    # Doing things -------------------------------------------------------------------------------

    def run(self, on_change: Callable[[str], None] = lambda _cid: None) -> Report:
        """Run every check (blocking: call from a worker thread); ``on_change`` hears each id."""
        from ..cli import run_report

        with self._lock:
            self.results.clear()
            self.running.clear()
            self.report = None

        def started(d: CheckDef) -> None:
            with self._lock:
                self.running.add(d.id)
            on_change(d.id)

        def finished(r: Result) -> None:
            with self._lock:
                self.running.discard(r.id)
                self.results[r.id] = r
            on_change(r.id)

        report = run_report(self.spec, self.level, self.fail_on, probes=self.probes,
                            show_progress=False, on_start=started, on_finish=finished)
        with self._lock:
            self.results = {r.id: r for r in report.results}
            self.report = report
            # The plan may hold checks the check command leaves out (the cluster.* checks run only
            # under `check --cluster`): what the report has is what this run is judged by.
            self.defs = {cid: d for cid, d in self.defs.items() if cid in self.results}
        return report

    def waive(self, check_id: str, reason: str, by: str = WAIVED_BY) -> Result:
        """Waive a failed (or warning) check with a reason, as `--waive CHECK_ID=REASON` does:
        the waiver joins the spec's waivers, is applied by the engine's own policy and is recorded
        in the attestation when the run is launched."""
        reason = reason.strip()
        if self.report is None:
            raise UsageError("the checks are still running; waive a check once it has a result")
        result = self.results.get(check_id)
        if result is None:
            raise UsageError(f"no check '{check_id}' in this run")
        if result.status not in WAIVABLE:
            raise UsageError(f"{check_id} is {result.status.value}: only a failed or warning check can be waived")
        if len(reason) < MIN_REASON:
            raise UsageError(f"a waiver needs a reason of at least {MIN_REASON} characters "
                             "(it is recorded in the attestation)")
        from ..cli import load_checked_spec

        waiver = {"check": check_id, "reason": reason, "by": by}
        spec = load_checked_spec(self.spec_path, [*self.waivers, waiver])
        outcome = Outcome(result.status, found=result.found, expected=result.expected,
                          remediation=result.remediation, evidence=dict(result.evidence))
        new = apply_policy(self.defs[check_id], outcome, result.duration_s, result.item,
                           Context(spec=spec, probes=self.probes))
        with self._lock:
            self.waivers.append(waiver)
            self.spec = spec
            self.results[check_id] = new
            results = [new if r.id == check_id else r for r in self.report.results]
            self.report = dataclasses.replace(self.report, results=results, spec_sha256=spec.sha256)
        return new

    def launch(self, launcher: Launcher | None = None) -> Any:
        """Start the runner through the open gate (cli.start_runner unless a launcher is given)."""
        if not self.gate_open or self.report is None:
            raise UsageError("the gate has not passed: fix or waive the failures before launching")
        if launcher is None:
            from ..cli import start_runner

            launcher = start_runner
        return launcher(self.spec, self.report)
