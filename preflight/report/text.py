"""The terminal report: one block per checklist item, one line per check, then the gate verdict.

It prints only what is in the results (checks never put secrets there), fits 100 columns (long
``found`` values are cut on the check line and wrapped in the detail lines below it), and colours
the status words only when asked to.
"""

from __future__ import annotations

import json
import textwrap

from preflight.report.common import (
    BOLD,
    RESET,
    WIDTH,
    RenderOptions,
    details,
    gate_line,
    groups,
    needs_detail,
    node_groups,
    paint,
    tag,
)
from preflight.result import Report, Result, Status

TAG_WIDTH = 6  # len("WAIVED")
ROW_INDENT = "  "
DETAIL_INDENT = " " * (len(ROW_INDENT) + TAG_WIDTH + 2)  # detail lines start under the check id
MAX_ID, MAX_TITLE, MIN_FOUND = 32, 34, 16


def render_text(report: Report, options: RenderOptions) -> str:
    results = report.results
    id_w = min(max((len(r.id) for r in results), default=0), MAX_ID)
    # The title column is shown only with --verbose: at 100 columns `found` is worth more room.
    title_w = min(max((len(r.title) for r in results), default=0), MAX_TITLE) if options.verbose else 0
    lines = [_header(report, options), ""]
    for item_id, item_title, worst, rs in groups(report):
        name = f"{item_title} [{item_id}]" if item_title != item_id else item_id
        lines.append(f"{_bold(name, options.color)} — {tag(worst, options.color)}")
        for r in rs:
            lines.extend(_result_lines(r, id_w, title_w, options))
        lines.append("")
    for node in node_groups(report):
        lines.append(f"{_bold('node ' + node.name, options.color)} — {tag(node.status, options.color)}")
        if node.error:
            lines += _detail("not checked", node.error)
        for r in node.results:
            lines.extend(_result_lines(r, id_w, title_w, options))
        lines.append("")
    verdict_status = Status.PASS if report.passed else Status.FAIL
    for line in textwrap.wrap(gate_line(report), WIDTH, subsequent_indent="      ",
                              break_on_hyphens=False, break_long_words=False):
        lines.append(paint(line, verdict_status, options.color))
    return "\n".join(lines) + "\n"


def _header(report: Report, options: RenderOptions) -> str:
    run = f"run {report.run_name}, " if report.run_name else ""
    return _bold(f"RL Preflight {report.tool_version} — {run}level {report.level}, "
                 f"fail-on {report.fail_on}", options.color)


def _result_lines(r: Result, id_w: int, title_w: int, options: RenderOptions) -> list[str]:
    title = f"{_cut(r.title, title_w):<{title_w}}  " if title_w else ""
    columns = f"{r.id:<{id_w}}  {title}"
    room = max(WIDTH - len(ROW_INDENT) - TAG_WIDTH - 2 - len(columns), MIN_FOUND)
    found_lines = r.found.splitlines() or [""]
    found_cut = _cut(found_lines[0] + (" …" if len(found_lines) > 1 else ""), room)
    row = f"{ROW_INDENT}{tag(r.status, options.color, TAG_WIDTH)}  {columns}{found_cut}"
    out = [row.rstrip()]
    if needs_detail(r):
        for label, value in details(r):
            out += _detail(label, value)
    else:
        if options.verbose and found_cut != r.found:
            out += _detail("found", r.found)
        if r.note:
            out += _detail("note", r.note)
    if options.verbose and r.evidence:
        out.append(f"{DETAIL_INDENT}evidence:")
        for key, value in r.evidence.items():
            out += _detail(f"  {key}", json.dumps(value, default=str, ensure_ascii=False),
                           max_lines=4)
    return out


def _detail(label: str, text: str, max_lines: int | None = None) -> list[str]:
    """'expected: ...' under a check, wrapped to the report width, newlines kept."""
    first = f"{DETAIL_INDENT}{label}: "
    rest = " " * len(first)
    out: list[str] = []
    for n, para in enumerate(text.splitlines() or [""]):
        out += textwrap.wrap(para, WIDTH, initial_indent=first if n == 0 else rest,
                             subsequent_indent=rest, break_on_hyphens=False) or [first.rstrip()]
    if max_lines is not None and len(out) > max_lines:
        out = out[:max_lines]
        out[-1] = out[-1][: WIDTH - 2] + " …"
    return out


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _bold(text: str, color: bool) -> str:
    return f"{BOLD}{text}{RESET}" if color else text
