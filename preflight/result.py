"""Check statuses, results and the report; the gate's one rule, and the one place a gate decision
becomes an exit code."""

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
# What a waiver turns into WAIVED (the engine's policy); a passing or skipped check has nothing to waive.
WAIVABLE = (Status.FAIL, Status.ERROR, Status.WARN)


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
    def passed(self) -> bool:
        """The gate's decision on this report (see ``blocks_gate``)."""
        return gate_passes(self.results, self.fail_on)

    @property
    def status(self) -> str:
        return "pass" if self.passed else "fail"

    def blocking(self) -> list[Result]:
        """The results that keep the gate shut, in report order."""
        return blocking(self.results, self.fail_on)

    def counts(self) -> dict[str, int]:
        return count_statuses(self.results)

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


def count_statuses(results: list[Result]) -> dict[str, int]:
    """How many results have each status (every status present, zero or not)."""
    counts = {s.value: 0 for s in Status}
    for r in results:
        counts[r.status.value] += 1
    return counts


def blocks_gate(result: Result, fail_on: str = "fail") -> bool:
    """The gate's one rule, for the CLI, the console and cluster mode alike: a failure or an error
    keeps the gate shut; a warning does too under ``--fail-on warn``; a waived result never does
    (the waiver turned its failure into WAIVED, and the attestation records why)."""
    return result.status.blocks or (fail_on == "warn" and result.status == Status.WARN)


def blocking(results: list[Result], fail_on: str = "fail") -> list[Result]:
    return [r for r in results if blocks_gate(r, fail_on)]


def gate_passes(results: list[Result], fail_on: str = "fail") -> bool:
    return not blocking(results, fail_on)


# The process's exit codes, for every command: 0 gate passed, 1 gate failed, 2 could not judge
# (bad usage, a bad spec, an internal error).
EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # the shell's code for a run stopped by Ctrl-C (128 + SIGINT)


def exit_code(judged: Report | bool) -> int:
    """The one mapping from a gate decision to an exit code: 0 passed (warnings allowed unless
    --fail-on warn), 1 failed. ``judged`` is a report, or a decision already made (a verdict on an
    attestation, `preflight verify`)."""
    passed = judged if isinstance(judged, bool) else judged.passed
    return EXIT_PASS if passed else EXIT_FAIL
