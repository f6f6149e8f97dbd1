"""The verl corpus: misconfigurations from public threads, each blocked by the right check at
--level static, before any GPU work."""

from __future__ import annotations

from pathlib import Path

import pytest
from framework_corpus import blocking_ids, check_case
from framework_corpus.verl import CASES


def test_the_corpus_has_at_least_ten_cases_each_naming_its_thread() -> None:
    assert len(CASES) >= 10
    assert len({c.id for c in CASES}) == len(CASES)
    assert all("#" in c.thread and c.framework == "verl" for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_verl_misconfiguration_is_blocked_by_its_check(case, tmp_path: Path) -> None:
    code, report = check_case(case, tmp_path)
    blocked = blocking_ids(report)
    found = {r["id"]: r["found"] for r in report["results"] if r["id"] in blocked}
    assert code == 1 and case.blocked_by in blocked, (case.thread, found)
