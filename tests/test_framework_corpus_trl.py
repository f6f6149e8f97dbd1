"""The TRL corpus: each misconfiguration from a public thread is blocked at --level static by the
check that names its cause."""

from __future__ import annotations

from pathlib import Path

import pytest
from framework_corpus import blocking_ids, check_case
from framework_corpus.trl import CASES


def test_the_corpus_has_at_least_eight_distinct_threads() -> None:
    assert len(CASES) >= 8 and len({c.id for c in CASES}) == len(CASES)
    assert all(c.thread and c.symptom for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_case_is_blocked_by_its_check(case, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, report = check_case(case, tmp_path)
    assert code == 1, f"{case.thread}: not blocked"
    assert case.blocked_by in blocking_ids(report), (case.thread, blocking_ids(report))
