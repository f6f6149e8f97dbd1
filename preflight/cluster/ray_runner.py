"""Everything that talks to Ray in cluster mode. Imported only for `--cluster` (it imports Ray).

One task is pinned to each alive node (NodeAffinitySchedulingStrategy, hard, no retries), asks
for no CPU so a busy node still answers, and runs the machine checks there. A node that dies while
its task runs, or does not answer within the timeout, is named rather than waited on. The
placement-group trial and the collective between nodes run from here as well.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..errors import UsageError
from ..probes_active.collective import CollectiveMeasurement, free_port, rank_main, sweep_sizes
from .node_task import run_on_node
from .snapshot import ClusterSnapshot, NodeAnswer, PlacementTrial, name_nodes


def connect(address: str) -> bool:
    """Connect to the cluster (``auto``: the one this machine belongs to, or RAY_ADDRESS).
    Returns whether this call connected (and so should disconnect); a driver already connected,
    as in tests, is reused."""
    if ray.is_initialized():
        return False
    _reachable_or_die(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"--cluster {address}: cannot connect to a Ray cluster: {exc}".rstrip()
                         + "\n    hint: start one with `ray start --head` (and `ray start --address=HEAD:6379` "
                         "on the other nodes), or pass the head's address") from None
    return True


def disconnect() -> None:
    ray.shutdown()


def check_address(address: str) -> None:
    """Refuse, up front, an address no Ray head answers at; nothing to check when this process is
    already connected (connect reuses that driver, as in tests)."""
    if not ray.is_initialized():
        _reachable_or_die(address)


def _reachable_or_die(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on an address nobody listens on: ray.init itself retries for minutes."""
    bootstrap = address
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address

            bootstrap = canonicalize_bootstrap_address("auto") or ""
        except Exception:  # a private helper: if it moved, let ray.init judge "auto" itself
            return
        if not bootstrap:
            raise UsageError("--cluster auto: no Ray cluster found on this machine (no RAY_ADDRESS, no "
                             "`ray start` here)\n    hint: run `ray start --head`, or pass the head's address")
    host, _, port = bootstrap.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--cluster {address}: expected auto or HOST:PORT of the Ray head (GCS), e.g. 10.0.0.1:6379")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UsageError(f"--cluster {address}: nothing answers at {host}:{port} ({exc.strerror or exc})"
                         "\n    hint: is the Ray head running (`ray status` there)? Is the port open from "
                         "this machine?") from None


def alive_nodes() -> list[NodeAnswer]:
    out = []
    for n in ray.nodes():
        if n.get("Alive"):
            out.append(NodeAnswer(node_id=n["NodeID"], address=n.get("NodeManagerAddress", ""),
                                  hostname=n.get("NodeManagerHostname", ""),
                                  resources=dict(n.get("Resources", {}))))
    return out


def _still_alive(node_id: str) -> bool:
    return any(n["NodeID"] == node_id and n.get("Alive") for n in ray.nodes())


def _pinned(node_id: str) -> Any:
    return NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


def gather(spec: Any, level: str, address: str,
           on_submitted: Callable[[list[NodeAnswer]], None] | None = None) -> ClusterSnapshot:
    """Run the machine checks on every alive node and try the run's placement group.

    ``on_submitted`` is called once every node's task is on its way (tests kill a node there).
    """
    nodes = alive_nodes()
    node_timeout = float(spec.get("cluster.node_timeout_s"))
    task = ray.remote(run_on_node)
    cwd = os.getcwd()
    refs = {task.options(num_cpus=0, max_retries=0, scheduling_strategy=_pinned(n.node_id)).remote(spec, level, cwd): n
            for n in nodes}
    if on_submitted:
        on_submitted(nodes)
    ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=node_timeout)
    for ref in ready:
        node = refs[ref]
        try:
            answer = ray.get(ref)
        except Exception as exc:  # a Ray error (node died, worker crashed) or the task's own failure
            node.died = not _still_alive(node.node_id)
            node.error = ("died during the check" if node.died else "its check task failed") + f" ({_short(exc)})"
            if "ModuleNotFoundError" in node.error:
                node.error += "; is rl-preflight installed in that node's Python environment?"
            continue
        node.hostname = answer["hostname"] or node.hostname
        node.results, node.facts = answer["results"], answer["facts"]
    for ref in pending:
        node = refs[ref]
        ray.cancel(ref, force=True)
        node.died = not _still_alive(node.node_id)
        node.error = ("died during the check" if node.died
                      else f"did not answer within {node_timeout:g} s (cluster.node_timeout_s)")
    name_nodes(nodes)
    snap = ClusterSnapshot(address=address, nodes=nodes)
    try:
        snap.placement = try_placement(spec)
    except Exception as exc:  # Ray refused the request itself (malformed bundle, GCS gone)
        snap.placement_error = _short(exc)
    if level == "active":
        measure_collective(spec, snap)
    return snap


