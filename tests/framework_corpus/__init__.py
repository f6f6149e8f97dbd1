"""Misconfigurations of verl, TRL and OpenRLHF runs reconstructed from public issue threads.

Each framework's cases live in their own module here (``verl``, ``trl``, ``openrlhf``) as a list
``CASES`` of ``CorpusCase``: the launch script or configuration as a user would have written it, the
thread it comes from, and the check that must block it at ``--level static``, before any GPU work.
The tests (tests/test_framework_corpus_*.py) and bench/bench_framework_gate.py both read them.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from preflight.yamlio import dump_yaml


@dataclass(frozen=True)
class CorpusCase:
    id: str  # a short slug, unique across the corpus
    framework: str  # verl | trl | openrlhf
    thread: str  # the public thread it is reconstructed from, e.g. "huggingface/trl#2858"
    symptom: str  # what the framework did, in the thread's words
    source_name: str  # the file name the source is written as (run.sh, grpo.yaml, ...)
    source: str  # the launch script or configuration, as a user would write it
    blocked_by: str  # the check id that must block it (status fail or error, exit 1)
    # writes what the source refers to (data files, an accelerate config, a model folder) under
    # the given directory, which is also $HOME for the import
    files: Callable[[Path], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # anything a framework's own validation needs


def import_case(case: CorpusCase, root: Path) -> Path:
    """Write the case's files under ``root``, import its source with the framework's importer and
    write the spec; returns the spec's path."""
    if case.files is not None:
        case.files(root)
    source = root / case.source_name
    source.write_text(case.source, encoding="utf-8")
    importer = importlib.import_module(f"preflight.frameworks.{case.framework}")
    # extra["version"]: the framework version whose defaults the case's source was written for
    imported = importer.import_source(source, environ={"HOME": str(root)}, version=case.extra.get("version"))
    spec = root / "spec.yaml"
    # written as `preflight import` writes it (dump_yaml quotes what YAML 1.2 would read as a number)
    spec.write_text(dump_yaml(imported.spec), encoding="utf-8")
    return spec


def check_case(case: CorpusCase, root: Path) -> tuple[int, dict[str, Any]]:
    """Import the case and run ``preflight check --level static``; the exit code and the JSON report."""
    from preflight.cli import main  # the CLI imports every check module; only the tests need it

    spec = import_case(case, root)
    report_path = root / "report.json"
    code = main(["check", str(spec), "--level", "static", "--format", "json", "--output", str(report_path)])
    return code, json.loads(report_path.read_text(encoding="utf-8"))


def blocking_ids(report: dict[str, Any]) -> set[str]:
    return {r["id"] for r in report["results"] if r["status"] in ("fail", "error")}
