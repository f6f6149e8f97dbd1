"""The runner's side of the gate: start only with a fresh, matching, passing attestation.

`preflight check SPEC` writes the attestation; `preflight verify SPEC` answers the same question
this module asks. `--force --reason TEXT` starts anyway, and the reason goes into the run's
events, so a forced run is always visible afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from preflight.errors import UsageError
from preflight.gate import verify
from preflight.probes import Probes
from preflight.rundir import MIN_REASON
from preflight.spec import Spec


@dataclass(frozen=True)
class Authorization:
    ok: bool
    message: str
    forced_reason: str | None = None


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
