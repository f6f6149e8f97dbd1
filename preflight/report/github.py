"""GitHub Actions output: an annotation per problem, a notice with the verdict, then the summary.

Workflow commands: https://docs.github.com/actions/reference/workflow-commands-for-github-actions
"""

from __future__ import annotations

import os

from preflight.report.common import RenderOptions, check_label, gate_line, sentence, waiver_text
from preflight.report.markdown import markdown_summary
from preflight.result import Report, Result, Status

__all__ = ["escape_data", "escape_property", "markdown_summary", "render_github"]


def render_github(report: Report, options: RenderOptions) -> str:
    lines = [line for r in report.results if (line := _annotation(report, r))]
    lines += [_command("error", f"node {n['name']} was not checked: {n['error']}", title="cluster node",
                       file=_file(report)) for n in report.nodes if n.get("error")]
    lines.append(_command("notice", gate_line(report), title="preflight gate", file=_file(report)))
    lines += ["::group::preflight report (Markdown)", markdown_summary(report).rstrip("\n"),
              "::endgroup::"]
    return "\n".join(lines) + "\n"


def _annotation(report: Report, r: Result) -> str:
    file = _file(report)
    where = f"[{r.node}] " if r.node else ""  # cluster mode: which node
    if r.status in (Status.FAIL, Status.ERROR):
        return _command("error", where + sentence(r), title=check_label(r), file=file)
    if r.status == Status.WARN:
        kind = "error" if report.fail_on == "warn" else "warning"
        return _command(kind, where + sentence(r), title=check_label(r), file=file)
    if r.status == Status.WAIVED:
        return _command("warning", f"{where}{r.title}: waived: {waiver_text(r)}; found {r.found or '—'}",
                        title=check_label(r), file=file)
    return ""


def _file(report: Report) -> str:
    """The spec, for the annotation's file= (only a path relative to the checkout can match)."""
    path = report.spec_path
    return path if path and not os.path.isabs(path) else ""


def _command(kind: str, message: str, **props: str) -> str:
    attrs = ",".join(f"{k}={escape_property(v)}" for k, v in props.items() if v)
    return f"::{kind} {attrs}::{escape_data(message)}" if attrs else f"::{kind}::{escape_data(message)}"


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")
