"""The `preflight` command line: it parses the arguments, calls the service layer (preflight.service)
and renders what comes back. Exit codes: 0 gate passed, 1 gate failed, 2 could not judge."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .completion import SHELLS, completion_script
from .data.commands import add_data_commands
from .errors import PreflightError, UsageError
from .init import starter_spec, write_schema_copy
from .monitor.command import add_monitor_command
from .monitor.command import cmd_monitor as monitor_command
from .report import RenderOptions, markdown_summary, render
from .result import EXIT_INTERRUPTED, EXIT_PASS, EXIT_USAGE, Report, exit_code
from .rundir import FRESH, NEXT_TO_SPEC, RESUME
from .runstate import NEW, RUN_DIR_CHECK
from .schemas import load_schema
from .service.catalog import describe_check, list_checks, rules_markdown, rules_table
from .service.check import (
    Attested,
    attest,
    check,
    export_leaks,
    load_checked_spec,
    verify_attestation,
)
from .service.importing import FRAMEWORKS, import_run, spec_text, write_spec
from .service.launch import framework_command, launch, runner_command
from .service.report import run_report
from .service.waivers import parse_waivers

FORMATS = ("text", "json", "junit", "github", "markdown")
LEVELS = ("static", "node", "active")
FAIL_ON = ("fail", "warn")
SCHEMAS = ("runspec", "report", "event", "checklist", "monitor")
STAGES = ("small", "medium", "large", "custom")


# --- arguments ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="preflight",
        description="Preflight checks for LLM RL training runs (GRPO, DAPO, ScaleRL on Ray + FSDP).",
        epilog="Exit codes: 0 gate passed (warnings allowed), 1 gate failed, 2 could not judge.",
    )
    p.add_argument("--version", action="version", version=f"rl-preflight {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _check_arguments(sub.add_parser("check", help="check this machine and the spec; gate the launch"))
    _launch_arguments(sub.add_parser(
        "launch", help="check, then start the runner in the background only if the gate passes"))
    v = sub.add_parser("validate", help="check specs' schema and consistency; no machine probing")
    v.add_argument("specs", metavar="SPEC", nargs="+", help="one or more run specs; each is reported")
    v.add_argument("--format", choices=FORMATS, default="text", dest="fmt",
                   help="with several specs, json prints a list of reports and junit is refused")
    ve = sub.add_parser("verify", help="is there a fresh, matching, passing attestation for SPEC here?")
    ve.add_argument("spec", metavar="SPEC")
    ve.add_argument("--max-age-hours", type=float, default=None, help="override gate.max_age_hours")
    _attestation_argument(ve, "read the attestation at PATH")
    e = sub.add_parser("explain", help="what a check verifies, its thresholds and its remediation")
    e.add_argument("check_id", metavar="CHECK_ID")
    ls = sub.add_parser("list", help="list the checks, or the rules between fields they enforce")
    ls.add_argument("spec", nargs="?", metavar="SPEC", help="expand per-spec checks (stack.<package>) for SPEC")
    ls.add_argument("--rules", action="store_true",
                    help="the table of rules: field, what it is related to, check id, severity")
    ls.add_argument("--format", choices=("text", "markdown"), default="text", dest="fmt",
                    help="with --rules: markdown prints docs/rules.md")
    s = sub.add_parser("schema", help="print a JSON Schema")
    s.add_argument("name", nargs="?", default="runspec", choices=SCHEMAS)
    add_data_commands(sub)
    add_monitor_command(sub)
    _tui_arguments(sub.add_parser(
        "tui", help="the run console: live checks and a gated launch, or a run followed live"))
    _init_arguments(sub.add_parser("init", help="write a commented starter spec"))
    _import_arguments(sub.add_parser(
        "import", help="write a run spec from a verl, TRL or OpenRLHF configuration (gate the framework's launch)"))
    comp = sub.add_parser("completion", help="print a shell completion script (bash, zsh or fish)",
                          description="bash: source <(preflight completion bash); zsh: source <(preflight "
                                      "completion zsh) after compinit; fish: preflight completion fish | source")
    comp.add_argument("shell", choices=SHELLS)
    return p


def _import_arguments(im: argparse.ArgumentParser) -> None:
    im.add_argument("framework", choices=FRAMEWORKS, metavar="FRAMEWORK", help=f"one of {', '.join(FRAMEWORKS)}")
    im.add_argument("source", metavar="SOURCE",
                    help="the framework's launch script or configuration file (docs/frameworks.md)")
    im.add_argument("--output", "-o", metavar="SPEC", help="write the spec to SPEC instead of stdout (an earlier "
                    "import there is replaced)")
    im.add_argument("--force", action="store_true", help="overwrite SPEC even if `preflight import` did not write it")
    im.add_argument("--version", dest="framework_version", metavar="V",
                    help="resolve against this framework version's built-in defaults (default: the installed "
                         "framework, else the newest built-in table)")


def _waive_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--waive", action="append", default=[], metavar="CHECK_ID=REASON",
                   help=f"waive a check's failure {what}, with the reason (recorded)")


def _attestation_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--attestation", metavar="PATH",
                   help=f"{what} (default: $PREFLIGHT_ATTESTATION_DIR, else SPEC.attestation.json next to "
                        "the spec, else the state directory when the spec's folder is read-only)")


def _run_dir_choice_arguments(p: argparse.ArgumentParser, when: str) -> None:
    """--resume / --fresh: what to do with a run dir that already holds a run (storage.run_dir)."""
    choice = p.add_mutually_exclusive_group()
    choice.add_argument("--resume", dest="run_dir_choice", action="store_const", const=RESUME,
                        help="the run dir holds a run: continue it from its newest checkpoint (refused when "
                             f"nothing is left to train){when}")
    choice.add_argument("--fresh", dest="run_dir_choice", action="store_const", const=FRESH,
                        help="the run dir holds a run: move it (and a checkpoint dir outside it) aside to "
                             f"RUN_DIR.prev-YYYYmmdd-HHMMSS at launch and start at step 0; nothing is deleted{when}")


def _check_arguments(c: argparse.ArgumentParser) -> None:
    c.add_argument("spec", metavar="SPEC")
    _run_dir_choice_arguments(c, " (checked and recorded in the attestation; the launch acts on it)")
    c.add_argument("--level", choices=LEVELS, default="node",
                   help="static: the spec only; node: also probe this machine (default); active: also measure")
    c.add_argument("--format", action="append", choices=FORMATS, dest="formats", metavar="FORMAT",
                   help=f"output format, one of {', '.join(FORMATS)}; repeat with --output for several")
    c.add_argument("--output", action="append", dest="outputs", metavar="PATH",
                   help="write the n-th --format to this file (default: stdout)")
    _waive_argument(c, "for this run")
    c.add_argument("--fail-on", choices=FAIL_ON, default="fail", help="warn: warnings block the gate too")
    c.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="run only checks whose id matches (fnmatch, repeatable: --only 'data.*'); "
                   "no attestation is written for a partial check")
    c.add_argument("--no-attest", action="store_true", help="do not write the attestation file")
    _attestation_argument(c, "write the gate's attestation to PATH")
    c.add_argument("--export-leaks", metavar="FILE",
                   help="write every leak the data checks found (exact, near-duplicate, n-gram) as JSON Lines")
    c.add_argument("--verbose", "-v", action="store_true", help="show every check's evidence")
    c.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    c.add_argument("--cluster", metavar="auto|ADDRESS",
                   help="check every alive node of a Ray cluster (auto: the cluster this machine is in, or "
                   "RAY_ADDRESS), plus node count, GPUs per node, version skew and placement")


def _launch_arguments(la: argparse.ArgumentParser) -> None:
    la.add_argument("spec", metavar="SPEC")
    _run_dir_choice_arguments(la, "")
    _waive_argument(la, "for this launch")
    la.add_argument("--level", choices=("node", "active"), default="node",
                    help="the gate's depth: node (default) or active (also measures storage and the "
                         "network, and runs the basic algorithm test algo.smoke)")
    la.add_argument("--fail-on", choices=FAIL_ON, default="fail")
    la.add_argument("--local", action="store_true", help="train in one process without Ray (debugging)")
    la.add_argument("--dry-run", action="store_true",
                    help="run the gate and print the command a pass would start, without starting it")
    _attestation_argument(la, "write the gate's attestation to PATH (the runner is told where)")


def _tui_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("spec", nargs="?", metavar="SPEC", help="check this spec live, then launch through the gate")
    t.add_argument("--attach", metavar="PATH", help="follow a run directory live (quitting never stops the "
                   "run), or another trainer's log: a TRL output_dir, a TensorBoard log dir, verl's .jsonl")
    t.add_argument("--source", choices=("events", "verl", "trl", "openrlhf", "tensorboard"),
                   help="with --attach: what PATH holds (default: detected and stated)")
    t.add_argument("--replay", metavar="RUN_DIR", help="play a finished run's events back")
    t.add_argument("--speed", type=float, default=None, metavar="N",
                   help="with --replay: N times the recorded pace (default 10)")
    t.add_argument("--ascii", action="store_true", help="ASCII characters only, for plain terminals")
    t.add_argument("--level", choices=LEVELS, default="node")
    _waive_argument(t, "up front")
    t.add_argument("--fail-on", choices=FAIL_ON, default="fail")
    t.add_argument("--cluster", metavar="auto|ADDRESS",
                   help="check every alive node of a Ray cluster, as `preflight check --cluster` does")


def _init_arguments(i: argparse.ArgumentParser) -> None:
    i.add_argument("--stage", choices=STAGES, default="small")
    i.add_argument("--name", default="my-rl-run")
    i.add_argument("--output", "-o", metavar="PATH", help="write to PATH instead of stdout")
    i.add_argument("--force", action="store_true", help="overwrite an existing file")


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
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_USAGE
    except Exception as exc:  # a bug in the tool, not the user's mistake: short, with a way to see more
        if os.environ.get("PREFLIGHT_DEBUG"):
            raise
        print(f"preflight: internal error: {type(exc).__name__}: {exc}\n"
              "    hint: this is a bug in rl-preflight; re-run with PREFLIGHT_DEBUG=1 for the traceback and "
              "report it", file=sys.stderr)
        return EXIT_USAGE


# --- rendering ----------------------------------------------------------------------------------


def _use_color(choice: str) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty()


def _write(path: str | Path, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def emit(report: Report, formats: list[str], outputs: list[str], color: bool, verbose: bool) -> None:
    """Render the report in each format: the n-th --format to the n-th --output, the rest (one at
    most) to stdout; with the github format, the job summary too when GitHub asks for one."""
    if len(outputs) > len(formats):
        raise UsageError("more --output than --format options: pair each --output with a --format")
    on_stdout = formats[len(outputs):]
    if len(on_stdout) > 1:
        raise UsageError(f"formats {', '.join(on_stdout)} would all go to stdout; give each but one an --output")
    for fmt, path in zip(formats[: len(outputs)], outputs, strict=True):
        text = render(report, fmt, RenderOptions(color=False, verbose=verbose))
        _write(path, text if text.endswith("\n") else text + "\n")
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


# --- commands -----------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    spec = load_checked_spec(args.spec, parse_waivers(args.waive), args.run_dir_choice)
    report = check(spec, args.level, args.fail_on, cluster=args.cluster, only=args.only)
    # the record first: a pass the launch cannot find must never be shown as PASSED
    attested = attest(spec, report, partial=bool(args.only), skip=args.no_attest, path=args.attestation)
    emit(report, args.formats or ["text"], args.outputs or [], _use_color(args.color), args.verbose)
    if args.export_leaks:
        count = export_leaks(report, args.export_leaks)
        print(f"{count} leak(s) written to {args.export_leaks}", file=sys.stderr)
    _say_attested(attested)
    return exit_code(report)


def _say_attested(attested: Attested) -> None:
    if attested.path is not None:
        why = "" if attested.why == NEXT_TO_SPEC else f" ({attested.why})"
        print(f"attestation written: {attested.path}{why}", file=sys.stderr)
    elif attested.note:
        print(attested.note, file=sys.stderr)


def cmd_launch(args: argparse.Namespace) -> int:
    """Run the check at the gate's level; only when the gate passes, start the runner."""
    spec = load_checked_spec(args.spec, parse_waivers(args.waive), args.run_dir_choice)
    report = run_report(spec, args.level, args.fail_on)
    attested = attest(spec, report, path=args.attestation)  # before the verdict is shown (see cmd_check)
    emit(report, ["text"], [], _use_color("auto"), False)
    if args.dry_run:
        shown = (framework_command(spec).shown() if spec.framework
                 else " ".join(runner_command(spec, args.local)))
        print(f"{'would launch' if report.passed else 'would not launch (the gate failed)'}: {shown}")
        return exit_code(report)
    if not report.passed:
        print("preflight: the gate failed: not launching (fix or waive the failures above)", file=sys.stderr)
        return exit_code(report)
    _say_attested(attested)
    launched = launch(spec, report, local=args.local, attestation=attested.path)
    for before, after in launched.moved_aside:
        print(f"--fresh: moved {before} aside to {after} (nothing was deleted)")
    if spec.framework:
        print(f"launched {spec.framework}: pid {launched.pid}\n  command: {framework_command(spec).shown()}\n"
              f"  log:     {launched.log}")
        return exit_code(report)
    print(f"launched: pid {launched.pid}\n  run dir: {launched.run_dir}\n  events:  {launched.events}\n"
          f"  log:     {launched.log}")
    held = next((r for r in report.results if r.id == RUN_DIR_CHECK and r.evidence.get("state") != NEW), None)
    if held is not None:  # a resume (or a fresh start over a run) is worth a line of its own
        print(f"  state:   {held.found}")
    return exit_code(report)


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate each spec (a pre-commit hook passes many): every file gets its report or its error;
    the exit code is the worst of them (2 could not judge, 1 failed, 0 passed)."""
    if len(args.specs) > 1 and args.fmt == "junit":
        raise UsageError("--format junit reports one spec; validate the specs one at a time, or use text or json")
    codes, reports = [], []
    for path in args.specs:
        try:
            spec = load_checked_spec(path)
        except PreflightError as exc:
            print(f"preflight: {exc}", file=sys.stderr)
            codes.append(EXIT_USAGE)
            continue
        report = run_report(spec, "static", "fail", show_progress=False)
        codes.append(exit_code(report))
        if args.fmt == "json" and len(args.specs) > 1:
            reports.append(json.loads(render(report, "json", RenderOptions(color=False, verbose=False))))
            continue
        if len(args.specs) > 1 and args.fmt == "text":
            print(f"== {path}")
        emit(report, [args.fmt], [], _use_color("auto"), False)
    if reports:
        print(json.dumps(reports, indent=2))
    return max(codes)


def cmd_verify(args: argparse.Namespace) -> int:
    verdict = verify_attestation(args.spec, args.max_age_hours, args.attestation)
    print(("ok: " if verdict.ok else "not ok: ") + verdict.reason)
    return exit_code(verdict.ok)


def cmd_explain(args: argparse.Namespace) -> int:
    info = describe_check(args.check_id)
    print(f"{info.id}: {info.title}\n  level: {info.level}    checklist item: {info.item}\n")
    print("\n".join(("  " + line).rstrip() for line in info.explain.splitlines()))
    return EXIT_PASS


def cmd_list(args: argparse.Namespace) -> int:
    if args.rules:
        if args.spec:
            raise UsageError("--rules lists every rule; it takes no SPEC")
        sys.stdout.write(rules_markdown() if args.fmt == "markdown" else _rules_text())
        return EXIT_PASS
    for info in list_checks(args.spec):
        print(f"{info.id:<30} {info.level:<7} {info.item:<10} {info.title}")
    return EXIT_PASS


def _rules_text() -> str:
    rows = [(r.field, ", ".join(r.related) or "-", r.check, r.severity) for r in rules_table()]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(RULE_COLUMNS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(RULE_COLUMNS, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines) + f"\n{len(rows)} rules; `preflight explain CHECK_ID` for thresholds\n"


RULE_COLUMNS = ("field", "related to", "check", "severity")


def cmd_schema(args: argparse.Namespace) -> int:
    try:
        schema = load_schema(args.name)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(schema, indent=2))
    return EXIT_PASS


def cmd_init(args: argparse.Namespace) -> int:
    """The starter spec; with --output, the run-spec schema goes next to it and the spec's first
    line points editors at that copy (on stdout: at the installed package's schema file)."""
    if not args.output:
        sys.stdout.write(starter_spec(args.stage, args.name, "run.yaml"))
        return EXIT_PASS
    path = Path(args.output)
    if path.exists() and not args.force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    schema = write_schema_copy(path, force=args.force)
    _write(path, starter_spec(args.stage, args.name, args.output, schema_ref=f"./{schema.name}"))
    print(f"wrote {path} (and {schema} for editors); next: preflight validate {path}", file=sys.stderr)
    return EXIT_PASS


def cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(completion_script(args.shell, build_parser()))
    return EXIT_PASS


def cmd_import(args: argparse.Namespace) -> int:
    """Import a framework's configuration; the notes go to stderr and into the spec as comments."""
    imported = import_run(args.framework, args.source, args.framework_version)
    text = spec_text(imported, args.framework, args.source)
    written = write_spec(text, args.output, force=args.force)
    if written is None:
        sys.stdout.write(text)
        return EXIT_PASS
    for note in imported.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {written}; next: preflight check {written}", file=sys.stderr)
    return EXIT_PASS


def check_tui_arguments(args: argparse.Namespace) -> None:
    """`preflight tui` takes one target, and the check options only with a SPEC."""
    targets = [name for name, value in (("SPEC", args.spec), ("--attach", args.attach),
                                         ("--replay", args.replay)) if value]
    if len(targets) != 1:
        raise UsageError("preflight tui needs exactly one of SPEC, --attach RUN_DIR or --replay RUN_DIR"
                         + (f" (got {' and '.join(targets)})" if targets else "")
                         + "; e.g. `preflight tui run.yaml` or `preflight tui --attach runs/my-run`")
    if args.speed is not None and not args.replay:
        raise UsageError("--speed only applies to --replay RUN_DIR")
    if getattr(args, "source", None) and not args.attach:
        raise UsageError("--source only applies to --attach PATH")
    if args.speed is not None and not args.speed > 0:
        raise UsageError(f"--speed {args.speed:g}: the replay speed must be above 0 (e.g. --speed 10)")
    if (args.attach or args.replay) and (args.waive or args.level != "node" or args.fail_on != "fail"
                                         or args.cluster):
        raise UsageError("--waive, --level, --fail-on and --cluster apply to the checks of a SPEC, "
                         "not to --attach/--replay")


def cmd_tui(args: argparse.Namespace) -> int:
    """The Textual console (textual is imported only from here, so `preflight check` never loads it)."""
    check_tui_arguments(args)
    try:
        from .tui.command import run_tui  # imports textual: only `preflight tui` pays for it
    except ImportError as exc:
        raise UsageError(f"the console needs the textual package ({exc}); "
                         "install it with `pip install 'textual>=8'`") from None
    return run_tui(args)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "check": cmd_check, "launch": cmd_launch, "validate": cmd_validate, "verify": cmd_verify,
    "explain": cmd_explain, "list": cmd_list, "schema": cmd_schema, "init": cmd_init,
    "tui": cmd_tui, "import": cmd_import, "completion": cmd_completion,
    "monitor": monitor_command,  # the headless monitor; it shares preflight.monitor with the console
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
