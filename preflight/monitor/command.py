"""`preflight monitor PATH`: the alerts, checklists and curve fit without a TUI.

    preflight monitor RUN_DIR --once [--format text|json] [--fail-on-alert]   # a report, now
    preflight monitor RUN_DIR                  # follow until the run ends (or Ctrl-C)
    preflight monitor RUN_DIR --sign-off architecture_reviewed --by NAME --note TEXT
    preflight monitor TRL_OUTPUT_DIR | verl.jsonl | TB_LOGDIR [--source verl|trl|openrlhf|...]
        [--sample-gpus] [--plot run.html] [--prometheus-textfile F] [--prometheus-port P]
        [--webhook URL] [--on-alert-command CMD]

PATH is our runner's run directory (events.jsonl) or another trainer's log, whose kind is
detected and stated (preflight.monitor.sources); another trainer's run has no end marker, so
following it stops on Ctrl-C or after --exit-when-idle seconds without new records.

Following, text output prints each new alert and checklist change as a line and the whole
report at the end; JSON output prints one snapshot object a line whenever something changed,
and the final one last.
Exit codes: 0, or 1 with --fail-on-alert when a rule is in alert at the end; 2 for a run
directory that does not exist or cannot be read, a spec that does not load, a bad sign-off, or a
final --plot / --prometheus-textfile that could not be written (the report is printed first).
While following, such a write that fails is a warning (once per cause) and the watch goes on: a
full disk must not end the monitoring of the run.

The monitor's modules are light (the curve fit imports numpy only when it fits), so they are
imported here at the top.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import PreflightError, UsageError
from ..probes import NvmlGpuProbe
from ..result import EXIT_FAIL as EXIT_ALERT
from ..result import EXIT_PASS as EXIT_OK
from ..result import EXIT_USAGE
from ..rundir import EVENTS_FILE, SIGNOFFS_FILE
from ..spec import Spec, load_spec
from .checklists import ChecklistItem, default_signer, sign_off
from .core import MonitorSnapshot, RunMonitor, open_run_dir
from .export import Exporter
from .hooks import AlertHooks
from .plot import write_plot
from .render import alert_line, item_line, render_text, status_line, to_dict
from .rules import Alert
from .sources.detect import SOURCES, Detected, detect, open_source
from .sources.gpu import DEFAULT_INTERVAL_S, SAMPLES_FILE, GpuSampler

PLOT_EVERY_S = 60.0  # how often --plot is rewritten while following


def gpu_probe() -> Any:
    """The NVML probe --sample-gpus reads (the tests put a fake here)."""
    return NvmlGpuProbe()


def add_monitor_command(subparsers: Any) -> argparse.ArgumentParser:
    m = subparsers.add_parser(
        "monitor", help="watch a run: alerts, checklists and the curve fit, for scripts and CI",
        description=f"Read RUN_DIR/{EVENTS_FILE}, or the log of a verl, TRL or OpenRLHF run (verl's "
                    "file logger, TensorBoard event files, trainer_state.json), and report the alert "
                    "rules, the during-training and optimization checklists and the ScaleRL curve fit. "
                    "Without --once it follows the run until it ends or Ctrl-C; quitting never stops "
                    "the run.",
        epilog="Exit codes: 0 reported; 1 with --fail-on-alert when a rule is in alert; 2 a run "
               "directory, log, spec or argument that cannot be used.")
    m.add_argument("run_dir", metavar="PATH",
                   help=f"the run directory (run.run_dir, holding {EVENTS_FILE}), a TRL output_dir, a "
                        "TensorBoard log dir or event file, or verl's file-logger .jsonl")
    m.add_argument("--source", choices=SOURCES,
                   help="what PATH holds, when detecting it is not wanted (default: detected and stated)")
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
    _integration_arguments(m)
    m.add_argument("--sign-off", metavar="ITEM",
                   help=f"record a manual sign-off in RUN_DIR/{SIGNOFFS_FILE} (architecture_reviewed, "
                        "another optimization item, or ack:RULE for an alert) and exit")
    m.add_argument("--by", metavar="NAME", help="who signs off (default: your user name)")
    m.add_argument("--note", default="", metavar="TEXT", help="what was reviewed, or why")
    m.set_defaults(monitor_handler=cmd_monitor)
    return m


def _integration_arguments(m: argparse.ArgumentParser) -> None:
    """Other trainers' logs, GPU sampling, export, hooks and plots."""
    m.add_argument("--devices", type=int, metavar="N",
                   help="devices the run uses, for device hours from another trainer's clock "
                        "(default: the spec's world size, else 1)")
    m.add_argument("--sample-gpus", action="store_true",
                   help=f"sample this machine's GPU utilization through NVML into PATH's {SAMPLES_FILE} "
                        "and use it for trainers that do not log it (verl, TRL, OpenRLHF)")
    m.add_argument("--sample-interval", type=float, default=DEFAULT_INTERVAL_S, metavar="SECONDS",
                   help=f"seconds between GPU samples (default {DEFAULT_INTERVAL_S:g})")
    m.add_argument("--exit-when-idle", type=float, metavar="SECONDS",
                   help="stop following once the log has had nothing new for this long, after its "
                        "first record (another trainer's log has no end marker)")
    m.add_argument("--plot", metavar="FILE", help="draw the pass rate with the curve fit, the loss, "
                   "generation length and truncation into FILE.html (self-contained) or FILE.png")
    m.add_argument("--prometheus-textfile", metavar="FILE",
                   help="write Prometheus metrics to FILE for node_exporter's textfile collector")
    m.add_argument("--prometheus-port", type=int, metavar="PORT",
                   help="serve Prometheus metrics on this port while following")
    m.add_argument("--on-alert-command", metavar="CMD",
                   help="run CMD (through the shell, the alert as JSON on stdin) for each new alert")
    m.add_argument("--webhook", metavar="URL",
                   help="POST each new alert as Slack-compatible JSON {\"text\": ...} to URL")


