"""The preflight screen in cluster mode (`preflight tui SPEC --cluster ...`), without Ray: the
session's cluster runner is a fake that returns a report built the way cluster_report builds one
(node answers turned into per-node results and summaries), for two answering nodes, one of them
failing, and a third that died during the check."""

from __future__ import annotations

import contextlib
import faulthandler
import threading
from pathlib import Path
from typing import Any

import pytest
from ray_helpers import private_ray_cluster
from textual.widgets import Button, DataTable, Static
from tui_helpers import CPU_SPEC, run, screen_text, wait_for

from preflight.checklist import checklist_for, item_of
from preflight.cli import main as preflight
from preflight.cluster.run import node_results, node_summary
from preflight.cluster.snapshot import NodeAnswer, name_nodes
from preflight.result import Report, Result, Status
from preflight.tui.app import preflight_app
from preflight.tui.dialogs import ReasonDialog
from preflight.tui.session import PreflightSession

GOOD, BAD, DEAD = "gpu-1 (10.0.0.1)", "gpu-2 (10.0.0.2)", "gpu-3 (10.0.0.3)"
DIED = "died during the check (NodeDiedError: the raylet is gone)"


class FakeCluster:
    """Stands in for cluster_report: holds its answer until ``release`` (the nodes are slow), then
    returns a hand-made report for three nodes."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, spec: Any, level: str, fail_on: str, address: str) -> Report:
        self.calls.append((level, fail_on, address))
        assert self.release.wait(10), "the test never released the fake cluster"
        items = checklist_for(spec)

        def result(cid: str, status: Status, **kw: Any) -> Result:
            return Result(cid, cid, status, "node", item_of(cid, items), **kw)

        nodes = [NodeAnswer(f"{i:02d}" + "ab" * 20, f"10.0.0.{i}", f"gpu-{i}", {"CPU": 8}) for i in (1, 2, 3)]
        name_nodes(nodes)
        good, bad, dead = nodes
        good.results = [result("host.cpus", Status.PASS, expected=">= 4", found="96 CPUs").to_dict(),
                        result("host.memory", Status.PASS, found="512 GB").to_dict()]
        bad.results = [result("host.cpus", Status.FAIL, expected=">= 4", found="2 CPUs",
                              remediation="move the run off this node").to_dict(),
                       result("host.memory", Status.PASS, found="512 GB").to_dict()]
        dead.error = DIED
        results = [result("cluster.reachable", Status.FAIL, expected="every node answers",
                          found=f"{dead.label}: {DIED}", remediation="restart that node's raylet")]
        summaries = []
        for n in nodes:
            mine = node_results(n)
            results += mine
            summaries.append(node_summary(n, mine))
        return Report(str(spec.path), spec.sha256, spec.name, level, "0.1.0", "2026-01-01T00:00:00+00:00", 1.0,
                      fail_on, results, items, nodes=summaries)


def cluster_app(spec: Path) -> tuple[PreflightSession, FakeCluster, Any]:
    fake = FakeCluster()
    session = PreflightSession(spec, cluster="10.0.0.1:6379", cluster_runner=fake)
    return session, fake, preflight_app(session)


def cell(app: Any, key: str) -> str:
    return str(app.screen.query_one("#checks", DataTable).get_cell(key, "status"))


def select(app: Any, key: str) -> None:
    table = app.screen.query_one("#checks", DataTable)
    table.move_cursor(row=table.get_row_index(key))


def text_of(app: Any, widget_id: str) -> str:
    return str(app.screen.query_one(widget_id, Static).render())


def test_each_node_gets_its_rows_the_failing_node_is_in_the_details_and_the_dead_one_is_named(write_spec):
    session, fake, app = cluster_app(write_spec(CPU_SPEC))

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            # Until every node answers the screen says so, and no per-node row exists yet.
            await wait_for(pilot, lambda: "waiting for every node of 10.0.0.1:6379" in screen_text(app),
                           what="the waiting nodes")
            assert "checking every node of the Ray cluster" in screen_text(app)
            await wait_for(pilot, lambda: "running" in cell(app, "host.cpus"), what="the checks running")
            fake.release.set()
            await wait_for(pilot, lambda: "gate: FAILED" in screen_text(app), what="the cluster's verdict")
            assert fake.calls == [("node", "fail", "10.0.0.1:6379")]

            assert "PASS" in cell(app, f"host.cpus @ {GOOD}") and "FAIL" in cell(app, f"host.cpus @ {BAD}")
            assert "PASS" in cell(app, f"host.memory @ {BAD}") and "FAIL" in cell(app, "cluster.reachable")
            assert "FAIL" in cell(app, "item:hardware")
            rows = [k.value for k in app.screen.query_one("#checks", DataTable).rows]
            assert "host.cpus" not in rows and not any(DEAD in k for k in rows if k)  # no results: no rows
            assert rows.index(f"host.cpus @ {GOOD}") + 1 == rows.index(f"host.cpus @ {BAD}")

            nodes = text_of(app, "#nodes")
            assert "nodes: 2 of 3 answered" in nodes
            assert f"ERROR  {DEAD}: not checked, {DIED}" in nodes
            assert f"FAIL   {BAD}: 1 fail" in nodes and f"PASS   {GOOD}: all passed" in nodes
            assert nodes.index(DEAD) < nodes.index(BAD) < nodes.index(GOOD)  # worst first
            assert f"fix or waive cluster.reachable, host.cpus @ {BAD}" in screen_text(app)

            select(app, f"host.cpus @ {BAD}")
            await pilot.pause()
            details = text_of(app, "#details")
            assert f"node: {BAD}" in details and "expected: >= 4" in details and "found: 2 CPUs" in details
            assert "fix: move the run off this node" in details and "waive it (on every node)" in details

    run(scenario())


@pytest.mark.slow
def test_a_waiver_covers_the_check_on_every_node_and_opens_the_gate(write_spec):
    session, fake, app = cluster_app(write_spec(CPU_SPEC))
    fake.release.set()

    async def waive(pilot: Any, key: str, reason: str) -> None:
        select(app, key)
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, ReasonDialog), what="the waiver dialog")
        await pilot.press(*reason, "enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, ReasonDialog), what="the dialog to close")
        await pilot.pause(0.2)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: "gate: FAILED" in screen_text(app), what="the cluster's verdict")
            assert app.screen.query_one("#launch", Button).disabled
            await waive(pilot, f"host.cpus @ {BAD}", "gpu-2 is drained before the run starts")
            assert session.waivers == [{"check": "host.cpus", "reason": "gpu-2 is drained before the run starts",
                                        "by": "preflight tui"}]
            assert "WAIVED" in cell(app, f"host.cpus @ {BAD}") and "PASS" in cell(app, f"host.cpus @ {GOOD}")
            assert session.results[f"host.cpus @ {BAD}"].node == BAD
            assert f"WAIVED {BAD}: 1 waived" in text_of(app, "#nodes")
            # The dead node still blocks, through cluster.reachable, until that is waived too.
            assert "gate: FAILED - fix or waive cluster.reachable" in screen_text(app)
            assert app.screen.query_one("#launch", Button).disabled

            await waive(pilot, "cluster.reachable", "gpu-3 is out of the run's placement")
            assert "gate: PASSED - ready to launch" in screen_text(app)
            assert not app.screen.query_one("#launch", Button).disabled
            assert session.gate_open and session.report is not None and session.report.status == "pass"

    run(scenario())


def test_more_nodes_than_the_panel_lists_are_counted(write_spec):
    """Sixty healthy nodes and one dead one: the dead one is listed, the rest are counted."""
    many = [{"name": f"n{i}", "status": "pass", "answered": True, "error": "", "summary": {"pass": 2}}
            for i in range(60)]
    dead = {"name": "n60", "status": "error", "answered": False, "error": "did not answer within 60 s",
            "summary": {}}

    def runner(spec: Any, level: str, fail_on: str, address: str) -> Report:
        return Report(str(spec.path), spec.sha256, spec.name, level, "0.1.0", "", 1.0, fail_on, [],
                      checklist_for(spec), nodes=[*many, dead])

    session = PreflightSession(write_spec(CPU_SPEC), cluster="auto", cluster_runner=runner)
    app = preflight_app(session)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: "gate: PASSED" in screen_text(app), what="the verdict")
            nodes = text_of(app, "#nodes")
            assert "nodes: 60 of 61 answered" in nodes and "n60: not checked, did not answer within 60 s" in nodes
            assert "and 57 more: 57 pass" in nodes and len(nodes.splitlines()) == 6

    run(scenario())


def test_cluster_arguments_are_checked_like_preflight_check_before_any_screen(capsys, write_spec):
    spec = str(write_spec(CPU_SPEC))
    Path("runs/x").mkdir(parents=True)
    for argv, message in [
        (["tui", spec, "--cluster", "auto", "--level", "static"], "use it with --level node or active"),
        (["tui", spec, "--cluster", "127.0.0.1:1"], "nothing answers at 127.0.0.1:1"),
        (["tui", spec, "--cluster", "no-port-here"], "expected auto or HOST:PORT"),
        (["tui", "--attach", "runs/x", "--cluster", "auto"], "apply to the checks of a SPEC"),
    ]:
        assert preflight(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)


def test_a_cluster_that_cannot_be_reached_says_why_and_r_checks_again(write_spec):
    from preflight.errors import UsageError

    fake = FakeCluster()
    fake.release.set()
    calls: list[str] = []

    def runner(spec: Any, level: str, fail_on: str, address: str) -> Report:
        calls.append(address)
        if len(calls) == 1:  # the head went away between the command line's check and the run
            raise UsageError(f"--cluster {address}: cannot connect to a Ray cluster")
        return fake(spec, level, fail_on, address)

    session = PreflightSession(write_spec(CPU_SPEC), cluster="10.0.0.1:6379", cluster_runner=runner)
    app = preflight_app(session)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: "could not run: --cluster 10.0.0.1:6379: cannot connect" in screen_text(app),
                           what="the connection error")
            assert app.screen.query_one("#launch", Button).disabled
            assert "nodes: not checked" in text_of(app, "#nodes")
            await pilot.press("r")
            await wait_for(pilot, lambda: "gate: FAILED" in screen_text(app), what="the second pass")
            assert len(calls) == 2 and "FAIL" in cell(app, f"host.cpus @ {BAD}")
            await pilot.press("r")  # a re-run goes back to the planned rows, then to each node's again
            await wait_for(pilot, lambda: len(calls) == 3 and "gate: FAILED" in screen_text(app),
                           what="the third pass")
            await pilot.pause(0.2)
            assert "PASS" in cell(app, f"host.cpus @ {GOOD}") and "nodes: 2 of 3 answered" in text_of(app, "#nodes")

    run(scenario())


@pytest.mark.slow
def test_a_real_two_node_ray_cluster_is_checked_from_the_screen(write_spec):
    """The real cluster_report from the screen's worker thread, on Ray's test cluster (a head and
    one more raylet, not connected beforehand): under Textual, sys.stderr has no file descriptor,
    which ray.init's faulthandler call used to trip on; pytest's own faulthandler is off meanwhile."""
    pytest.importorskip("ray")

    was_on = faulthandler.is_enabled()
    faulthandler.disable()
    try:
        with private_ray_cluster(num_cpus=1) as (cluster, _):
            cluster.add_node(num_cpus=1)
            spec = write_spec(CPU_SPEC.replace("min_cpus: 4096", "min_cpus: 1"))
            session = PreflightSession(spec, cluster=cluster.address)
            app = preflight_app(session)

            async def scenario() -> None:
                async with app.run_test(size=(110, 40)) as pilot:
                    await wait_for(pilot, lambda: "gate:" in screen_text(app) or "could not run" in screen_text(app),
                                   timeout=120, what="the cluster's verdict")
                    await pilot.pause(0.2)
                    assert "could not run" not in screen_text(app), screen_text(app)
                    assert "nodes: 2 of 2 answered" in text_of(app, "#nodes")
                    names = [n["name"] for n in session.nodes()]
                    assert {f"host.memory @ {name}" for name in names} <= set(session.results)

            run(scenario())
    finally:
        faulthandler.disable()
        if was_on:
            with contextlib.suppress(Exception):
                faulthandler.enable()
