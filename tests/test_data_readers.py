"""The dataset readers: every format into the same canonical table, every format problem counted
and located, files that are no dataset refused with a reason, and the pyarrow fast path used (and
agreeing with the line-by-line path) for JSON Lines."""

from __future__ import annotations

import gzip
import json
import os
import random
import unicodedata
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from data_factory import jsonl_bytes, write_hf, write_jsonl, write_jsonl_gz, write_parquet
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from preflight.data import readers
from preflight.data.model import CANONICAL_COLUMNS, MAX_EXAMPLES, DataFileError, SplitTable
from preflight.data.normalize import normalize_array, normalize_text
from preflight.data.readers import json_string_array, read_split

MATH_ROWS = [
    {"id": "r1", "prompt": "What is 2+2?", "answer": "4", "difficulty": 1},
    {"id": "r2", "prompt": "Ünïcödé: what is 3·3?", "answer": "9", "difficulty": 2},
    {"id": "r3", "prompt": "Line one\nline two", "answer": "x = \"quoted\"", "difficulty": 3},
]
MATH_EXPECTED = [
    {"_line": i + 1, "prompt": r["prompt"], "answer": r["answer"], "tests": None, "messages": None,
     "difficulty": str(r["difficulty"]), "id": r["id"], "conversation": None}
    for i, r in enumerate(MATH_ROWS)
]
CHAT_ROWS = [
    {"id": "c1", "messages": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Hi there"},
                              {"role": "assistant", "content": "Hello \"you\"\n"},
                              {"role": "user", "content": "Add 1+1"}]},
    {"id": "c2", "messages": [{"role": "user", "content": "Només una"}]},
]
CODE_ROWS = [
    {"id": "k1", "prompt": "Write f", "tests": ["assert f(1) == 2", "assert f('a\\n') == \"b\""]},
    {"id": "k2", "prompt": "Write g", "tests": ["assert g() is None"]},
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def read(path: Path, domain: str = "math", **kw: Any) -> SplitTable:
    return read_split(path, "train", kw.pop("fields", {}), domain, **kw)


def counts(split: SplitTable) -> dict[str, int]:
    return {k: p.count for k, p in split.problems.items()}


def where(split: SplitTable, kind: str) -> list[int]:
    """The line numbers in a problem's examples."""
    return [int(e.split(": ", 1)[0].rsplit(":", 1)[1]) for e in split.problems[kind].examples]


def rows(split: SplitTable) -> list[dict[str, Any]]:
    return split.table.to_pylist()


def write_all_formats(tmp_path: Path, data: list[dict[str, Any]]) -> dict[str, Path]:
    return {
        "jsonl": write_jsonl(tmp_path / "d.jsonl", data),
        "gz": write_jsonl_gz(tmp_path / "d.jsonl.gz", data),
        "parquet": write_parquet(tmp_path / "d.parquet", data),
        "hf": write_hf(tmp_path / "hf", data),
    }


# ---------------------------------------------------------------------------------------------
# formats round-trip


def test_every_format_reads_into_the_same_canonical_table(tmp_path: Path) -> None:
    for kind, path in write_all_formats(tmp_path, MATH_ROWS).items():
        split = read(path)
        assert split.table.schema.names == list(CANONICAL_COLUMNS), kind
        assert split.table.schema.field("_line").type == pa.int64()
        assert all(split.table.schema.field(c).type == pa.string() for c in CANONICAL_COLUMNS[1:])
        assert rows(split) == MATH_EXPECTED, kind
        assert split.problems == {}, kind
        assert split.rows == split.rows_seen == 3


def test_chat_rows_round_trip_with_prompt_from_user_turns(tmp_path: Path) -> None:
    expected_prompts = ["Hi there\nAdd 1+1", "Només una"]
    for kind, path in write_all_formats(tmp_path, CHAT_ROWS).items():
        split = read(path, "chat")
        assert split.problems == {}, kind
        got = rows(split)
        assert [r["prompt"] for r in got] == expected_prompts, kind
        assert [r["messages"] for r in got] == [json.dumps(r["messages"], ensure_ascii=False)
                                                for r in CHAT_ROWS], kind
        assert [r["id"] for r in got] == ["c1", "c2"]


def test_code_tests_lists_become_their_json_text(tmp_path: Path) -> None:
    for kind, path in write_all_formats(tmp_path, CODE_ROWS).items():
        split = read(path, "code")
        assert split.problems == {}, kind
        assert [r["tests"] for r in rows(split)] == [json.dumps(r["tests"], ensure_ascii=False)
                                                     for r in CODE_ROWS], kind
        assert [r["prompt"] for r in rows(split)] == ["Write f", "Write g"]


def test_tests_given_as_a_string_are_kept_as_is(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"prompt": "p", "tests": "assert True"},
                                              {"prompt": "q", "tests": ["a"]}])
    split = read(path, "code")
    assert [r["tests"] for r in rows(split)] == ["assert True", '["a"]']
    assert split.problems == {}


