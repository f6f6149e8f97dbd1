"""A MonitorSnapshot as text (for a terminal or a CI log) and as JSON (schemas/monitor.schema.json).

Both renderings show the same things: the run's status, the latest metrics, the alerts with their
recommended actions, both checklists with evidence, the curve fit (or why there is none yet), the
latest checkpoint and any malformed lines.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..rundir import EVENTS_FILE
from .checklists import ChecklistItem
from .core import MonitorSnapshot
from .rules import Alert, format_bytes, format_value

SCHEMA_VERSION = 1
LATEST = {  # series name -> (label, metric used for formatting)
    "pass_rate": ("pass rate", "pass_rate"),
    "val_pass_rate": ("validation pass rate", "pass_rate"),
    "loss": ("loss", "loss"),
    "utilization": ("utilization", "utilization"),
    "gen_len_mean": ("generation length", "gen_len_mean"),
    "truncation_rate": ("truncation", "truncation_rate"),
}
CHECKLIST_TITLES = {"during_training": "During training", "optimization": "Optimization"}
MAX_TEXT_ALERTS = 10


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def alert_dict(alert: Alert) -> dict[str, Any]:
    out: dict[str, Any] = _finite(dataclasses.asdict(alert))
    return out


def item_dict(item: ChecklistItem) -> dict[str, Any]:
    return dataclasses.asdict(item)


def latest_values(snap: MonitorSnapshot) -> dict[str, dict[str, Any]]:
    out = {}
    for name, points in snap.series.items():
        if points:
            step, value = points[-1]
            out[name] = {"step": step, "value": _finite(value)}
    return out


def to_dict(snap: MonitorSnapshot, include_series: bool = False) -> dict[str, Any]:
    """The snapshot as a JSON-safe object (schemas/monitor.schema.json)."""
    fit = _finite(dataclasses.asdict(snap.fit)) if snap.fit is not None else None
    body: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_dir": snap.run_dir,
        "run_name": snap.run_name,
        "status": snap.status,
        "last_step": snap.last_step,
        "events_seen": snap.events_seen,
        "device_hours": _finite(snap.device_hours),
        "world_size": snap.world_size,
        "phase": snap.phase,
        "settings_source": snap.settings_source,
        "end_reason": snap.end_reason,
        "in_alert": list(snap.in_alert),
        "alerts_total": snap.alerts_total,
        "alerts": [alert_dict(a) for a in snap.alerts],
        "checklists": {k: [item_dict(i) for i in items] for k, items in snap.checklists.items()},
        "fit": fit,
        "fit_note": snap.fit_note,
        "latest_checkpoint": _finite(snap.latest_checkpoint),
        "latest": latest_values(snap),
        "malformed_lines": snap.malformed_lines,
        "malformed_samples": [{"line": n, "message": m} for n, m in snap.malformed_samples],
        "notes": list(snap.notes),
        "actions": [_finite(a) for a in snap.actions],
        "actions_total": snap.actions_total,
        "source": snap.source,
        "log_path": snap.log_path,
    }
    if include_series:
        body["series"] = {k: [[s, _finite(v)] for s, v in pts] for k, pts in snap.series.items()}
    return body


# --- text -------------------------------------------------------------------------------------------


def status_line(snap: MonitorSnapshot) -> str:
    name = snap.run_name or "run"
    where = f"{name} ({snap.run_dir})"
    log = _log_path(snap)
    if snap.status == "waiting":
        if snap.malformed_lines:  # the file is there, but nothing in it could be read as an event
            return (f"{where}: waiting for events ({snap.malformed_lines} malformed line(s) in "
                    f"{log} so far, none usable)")
        return f"{where}: waiting for events ({log} not written yet)"
    step = f" at step {snap.last_step}" if snap.last_step is not None else ""
    extra = [f"{snap.events_seen:,} events"]
    if snap.device_hours is not None:
        extra.append(f"{snap.device_hours:.3g} device hours")
    if snap.world_size:
        extra.append(f"{snap.world_size} rank{'s' if snap.world_size != 1 else ''}")
    reason = f" ({snap.end_reason})" if snap.end_reason else ""
    return f"{where}: {snap.status}{reason}{step}; {', '.join(extra)}"


def _log_path(snap: MonitorSnapshot) -> str:
    return snap.log_path or f"{snap.run_dir}/{EVENTS_FILE}"


def alert_line(alert: Alert) -> str:
    source = " [from the run]" if alert.source == "run" else ""
    action = f" -> {alert.action}" if alert.action else ""
    return f"[{alert.severity}] {alert.rule}: {alert.message}{action}{source}"


def item_line(item: ChecklistItem) -> str:
    return f"{item.status.upper():<7} {item.title}: {item.evidence}"


def render_text(snap: MonitorSnapshot) -> str:
    lines = [status_line(snap)]
    if snap.source:
        lines.append(f"reading {snap.source}")
    latest = latest_values(snap)
    shown = [f"{label} {format_value(metric, latest[name]['value'])}"
             for name, (label, metric) in LATEST.items() if name in latest]
    if shown:
        lines.append("latest: " + ", ".join(shown))
    lines.append("")
    if snap.alerts_total:
        now = f"; in alert now: {', '.join(snap.in_alert)}" if snap.in_alert else "; none in alert now"
        lines.append(f"Alerts ({snap.alerts_total}{now}):")
        recent = snap.alerts[-MAX_TEXT_ALERTS:]
        if len(snap.alerts) > len(recent) or snap.alerts_total > len(snap.alerts):
            lines.append(f"  ... {snap.alerts_total - len(recent)} earlier alerts not shown")
        lines.extend("  " + alert_line(a) for a in recent)
    else:
        lines.append("Alerts: none")
    if snap.actions_total:
        lines.append(f"Actions by the run ({snap.actions_total}):")
        lines.extend(f"  step {a.get('step')}: {a.get('kind')}: {a.get('cause')}"
                     for a in snap.actions[-MAX_TEXT_ALERTS:])
    for key, items in snap.checklists.items():
        lines.append("")
        lines.append(f"{CHECKLIST_TITLES.get(key, key)} checklist:")
        lines.extend("  " + item_line(i) for i in items)
    lines.append("")
    lines.append("Curve fit (ScaleRL): " + snap.fit_note)
    ckpt = snap.latest_checkpoint
    if ckpt:
        size = ckpt.get("bytes")
        size_text = f", {format_bytes(size)}" if isinstance(size, (int, float)) else ""
        lines.append(f"Latest checkpoint: step {ckpt.get('step')}, {ckpt.get('path')}{size_text}")
    else:
        lines.append("Latest checkpoint: none yet")
    if snap.malformed_lines:
        what = ("each line must be one JSON object with a 'type'; see `preflight schema event`"
                if not snap.source else "records this reader could not use")
        lines.append(f"Malformed lines in {_log_path(snap)}: {snap.malformed_lines}, skipped ({what})")
        for number, message in snap.malformed_samples[:5]:
            lines.append(f"  line {number}: {message}" if number > 0 else f"  {message}")
    for note in snap.notes:
        lines.append(f"Note: {note}")
    lines.append(f"Judged against {snap.settings_source}.")
    return "\n".join(lines) + "\n"
