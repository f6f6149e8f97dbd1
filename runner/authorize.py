"""The runner's side of the gate: start only with a fresh, matching, passing attestation.

`preflight check SPEC` writes the attestation; `preflight verify SPEC` answers the same question
this module asks, in the same place (preflight.rundir.attestation_place: next to the spec, the
state directory for a read-only spec folder, $PREFLIGHT_ATTESTATION_DIR, or the file
$PREFLIGHT_ATTESTATION that `preflight launch` and the console hand the runner they start). `--force --reason TEXT` starts anyway, and the reason goes into the run's
events, so a forced run is always visible afterwards.

The run dir is judged as the gate's storage.run_dir judges it (preflight.runstate), with the
choice given here (`--resume` / `--fresh`): a start by hand on a finished run, another spec's run
or checkpoints nobody recorded is refused, so it cannot "succeed" having trained nothing. `--force`
does not skip this: it stands in for the attestation, not for the choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from preflight.errors import UsageError
from preflight.gate import verify
from preflight.probes import Probes
from preflight.rundir import FRESH, MIN_REASON
from preflight.runstate import judge, read_state
from preflight.spec import Spec


@dataclass(frozen=True)
class Authorization:
    ok: bool
    message: str
    forced_reason: str | None = None
    move_aside: bool = False  # --fresh on a run dir that holds a run: move it aside before the start


def authorize(spec: Spec, force: bool = False, reason: str | None = None, probes: Probes | None = None) -> Authorization:
    """Whether the run may start, and the message that says why (not)."""
    if force and (not reason or len(reason.strip()) < MIN_REASON):
        raise UsageError(f"--force needs --reason TEXT (at least {MIN_REASON} characters): it is recorded in the "
                         "run's events")
    verdict = verify(spec, probes or Probes())
    if verdict.ok:
        return Authorization(True, verdict.reason)
    if force:
        assert reason is not None
        return Authorization(True, f"starting past the gate ({verdict.reason}); reason recorded: {reason.strip()}",
                             reason.strip())
    return Authorization(False, f"refusing to start: {verdict.reason}. To start anyway: "
                         f"python -m runner {spec.path} --force --reason 'why this is acceptable'")


def authorize_run_dir(spec: Spec, choice: str | None = None) -> Authorization:
    """Whether the run may start in its run dir with ``choice`` (None, "resume" or "fresh"), and
    the message that says what is there and, when refused, the commands that choose."""
    state = read_state(spec)
    verdict = judge(state, spec, choice, command="python -m runner")
    if not verdict.ok:
        return Authorization(False, f"refusing to start: {verdict.message}")
    return Authorization(True, verdict.message, move_aside=choice == FRESH and state.holds_run)
