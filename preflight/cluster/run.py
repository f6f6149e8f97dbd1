"""One report for a whole cluster: the driver's checks, the cluster checks, every node's results.

The driver runs what is about the run (the spec, the data, monitoring, the budget) once, plus the
cluster checks over the gathered snapshot; each node's machine checks come back tagged with the
node's name, so every output format can say which node failed.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from .. import __version__
from ..result import Report, Result, Status, summarise
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


def node_summary(node: NodeAnswer, results: list[Result]) -> dict[str, Any]:
    counts = {s.value: 0 for s in Status}
    for r in results:
        counts[r.status.value] += 1
    status = Status.ERROR if not node.answered else summarise(results)
    return {"name": node.label, "node_id": node.node_id, "address": node.address, "hostname": node.hostname,
            "status": status.value, "answered": node.answered, "error": node.error, "summary": counts,
            "facts": node.facts}


def node_sections(nodes: list[NodeAnswer],
                  only: list[str] | None = None) -> tuple[list[Result], list[dict[str, Any]]]:
    """Every node's results tagged with its name (those --only keeps), and one summary per node."""
    from ..engine import selected

    results: list[Result] = []
    summaries = []
    for node in nodes:
        mine = [r for r in node_results(node) if selected(r.id, only)]
        results.extend(mine)
        summaries.append(node_summary(node, mine))
    return results, summaries


def cluster_report(spec: Any, level: str, fail_on: str, address: str, only: list[str] | None = None,
                   on_submitted: Callable[[list[NodeAnswer]], None] | None = None) -> Report:
    """Check every node of the Ray cluster at ``address`` and the cluster as a whole."""
    from ..checklist import checklist_for, item_of
    from ..engine import Context, plan, run_checks, selected
    from ..gate import fingerprint
    from ..probes import Probes
    from .ray_runner import connect, gather

    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    connected = connect(address)
    try:
        snap = gather(spec, level, address, on_submitted=on_submitted)
    finally:
        if connected:
            import ray

            ray.shutdown()
    probes = Probes()
    items = checklist_for(spec)
    defs = [d for d in plan(spec, level, cluster=True) if not is_machine_check(d.id) and selected(d.id, only)]
    ctx = Context(spec=spec, probes=probes, level=level)
    ctx.memo("cluster.snapshot", lambda: snap)
    results = run_checks(defs, ctx, item_of=lambda cid: item_of(cid, items))
    per_node, summaries = node_sections(snap.nodes, only)
    results.extend(per_node)
    return Report(
        spec_path=str(spec.path), spec_sha256=spec.sha256, run_name=spec.name, level=level,
        tool_version=__version__, started_at=started.isoformat(timespec="seconds"),
        duration_s=time.perf_counter() - t0, fail_on=fail_on, results=results, checklist=items,
        fingerprint={**fingerprint(probes), "cluster": address, "nodes": len(snap.nodes)},
        artifacts={"leaks": ctx.peek("data.leaks")}, nodes=summaries,
    )


__all__ = ["ClusterSnapshot", "cluster_report", "node_results", "node_sections", "node_summary"]
