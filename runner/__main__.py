"""`python -m runner SPEC [--force --reason TEXT] [--resume | --fresh]`: start the RL run behind the preflight gate.

Exit codes: 0 the run finished, 1 refused by the gate or by the run dir's state (or the run failed),
2 bad usage or spec.
"""

from __future__ import annotations

import argparse
import sys

from preflight.errors import PreflightError
from preflight.rundir import FRESH, RESUME
from preflight.runstate import move_aside, record_spec
from preflight.spec import load_spec

from . import launch
from .authorize import authorize, authorize_run_dir
from .events import require_sinks
from .rewards import reward_for


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runner", description=__doc__.splitlines()[0])
    ap.add_argument("spec", metavar="SPEC")
    ap.add_argument("--force", action="store_true", help="start without a passing attestation")
    ap.add_argument("--reason", help="why starting past the gate is acceptable (required with --force)")
    ap.add_argument("--local", action="store_true",
                    help="train in this process without Ray (one worker; for debugging)")
    choice = ap.add_mutually_exclusive_group()
    choice.add_argument("--resume", dest="run_dir_choice", action="store_const", const=RESUME,
                        help="the run dir holds a run: continue it from its newest checkpoint")
    choice.add_argument("--fresh", dest="run_dir_choice", action="store_const", const=FRESH,
                        help="the run dir holds a run: move it aside to RUN_DIR.prev-TIME (nothing is "
                             "deleted) and start at step 0")
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2
    try:
        spec = load_spec(args.spec)
        auth = authorize(spec, args.force, args.reason)
        print(f"runner: {auth.message}", file=sys.stderr)
        if not auth.ok:
            return 1
        place = authorize_run_dir(spec, args.run_dir_choice)
        print(f"runner: {place.message}", file=sys.stderr)
        if not place.ok:
            return 1
        from .model import TINY, model_directory  # torch: only once the gate let the run start

        # what the user named, checked here before any worker starts: inside a Ray worker the
        # same mistake would come back wrapped in Ray's own error, as a traceback
        if str(spec.get("model.name_or_path")) != TINY:
            model_directory(spec.get("model.name_or_path"))
        reward_for(spec)
        require_sinks(spec.get("monitoring.sinks") or [])  # a declared sink is never dropped quietly
        from .config import TrainConfig  # torch (runner.algo): only once the gate let the run start

        # the settings every worker builds first; a ConfigError here names the field, where a
        # worker would raise it inside Ray's traceback
        TrainConfig.from_spec(spec, world_size=1 if args.local else spec.world_size)
        if place.move_aside:
            for before, after in move_aside(spec):
                print(f"runner: --fresh: moved {before} aside to {after} (nothing was deleted)", file=sys.stderr)
        record_spec(spec)
        try:
            summary = launch.run(spec, forced_reason=auth.forced_reason, local=args.local)
        except Exception as exc:  # the run failed: say so in its events, then show the cause
            launch.record_failure(spec, exc)
            raise
    except PreflightError as exc:
        print(f"runner: {exc}", file=sys.stderr)
        return 2
    start, final = summary.get("val_pass_rate_start"), summary.get("val_pass_rate_final")
    gain = (f"; validation pass rate {start:.1%} at the start of RL -> {final:.1%} at step "
            f"{summary.get('steps')} ({(final - start) * 100:+.1f} points)"
            if isinstance(start, float) and isinstance(final, float) else "")
    print(f"runner: {summary.get('status', 'finished')}{gain}; events: {summary.get('events')}", file=sys.stderr)
    return 0 if summary.get("status") == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
