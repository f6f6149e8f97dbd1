"""A Markdown report (also the GitHub step summary): the verdict, the counts, one table per item."""

from __future__ import annotations

from preflight.report.common import (
    TAGS,
    RenderOptions,
    counts_phrase,
    groups,
    node_groups,
    short_sha,
    verdict,
    waiver_text,
)
from preflight.result import Report, Result, Status


def render_markdown(report: Report, options: RenderOptions) -> str:
    return markdown_summary(report)


def markdown_summary(report: Report) -> str:
    """The whole Markdown report; the CLI appends it to $GITHUB_STEP_SUMMARY when that is set."""
    run = f" — run `{_code(report.run_name)}`" if report.run_name else ""
    lines = [f"## Preflight gate: {verdict(report)}{run}", "", f"{_cell(counts_phrase(report))}."]
    if report.fail_on == "warn":
        lines[-1] += " Warnings block this gate (`--fail-on warn`)."
    meta = [f"spec `{_code(report.spec_path)}`"] if report.spec_path else []
    if report.spec_sha256:
        meta.append(f"sha256 `{short_sha(report.spec_sha256, 12)}`")
    meta += [f"level `{report.level}`", f"rl-preflight {_cell(report.tool_version)}"]
    lines += ["", _cell(", ".join(meta)), "", "| status | count |", "| --- | ---: |"]
    counts = report.counts()
    lines += [f"| {TAGS[s]} | {counts[s.value]} |" for s in Status]
    for item_id, title, worst, results in groups(report):
        name = f"{_cell(title)} (`{_code(item_id)}`)" if title != item_id else f"`{_code(item_id)}`"
        lines += ["", f"### {name}: {TAGS[worst]}", "",
                  "| status | check | found | expected | fix |", "| --- | --- | --- | --- | --- |"]
        lines += [_row(r) for r in results]
    nodes = node_groups(report)
    if nodes:
        lines += ["", "### Nodes", "", "| node | status | failing checks |", "| --- | --- | --- |"]
        for node in nodes:
            bad = [f"`{_code(r.id)}`" for r in node.results if r.status.blocks]
            lines.append(f"| {_cell(node.name)} | {TAGS[node.status]} | "
                         f"{_cell(node.error) if node.error else ', '.join(bad) or '—'} |")
    for node in nodes:
        if node.results:
            lines += ["", f"### Node {_cell(node.name)}: {TAGS[node.status]}", "",
                      "| status | check | found | expected | fix |", "| --- | --- | --- | --- | --- |"]
            lines += [_row(r) for r in node.results]
    return "\n".join(lines) + "\n"


def _row(r: Result) -> str:
    fix = [r.remediation] if r.remediation else []
    if r.status == Status.WAIVED:
        fix.append(f"waived: {waiver_text(r)}")
    if r.note:
        fix.append(f"note: {r.note}")
    check = f"`{_code(r.id)}` {_cell(r.title)}"
    cells = [TAGS[r.status], check, _cell(r.found), _cell(r.expected), "<br>".join(map(_cell, fix))]
    return "| " + " | ".join(cells) + " |"


def _cell(text: str) -> str:
    """Text safe inside a table cell: HTML and pipes escaped, newlines as <br>."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("|", "\\|").replace("\r\n", "\n").replace("\r", "\n")
    return "<br>".join(text.split("\n"))


def _code(text: str) -> str:
    """Text for inside a `code span` in a table: no backticks, pipes escaped, one line."""
    return " ".join(text.replace("`", "'").replace("|", "\\|").split())
