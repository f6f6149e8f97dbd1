"""The preflight screen's model: one spec's checks, their live results, waivers and the gate.

No Textual here, so the flow (run, waive with a reason, launch only through an open gate) is
tested and reused without a terminal. The spec, the checks, the waiver rule, the gate and the launch
all come from the service layer that `preflight check` and `preflight launch` use (preflight.service),
so the console and the command line cannot drift.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checklist import checklist_for, item_of
from ..cluster.run import cluster_report, resummarise_nodes
from ..engine import CheckDef, Context, apply_policy, plan
from ..errors import UsageError
from ..result import WAIVABLE, Outcome, Report, Result
from ..rundir import FRESH, RESUME, RUN_DIR_CHOICES
from ..runstate import RUN_DIR_CHECK, describe, judge, read_state
from ..service.check import load_checked_spec
from ..service.launch import GATE_CLOSED, Launched, Launcher, launch, may_launch
from ..service.report import run_planned, run_report
from ..service.waivers import make_waiver

WAIVED_BY = "preflight tui"

# (spec, level, fail_on, address) -> the cluster's report; preflight.cluster.run.cluster_report
ClusterRunner = Callable[[Any, str, str, str], Report]


@dataclass(frozen=True)
class RunDirOffer:
    """What the launch confirmation offers for a run dir that holds a run: what is there, and for
    each choice what it will do (``resume``, ``fresh``) or why it is refused (``*_refused``)."""

    what: str
    resume: str = ""
    resume_refused: str = ""
    fresh: str = ""
    fresh_refused: str = ""


def row_key(result: Result) -> str:
    """How the screen names a result: the check id, with the node in cluster mode
    ('hw.gpu.count @ gpu-2 (10.0.0.2)'), so each node's result has a row of its own."""
    return f"{result.id} @ {result.node}" if result.node else result.id


