"""Where the run's workers come from: nodes, GPUs per node, the Ray cluster and the collective
backend, as the built-in runner starts them (runner.launch: one Ray Train worker per GPU of every
node, or distributed.cpu_workers without GPUs; NCCL with GPUs, gloo without); and the settings of
the `--level active` measurements against the cluster and the compute budget."""

from __future__ import annotations

from ..presets import WRITE_THROUGHPUT_MAX_GB_S
from ..registry import Context, Rule, check
from ..result import Outcome
from ._relations import Findings, user_set
from .active_storage import save_interval_seconds
from .model import model_facts
from .storage import checkpoint_bytes

GPUS = ("hardware.gpu_required", "hardware.gpus_per_node")


def _backend(ctx: Context, f: Findings) -> None:
    s = ctx.spec
    backend = str(s.get("distributed.backend"))
    if backend == "nccl" and not s.uses_gpus:
        f.fail("backend nccl on a run without GPUs: NCCL needs a GPU per rank",
               "use distributed.backend: auto (gloo without GPUs)")
    elif backend == "gloo" and s.uses_gpus:
        f.fail("backend gloo on a GPU run: the runner then asks Ray for workers without GPUs, and the run "
               "trains on CPU", "use distributed.backend: auto (nccl with GPUs)")


def _gpus(ctx: Context, f: Findings) -> None:
    s = ctx.spec
    required, per_node = bool(s.get("hardware.gpu_required")), int(s.get("hardware.gpus_per_node"))
    if required and per_node == 0:
        f.fail("gpu_required with gpus_per_node 0: the run would train on "
               f"{s.get('distributed.cpu_workers')} CPU workers",
               "set hardware.gpus_per_node to the GPUs each node has, or gpu_required: false for a CPU run")
    elif not required and per_node > 0 and user_set(s, "hardware.gpus_per_node"):
        f.warn(f"gpu_required false with gpus_per_node {per_node}: the GPUs stay idle and "
               f"{s.get('distributed.cpu_workers')} CPU workers train",
               "set hardware.gpu_required: true to train on the GPUs, or gpus_per_node: 0")


def _cluster(ctx: Context, f: Findings) -> str:
    """Where a multi-node run's Ray cluster comes from; returns how it was found."""
    s = ctx.spec
    nodes, address = int(s.get("hardware.nodes")), str(s.get("distributed.ray_address") or "")
    if nodes < 2:
        return "one node: a local Ray"
    if address:
        return f"the Ray cluster at {address!r}"
    env = "" if ctx.level == "static" else str(ctx.probes.env.get("RAY_ADDRESS", "")).strip()
    if env:
        return f"the Ray cluster at RAY_ADDRESS={env!r} (this environment)"
    f.warn(f"{nodes} nodes but no distributed.ray_address"
           + ("" if ctx.level == "static" else " and no RAY_ADDRESS in this environment")
           + ": the runner then starts a Ray of this machine alone, and the "
           f"{s.world_size} workers wait for GPUs it does not have",
           "set distributed.ray_address: auto (a node of a running Ray cluster) or the head's host:port")
    return "no cluster named"


@check("config.topology", "Nodes, GPUs and the Ray cluster agree", "static", rules=(
    Rule("distributed.backend", GPUS, "fail",
         "nccl needs GPUs; gloo on a GPU run starts Ray workers without GPUs (training on CPU)"),
    Rule("distributed.ray_address", ("hardware.nodes", "machine: RAY_ADDRESS"), "warn",
         "set for a multi-node run, or the runner's Ray is this machine alone and the workers wait forever"),
    Rule("hardware.gpus_per_node", ("hardware.gpu_required",), "fail",
         "at least 1 when GPUs are required, or the run trains on distributed.cpu_workers"),
    Rule("hardware.gpu_required", ("hardware.gpus_per_node",), "warn",
         "true when gpus_per_node is set above 0, or those GPUs stay idle"),
))
def topology(ctx: Context) -> Outcome:
    """The runner starts one worker per GPU of every node (hardware.nodes x gpus_per_node), or
    distributed.cpu_workers when the run uses no GPUs, on Ray: the cluster at distributed.ray_address,
    or with none a Ray of this machine alone (RAY_ADDRESS in the environment is honoured, and is
    looked at from --level node on). So a multi-node run names its cluster (else its workers wait
    for GPUs forever: a warning, as the launching environment may still provide RAY_ADDRESS);
    NCCL needs GPUs and gloo on a GPU run asks Ray for workers without GPUs (fails); gpu_required
    with 0 GPUs per node trains on CPU (fails), and GPUs named with gpu_required false stay idle."""
    s = ctx.spec
    f = Findings()
    _backend(ctx, f)
    _gpus(ctx, f)
    where = _cluster(ctx, f)
    workers = (f"{s.get('hardware.nodes')} x {s.get('hardware.gpus_per_node')} GPU workers" if s.uses_gpus
               else f"{s.world_size} CPU workers")
    backend = str(s.get("distributed.backend"))
    found = f"{workers} on {where}, backend {backend}"
    return f.outcome(found, "workers, GPUs, backend and cluster that match", world_size=s.world_size)


