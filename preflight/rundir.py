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
- ``SPEC.attestation.json`` (next to the spec): the gate's record of a passing check.
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
import re
from pathlib import Path

EVENTS_FILE = "events.jsonl"
RUNNER_LOG = "runner.log"
SUMMARY_FILE = "summary.json"
SIGNOFFS_FILE = "signoffs.json"
WORKERS_DIR = "workers"
ATTESTATION_SUFFIX = ".attestation.json"
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


def attestation_path(spec_path: Path | str) -> Path:
    """Where the gate records a passing check of the spec at ``spec_path``."""
    path = Path(spec_path)
    return path.with_name(path.name + ATTESTATION_SUFFIX)



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