class PreflightSession:
    """Runs a spec's checks and keeps what the screen shows; thread-safe for one running check pass.

    With ``cluster`` (an address, or auto) the checks run on every node of that Ray cluster through
    ``cluster_runner`` (preflight.cluster.run.cluster_report unless given): results arrive all at
    once, and a machine check has one result per node, keyed by ``row_key``.
    """

    def __init__(self, spec_path: str | Path, *, level: str = "node", fail_on: str = "fail",
                 probes: Any = None, waivers: list[dict[str, Any]] | None = None,
                 cluster: str | None = None, cluster_runner: ClusterRunner | None = None,
                 run_dir_choice: str | None = None) -> None:
        self.spec_path = str(spec_path)
        self.level, self.fail_on, self.probes = level, fail_on, probes
        self.cluster, self.cluster_runner = cluster, cluster_runner
        self.waivers: list[dict[str, Any]] = list(waivers or [])
        self.run_dir_choice = run_dir_choice  # resume / fresh, once chosen at launch (or up front)
        # A bad spec raises here, before any screen is drawn, so the CLI can print it and exit 2.
        self.spec = load_checked_spec(self.spec_path, self.waivers, run_dir_choice)
        self.items = checklist_for(self.spec)
        self.defs: dict[str, CheckDef] = {d.id: d for d in plan(self.spec, level, cluster=bool(cluster))}
        self.results: dict[str, Result] = {}  # by row_key: the check id, or "id @ node" in cluster mode
        self.running: set[str] = set()
        self.report: Report | None = None
        self._lock = threading.Lock()

    # What to show -------------------------------------------------------------------------------

    def groups(self) -> list[tuple[str, str, list[str]]]:
        """(item id, item title, row keys) in checklist order, for every item with a check. In
        cluster mode, once the report is in, a machine check has a row per node, next to each other."""
        by_item: dict[str, list[str]] = {}
        if self.cluster and self.report is not None:
            planned = {cid: i for i, cid in enumerate(self.defs)}
            nodes = {n["name"]: i for i, n in enumerate(self.report.nodes)}
            for r in sorted(self.report.results,
                            key=lambda r: (planned.get(r.id, len(planned)), nodes.get(r.node, -1))):
                by_item.setdefault(r.item, []).append(row_key(r))
        else:
            for cid in self.defs:
                by_item.setdefault(item_of(cid, self.items), []).append(cid)
        titles = {i.id: i.title for i in self.items}
        order = [i.id for i in self.items] + sorted(set(by_item) - set(titles))
        return [(iid, titles.get(iid, iid), by_item[iid]) for iid in order if iid in by_item]

    def state_of(self, key: str) -> str:
        """'queued', 'running' or the result's status value (``key``: a row key or check id)."""
        with self._lock:
            if key in self.results:
                return self.results[key].status.value
            return "running" if key in self.running else "queued"

    def check_of(self, key: str) -> str:
        """The check id a row shows (a per-node row is one check on one node)."""
        result = self.results.get(key)
        return result.id if result is not None else key

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's nodes (Report.nodes: name, status, answered, error, counts); [] until then."""
        return list(self.report.nodes) if self.report is not None else []

    @property
    def finished(self) -> bool:
        return self.report is not None

    @property
    def gate_open(self) -> bool:
        """The checks finished, passed (or were waived) and probed this machine: a launch may go
        (the service's ``may_launch``, as for `preflight launch`; never at static level)."""
        return self.report is not None and may_launch(self.report)

    def gate_summary(self) -> str:
        if self.report is None and self.cluster:
            return f"checking every node of the Ray cluster ({self.cluster})"
        if self.report is None:
            done = len(self.results)
            return f"checking: {done}/{len(self.defs)} done"
        blocking = [row_key(r) for r in self.report.blocking()]
        if not blocking and not may_launch(self.report):
            return "gate: PASSED at static level - launching needs --level node"
        if not blocking:
            return "gate: PASSED - ready to launch"
        if self.run_dir_blocks_only():
            return "gate: FAILED - the run dir holds a run: press l to choose"
        shown = ", ".join(blocking[:3]) + (f" and {len(blocking) - 3} more" if len(blocking) > 3 else "")
        return f"gate: FAILED - fix or waive {shown}"

    # Doing things -------------------------------------------------------------------------------

    def run(self, on_change: Callable[[str], None] = lambda _cid: None) -> Report:
        """Run every check (blocking: call from a worker thread); ``on_change`` hears each id."""
        with self._lock:
            self.results.clear()
            self.running.clear()
            self.report = None
        if self.cluster:
            return self._run_cluster(self.cluster, on_change)

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

    def _run_cluster(self, address: str, on_change: Callable[[str], None]) -> Report:
        """Every node at once: cluster_report answers when all nodes did (or timed out), so the
        checks all show as running until then."""
        runner = self.cluster_runner
        if runner is None:
            runner = cluster_report
            _faulthandler_on_the_terminal()
        with self._lock:
            self.running = set(self.defs)
        for cid in self.defs:
            on_change(cid)
        try:
            report = runner(self.spec, self.level, self.fail_on, address)
        finally:
            with self._lock:
                self.running.clear()
        with self._lock:
            self.results = {row_key(r): r for r in report.results}
            self.report = report
            self.defs = {cid: d for cid, d in self.defs.items() if any(r.id == cid for r in report.results)}
        return report

    def waive(self, check_id: str, reason: str, by: str = WAIVED_BY) -> Result:
        """Waive a failed (or warning) check with a reason, as `--waive CHECK_ID=REASON` does:
        the waiver joins the spec's waivers, is applied by the engine's own policy and is recorded
        in the attestation when the run is launched. Waivers are by check id: waiving a per-node
        row ('id @ node') waives that check on every node."""
        reason = reason.strip()
        if self.report is None:
            raise UsageError("the checks are still running; waive a check once it has a result")
        result = self.results.get(check_id)
        if result is None:
            raise UsageError(f"no check '{check_id}' in this run")
        if result.status not in WAIVABLE:
            raise UsageError(f"{check_id} is {result.status.value}: only a failed or warning check can be waived")
        check_id = result.id
        waiver = make_waiver(check_id, reason, by)
        spec = load_checked_spec(self.spec_path, [*self.waivers, waiver], self.run_dir_choice)
        ctx = Context(spec=spec, probes=self.probes)

        def rewaived(r: Result) -> Result:
            outcome = Outcome(r.status, found=r.found, expected=r.expected, remediation=r.remediation,
                              evidence=dict(r.evidence))
            new = apply_policy(self.defs[check_id], outcome, r.duration_s, r.item, ctx)
            return dataclasses.replace(new, node=r.node)

        with self._lock:
            self.waivers.append(waiver)
            self.spec = spec
            results = [rewaived(r) if r.id == check_id else r for r in self.report.results]
            self.results = {row_key(r): r for r in results}
            self.report = dataclasses.replace(self.report, results=results, spec_sha256=spec.sha256,
                                              nodes=resummarise_nodes(self.report.nodes, results))
        return self.results[row_key(result)]

    # The run dir: what a launch offers when it holds a run -------------------------------------

    def run_dir_blocks_only(self) -> bool:
        """The checks finished and only storage.run_dir blocks the gate: a choice (resume or
        fresh) at launch may open it."""
        if self.report is None or self.report.level == "static":
            return False
        blocking = self.report.blocking()
        return bool(blocking) and all(r.id == RUN_DIR_CHECK for r in blocking)

    def run_dir_offer(self) -> RunDirOffer | None:
        """None when the run dir holds no run (a plain confirmation will do); otherwise what is
        there and what each choice would do, judged now (as the launch will judge it)."""
        state = read_state(self.spec)
        if not state.holds_run:
            return None
        resume, fresh = judge(state, self.spec, RESUME), judge(state, self.spec, FRESH)
        return RunDirOffer(
            what=describe(state, self.spec),
            resume=resume.action if resume.ok else "", resume_refused="" if resume.ok else resume.action,
            fresh=fresh.action if fresh.ok else "", fresh_refused="" if fresh.ok else fresh.action)

    def choose_run_dir(self, choice: str) -> None:
        """Record the run dir choice (as --resume / --fresh do) and judge the run dir again with it;
        in cluster mode the caller runs the checks again (every node judges its own view)."""
        if choice not in RUN_DIR_CHOICES:
            raise UsageError(f"run dir choice {choice!r}: expected one of {', '.join(RUN_DIR_CHOICES)}")
        spec = dataclasses.replace(self.spec, run_dir_choice=choice)
        with self._lock:
            self.run_dir_choice, self.spec = choice, spec
        check = self.defs.get(RUN_DIR_CHECK)
        if self.cluster or self.report is None or check is None:
            return
        ctx = Context(spec=spec, probes=self.probes, level=self.level)
        judged = run_planned([check], ctx, self.items)[0]
        with self._lock:
            assert self.report is not None
            results = [judged if r.id == RUN_DIR_CHECK else r for r in self.report.results]
            self.results = {row_key(r): r for r in results}
            self.report = dataclasses.replace(self.report, results=results)

    def launch(self, launcher: Launcher | None = None) -> Launched:
        """Start the runner through the open gate, as `preflight launch` does (the service's
        ``launch``: ``start_runner`` unless a launcher is given)."""
        if self.report is None:
            raise UsageError(GATE_CLOSED)
        return launch(self.spec, self.report, starter=launcher)


def _faulthandler_on_the_terminal() -> None:
    """ray.init enables faulthandler on sys.stderr, which under Textual is a capture with no file
    descriptor, and then fails to connect; enabled here on the real stderr first, Ray leaves it be."""
    stream = sys.__stderr__
    if faulthandler.is_enabled() or stream is None:
        return
    with contextlib.suppress(OSError, ValueError, RuntimeError):  # no usable stderr: Ray will say why
        faulthandler.enable(file=stream, all_threads=False)
