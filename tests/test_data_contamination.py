"""n-gram contamination as the field measures it: the decontamination normalization, both sides of
every overlap reported and exported, templates and system turns left out, the whole conversation."""

from __future__ import annotations

import string
from pathlib import Path

import pyarrow as pa
from data_layouts import canonical_rows, data_outcomes, leaks_of, prompts, write_spec, write_split
from hypothesis import given, settings
from hypothesis import strategies as st

from preflight.data.ngrams import overlap, split_templates, template_phrases
from preflight.data.normalize import decontamination_array, decontamination_text, normalize_array
from preflight.result import Status

# A held-out problem, long enough for several 13-grams, and the same problem typeset otherwise.
PROBLEM = ("Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning, and bakes muffins "
           "for her friends every day with four. How many dollars does she make every day at the market?")
VARIANT = ("janet s ducks lay 16 eggs per day - she eats three for breakfast every morning and bakes muffins "
           "for her friends every day with four; how many dollars does she make every day at the market")
QUOTED = ("JANET’S DUCKS LAY 16 EGGS PER DAY… SHE EATS THREE FOR BREAKFAST EVERY MORNING, AND BAKES “MUFFINS” "
          "FOR HER FRIENDS EVERY DAY WITH FOUR!!")


def splits(tmp_path: Path, train: list[dict], val: list[dict], test: list[dict], layout: str = "plain",
           data_extra: str = "") -> Path:
    suffix = ".parquet" if layout == "verl" else ".jsonl"
    paths = {name: write_split(tmp_path / f"{name}{suffix}", rows, layout)
             for name, rows in (("train", train), ("val", val), ("test", test))}
    return write_spec(tmp_path, paths, data_extra)


def base(n: int = 400) -> tuple[list[dict], list[dict], list[dict]]:
    rows = canonical_rows(prompts(n, seed=3))
    return rows[: n * 9 // 10], rows[n * 9 // 10: n * 19 // 20], rows[n * 19 // 20:]


def test_the_normalization_deletes_punctuation_as_the_harness_does() -> None:
    assert decontamination_text("Janet’s ducks—16 eggs/day. (Really!)") == "janets ducks16 eggsday really"
    assert decontamination_text("3.5 + x = 7") == "35 x 7"  # deleted, not replaced by a space
    assert decontamination_text(PROBLEM).split()[:4] == ["janets", "ducks", "lay", "16"]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(string.printable + "’“”—–…«»¿¡·　é"), max_size=40))
def test_the_array_and_text_forms_of_the_normalization_agree(text: str) -> None:
    assert decontamination_array(normalize_array(pa.array([text]))).to_pylist() == [decontamination_text(text)]


def test_a_train_row_quoting_a_held_out_problem_with_other_punctuation_is_caught(tmp_path: Path) -> None:
    train, val, test = base()
    val[2] = {**val[2], "prompt": PROBLEM}
    train[5] = {**train[5], "prompt": "Exercise: " + QUOTED + " Explain."}  # curly quotes, ellipsis, capitals
    train[8] = {**train[8], "prompt": VARIANT}  # hyphen and semicolon instead of full stops, no apostrophe
    r = data_outcomes(splits(tmp_path, train, val, test), ("data.contamination",))["data.contamination"]
    assert r.status == Status.FAIL
    assert r.found.startswith("2 of 360 train rows (0.56%) share a 13-gram with 1 held-out rows (val 1, test 0)")
    assert r.evidence["train_rows"] == 2 and r.evidence["held_out_rows"] == {"val": 1, "test": 0}
    assert any("train.jsonl:6" in e and "val.jsonl:3" in e for e in r.evidence["examples"])


def test_n_is_configurable(tmp_path: Path) -> None:
    train, val, test = base()
    words = val[0]["prompt"].split()
    train[0] = {**train[0], "prompt": "intro " + " ".join(words[3:12]) + " outro"}  # 9 shared words
    spec = splits(tmp_path, train, val, test)
    assert data_outcomes(spec, ("data.contamination",))["data.contamination"].status == Status.PASS
    spec = splits(tmp_path, train, val, test, data_extra="  contamination: {ngram: 8}\n")
    r = data_outcomes(spec, ("data.contamination",))["data.contamination"]
    assert r.status == Status.FAIL and r.evidence["ngram"] == 8 and "8-gram" in r.found


def test_every_train_and_held_out_row_involved_is_exported(tmp_path: Path) -> None:
    train, val, test = base(800)
    # one held-out problem quoted by 12 train rows, and 9 more held-out problems quoted once each
    for k in range(12):
        train[k] = {**train[k], "prompt": f"variant {k}: " + test[0]["prompt"]}
    for k in range(1, 10):
        src = (val + test)[k * 3]
        train[100 + k] = {**train[100 + k], "prompt": " ".join(src["prompt"].split()[:14]) + " end"}
    spec = splits(tmp_path, train, val, test, data_extra="  quality_checks: []\n")
    r = data_outcomes(spec, ("data.contamination",))["data.contamination"]
    assert r.evidence["train_rows"] == 21
    assert sum(r.evidence["held_out_rows"].values()) == 10
    ngram = [x for x in leaks_of(spec) if x["kind"] == "ngram"]
    train_rows = {x["a"] for x in ngram}
    held_out = {x["b"] for x in ngram}
    assert len(train_rows) == 21 and len(held_out) == 10  # all of them, not a sample of five
    assert {f"{tmp_path / 'train.jsonl'}:{k + 1}" for k in range(12)} <= train_rows
    assert f"{tmp_path / 'test.jsonl'}:1" in held_out