def _check_arguments(args: argparse.Namespace) -> None:
    if args.target is not None and not 0 < args.target < 1:
        raise UsageError(f"--target {args.target}: a pass rate between 0 and 1, e.g. 0.6")
    if args.interval <= 0:
        raise UsageError(f"--interval {args.interval}: must be more than 0 seconds")
    if args.exclude_hours is not None and args.exclude_hours < 0:
        raise UsageError(f"--exclude-hours {args.exclude_hours}: device hours, 0 or more")
    if args.devices is not None and args.devices < 1:
        raise UsageError(f"--devices {args.devices}: a number of devices, 1 or more")
    if args.sample_interval <= 0:
        raise UsageError(f"--sample-interval {args.sample_interval}: must be more than 0 seconds")
    if args.exit_when_idle is not None and args.exit_when_idle <= 0:
        raise UsageError(f"--exit-when-idle {args.exit_when_idle}: must be more than 0 seconds")
    if args.plot and Path(args.plot).suffix.lower() not in (".html", ".htm", ".png"):
        raise UsageError(f"--plot {args.plot}: name a .html or .png file")
    if args.prometheus_port is not None and (args.once or not 0 <= args.prometheus_port < 65536):
        raise UsageError(f"--prometheus-port {args.prometheus_port}: a port from 0 to 65535, and only "
                         "while following (a --once report has nothing to serve)")


def _open_monitor(args: argparse.Namespace, found: Detected, spec: Spec | None) -> RunMonitor:
    """The RunMonitor for the detected log: the runner's events, or another trainer's log."""
    overrides = (spec.data.get("monitoring", {}).get("metric_map") if spec is not None else None) or {}
    devices = args.devices or (spec.world_size if spec is not None else None) or 1
    source = open_source(found, overrides, devices=devices, gpu_samples=args.sample_gpus)
    if source is not None and args.once:
        source.final = True
    label = found.describe() if source is not None else ""
    monitor = RunMonitor(found.run_dir, spec=spec, target_pass_rate=args.target,
                         exclude_hours=args.exclude_hours, source=source, source_label=label)
    if source is not None and (args.devices or spec is not None):
        monitor.state.world_size = devices  # no run_start event will say it
    return monitor


