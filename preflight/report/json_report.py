"""The JSON report: exactly ``Report.to_dict()``, described by schemas/report.schema.json."""

from __future__ import annotations

import json

from preflight.report.common import RenderOptions
from preflight.result import Report


def render_json(report: Report, options: RenderOptions) -> str:
    return json.dumps(report.to_dict(), indent=2)
