"""The launch gate: attestations written by a passing check, and verifying them later.

An attestation sits next to the spec (``SPEC.attestation.json``), or where --attestation,
$PREFLIGHT_ATTESTATION_DIR or a read-only spec folder puts it (``preflight.rundir.attestation_place``,
which every writer and reader asks). It records the report, the spec's canonical hash, the tool
version, this machine's fingerprint and a timestamp. The runner refuses to start unless a fresh,
matching, passing one exists.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .data.vcs import file_digest
from .errors import UsageError
from .probes import Probes, ProbeUnavailable
from .result import Report
from .rundir import ATTESTATION_DIR_ENV, attestation_path
from .spec import Spec

ATTESTATION_VERSION = 1


def fingerprint(probes: Probes) -> dict[str, Any]:
    """What identifies this machine for the gate: host, OS, CPUs, memory, Python, GPUs."""
    host = probes.system.host()
    try:
        inv = probes.gpu.inventory()
        gpus = [f"{g.name} {g.uuid}".strip() for g in inv.gpus]
        driver = inv.driver_version
    except ProbeUnavailable:
        gpus, driver = [], None
    facts = {
        "hostname": host.hostname,
        "os": host.os,
        "machine": host.machine,
        "cpus": host.cpu_count,
        "memory_bytes": host.memory_total_bytes,
        "python": probes.packages.python_version(),
        "gpus": gpus,
        "driver": driver,
    }
    blob = json.dumps(facts, sort_keys=True).encode()
    return {**facts, "sha256": hashlib.sha256(blob).hexdigest()}


class AttestationNotWritten(UsageError):
    """The gate passed but its record could not be written: nothing may say PASSED then."""


def write_attestation(spec: Spec, report: Report, path: Path | None = None) -> Path:
    """Write the attestation atomically (temp file + rename), so a reader never sees half of one.
    ``path``: where (default: ``attestation_path``, whose folder is created). Raises
    AttestationNotWritten with the place, the reason and the ways to choose another."""
    path = path if path is not None else attestation_path(spec.path)
    try:
        return _write_atomically(path, _attestation_body(spec, report))
    except OSError as exc:
        raise AttestationNotWritten(
            f"the checks passed, but the gate's attestation could not be written to {path}: "
            f"{exc.strerror or exc}; the launch needs it. Choose a writable place with --attestation PATH "
            f"or ${ATTESTATION_DIR_ENV}=DIR (the runner and `preflight verify` then look there too)") from None


def _write_atomically(path: Path, body: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # left only when the write failed
    return path


def _attestation_body(spec: Spec, report: Report) -> dict[str, Any]:
    return {
        "attestation_version": ATTESTATION_VERSION,
        "tool_version": __version__,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "spec": str(spec.path),
        "spec_sha256": spec.sha256,
        "fingerprint": report.fingerprint,
        "waivers": [{"check": r.id, **(r.waiver or {})} for r in report.results if r.waiver],
        "data_files": data_digests(spec),
        "report": report.to_dict(),
    }


def data_files(spec: Spec) -> list[Path]:
    paths = [Path(spec.get(f"data.{k}")) for k in ("train", "val", "test") if spec.get(f"data.{k}")]
    return paths + [Path(b) for b in spec.get("data.benchmarks") or []]


def data_digests(spec: Spec) -> list[dict[str, Any]]:
    """Size and SHA-256 of every data file, so `verify` notices data changed after the check."""
    return [file_digest(p) for p in data_files(spec) if p.exists()]


@dataclass
class Verdict:
    ok: bool
    reason: str
    attestation: dict[str, Any] | None = None


def verify(spec: Spec, probes: Probes, max_age_hours: float | None = None,
           now: dt.datetime | None = None, path: Path | None = None) -> Verdict:
    """Is there a fresh, matching, passing attestation for this spec on this machine? ``path``:
    where to look (default: ``attestation_path``, where `check` writes it)."""
    path = path if path is not None else attestation_path(spec.path)
    check_cmd = f"run `preflight check {spec.path}`"
    if not path.is_file():
        return Verdict(False, f"no attestation at {path}; {check_cmd}")
    try:
        att = json.loads(path.read_text(encoding="utf-8"))
        created = dt.datetime.fromisoformat(att["created_at"])
        status = att["report"]["status"]
        recorded = [(Path(e["path"]), e.get("bytes"), e.get("sha256")) for e in att.get("data_files") or []]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return Verdict(False, f"attestation {path} is unreadable ({type(exc).__name__}); {check_cmd}")
    if status != "pass":
        return Verdict(False, f"the attested check did not pass; fix the failures and {check_cmd}", att)
    if att.get("spec_sha256") != spec.sha256:
        return Verdict(False, f"the spec changed since it was checked; {check_cmd}", att)
    if att.get("fingerprint", {}).get("sha256") != fingerprint(probes)["sha256"]:
        return Verdict(False, f"the attestation was made on another machine (or this one changed); {check_cmd} here", att)
    changed = _changed_data(recorded)
    if changed:
        return Verdict(False, f"data changed since the check: {changed}; {check_cmd}", att)
    max_age = float(max_age_hours if max_age_hours is not None else spec.get("gate.max_age_hours"))
    age = (now or dt.datetime.now(dt.timezone.utc)) - created
    if age > dt.timedelta(hours=max_age):
        hours = age.total_seconds() / 3600
        return Verdict(False, f"the attestation is {hours:.1f} h old (stale after {max_age:g} h); {check_cmd}", att)
    return Verdict(True, f"attested {att['created_at']} by rl-preflight {att.get('tool_version')} ({path}): gate passed",
                   att)


def _changed_data(recorded: list[tuple[Path, Any, Any]]) -> str:
    """The first recorded data file (path, bytes, sha256) that is gone or differs now; "" if none."""
    for path, size, sha in recorded:
        if not path.exists():
            return f"{path} is gone"
        now = file_digest(path)
        if now["bytes"] != size or now["sha256"] != sha:
            return f"{path} ({size} -> {now['bytes']} bytes)"
    return ""
