"""The report renderers, judged by what a user (or a CI tool reading the output) would notice."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from junitparser import Error, Failure, JUnitXml, Skipped

from preflight.errors import UsageError
from preflight.report import RENDERERS, RenderOptions, markdown_summary, render
from preflight.report.github import escape_data, escape_property
from preflight.result import ChecklistItem, Report, Result, Status

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "report.schema.json"
SHA = "ab" * 32
ANSI = re.compile(r"\x1b\[")

WAIVER = {"check": "data.leak", "reason": "val split is reused on purpose", "by": "alice",
          "expires": "2099-01-01"}


def make_report(statuses: list[Status] | None = None, fail_on: str = "fail", **overrides: Any) -> Report:
    """A report with one result of each status (or of the statuses given), across two items."""
    every = {
        Status.PASS: Result("hw.gpu.count", "GPU count", Status.PASS, "node", "hardware",
                            expected="8", found="8 x NVIDIA H100 80GB HBM3",
                            evidence={"gpus": ["H100"] * 8}, duration_s=0.01),
        Status.WARN: Result("hw.disk.free", "Free disk for checkpoints", Status.WARN, "node", "hardware",
                            expected=">= 2 TiB", found="1.5 TiB free on /ckpt",
                            remediation="delete old checkpoints or point checkpoint.dir elsewhere",
                            duration_s=0.02),
        Status.FAIL: Result("cfg.batch.divides", "Batch divides world size", Status.FAIL, "static",
                            "config", expected="batch_size % world_size == 0",
                            found="batch_size 100 | world_size 8\nremainder 4",
                            remediation="set training.batch_size to a multiple of 8, e.g. 96 or 104",
                            duration_s=0.001),
        Status.ERROR: Result("net.ib.bandwidth", "InfiniBand bandwidth", Status.ERROR, "active",
                             "cluster", found="probe timed out after 30 s",
                             remediation="check the fabric manager, then re-run", duration_s=30.0),
        Status.SKIP: Result("data.dedup", "Near-duplicate prompts", Status.SKIP, "static", "data",
                            found="no dataset configured", duration_s=0.0),
        Status.WAIVED: Result("data.leak", "Validation split does not leak", Status.WAIVED, "static",
                              "data", expected="0 overlapping prompts", found="12 overlapping prompts",
                              remediation="re-split with data.split.seed",
                              evidence={"status_before_waiver": "fail"}, waiver=dict(WAIVER),
                              duration_s=0.5),
    }
    chosen = list(every) if statuses is None else statuses
    fields: dict[str, Any] = dict(
        spec_path="examples/grpo.yaml", spec_sha256=SHA, run_name="grpo-7b", level="active",
        tool_version="0.1.0", started_at="2025-01-02T03:04:05+00:00", duration_s=31.2,
        fail_on=fail_on, results=[every[s] for s in chosen],
        checklist=[
            ChecklistItem("hardware", "Hardware fits the run", ["hw.*"]),
            ChecklistItem("config", "Config is consistent", ["cfg.*"]),
            ChecklistItem("data", "Data is clean", ["data.*"]),
            ChecklistItem("cluster", "Cluster is healthy", ["net.*"]),
        ],
        fingerprint={"host": "node-1", "driver": "550.54"},
    )
    fields.update(overrides)
    return Report(**fields)


def out(report: Report, fmt: str, **opts: bool) -> str:
    return render(report, fmt, RenderOptions(**opts))


def test_renderers_are_keyed_by_the_cli_format_names() -> None:
    assert set(RENDERERS) == {"text", "json", "junit", "github", "markdown"}
    for fmt in RENDERERS:
        assert isinstance(out(make_report(), fmt), str)
    with pytest.raises(UsageError, match="unknown report format 'yaml'"):
        render(make_report(), "yaml", RenderOptions())


# JSON -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("statuses", [None, [], [Status.PASS, Status.SKIP], [Status.WAIVED]])
def test_json_validates_and_round_trips(validator: Draft202012Validator,
                                        statuses: list[Status] | None) -> None:
    report = make_report(statuses)
    text = out(report, "json")
    data = json.loads(text)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(data)]
    assert errors == []
    assert data == report.to_dict()
    assert data["status"] == report.status
    assert len(data["results"]) == len(report.results)


def test_json_schema_rejects_what_the_contract_forbids(validator: Draft202012Validator) -> None:
    good = make_report().to_dict()
    bad_cases = [
        {**good, "status": "warn"},
        {**good, "spec_sha256": "abc"},
        {**good, "surprise": 1},
        {**good, "level": "cluster"},
        {**good, "results": [{**good["results"][0], "status": "ok"}]},
        {**good, "results": [{**good["results"][0], "duration_s": -1}]},
        {**good, "results": [{**good["results"][0], "extra": True}]},
        {k: v for k, v in good.items() if k != "results"},
    ]
    for bad in bad_cases:
        assert not validator.is_valid(bad), bad


# JUnit ------------------------------------------------------------------------------------------

def _cases(xml_text: str) -> dict[str, Any]:
    xml = JUnitXml.fromstring(xml_text.encode("utf-8"))
    return {case.name: case for suite in xml for case in suite}


def test_junit_counts_match_statuses() -> None:
    report = make_report()
    xml = JUnitXml.fromstring(out(report, "junit").encode("utf-8"))
    suites = list(xml)
    assert [s.name for s in suites] == ["preflight: grpo-7b"] * 4  # one per checklist item
    cases = {case.name: (suite, case) for suite in suites for case in suite}
    assert set(cases) == {r.id for r in report.results}
    assert sum(s.tests for s in suites) == 6
    assert sum(s.failures for s in suites) == 1
    assert sum(s.errors for s in suites) == 1
    assert sum(s.skipped for s in suites) == 1

    def kinds(check_id: str) -> list[type]:
        return [type(r) for r in cases[check_id][1].result]

    assert kinds("cfg.batch.divides") == [Failure]
    assert kinds("net.ib.bandwidth") == [Error]
    assert kinds("data.dedup") == [Skipped]
    assert kinds("hw.gpu.count") == kinds("hw.disk.free") == kinds("data.leak") == []
    assert cases["cfg.batch.divides"][1].classname == "preflight.config"

    failure = cases["cfg.batch.divides"][1].result[0]
    assert failure.type == "fail"
    assert "fix: set training.batch_size" in failure.text
    assert "expected: batch_size % world_size == 0" in failure.text
    assert cases["data.dedup"][1].result[0].message == "no dataset configured"
    assert "WARNING" in cases["hw.disk.free"][1].system_out
    assert WAIVER["reason"] in cases["data.leak"][1].system_out

    props = {p.name: p.value for p in suites[0].properties()}
    assert props["spec_sha256"] == SHA and props["tool_version"] == "0.1.0"


def test_junit_warning_fails_under_fail_on_warn() -> None:
    cases = _cases(out(make_report([Status.PASS, Status.WARN], fail_on="warn"), "junit"))
    assert [type(r) for r in cases["hw.disk.free"].result] == [Failure]
    assert cases["hw.disk.free"].result[0].type == "warn"


def test_junit_survives_control_characters() -> None:
    report = make_report([Status.FAIL])
    report.results[0].found = "\x1b[31mred\x1b[0m and a NUL \x00 byte"
    cases = _cases(out(report, "junit"))
    assert "red and a NUL" in cases["cfg.batch.divides"].result[0].text


# GitHub -----------------------------------------------------------------------------------------

def test_github_annotations() -> None:
    text = out(make_report(), "github")
    lines = text.splitlines()
    errors = [line for line in lines if line.startswith("::error ")]
    assert len(errors) == 2  # one fail, one error
    fail_line = next(line for line in errors if "title=cfg.batch.divides" in line)
    # the multi-line found is one escaped line; properties escape ':' and ','
    assert "found batch_size 100 | world_size 8%0Aremainder 4" in fail_line
    assert "file=examples/grpo.yaml" in fail_line
    assert fail_line.endswith("Fix: set training.batch_size to a multiple of 8, e.g. 96 or 104")
    assert "::Batch divides world size: found" in fail_line

    warnings = [line for line in lines if line.startswith("::warning ")]
    assert len(warnings) == 2  # the warning and the waived check
    waived = next(line for line in warnings if "title=data.leak" in line)
    assert f"waived: {WAIVER['reason']}" in waived

    notices = [line for line in lines if line.startswith("::notice ")]
    assert len(notices) == 1 and "gate: FAILED" in notices[0]
    assert markdown_summary(make_report()).strip() in text  # the summary follows


def test_github_escaping() -> None:
    assert escape_data("100%\r\nnext") == "100%25%0D%0Anext"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"
    report = make_report([Status.ERROR])
    report.results[0].id = "net.ib:bw,x"
    line = next(x for x in out(report, "github").splitlines() if x.startswith("::error"))
    assert line.startswith("::error title=net.ib%3Abw%2Cx,file=examples/grpo.yaml::")


def test_github_warn_is_an_error_under_fail_on_warn() -> None:
    text = out(make_report([Status.PASS, Status.WARN], fail_on="warn"), "github")
    assert any(x.startswith("::error title=hw.disk.free") for x in text.splitlines())


# Markdown ---------------------------------------------------------------------------------------

def test_markdown_table_row_per_check() -> None:
    report = make_report()
    text = out(report, "markdown")
    assert text.startswith("## Preflight gate: FAILED")
    assert "| status | check | found | expected | fix |" in text
    rows = [line for line in text.splitlines() if re.match(r"\| (PASS|WARN|FAIL|ERROR|SKIP|WAIVED) \| `", line)]
    assert len(rows) == len(report.results)
    fail_row = next(r for r in rows if "cfg.batch.divides" in r)
    assert "batch_size 100 \\| world_size 8<br>remainder 4" in fail_row
    # escaped pipes do not add columns: 5 cells, 6 unescaped pipes
    assert len(re.findall(r"(?<!\\)\|", fail_row)) == 6
    waived_row = next(r for r in rows if r.startswith("| WAIVED"))
    assert f"waived: {WAIVER['reason']}" in waived_row
    assert "| FAIL | 1 |" in text and "| WAIVED | 1 |" in text


# Text -------------------------------------------------------------------------------------------

def test_text_groups_by_item_and_explains_problems() -> None:
    text = out(make_report(), "text")
    lines = text.splitlines()
    headers = [line for line in lines if " — " in line and line.split(" — ")[-1] in
               {"PASS", "WARN", "FAIL", "ERROR", "SKIP", "WAIVED"}]
    assert headers == ["Hardware fits the run [hardware] — WARN", "Config is consistent [config] — FAIL",
                       "Data is clean [data] — WAIVED", "Cluster is healthy [cluster] — ERROR"]
    fail_at = next(i for i, line in enumerate(lines) if line.lstrip().startswith("FAIL") and "cfg." in line)
    block = lines[fail_at + 1: fail_at + 5]
    assert block[0].strip() == "expected: batch_size % world_size == 0"
    assert block[1].strip().startswith("found: batch_size 100")
    assert any(x.strip().startswith("fix: set training.batch_size") for x in block)
    assert ("waived: val split is reused on purpose (by alice, expires 2099-01-01, was fail)"
            in " ".join(x.strip() for x in lines))
    assert not ANSI.search(text)
    assert all(len(line) <= 100 for line in lines)


def _verdict(text: str) -> str:
    """The gate verdict: the last paragraph of the text report, unwrapped."""
    return " ".join(line.strip() for line in text.rstrip().split("\n\n")[-1].splitlines())


def test_text_verdict_lines() -> None:
    failing = out(make_report(), "text")
    assert _verdict(failing) == ("gate: FAILED — 1 failed, 1 error, 1 warning, 1 waived, 1 passed, "
                                 "1 skipped (spec examples/grpo.yaml, sha256 abababab…)")
    passing = out(make_report([Status.PASS, Status.WARN, Status.SKIP]), "text")
    assert _verdict(passing).startswith("gate: PASSED — 1 warning, 1 passed, 1 skipped (spec")
    strict = out(make_report([Status.PASS, Status.WARN], fail_on="warn"), "text")
    assert _verdict(strict).startswith("gate: FAILED — 1 warning, 1 passed; warnings block (fail-on warn)")
    empty = out(make_report([]), "text")
    assert _verdict(empty).startswith("gate: PASSED — no checks ran")


def test_text_colour_only_when_asked() -> None:
    report = make_report()
    assert not ANSI.search(out(report, "text"))
    coloured = out(report, "text", color=True)
    assert "\x1b[31mFAIL" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == out(report, "text")


def test_text_fits_100_columns_and_verbose_shows_evidence() -> None:
    report = make_report([Status.PASS, Status.FAIL])
    report.results[0].found = "x" * 300
    report.results[1].found = "y" * 300
    text = out(report, "text")
    assert all(len(line) <= 100 for line in text.splitlines())
    assert "…" in text
    assert text.count("y") >= 300  # the failing check's found is wrapped, not lost
    assert "evidence" not in text
    verbose = out(report, "text", verbose=True)
    assert "evidence:" in verbose and '"H100"' in verbose
    assert all(len(line) <= 100 for line in verbose.splitlines())


def test_text_shows_notes() -> None:
    report = make_report([Status.PASS])
    report.results[0].note = "a waiver exists but the check passes; the waiver can be removed"
    assert "note: a waiver exists but the check passes" in out(report, "text")