def test_a_prompt_template_around_every_problem_is_no_contamination(tmp_path: Path) -> None:
    # verl's GSM8K recipe appends one instruction to every question; questions often end alike
    instruction = "Let's think step by step and output the final answer after \"####\"."
    ends = ["How many does she have left?", "How much money does he have left?", "How many are there in all?"]
    train, val, test = base()
    for rows in (train, val, test):
        for i, r in enumerate(rows):
            r["prompt"] = f"{' '.join(r['prompt'].split()[:20])} {ends[i % 3]} {instruction}"
    r = data_outcomes(splits(tmp_path, train, val, test), ("data.contamination",))["data.contamination"]
    assert r.status == Status.PASS, r.found
    assert any("lets think step by step" in t for t in r.evidence["templates"])
    train[4] = {**train[4], "prompt": val[1]["prompt"]}  # a real leak is still caught through the template
    r = data_outcomes(splits(tmp_path, train, val, test), ("data.contamination",))["data.contamination"]
    assert r.status == Status.FAIL and r.evidence["train_rows"] == 1


def test_the_whole_conversation_is_compared_but_not_the_system_turn(tmp_path: Path) -> None:
    train, val, test = base()
    chat = [{"role": "system", "content": "You are a meticulous assistant who always shows every step of work."},
            {"role": "user", "content": "Solve the next problem."},
            {"role": "assistant", "content": "Sure: " + val[0]["prompt"]},
            {"role": "user", "content": train[0]["prompt"]}]
    rows = [{"prompt": chat, "reward_model": {"ground_truth": "1"}, "extra_info": {"index": 0}}]
    rows += [{"prompt": [chat[0], {"role": "user", "content": r["prompt"]}], "reward_model": {"ground_truth": "1"},
              "extra_info": {"index": i}} for i, r in enumerate(train[1:], 1)]
    from data_factory import write_parquet

    paths = {"train": write_parquet(tmp_path / "train.parquet", rows),
             "val": write_split(tmp_path / "val.parquet", val, "verl", system=chat[0]["content"]),
             "test": write_split(tmp_path / "test.parquet", test, "verl", system=chat[0]["content"])}
    r = data_outcomes(write_spec(tmp_path, paths), ("data.contamination", "data.leakage.exact", "data.leakage.near"))
    c = r["data.contamination"]
    assert c.status == Status.FAIL and c.evidence["train_rows"] == 1  # the assistant turn quotes val row 1
    assert "1 rows have several non-system turns" in c.evidence["compared"]
    assert r["data.leakage.exact"].status == Status.PASS  # user turns only: not the same prompt
    assert r["data.leakage.near"].status == Status.PASS


def test_a_benchmark_names_its_own_prompt_field(tmp_path: Path) -> None:
    from data_factory import write_jsonl

    train, val, test = base()
    train[3] = {**train[3], "prompt": "Homework: " + PROBLEM}
    bench = write_jsonl(tmp_path / "gsm8k_test.jsonl", [{"question": PROBLEM, "answer": "18"}])
    spec = splits(tmp_path, train, val, test, data_extra=f"  benchmarks: [{{path: {bench}, prompt: question}}]\n")
    r = data_outcomes(spec, ("data.contamination",))["data.contamination"]
    assert r.status == Status.FAIL and r.evidence["held_out_rows"]["gsm8k_test.jsonl"] == 1
    spec = splits(tmp_path, train, val, test, data_extra=f"  benchmarks: [{bench}]\n")
    r = data_outcomes(spec, ("data.contamination",))["data.contamination"]
    assert r.status == Status.ERROR
    assert "gsm8k_test.jsonl" in r.found and "field 'prompt'" in r.found and "gsm8k_test.jsonl:1" in r.found
    assert "prompt: FIELD" in r.remediation


def test_overlap_reports_both_sides_on_a_handmade_example() -> None:
    words = [f"x{i}" for i in range(30)]
    train = [" ".join(words[0:14]), "nothing here", " ".join(words[10:24]), " ".join(words[0:13])]
    evals = ["a b " + " ".join(words[0:20]), "unrelated text", " ".join(words[11:25])]
    found = overlap(train, evals, 13)
    assert found.train_rows.tolist() == [0, 2, 3]
    assert found.eval_rows.tolist() == [0, 2]
    # train 0 and 3 share x0..x12 with eval 0; train 2 shares x11..x23 with eval 2 (eval 0 ends at x19)
    assert found.pairs == [(0, 0), (2, 2), (3, 0)]


def test_templates_are_cut_and_no_ngram_spans_a_cut() -> None:
    tail = "please answer with a single number and nothing else at all"
    texts = [f"q{i} r{i} s{i} {tail}" for i in range(50)]
    phrases = template_phrases([texts])
    assert phrases == [tail]
    pieces, owner = split_templates(pa.array([*texts[:2], None, "no template here"]), phrases)
    assert pieces.to_pylist() == ["q0 r0 s0", "", "q1 r1 s1", "", "no template here"]
    assert owner.tolist() == [0, 0, 1, 1, 3]
    assert template_phrases([texts[:10]]) == []  # too few rows to call anything a template
    texts = pa.array(["a b", None])
    assert split_templates(texts, []) == (texts, None)  # nothing to cut


def test_benchmark_rows_without_a_prompt_are_counted_and_do_not_pass(tmp_path: Path) -> None:
    from data_factory import write_jsonl

    train, val, test = base()
    bench = write_jsonl(tmp_path / "bench.jsonl", [{"prompt": "a fine question"}, {"question": "elsewhere"},
                                                   {"prompt": 7}])
    spec = splits(tmp_path, train, val, test, data_extra=f"  benchmarks: [{bench}]\n")
    r = data_outcomes(spec, ("data.contamination",))["data.contamination"]
    assert r.status == Status.WARN
    assert "2 of 3 benchmark bench.jsonl rows have no readable prompt" in r.found and r.evidence["unreadable"] == {"bench.jsonl.prompt": 2}
