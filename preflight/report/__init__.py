"""Renderers: a report in each output format, in one plain dict keyed by the format name.

    text = render(report, "junit", RenderOptions())

Each renderer is a pure function ``(Report, RenderOptions) -> str``; writing the file, stdout and
$GITHUB_STEP_SUMMARY is the CLI's job.
"""

from __future__ import annotations

from collections.abc import Callable

from preflight.errors import UsageError
from preflight.report.common import RenderOptions
from preflight.report.github import render_github
from preflight.report.json_report import render_json
from preflight.report.junit import render_junit
from preflight.report.markdown import markdown_summary, render_markdown
from preflight.report.text import render_text
from preflight.result import Report

Renderer = Callable[[Report, RenderOptions], str]

RENDERERS: dict[str, Renderer] = {
    "text": render_text,
    "json": render_json,
    "junit": render_junit,
    "github": render_github,
    "markdown": render_markdown,
}

FORMATS = tuple(RENDERERS)

__all__ = ["FORMATS", "RENDERERS", "RenderOptions", "Renderer", "markdown_summary", "render"]


def render(report: Report, fmt: str = "text", options: RenderOptions | None = None) -> str:
    """The report in format ``fmt`` (one of FORMATS); an unknown format is a UsageError."""
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise UsageError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}") from None
    return renderer(report, options or RenderOptions())
