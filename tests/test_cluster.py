"""Cluster mode: the cluster checks on hand-made snapshots, the per-node report in every format,
and the whole thing on Ray's multi-node test cluster (several raylets on this machine).

The Ray tests share one cluster (a module fixture, private temp dir): a head and two worker nodes,
one of whose raylet puts a fake `torch-2.4.0.dist-info` first on its workers' PYTHONPATH, the way
a node with another torch installed would look. A fourth node is killed while its task runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from preflight.cli import main
from preflight.cluster.ray_runner import what_is_missing
from preflight.cluster.run import node_sections
from preflight.cluster.snapshot import ClusterSnapshot, NodeAnswer, PlacementTrial, name_nodes, skew
from preflight.engine import REGISTRY, Context
from preflight.report import render
from preflight.result import Report, Result, Status
from preflight.schemas import load_schema
from preflight.spec import load_spec
from tests.fakes import gpu_probes
from tests.ray_helpers import private_ray_cluster

GPU_SPEC = "run: {name: c, stage: small}\nhardware: {nodes: 3, gpus_per_node: 8}\n"
FACTS = {"gpu_model": "NVIDIA H100 80GB HBM3", "gpu_count": 8, "driver": "550.54.15", "python": "3.11.7",
         "torch": "2.5.1+cu124", "ray": "2.40.0"}


def node(i: int, gpus: float = 8, **facts: Any) -> NodeAnswer:
    return NodeAnswer(node_id=f"{i:02d}" + "ab" * 20, address=f"10.0.0.{i}", hostname=f"gpu-{i}",
                      resources={"CPU": 96, "GPU": gpus}, facts={**FACTS, **facts})


def snapshot(*nodes: NodeAnswer, placement: PlacementTrial | None = None) -> ClusterSnapshot:
    name_nodes(list(nodes))
    return ClusterSnapshot("10.0.0.1:6379", list(nodes), placement=placement)


def cluster_check(check_id: str, spec: Path, snap: ClusterSnapshot | None, level: str = "node") -> Any:
    ctx = Context(spec=load_spec(spec), probes=gpu_probes(), level=level)
    if snap is not None:
        ctx.memo("cluster.snapshot", lambda: snap)
    return REGISTRY[check_id].fn(ctx)


# --- the cluster checks on snapshots --------------------------------------------------------------


def test_version_skew_names_the_odd_nodes_against_the_majority(write_spec: Any) -> None:
    snap = snapshot(node(1), node(2), node(3, torch="2.4.0"), node(4, driver="535.104.05", torch="2.4.0"))
    out = cluster_check("cluster.versions", write_spec(GPU_SPEC), snap)
    assert out.status == Status.FAIL
    assert "torch: 2.5.1+cu124 on most nodes, but 2.4.0 on gpu-3 (10.0.0.3), gpu-4 (10.0.0.4)" in out.found
    assert "NVIDIA driver: 550.54.15 on most nodes, but 535.104.05 on gpu-4 (10.0.0.4)" in out.found
    assert "Python" not in out.found


def test_nodes_without_a_gpu_do_not_count_as_gpu_model_skew() -> None:
    assert skew([node(1), node(2, gpu_model=None)], "gpu_model") is None


def test_same_versions_everywhere_pass(write_spec: Any) -> None:
    out = cluster_check("cluster.versions", write_spec(GPU_SPEC), snapshot(node(1), node(2)))
    assert out.status == Status.PASS and "torch 2.5.1+cu124" in out.found


def test_too_few_nodes_and_a_dead_one_are_named(write_spec: Any) -> None:
    dead = node(3)
    dead.error, dead.died = "died during the check (NodeDiedError)", True
    snap = snapshot(node(1), node(2), dead)
    count = cluster_check("cluster.nodes", write_spec(GPU_SPEC), snap)
    reach = cluster_check("cluster.reachable", write_spec(GPU_SPEC), snap)
    assert count.status == Status.FAIL and count.found.startswith("2 nodes answered (1 more listed")
    assert reach.status == Status.FAIL and reach.found == "gpu-3 (10.0.0.3): died during the check (NodeDiedError)"


def test_gpus_per_node_names_the_short_node(write_spec: Any) -> None:
    out = cluster_check("cluster.gpus_per_node", write_spec(GPU_SPEC), snapshot(node(1), node(2, gpus=4, gpu_count=8)))
    assert out.status == Status.FAIL
    assert out.found == "gpu-2 (10.0.0.2): Ray schedules 4 GPUs, NVML sees 8"


def test_an_unschedulable_placement_group_says_what_is_missing(write_spec: Any) -> None:
    trial = PlacementTrial([{"CPU": 1, "GPU": 1}] * 24, "PACK", 5, False, 5.01,
                           what_is_missing([{"CPU": 1, "GPU": 1}] * 24, {"CPU": 192, "GPU": 16}, {"CPU": 192, "GPU": 16}))
    out = cluster_check("cluster.placement", write_spec(GPU_SPEC), snapshot(node(1), node(2), placement=trial))
    assert out.status == Status.FAIL
    assert "needs more than the whole cluster has: GPU 24 (cluster has 16)" in out.found


def test_busy_resources_are_told_apart_from_missing_ones() -> None:
    text = what_is_missing([{"GPU": 1}] * 8, {"GPU": 16}, {"GPU": 2})
    assert text == "the cluster has the resources but they are in use: GPU 8 (free now 2)"


def test_without_cluster_mode_the_cluster_checks_skip_saying_how_to_run_them(write_spec: Any) -> None:
    out = cluster_check("cluster.versions", write_spec(GPU_SPEC), None)
    assert out.status == Status.SKIP and "--cluster" in out.found


def test_the_budget_uses_the_slowest_gpu_any_node_measured(write_spec: Any) -> None:
    a, b = node(1), node(2)
    a.results = [{"id": "hw.gpu.matmul", "evidence": {"tflops": {"GPU 0": 700.0, "GPU 1": 690.0}}}]
    b.results = [{"id": "hw.gpu.matmul", "evidence": {"tflops": {"GPU 0": 710.0, "GPU 3": 350.0}}}]
    out = cluster_check("budget.gpu_hours", write_spec(GPU_SPEC), snapshot(a, b), level="active")
    assert "350 TFLOP/s, measured" in out.found
    assert out.evidence["peak_tflops"] == "350 (measured bf16 matmul, slowest GPU in the cluster (GPU 3 on gpu-2 (10.0.0.2)))"


def test_cluster_checks_are_planned_only_for_cluster_runs_but_can_be_waived(write_spec: Any) -> None:
    from preflight.engine import plan
    from preflight.service.check import load_checked_spec

    spec_path = write_spec(GPU_SPEC)
    spec = load_spec(spec_path)
    assert not [d.id for d in plan(spec, "node") if d.id.startswith("cluster.")]
    assert {"cluster.versions", "cluster.placement"} <= {d.id for d in plan(spec, "node", cluster=True)}
    waived = load_checked_spec(str(spec_path), [{"check": "cluster.versions", "reason": "rolling upgrade, 1 h"}])
    assert waived.get("waivers")[-1]["check"] == "cluster.versions"


def test_repeated_hostnames_get_a_short_node_id() -> None:
    a, b = node(1), node(2)
    a.hostname = b.hostname = "worker"
    name_nodes([a, b])
    assert a.name == "worker#01abab" and b.name == "worker#02abab"


# --- the per-node report in every format ----------------------------------------------------------


def cluster_report_fixture() -> Report:
    good, bad, dead = node(1), node(2), node(3)
    name_nodes([good, bad, dead])
    good.results = [Result("hw.gpu.count", "GPUs on this node", Status.PASS, "node", "hardware",
                           found="8 GPUs").to_dict()]
    bad.results = [Result("hw.gpu.ecc", "No uncorrected GPU memory errors", Status.FAIL, "node", "hardware",
                          expected="<= 0 per GPU", found="uncorrected ECC errors on GPU 3: 2",
                          remediation="drain this node").to_dict()]
    dead.error = "died during the check (NodeDiedError)"
    results = [Result("cluster.reachable", "Every node of the cluster answered", Status.FAIL, "node", "hardware",
                      found=f"{dead.label}: {dead.error}")]
    per_node, summaries = node_sections([good, bad, dead])
    return Report("run.yaml", "a" * 64, "c", "node", "0.1.0", "2026-01-01T00:00:00+00:00", 1.0, "fail",
                  results + per_node, [], nodes=summaries)


def test_json_report_with_nodes_is_valid_and_tags_each_machine_result() -> None:
    import jsonschema

    doc = json.loads(render(cluster_report_fixture(), "json"))
    jsonschema.validate(doc, load_schema("report"))
    assert [n["name"] for n in doc["nodes"]] == ["gpu-1 (10.0.0.1)", "gpu-2 (10.0.0.2)", "gpu-3 (10.0.0.3)"]
    assert [n["status"] for n in doc["nodes"]] == ["pass", "fail", "error"]
    assert {r["id"]: r.get("node") for r in doc["results"]} == {
        "cluster.reachable": None, "hw.gpu.count": "gpu-1 (10.0.0.1)", "hw.gpu.ecc": "gpu-2 (10.0.0.2)"}


def test_text_markdown_junit_and_github_name_the_failing_node() -> None:
    report = cluster_report_fixture()
    text = render(report, "text")
    assert "node gpu-2 (10.0.0.2) — FAIL" in text and "node gpu-3 (10.0.0.3) — ERROR" in text
    assert "not checked: died during the check" in text
    md = render(report, "markdown")
    assert "| gpu-2 (10.0.0.2) | FAIL | `hw.gpu.ecc` |" in md and "### Node gpu-2 (10.0.0.2): FAIL" in md
    junit = render(report, "junit")
    assert 'name="preflight: c" id="node gpu-2 (10.0.0.2)"' in junit and "gpu-3 (10.0.0.3): died" in junit
    github = render(report, "github")
    assert "title=hw.gpu.ecc @ gpu-2 (10.0.0.2),file=run.yaml::[gpu-2 (10.0.0.2)] No uncorrected" in github


def test_cluster_mode_refuses_the_static_level_and_unreachable_addresses(
        capsys: pytest.CaptureFixture[str], write_spec: Any) -> None:
    spec = str(write_spec(GPU_SPEC))
    assert main(["check", spec, "--cluster", "auto", "--level", "static"]) == 2
    assert "--level node or active" in capsys.readouterr().err
    assert main(["check", spec, "--cluster", "127.0.0.1:1", "--no-attest"]) == 2
    assert "nothing answers at 127.0.0.1:1" in capsys.readouterr().err
    assert main(["check", spec, "--cluster", "no-port-here", "--no-attest"]) == 2
    assert "expected auto or HOST:PORT" in capsys.readouterr().err


# --- on Ray's multi-node test cluster -------------------------------------------------------------

CPU_SPEC = """\
run: {name: c, stage: custom}
hardware: {gpu_required: false, gpus_per_node: 0, nodes: 3, min_host_memory_gb: 1, min_cpus: 1}
storage: {checkpoint_dir: ckpt, min_free_gb: 0.001, checkpoint_size_gb: 0.05}
stack: {packages: {wandb: null}}
model: {name_or_path: tiny, params_b: 0.001}
monitoring: {sinks: [jsonl]}
distributed: {cpu_workers: 2}
cluster: {placement_timeout_s: 3, node_timeout_s: 60}
active: {storage_file_mb: 4, collective_max_mib: 0.25, collective_budget_s: 60}
"""


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray")

    # Notice a killed raylet within ~2 s instead of Ray's default ~30 s health-check window.
    fast_death = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                  "health_check_timeout_ms": 500, "health_check_failure_threshold": 3}
    with private_ray_cluster(num_cpus=1, _system_config=fast_death) as (cluster, tmp):
        fake = tmp / "skew"
        (fake / "torch-2.4.0.dist-info").mkdir(parents=True)
        (fake / "torch-2.4.0.dist-info" / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: torch\nVersion: 2.4.0\n")
        cluster.add_node(num_cpus=1, num_gpus=1)
        # This raylet (and so its workers) sees a different torch first on sys.path.
        cluster.skewed = cluster.add_node(num_cpus=1, num_gpus=1, env_vars={"PYTHONPATH": str(fake)})
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster


@pytest.mark.slow
def test_every_node_is_checked_and_the_skewed_one_is_named(ray_cluster: Any, write_spec: Any, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import jsonschema

    spec = write_spec(CPU_SPEC)
    out = {fmt: tmp_path / f"report.{fmt}" for fmt in ("json", "junit", "markdown")}
    args = ["check", str(spec), "--cluster", ray_cluster.address, "--no-attest"]
    for fmt, path in out.items():
        args += ["--format", fmt, "--output", str(path)]
    code = main(args + ["--format", "text"])  # the last format, without an --output, goes to stdout
    text = capsys.readouterr().out
    assert code == 1  # the skew fails the gate
    doc = json.loads(out["json"].read_text())
    jsonschema.validate(doc, load_schema("report"))
    assert len(doc["nodes"]) == 3 and all(n["answered"] for n in doc["nodes"])
    skewed = [n["name"] for n in doc["nodes"] if n["facts"]["torch"] == "2.4.0"]
    assert len(skewed) == 1
    versions = next(r for r in doc["results"] if r["id"] == "cluster.versions")
    assert versions["status"] == "fail" and f"but 2.4.0 on {skewed[0]}" in versions["found"]
    per_node = {(r["id"], r["node"]) for r in doc["results"] if r.get("node")}
    assert {("host.memory", n["name"]) for n in doc["nodes"]} <= per_node
    placement = next(r for r in doc["results"] if r["id"] == "cluster.placement")
    assert placement["status"] == "pass"
    for n in doc["nodes"]:
        assert f"node {n['name']}" in text
        assert n["name"] in out["junit"].read_text() and n["name"] in out["markdown"].read_text()


@pytest.mark.slow
def test_a_placement_group_that_can_never_fit_fails_within_its_timeout(ray_cluster: Any, write_spec: Any) -> None:
    from preflight.cluster.run import cluster_report

    # 3 nodes x 4 GPUs; the test cluster declares 2 GPUs in all (one on each worker node).
    spec = load_spec(write_spec("run: {name: g, stage: custom}\nhardware: {nodes: 3, gpus_per_node: 4}\n"
                                "cluster: {placement_timeout_s: 2}\n"))
    t0 = time.monotonic()
    report = cluster_report(spec, "node", "fail", ray_cluster.address, only=["cluster.*"])
    assert time.monotonic() - t0 < 60
    by_id = {r.id: r for r in report.results}
    placement = by_id["cluster.placement"]
    assert placement.status == Status.FAIL
    assert "GPU 12 (cluster has 2)" in placement.found and placement.evidence["seconds"] < 10
    gpus = by_id["cluster.gpus_per_node"]
    assert gpus.status == Status.FAIL and "Ray schedules 0 GPUs" in gpus.found and "Ray schedules 1 GPU" in gpus.found


@pytest.mark.slow
def test_a_node_that_dies_during_the_check_is_named_not_waited_for(ray_cluster: Any, write_spec: Any) -> None:
    from preflight.cluster.run import cluster_report

    doomed = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    spec = load_spec(write_spec(CPU_SPEC.replace("nodes: 3", "nodes: 4")))

    def kill(nodes: list[NodeAnswer]) -> None:  # every node's task is submitted; now one node goes
        ray_cluster.remove_node(doomed, allow_graceful=False)

    t0 = time.monotonic()
    report = cluster_report(spec, "node", "fail", ray_cluster.address, on_submitted=kill)
    assert time.monotonic() - t0 < 60
    gone = [n for n in report.nodes if not n["answered"]]
    assert len(gone) == 1 and gone[0]["error"].startswith("died during the check")
    reach = next(r for r in report.results if r.id == "cluster.reachable")
    assert reach.status == Status.FAIL and gone[0]["name"] in reach.found
    assert sum(n["answered"] for n in report.nodes) == 3
    assert next(r for r in report.results if r.id == "cluster.nodes").status == Status.FAIL


@pytest.mark.slow
def test_active_level_measures_the_collective_across_the_nodes(ray_cluster: Any, write_spec: Any) -> None:
    from preflight.cluster.run import cluster_report

    spec = load_spec(write_spec(CPU_SPEC + "network: {min_gbps: 100000}\n"))
    report = cluster_report(spec, "active", "fail", ray_cluster.address,
                            only=["network.collective", "storage.throughput"])
    coll = next(r for r in report.results if r.id == "network.collective")
    assert coll.status == Status.FAIL, coll.found
    assert "between 3 nodes" in coll.found and "slowest pair:" in coll.found
    assert len(coll.evidence["pairs"]) == 3
    storage = [r for r in report.results if r.id == "storage.throughput"]
    assert len(storage) == 3 and all(r.node for r in storage)
