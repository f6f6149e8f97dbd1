"""What a run directory holds, and what a launch may do with it: one judgement for `preflight
check` (the storage.run_dir check), `preflight launch`, the console and the runner itself, so none
of them "resumes" a finished run into a success that trained nothing (as verl PR #5725 did).

- ``read_state(spec)``: RUN_DIR/events.jsonl (through ``preflight.monitor.tailer``, the one reader
  of events) and the committed checkpoints of storage.checkpoint_dir (their manifests, read as JSON
  without torch) into a ``RunDirState``: new, interrupted, finished, checkpoints no event records,
  or unreadable; and whose run it is (this spec, or another one).
- ``judge(state, spec, choice)``: the ``Verdict`` on starting with a choice (None, ``RESUME``,
  ``FRESH``): pass, warn, fail, or error when the state cannot be read.
- ``move_aside(spec)``: what ``--fresh`` does just before the runner starts: the run dir (and a
  checkpoint dir outside it) renamed to ``NAME.prev-YYYYmmdd-HHMMSS``. Nothing is deleted.
- ``record_spec(spec)``: the runner's note of the resolved spec it starts with (RUN_DIR/spec.json),
  so a later launch can name the fields that changed since.

The default without a choice: an interrupted run of the same spec resumes, because that is what
distributed.checkpoint_recovery (on by default) asks the runner to do after a failure, and a crash
followed by the same launch command must continue the run. A finished run, another spec's run and
checkpoints that no event records need an explicit choice. A spec whose only edit is its waivers is
the same spec: waivers change what the gate lets through, not what the run trains.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint_manifest import ManifestProblem, check_listed_files, read_checkpoint_manifest
from .errors import UsageError
from .monitor.tailer import EventTailer
from .result import Status
from .rundir import (
    ASIDE_INFIX,
    CHECKPOINT_MANIFEST,
    CHECKPOINT_STEP_DIR,
    FRESH,
    RESUME,
    SPEC_SNAPSHOT,
    aside_path,
    events_path,
)
from .spec import Spec

RUN_DIR_CHECK = "storage.run_dir"  # the check that judges the run dir (preflight.checks.run_dir)
NEW = "new"  # nothing of a run: no events of a start, no checkpoint
INTERRUPTED = "interrupted"  # started; no run_end since, or one with status failed
FINISHED = "finished"  # the last start ended with status completed or stopped
UNRECORDED = "unrecorded"  # checkpoints, but no event says which run wrote them
UNREADABLE = "unreadable"  # the events file or the checkpoint dir cannot be read: never a pass
FINISHED_STATUSES = ("completed", "stopped")
CHANGES_SHOWN = 4  # changed fields named in a message; the rest are counted


# --- what events.jsonl says -------------------------------------------------------------------


@dataclass
class History:
    """The runs events.jsonl records: the last start, how it ended, where it got to."""

    events: int = 0
    starts: int = 0  # run_start events: one per start of the runner (and per rollback attempt)
    start: dict[str, Any] | None = None  # the last run_start
    end: dict[str, Any] | None = None  # the run_end after it, if any
    step: int = 0  # the step of the latest event that has one
    time: float | None = None  # the latest event's time (unix seconds)
    failed_starts: int = 0  # run_end/error events before any run_start: a start that failed early
    unexplained: int = 0  # other events before any run_start: not a file this runner wrote
    damaged: int = 0  # lines that are not events (a killed writer leaves half a line)
    damage_samples: list[tuple[int, str]] = field(default_factory=list)
    bytes: int = 0

    def add(self, event: dict[str, Any]) -> None:
        self.events += 1
        kind = event["type"]
        step, when = event.get("step"), event.get("time")
        if isinstance(step, int) and not isinstance(step, bool):
            self.step = step
        if isinstance(when, (int, float)) and not isinstance(when, bool):
            self.time = float(when)
        if kind == "run_start":
            self.starts += 1
            self.start, self.end = event, None
        elif self.starts == 0:
            if kind == "run_end":  # runner.launch.record_failure: an error, then run_end failed
                self.failed_starts += 1
            elif kind != "error":
                self.unexplained += 1
        elif kind == "run_end":
            self.end = event


def read_history(run_dir: Path) -> tuple[History, str]:
    """RUN_DIR/events.jsonl as a History, and why it cannot be trusted ("" when it can)."""
    path = events_path(run_dir)
    history = History()
    if not path.exists():
        return history, ""
    tailer = EventTailer(path)
    try:
        while True:
            for event in tailer.poll():
                history.add(event)
            if tailer.error:
                return history, tailer.error
            if tailer.caught_up:
                break
        history.bytes = tailer.offset
        history.damaged, history.damage_samples = tailer.malformed, list(tailer.malformed_samples)
    finally:
        tailer.close()
    return history, history_problem(history, path)


def history_problem(history: History, path: Path) -> str:
    """Why a history read whole cannot be judged: damage beyond what killed runs leave, events no
    runner start explains, or bytes without a single event."""
    if history.damaged > history.starts:
        line, what = history.damage_samples[0] if history.damage_samples else (0, "?")
        return (f"{path}: {history.damaged} line(s) are not events (line {line}: {what}); a killed "
                f"runner leaves at most one half-written line per start ({history.starts} here), so "
                "the file was damaged otherwise")
    if history.unexplained:
        return (f"{path}: {history.unexplained} event(s) before any run_start: not a run this runner "
                "recorded")
    if history.events == 0 and history.bytes > 0:
        return f"{path}: {history.bytes} bytes but not one complete event"
    return ""


# --- what the checkpoint dir holds ------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path
    created: float | None


@dataclass(frozen=True)
class Checkpoints:
    """The committed checkpoints: how many, the newest whose manifest verifies (its own checksum,
    every listed file present with its size), and the newer ones that do not."""

    committed: int = 0
    newest: Checkpoint | None = None
    rejected: tuple[str, ...] = ()


def manifest_problem(folder: Path) -> tuple[dict[str, Any] | None, str]:
    """The folder's manifest when it verifies cheaply (no file is hashed: the runner does that
    while it loads one), else why not: the runner's own rules (preflight.checkpoint_manifest)."""
    try:
        manifest = read_checkpoint_manifest(folder)
        check_listed_files(folder, manifest["files"])
    except ManifestProblem as exc:
        return None, str(exc)
    return manifest, ""


