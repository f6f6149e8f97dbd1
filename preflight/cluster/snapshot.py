"""What cluster mode gathered: each node's answer, the placement-group trial, the collective.

Plain data with no Ray import, so the cluster checks are pure functions of it and are tested with
hand-made snapshots.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# The facts that must agree on every node: (fact key, how it is named in a message).
COMPARED = (("gpu_model", "GPU model"), ("driver", "NVIDIA driver"), ("python", "Python"),
            ("torch", "torch"), ("ray", "Ray"))


@dataclass
class NodeAnswer:
    node_id: str
    address: str  # the node's IP as Ray knows it
    hostname: str
    resources: dict[str, float]  # what the raylet declares (CPU, GPU, memory, custom)
    name: str = ""  # how reports call the node: the hostname, with a short id when hostnames repeat
    results: list[dict[str, Any]] = field(default_factory=list)  # Result.to_dict() of each machine check
    facts: dict[str, Any] = field(default_factory=dict)  # gpu_model, gpu_count, driver, python, torch, ray
    error: str = ""  # why there are no results: died, did not answer, task failed
    died: bool = False  # the node left the cluster during the check

    @property
    def answered(self) -> bool:
        return not self.error

    @property
    def label(self) -> str:
        return f"{self.name} ({self.address})" if self.address and self.address != self.name else self.name


@dataclass
class PlacementTrial:
    bundles: list[dict[str, float]]
    strategy: str
    timeout_s: float
    scheduled: bool
    seconds: float
    missing: str = ""  # what the cluster lacks (empty when scheduled)


@dataclass
class ClusterSnapshot:
    address: str
    nodes: list[NodeAnswer]
    placement: PlacementTrial | None = None
    placement_error: str = ""
    collective: Any = None  # probes_active.collective.CollectiveMeasurement across the nodes
    collective_error: str = ""

    @property
    def answered(self) -> list[NodeAnswer]:
        return [n for n in self.nodes if n.answered]


def name_nodes(nodes: list[NodeAnswer]) -> None:
    """Hostnames, made unique with the node id's first characters when several nodes share one
    (containers, or several raylets on one machine as in Ray's test cluster)."""
    counts = Counter(n.hostname for n in nodes)
    for n in nodes:
        n.name = n.hostname if counts[n.hostname] == 1 and n.hostname else f"{n.hostname or 'node'}#{n.node_id[:6]}"


def skew(nodes: list[NodeAnswer], key: str) -> tuple[str, dict[str, list[str]]] | None:
    """None when every node that reports ``key`` agrees; else (the majority value, {other value:
    [odd nodes]}). Nodes that do not know the fact (no GPU, no torch) are left out."""
    values = {n.label: n.facts.get(key) for n in nodes if n.facts.get(key) not in (None, "")}
    distinct = Counter(str(v) for v in values.values())
    if len(distinct) < 2:
        return None
    majority = distinct.most_common(1)[0][0]
    odd: dict[str, list[str]] = {}
    for label, value in values.items():
        if str(value) != majority:
            odd.setdefault(str(value), []).append(label)
    return majority, odd
