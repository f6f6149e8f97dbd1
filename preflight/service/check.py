"""Check a spec: load it with every reference to a check verified, run its checks (on this machine,
or on every node of a Ray cluster), and attest a passing check for the launch gate."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checklist import unknown_references
from ..cluster.run import cluster_report
from ..engine import all_known_ids
from ..errors import SpecError, UsageError
from ..gate import Verdict, verify, write_attestation
from ..probes import Probes
from ..result import Report
from ..rundir import RUN_DIR_CHOICES, attestation_path, attestation_place
from ..spec import Spec, load_spec
from .report import OnFinish, OnStart, run_report
from .waivers import refuse_unknown_waivers


def load_checked_spec(path: str, waivers: list[dict[str, Any]] | None = None,
                      run_dir_choice: str | None = None) -> Spec:
    """Load the spec and refuse references to checks that do not exist (a typo would do nothing):
    in its waivers, severities and checklist items, and in ``waivers`` given at check time, which
    then join the spec's own (the spec's identity, its sha256, stays that of the file).
    ``run_dir_choice`` (``resume``/``fresh``, from --resume/--fresh) is what to do with a run dir
    that holds a run; storage.run_dir judges it and its result records it."""
    if run_dir_choice is not None and run_dir_choice not in RUN_DIR_CHOICES:
        raise UsageError(f"run dir choice {run_dir_choice!r}: expected one of {', '.join(RUN_DIR_CHOICES)}")
    spec = load_spec(path)
    known = all_known_ids(spec)
    problems = unknown_references(spec, known)
    refuse_unknown_waivers(waivers or [], known)
    if problems:
        raise SpecError(path, problems)
    if waivers:
        spec = load_spec(path, extra_waivers=waivers)
    if run_dir_choice is not None:
        spec = dataclasses.replace(spec, run_dir_choice=run_dir_choice)
    return spec


def check_cluster_flag(address: str, level: str) -> None:
    """What --cluster needs before anything runs, for `check` and `tui` alike: a level that probes
    machines, and a Ray head answering at the address (ray.init itself retries for minutes)."""
    if level == "static":
        raise UsageError("--cluster checks the nodes: use it with --level node or active, not static")
    from ..cluster.ray_runner import check_address  # imports Ray: only in cluster mode

    check_address(address)


def check(spec: Spec, level: str, fail_on: str, *, cluster: str | None = None, only: list[str] | None = None,
          probes: Any = None, show_progress: bool = True, on_start: OnStart | None = None,
          on_finish: OnFinish | None = None) -> Report:
    """Run the spec's checks into a report: on this machine, or with ``cluster`` (auto or the head's
    address) on every node of that Ray cluster. An ``only`` that keeps no check is a usage error:
    an empty report would pass a gate nobody checked."""
    if cluster:
        check_cluster_flag(cluster, level)
        report = cluster_report(spec, level, fail_on, cluster, only=only)
    else:
        report = run_report(spec, level, fail_on, probes=probes, show_progress=show_progress, only=only,
                            on_start=on_start, on_finish=on_finish)
    if only and not report.results:
        raise UsageError(f"--only {' '.join(only)} matches no check at level {level} (see `preflight list`)")
    return report


@dataclass(frozen=True)
class Attested:
    """What ``attest`` did: the attestation written (``path``, and ``why`` there), or why none was
    (``note``, empty when the gate failed or the caller asked for none)."""

    path: Path | None = None
    note: str = ""
    why: str = ""


def attest(spec: Spec, report: Report, *, partial: bool = False, skip: bool = False,
           path: str | Path | None = None) -> Attested:
    """Write the attestation the runner's gate asks for, when the report earns one: it passed, it
    covered every check (``partial``: an --only check did not) and it probed this machine (a static
    check looked at the spec alone). ``skip``: the caller asked for none (--no-attest). ``path``:
    --attestation PATH (else ``attestation_place`` decides). Raises AttestationNotWritten."""
    if not report.passed:
        return Attested()
    if partial:
        return Attested(note="partial check (--only): no attestation written")
    if report.level == "static":
        return Attested(note="static level: no attestation written (the gate needs --level node or active)")
    if skip:
        return Attested()
    place = attestation_place(spec.path, path)
    return Attested(path=write_attestation(spec, report, place.path), why=place.why)


def export_leaks(report: Report, path: str) -> int:
    """Write every leak the data checks found as one JSON object a line; returns how many."""
    found = report.artifacts.get("leaks")
    items = list(found.items) if found is not None else []
    try:
        with open(path, "w", encoding="utf-8") as fh:
            for leak in items:
                fh.write(json.dumps(leak.__dict__, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return len(items)


def verify_attestation(spec_path: str, max_age_hours: float | None = None,
                       attestation: str | Path | None = None) -> Verdict:
    """Is there a fresh, matching, passing attestation for the spec at ``spec_path`` on this machine?
    ``attestation``: --attestation PATH (else where `check` writes it)."""
    return verify(load_spec(spec_path), Probes(), max_age_hours, path=attestation_path(spec_path, attestation))