def read_checkpoints(directory: Path) -> tuple[Checkpoints, str]:
    """The checkpoints in ``directory`` (the runner's layout: committed ``step_N`` folders with a
    manifest), and why they cannot be read ("" when they can)."""
    if not directory.exists():
        return Checkpoints(), ""
    if not directory.is_dir():
        return Checkpoints(), f"storage.checkpoint_dir {directory} is a file, not a folder"
    try:
        found = sorted((int(m.group(1)), p) for p in directory.iterdir()
                       if (m := CHECKPOINT_STEP_DIR.match(p.name)) and (p / CHECKPOINT_MANIFEST).is_file())
    except OSError as exc:
        return Checkpoints(), f"cannot list storage.checkpoint_dir {directory}: {exc.strerror or exc}"
    rejected: list[str] = []
    for _step, folder in reversed(found):
        manifest, problem = manifest_problem(folder)
        if manifest is not None:
            created = manifest.get("created")
            newest = Checkpoint(int(manifest["step"]), folder,
                                float(created) if isinstance(created, (int, float)) else None)
            return Checkpoints(len(found), newest, tuple(rejected)), ""
        rejected.append(problem)
    return Checkpoints(len(found), None, tuple(rejected)), ""


# --- whose run it is --------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    """Whether the recorded run is this spec's, and how to say so."""

    same: bool
    says: str


