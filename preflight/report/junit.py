"""JUnit XML for CI test viewers: one <testsuite> per checklist item, one <testcase> per check.

fail -> <failure>, error -> <error>, skip -> <skipped>; a warning passes with a note in
<system-out> (it is a <failure type="warn"> under --fail-on warn); a waived check passes with its
waiver in <system-out>, so it is visible but does not turn the build red.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from preflight.report.common import RenderOptions, details, groups, node_groups, sentence
from preflight.result import Report, Result, Status

# ANSI escapes, then anything XML 1.0 cannot carry (control characters, lone surrogates).
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_NOT_XML_RE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def render_junit(report: Report, options: RenderOptions) -> str:
    root = ET.Element("testsuites", name="rl-preflight", time=_secs(report.duration_s))
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for item_id, _title, _worst, results in groups(report):
        suite = _suite(report, item_id, results)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for node in node_groups(report):  # cluster mode: one suite per node, named after it
        suite = _suite(report, f"node {node.name}", node.results)
        if node.error:
            case = ET.SubElement(suite, "testcase", classname=_x(f"preflight.node {node.name}"),
                                 name="node answered", time="0.000")
            ET.SubElement(case, "error", message=_x(f"{node.name}: {node.error}"), type="error")
            suite.set("tests", str(int(suite.get("tests", "0")) + 1))
            suite.set("errors", str(int(suite.get("errors", "0")) + 1))
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def _suite(report: Report, item_id: str, results: list[Result]) -> ET.Element:
    suite = ET.Element("testsuite", name=_x(f"preflight: {report.run_name or item_id}"))
    suite.set("id", _x(item_id))
    props = ET.SubElement(suite, "properties")
    for name, value in [
        ("checklist_item", item_id),
        ("spec", report.spec_path),
        ("spec_sha256", report.spec_sha256),
        ("tool_version", report.tool_version),
        ("level", report.level),
        ("fail_on", report.fail_on),
    ]:
        ET.SubElement(props, "property", name=name, value=_x(value))
    counts = {"failures": 0, "errors": 0, "skipped": 0}
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=_x(f"preflight.{item_id}"),
                             name=_x(r.id), time=_secs(r.duration_s))
        kind = _add_outcome(case, r, warn_fails=report.fail_on == "warn")
        if kind:
            counts[kind] += 1
    suite.set("tests", str(len(results)))
    for counter, n in counts.items():
        suite.set(counter, str(n))
    suite.set("time", _secs(sum(r.duration_s for r in results)))
    if report.started_at:
        suite.set("timestamp", _x(report.started_at))
    return suite


def _add_outcome(case: ET.Element, r: Result, warn_fails: bool) -> str:
    """Add the child element for r's status; return the suite counter it bumps ('' for none)."""
    text = _x("\n".join(f"{label}: {value}" for label, value in details(r)))
    if r.status == Status.FAIL or (r.status == Status.WARN and warn_fails):
        ET.SubElement(case, "failure", message=_x(sentence(r)), type=r.status.value).text = text
        return "failures"
    if r.status == Status.ERROR:
        ET.SubElement(case, "error", message=_x(sentence(r)), type="error").text = text
        return "errors"
    if r.status == Status.SKIP:
        ET.SubElement(case, "skipped", message=_x(r.found or "not applicable"))
        return "skipped"
    if r.status == Status.WARN:
        ET.SubElement(case, "system-out").text = _x(f"WARNING: {sentence(r)}\n{text}")
    elif r.status == Status.WAIVED:
        ET.SubElement(case, "system-out").text = _x(f"WAIVED: {sentence(r)}\n{text}")
    elif r.note:
        ET.SubElement(case, "system-out").text = _x(f"note: {r.note}")
    return ""


def _x(text: str) -> str:
    """Text that XML 1.0 can carry: no ANSI colour codes, no control characters."""
    return _NOT_XML_RE.sub("\ufffd", _ANSI_RE.sub("", text))


def _secs(seconds: float) -> str:
    return f"{max(seconds, 0.0):.3f}"
