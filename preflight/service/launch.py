"""The launch gate, and starting the runner (``python -m runner SPEC``) in a process of its own.

`preflight launch` and the console's launch button both come through ``launch``: a run starts only
from a passing report that probed the machine, and its attestation is written first.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..gate import write_attestation
from ..result import Report
from ..rundir import EVENTS_FILE, RUNNER_LOG
from ..spec import Spec

GATE_CLOSED = "the gate has not passed: fix or waive the failures before launching"


@dataclass(frozen=True)
class Launched:
    """A runner started in the background: its process and where it writes."""

    pid: int
    run_dir: Path
    events: Path
    log: Path


Launcher = Callable[[Spec, Report], Launched]  # starts the runner for a spec and its passing report


def may_launch(report: Report) -> bool:
    """The gate passed and the check probed this machine: a static-level pass never opens it, as
    the spec alone says nothing about the machine the run starts on (and writes no attestation)."""
    return report.passed and report.level != "static"


def start_runner(spec: Spec, report: Report, local: bool = False, command: list[str] | None = None) -> Launched:
    """Attest a passing report, then start `python -m runner SPEC` as its own process: its own
    session, so it outlives this terminal (and the console that may have started it). ``command``
    replaces the runner command line (tests start a harmless stand-in)."""
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


def launch(spec: Spec, report: Report, *, local: bool = False, starter: Launcher | None = None) -> Launched:
    """Start the runner through the gate: refused unless ``may_launch(report)``. ``local``: train in
    one process without Ray; ``starter`` replaces ``start_runner`` (tests start a stand-in)."""
    if not may_launch(report):
        raise UsageError(GATE_CLOSED)
    if starter is not None:
        return starter(spec, report)
    return start_runner(spec, report, local=local)
