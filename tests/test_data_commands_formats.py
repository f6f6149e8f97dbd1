"""`preflight data clean` and `data split` read a trainer's format as `preflight check` does.

A verl Parquet file keeps its answer at reward_model.ground_truth and its prompt as chat messages:
cleaning must keep its good rows (not quarantine every one as missing an answer), and splitting
must find every row's prompt and answer and write each row back as the file holds it (a chat
prompt stays a list of messages).
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
    if layout == "verl":  # rows come out as verl reads them: the prompt a message list
        assert all(isinstance(json.loads(line)["prompt"], list) for line in clean)


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
        assert row["reward_model"]["ground_truth"] in answers  # nested, where verl reads it
        # the prompt stays verl's list of chat messages, and the other columns come along
        assert isinstance(row["prompt"], list) and row["prompt"][-1]["role"] == "user"
        assert set(row) >= {"prompt", "reward_model", "data_source", "extra_info"}


def _odd_named_rows(tmp_path: Path) -> Path:
    """Rows whose columns are not where any preset looks: the question under `question`, the
    answer nested under `meta.solution` (as many hub datasets lay them out)."""
    path = tmp_path / "odd.jsonl"
    rows = [{"question": p, "meta": {"solution": str(i)}} for i, p in enumerate(prompts(30))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_data_clean_that_keeps_no_row_fails_and_says_how_to_name_the_fields(tmp_path: Path, capsys) -> None:
    source = _odd_named_rows(tmp_path)
    assert main(["data", "clean", str(source), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "every row was quarantined" in err and "--field COLUMN=PATH" in err
    # nothing is lost: every line is in the quarantine with its reason
    assert len((tmp_path / "out" / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()) == 30


def test_data_clean_and_split_read_fields_named_on_the_command_line(tmp_path: Path, capsys) -> None:
    source = _odd_named_rows(tmp_path)
    flags = ["--format", "plain", "--field", "prompt=question", "--field", "answer=meta.solution"]
    assert main(["data", "clean", str(source), "--out", str(tmp_path / "clean"), *flags]) == 0
    assert len((tmp_path / "clean" / "clean.jsonl").read_text(encoding="utf-8").splitlines()) == 30
    assert main(["data", "split", str(source), "--out", str(tmp_path / "split"), "--stratify-by", "none",
                 *flags]) == 0
    capsys.readouterr()
    written = [json.loads(line) for name in ("train", "val", "test")
               for line in (tmp_path / "split" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(written) == 30 and all(r["meta"]["solution"] for r in written)


@pytest.mark.parametrize("bad", ["answer", "answer=", "result=x"])
def test_a_malformed_field_flag_is_a_usage_error_naming_the_columns(bad: str, tmp_path: Path, capsys) -> None:
    source = _odd_named_rows(tmp_path)
    assert main(["data", "clean", str(source), "--out", str(tmp_path / "out"), "--field", bad]) == 2
    err = capsys.readouterr().err
    assert f"--field {bad!r}" in err and "prompt, answer, tests" in err