def cmd_monitor(args: argparse.Namespace) -> int:
    _check_arguments(args)
    found = detect(args.run_dir, args.source)
    run_dir = open_run_dir(found.run_dir) if found.kind == "events" else found.run_dir
    spec = load_spec(args.spec) if args.spec else None
    if args.sign_off:
        return _sign_off(args, run_dir, spec)
    if found.kind != "events" or args.source:
        print(f"preflight: reading {found.describe()}", file=sys.stderr)
    outputs = _Outputs(args)
    sampler = _start_sampler(args, found)
    monitor = _open_monitor(args, found, spec)
    try:
        monitor.poll()
        if not args.once:
            _follow(monitor, args, outputs)
        snap = monitor.snapshot()
        outputs.final(monitor, snap)
    finally:
        monitor.close()
        outputs.close()
        if sampler is not None:
            sampler.stop()
    _print_report(snap, args, compact=not args.once)
    if outputs.final_problems:
        for problem in outputs.final_problems:
            print(f"preflight: {problem}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_ALERT if args.fail_on_alert and snap.in_alert else EXIT_OK


def _start_sampler(args: argparse.Namespace, found: Detected) -> GpuSampler | None:
    if not args.sample_gpus:
        return None
    if found.kind == "events":
        raise UsageError("--sample-gpus is for trainers that do not log utilization (verl, TRL, "
                         "OpenRLHF); the preflight runner measures it itself")
    sampler = GpuSampler(gpu_probe(), found.run_dir / SAMPLES_FILE, interval=args.sample_interval)
    if not sampler.sample_once():
        raise UsageError(f"--sample-gpus: {sampler.error}")
    sampler.start()
    return sampler


class _Outputs:
    """What the monitor sends out besides its report: Prometheus, alert hooks and the plot."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.hooks = AlertHooks(args.on_alert_command, args.webhook)
        self.exporter: Exporter | None = None
        if args.prometheus_textfile or args.prometheus_port is not None:
            self.exporter = Exporter(args.prometheus_textfile, args.prometheus_port)
            if args.prometheus_port is not None:
                print(f"preflight: Prometheus metrics on http://localhost:{self.exporter.port}/metrics",
                      file=sys.stderr)
        self.plot = args.plot
        self.once = args.once
        self._plotted = 0.0
        self._warned: set[str] = set()  # write failures already printed while following
        self.final_problems: list[str] = []  # the last writes that failed (exit 2)

    def update(self, monitor: RunMonitor, snap: MonitorSnapshot, fresh: list[Alert],
               last: bool = False) -> None:
        problems: list[str] = []
        exporter = self.exporter
        if exporter is not None:
            problems += _attempt(lambda: exporter.update(snap, [r.id for r in monitor.engine.rules],
                                                         monitor.state.alerts_by_rule))
        run = snap.run_name or str(snap.run_dir)
        if self.hooks:
            for alert in fresh:
                for problem in self.hooks.fire(alert, run):
                    print(f"preflight: {problem}", file=sys.stderr)
        if self.plot and time.monotonic() - self._plotted >= PLOT_EVERY_S:
            problems += _attempt(lambda: write_plot(snap, self.plot))
            self._plotted = time.monotonic()
        if last:
            self.final_problems = problems
            return
        for problem in problems:
            if problem not in self._warned:
                self._warned.add(problem)
                print(f"preflight: warning: {problem}; still following, will try again", file=sys.stderr)

    def final(self, monitor: RunMonitor, snap: MonitorSnapshot) -> None:
        # A one-off report fires the hooks for the rules in alert now (nothing was followed).
        fresh = [a for a in reversed(snap.alerts) if a.rule in snap.in_alert] if self.once else []
        latest = list({a.rule: a for a in reversed(fresh)}.values())
        self._plotted = -1e18
        self.update(monitor, snap, latest, last=True)

    def close(self) -> None:
        if self.exporter is not None:
            self.exporter.close()


def _attempt(write: Any) -> list[str]:
    """Run one output's write; its failure as a message (it names the file and the cause)."""
    try:
        write()
    except PreflightError as exc:
        return [str(exc)]
    return []


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


def _follow(monitor: RunMonitor, args: argparse.Namespace, outputs: _Outputs) -> None:
    """Poll until the run has ended and nothing new is left, or Ctrl-C, or --exit-when-idle;
    print changes and send them out."""
    seen_alerts, last_status = 0, None
    items: dict[str, str] = {}
    # Since the last new record; None until the first one (a trainer may take minutes to start).
    idle_since: float | None = time.monotonic() if monitor.state.events_seen else None
    try:
        while True:
            snap = monitor.snapshot()
            changed = _changed(snap, items)
            fresh = snap.alerts[len(snap.alerts) - min(snap.alerts_total - seen_alerts, len(snap.alerts)):]
            # the first pass holds the run's history: its alerts are printed, not sent to the hooks
            # again (attaching to a long run would post every alert it ever raised)
            outputs.update(monitor, snap, fresh if last_status is not None else [])
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
            if monitor.poll():
                idle_since = time.monotonic()
            elif args.exit_when_idle is not None and idle_since is not None \
                    and time.monotonic() - idle_since >= args.exit_when_idle:
                print(f"preflight: nothing new for {args.exit_when_idle:g} s; stopped following",
                      file=sys.stderr)
                return
    except KeyboardInterrupt:
        print("preflight: stopped following (the run goes on)", file=sys.stderr)


def _changed(snap: MonitorSnapshot, before: dict[str, str]) -> list[ChecklistItem]:
    """Checklist items whose status differs from ``before`` (all of them the first time)."""
    return [i for group in snap.checklists.values() for i in group if before.get(i.id) != i.status]
