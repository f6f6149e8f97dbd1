"""Check statuses, results and the report, and the one place a report becomes an exit code."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

REPORT_SCHEMA_VERSION = "1.0"


class Status(str, enum.Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"  # could not be evaluated: fails closed
    SKIP = "skip"  # not applicable, with the reason
    WAIVED = "waived"  # a fail/error knowingly accepted, with the reason; never hidden

    @property
    def blocks(self) -> bool:
        return self in (Status.FAIL, Status.ERROR)


# Worst first: how a group of results is summarised.
SEVERITY_ORDER = [Status.ERROR, Status.FAIL, Status.WARN, Status.WAIVED, Status.PASS, Status.SKIP]


@dataclass
class Outcome:
    """What a check function returns; the engine adds id, title, timing and policy."""

    status: Status
    found: str = ""
    expected: str = ""
    remediation: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


def passed(found: str, expected: str = "", **evidence: Any) -> Outcome:
    return Outcome(Status.PASS, found=found, expected=expected, evidence=evidence)


def warned(found: str, expected: str, remediation: str, **evidence: Any) -> Outcome:
    return Outcome(Status.WARN, found=found, expected=expected, remediation=remediation, evidence=evidence)


def failed(found: str, expected: str, remediation: str, **evidence: Any) -> Outcome:
    return Outcome(Status.FAIL, found=found, expected=expected, remediation=remediation, evidence=evidence)


def errored(found: str, remediation: str = "", **evidence: Any) -> Outcome:
    return Outcome(Status.ERROR, found=found, remediation=remediation, evidence=evidence)


def skipped(reason: str, **evidence: Any) -> Outcome:
    return Outcome(Status.SKIP, found=reason, evidence=evidence)


@dataclass
class Result:
    id: str
    title: str
    status: Status
    level: str
    item: str  # the checklist item this check serves
    expected: str = ""
    found: str = ""
    remediation: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    waiver: dict[str, Any] | None = None  # the waiver applied, with its reason
    note: str = ""  # policy notes: severity overrides, expired waivers
    node: str = ""  # in cluster mode: the node a machine check ran on ("" = this machine)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status.value
        out["duration_s"] = round(self.duration_s, 4)
        if not self.node:
            del out["node"]  # reports outside cluster mode keep their old shape
        return out


@dataclass
class ChecklistItem:
    id: str
    title: str
    checks: list[str]  # ids or patterns


@dataclass
class Report:
    spec_path: str
    spec_sha256: str
    run_name: str
    level: str
    tool_version: str
    started_at: str
    duration_s: float
    fail_on: str
    results: list[Result]
    checklist: list[ChecklistItem]
    fingerprint: dict[str, Any] = field(default_factory=dict)
    schema_version: str = REPORT_SCHEMA_VERSION
    # What checks produced beyond their results (e.g. every leak found, for --export-leaks);
    # not part of the JSON report.
    artifacts: dict[str, Any] = field(default_factory=dict, repr=False)
    # In cluster mode: one summary per node (name, address, status, counts, error); else empty.
    nodes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "pass" if gate_passes(self.results, self.fail_on) else "fail"

    def counts(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for r in self.results:
            counts[r.status.value] += 1
        return counts

    def by_item(self) -> list[tuple[ChecklistItem, list[Result]]]:
        groups: dict[str, tuple[ChecklistItem, list[Result]]] = {item.id: (item, []) for item in self.checklist}
        for r in self.results:
            groups.setdefault(r.item, (ChecklistItem(r.item, r.item, []), []))[1].append(r)
        return [g for g in groups.values() if g[1]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "tool": "rl-preflight",
            "tool_version": self.tool_version,
            "status": self.status,
            "spec": self.spec_path,
            "spec_sha256": self.spec_sha256,
            "run_name": self.run_name,
            "level": self.level,
            "fail_on": self.fail_on,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 4),
            "fingerprint": self.fingerprint,
            "summary": self.counts(),
            "checklist": [
                {"id": item.id, "title": item.title, "status": summarise(rs).value, "checks": [r.id for r in rs]}
                for item, rs in self.by_item()
            ],
            "results": [r.to_dict() for r in self.results],
            **({"nodes": self.nodes} if self.nodes else {}),
        }


def summarise(results: list[Result]) -> Status:
    """The worst status among results (an empty group counts as skipped)."""
    present = {r.status for r in results}
    return next((s for s in SEVERITY_ORDER if s in present), Status.SKIP)


def gate_passes(results: list[Result], fail_on: str = "fail") -> bool:
    blocking = {Status.FAIL, Status.ERROR} | ({Status.WARN} if fail_on == "warn" else set())
    return not any(r.status in blocking for r in results)


EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def exit_code(report: Report) -> int:
    """0: the gate passed (warnings allowed unless --fail-on warn); 1: it failed."""
    return EXIT_PASS if report.status == "pass" else EXIT_FAIL
