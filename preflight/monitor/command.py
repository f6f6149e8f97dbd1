"""`preflight monitor RUN_DIR`: the alerts, checklists and curve fit without a TUI.

    preflight monitor RUN_DIR --once [--format text|json] [--fail-on-alert]   # a report, now
    preflight monitor RUN_DIR                  # follow until the run ends (or Ctrl-C)
    preflight monitor RUN_DIR --sign-off architecture_reviewed --by NAME --note TEXT

Following, text output prints each new alert and checklist change as a line and the whole
report at the end; JSON output prints one snapshot object a line whenever something changed,
and the final one last.
Exit codes: 0, or 1 with --fail-on-alert when a rule is in alert at the end; 2 for a run
directory that does not exist or cannot be read, a spec that does not load, or a bad sign-off.

The monitor's modules are light (the curve fit imports numpy only when it fits), so they are
imported here at the top.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..errors import UsageError
from ..result import EXIT_FAIL as EXIT_ALERT
from ..result import EXIT_PASS as EXIT_OK
from ..rundir import EVENTS_FILE, SIGNOFFS_FILE
from ..spec import load_spec
from .checklists import ChecklistItem, default_signer, sign_off
from .core import MonitorSnapshot, RunMonitor, open_run_dir
from .render import alert_line, item_line, render_text, status_line, to_dict


def add_monitor_command(subparsers: Any) -> argparse.ArgumentParser:
    m = subparsers.add_parser(
        "monitor", help="watch a run: alerts, checklists and the curve fit, for scripts and CI",
        description=f"Read RUN_DIR/{EVENTS_FILE} and report the alert rules, the during-training and "
                    "optimization checklists and the ScaleRL curve fit. Without --once it follows the "
                    "run until it ends or Ctrl-C; quitting never stops the run.",
        epilog="Exit codes: 0 reported; 1 with --fail-on-alert when a rule is in alert; 2 a run "
               "directory, spec or argument that cannot be used.")
    m.add_argument("run_dir", metavar="RUN_DIR", help=f"the run directory (run.run_dir), holding {EVENTS_FILE}")
    m.add_argument("--once", action="store_true", help="report what is there now and exit")
    m.add_argument("--format", choices=("text", "json"), default="text", dest="fmt")
    m.add_argument("--fail-on-alert", action="store_true",
                   help="exit 1 when an alert rule is in alert at the end")
    m.add_argument("--spec", metavar="SPEC",
                   help="judge against this run spec (default: the run's own configuration and the "
                        "built-in rules)")
    m.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                   help="how often to look for new events when following (default 1)")
    m.add_argument("--target", type=float, metavar="RATE",
                   help="target validation pass rate for the compute estimate (default: the "
                        "pass-rate rule's threshold, 0.6)")
    m.add_argument("--exclude-hours", type=float, metavar="HOURS",
                   help="leave validation results before this many device hours out of the curve fit "
                        "(default: the first 10%% of the budget)")
    m.add_argument("--series", action="store_true", help="JSON: include the plotted series")
    m.add_argument("--sign-off", metavar="ITEM",
                   help=f"record a manual sign-off in RUN_DIR/{SIGNOFFS_FILE} (architecture_reviewed, "
                        "another optimization item, or ack:RULE for an alert) and exit")
    m.add_argument("--by", metavar="NAME", help="who signs off (default: your user name)")
    m.add_argument("--note", default="", metavar="TEXT", help="what was reviewed, or why")
    m.set_defaults(monitor_handler=cmd_monitor)
    return m


def cmd_monitor(args: argparse.Namespace) -> int:
    run_dir = open_run_dir(args.run_dir)
    if args.target is not None and not 0 < args.target < 1:
        raise UsageError(f"--target {args.target}: a pass rate between 0 and 1, e.g. 0.6")
    if args.interval <= 0:
        raise UsageError(f"--interval {args.interval}: must be more than 0 seconds")
    if args.exclude_hours is not None and args.exclude_hours < 0:
        raise UsageError(f"--exclude-hours {args.exclude_hours}: device hours, 0 or more")
    spec = None
    if args.spec:
        spec = load_spec(args.spec)
    if args.sign_off:
        return _sign_off(args, run_dir, spec)
    monitor = RunMonitor(run_dir, spec=spec, target_pass_rate=args.target,
                         exclude_hours=args.exclude_hours)
    try:
        monitor.poll()
        if not args.once:
            _follow(monitor, args)
        snap = monitor.snapshot()
    finally:
        monitor.close()
    _print_report(snap, args, compact=not args.once)
    return EXIT_ALERT if args.fail_on_alert and snap.in_alert else EXIT_OK


def _sign_off(args: argparse.Namespace, run_dir: Any, spec: Any) -> int:
    by = args.by or default_signer()
    rules = None
    if args.sign_off.startswith("ack:"):
        # The rules an acknowledgement can name: those judged here, and those the run alerted on.
        monitor = RunMonitor(run_dir, spec=spec)
        try:
            monitor.poll()
        finally:
            monitor.close()
        rules = [r.id for r in monitor.engine.rules] + sorted(monitor.state.alerts_by_rule)
    known = list(dict.fromkeys(rules)) if rules is not None else None
    path = sign_off(run_dir, args.sign_off, by, args.note, engine_rules=known)
    print(f"signed off {args.sign_off} as {by} in {path}")
    return EXIT_OK


def _print_report(snap: MonitorSnapshot, args: argparse.Namespace, compact: bool) -> None:
    """The final report; following in JSON, it is the last line of the JSON Lines stream."""
    if args.fmt == "json":
        body = to_dict(snap, include_series=args.series)
        print(json.dumps(body) if compact else json.dumps(body, indent=2))
    else:
        sys.stdout.write(render_text(snap))


ENDED = ("completed", "stopped", "failed")


def _follow(monitor: RunMonitor, args: argparse.Namespace) -> None:
    """Poll until the run has ended and nothing new is left, or Ctrl-C; print changes."""
    seen_alerts, last_status = 0, None
    items: dict[str, str] = {}
    try:
        while True:
            snap = monitor.snapshot()
            changed = _changed(snap, items)
            fresh = snap.alerts[len(snap.alerts) - min(snap.alerts_total - seen_alerts, len(snap.alerts)):]
            if args.fmt == "json":
                if last_status is None or fresh or changed or snap.status != last_status:
                    print(json.dumps(to_dict(snap)), flush=True)
            else:
                if snap.status != last_status and not (snap.status in ENDED and monitor.caught_up):
                    print(status_line(snap), flush=True)  # the end is the report's first line
                for alert in fresh:
                    print("alert: " + alert_line(alert), flush=True)
                for item in changed:
                    print("checklist: " + item_line(item), flush=True)
            seen_alerts, last_status = snap.alerts_total, snap.status
            items = {i.id: i.status for group in snap.checklists.values() for i in group}
            if snap.status in ENDED and monitor.caught_up:
                return
            time.sleep(args.interval)
            monitor.poll()
    except KeyboardInterrupt:
        print("preflight: stopped following (the run goes on)", file=sys.stderr)


def _changed(snap: MonitorSnapshot, before: dict[str, str]) -> list[ChecklistItem]:
    """Checklist items whose status differs from ``before`` (all of them the first time)."""
    return [i for group in snap.checklists.values() for i in group if before.get(i.id) != i.status]
