"""The run directory's contract: its file names, the event types, the shortest accepted reason.

The runner writes a run directory; the monitor, the console, the gate and the runner's own resume
logic read it. Every name they share is defined here once, so a rename cannot leave a reader behind (the one reader of events.jsonl is
``preflight.monitor.tailer``: ``EventTailer`` follows it live, ``read_events`` reads it once):

- ``RUN_DIR/events.jsonl``: one JSON event a line (``EVENT_TYPES``; ``preflight schema event``).
- ``RUN_DIR/runner.log``: the runner's stdout and stderr when ``preflight launch`` started it.
- ``RUN_DIR/summary.json``: the runner's summary of a finished run (rank 0).
- ``RUN_DIR/signoffs.json``: manual checklist sign-offs and alert acknowledgements.
- ``RUN_DIR/workers/rankN.pid``: which process is which rank right now.
- ``RUN_DIR/spec.json``: the resolved spec the runner last started with (``SPEC_SNAPSHOT``), so a
  later launch can say which fields changed since (``preflight.runstate``).
- ``SPEC.attestation.json`` (next to the spec): the gate's record of a passing check; a flag, an
  environment variable or a read-only spec folder put it elsewhere (``attestation_place``).
- ``CHECKPOINT_DIR/step_N/manifest.json``: a committed checkpoint (``runner.checkpoint`` writes the
  layout; the gate reads the manifest as JSON, without torch).
- ``RUN_DIR.prev-YYYYmmdd-HHMMSS``: a run dir that ``--fresh`` moved aside (nothing is deleted).

What a launch does with a run dir that already holds a run is the user's choice, ``RESUME`` or
``FRESH`` (``--resume`` / ``--fresh``); ``preflight.runstate`` reads the state and judges it.

``MIN_REASON`` is the shortest reason accepted wherever a person overrides the tool: a waiver
(``--waive``, the console's ``w``), a forced runner start (``--force --reason``) and a sign-off note.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

EVENTS_FILE = "events.jsonl"
RUNNER_LOG = "runner.log"
SUMMARY_FILE = "summary.json"
SIGNOFFS_FILE = "signoffs.json"
WORKERS_DIR = "workers"
ATTESTATION_SUFFIX = ".attestation.json"
ATTESTATION_ENV = "PREFLIGHT_ATTESTATION"  # a file; `launch` sets it for the runner it starts
ATTESTATION_DIR_ENV = "PREFLIGHT_ATTESTATION_DIR"  # a folder for every spec's attestation
NEXT_TO_SPEC = "next to the spec"
SPEC_SNAPSHOT = "spec.json"

# The checkpoint folder's layout: runner/checkpoint.py writes it, the run-dir state check reads it.
CHECKPOINT_MANIFEST = "manifest.json"
CHECKPOINT_FORMAT = "rl-preflight-checkpoint/1"
CHECKPOINT_STEP_DIR = re.compile(r"^step_(\d+)$")

# What a launch may do with a run dir that holds a run: continue it, or move it aside and start anew.
RESUME = "resume"
FRESH = "fresh"
RUN_DIR_CHOICES = (RESUME, FRESH)
ASIDE_INFIX = ".prev-"

EVENT_TYPES = (
    "run_start", "phase", "step", "validation", "checkpoint", "alert", "action", "recovery",
    "batch_size", "run_end", "error",
)

# A reason shorter than this says nothing ("ok", "test"): waivers, forced starts and sign-offs ask
# for at least this many characters.
MIN_REASON = 8


def events_path(run_dir: Path | str) -> Path:
    return Path(run_dir) / EVENTS_FILE


@dataclass(frozen=True)
class AttestationPlace:
    """Where the attestation of a spec goes, and why there (said in `check`'s output)."""

    path: Path
    why: str


def attestation_place(spec_path: Path | str, given: Path | str | None = None,
                      env: Mapping[str, str] | None = None) -> AttestationPlace:
    """Where the gate records a passing check of the spec at ``spec_path``; `check` writes there,
    and `launch`, `verify`, the runner and the console read there, so all of them ask this.

    In order: ``given`` (--attestation PATH); $PREFLIGHT_ATTESTATION (a file: what `launch` hands
    the runner it starts); $PREFLIGHT_ATTESTATION_DIR/NAME; next to the spec
    (``SPEC.attestation.json``) when the spec's folder is writable; else the state directory
    ($XDG_STATE_HOME, or ~/.local/state, /rl-preflight/attestations/NAME), for a spec on a
    read-only mount (a Kubernetes ConfigMap, a read-only checkout). NAME is the spec's file name
    and a hash of its absolute path, so two specs never share one."""
    env = os.environ if env is None else env
    spec = Path(spec_path)
    if given:
        return AttestationPlace(Path(given), "--attestation")
    if env.get(ATTESTATION_ENV):
        return AttestationPlace(Path(env[ATTESTATION_ENV]), f"${ATTESTATION_ENV}")
    if env.get(ATTESTATION_DIR_ENV):
        return AttestationPlace(Path(env[ATTESTATION_DIR_ENV]) / _attestation_name(spec), f"${ATTESTATION_DIR_ENV}")
    folder = spec.absolute().parent
    if os.access(folder, os.W_OK | os.X_OK):
        return AttestationPlace(spec.with_name(spec.name + ATTESTATION_SUFFIX), NEXT_TO_SPEC)
    state = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return AttestationPlace(state / "rl-preflight" / "attestations" / _attestation_name(spec),
                            f"the spec's folder {folder} is not writable, so the state directory; "
                            f"--attestation PATH or ${ATTESTATION_DIR_ENV}=DIR chooses another place")


def attestation_path(spec_path: Path | str, given: Path | str | None = None) -> Path:
    """Where the gate records a passing check of the spec at ``spec_path`` (``attestation_place``)."""
    return attestation_place(spec_path, given).path


def _attestation_name(spec: Path) -> str:
    digest = hashlib.sha256(str(spec.absolute()).encode()).hexdigest()[:16]
    return f"{spec.name}.{digest}{ATTESTATION_SUFFIX}"



def aside_path(path: Path | str, when: dt.datetime) -> Path:
    """Where ``--fresh`` moves ``path``: a sibling named for the time it was moved aside
    (``runs/x.prev-20250102-101500``), with ``-2``, ``-3``... when that name is taken."""
    path = Path(path)
    base = f"{path.name}{ASIDE_INFIX}{when:%Y%m%d-%H%M%S}"
    target, n = path.with_name(base), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{base}-{n}")
    return target
