"""`preflight tui`: check the arguments, then build the app and run it.

Every mistake a user can make here (no target, two targets, a missing run directory, a bad speed,
a bad spec) is a UsageError or SpecError raised before the screen opens, so the CLI prints one
clear message and exits 2 instead of drawing a screen that can only fail.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from ..result import EXIT_PASS
from ..rundir import EVENTS_FILE

DEFAULT_REPLAY_SPEED = 10.0


def run_tui(args: argparse.Namespace) -> int:
    targets = [name for name, value in (("SPEC", args.spec), ("--attach", args.attach),
                                         ("--replay", args.replay)) if value]
    if len(targets) != 1:
        raise UsageError("preflight tui needs exactly one of SPEC, --attach RUN_DIR or --replay RUN_DIR"
                         + (f" (got {' and '.join(targets)})" if targets else "")
                         + "; e.g. `preflight tui run.yaml` or `preflight tui --attach runs/my-run`")
    if args.speed is not None and not args.replay:
        raise UsageError("--speed only applies to --replay RUN_DIR")
    if args.speed is not None and not args.speed > 0:
        raise UsageError(f"--speed {args.speed:g}: the replay speed must be above 0 (e.g. --speed 10)")
    if (args.attach or args.replay) and (args.waive or args.level != "node" or args.fail_on != "fail"
                                         or args.cluster):
        raise UsageError("--waive, --level, --fail-on and --cluster apply to the checks of a SPEC, "
                         "not to --attach/--replay")
    app = build_app(args)
    app.run()
    return EXIT_PASS


def build_app(args: argparse.Namespace):  # type: ignore[no-untyped-def]  # textual is imported lazily
    if args.spec:
        from ..cli import check_cluster_flag, parse_waivers
        from .session import PreflightSession

        session = PreflightSession(args.spec, level=args.level, fail_on=args.fail_on,
                                   waivers=parse_waivers(args.waive), cluster=args.cluster)
        if args.cluster:  # the same rules as `check --cluster`, before a screen that could only fail
            check_cluster_flag(args.cluster, args.level)
        app_module = _textual_app()
        return app_module.preflight_app(session, ascii_only=args.ascii)
    run_dir = Path(args.attach or args.replay)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory (the run's run.run_dir, which holds events.jsonl)")
    if args.replay and not (run_dir / EVENTS_FILE).is_file():
        raise UsageError(f"{run_dir}: no events.jsonl to replay (has the run started?)")
    speed = (args.speed or DEFAULT_REPLAY_SPEED) if args.replay else None
    return _textual_app().console_app(run_dir, ascii_only=args.ascii, replay_speed=speed)


def _textual_app():  # type: ignore[no-untyped-def]
    try:
        from . import app
    except ImportError as exc:
        raise UsageError(f"the console needs the textual package ({exc}); "
                         "install it with `pip install 'textual>=8'`") from None
    return app
