"""Measured collective bandwidth (`--level active`): all-reduce and all-gather busbw vs the spec.

Across a cluster (`--cluster`) the ranks are the nodes and a shortfall fails, naming the slowest
pair of nodes. Without a cluster the ranks are local processes on this machine: that measures the
collective stack, not the network between nodes, so a shortfall only warns.
"""

from __future__ import annotations

from typing import Any

from ..probes import ProbeUnavailable
from ..probes_active.collective import CollectiveError, run_local
from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed, warned
from ._util import gpu_inventory

MAX_BUDGET_S = 600
STARTUP_S = 60  # importing torch in every rank before the budget starts to matter


def backend_for(ctx: Context, ranks: int) -> str:
    """nccl when the spec asks for it, or on auto when this machine has a GPU per local rank."""
    chosen = str(ctx.spec.get("distributed.backend"))
    if chosen != "auto":
        return chosen
    try:
        return "nccl" if len(gpu_inventory(ctx).gpus) >= ranks else "gloo"
    except ProbeUnavailable:
        return "gloo"


def _sweep_table(m: Any) -> dict[str, Any]:
    return {f"{r.op} {r.bytes / 2**20:g} MiB": f"algbw {r.algbw_gb_s:.2f} GB/s, busbw {r.busbw_gb_s:.2f} GB/s"
            for r in m.rows}


@check("network.collective", "Measured all-reduce / all-gather bandwidth", "active", rules=(
    Rule("network.min_gbps", ("machine: measured all-reduce bus bandwidth",), "fail across nodes; warn for local ranks",
         "the measured all-reduce bus bandwidth reaches it"),
),
       timeout_s=MAX_BUDGET_S + STARTUP_S + 30)
def collective(ctx: Context) -> Outcome:
    """Runs all-reduce and all-gather with torch.distributed (gloo on CPU, NCCL on GPU) over
    message sizes from 64 KiB up to active.collective_max_mib (default 64 MiB), and computes
    algbw and busbw as nccl-tests does (all-reduce busbw = algbw x 2(n-1)/n, all-gather
    busbw = algbw x (n-1)/n). The best all-reduce busbw is compared with network.min_gbps
    (default 10 Gbit/s). With --cluster the ranks are the cluster's nodes and a shortfall fails,
    naming the slowest pair of nodes; otherwise active.collective_local_ranks (default 2) local
    processes are measured, which says nothing about the links between nodes, so a shortfall only
    warns. Stops at active.collective_budget_s (default 120 s)."""
    spec = ctx.spec
    need_gbit = float(spec.get("network.min_gbps"))
    expected = f"all-reduce busbw >= {need_gbit:g} Gbit/s ({need_gbit / 8:g} GB/s)"
    budget = min(float(spec.get("active.collective_budget_s")), MAX_BUDGET_S)
    snapshot = ctx.peek("cluster.snapshot")
    across_nodes = snapshot is not None
    if across_nodes:
        if snapshot.collective_error:
            return failed(f"the collective between the nodes failed: {snapshot.collective_error}", expected,
                          "check that the nodes can reach each other on all ports (firewall, NCCL_SOCKET_IFNAME "
                          "/ GLOO_SOCKET_IFNAME), then re-run")
        m = snapshot.collective
    else:
        ranks = int(spec.get("active.collective_local_ranks"))
        try:
            m = run_local(ranks, float(spec.get("active.collective_max_mib")), budget, backend_for(ctx, ranks),
                          startup_s=STARTUP_S)
        except CollectiveError as exc:
            return failed(f"the collective probe failed: {exc}", expected,
                          "check that torch is installed with torch.distributed (and NCCL for GPUs)")
    peak = m.peak_busbw("all_reduce")
    if peak is None:
        return failed("no message size finished within the budget", expected,
                      "raise active.collective_budget_s or lower active.collective_max_mib")
    gather = m.peak_busbw("all_gather")
    where = (f"between {m.world} nodes" if across_nodes else f"between {m.world} local ranks on this machine")
    found = (f"all-reduce busbw {peak.busbw_gb_s:.2f} GB/s ({peak.busbw_gb_s * 8:.1f} Gbit/s) at "
             f"{peak.bytes / 2**20:g} MiB, all-gather {gather.busbw_gb_s if gather else 0:.2f} GB/s, "
             f"{m.backend}, {where}")
    evidence: dict[str, Any] = {"sweep": _sweep_table(m), "backend": m.backend, "ranks": m.names,
                                "truncated": m.truncated}
    slow = m.slowest_pair()
    if slow is not None:
        evidence["pairs"] = {f"{m.name(p.a)} <-> {m.name(p.b)}": round(p.busbw_gb_s, 2) for p in m.pairs}
    if peak.busbw_gb_s * 8 >= need_gbit:
        return passed(found, expected, **evidence)
    slow_text = (f"; slowest pair: {m.name(slow.a)} <-> {m.name(slow.b)} at {slow.busbw_gb_s:.2f} GB/s"
                 if slow else "")
    if across_nodes:
        return failed(found + slow_text, expected,
                      "check the slow nodes' NICs and cabling (ethtool, ibstat), that NCCL uses the fast "
                      "interface (NCCL_SOCKET_IFNAME, NCCL_IB_HCA), or lower network.min_gbps", **evidence)
    if int(spec.get("hardware.nodes")) < 2:
        return passed(found + " (single-node run: no inter-node requirement applies)", expected, **evidence)
    return warned(found, expected, "this measured local ranks only; run `preflight check --cluster auto "
                  "--level active` on the cluster to measure the links between nodes", **evidence)
