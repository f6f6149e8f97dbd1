"""The `preflight` command line. Exit codes: 0 gate passed, 1 gate failed, 2 could not judge."""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import fnmatch
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .errors import PreflightError, SpecError, UsageError
from .result import EXIT_FAIL, EXIT_PASS, EXIT_USAGE, Report, exit_code
from .rundir import EVENTS_FILE, MIN_REASON, RUNNER_LOG

FORMATS = ("text", "json", "junit", "github", "markdown")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="preflight",
        description="Preflight checks for LLM RL training runs (GRPO, DAPO, ScaleRL on Ray + FSDP).",
        epilog="Exit codes: 0 gate passed (warnings allowed), 1 gate failed, 2 could not judge.",
    )
    p.add_argument("--version", action="version", version=f"rl-preflight {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    c = sub.add_parser("check", help="check this machine and the spec; gate the launch")
    c.add_argument("spec", metavar="SPEC")
    c.add_argument("--level", choices=("static", "node", "active"), default="node",
                   help="static: the spec only; node: also probe this machine (default); active: also measure")
    c.add_argument("--format", action="append", choices=FORMATS, dest="formats", metavar="FORMAT",
                   help=f"output format, one of {', '.join(FORMATS)}; repeat with --output for several")
    c.add_argument("--output", action="append", dest="outputs", metavar="PATH",
                   help="write the n-th --format to this file (default: stdout)")
    c.add_argument("--waive", action="append", default=[], metavar="CHECK_ID=REASON",
                   help="waive a check's failure for this run, with the reason (recorded)")
    c.add_argument("--fail-on", choices=("fail", "warn"), default="fail",
                   help="warn: warnings block the gate too")
    c.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="run only checks whose id matches (fnmatch, repeatable: --only 'data.*'); "
                   "no attestation is written for a partial check")
    c.add_argument("--no-attest", action="store_true", help="do not write the attestation file")
    c.add_argument("--export-leaks", metavar="FILE",
                   help="write every leak the data checks found (exact, near-duplicate, n-gram) as JSON Lines")
    c.add_argument("--verbose", "-v", action="store_true", help="show every check's evidence")
    c.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    c.add_argument("--cluster", metavar="auto|ADDRESS",
                   help="check every alive node of a Ray cluster (auto: the cluster this machine is in, or "
                   "RAY_ADDRESS), plus node count, GPUs per node, version skew and placement")

    la = sub.add_parser("launch", help="check, then start the runner in the background only if the gate passes")
    la.add_argument("spec", metavar="SPEC")
    la.add_argument("--waive", action="append", default=[], metavar="CHECK_ID=REASON",
                    help="waive a check's failure for this launch, with the reason (recorded)")
    la.add_argument("--level", choices=("node", "active"), default="node",
                    help="the gate's depth: node (default) or active (also measures storage and the "
                         "network, and runs the basic algorithm test algo.smoke)")
    la.add_argument("--fail-on", choices=("fail", "warn"), default="fail")
    la.add_argument("--local", action="store_true", help="train in one process without Ray (debugging)")

    v = sub.add_parser("validate", help="check the spec's schema and consistency; no machine probing")
    v.add_argument("spec", metavar="SPEC")
    v.add_argument("--format", choices=FORMATS, default="text", dest="fmt")

    ve = sub.add_parser("verify", help="is there a fresh, matching, passing attestation for SPEC here?")
    ve.add_argument("spec", metavar="SPEC")
    ve.add_argument("--max-age-hours", type=float, default=None, help="override gate.max_age_hours")

    e = sub.add_parser("explain", help="what a check verifies, its thresholds and its remediation")
    e.add_argument("check_id", metavar="CHECK_ID")

    ls = sub.add_parser("list", help="list the checks")
    ls.add_argument("spec", nargs="?", metavar="SPEC", help="expand per-spec checks (stack.<package>) for SPEC")

    s = sub.add_parser("schema", help="print a JSON Schema")
    s.add_argument("name", nargs="?", default="runspec",
                   choices=("runspec", "report", "event", "checklist", "monitor"))

    from .data.commands import add_data_commands

    add_data_commands(sub)

    from .monitor.command import add_monitor_command

    add_monitor_command(sub)

    t = sub.add_parser("tui", help="the run console: live checks and a gated launch, or a run followed live")
    t.add_argument("spec", nargs="?", metavar="SPEC", help="check this spec live, then launch through the gate")
    t.add_argument("--attach", metavar="RUN_DIR", help="follow a run directory live (quitting never stops the run)")
    t.add_argument("--replay", metavar="RUN_DIR", help="play a finished run's events back")
    t.add_argument("--speed", type=float, default=None, metavar="N",
                   help="with --replay: N times the recorded pace (default 10)")
    t.add_argument("--ascii", action="store_true", help="ASCII characters only, for plain terminals")
    t.add_argument("--level", choices=("static", "node", "active"), default="node")
    t.add_argument("--waive", action="append", default=[], metavar="CHECK_ID=REASON",
                   help="waive a check's failure up front, with the reason (recorded)")
    t.add_argument("--fail-on", choices=("fail", "warn"), default="fail")
    t.add_argument("--cluster", metavar="auto|ADDRESS",
                   help="check every alive node of a Ray cluster, as `preflight check --cluster` does")

    i = sub.add_parser("init", help="write a commented starter spec")
    i.add_argument("--stage", choices=("small", "medium", "large", "custom"), default="small")
    i.add_argument("--name", default="my-rl-run")
    i.add_argument("--output", "-o", metavar="PATH", help="write to PATH instead of stdout")
    i.add_argument("--force", action="store_true", help="overwrite an existing file")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        handler = args.data_handler if args.command == "data" else COMMANDS[args.command]
        return int(handler(args))
    except PreflightError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("preflight: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_USAGE
    except Exception as exc:  # a bug in the tool, not the user's mistake: short, with a way to see more
        if os.environ.get("PREFLIGHT_DEBUG"):
            raise
        print(f"preflight: internal error: {type(exc).__name__}: {exc}\n"
              "    hint: this is a bug in rl-preflight; re-run with PREFLIGHT_DEBUG=1 for the traceback and "
              "report it", file=sys.stderr)
        return EXIT_USAGE


# --- commands -----------------------------------------------------------------------------------


def parse_waivers(items: list[str]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        check_id, sep, reason = item.partition("=")
        if not sep or not check_id.strip() or len(reason.strip()) < MIN_REASON:
            raise UsageError(f"--waive {item!r}: expected CHECK_ID=REASON with a reason of at least {MIN_REASON} characters, "
                             "e.g. --waive network.link_speed='single rack, measured 25 Gbit/s'")
        out.append({"check": check_id.strip(), "reason": reason.strip(), "by": "command line"})
    return out


def load_checked_spec(path: str, waivers: list[dict[str, Any]] | None = None):  # type: ignore[no-untyped-def]
    """Load the spec and refuse references to checks that do not exist (a typo would do nothing)."""
    from .checklist import unknown_references
    from .engine import all_known_ids
    from .spec import load_spec

    spec = load_spec(path)
    known = all_known_ids(spec)
    problems = unknown_references(spec, known)
    for w in waivers or []:
        if not any(fnmatch.fnmatchcase(k, w["check"]) for k in known):
            close = difflib.get_close_matches(w["check"], known, n=1)
            raise UsageError(f"--waive {w['check']}: no such check" + (f"; did you mean '{close[0]}'?" if close else ""))
    if problems:
        raise SpecError(path, problems)
    if waivers:
        spec = load_spec(path, extra_waivers=waivers)
    return spec


def check_cluster_flag(address: str, level: str) -> None:
    """What --cluster needs before anything runs, for `check` and `tui` alike: a level that probes
    machines, and a Ray head answering at the address (ray.init itself retries for minutes)."""
    if level == "static":
        raise UsageError("--cluster checks the nodes: use it with --level node or active, not static")
    from .cluster.ray_runner import check_address  # imports Ray: only in cluster mode

    check_address(address)


def run_report(spec: Any, level: str, fail_on: str, probes: Any = None, show_progress: bool = True,
               only: list[str] | None = None, on_start: Any = None, on_finish: Any = None) -> Report:
    """Run the spec's checks into a report; ``on_start``/``on_finish`` also hear of each check (the TUI)."""
    from .checklist import checklist_for, item_of
    from .engine import Context, plan, run_checks, selected
    from .gate import fingerprint
    from .probes import Probes
    from .progress import Progress

    probes = probes or Probes()
    items = checklist_for(spec)
    defs = [d for d in plan(spec, level) if selected(d.id, only)]
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    ctx = Context(spec=spec, probes=probes, level=level)
    with Progress(len(defs), enabled=None if show_progress else False) as progress:
        def check_started(d: Any) -> None:
            progress.started(d)
            if on_start is not None:
                on_start(d)

        def check_finished(r: Any) -> None:
            progress.finished(r)
            if on_finish is not None:
                on_finish(r)

        results = run_checks(defs, ctx, item_of=lambda cid: item_of(cid, items),
                             on_start=check_started, on_finish=check_finished)
    return Report(
        spec_path=str(spec.path), spec_sha256=spec.sha256, run_name=spec.name, level=level,
        tool_version=__version__, started_at=started.isoformat(timespec="seconds"),
        duration_s=time.perf_counter() - t0, fail_on=fail_on, results=results, checklist=items,
        fingerprint=fingerprint(probes) if level != "static" else {},
        artifacts={"leaks": ctx.peek("data.leaks")},
    )


def export_leaks(report: Report, path: str) -> int:
    """Write every leak found as one JSON object a line; returns how many."""
    found = report.artifacts.get("leaks")
    items = list(found.items) if found is not None else []
    try:
        with open(path, "w", encoding="utf-8") as fh:
            for leak in items:
                fh.write(json.dumps(leak.__dict__, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return len(items)


def _use_color(choice: str) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty()


def emit(report: Report, formats: list[str], outputs: list[str], color: bool, verbose: bool) -> None:
    from .report import RenderOptions, markdown_summary, render

    if len(outputs) > len(formats):
        raise UsageError("more --output than --format options: pair each --output with a --format")
    on_stdout = [f for f in formats[len(outputs):]]
    if len(on_stdout) > 1:
        raise UsageError(f"formats {', '.join(on_stdout)} would all go to stdout; give each but one an --output")
    for fmt, path in zip(formats[: len(outputs)], outputs, strict=True):
        text = render(report, fmt, RenderOptions(color=False, verbose=verbose))
        try:
            Path(path).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    for fmt in on_stdout:
        text = render(report, fmt, RenderOptions(color=color and fmt == "text", verbose=verbose))
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if "github" in formats and summary:
        try:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(markdown_summary(report) + "\n")
        except OSError:
            pass  # the summary is a nicety; the annotations already went out


def cmd_check(args: argparse.Namespace) -> int:
    from .gate import write_attestation

    spec = load_checked_spec(args.spec, parse_waivers(args.waive))
    if args.cluster:
        check_cluster_flag(args.cluster, args.level)
        from .cluster.run import cluster_report  # imports Ray: only in cluster mode

        report = cluster_report(spec, args.level, args.fail_on, args.cluster, only=args.only)
    else:
        report = run_report(spec, args.level, args.fail_on, only=args.only)
    if args.only and not report.results:
        raise UsageError(f"--only {' '.join(args.only)} matches no check at level {args.level} (see `preflight list`)")
    formats = args.formats or ["text"]
    emit(report, formats, args.outputs or [], _use_color(args.color), args.verbose)
    if args.export_leaks:
        count = export_leaks(report, args.export_leaks)
        print(f"{count} leak(s) written to {args.export_leaks}", file=sys.stderr)
    code = exit_code(report)
    if code == EXIT_PASS and args.only:
        print("partial check (--only): no attestation written", file=sys.stderr)
    elif code == EXIT_PASS and args.level != "static" and not args.no_attest:
        path = write_attestation(spec, report)
        print(f"attestation written: {path}", file=sys.stderr)
    elif code == EXIT_PASS and args.level == "static":
        print("static level: no attestation written (the gate needs --level node or active)", file=sys.stderr)
    return code


@dataclass(frozen=True)
class Launched:
    pid: int
    run_dir: Path
    events: Path
    log: Path


def start_runner(spec: Any, report: Report, local: bool = False, command: list[str] | None = None) -> Launched:
    """Attest a passing report, then start `python -m runner SPEC` as its own process: its own
    session, so it outlives this terminal (and the TUI that may have started it). ``command``
    replaces the runner command line (tests start a harmless stand-in)."""
    import subprocess

    from .gate import write_attestation

    write_attestation(spec, report)
    run_dir = spec.run_dir.absolute()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        log = (run_dir / RUNNER_LOG).open("ab")
    except OSError as exc:
        raise UsageError(f"cannot write the run directory {run_dir}: {exc.strerror or exc}") from None
    cmd = command or [sys.executable, "-m", "runner", str(spec.path)] + (["--local"] if local else [])
    with log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return Launched(proc.pid, run_dir, run_dir / EVENTS_FILE, run_dir / RUNNER_LOG)


def cmd_launch(args: argparse.Namespace) -> int:
    """Run the node-level check; only when the gate passes, start the runner (start_runner)."""
    spec = load_checked_spec(args.spec, parse_waivers(args.waive))
    report = run_report(spec, args.level, args.fail_on)
    emit(report, ["text"], [], _use_color("auto"), False)
    if exit_code(report) != EXIT_PASS:
        print("preflight: the gate failed: not launching (fix or waive the failures above)", file=sys.stderr)
        return EXIT_FAIL
    launched = start_runner(spec, report, local=args.local)
    print(f"launched: pid {launched.pid}\n  run dir: {launched.run_dir}\n  events:  {launched.events}\n"
          f"  log:     {launched.log}")
    return EXIT_PASS


def cmd_validate(args: argparse.Namespace) -> int:
    spec = load_checked_spec(args.spec)
    report = run_report(spec, "static", "fail", show_progress=False)
    emit(report, [args.fmt], [], _use_color("auto"), False)
    return exit_code(report)


def cmd_verify(args: argparse.Namespace) -> int:
    from .gate import verify
    from .probes import Probes
    from .spec import load_spec

    verdict = verify(load_spec(args.spec), Probes(), args.max_age_hours)
    print(("ok: " if verdict.ok else "not ok: ") + verdict.reason)
    return EXIT_PASS if verdict.ok else EXIT_FAIL


def cmd_explain(args: argparse.Namespace) -> int:
    from .checklist import item_of, load_checklist
    from .engine import FAMILIES, REGISTRY, load_builtin_checks

    load_builtin_checks()
    cid = args.check_id
    entry: Any = REGISTRY.get(cid)
    shown_id = cid
    if entry is None:
        for fam in FAMILIES.values():
            if fnmatch.fnmatchcase(cid, fam.pattern.split("<")[0] + "*"):
                entry, shown_id = fam, f"{cid} (one of {fam.pattern})"
                break
    if entry is None:
        known = list(REGISTRY) + [f.pattern for f in FAMILIES.values()]
        close = difflib.get_close_matches(cid, known, n=1)
        raise UsageError(f"no check '{cid}'" + (f"; did you mean '{close[0]}'?" if close else "")
                         + " (see `preflight list`)")
    item = item_of(cid, list(load_checklist()))
    print(f"{shown_id}: {entry.title}\n  level: {entry.level}    checklist item: {item}\n")
    print("\n".join(("  " + line).rstrip() for line in entry.explain.splitlines()))
    return EXIT_PASS


def cmd_list(args: argparse.Namespace) -> int:
    from .checklist import item_of, load_checklist
    from .engine import FAMILIES, REGISTRY, load_builtin_checks, plan

    load_builtin_checks()
    items = list(load_checklist())
    if args.spec:
        rows = [(d.id, d.level, d.title) for d in plan(load_checked_spec(args.spec), "active", cluster=True)]
    else:
        rows = [(d.id, d.level, d.title) for d in REGISTRY.values()]
        rows += [(f.pattern, f.level, f.title) for f in FAMILIES.values()]
    for cid, level, title in rows:
        print(f"{cid:<30} {level:<7} {item_of(cid, items):<10} {title}")
    return EXIT_PASS


def cmd_schema(args: argparse.Namespace) -> int:
    from .schemas import load_schema

    try:
        schema = load_schema(args.name)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(schema, indent=2))
    return EXIT_PASS


def cmd_init(args: argparse.Namespace) -> int:
    from .init import starter_spec

    file = args.output or "run.yaml"
    text = starter_spec(args.stage, args.name, file)
    if not args.output:
        sys.stdout.write(text)
        return EXIT_PASS
    path = Path(args.output)
    if path.exists() and not args.force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"wrote {path}; next: preflight validate {path}", file=sys.stderr)
    return EXIT_PASS


def cmd_tui(args: argparse.Namespace) -> int:
    """The Textual console; textual is imported only from here, so `preflight check` never loads it."""
    from .tui.command import run_tui

    return run_tui(args)


def cmd_monitor(args: argparse.Namespace) -> int:
    """The headless monitor; it shares preflight.monitor with the TUI."""
    from .monitor.command import cmd_monitor as run_monitor

    return run_monitor(args)


COMMANDS = {
    "monitor": cmd_monitor,
    "check": cmd_check, "launch": cmd_launch, "validate": cmd_validate, "verify": cmd_verify, "explain": cmd_explain,
    "list": cmd_list, "schema": cmd_schema, "init": cmd_init, "tui": cmd_tui,
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