def run_bundles(spec: Any) -> tuple[list[dict[str, float]], str]:
    """The run's workers as Ray Train places them: one bundle per rank, packed."""
    bundle = {"CPU": 1.0, "GPU": 1.0} if spec.uses_gpus else {"CPU": 1.0}
    return [dict(bundle) for _ in range(spec.world_size)], "PACK"


def try_placement(spec: Any) -> PlacementTrial:
    """Create the run's placement group, wait for it up to the timeout, and always remove it."""
    bundles, strategy = run_bundles(spec)
    timeout = float(spec.get("cluster.placement_timeout_s"))
    t0 = time.perf_counter()
    pg = placement_group(bundles, strategy=strategy, name="preflight-placement-trial")
    try:
        scheduled = bool(pg.wait(timeout_seconds=timeout))
    finally:
        remove_placement_group(pg)
    seconds = time.perf_counter() - t0
    missing = "" if scheduled else what_is_missing(bundles, ray.cluster_resources(), ray.available_resources())
    return PlacementTrial(bundles, strategy, timeout, scheduled, seconds, missing)


def what_is_missing(bundles: list[dict[str, float]], total: dict[str, float], available: dict[str, float]) -> str:
    """Say which resources the request needs beyond what the cluster has (or has free now)."""
    need: dict[str, float] = {}
    for b in bundles:
        for k, v in b.items():
            need[k] = need.get(k, 0.0) + v
    short = [f"{k} {v:g} (cluster has {total.get(k, 0.0):g})" for k, v in sorted(need.items()) if total.get(k, 0.0) < v]
    if short:
        return "needs more than the whole cluster has: " + ", ".join(short)
    busy = [f"{k} {v:g} (free now {available.get(k, 0.0):g})" for k, v in sorted(need.items())
            if available.get(k, 0.0) < v]
    if busy:
        return "the cluster has the resources but they are in use: " + ", ".join(busy)
    return ("the resources exist but not in the shape asked for (a bundle larger than any node, or "
            "fragmented free resources)")


def measure_collective(spec: Any, snap: ClusterSnapshot) -> None:
    """All-reduce / all-gather with one rank on each answering node (gloo, or NCCL for a GPU run)."""
    nodes = snap.answered
    if len(nodes) < 2:
        snap.collective_error = f"{len(nodes)} node(s) answered; a collective between nodes needs two"
        return
    backend = str(spec.get("distributed.backend"))
    backend = ("nccl" if spec.uses_gpus else "gloo") if backend == "auto" else backend
    budget = float(spec.get("active.collective_budget_s"))
    sizes = sweep_sizes(float(spec.get("active.collective_max_mib")))
    master_ip = nodes[0].address or "127.0.0.1"
    port_task: Any = ray.remote(free_port)  # a free port on the first node, for the rendezvous
    port = ray.get(port_task.options(num_cpus=0, scheduling_strategy=_pinned(nodes[0].node_id)).remote(master_ip))
    rank: Any = ray.remote(rank_main)
    refs = [rank.options(num_cpus=0, num_gpus=1 if backend == "nccl" else 0, max_retries=0,
                         scheduling_strategy=_pinned(n.node_id)).remote(
        i, len(nodes), f"{master_ip}:{port}", backend, sizes, budget, "cuda:0" if backend == "nccl" else "cpu")
        for i, n in enumerate(nodes)]
    ready, pending = ray.wait(refs, num_returns=len(refs), timeout=budget + 60)
    for ref in pending:
        ray.cancel(ref, force=True)
    if pending:
        snap.collective_error = f"the ranks did not finish within {budget + 60:g} s; slow or blocked links"
        return
    try:
        result = ray.get(refs[0])
        ray.get(refs[1:])
    except Exception as exc:
        snap.collective_error = _short(exc)
        return
    measured = CollectiveMeasurement.from_dict(result)
    measured.names = [n.label for n in nodes]
    snap.collective = measured