def test_field_names_are_mapped(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", [{"question": "q?", "solution": 7, "level": "hard", "uid": 5}])
    split = read(path, fields={"prompt": "question", "answer": "solution", "difficulty": "level", "id": "uid"})
    assert rows(split) == [{"_line": 1, "prompt": "q?", "answer": "7", "tests": None, "messages": None,
                            "difficulty": "hard", "id": "5", "conversation": None}]


def test_unknown_suffix_is_sniffed(tmp_path: Path) -> None:
    as_jsonl = tmp_path / "data.txt"
    as_jsonl.write_bytes(jsonl_bytes(MATH_ROWS))
    as_parquet = write_parquet(tmp_path / "data.bin", MATH_ROWS)
    as_gzip = write_jsonl_gz(tmp_path / "data.dat", MATH_ROWS)
    for path in (as_jsonl, as_parquet, as_gzip):
        assert rows(read(path)) == MATH_EXPECTED, path
    other = tmp_path / "data.csv"
    other.write_text("prompt,answer\nq,a\n")
    with pytest.raises(DataFileError) as err:
        read(other)
    assert "supported" in err.value.hint and "Parquet" in err.value.hint


# ---------------------------------------------------------------------------------------------
# line numbers and problems


def test_line_numbers_stay_true_across_blank_lines_and_bad_lines(tmp_path: Path) -> None:
    lines: list[Any] = ["", MATH_ROWS[0], "   ", "\t", b"\xff\xfe not utf-8", MATH_ROWS[1], "",
                        "{not json", MATH_ROWS[2], ""]
    for newline in ("\n", "\r\n"):
        path = write_jsonl(tmp_path / "l.jsonl", lines, newline=newline)
        split = read(path)
        assert [r["_line"] for r in rows(split)] == [2, 6, 9]
        assert counts(split) == {"undecodable": 1, "bad-json": 1}
        assert where(split, "undecodable") == [5] and where(split, "bad-json") == [8]
        assert split.rows_seen == 5  # blank lines are not rows


def test_blank_lines_alone_keep_the_fast_path_numbering(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "b.jsonl", ["", MATH_ROWS[0], "", "  ", MATH_ROWS[1], "\r", MATH_ROWS[2]])
    split = read(path)
    assert [r["_line"] for r in rows(split)] == [2, 5, 7]
    assert split.problems == {}


def test_each_problem_is_counted_exactly_and_located(tmp_path: Path) -> None:
    good = {"prompt": "fine", "answer": "1"}
    lines: list[Any] = [
        good,                                          # 1
        b'{"prompt": "caf\xe9", "answer": "1"}',       # 2 latin-1 byte: undecodable
        "[1, 2, 3]",                                   # 3 not an object
        {"prompt": 17, "answer": "1"},                 # 4 number prompt
        {"prompt": "list answer", "answer": [1, 2]},   # 5
        {"prompt": "no answer"},                       # 6
        {"prompt": "null answer", "answer": None},     # 7
        {"prompt": "   \n\t", "answer": "1"},          # 8 empty prompt
        {"prompt": "", "answer": "1"},                 # 9 empty prompt
        {"prompt": "empty answer", "answer": ""},      # 10
        {"prompt": {"text": "obj"}, "answer": "1"},    # 11 object prompt
        good,                                          # 12
        '"just a string"',                             # 13 not an object
        '{"prompt": "cut", "answer": "1', # 14 truncated last line (no newline)
    ]
    path = write_jsonl(tmp_path / "p.jsonl", lines, trailing_newline=False)
    split = read(path)
    assert counts(split) == {
        "undecodable": 1, "bad-json": 3, "wrong-type:prompt": 2, "wrong-type:answer": 1,
        "missing:answer": 2, "empty:prompt": 2, "empty:answer": 1,
    }
    assert where(split, "undecodable") == [2]
    assert where(split, "bad-json") == [3, 13, 14]
    assert "truncated" in split.problems["bad-json"].examples[-1]
    assert "not a JSON object" in split.problems["bad-json"].examples[0]
    assert where(split, "wrong-type:prompt") == [4, 11]
    assert "prompt is a number" in split.problems["wrong-type:prompt"].examples[0]
    assert where(split, "wrong-type:answer") == [5]
    assert where(split, "missing:answer") == [6, 7]
    assert where(split, "empty:prompt") == [8, 9]
    assert where(split, "empty:answer") == [10]
    # every line that is a JSON object stays a row; the bad field is null
    assert [r["_line"] for r in rows(split)] == [1, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    by_line = {r["_line"]: r for r in rows(split)}
    assert by_line[4]["prompt"] is None and by_line[4]["answer"] == "1"
    assert by_line[5]["answer"] is None and by_line[5]["prompt"] == "list answer"
    assert by_line[8]["prompt"] is None
    assert by_line[12] == {**by_line[1], "_line": 12}
    assert split.rows_seen == 14


def test_examples_are_capped_but_counts_are_complete(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "many.jsonl", [{"prompt": f"p{i}"} for i in range(40)])
    split = read(path)
    problem = split.problems["missing:answer"]
    assert problem.count == 40
    assert len(problem.examples) == MAX_EXAMPLES
    assert where(split, "missing:answer") == [1, 2, 3, 4, 5]
    assert problem.examples[0].startswith(f"{path}:1: ")


def test_mixed_answer_types_across_rows_all_become_text(tmp_path: Path) -> None:
    data = [{"prompt": "a", "answer": 42}, {"prompt": "b", "answer": "42"}, {"prompt": "c", "answer": 2.5},
            {"prompt": "d", "answer": True}, {"prompt": "e", "answer": 1.0}, {"prompt": "f", "answer": -7}]
    split = read(write_jsonl(tmp_path / "mix.jsonl", data))
    assert [r["answer"] for r in rows(split)] == ["42", "42", "2.5", "true", "1", "-7"]
    assert split.problems == {}


def test_numbers_in_answer_difficulty_and_id_take_the_fast_path(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    data = [{"prompt": f"p{i}", "answer": i, "difficulty": i / 2, "id": i * 1000} for i in range(50)]
    calls = count_json_loads(monkeypatch)
    split = read(write_jsonl(tmp_path / "n.jsonl", data))
    assert calls == sampled(50)
    assert [r["answer"] for r in rows(split)][:3] == ["0", "1", "2"]
    assert [r["difficulty"] for r in rows(split)][:3] == ["0", "0.5", "1"]
    assert [r["id"] for r in rows(split)][:3] == ["0", "1000", "2000"]


def test_chat_problems(tmp_path: Path) -> None:
    lines = [
        CHAT_ROWS[0],                                                               # 1
        {"messages": [{"role": "bot", "content": "x"}, {"role": "user", "content": "y"}]},  # 2 bad role
        {"messages": [{"role": "user", "content": 5}]},                            # 3 wrong type
        {"messages": "hello"},                                                      # 4 wrong type
        {"messages": []},                                                           # 5 empty
        {"id": "no messages"},                                                      # 6 missing
        {"messages": [{"role": "assistant", "content": "only me"}]},              # 7 no user text
        {"messages": [{"role": "user"}]},                                          # 8 no content
        {"messages": [{"role": "Tool", "content": "x"}]},                          # 9 bad role (case)
        CHAT_ROWS[1],                                                               # 10
    ]
    split = read(write_jsonl(tmp_path / "chat.jsonl", lines), "chat")
    assert counts(split) == {"bad-role": 2, "wrong-type:messages": 3, "empty:messages": 1,
                             "missing:messages": 1, "empty:prompt": 1}
    assert where(split, "bad-role") == [2, 9]
    assert "'bot'" in split.problems["bad-role"].examples[0]
    assert where(split, "wrong-type:messages") == [3, 4, 8]
    assert where(split, "empty:messages") == [5]
    assert where(split, "missing:messages") == [6]
    assert where(split, "empty:prompt") == [7]
    got = {r["_line"]: r for r in rows(split)}
    assert len(got) == 10
    assert got[2]["messages"] is None and got[2]["prompt"] is None
    assert got[7]["messages"] == '[{"role": "assistant", "content": "only me"}]' and got[7]["prompt"] is None
    assert got[10]["prompt"] == "Només una"


def test_code_problems(tmp_path: Path) -> None:
    lines = [
        CODE_ROWS[0],                                  # 1
        {"prompt": "p", "tests": [1, 2]},              # 2 list of numbers
        {"prompt": "p", "tests": 3},                   # 3 number
        {"prompt": "p", "tests": []},                  # 4 empty list
        {"prompt": "p", "tests": "  "},                # 5 empty string
        {"prompt": "p"},                               # 6 missing
        {"prompt": "p", "tests": ["ok", None]},        # 7 list holding null
    ]
    split = read(write_jsonl(tmp_path / "code.jsonl", lines), "code")
    assert counts(split) == {"wrong-type:tests": 3, "empty:tests": 2, "missing:tests": 1}
    assert where(split, "wrong-type:tests") == [2, 3, 7]
    assert where(split, "empty:tests") == [4, 5]
    assert where(split, "missing:tests") == [6]


def test_wrong_type_on_optional_fields_and_absence_is_fine(tmp_path: Path) -> None:
    data = [{"prompt": "a", "answer": "1", "difficulty": [1], "id": {"x": 1}}, {"prompt": "b", "answer": "2"}]
    split = read(write_jsonl(tmp_path / "o.jsonl", data))
    assert counts(split) == {"wrong-type:difficulty": 1, "wrong-type:id": 1}
    assert [r["difficulty"] for r in rows(split)] == [None, None]


def test_lone_surrogate_escape_is_bad_json(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "s.jsonl", [MATH_ROWS[0], '{"prompt": "a\\ud800b", "answer": "1"}'])
    split = read(path)
    assert counts(split) == {"bad-json": 1}
    assert where(split, "bad-json") == [2]


def test_two_objects_on_one_line_are_bad_json(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "two.jsonl", [MATH_ROWS[0], '{"prompt": "a", "answer": "1"} {"prompt": "b"}',
                                                MATH_ROWS[1]])
    split = read(path)
    assert counts(split) == {"bad-json": 1}
    assert [r["_line"] for r in rows(split)] == [1, 3]


def test_unrelated_fields_may_hold_anything_but_must_be_utf8(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    data = [{"prompt": "a", "answer": "1", "meta": 1}, {"prompt": "b", "answer": "2", "meta": {"x": [1, "y"]}},
            {"prompt": "c", "answer": "3", "meta": "text"}]
    calls = count_json_loads(monkeypatch)
    split = read(write_jsonl(tmp_path / "u.jsonl", data))
    assert calls == sampled(3) and split.problems == {} and split.rows == 3
    bad = write_jsonl(tmp_path / "u2.jsonl", [data[0], b'{"prompt": "b", "answer": "2", "meta": "\xff"}'])
    split = read(bad)
    assert counts(split) == {"undecodable": 1} and where(split, "undecodable") == [2]


def test_utf8_bom_at_the_start_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + jsonl_bytes(MATH_ROWS))
    for fast in (True, False):
        readers._FAST_JSON = fast
        try:
            assert rows(read(path)) == MATH_EXPECTED
        finally:
            readers._FAST_JSON = True


def test_row_schema_violations_are_counted(tmp_path: Path) -> None:
    schema = {"type": "object", "required": ["prompt", "answer", "source"],
              "properties": {"answer": {"type": "string", "pattern": "^[0-9]+$"}}}
    data = [{"prompt": "a", "answer": "1", "source": "s"}, {"prompt": "b", "answer": "x", "source": "s"},
            {"prompt": "c", "answer": "2"}, {"prompt": "d", "answer": "3", "source": "s"}]
    for path in (write_jsonl(tmp_path / "r.jsonl", data), write_parquet(tmp_path / "r.parquet", data)):
        split = read(path, row_schema=schema)
        assert counts(split) == {"schema": 2}, path
        assert where(split, "schema") == [2, 3]
        assert "'x' does not match" in split.problems["schema"].examples[0]
        assert "'source' is a required property" in split.problems["schema"].examples[1]
        assert split.rows == 4


def test_an_invalid_row_schema_is_refused() -> None:
    with pytest.raises(DataFileError) as err:
        read_split(Path("x.jsonl"), "train", {}, "math", {"type": 12})
    assert "not a valid JSON Schema" in err.value.reason


# ---------------------------------------------------------------------------------------------
# big lines, blocks, fast path


def test_a_50_mb_single_line_is_read(tmp_path: Path) -> None:
    prompt = "x" * (50 << 20)
    path = write_jsonl(tmp_path / "huge.jsonl", [MATH_ROWS[0], {"prompt": prompt, "answer": "1"}, MATH_ROWS[1]])
    split = read(path)
    assert split.problems == {}
    assert [r for r in split.table.column("_line").to_pylist()] == [1, 2, 3]
    assert split.table.column("prompt")[1].as_py() == prompt


def test_small_blocks_give_the_same_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Block edges (including lines longer than a block, blank lines and problems on both sides of
    an edge, and answer types that change from block to block) change nothing."""
    rng = random.Random(7)
    lines: list[Any] = []
    for i in range(600):
        r = rng.random()
        if r < 0.05:
            lines.append("")
        elif r < 0.08:
            lines.append("{broken")
        elif r < 0.10:
            lines.append({"prompt": "long " * rng.randint(300, 900), "answer": "1"})
        else:
            answer: Any = i if (i // 100) % 2 else str(i)
            lines.append({"prompt": f"prompt {i}", "answer": answer, "id": i})
    path = write_jsonl(tmp_path / "blocks.jsonl", lines)
    whole = read(path)
    monkeypatch.setattr(readers, "BLOCK_BYTES", 1024)  # buffers reused many times over
    small = read(path)
    monkeypatch.setattr(readers, "SLOW_RUN_LINES", 3)  # failing runs split, and split again
    monkeypatch.setattr(readers, "SPLIT_WAYS", 3)
    split_runs = read(path)
    monkeypatch.setattr(readers, "BLOCK_BYTES", 1 << 20)
    split_big = read(path)
    monkeypatch.setattr(readers, "_FAST_JSON", False)
    slow = read(path)
    for other in (small, split_runs, split_big, slow):
        assert rows(other) == rows(whole)
        assert {k: (p.count, p.examples) for k, p in other.problems.items()} == \
               {k: (p.count, p.examples) for k, p in whole.problems.items()}
    assert whole.problems["bad-json"].count == sum(1 for x in lines if x == "{broken")


def sampled(rows: int) -> list[int]:
    """The json.loads calls of the format sample alone (the first rows, parsed to detect the
    format): a read that takes the fast path makes no other."""
    return [1] * min(rows, readers.SAMPLE_ROWS)


def count_json_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = json.loads

    def counting(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(readers.json, "loads", counting)
    return calls


def test_the_fast_path_parses_200k_rows_without_json_loads(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "fast.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(200_000):
            fh.write(f'{{"id": "r{i}", "prompt": "Compute {i} plus {i % 97}, please.", '
                     f'"answer": "{i + i % 97}", "difficulty": "{("easy", "hard")[i % 2]}"}}\n')
    calls = count_json_loads(monkeypatch)
    split = read(path)
    assert calls == sampled(200_000)
    assert split.rows == split.rows_seen == 200_000 and split.problems == {}
    assert split.table.column("_line")[-1].as_py() == 200_000
    assert split.table.column("answer")[-1].as_py() == str(199_999 + 199_999 % 97)


json_scalars = (st.none() | st.booleans() | st.integers(-(2**53), 2**53)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.sampled_from(["role", "content", "x"]), inner, max_size=3),
                           max_leaves=6)
message = st.fixed_dictionaries({"role": st.sampled_from([*readers.ROLES, "bot"]), "content": st.text(max_size=6)})
field_value = json_values | st.lists(message, max_size=3) | st.lists(st.text(max_size=5), max_size=3)
row = st.dictionaries(st.sampled_from(["prompt", "answer", "tests", "messages", "difficulty", "id", "meta"]),
                      field_value, max_size=7)
line = row | st.sampled_from(["", "  ", "{oops", "[1]", "7"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line, max_size=12), domain=st.sampled_from(["math", "code", "chat"]))
def test_fast_and_line_by_line_paths_agree(tmp_path: Path, lines: list[Any], domain: str) -> None:
    path = write_jsonl(tmp_path / "h.jsonl", lines)
    fast = read(path, domain)
    readers._FAST_JSON = False
    try:
        slow = read(path, domain)
    finally:
        readers._FAST_JSON = True
    assert rows(fast) == rows(slow)
    assert counts(fast) == counts(slow)
    for kind in fast.problems:  # the same places (the wording may differ between the paths)
        assert where(fast, kind) == where(slow, kind)


text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=8) | st.sampled_from(["", " ", "\t\n"])
good_message = (st.fixed_dictionaries({"role": st.sampled_from([*readers.ROLES, "bot"]), "content": text})
                | st.fixed_dictionaries({"role": st.sampled_from(readers.ROLES)}) | st.none())
typed_row = st.fixed_dictionaries({}, optional={
    "prompt": text | st.none(), "answer": text | st.none(), "difficulty": text | st.none(), "id": text | st.none(),
    "tests": text | st.lists(text | st.none(), max_size=3), "messages": st.lists(good_message, max_size=4) | st.none(),
})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), domain=st.sampled_from(["math", "code", "chat"]), numeric=st.booleans())
def test_paths_agree_on_mostly_well_typed_rows(tmp_path: Path, data: st.DataObject, domain: str,
                                               numeric: bool) -> None:
    """Rows pyarrow takes whole (so the fast path really runs), with the edge values it must map
    like Python does: numbers of every kind, empty and blank strings, nulls, odd roles."""
    lines = data.draw(st.lists(typed_row, max_size=10))
    if numeric:
        kind = data.draw(st.sampled_from([st.integers(-(2**53), 2**53), st.floats(allow_nan=False,
                                          allow_infinity=False), st.booleans()]))
        for r in lines:
            for key in ("answer", "id"):
                if data.draw(st.booleans()):
                    r[key] = data.draw(kind)
    test_fast_and_line_by_line_paths_agree.hypothesis.inner_test(tmp_path, lines, domain)  # type: ignore[attr-defined]


def test_a_few_bad_lines_in_a_big_block_are_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[Any] = [{"prompt": f"p{i}", "answer": str(i)} for i in range(20_000)]
    for at in (10, 7_000, 15_555):
        lines[at] = "{not json"
    lines[12_000] = {"prompt": 12, "answer": "1"}
    path = write_jsonl(tmp_path / "few.jsonl", lines)
    calls = count_json_loads(monkeypatch)
    split = read(path)
    assert counts(split) == {"bad-json": 3, "wrong-type:prompt": 1}
    assert where(split, "bad-json") == [11, 7_001, 15_556] and where(split, "wrong-type:prompt") == [12_001]
    assert split.rows == 19_997
    assert len(calls) <= 4 * readers.SLOW_RUN_LINES + len(sampled(20_000))  # only short runs around each bad line


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(), max_size=5))
def test_json_string_array_matches_json_dumps(values: list[str]) -> None:
    assume(all(c < "\ud800" or c > "\udfff" for v in values for c in v))
    got = json_string_array(pa.array(values, pa.string())).to_pylist()
    assert got == [json.dumps(v, ensure_ascii=False) for v in values]


# ---------------------------------------------------------------------------------------------
# files that are no dataset


def test_empty_file_is_zero_rows(tmp_path: Path) -> None:
    for name in ("e.jsonl", "e.parquet", "e.jsonl.gz", "e.unknown"):
        path = tmp_path / name
        path.write_bytes(b"")
        split = read(path)
        assert split.rows == 0 and split.rows_seen == 0 and split.problems == {}
        assert split.table.schema.names == list(CANONICAL_COLUMNS)
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n\n  \n")
    assert read(blank).rows == 0


def test_missing_file_and_plain_directory(tmp_path: Path) -> None:
    with pytest.raises(DataFileError) as err:
        read(tmp_path / "nope.jsonl")
    assert "does not exist" in err.value.reason
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "x.txt").write_text("hi")
    with pytest.raises(DataFileError) as err:
        read(tmp_path / "folder")
    assert err.value.reason == "is a directory, not a dataset file"
    assert err.value.hint


def test_dataset_dict_folder_names_its_splits(tmp_path: Path) -> None:
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list(MATH_ROWS)}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataFileError) as err:
        read(tmp_path / "dd")
    assert "DatasetDict" in err.value.reason and "train" in err.value.hint
    assert rows(read(tmp_path / "dd" / "train")) == MATH_EXPECTED


def test_lfs_pointer_is_refused(tmp_path: Path) -> None:
    pointer = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n")
    for name in ("train.jsonl", "train.parquet", "train.jsonl.gz"):
        path = tmp_path / name
        path.write_bytes(pointer)
        with pytest.raises(DataFileError) as err:
            read(path)
        assert "LFS pointer" in err.value.reason and "git lfs pull" in err.value.hint


def test_corrupt_parquet_is_a_data_file_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(random.Random(1).randbytes(5000))
    with pytest.raises(DataFileError) as err:
        read(junk)
    assert "Parquet" in err.value.reason and err.value.hint
    real = write_parquet(tmp_path / "real.parquet", MATH_ROWS * 100)
    cut = tmp_path / "cut.parquet"
    data = real.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFileError) as err:
        read(cut)
    assert "Parquet" in err.value.reason


def test_corrupt_gzip_is_a_data_file_error(tmp_path: Path) -> None:
    full = gzip.compress(jsonl_bytes(MATH_ROWS * 2000))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataFileError) as err:
        read(cut)
    assert "decompress" in err.value.reason
    assert no_read_ahead_threads()


def no_read_ahead_threads() -> bool:
    import threading

    return not [t for t in threading.enumerate() if t.name.startswith("jsonl-")]


def test_json_array_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "array.json"
    path.write_text(json.dumps(MATH_ROWS, indent=2))
    with pytest.raises(DataFileError) as err:
        read(path)
    assert "JSON array" in err.value.reason
    assert no_read_ahead_threads()
    one_line = write_jsonl(tmp_path / "one.json", [[{"prompt": "a", "answer": "1"}]])
    assert counts(read(one_line)) == {"bad-json": 1}  # a one-line array: its line is no object


def test_parquet_with_the_wrong_columns_counts_missing_fields(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "w.parquet", [{"question": "q", "solution": "s"}] * 3)
    split = read(path)
    assert counts(split) == {"missing:prompt": 3, "missing:answer": 3}
    assert where(split, "missing:prompt") == [1, 2, 3]
    assert split.rows == 3


def test_parquet_types_are_checked_and_cast(tmp_path: Path) -> None:
    table = pa.table({
        "prompt": pa.array([1, 2, None], pa.int64()),
        "answer": pa.array([1.5, 2.0, 3.25], pa.float32()),
        "difficulty": pa.array(["a", "b", "a"]).dictionary_encode(),
        "id": pa.array(["x", "y", "z"], pa.large_string()),
    })
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    split = read(path)
    assert counts(split) == {"wrong-type:prompt": 2, "missing:prompt": 1}
    assert [r["answer"] for r in rows(split)] == ["1.5", "2", "3.25"]
    assert [r["difficulty"] for r in rows(split)] == ["a", "b", "a"]
    assert [r["id"] for r in rows(split)] == ["x", "y", "z"]


def test_parquet_rows_are_numbered_across_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = [{"prompt": f"p{i}", "answer": "" if i in (3, 250) else str(i)} for i in range(300)]
    path = write_parquet(tmp_path / "n.parquet", data, row_group_size=64)
    monkeypatch.setattr(readers, "PARQUET_BATCH_ROWS", 50)
    split = read(path)
    assert split.table.column("_line").to_pylist() == list(range(1, 301))
    assert where(split, "empty:answer") == [4, 251]


# ---------------------------------------------------------------------------------------------
# normalization


WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace())


def test_whitespace_class_is_pythons_isspace() -> None:
    arr = pa.array([chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF])
    matched = pc.match_substring_regex(arr, "^" + readers_ws() + "$").to_pylist()
    assert [s for s, m in zip(arr.to_pylist(), matched, strict=True) if m] == \
           [c for c in arr.to_pylist() if c.isspace()]


def readers_ws() -> str:
    from preflight.data.normalize import WHITESPACE_CLASS

    return WHITESPACE_CLASS


def test_normalize_examples() -> None:
    values = ["  Ｈｅｌｌｏ\u00a0\u00a0World\n\t！ ", "ﬁne  ", None, "", "\u3000"]
    assert normalize_array(pa.array(values)).to_pylist() == ["hello world !", "fine", None, "", ""]
    assert [normalize_text(v) for v in values if v is not None] == ["hello world !", "fine", "", ""]


# Where Python and Arrow (utf8proc) differ by design: full vs simple case mapping (U+0130),
# the context-sensitive final sigma, and code points whose Unicode versions differ.
DIFFERENT = "\u0130\u03a3"


def _same_building_blocks(s: str) -> bool:
    nfkc = unicodedata.normalize("NFKC", s)
    return (pc.utf8_normalize(pa.scalar(s), "NFKC").as_py() == nfkc
            and pc.utf8_lower(pa.scalar(nfkc)).as_py() == nfkc.lower())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters=DIFFERENT)
               | st.sampled_from(list(WHITESPACE)), max_size=40))
def test_normalize_array_agrees_with_normalize_text(s: str) -> None:
    assume(_same_building_blocks(s))  # filters out only characters newer than Python's Unicode
    assert normalize_array(pa.array([s])).to_pylist() == [normalize_text(s)]


@given(st.text(alphabet="abcXYZ éÉ ﬁＡ１\u00a0\u2003\t\n\r\x0b\x0c\x1c\x85\u2028\u3000", max_size=30))
def test_normalize_agrees_on_common_text_without_filtering(s: str) -> None:
    assert normalize_array(pa.array([s])).to_pylist() == [normalize_text(s)]


@given(st.lists(st.none() | st.text(alphabet="aB é\u00a0\t\x01  ", max_size=12), max_size=12),
       st.integers(0, 3))
def test_normalize_many_rows_and_slices_row_by_row(values: list[str | None], skip: int) -> None:
    # Spacing is found over the bytes of the whole array: a row's neighbours must not matter.
    arr = pa.array(values, pa.string()).slice(skip)
    assert normalize_array(arr).to_pylist() == [
        None if v is None else normalize_text(v) for v in values[skip:]]


def test_normalize_spacing_in_long_rows_across_scan_blocks() -> None:
    block = 1 << 16
    values = ["a" * (block - 1) + "  b", "x" * block + " ", " " + "y" * block, "z" * (block - 2) + "\tq",
              "w" * (3 * block) + " ok"]
    assert normalize_array(pa.array(values)).to_pylist() == [normalize_text(v) for v in values]


def test_hf_arrow_stream_read_without_the_datasets_library(tmp_path: Path) -> None:
    import subprocess
    import sys

    write_hf(tmp_path / "hf", MATH_ROWS)
    code = ("import sys; from preflight.data.readers import read_split; "
            f"s = read_split({str(tmp_path / 'hf')!r}, 'train', {{}}, 'math'); "
            "assert s.rows == 3 and not s.problems; assert 'datasets' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False, cwd=Path(__file__).resolve().parent.parent,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert proc.returncode == 0, proc.stderr
