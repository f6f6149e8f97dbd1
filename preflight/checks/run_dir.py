"""The run directory: a new run, or a run there that the launch continues or moves aside, by choice."""

from __future__ import annotations

from ..registry import Context, Rule, check
from ..result import Outcome
from ..runstate import RUN_DIR_CHECK, judge, read_state
from ._framework import launched_by_framework

RULES = (
    Rule("run.run_dir", ("run dir: events.jsonl (the last run's status, step and spec_sha256)",
                         "storage.checkpoint_dir", "training.max_steps"), "fail",
         "a run dir holding a finished run, another spec's run or checkpoints no event records needs "
         "--resume or --fresh; --resume needs a checkpoint below training.max_steps"),
    Rule("distributed.checkpoint_recovery", ("run.run_dir", "run dir: events.jsonl (an interrupted run)"),
         "fail", "off while the run dir holds a run: the runner would train over it from step 0; "
                 "--fresh moves it aside"),
    Rule("early_stopping.enabled", ("run dir: events.jsonl (run_end status stopped)",), "fail",
         "--resume of a run early stopping ended stops again at once while it is on"),
)


@check(RUN_DIR_CHECK, "Run directory: a new run, or an explicit resume or fresh start", "node",
       rules=RULES)
def run_dir(ctx: Context) -> Outcome:
    """What run.run_dir (RUN_DIR/events.jsonl) and storage.checkpoint_dir (committed step_N folders
    and their manifests) hold, and whether starting the spec there does what the user means.

    States and verdicts (`--resume` / `--fresh` on `preflight check` and `preflight launch` are the
    choice; the console asks at launch):
      - new (no run, no checkpoint): pass.
      - interrupted (started; no run_end since, or one with status failed), same spec: pass "will
        resume from step N" (the newest checkpoint whose manifest verifies). This is the default
        without a choice, because resuming after a failure is what distributed.checkpoint_recovery
        asks for (on by default, docs/reference.md section 6). Warn when no checkpoint verifies
        (the runner starts again at step 0). Fail when distributed.checkpoint_recovery is false:
        the runner would train over the run from step 0.
      - finished (run_end completed or stopped): fail without a choice; `--resume` fails too while
        there is nothing left to train (the newest checkpoint at training.max_steps, or a run early
        stopping ended with early_stopping.enabled still on): a resume would end at once and report
        success having trained nothing (as verl PR #5725 did in the field).
      - another spec's run (run_start's spec_sha256 differs; an edit of only the waivers is the same
        spec; RUN_DIR/spec.json names the fields that changed), or checkpoints no event records:
        fail without a choice; `--resume` continues it when there are steps left.
      - unreadable (events.jsonl damaged beyond one half-written line per start, events without a
        run_start, an unreadable checkpoint dir): error, never a pass.
    `--fresh` passes in every state: at launch the run dir (and a checkpoint dir outside it) is
    renamed to NAME.prev-YYYYmmdd-HHMMSS, nothing is deleted, and the run starts at step 0. It fails
    only when the spec or the working directory lies inside the folder to move.

    Fix: the message names what is there (status, step, when, which spec) and the three ways on:
    `preflight launch SPEC --fresh`, `preflight launch SPEC --resume`, or a new run.run_dir.

    Skipped for a run a framework launches (trainer:): the framework keeps its own checkpoints and
    resume state (trainer.verl.resume judges verl's).
    """
    skip = launched_by_framework(ctx, "the run dir's state (events.jsonl, resume or fresh start)")
    if skip is not None:
        return skip
    verdict = judge(read_state(ctx.spec), ctx.spec, ctx.spec.run_dir_choice)
    return Outcome(verdict.status, found=verdict.found, expected=verdict.expected, remediation=verdict.fix,
                   evidence=verdict.evidence)
