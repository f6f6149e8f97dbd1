"""Which log a path is: ``preflight monitor PATH`` and ``preflight tui --attach PATH`` take a run
directory or a log file, tell the kind and say how they told (``--source`` forces it).

- our runner's run directory or its ``events.jsonl`` (lines with a ``type``): ``events``;
- a ``.jsonl`` file of ``{"step": N, "data": {...}}`` lines (verl's file logger): ``verl``;
- ``events.out.tfevents.*`` files (a file, or anywhere under a directory): ``tensorboard``,
  written by TRL, OpenRLHF or verl, told apart by their tags;
- ``trainer_state.json`` (a file, or in a TRL output directory or its checkpoint-N folders):
  ``trl``.

W&B offline runs (``wandb/offline-run-*/run-*.wandb``) are refused with the reason: that format
is read only by wandb's own internal modules (no maintained public reader), so the monitor asks
for TensorBoard or verl's file logger next to W&B instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import PreflightError
from ...rundir import EVENTS_FILE
from .gpu import SAMPLES_FILE, GpuSamples
from .mapping import RecordMapper
from .tensorboard import TFEVENTS_GLOB, TensorBoardSource, find_event_files
from .trainer_state import STATE_FILE, TrainerStateSource, find_state_files
from .verl import VerlFileSource

SOURCES = ("events", "verl", "trl", "openrlhf", "tensorboard")
_FRAMEWORK = {"verl": "verl", "trl": "trl", "openrlhf": "openrlhf"}
WANDB_WHY = ("W&B offline runs (.wandb files) cannot be followed: their format is read only by "
             "wandb's internal modules, with no maintained public reader; log to TensorBoard as "
             "well (report_to=['wandb','tensorboard'], trainer.logger=['wandb','tensorboard'] or "
             "['wandb','file'] in verl, --use_tensorboard in OpenRLHF) and point the monitor there")


@dataclass(frozen=True)
class Detected:
    kind: str  # events | verl | tensorboard | trl (trainer_state.json)
    path: Path  # the file or directory read
    run_dir: Path  # where sign-offs and GPU samples are kept
    framework: str | None  # verl | trl | openrlhf, None while a TensorBoard log does not tell
    how: str  # how the kind was told, for the user

    def describe(self) -> str:
        what = {"events": "preflight runner events", "verl": "verl file logger (JSON Lines)",
                "tensorboard": "TensorBoard event files", "trl": "TRL trainer_state.json"}[self.kind]
        writer = f", written by {self.framework}" if self.framework and self.kind == "tensorboard" else ""
        return f"{what}{writer}: {self.path} ({self.how})"


def detect(path: Path | str, forced: str | None = None) -> Detected:
    """The kind of log at ``path``; a PreflightError that says what to pass when it cannot tell."""
    path = Path(path)
    if forced is not None and forced not in SOURCES:
        raise PreflightError(f"--source {forced}: one of {', '.join(SOURCES)}")
    if not path.exists():
        raise PreflightError(f"{path}: no such run directory or log file; pass the run's directory "
                             f"(run.run_dir), a TRL output_dir, a TensorBoard log dir, or a log file")
    if path.is_dir():
        return _detect_dir(path, forced)
    return _detect_file(path, forced)


def _detect_file(path: Path, forced: str | None) -> Detected:
    name = path.name
    parent = path.parent
    framework = _FRAMEWORK.get(forced or "")
    if name.startswith("events.out.tfevents."):
        _refuse_mismatch(forced, ("tensorboard", "verl", "trl", "openrlhf"), path, "a TensorBoard event file")
        return Detected("tensorboard", path, parent, framework, "a TensorBoard event file")
    if name == STATE_FILE:
        _refuse_mismatch(forced, ("trl",), path, "TRL's trainer_state.json")
        return Detected("trl", path, parent, "trl", "TRL's trainer_state.json")
    if name.endswith(".wandb"):
        raise PreflightError(f"{path}: {WANDB_WHY}")
    if forced == "events" or (forced is None and name == EVENTS_FILE):
        return Detected("events", path, parent, None, "named events.jsonl" if forced is None else "--source events")
    if forced == "verl":
        return Detected("verl", path, parent, "verl", "--source verl")
    if forced in ("trl", "openrlhf", "tensorboard"):
        raise PreflightError(f"{path}: --source {forced} reads TensorBoard event files or TRL's "
                             "trainer_state.json, not this file; pass the log directory")
    first = _first_record(path)
    if first is None:
        raise PreflightError(f"{path}: empty so far, so its kind cannot be told; pass --source verl "
                             "for verl's file logger or --source events for the runner's events")
    if isinstance(first, dict) and isinstance(first.get("type"), str):
        return Detected("events", path, parent, None, "its lines are events with a 'type'")
    if isinstance(first, dict) and isinstance(first.get("step"), int) and isinstance(first.get("data"), dict):
        return Detected("verl", path, parent, "verl", "its lines are verl file-logger records {step, data}")
    raise PreflightError(f"{path}: not a directory, and not a log the monitor knows (its first line "
                         "is neither a runner event with a 'type' nor a verl record "
                         "{\"step\": N, \"data\": {...}}); pass the run directory that holds "
                         f"{EVENTS_FILE}, or --source to say what the file is")


def _detect_dir(path: Path, forced: str | None) -> Detected:
    framework = _FRAMEWORK.get(forced or "")
    if forced == "events" or (forced is None and (path / EVENTS_FILE).exists()):
        return Detected("events", path / EVENTS_FILE, path, None,
                        f"holds {EVENTS_FILE}" if forced is None else "--source events")
    tb = find_event_files(path)
    states = find_state_files(path)
    if forced == "verl" or (forced is None and not tb and not states):
        jsonl = _verl_files(path)
        if len(jsonl) == 1:
            return Detected("verl", jsonl[0], path, "verl", f"the verl file-logger log in {path}")
        if forced == "verl" or len(jsonl) > 1:
            if tb:
                return Detected("tensorboard", path, path, "verl", f"TensorBoard files under {path}")
            found = ", ".join(p.name for p in jsonl[:5])
            raise PreflightError(f"{path}: following verl needs its file logger's .jsonl file "
                                 f"({'several here: ' + found if jsonl else 'none here yet'}); pass the "
                                 "file itself ($VERL_FILE_LOGGER_PATH, or "
                                 "$VERL_FILE_LOGGER_ROOT/<project>/<experiment>.jsonl)")
    if tb and not (forced == "trl" and states):
        return Detected("tensorboard", path, path, framework,
                        f"{len(tb)} {TFEVENTS_GLOB} file(s) under it")
    if states and forced in (None, "trl"):
        return Detected("trl", path, path, "trl", f"TRL's {STATE_FILE} (no TensorBoard files)")
    if forced in ("trl", "openrlhf", "tensorboard"):
        return Detected("tensorboard", path, path, framework,
                        f"--source {forced}: the {TFEVENTS_GLOB} files under it, as they appear")
    if _has_wandb(path):
        raise PreflightError(f"{path}: {WANDB_WHY}")
    # Nothing here yet: the runner's run directory before its first event (as before).
    return Detected("events", path / EVENTS_FILE, path, None, f"no log yet; waiting for {EVENTS_FILE}")


def _refuse_mismatch(forced: str | None, allowed: tuple[str, ...], path: Path, what: str) -> None:
    if forced is not None and forced not in allowed:
        raise PreflightError(f"{path}: --source {forced} does not fit {what}; use "
                             f"--source {' or '.join(allowed)} or leave --source out")


def _first_record(path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            for line in fh:
                if line.strip():
                    try:
                        return json.loads(line)
                    except ValueError:
                        return "not JSON"
                # (a long run of blank lines is read through; a partial first line has no newline
                # and is still parsed, which a half-written line fails: "not JSON")
    except OSError as exc:
        raise PreflightError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from None
    return None


def _verl_files(path: Path) -> list[Path]:
    out = []
    for candidate in sorted(path.glob("*.jsonl")) + sorted(path.glob("*/*.jsonl")):
        first = _first_record(candidate) if candidate.is_file() else None
        if isinstance(first, dict) and isinstance(first.get("step"), int) and isinstance(first.get("data"), dict):
            out.append(candidate)
    return out


def _has_wandb(path: Path) -> bool:
    return any(path.glob("offline-run-*")) or any(path.glob("wandb/offline-run-*")) \
        or any(path.glob("*.wandb"))


def open_source(found: Detected, overrides: dict[str, Any] | None = None, devices: int = 1,
                gpu_samples: bool = False) -> Any:
    """The reader of a detected log (None for the runner's events: RunMonitor's own tailer).
    ``gpu_samples``: fill in utilization from RUN/gpu_samples.jsonl (``--sample-gpus``)."""
    if found.kind == "events":
        return None
    samples = GpuSamples(found.run_dir / SAMPLES_FILE) if gpu_samples else None
    mapper = RecordMapper(found.framework, overrides, devices=devices, gpu_samples=samples)
    if found.kind == "verl":
        return VerlFileSource(found.path, mapper)
    if found.kind == "trl":
        return TrainerStateSource(found.path, mapper)
    return TensorBoardSource(found.path, mapper)