def _comparable(data: Any) -> Any:
    """The resolved spec without its waivers, as JSON sees it (dates become strings)."""
    plain = json.loads(json.dumps(data, default=str))
    if isinstance(plain, dict):
        plain.pop("waivers", None)
    return plain


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: node}


def _short(value: Any) -> str:
    text = "(absent)" if value is _ABSENT else json.dumps(value, default=str)
    return text if len(text) <= 30 else text[:27] + "..."


_ABSENT = object()


def changed_fields(old: Any, new: Any) -> list[str]:
    """``field: old -> new`` for every leaf that differs between two resolved specs (waivers aside)."""
    before, after = _flatten(_comparable(old)), _flatten(_comparable(new))
    return [f"{k}: {_short(before.get(k, _ABSENT))} -> {_short(after.get(k, _ABSENT))}"
            for k in sorted(set(before) | set(after)) if before.get(k, _ABSENT) != after.get(k, _ABSENT)]


def read_snapshot(run_dir: Path) -> dict[str, Any] | None:
    """RUN_DIR/spec.json, or None when absent or unreadable (then only the hashes can be compared)."""
    try:
        snapshot = json.loads((run_dir / SPEC_SNAPSHOT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return snapshot if isinstance(snapshot, dict) and isinstance(snapshot.get("data"), dict) else None


def identify(start: dict[str, Any], snapshot: dict[str, Any] | None, spec: Spec) -> Owner:
    """Is the run that ``start`` (its last run_start) began this spec's? Equal hashes say yes; a
    snapshot of the spec it started with names the fields that changed, and an edit of the waivers
    alone keeps it the same spec."""
    sha = str(start.get("spec_sha256") or "")
    path = start.get("spec_path")
    here = str(spec.path.resolve())
    where = f" ({path})" if path and path != here else ""
    if sha == spec.sha256:
        return Owner(True, f"this spec{where}")
    if snapshot is not None and snapshot.get("spec_sha256") == sha:
        changed = changed_fields(snapshot["data"], spec.data)
        if not changed:
            return Owner(True, f"this spec{where}; only its waivers changed since")
        more = f" and {len(changed) - CHANGES_SHOWN} more" if len(changed) > CHANGES_SHOWN else ""
        return Owner(False, f"another spec{where}; changed since: {'; '.join(changed[:CHANGES_SHOWN])}{more}")
    return Owner(False, f"another spec{where} (spec_sha256 {sha[:12] or 'not recorded'}, this spec "
                        f"{spec.sha256[:12]}; which fields differ was not recorded)")


# --- the state --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunDirState:
    run_dir: Path
    checkpoint_dir: Path
    kind: str  # NEW, INTERRUPTED, FINISHED, UNRECORDED or UNREADABLE
    history: History
    checkpoints: Checkpoints
    owner: Owner | None = None  # whose run (None: no recorded start)
    problem: str = ""  # UNREADABLE: what could not be read, and where

    @property
    def holds_run(self) -> bool:
        return self.kind != NEW

    @property
    def resume_step(self) -> int | None:
        newest = self.checkpoints.newest
        return newest.step if newest is not None else None


def classify(history: History, checkpoints: Checkpoints, problem: str) -> str:
    if problem:
        return UNREADABLE
    if history.starts == 0:
        return UNRECORDED if checkpoints.committed else NEW
    end = history.end
    if end is None or end.get("status") not in FINISHED_STATUSES:
        return INTERRUPTED
    return FINISHED


def read_state(spec: Spec) -> RunDirState:
    """What the spec's run dir and checkpoint dir hold now."""
    run_dir, ckpt_dir = spec.run_dir, spec.checkpoint_dir
    history, problem = read_history(run_dir)
    checkpoints, ckpt_problem = read_checkpoints(ckpt_dir)
    problem = problem or ckpt_problem
    kind = classify(history, checkpoints, problem)
    owner = identify(history.start, read_snapshot(run_dir), spec) if history.start is not None else None
    return RunDirState(run_dir, ckpt_dir, kind, history, checkpoints, owner, problem)


# --- the verdict ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What starting with a choice would do: a status (pass, warn, fail, error), what is there and
    what will happen (``found``), and the way on (``fix``: the choices with their commands)."""

    status: Status
    found: str
    expected: str = ""
    fix: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    action: str = ""  # what starting does (will resume from step N...), or why it is refused

    @property
    def ok(self) -> bool:
        return not self.status.blocks

    @property
    def message(self) -> str:
        return self.found + (f". {self.fix}" if self.fix else "")


def when(unix: float | None) -> str:
    if unix is None:
        return "at an unrecorded time"
    return dt.datetime.fromtimestamp(unix, dt.timezone.utc).strftime("on %Y-%m-%d %H:%M UTC")


def describe(state: RunDirState, spec: Spec) -> str:
    """What the run dir holds, in one sentence: status, step, when, whose run."""
    h, owner = state.history, state.owner
    whose = owner.says if owner is not None else "an unknown spec"
    max_steps = int(spec.get("training.max_steps"))
    if state.kind == UNREADABLE:
        return f"cannot tell what {state.run_dir} holds: {state.problem}"
    if state.kind == NEW:
        failed = (f" (events.jsonl records {h.failed_starts} start(s) that failed before training)"
                  if h.failed_starts else "")
        return f"{state.run_dir} holds no run yet{failed}"
    if state.kind == UNRECORDED:
        newest = state.checkpoints.newest
        top = (f"up to step {newest.step} ({when(newest.created)})" if newest is not None
               else "none of which verifies")
        return (f"{state.checkpoint_dir} holds {state.checkpoints.committed} checkpoint(s) {top}, but "
                f"{state.run_dir} records no run that wrote them (which spec did is unknown)")
    end = h.end or {}
    if state.kind == FINISHED:
        reason = f" ({end['reason']})" if end.get("status") == "stopped" and end.get("reason") else ""
        return (f"{state.run_dir} holds a finished run of {whose}: {end.get('status')} at step "
                f"{end.get('step')} of training.max_steps {max_steps}{reason}, {when(h.time)}")
    how = (f"it failed at step {end.get('step')} ({end.get('reason') or 'no reason recorded'})" if end
           else f"it stopped at step {h.step} without a run_end (a crash, a kill or a lost node)")
    return (f"{state.run_dir} holds an interrupted run of {whose}: {how}, {when(h.time)}; "
            f"{h.starts} start(s) so far")


def resume_problem(state: RunDirState, spec: Spec) -> str:
    """Why a resume of this state would train nothing, or could not resume at all ("" if it can)."""
    if not spec.get("distributed.checkpoint_recovery"):
        return ("distributed.checkpoint_recovery is false: the runner does not resume, it would train "
                "from step 0 over this run; set it to true to resume")
    end = state.history.end or {}
    if state.kind == FINISHED and end.get("status") == "stopped" and spec.get("early_stopping.enabled"):
        return (f"early stopping ended this run at step {end.get('step')}, and a resumed run keeps that "
                "decision: it would stop again at once (set early_stopping.enabled to false to train "
                "on past it, or use --fresh)")
    step = state.resume_step
    if step is None:
        if state.kind == FINISHED:
            return f"{no_checkpoint(state)}: nothing to resume from"
        return ""
    max_steps = int(spec.get("training.max_steps"))
    if step >= max_steps:
        return (f"nothing left to train: max_steps reached (the newest checkpoint is step {step}, "
                f"training.max_steps is {max_steps}); raise training.max_steps or use --fresh")
    return ""


def no_checkpoint(state: RunDirState) -> str:
    count = state.checkpoints.committed
    if count == 0:
        return f"{state.checkpoint_dir} holds no checkpoint"
    return f"none of the {count} checkpoint(s) in {state.checkpoint_dir} verifies ({state.checkpoints.rejected[0]})"


def aside_problem(spec: Spec) -> str:
    """Why ``--fresh`` cannot move the run dir aside ("" when it can): it holds the spec, or the
    working directory."""
    cwd, spec_file = Path.cwd().resolve(), spec.path.resolve()
    for folder in (spec.run_dir, spec.checkpoint_dir):
        where = folder.resolve()
        if where == cwd or where in cwd.parents:
            return f"{folder} is (or holds) the working directory; give the run a folder of its own"
        if where in spec_file.parents:
            return (f"the spec {spec.path} lies inside {folder}, which --fresh would move aside with it; "
                    "keep the spec outside the run dir")
    return ""


def choices(state: RunDirState, spec: Spec, command: str, resumable: str) -> str:
    """The three ways on, with the exact commands. ``resumable``: "" when --resume can continue
    the run, else why it cannot."""
    arg = shlex.quote(str(spec.path))
    outside = not _inside(state.checkpoint_dir, state.run_dir) and state.checkpoint_dir.exists()
    moved = f"{state.run_dir}" + (f" and {state.checkpoint_dir}" if outside else "")
    fresh = (f"`{command} {arg} --fresh` moves {moved} aside to {state.run_dir}{ASIDE_INFIX}<time> "
             "(nothing is deleted) and starts at step 0")
    if resumable:
        resume = f"--resume cannot help: {resumable}"
    else:
        step = state.resume_step
        resume = (f"`{command} {arg} --resume` continues from step {step}" if step is not None
                  else f"`{command} {arg} --resume` starts again at step 0 in this run dir")
    return f"choose: {fresh}; {resume}; or set run.run_dir to a new folder"


def _inside(path: Path, folder: Path) -> bool:
    p, f = path.absolute(), folder.absolute()
    return p == f or f in p.parents


def judge(state: RunDirState, spec: Spec, choice: str | None, command: str = "preflight launch") -> Verdict:
    """The verdict on starting the spec's run with ``choice`` (None: no choice made; ``RESUME``;
    ``FRESH``). ``command`` starts the commands the message offers (the runner's own refusal says
    ``python -m runner``)."""
    said = f"--{choice}: " if choice else ""

    def verdict(status: Status, action: str, expected: str = "", fix: str = "") -> Verdict:
        found = describe(state, spec) + (f"; {action}" if action else "")
        return Verdict(status, said + found, expected, fix, _evidence(state, choice), action)

    if choice == FRESH:
        return _fresh(state, spec, verdict)
    if state.kind == NEW:
        if choice == RESUME:
            return verdict(Status.WARN, "nothing to resume: the run starts at step 0", "a run to resume",
                           "check run.run_dir if you meant to resume another run")
        return verdict(Status.PASS, "a new run")
    if state.kind == UNREADABLE:
        fix = choices(state, spec, command, "what the run dir holds cannot be read")
        unreadable = verdict(Status.ERROR, "", "a run dir whose state can be read",
                             f"repair or move it yourself, or {fix.removeprefix('choose: ')}")
        return dataclasses.replace(unreadable, action="what the run dir holds cannot be read")
    resumable = resume_problem(state, spec)
    fix = choices(state, spec, command, resumable)
    needs_choice = state.kind in (FINISHED, UNRECORDED) or (state.owner is not None and not state.owner.same)
    if choice is None and needs_choice:
        return verdict(Status.FAIL, "", "an explicit choice: --resume or --fresh", fix)
    if resumable:
        return verdict(Status.FAIL, resumable, "steps left to train", fix)
    step, max_steps = state.resume_step, int(spec.get("training.max_steps"))
    how = "" if choice == RESUME else "resumes by default (distributed.checkpoint_recovery): "
    if step is None:
        return verdict(Status.WARN, f"{how}{no_checkpoint(state)}: the runner starts again at step 0 in "
                       "this run dir", "a checkpoint to resume from",
                       f"to start in a clean run dir instead, {choices(state, spec, command, '')}")
    skipped = (f"; {len(state.checkpoints.rejected)} newer checkpoint(s) fail verification and will be "
               f"skipped ({state.checkpoints.rejected[0]})" if state.checkpoints.rejected else "")
    return verdict(Status.PASS, f"{how}will resume from step {step} ({max_steps - step} steps left to "
                   f"training.max_steps {max_steps}){skipped}")


def _fresh(state: RunDirState, spec: Spec, verdict: Callable[..., Verdict]) -> Verdict:
    if not state.holds_run:
        return verdict(Status.PASS, "nothing to move aside: a new run")
    problem = aside_problem(spec)
    if problem:
        return verdict(Status.FAIL, problem, "a run dir that can be moved aside",
                       "move the spec (or the working directory) out of it, or set run.run_dir to a new "
                       "folder")
    return verdict(Status.PASS, f"it will be moved aside to {state.run_dir}{ASIDE_INFIX}<time> when the run "
                   "starts (nothing is deleted), and the run starts at step 0")


def _evidence(state: RunDirState, choice: str | None) -> dict[str, Any]:
    h, end = state.history, state.history.end or {}
    out: dict[str, Any] = {
        "run_dir": str(state.run_dir), "state": state.kind, "choice": choice or "none",
        "checkpoint_dir": str(state.checkpoint_dir), "checkpoints": state.checkpoints.committed,
    }
    if state.resume_step is not None:
        out["resume_from_step"] = state.resume_step
    if h.starts:
        out.update(starts=h.starts, last_step=h.step, last_event=when(h.time).removeprefix("on "),
                   run_spec_sha256=(h.start or {}).get("spec_sha256"))
    if end:
        out["run_end"] = f"{end.get('status')} at step {end.get('step')}"
    if state.owner is not None:
        out["spec"] = state.owner.says
    return out


# --- acting on a choice -----------------------------------------------------------------------


def folders_to_move(spec: Spec) -> list[Path]:
    """The run dir and the checkpoint dir that exist, the outer one only when one holds the other."""
    found = [p.absolute() for p in (spec.run_dir, spec.checkpoint_dir) if p.exists()]
    return [p for p in dict.fromkeys(found) if not any(q != p and _inside(p, q) for q in found)]


def move_aside(spec: Spec, now: dt.datetime | None = None) -> list[tuple[Path, Path]]:
    """``--fresh``: rename the run dir (and a checkpoint dir outside it) to NAME.prev-TIME; returns
    (from, to) for each. Deletes nothing; raises UsageError when a folder cannot be moved."""
    problem = aside_problem(spec)
    if problem:
        raise UsageError(f"--fresh: {problem}")
    stamp = now or dt.datetime.now()
    moved: list[tuple[Path, Path]] = []
    for folder in folders_to_move(spec):
        target = aside_path(folder, stamp)
        try:
            os.rename(folder, target)
        except OSError as exc:
            done = "".join(f"; {a} was moved to {b}" for a, b in moved)
            raise UsageError(f"--fresh: cannot move {folder} aside to {target}: {exc.strerror or exc}{done}. "
                             "Move it yourself, or set run.run_dir to a new folder") from None
        moved.append((folder, target))
    return moved


def record_spec(spec: Spec) -> None:
    """RUN_DIR/spec.json: the resolved spec this start runs (written by the runner as it starts)."""
    run_dir = spec.run_dir
    body = {"spec_path": str(spec.path.resolve()), "spec_sha256": spec.sha256, "data": spec.data}
    tmp = run_dir / f".{SPEC_SNAPSHOT}.{os.getpid()}.tmp"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(body, indent=1, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, run_dir / SPEC_SNAPSHOT)
    except OSError as exc:
        raise UsageError(f"cannot write the run directory {run_dir}: {exc.strerror or exc}") from None

