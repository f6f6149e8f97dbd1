"""The service layer the CLI, the console and cluster mode share: the gate's one rule (with waivers
and --fail-on warn), the one exit-code mapping, the waiver rules, the launch gate and attestation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from preflight.cluster.run import resummarise_nodes
from preflight.errors import UsageError
from preflight.result import (
    EXIT_FAIL,
    EXIT_PASS,
    EXIT_USAGE,
    Report,
    Result,
    Status,
    blocking,
    blocks_gate,
    exit_code,
    gate_passes,
)
from preflight.rundir import MIN_REASON, attestation_path
from preflight.service.catalog import describe_check
from preflight.service.check import attest, check, load_checked_spec
from preflight.service.launch import GATE_CLOSED, Launched, launch, may_launch
from preflight.service.waivers import (
    BY_COMMAND_LINE,
    make_waiver,
    parse_waivers,
    refuse_unknown_waivers,
)
from preflight.spec import Spec, load_spec

SPEC = "run: {name: svc}\nhardware: {gpu_required: false}\n"


def result(status: Status, check_id: str = "host.cpus", node: str = "") -> Result:
    return Result(id=check_id, title=check_id, status=status, level="node", item="hardware", node=node)


def report(*statuses: Status, fail_on: str = "fail", level: str = "node") -> Report:
    results = [result(s, f"check.{i}") for i, s in enumerate(statuses)]
    return Report(spec_path="run.yaml", spec_sha256="0" * 64, run_name="svc", level=level, tool_version="t",
                  started_at="2025-01-01T00:00:00+00:00", duration_s=0.0, fail_on=fail_on, results=results,
                  checklist=[])


# The gate's rule and the exit code ----------------------------------------------------------------


@pytest.mark.parametrize(("status", "on_fail", "on_warn"), [
    (Status.PASS, False, False), (Status.SKIP, False, False), (Status.WAIVED, False, False),
    (Status.WARN, False, True), (Status.FAIL, True, True), (Status.ERROR, True, True),
])
def test_the_gate_rule_per_status_under_both_policies(status: Status, on_fail: bool, on_warn: bool) -> None:
    assert blocks_gate(result(status), "fail") is on_fail
    assert blocks_gate(result(status), "warn") is on_warn


def test_a_waived_failure_opens_the_gate_even_under_fail_on_warn() -> None:
    assert report(Status.PASS, Status.WAIVED, fail_on="warn").passed
    assert not report(Status.PASS, Status.FAIL).passed


def test_warnings_pass_the_gate_unless_fail_on_warn() -> None:
    warned = report(Status.PASS, Status.WARN)
    assert warned.passed and warned.status == "pass" and warned.blocking() == []
    strict = report(Status.PASS, Status.WARN, Status.WAIVED, Status.FAIL, fail_on="warn")
    assert not strict.passed and strict.status == "fail"
    assert [r.id for r in strict.blocking()] == ["check.1", "check.3"]  # in report order
    assert blocking(strict.results, "fail") == [strict.results[3]]
    assert gate_passes(strict.results[:3], "fail") and not gate_passes(strict.results[:3], "warn")


def test_exit_codes_follow_the_gate_decision() -> None:
    assert (EXIT_PASS, EXIT_FAIL, EXIT_USAGE) == (0, 1, 2)
    assert exit_code(report(Status.PASS, Status.WARN)) == EXIT_PASS
    assert exit_code(report(Status.PASS, Status.WARN, fail_on="warn")) == EXIT_FAIL
    assert exit_code(report(Status.ERROR)) == EXIT_FAIL
    assert exit_code(report(Status.WAIVED)) == EXIT_PASS
    assert exit_code(report()) == EXIT_PASS  # nothing blocks an empty report (check() refuses one)
    assert (exit_code(True), exit_code(False)) == (EXIT_PASS, EXIT_FAIL)  # a verdict (verify)


# Waivers ------------------------------------------------------------------------------------------


def test_parse_waivers_keeps_id_and_reason_and_says_who() -> None:
    assert parse_waivers([" host.cpus = dev box, the run is on the cluster "]) == [
        {"check": "host.cpus", "reason": "dev box, the run is on the cluster", "by": BY_COMMAND_LINE}]
    assert parse_waivers(["a.b=" + "x" * MIN_REASON])[0]["reason"] == "x" * MIN_REASON
    assert parse_waivers([]) == []


@pytest.mark.parametrize("item", [
    "host.cpus",  # no '='
    "=a reason long enough",  # no check id
    " =a reason long enough",
    "host.cpus=" + "x" * (MIN_REASON - 1),  # a reason too short
    "host.cpus=   short   ",  # blanks do not count
])
def test_parse_waivers_refuses_malformed_items(item: str) -> None:
    with pytest.raises(UsageError, match="CHECK_ID=REASON") as err:
        parse_waivers(["ok.check=a reason long enough", item])
    assert repr(item) in str(err.value) and f"at least {MIN_REASON} characters" in str(err.value)


def test_the_console_waiver_rule_is_the_command_line_rule() -> None:
    assert make_waiver(" hw.gpu.vram ", "  staging node, small GPU ", "preflight tui") == {
        "check": "hw.gpu.vram", "reason": "staging node, small GPU", "by": "preflight tui"}
    with pytest.raises(UsageError, match=f"at least {MIN_REASON} characters"):
        make_waiver("hw.gpu.vram", "x" * (MIN_REASON - 1) + "   ", "preflight tui")


def test_a_waiver_must_name_a_known_check_or_pattern() -> None:
    known = ["host.cpus", "host.memory", "hw.gpu.vram"]
    refuse_unknown_waivers([{"check": "host.*"}, {"check": "hw.gpu.vram"}], known)
    with pytest.raises(UsageError, match="--waive host.cpu: no such check; did you mean 'host.cpus'"):
        refuse_unknown_waivers([{"check": "host.cpu"}], known)
    with pytest.raises(UsageError, match="no such check$"):
        refuse_unknown_waivers([{"check": "zzz"}], known)


def test_load_checked_spec_adds_check_time_waivers_without_changing_the_spec_identity(write_spec: Any) -> None:
    path = write_spec(SPEC)
    plain = load_checked_spec(str(path))
    waived = load_checked_spec(str(path), parse_waivers(["host.cpus=dev box, the run is on the cluster"]))
    assert waived.get("waivers")[-1]["check"] == "host.cpus" and waived.sha256 == plain.sha256
    with pytest.raises(UsageError, match="did you mean 'host.cpus'"):
        load_checked_spec(str(path), [{"check": "host.cpu", "reason": "a reason long enough"}])


# Checking, attesting, launching -------------------------------------------------------------------


def test_check_refuses_an_only_that_matches_nothing(write_spec: Any) -> None:
    spec = load_checked_spec(str(write_spec(SPEC)))
    with pytest.raises(UsageError, match="--only nothing.* matches no check at level static"):
        check(spec, "static", "fail", only=["nothing.*"], show_progress=False)
    only = check(spec, "static", "fail", only=["config.*"], show_progress=False)
    assert only.results and all(r.id.startswith("config.") for r in only.results)


def _spec(write_spec: Any) -> Spec:
    return load_spec(write_spec(SPEC))


def test_attest_writes_only_for_a_full_passing_check_that_probed_the_machine(write_spec: Any) -> None:
    spec = _spec(write_spec)
    path = attestation_path(spec.path)
    assert attest(spec, report(Status.FAIL)).path is None and attest(spec, report(Status.FAIL)).note == ""
    assert "partial check (--only)" in attest(spec, report(Status.PASS), partial=True).note
    assert "static level" in attest(spec, report(Status.PASS, level="static")).note
    skipped = attest(spec, report(Status.PASS), skip=True)
    assert skipped.path is None and skipped.note == "" and not path.exists()
    assert attest(spec, report(Status.PASS, Status.WAIVED)).path == path and path.is_file()


def test_launch_goes_only_through_an_open_gate(write_spec: Any) -> None:
    spec = _spec(write_spec)
    started: list[Report] = []

    def starter(_spec: Spec, passing: Report) -> Launched:
        started.append(passing)
        return Launched(123, Path("runs/svc"), Path("runs/svc/events.jsonl"), Path("runs/svc/runner.log"))

    for closed in (report(Status.FAIL), report(Status.WARN, fail_on="warn"), report(Status.PASS, level="static")):
        assert not may_launch(closed)
        with pytest.raises(UsageError, match=GATE_CLOSED):
            launch(spec, closed, starter=starter)
    assert started == []
    open_gate = report(Status.PASS, Status.WAIVED, level="active")
    assert may_launch(open_gate) and launch(spec, open_gate, starter=starter).pid == 123
    assert started == [open_gate]


# Cluster nodes and the catalog --------------------------------------------------------------------


def test_node_summaries_follow_a_waiver_and_a_silent_node_stays_an_error() -> None:
    nodes = [{"name": "gpu-1", "answered": True, "status": "fail"}, {"name": "gpu-2", "answered": False,
                                                                      "status": "error"}]
    results = [result(Status.WAIVED, node="gpu-1"), result(Status.PASS, "hw.gpu.count", node="gpu-1")]
    again = resummarise_nodes(nodes, results)
    assert [(n["name"], n["status"]) for n in again] == [("gpu-1", "waived"), ("gpu-2", "error")]
    assert again[0]["summary"]["waived"] == 1 and again[0]["summary"]["pass"] == 1
    assert sum(again[1]["summary"].values()) == 0


def test_describe_check_knows_families_and_suggests_close_ids() -> None:
    member = describe_check("stack.vllm")
    assert member.id == "stack.vllm (one of stack.<package>)" and member.level == "node" and member.explain
    with pytest.raises(UsageError, match="did you mean 'hw.gpu.vram'"):
        describe_check("hw.gpu.vrma")
