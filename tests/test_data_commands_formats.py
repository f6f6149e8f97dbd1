"""`preflight data clean` and `data split` read a trainer's format as `preflight check` does.

A verl Parquet file keeps its answer at reward_model.ground_truth and its prompt as chat messages:
cleaning must keep its good rows (not quarantine every one as missing an answer), and splitting
must find every row's prompt and answer and write the answer back where the format keeps it (the
prompt is written as its text: the user turns).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_layouts import canonical_rows, prompts, write_split

from preflight.cli import main


@pytest.mark.parametrize("layout", ["verl", "openrlhf", "plain"])
def test_data_clean_keeps_the_good_rows_of_a_trainers_format(layout: str, tmp_path: Path, capsys) -> None:
    rows = canonical_rows(prompts(40))
    rows[3]["answer"] = ""  # one bad row: an empty answer
    source = write_split(tmp_path / f"in.{'parquet' if layout == 'verl' else 'jsonl'}", rows, layout)
    assert main(["data", "clean", str(source), "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    clean = (tmp_path / "out" / "clean.jsonl").read_text(encoding="utf-8").splitlines()
    quarantine = [json.loads(x) for x in (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines()]
    assert len(clean) == 39
    assert [q["reason"] for q in quarantine] == ["empty:answer"], quarantine


def test_data_split_of_a_verl_file_writes_verl_rows(tmp_path: Path, capsys) -> None:
    rows = canonical_rows(prompts(60))
    source = write_split(tmp_path / "all.parquet", rows, "verl")
    assert main(["data", "split", str(source), "--out", str(tmp_path / "out"), "--stratify-by", "none"]) == 0
    capsys.readouterr()
    written = [json.loads(line) for name in ("train", "val", "test")
               for line in (tmp_path / "out" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(written) == 60
    answers = {r["answer"] for r in rows}
    for row in written:
        assert row["reward_model"]["ground_truth"] in answers  # nested again, where verl reads it
        assert row["prompt"]  # the prompt text
