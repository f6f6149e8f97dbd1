"""`preflight tui`, once its arguments are known to fit together (preflight.cli): build the app and
run it. This module imports Textual (through preflight.tui.app): only `preflight tui` loads it.

Every mistake a user can make here (a missing run directory, nothing to replay, a bad spec, a Ray
head that does not answer) is a UsageError or SpecError raised before the screen opens, so the CLI
prints one clear message and exits 2 instead of drawing a screen that can only fail.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..monitor.core import RunMonitor
from ..monitor.sources.detect import Detected, detect, open_source
from ..result import EXIT_PASS
from ..rundir import EVENTS_FILE
from ..service.check import check_cluster_flag
from ..service.waivers import parse_waivers
from .app import RunConsoleApp, console_app, preflight_app
from .session import PreflightSession

DEFAULT_REPLAY_SPEED = 10.0


def run_tui(args: argparse.Namespace) -> int:
    build_app(args).run()
    return EXIT_PASS


def build_app(args: argparse.Namespace) -> RunConsoleApp:
    """The preflight screen for ``args.spec``, or the console for ``--attach``/``--replay RUN_DIR``."""
    if args.spec:
        session = PreflightSession(args.spec, level=args.level, fail_on=args.fail_on,
                                   waivers=parse_waivers(args.waive), cluster=args.cluster)
        if args.cluster:  # the same rules as `check --cluster`, before a screen that could only fail
            check_cluster_flag(args.cluster, args.level)
        return preflight_app(session, ascii_only=args.ascii)
    run_dir = Path(args.replay or "")
    if args.attach:
        found = detect(args.attach, getattr(args, "source", None))
        if found.kind != "events":
            return console_app(found.run_dir, ascii_only=args.ascii, monitor_factory=_external(found))
        run_dir = found.run_dir  # the run directory, or the folder of the events.jsonl given
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory (the run's run.run_dir, which holds events.jsonl)")
    if args.replay and not (run_dir / EVENTS_FILE).is_file():
        raise UsageError(f"{run_dir}: no events.jsonl to replay (has the run started?)")
    speed = (args.speed or DEFAULT_REPLAY_SPEED) if args.replay else None
    return console_app(run_dir, ascii_only=args.ascii, replay_speed=speed)


def _external(found: Detected) -> Any:
    """A monitor factory for another trainer's log (the console's status line states the kind)."""
    def factory(run_dir: Path, spec: Any = None) -> RunMonitor:
        overrides = (spec.data.get("monitoring", {}).get("metric_map") if spec is not None else None) or {}
        devices = spec.world_size if spec is not None and spec.world_size else 1
        return RunMonitor(run_dir, spec=spec, source=open_source(found, overrides, devices=devices),
                          source_label=found.describe())

    return factory
