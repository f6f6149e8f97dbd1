"""The launch gate, and starting the runner (``python -m runner SPEC``) in a process of its own.

`preflight launch` and the console's launch button both come through ``launch``: a run starts only
from a passing report that probed the machine, and its attestation is written first. The run dir is
judged again just before the start (the console's check may be minutes old): a start the user's
choice does not cover is refused, and ``--fresh`` moves the old run aside then (preflight.runstate).
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..entrypoint import module_command
from ..errors import UsageError
from ..gate import write_attestation
from ..result import Report
from ..rundir import ATTESTATION_ENV, EVENTS_FILE, FRESH, RESUME, RUNNER_LOG, attestation_path
from ..runstate import judge, move_aside, read_state
from ..spec import Spec

GATE_CLOSED = "the gate has not passed: fix or waive the failures before launching"


@dataclass(frozen=True)
class Launched:
    """A runner started in the background: its process and where it writes."""

    pid: int
    run_dir: Path
    events: Path
    log: Path
    moved_aside: tuple[tuple[Path, Path], ...] = ()  # what --fresh moved before the start: (from, to)


Launcher = Callable[[Spec, Report], Launched]  # starts the runner for a spec and its passing report


def may_launch(report: Report) -> bool:
    """The gate passed and the check probed this machine: a static-level pass never opens it, as
    the spec alone says nothing about the machine the run starts on (and writes no attestation)."""
    return report.passed and report.level != "static"


def runner_command(spec: Spec, local: bool = False) -> list[str]:
    """`python -m runner SPEC`, with --local, and --resume when that was the choice (the runner
    judges the run dir again and refuses a resume nobody chose; --fresh has been done by then).
    Started so that a `runner/` package in the working directory cannot stand in for ours
    (preflight.entrypoint)."""
    return module_command("runner", str(spec.path), *(["--local"] if local else []),
                          *(["--resume"] if spec.run_dir_choice == RESUME else []))


def start_runner(spec: Spec, report: Report, local: bool = False, command: list[str] | None = None,
                 attestation: Path | None = None) -> Launched:
    """Attest a passing report, then start `python -m runner SPEC` as its own process: its own
    session, so it outlives this terminal (and the console that may have started it). ``command``
    replaces the runner command line (tests start a harmless stand-in). ``attestation``: where the
    attestation goes (--attestation; else ``attestation_path``); the runner is told the file
    ($PREFLIGHT_ATTESTATION), so it reads exactly what was written."""
    attested = write_attestation(spec, report, attestation_path(spec.path, attestation))
    run_dir = spec.run_dir.absolute()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        log = (run_dir / RUNNER_LOG).open("ab")
    except OSError as exc:
        raise UsageError(f"cannot write the run directory {run_dir}: {exc.strerror or exc}") from None
    cmd = command or runner_command(spec, local)
    with log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, ATTESTATION_ENV: str(attested.absolute())})
    return Launched(proc.pid, run_dir, run_dir / EVENTS_FILE, run_dir / RUNNER_LOG)


def prepare_run_dir(spec: Spec) -> list[tuple[Path, Path]]:
    """Judge the run dir as it is now, with the spec's choice: refuse a start the choice does not
    cover (UsageError with what is there and the ways on); with --fresh, move the old run aside.
    Returns what was moved, (from, to)."""
    state = read_state(spec)
    verdict = judge(state, spec, spec.run_dir_choice)
    if not verdict.ok:
        raise UsageError(f"not launching: {verdict.message}")
    if spec.run_dir_choice == FRESH and state.holds_run:
        return move_aside(spec)
    return []


# --- a run a framework launches (trainer: in the spec) ---------------------------------------------


@dataclass(frozen=True)
class FrameworkCommand:
    """What `preflight launch` runs for a spec with a trainer section, and where."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]  # added to this process's environment

    def shown(self) -> str:
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env.items())
        return (f"cd {shlex.quote(str(self.cwd))} && " + (prefix + " " if prefix else "")
                + " ".join(shlex.quote(a) for a in self.argv))


def framework_command(spec: Spec) -> FrameworkCommand:
    """trainer.command in trainer.workdir (default: the spec's folder) with trainer.env added; a
    UsageError when the spec names no command (an import from a config file alone)."""
    trainer = spec.get("trainer") or {}
    argv = [str(a) for a in trainer.get("command") or []]
    if not argv:
        raise UsageError(f"{spec.path}: trainer.command is not set, so there is nothing to launch: add the "
                         f"{spec.framework} launch command as a list (e.g. from its launch script) to trainer.command")
    base = spec.path.resolve().parent
    cwd = base / str(trainer["workdir"]) if trainer.get("workdir") else base
    env = {str(k): str(v) for k, v in (trainer.get("env") or {}).items()}
    return FrameworkCommand(argv, cwd, env)


def framework_log(spec: Spec) -> Path:
    return spec.run_dir.absolute() / f"{spec.framework}.log"


def start_framework(spec: Spec, report: Report, attestation: Path | None = None) -> Launched:
    """Attest a passing report, then run the framework's own command in its own session, its output
    in RUN_DIR/<framework>.log. The framework writes no events.jsonl: ``events`` is where it would be."""
    command = framework_command(spec)
    if not command.cwd.is_dir():
        raise UsageError(f"trainer.workdir {command.cwd} is not a directory: set it to where the launch command runs")
    write_attestation(spec, report, attestation_path(spec.path, attestation))
    log_path = framework_log(spec)
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = log_path.open("ab")
    except OSError as exc:
        raise UsageError(f"cannot write the log {log_path}: {exc.strerror or exc}") from None
    with log:
        try:
            proc = subprocess.Popen(command.argv, cwd=command.cwd, env={**os.environ, **command.env},
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        except OSError as exc:
            raise UsageError(f"cannot start {command.argv[0]}: {exc.strerror or exc} (trainer.command)") from None
    return Launched(proc.pid, log_path.parent, log_path.parent / EVENTS_FILE, log_path)


def launch(spec: Spec, report: Report, *, local: bool = False, starter: Launcher | None = None,
           attestation: Path | None = None) -> Launched:
    """Start the runner through the gate: refused unless ``may_launch(report)`` and the run dir
    allows it (``prepare_run_dir``). ``local``: train in one process without Ray; ``starter``
    replaces ``start_runner`` (tests start a stand-in); ``attestation``: --attestation PATH. A spec
    with a trainer section starts the framework's own command instead (``start_framework``),
    through the same gate."""
    if not may_launch(report):
        raise UsageError(GATE_CLOSED)
    if spec.framework is not None:
        framework_command(spec)  # refuse before anything is written when there is nothing to run
        return starter(spec, report) if starter is not None else start_framework(spec, report, attestation)
    moved = prepare_run_dir(spec)
    launched = (starter(spec, report) if starter is not None
                else start_runner(spec, report, local=local, attestation=attestation))
    return dataclasses.replace(launched, moved_aside=tuple(moved)) if moved else launched
