"""The cleaner: every dropped line is quarantined with its line and reason; nothing is lost."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from data_factory import run_data_cli

from preflight.arithmetic import generate
from preflight.data.clean import clean_file
from preflight.errors import InputFileError, UsageError

LONG = " ".join(f"word{i}" for i in range(200)) + " how many?"




def enc(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def planted() -> tuple[list[bytes], dict[int, str], list[int]]:
    """Input lines, the expected reason per 1-based line, and the lines that must stay clean."""
    good = [enc(r) for r in generate(40, seed=8)]
    first = json.loads(good[0])
    lines: list[tuple[bytes, str]] = [
        (good[0], ""),
        (b'{"prompt": "unfinished", "answer": ', "bad-json"),
        (b'{"prompt": "caf\xe9 au lait", "answer": "3"}', "undecodable"),
        (enc({"prompt": "How many owls are in 3 trees of 4 owls each?"}), "missing:answer"),
        (enc({"prompt": "   ", "answer": "1"}), "empty:prompt"),
        (b"", ""),  # blank: skipped, in neither file
        (enc({**first, "id": "copy", "prompt": "  " + first["prompt"].upper()}), "duplicate"),
        (enc({"prompt": LONG, "answer": "1"}), "too-long"),
        (enc({"prompt": "What the damn total of 2 and 2 is?", "answer": "4"}), "lexicon"),
        (b"[1, 2, 3]", "bad-json"),
        (enc({"prompt": "A list for an answer: 5 + 5?", "answer": [10]}), "wrong-type:answer"),
        (enc({"prompt": "Odd level: 6 + 1?", "answer": "7", "difficulty": {"level": 1}}), "wrong-type:difficulty"),
        (enc({"prompt": "A number answer is fine: 40 + 2?", "answer": 42}), ""),
        (b"   \t", ""),  # blank too
    ]
    lines += [(g, "") for g in good[1:]]
    expected = {n: reason for n, (_, reason) in enumerate(lines, start=1) if reason}
    blank = {6, 14}
    clean = [n for n, (_, reason) in enumerate(lines, start=1) if not reason and n not in blank]
    return [line for line, _ in lines], expected, clean


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def read_quarantine(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "quarantine.jsonl").read_text("utf-8").splitlines()]


def test_every_planted_problem_is_quarantined_with_its_line_and_reason(tmp_path: Path) -> None:
    lines, expected, clean_lines = planted()
    source = write_lines(tmp_path / "data.jsonl", lines)
    summary = clean_file(source, tmp_path / "out", None, "math", max_prompt_tokens=128, lexicon={"damn"})

    quarantine = read_quarantine(tmp_path / "out")
    assert {q["line"]: q["reason"] for q in quarantine} == expected
    assert [q["line"] for q in quarantine] == sorted(expected)  # in input order
    by_line = {q["line"]: q for q in quarantine}
    for n in (2, 3, 10):  # not rows: the raw text, decoded with replacement characters
        assert "row" not in by_line[n] and by_line[n]["raw"] == lines[n - 1].decode("utf-8", "replace")
    assert by_line[3]["raw"] == "{\"prompt\": \"caf\ufffd au lait\", \"answer\": \"3\"}"
    assert "not a JSON object" in by_line[10]["detail"]
    for n in (4, 5, 7, 8, 9, 11, 12):  # rows: the original object
        assert by_line[n]["row"] == json.loads(lines[n - 1])
    assert by_line[7]["duplicate_of"] == 1 and "line 1" in by_line[7]["detail"]
    assert "tokens > 128" in by_line[8]["detail"] and "(estimated)" in by_line[8]["detail"]
    assert by_line[9]["detail"] == "lexicon hit: damn"

    clean = (tmp_path / "out" / "clean.jsonl").read_bytes().splitlines()
    assert clean == [lines[n - 1] for n in clean_lines]  # intact, byte for byte, in order
    non_blank = sum(1 for line in lines if line.strip(b" \t\r"))
    assert len(clean) + len(quarantine) == non_blank
    assert summary["lines"] == non_blank
    assert summary["clean"] == len(clean) and summary["quarantined"] == len(quarantine)
    assert summary["reasons"]["bad-json"] == 2 and sum(summary["reasons"].values()) == len(quarantine)
    assert summary["filters"][0] == "format" and any("lexicon" in f for f in summary["filters"])


def test_pyarrow_fast_path_rows_get_the_same_labels(tmp_path: Path) -> None:
    # No undecodable or invalid line: the reader parses the block with pyarrow, not line by line.
    rows = [{"prompt": f"Question {i}: what is {i} + {i}?", "answer": str(2 * i)} for i in range(30)]
    rows[5] = {"prompt": "no answer here"}
    rows[9] = {"prompt": "", "answer": "1"}
    rows[12] = {"prompt": "Question 3: what is 3 + 3?", "answer": "6"}  # duplicate of row 4
    source = write_lines(tmp_path / "fast.jsonl", [enc(r) for r in rows])
    clean_file(source, tmp_path / "out", None, "math")
    got = {q["line"]: (q["reason"], q.get("duplicate_of")) for q in read_quarantine(tmp_path / "out")}
    assert got == {6: ("missing:answer", None), 10: ("empty:prompt", None), 13: ("duplicate", 4)}


def test_first_valid_occurrence_is_the_one_kept(tmp_path: Path) -> None:
    lines = [enc({"prompt": "Shared prompt about 9 cats"}),  # missing answer: quarantined for that
             enc({"prompt": "shared   PROMPT about 9 cats", "answer": "9"}),  # the first valid: kept
             enc({"prompt": "Shared prompt about 9 cats", "answer": "9"}),
             enc({"prompt": LONG, "answer": "1"}),
             enc({"prompt": LONG, "answer": "2"})]  # too long as well, not a duplicate of a dropped row
    source = write_lines(tmp_path / "d.jsonl", lines)
    clean_file(source, tmp_path / "out", None, "math", max_prompt_tokens=100)
    got = {q["line"]: q["reason"] for q in read_quarantine(tmp_path / "out")}
    assert got == {1: "missing:answer", 3: "duplicate", 4: "too-long", 5: "too-long"}
    assert (tmp_path / "out" / "clean.jsonl").read_bytes().splitlines() == [lines[1]]

    summary = clean_file(source, tmp_path / "keep", None, "math", dedupe=False)
    assert summary["reasons"] == {"missing:answer": 1} and summary["clean"] == 4


def test_gzip_input_and_custom_fields(tmp_path: Path) -> None:
    rows = [{"q": r["prompt"], "a": r["answer"]} for r in generate(20, seed=1)]
    rows.append({"q": "no answer"})
    source = tmp_path / "d.jsonl.gz"
    with gzip.open(source, "wb") as fh:
        fh.write(b"".join(enc(r) + b"\n" for r in rows))
    summary = clean_file(source, tmp_path / "out", {"prompt": "q", "answer": "a"}, "math")
    assert summary["clean"] == 20 and summary["reasons"] == {"missing:answer": 1}
    assert read_quarantine(tmp_path / "out")[0] == {"line": 21, "reason": "missing:answer",
                                                    "detail": "no answer (field 'a' absent or null)",
                                                    "row": {"q": "no answer"}}


def test_chat_and_code_domains(tmp_path: Path) -> None:
    chats = [
        {"messages": [{"role": "user", "content": "hi, what is 2+2?"}, {"role": "assistant", "content": "4"}]},
        {"messages": [{"role": "robot", "content": "beep"}]},
        {"messages": [{"role": "assistant", "content": "only me"}]},
        {"messages": []},
        {"messages": "not a list"},
    ]
    summary = clean_file(write_lines(tmp_path / "chat.jsonl", [enc(c) for c in chats]), tmp_path / "c", None, "chat")
    got = {q["line"]: q["reason"] for q in read_quarantine(tmp_path / "c")}
    assert got == {2: "bad-role", 3: "empty:prompt", 4: "empty:messages", 5: "wrong-type:messages"}
    assert summary["clean"] == 1

    code = [{"prompt": "write add(a, b)", "tests": ["assert add(1, 2) == 3"]},
            {"prompt": "write sub(a, b)", "tests": []},
            {"prompt": "write mul(a, b)", "tests": "assert mul(2, 3) == 6"}]
    clean_file(write_lines(tmp_path / "code.jsonl", [enc(c) for c in code]), tmp_path / "k", None, "code")
    assert {q["line"]: q["reason"] for q in read_quarantine(tmp_path / "k")} == {2: "empty:tests"}


def test_parquet_input(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"question": ["What is 1 + 1?", "What is 2 + 2?", None, "what is 1 + 1?", "   "],
                      "solution": [2, 4, 6, 2, 1], "extra": ["a", "b", "c", "d", "e"]})
    pq.write_table(table, tmp_path / "d.parquet")
    summary = clean_file(tmp_path / "d.parquet", tmp_path / "out", {"prompt": "question", "answer": "solution"},
                         "math")
    assert summary["format"] == "parquet" and summary["lines"] == 5
    clean = [json.loads(x) for x in (tmp_path / "out" / "clean.jsonl").read_text("utf-8").splitlines()]
    assert clean == [{"question": "What is 1 + 1?", "solution": 2, "extra": "a"},  # the rows as the file holds them
                     {"question": "What is 2 + 2?", "solution": 4, "extra": "b"}]
    q = read_quarantine(tmp_path / "out")
    assert [(x["line"], x["reason"]) for x in q] == [(3, "missing:prompt"), (4, "duplicate"), (5, "empty:prompt")]
    assert q[0]["row"] == {"question": None, "solution": 6, "extra": "c"}  # the original row


def test_clean_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines, expected, _ = planted()
    source = write_lines(tmp_path / "data.jsonl", lines)
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("# my list\ndamn\n", encoding="utf-8")
    assert run_data_cli("clean", str(source), "--out", str(tmp_path / "o"), "--max-prompt-tokens", "128",
                   "--lexicon", str(lexicon)) == 0
    out = capsys.readouterr().out
    assert "quarantine" in out and "lexicon: 1" in out and "too-long: 1" in out
    assert {q["line"] for q in read_quarantine(tmp_path / "o")} == set(expected)

    # From a spec: its field names and quality checks (here no toxicity filtering, no lengths).
    spec = tmp_path / "run.yaml"
    spec.write_text("run: {name: c}\ndata:\n  quality_checks: [duplicate_detection]\n", encoding="utf-8")
    assert run_data_cli("clean", str(source), "--out", str(tmp_path / "s"), "--spec", str(spec)) == 0
    reasons = {q["reason"] for q in read_quarantine(tmp_path / "s")}
    assert "duplicate" in reasons and "lexicon" not in reasons and "too-long" not in reasons

    with pytest.raises(InputFileError):
        run_data_cli("clean", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "x"))
    with pytest.raises(InputFileError):
        run_data_cli("clean", str(source), "--out", str(tmp_path / "x"), "--lexicon", str(tmp_path / "none.txt"))
    with pytest.raises(UsageError):
        run_data_cli("clean", str(source), "--out", str(tmp_path / "x"), "--max-prompt-tokens", "0")
    lfs = write_lines(tmp_path / "lfs.jsonl", [b"version https://git-lfs.github.com/spec/v1", b"oid sha256:abc"])
    with pytest.raises(InputFileError, match="LFS"):
        run_data_cli("clean", str(lfs), "--out", str(tmp_path / "x"))
    inside = write_lines(tmp_path / "w" / "clean.jsonl", lines[:1])
    with pytest.raises(UsageError, match="input file"):
        run_data_cli("clean", str(inside), "--out", str(tmp_path / "w"))


@pytest.mark.parametrize("content", [None, '{"a": 1'])
def test_a_missing_or_broken_tokenizer_is_a_file_error_naming_it(tmp_path, content):
    pytest.importorskip("tokenizers")
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "what is 2+2?", "answer": "4"}\n', encoding="utf-8")
    tok = tmp_path / "tokenizer.json"
    if content is not None:
        tok.write_text(content, encoding="utf-8")
    with pytest.raises(InputFileError) as info:
        run_data_cli("clean", str(source), "--out", str(tmp_path / "o"), "--max-prompt-tokens", "10",
                     "--tokenizer", str(tok))
    assert info.value.file == str(tok) and info.value.hint


def test_clean_without_a_spec_applies_the_default_lexicon_of_check_unless_told_none(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"prompt": "what the fuck is 2+2?", "answer": "4"}\n'
                      '{"prompt": "a pot of 3 kg fat, 2 kg more?", "answer": "5"}\n', encoding="utf-8")
    assert run_data_cli("clean", str(source), "--out", str(tmp_path / "o")) == 0
    q = read_quarantine(tmp_path / "o")
    assert [(x["line"], x["reason"], x["detail"]) for x in q] == [(1, "lexicon", "lexicon hit: fuck")]
    assert run_data_cli("clean", str(source), "--out", str(tmp_path / "n"), "--lexicon", "none") == 0
    assert read_quarantine(tmp_path / "n") == []
