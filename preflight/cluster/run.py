"""One report for a whole cluster: the driver's checks, the cluster checks, every node's results.

The driver runs what is about the run (the spec, the data, monitoring, the budget) once, plus the
cluster checks over the gathered snapshot; each node's machine checks come back tagged with the
node's name, so every output format can say which node failed. The report is built by the same
builder as a check on one machine (preflight.service.report).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..checklist import checklist_for
from ..engine import Context, plan, selected
from ..gate import fingerprint
from ..probes import Probes
from ..result import Report, Result, Status, count_statuses, summarise
from ..service.report import Clock, build_report, run_planned
from ..spec import Spec
from .node_task import is_machine_check
from .snapshot import ClusterSnapshot, NodeAnswer


def node_results(node: NodeAnswer) -> list[Result]:
    out = []
    for d in node.results:
        fields = {k: v for k, v in d.items() if k in Result.__dataclass_fields__}
        fields["status"] = Status(fields["status"])
        fields["node"] = node.label
        out.append(Result(**fields))
    return out


def node_status(results: list[Result], answered: bool) -> str:
    """A node's verdict: its worst result; a node that never answered is an error (nothing was checked)."""
    return (summarise(results) if answered else Status.ERROR).value


def node_summary(node: NodeAnswer, results: list[Result]) -> dict[str, Any]:
    return {"name": node.label, "node_id": node.node_id, "address": node.address, "hostname": node.hostname,
            "status": node_status(results, node.answered), "answered": node.answered, "error": node.error,
            "summary": count_statuses(results), "facts": node.facts}


def resummarise_nodes(nodes: list[dict[str, Any]], results: list[Result]) -> list[dict[str, Any]]:
    """Each node's status and counts again after a waiver changed some of its results (the console);
    a node that did not answer stays an error (it has no results to waive)."""
    out = []
    for node in nodes:
        mine = [r for r in results if r.node == node["name"]]
        out.append({**node, "status": node_status(mine, node.get("answered", True)),
                    "summary": count_statuses(mine)})
    return out


def node_sections(nodes: list[NodeAnswer],
                  only: list[str] | None = None) -> tuple[list[Result], list[dict[str, Any]]]:
    """Every node's results tagged with its name (those --only keeps), and one summary per node."""
    results: list[Result] = []
    summaries = []
    for node in nodes:
        mine = [r for r in node_results(node) if selected(r.id, only)]
        results.extend(mine)
        summaries.append(node_summary(node, mine))
    return results, summaries


def gather_snapshot(spec: Spec, level: str, address: str,
                    on_submitted: Callable[[list[NodeAnswer]], None] | None = None) -> ClusterSnapshot:
    """Connect to the cluster, run the machine checks on every node, and disconnect again (unless
    this process was connected already, as in tests)."""
    from .ray_runner import connect, disconnect, gather  # imports Ray: only in cluster mode

    connected = connect(address)
    try:
        return gather(spec, level, address, on_submitted=on_submitted)
    finally:
        if connected:
            disconnect()


def cluster_report(spec: Spec, level: str, fail_on: str, address: str, only: list[str] | None = None,
                   on_submitted: Callable[[list[NodeAnswer]], None] | None = None) -> Report:
    """Check every node of the Ray cluster at ``address`` and the cluster as a whole."""
    clock = Clock()
    snap = gather_snapshot(spec, level, address, on_submitted)
    probes = Probes()
    items = checklist_for(spec)
    defs = [d for d in plan(spec, level, cluster=True) if not is_machine_check(d.id) and selected(d.id, only)]
    ctx = Context(spec=spec, probes=probes, level=level)
    ctx.memo("cluster.snapshot", lambda: snap)
    results = run_planned(defs, ctx, items)
    per_node, summaries = node_sections(snap.nodes, only)
    results.extend(per_node)
    machine = {**fingerprint(probes), "cluster": address, "nodes": len(snap.nodes)}
    return build_report(spec, level, fail_on, clock, results=results, checklist=items, ctx=ctx,
                        machine=machine, nodes=summaries)


__all__ = ["ClusterSnapshot", "cluster_report", "node_results", "node_sections", "node_summary",
           "resummarise_nodes"]
