"""Cluster checks (`preflight check --cluster`): node count, GPUs per node, version skew between
nodes, and whether the run's placement group can be scheduled.

They read the snapshot cluster mode gathered (preflight.cluster); without --cluster they skip.
Nothing here imports Ray.
"""

from __future__ import annotations

from ..cluster.snapshot import COMPARED, ClusterSnapshot, skew
from ..registry import Context, check
from ..result import Outcome, failed, passed, skipped
from ._util import gpus_required, plural

NOT_CLUSTER = "checked only in cluster mode: preflight check SPEC --cluster auto|ADDRESS"


def _snapshot(ctx: Context) -> ClusterSnapshot | None:
    snap = ctx.peek("cluster.snapshot")
    return snap if isinstance(snap, ClusterSnapshot) else None


@check("cluster.reachable", "Every node of the cluster answered", "node")
def reachable(ctx: Context) -> Outcome:
    """Each node Ray listed as alive ran its checks and answered within cluster.node_timeout_s
    (default 120 s). A node that died during the check, did not answer, or whose task failed is
    named; its own results are missing from the report."""
    snap = _snapshot(ctx)
    if snap is None:
        return skipped(NOT_CLUSTER)
    bad = [n for n in snap.nodes if not n.answered]
    expected = f"all {plural(len(snap.nodes), 'node')} answer"
    if bad:
        return failed("; ".join(f"{n.label}: {n.error}" for n in bad), expected,
                      "look at the named nodes (`ray status`, the raylet logs under /tmp/ray/session_latest/"
                      "logs); drain them or bring them back, then re-run",
                      nodes={n.label: n.error for n in bad})
    return passed(f"{plural(len(snap.nodes), 'node')} answered", expected)


@check("cluster.nodes", "Node count matches the spec", "node")
def node_count(ctx: Context) -> Outcome:
    """Alive nodes that answered against hardware.nodes. Fewer fails (the run's world would not
    fit); more passes and says how many are spare."""
    snap = _snapshot(ctx)
    if snap is None:
        return skipped(NOT_CLUSTER)
    want = int(ctx.spec.get("hardware.nodes"))
    have = len(snap.answered)
    expected = f">= {plural(want, 'node')}"
    names = [n.label for n in snap.answered]
    if have < want:
        lost = [n.label for n in snap.nodes if not n.answered]
        extra = f" ({len(lost)} more listed but not answering: {', '.join(lost)})" if lost else ""
        return failed(f"{plural(have, 'node')} answered{extra}", expected,
                      f"add {want - have} node(s) to the cluster, or set hardware.nodes: {have}", nodes=names)
    spare = f" ({have - want} spare)" if have > want else ""
    return passed(f"{plural(have, 'node')}{spare}", expected, nodes=names)


@check("cluster.gpus_per_node", "GPUs on every node", "node")
def gpus_per_node(ctx: Context) -> Outcome:
    """Every answering node's GPUs against hardware.gpus_per_node: the GPUs Ray will schedule on it
    (its declared GPU resource) and, where the node has a driver, the GPUs NVML sees. Names the
    nodes that fall short."""
    snap = _snapshot(ctx)
    if snap is None:
        return skipped(NOT_CLUSTER)
    if not gpus_required(ctx):
        return skipped("the spec does not require GPUs (hardware.gpu_required is false or gpus_per_node is 0)")
    want = int(ctx.spec.get("hardware.gpus_per_node"))
    per_node = {}
    short = []
    for n in snap.answered:
        ray_gpus = int(n.resources.get("GPU", 0))
        nvml = n.facts.get("gpu_count")
        per_node[n.label] = {"ray": ray_gpus, "nvml": nvml}
        if ray_gpus < want:
            seen = f", NVML sees {nvml}" if nvml else ""
            short.append(f"{n.label}: Ray schedules {plural(ray_gpus, 'GPU')}{seen}")
    expected = f"{plural(want, 'GPU')} per node"
    if short:
        return failed("; ".join(short), expected,
                      "start the raylets with all GPUs visible (`ray start --num-gpus`, CUDA_VISIBLE_DEVICES), "
                      "use nodes with enough GPUs, or lower hardware.gpus_per_node", gpus=per_node)
    return passed(f"{plural(want, 'GPU')} or more on all {plural(len(snap.answered), 'node')}", expected,
                  gpus=per_node)


@check("cluster.versions", "Same GPU, driver, Python, torch and Ray on every node", "node")
def versions(ctx: Context) -> Outcome:
    """GPU model, NVIDIA driver, Python, torch and Ray versions must be the same on every node
    (read on each node by its own workers). Skew names the odd nodes against the majority: mixed
    versions break pickled objects between Ray workers, NCCL handshakes and checkpoint formats."""
    snap = _snapshot(ctx)
    if snap is None:
        return skipped(NOT_CLUSTER)
    problems, table = [], {}
    for key, title in COMPARED:
        table[key] = {n.label: n.facts.get(key) for n in snap.answered}
        found = skew(snap.answered, key)
        if found is None:
            continue
        majority, odd = found
        odd_text = "; ".join(f"{value} on {', '.join(nodes)}" for value, nodes in odd.items())
        problems.append(f"{title}: {majority} on most nodes, but {odd_text}")
    expected = "one GPU model, driver, Python, torch and Ray version on every node"
    if problems:
        return failed("; ".join(problems), expected,
                      "install the same versions on the named nodes (one container image, or one lock file) "
                      "and restart their raylets", versions=table)
    same = [f"{title} {v}" for key, title in COMPARED
            if (v := next((n.facts.get(key) for n in snap.answered if n.facts.get(key)), None))]
    return passed(f"same on {plural(len(snap.answered), 'node')}: {', '.join(same)}", expected, versions=table)


@check("cluster.placement", "The run's placement group can be scheduled", "node")
def placement(ctx: Context) -> Outcome:
    """Asks Ray for a placement group shaped like the run's workers (one bundle per rank: a GPU and
    a CPU each, or a CPU for a GPU-less run; PACK, as Ray Train does) and waits up to
    cluster.placement_timeout_s (default 30 s). A request that cannot be met fails within that
    time, saying what the cluster lacks, instead of hanging the launch. The group is removed."""
    snap = _snapshot(ctx)
    if snap is None:
        return skipped(NOT_CLUSTER)
    if snap.placement_error:
        return failed(f"could not ask Ray for a placement group: {snap.placement_error}",
                      "a schedulable placement group", "check the Ray cluster (`ray status`)")
    trial = snap.placement
    if trial is None:
        return skipped("no placement group was tried")
    shape = f"{len(trial.bundles)} x {trial.bundles[0] if trial.bundles else {}} ({trial.strategy})"
    expected = f"{shape} scheduled within {trial.timeout_s:g} s"
    evidence = {"bundles": trial.bundles, "strategy": trial.strategy, "seconds": round(trial.seconds, 2)}
    if not trial.scheduled:
        return failed(f"not scheduled after {trial.seconds:.1f} s: {trial.missing}", expected,
                      "add the missing resources to the cluster, free them (other jobs' placement groups), or "
                      "shrink the run (hardware.nodes, gpus_per_node, distributed.cpu_workers)", **evidence)
    return passed(f"{shape} scheduled in {trial.seconds:.1f} s", expected, **evidence)
