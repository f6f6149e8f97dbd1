"""The launch gate: attestations written on a pass, verified for freshness, spec and machine."""

from __future__ import annotations

import datetime as dt
import json

from fakes import FakeSystemProbe, gpu_probes

from preflight.gate import attestation_path, verify, write_attestation
from preflight.service.report import run_report
from preflight.spec import load_spec

SPEC = "run: {name: r}\nhardware: {nodes: 2}\ntraining: {batch_size: 512}\n"


def attest(write_spec, text: str = SPEC, probes=None):
    probes = probes or gpu_probes()
    spec = load_spec(write_spec(text))
    report = run_report(spec, "node", "fail", probes=probes, show_progress=False)
    assert report.status == "pass", [(r.id, r.found) for r in report.results if r.status.blocks]
    return spec, write_attestation(spec, report), probes


def test_fresh_matching_attestation_verifies(write_spec):
    spec, path, probes = attest(write_spec)
    assert path == attestation_path(spec.path) and path.name == "run.yaml.attestation.json"
    body = json.loads(path.read_text())
    assert body["spec_sha256"] == spec.sha256 and body["report"]["status"] == "pass"
    assert verify(spec, probes).ok


def test_missing_attestation_says_what_to_run(write_spec):
    spec = load_spec(write_spec(SPEC))
    v = verify(spec, gpu_probes())
    assert not v.ok and "preflight check" in v.reason


def test_changed_spec_voids_the_attestation(write_spec):
    spec, _, probes = attest(write_spec)
    edited = load_spec(write_spec(SPEC.replace("512", "256")))
    v = verify(edited, probes)
    assert not v.ok and "spec changed" in v.reason


def test_reformatting_the_spec_keeps_it_valid(write_spec):
    spec, _, probes = attest(write_spec)
    same = load_spec(write_spec("# a comment\nrun:\n  name: r\ntraining:\n  batch_size: 512\nhardware:\n  nodes: 2\n"))
    assert verify(same, probes).ok


def test_another_machine_voids_the_attestation(write_spec):
    spec, _, _ = attest(write_spec)
    other = gpu_probes(system=FakeSystemProbe(hostname="node-7"))
    v = verify(spec, other)
    assert not v.ok and "another machine" in v.reason


def test_stale_after_max_age(write_spec):
    spec, _, probes = attest(write_spec)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=25)
    v = verify(spec, probes, now=later)
    assert not v.ok and "stale after 24 h" in v.reason
    assert verify(spec, probes, max_age_hours=48, now=later).ok


def test_corrupt_attestation_is_reported_not_raised(write_spec):
    spec, path, probes = attest(write_spec)
    path.write_text("{not json")
    v = verify(spec, probes)
    assert not v.ok and "unreadable" in v.reason


def test_hand_edited_data_files_entry_is_reported_not_raised(write_spec):
    spec, path, probes = attest(write_spec)
    body = json.loads(path.read_text())
    path.write_text(json.dumps({**body, "data_files": [{"bytes": 3}]}))  # the path is missing
    v = verify(spec, probes)
    assert not v.ok and "unreadable (KeyError)" in v.reason


def test_waivers_are_recorded_in_the_attestation(write_spec):
    text = SPEC + "waivers:\n  - {check: host.memory, reason: staging node with less RAM}\n"
    probes = gpu_probes(system=FakeSystemProbe(memory_bytes=64 * 10**9))
    _, path, _ = attest(write_spec, text, probes)
    body = json.loads(path.read_text())
    assert body["waivers"] == [{"check": "host.memory", "reason": "staging node with less RAM"}]


def test_check_time_waivers_do_not_change_the_spec_identity(write_spec):
    # `preflight check --waive X=...` then `python -m runner SPEC`: the runner loads the file alone
    # and must find the hash the attestation recorded, while the waiver itself still counts
    from preflight.spec import load_spec

    path = write_spec("run: {name: w}\n")
    plain = load_spec(path)
    waived = load_spec(path, extra_waivers=[{"check": "host.cpus", "reason": "96-core nodes"}])
    assert waived.sha256 == plain.sha256
    assert waived.get("waivers")[-1]["check"] == "host.cpus"
    edited = write_spec("run: {name: w}\nwaivers: [{check: host.cpus, reason: 96-core nodes}]\n")
    assert load_spec(edited).sha256 != plain.sha256  # a waiver written into the spec is a change
