"""Network link speed between nodes."""

from __future__ import annotations

from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed, skipped, warned


@check("network.link_speed", "NIC link speed between nodes", "node", rules=(
    Rule("network.min_gbps", ("hardware.nodes", "machine: NIC link speed"), "fail",
         "the fastest NIC up reaches it on a multi-node run"),
    Rule("network.interfaces", ("machine: this node's NICs",), "fail", "names NICs this node has"),
))
def link_speed(ctx: Context) -> Outcome:
    """The fastest NIC that is up (loopback ignored, or those in network.interfaces) against
    network.min_gbps (default 10 Gbit/s). A single-node run skips: it has no inter-node traffic.
    A NIC whose speed the kernel does not report (virtual NICs) warns."""
    nodes = int(ctx.spec.get("hardware.nodes"))
    need = float(ctx.spec.get("network.min_gbps"))
    expected = f">= {need:g} Gbit/s between nodes"
    if nodes < 2:
        return skipped("single-node run: no traffic between nodes")
    wanted = ctx.spec.get("network.interfaces") or []
    nics = [n for n in ctx.probes.system.nics() if not n.is_loopback]
    if wanted:
        missing = sorted(set(wanted) - {n.name for n in nics})
        if missing:
            return failed(f"interface(s) not found: {', '.join(missing)}", expected,
                          "fix network.interfaces to name this node's NICs", present=[n.name for n in nics])
        nics = [n for n in nics if n.name in wanted]
    up = [n for n in nics if n.is_up]
    speeds = {n.name: (n.speed_mbps / 1000 if n.speed_mbps else "unknown") for n in nics}
    if not up:
        return failed("no network interface is up", expected, "bring up the node's data NIC", nics=speeds)
    best = max(up, key=lambda n: n.speed_mbps)
    if best.speed_mbps <= 0:
        return warned(f"link speed unknown on {', '.join(n.name for n in up)} (virtual NIC or no driver report)",
                      expected, "check `ethtool IFACE`, or measure between two nodes (nccl-tests, iperf3) and "
                      "waive this check with the measured figure as the reason",
                      nics=speeds)
    gbps = best.speed_mbps / 1000
    if gbps < need:
        return failed(f"{gbps:g} Gbit/s on {best.name} (the fastest NIC up)", expected,
                      "use nodes with faster interconnect (InfiniBand/RoCE or >= 10 GbE), or expect NCCL "
                      "to stall FSDP's all-gathers", nics=speeds)
    return passed(f"{gbps:g} Gbit/s on {best.name}", expected, nics=speeds)
