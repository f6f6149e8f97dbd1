"""Real dataset formats: verl Parquet, TRL's standard and conversational types, OpenRLHF's
input/label keys and plain JSONL; dotted field paths; chat prompts; the format stated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from data_factory import write_jsonl, write_parquet
from data_layouts import as_layout, canonical_rows, data_outcomes, prompts, write_spec, write_split

from preflight.data import readers
from preflight.data.formats import detect
from preflight.data.readers import peek, read_split
from preflight.result import Status

GSM = [{"id": "g1", "prompt": "Natalia sold clips to 48 of her friends. How many clips did she sell?",
        "answer": "48", "difficulty": "easy"},
       {"id": "g2", "prompt": "Weng earns $12 an hour. How much did she earn for 50 minutes?",
        "answer": "10", "difficulty": "hard"}]


def table_rows(path: Path, domain: str = "math", **kw: Any) -> tuple[Any, list[dict[str, Any]]]:
    split = read_split(path, "train", kw.pop("fields", {}), domain, **kw)
    return split, split.table.to_pylist()


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_verl_rows_read_prompt_answer_and_id_from_their_nested_fields(tmp_path: Path, suffix: str) -> None:
    path = write_split(tmp_path / f"train{suffix}", GSM, "verl", system="You are a careful solver.")
    split, got = table_rows(path)
    assert split.problems == {}
    assert split.layout.format == "verl" and "reward_model" in split.layout.how
    assert [r["prompt"] for r in got] == [r["prompt"] for r in GSM]  # the user turn; the system turn left out
    assert [r["answer"] for r in got] == ["48", "10"]
    assert [r["id"] for r in got] == ["0", "1"]  # extra_info.index
    assert [r["difficulty"] for r in got] == ["easy", "hard"]  # extra_info.difficulty
    assert split.layout.chat.rows == 2 and split.layout.chat.with_system == 2 and split.layout.chat.multi_turn == 0
    assert all(r["conversation"] is None for r in got)  # the user turn is the whole conversation


def test_a_multi_turn_chat_prompt_keeps_its_user_turns_and_its_whole_conversation(tmp_path: Path) -> None:
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add 2 and 2."},
             {"role": "assistant", "content": "4."}, {"role": "user", "content": "Now double it."}]
    rows = [{"prompt": turns, "reward_model": {"ground_truth": "8"}}]
    for path in (write_jsonl(tmp_path / "m.jsonl", rows), write_parquet(tmp_path / "m.parquet", rows)):
        split, got = table_rows(path)
        assert got[0]["prompt"] == "Add 2 and 2.\nNow double it."
        assert got[0]["conversation"] == "Add 2 and 2.\n4.\nNow double it."
        assert (split.layout.chat.with_system, split.layout.chat.multi_turn) == (1, 1)


@pytest.mark.parametrize("layout,fmt", [("trl", "trl"), ("trl-chat", "trl"), ("openrlhf", "openrlhf"),
                                        ("plain", "plain"), ("verl", "verl")])
def test_each_format_is_detected_and_read_into_the_same_prompts_and_answers(tmp_path: Path, layout: str,
                                                                            fmt: str) -> None:
    for suffix in (".jsonl", ".parquet"):
        path = write_split(tmp_path / f"d{suffix}", GSM, layout)
        split, got = table_rows(path)
        assert split.layout.format == fmt, (layout, suffix)
        assert split.problems == {}, (layout, suffix)
        assert [r["prompt"] for r in got] == [r["prompt"] for r in GSM], (layout, suffix)
        assert [r["answer"].strip() for r in got] == ["48", "10"], (layout, suffix)


def test_trl_prompt_only_rows_take_the_answer_from_a_solution_column(tmp_path: Path) -> None:
    rows = [{"prompt": [{"role": "user", "content": g["prompt"]}], "solution": g["answer"]} for g in GSM]
    split, got = table_rows(write_jsonl(tmp_path / "t.jsonl", rows))
    assert split.layout.format == "trl" and split.layout.fields["answer"] == "solution"
    assert [r["answer"] for r in got] == ["48", "10"]


def test_openrlhf_input_may_be_chat_messages(tmp_path: Path) -> None:
    rows = [{"input": [{"role": "user", "content": g["prompt"]}], "label": int(g["answer"])} for g in GSM]
    split, got = table_rows(write_jsonl(tmp_path / "o.jsonl", rows))
    assert split.layout.format == "openrlhf" and split.problems == {}
    assert [(r["prompt"], r["answer"]) for r in got] == [(g["prompt"], g["answer"]) for g in GSM]


def test_a_declared_format_wins_over_detection_and_says_so(tmp_path: Path) -> None:
    path = write_split(tmp_path / "o.jsonl", GSM, "openrlhf")
    split, _ = table_rows(path, data_format="plain")
    assert split.layout.describe() == "plain (data.format)"
    assert split.problems["missing:prompt"].count == 2  # plain looks for "prompt": there is none
    assert "field 'prompt' absent" in split.problems["missing:prompt"].examples[0]


def test_dotted_field_paths_override_the_preset(tmp_path: Path) -> None:
    rows = [as_layout(g, "verl", i) for i, g in enumerate(GSM)]
    for i, r in enumerate(rows):
        r["extra_info"]["question"] = f"question {i}"
    for path in (write_jsonl(tmp_path / "v.jsonl", rows), write_parquet(tmp_path / "v.parquet", rows)):
        split, got = table_rows(path, fields={"prompt": "extra_info.question"})
        assert split.layout.format == "verl" and split.layout.overridden == ("prompt",)
        assert [r["prompt"] for r in got] == ["question 0", "question 1"]
        assert [r["answer"] for r in got] == ["48", "10"]


def test_a_path_through_something_that_is_not_an_object_is_a_located_wrong_type(tmp_path: Path) -> None:
    rows = [{"prompt": "p1", "reward_model": {"ground_truth": "1"}}, {"prompt": "p2", "reward_model": "7"},
            {"prompt": "p3", "reward_model": {"ground_truth": 3}}, {"prompt": "p4", "reward_model": None}]
    split, got = table_rows(write_jsonl(tmp_path / "w.jsonl", rows))
    assert split.problems["wrong-type:answer"].count == 1
    assert split.problems["wrong-type:answer"].examples == [f"{tmp_path / 'w.jsonl'}:2: reward_model is a string, "
                                                            "not an object"]
    assert split.problems["missing:answer"].count == 1  # a null parent: the answer is absent
    assert [r["answer"] for r in got] == ["1", None, "3", None]
    parquet = write_parquet(tmp_path / "w.parquet", [{"prompt": "p", "reward_model": "7"}])
    split, _ = table_rows(parquet, fields={"answer": "reward_model.ground_truth"})
    assert split.problems["wrong-type:answer"].examples == [f"{parquet}:1: reward_model is a string, not an object"]


def test_chat_prompt_problems_are_counted_with_their_rows(tmp_path: Path) -> None:
    rows = [{"prompt": [{"role": "user", "content": "ok"}], "completion": "1"},
            {"prompt": [{"role": "narrator", "content": "x"}], "completion": "1"},
            {"prompt": [], "completion": "1"},
            {"prompt": [{"role": "system", "content": "only a system turn"}], "completion": "1"},
            {"prompt": [{"role": "user"}], "completion": "1"}]
    split, got = table_rows(write_jsonl(tmp_path / "c.jsonl", rows))
    counts = {k: p.count for k, p in split.problems.items()}
    assert counts == {"bad-role": 1, "empty:prompt": 2, "wrong-type:prompt": 1}
    assert [r["prompt"] for r in got] == ["ok", None, None, None, None]


def test_rows_mixing_string_and_chat_prompts_read_alike_on_both_paths(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"prompt": "plain text", "completion": "a"},
            {"prompt": [{"role": "user", "content": "chat text"}], "completion": [{"role": "assistant", "content": "b"}]},
            {"prompt": "more", "completion": "c"}]
    path = write_jsonl(tmp_path / "mix.jsonl", rows)
    fast, fast_rows = table_rows(path)
    monkeypatch.setattr(readers, "_FAST_JSON", False)
    slow, slow_rows = table_rows(path)
    assert fast_rows == slow_rows
    assert [r["prompt"] for r in fast_rows] == ["plain text", "chat text", "more"]
    assert [r["answer"] for r in fast_rows] == ["a", "b", "c"]
    assert fast.problems == slow.problems == {}


def test_nested_paths_read_alike_on_the_fast_and_the_line_by_line_path(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [as_layout(r, "verl", i) for i, r in enumerate(canonical_rows(prompts(300)))]
    rows[7]["reward_model"]["ground_truth"] = 12  # a number: the type adapts
    rows[9]["extra_info"] = "oops"
    rows[11]["prompt"] = [{"role": "user", "content": 5}]
    path = write_jsonl(tmp_path / "v.jsonl", rows)
    fast, fast_rows = table_rows(path)
    monkeypatch.setattr(readers, "_FAST_JSON", False)
    slow, slow_rows = table_rows(path)
    assert fast_rows == slow_rows
    assert {k: p.count for k, p in fast.problems.items()} == {k: p.count for k, p in slow.problems.items()} == \
        {"wrong-type:prompt": 1, "wrong-type:id": 1, "wrong-type:difficulty": 1}  # id and difficulty: extra_info
    assert fast_rows[7]["answer"] == "12" and fast_rows[9]["id"] is None


def test_detection_rules() -> None:
    chat = [{"role": "user", "content": "q"}]
    assert detect([{"prompt": chat, "reward_model": {"ground_truth": "1"}}])[0] == "verl"
    assert detect([{"prompt": chat, "data_source": "gsm8k"}])[0] == "verl"
    assert detect([{"input": "q", "label": "1"}])[0] == "openrlhf"
    assert detect([{"prompt": chat}])[0] == "trl"
    assert detect([{"prompt": "q", "completion": "a"}])[0] == "trl"
    assert detect([{"prompt": "q", "answer": "a"}])[0] == "plain"
    assert detect([])[0] == "plain"


def test_peek_states_the_format_and_the_required_fields_missing(tmp_path: Path) -> None:
    verl = write_split(tmp_path / "v.parquet", GSM, "verl")
    look = peek(verl, {}, "math")
    assert look.layout.format == "verl" and look.absent == {}
    look = peek(verl, {"answer": "reward_model.answer"}, "math")
    assert look.absent == {"answer": "no field 'reward_model.answer' in the Parquet schema"}
    plain = write_jsonl(tmp_path / "p.jsonl", [{"question": g["prompt"], "answer": g["answer"]} for g in GSM])
    assert peek(plain, {}, "math").absent == {"prompt": "no field 'prompt' in the first rows"}


def test_the_files_check_states_each_format_and_fails_on_a_missing_field(tmp_path: Path) -> None:
    rows = canonical_rows(prompts(200))
    paths = {"train": write_split(tmp_path / "train.parquet", rows[:180], "verl"),
             "val": write_split(tmp_path / "val.jsonl", rows[180:190], "plain"),
             "test": write_split(tmp_path / "test.jsonl", rows[190:], "openrlhf")}
    spec = write_spec(tmp_path, paths)
    r = data_outcomes(spec, ("data.files", "data.format"))
    assert r["data.files"].status == Status.PASS
    assert r["data.files"].evidence["formats"] == {
        "train": "verl (detected: a reward_model object with ground_truth)",
        "val": "plain (detected: no other format's fields)", "test": "openrlhf (detected: an input field and no prompt)"}
    assert "verl" in r["data.format"].found and "openrlhf" in r["data.format"].found
    spec = write_spec(tmp_path, paths, "  format: verl\n")
    r = data_outcomes(spec, ("data.files",))["data.files"]
    assert r.status == Status.FAIL
    assert "val: " in r.found and "no field 'reward_model.ground_truth' in the first rows" in r.found
    assert f"{paths['val']}:1" in r.found


def test_chat_prompts_are_stated_in_the_results(tmp_path: Path) -> None:
    rows = canonical_rows(prompts(200))
    paths = {name: write_split(tmp_path / f"{name}.parquet", part, "verl", system="Answer in one line.")
             for name, part in (("train", rows[:180]), ("val", rows[180:190]), ("test", rows[190:]))}
    r = data_outcomes(write_spec(tmp_path, paths), ("data.duplicates", "data.leakage.exact", "data.contamination"))
    assert r["data.duplicates"].status == Status.PASS
    note = r["data.duplicates"].evidence["compared"]
    assert note.startswith("200 prompts given as chat messages (train, val, test): compared by the user turns' text")
    assert "system turns left out (200 rows have one)" in note
    assert "every turn but the system's" in r["data.contamination"].evidence["compared"]
    assert r["data.contamination"].status == Status.PASS  # the shared system prompt is no contamination


def test_read_split_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown data format 'megatron'"):
        read_split(Path("x.jsonl"), "train", {}, "math", data_format="megatron")


def test_runner_rows_keep_a_plain_text_prompt(tmp_path: Path) -> None:
    # runner/train.py loads rows with read_split(...).table.to_pylist() and uses prompt, id, answer
    path = write_split(tmp_path / "v.parquet", GSM, "verl", system="sys")
    rows = read_split(path, "train", {}, "math").table.to_pylist()
    assert [(r["prompt"], r["id"], r["answer"]) for r in rows] == [(GSM[0]["prompt"], "0", "48"),
                                                                    (GSM[1]["prompt"], "1", "10")]
    assert json.dumps(rows)  # plain values only


def planted_splits() -> dict[str, list[dict[str, Any]]]:
    """Train/val/test with known leaks: 4 exact copies of val/test prompts in train (case and
    spacing changed), 3 near-duplicates (one word changed), 5 train rows quoting 14 words of a
    held-out problem, and 2 repeated train prompts."""
    rows = canonical_rows(prompts(2000, seed=7, words=40))
    train, val, test = rows[:1800], rows[1800:1900], rows[1900:]
    for k, r in enumerate(val[:2] + test[:2]):
        train[k] = {**train[k], "prompt": "  " + r["prompt"].upper().replace(" ", "   ")}
    for k, r in enumerate(val[10:13]):
        words = r["prompt"].split()
        words[0] = "changed"
        train[10 + k] = {**train[10 + k], "prompt": " ".join(words)}
    for k, r in enumerate(test[20:25]):
        train[20 + k] = {**train[20 + k], "prompt": "Recall: " + " ".join(r["prompt"].split()[5:19]) + ". Go."}
    train[100] = {**train[100], "prompt": train[101]["prompt"]}
    train[102] = {**train[102], "prompt": train[103]["prompt"].title()}
    return {"train": train, "val": val, "test": test}


COUNTED = ("data.duplicates", "data.leakage.exact", "data.leakage.near", "data.contamination")


def counts_of(results: dict[str, Any]) -> dict[str, Any]:
    return {"repeated": results["data.duplicates"].evidence["repeated"],
            "leaked": results["data.leakage.exact"].evidence["leaked"],
            "near": results["data.leakage.near"].evidence["pairs"],
            "ngram_train": results["data.contamination"].evidence["train_rows"],
            "ngram_held_out": results["data.contamination"].evidence["held_out_rows"]}


@pytest.mark.parametrize("layout", ["verl", "trl-chat", "openrlhf"])
def test_plain_jsonl_and_a_trainer_format_find_the_same_leaks(tmp_path: Path, layout: str) -> None:
    parts = planted_splits()
    found = {}
    for kind, suffix in (("plain", ".jsonl"), (layout, ".parquet")):
        folder = tmp_path / kind
        folder.mkdir()
        paths = {name: write_split(folder / f"{name}{suffix}", rows, kind,
                                   system="Think first." if kind != "plain" else None)
                 for name, rows in parts.items()}
        results = data_outcomes(write_spec(folder, paths), COUNTED)
        assert all(r.status == Status.FAIL for r in results.values()), {k: r.found for k, r in results.items()}
        found[kind] = counts_of(results)
    assert found["plain"] == found[layout]
    assert found["plain"] == {"repeated": {"train": 2, "val": 0, "test": 0}, "leaked": {"val": 2, "test": 2},
                              "near": {"train-val": 3}, "ngram_train": 12,
                              "ngram_held_out": {"val": 5, "test": 7}}