def _node_timeout(ctx: Context, f: Findings) -> None:
    s = ctx.spec
    timeout = float(s.get("cluster.node_timeout_s"))
    longest = max(float(s.get("active.gpu_budget_s")), float(s.get("active.storage_budget_s")))
    if timeout <= longest:
        f.warn(f"cluster.node_timeout_s {timeout:g} s <= the longest node measurement ({longest:g} s): at "
               "--level active --cluster every node would be named unresponsive",
               f"raise cluster.node_timeout_s above {longest + 60:g} s (measurement + start-up)")


def _collective_ranks(ctx: Context, f: Findings) -> None:
    s = ctx.spec
    ranks, per_node = int(s.get("active.collective_local_ranks")), int(s.get("hardware.gpus_per_node"))
    if s.get("distributed.backend") == "nccl" and ranks > per_node:
        f.warn(f"active.collective_local_ranks {ranks} > gpus_per_node {per_node} with nccl: NCCL needs a GPU "
               "per rank, so the local collective probe cannot start",
               f"set active.collective_local_ranks at most {per_node}")


def _matmul_fraction(ctx: Context, f: Findings) -> None:
    s = ctx.spec
    fraction, mfu = float(s.get("active.min_matmul_fraction")), float(s.get("budget.assumed_mfu"))
    if fraction < mfu:
        f.warn(f"active.min_matmul_fraction {fraction:g} < budget.assumed_mfu {mfu:g}: a GPU the matmul check "
               "accepts may not deliver the MFU the budget assumes",
               f"raise active.min_matmul_fraction to at least {mfu:g}, or lower budget.assumed_mfu")


def _write_throughput(ctx: Context, f: Findings) -> None:
    s = ctx.spec
    interval_s, _ = save_interval_seconds(s)
    if interval_s is None or interval_s <= 0:
        return
    size, how = checkpoint_bytes(s, model_facts(ctx))  # the model folder read once per check run
    fraction, nodes = float(s.get("active.checkpoint_write_fraction")), int(s.get("hardware.nodes"))
    per_node = size / (fraction * interval_s) / nodes / 1e9
    if per_node > WRITE_THROUGHPUT_MAX_GB_S:
        f.warn(f"writing one checkpoint ({how}) within {fraction:.0%} of the ~{interval_s / 60:,.1f} min save "
               f"interval takes {per_node:,.0f} GB/s per node, more than {WRITE_THROUGHPUT_MAX_GB_S:g} GB/s",
               "raise checkpoints.save_interval or active.checkpoint_write_fraction (the active storage "
               "check would hold the storage to that figure)")


@check("config.active", "Measurement settings fit the cluster and the budget", "static", rules=(
    Rule("cluster.node_timeout_s", ("active.gpu_budget_s", "active.storage_budget_s"), "warn",
         "longer than a node's longest measurement, or at --level active --cluster the node is named unresponsive"),
    Rule("active.collective_local_ranks", ("hardware.gpus_per_node", "distributed.backend"), "warn",
         "at most gpus_per_node with nccl: one GPU per rank"),
    Rule("active.min_matmul_fraction", ("budget.assumed_mfu",), "warn",
         "at least budget.assumed_mfu: a GPU the matmul check accepts can deliver the assumed MFU"),
    Rule("active.checkpoint_write_fraction", ("checkpoints.save_interval", "storage.checkpoint_size_gb",
                                              "model.params_b", "hardware.nodes"), "warn",
         "the write throughput it implies stays under 20 GB/s per node"),
))
def active_settings(ctx: Context) -> Outcome:
    """The settings of the `--level active` measurements against the rest of the spec:
    cluster.node_timeout_s above the longest node measurement (active.gpu_budget_s,
    storage_budget_s), or every node is named unresponsive; collective_local_ranks at most
    gpus_per_node with nccl; min_matmul_fraction at least budget.assumed_mfu (a GPU the matmul
    check passes must be able to deliver the MFU the budget estimate assumes); and the checkpoint
    write throughput that checkpoint_write_fraction implies (one checkpoint within that fraction
    of the save interval, the interval from the compute estimate) under 20 GB/s per node."""
    f = Findings()
    _node_timeout(ctx, f)
    _collective_ranks(ctx, f)
    _matmul_fraction(ctx, f)
    _write_throughput(ctx, f)
    s = ctx.spec
    found = (f"node timeout {s.get('cluster.node_timeout_s'):g} s, GPU budget {s.get('active.gpu_budget_s'):g} s, "
             f"storage budget {s.get('active.storage_budget_s'):g} s, matmul floor "
             f"{s.get('active.min_matmul_fraction'):g} of peak")
    return f.outcome(found, "measurements that fit the cluster's timeout and the budget's assumptions")
