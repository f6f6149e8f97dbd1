"""Small helpers every renderer shares: options, status words, the verdict and waiver wording."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from preflight.result import Report, Result, Status, summarise

WIDTH = 100  # the text report fits this many columns


@dataclass(frozen=True)
class RenderOptions:
    color: bool = False  # ANSI colours (text format only)
    verbose: bool = False  # print every check's evidence (text format only)


TAGS: dict[Status, str] = {s: s.value.upper() for s in Status}  # PASS, WARN, FAIL, ...

_ANSI: dict[Status, str] = {
    Status.PASS: "\033[32m",  # green
    Status.WARN: "\033[33m",  # yellow
    Status.FAIL: "\033[31m",  # red
    Status.ERROR: "\033[1;31m",  # bold red
    Status.SKIP: "\033[2m",  # dim
    Status.WAIVED: "\033[35m",  # magenta
}
RESET = "\033[0m"
BOLD = "\033[1m"

# How each status is counted in a summary sentence: (singular, plural), in the order shown.
_PHRASES: list[tuple[Status, str, str]] = [
    (Status.FAIL, "failed", "failed"),
    (Status.ERROR, "error", "errors"),
    (Status.WARN, "warning", "warnings"),
    (Status.WAIVED, "waived", "waived"),
    (Status.PASS, "passed", "passed"),
    (Status.SKIP, "skipped", "skipped"),
]


def tag(status: Status, color: bool = False, width: int = 0) -> str:
    """The status word (PASS, FAIL, ...), padded to ``width``, coloured when asked."""
    word = TAGS[status].ljust(width)
    return f"{_ANSI[status]}{word}{RESET}" if color else word


def paint(text: str, status: Status, color: bool) -> str:
    return f"{_ANSI[status]}{text}{RESET}" if color else text


def needs_detail(result: Result) -> bool:
    """Whether a result deserves expected/found/fix lines (everything but pass and skip)."""
    return result.status not in (Status.PASS, Status.SKIP)


def warn_blocks(report: Report) -> bool:
    return report.fail_on == "warn"


def verdict(report: Report) -> str:
    return "PASSED" if report.passed else "FAILED"


def counts_phrase(report: Report) -> str:
    """'3 failed, 1 error, 2 warnings, 10 passed' (statuses with a zero count are left out)."""
    counts = report.counts()
    parts = []
    for status, one, many in _PHRASES:
        n = counts[status.value]
        if n:
            parts.append(f"{n} {one if n == 1 else many}")
    return ", ".join(parts) or "no checks ran"


def short_sha(sha: str, n: int = 8) -> str:
    return sha[:n] + "…" if len(sha) > n else sha


def gate_line(report: Report) -> str:
    """'gate: FAILED — 3 failed, 1 error, 2 warnings, 5 passed (spec x.yaml, sha256 abcd1234…)'."""
    line = f"gate: {verdict(report)} — {counts_phrase(report)}"
    if not report.passed and warn_blocks(report) and report.counts()[Status.WARN.value]:
        line += "; warnings block (fail-on warn)"
    where = [f"spec {report.spec_path}"] if report.spec_path else []
    if report.spec_sha256:
        where.append(f"sha256 {short_sha(report.spec_sha256)}")
    return line + (f" ({', '.join(where)})" if where else "")


def waiver_text(result: Result) -> str:
    """'<reason> (by X, expires Y, was fail)' for a waived result; '' when it has no waiver."""
    waiver: dict[str, Any] = result.waiver or {}
    if not waiver:
        return ""
    extra = [f"by {waiver['by']}"] if waiver.get("by") else []
    if waiver.get("expires"):
        extra.append(f"expires {waiver['expires']}")
    if status_before_waiver(result):
        extra.append(f"was {status_before_waiver(result)}")
    reason = str(waiver.get("reason", "")) or "no reason given"
    return reason + (f" ({', '.join(extra)})" if extra else "")


def status_before_waiver(result: Result) -> str:
    """The status a waived check had before its waiver ('fail', 'error', 'warn'), or ''."""
    return str(result.evidence.get("status_before_waiver", "")) if result.waiver else ""


def groups(report: Report) -> list[tuple[str, str, Status, list[Result]]]:
    """(item id, item title, worst status, results) per checklist item, in checklist order.
    In cluster mode these are the driver's and the cluster's checks; see node_groups."""
    out = []
    for item, rs in report.by_item():
        mine = [r for r in rs if not r.node]
        if mine:
            out.append((item.id, item.title, summarise(mine), mine))
    return out


@dataclass(frozen=True)
class NodeGroup:
    name: str  # the node as reports name it: host (address)
    status: Status  # its worst result; error when it did not answer
    error: str  # why it has no results ("" when it answered)
    results: list[Result]


def node_groups(report: Report) -> list[NodeGroup]:
    """One group per cluster node with the machine checks that ran there (cluster mode only)."""
    out = []
    for node in report.nodes:
        rs = [r for r in report.results if r.node == node["name"]]
        out.append(NodeGroup(node["name"], Status(node["status"]), node.get("error", ""), rs))
    return out


def check_label(result: Result) -> str:
    """The check id, with the node it ran on in cluster mode: 'hw.gpu.count @ gpu-node-3'."""
    return f"{result.id} @ {result.node}" if result.node else result.id


def details(result: Result) -> list[tuple[str, str]]:
    """The labelled lines shown under a check that did not plainly pass: expected, found, fix,
    the waiver and the policy note (empty fix, waiver and note are left out)."""
    out = [("expected", result.expected or "—"), ("found", result.found or "—")]
    if result.remediation:
        out.append(("fix", result.remediation))
    if result.status == Status.WAIVED:
        out.append(("waived", waiver_text(result) or "no waiver recorded"))
    if result.note:
        out.append(("note", result.note))
    return out


def sentence(result: Result) -> str:
    """'<title>: found X; expected Y. Fix: Z' (empty parts left out): one line for annotations."""
    text = f"{result.title}: found {result.found or '—'}"
    if result.expected:
        text += f"; expected {result.expected}"
    if result.remediation:
        text += f". Fix: {result.remediation}"
    return text
