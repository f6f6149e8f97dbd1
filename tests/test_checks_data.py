"""Dataset checks on generated data where the truth is known."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from fakes import gpu_probes, run_checks_on

from preflight.cli import main
from preflight.result import Status
from preflight.rundir import attestation_path

LEVELS = ("easy", "medium", "hard")


def prompts(n: int, seed: int = 0, words: int = 30) -> list[str]:
    """Distinct prompts: random words from a large vocabulary never make accidental near-duplicates."""
    rng = random.Random(seed)
    return [" ".join(f"w{rng.randrange(50_000)}" for _ in range(words)) + " what is the total?" for _ in range(n)]


def rows_for(texts: list[str], seed: int = 0, levels=LEVELS) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"r{i}", "prompt": t, "answer": str(rng.randrange(1000)), "difficulty": levels[i % len(levels)]}
            for i, t in enumerate(texts)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_dataset(tmp_path: Path, n: int = 2000, extra_spec: str = "", train_rows=None, val_rows=None,
                 test_rows=None, hardware: str = "{nodes: 2}") -> Path:
    texts = prompts(n)
    all_rows = rows_for(texts)
    n_val = n_test = n // 20
    train = train_rows if train_rows is not None else all_rows[: n - n_val - n_test]
    val = val_rows if val_rows is not None else all_rows[n - n_val - n_test: n - n_test]
    test = test_rows if test_rows is not None else all_rows[n - n_test:]
    for name, rows in (("train", train), ("val", val), ("test", test)):
        write_jsonl(tmp_path / f"{name}.jsonl", rows)
    spec = tmp_path / "run.yaml"
    spec.write_text(f"""\
run: {{name: data-run}}
hardware: {hardware}
data:
  train: {tmp_path / 'train.jsonl'}
  val: {tmp_path / 'val.jsonl'}
  test: {tmp_path / 'test.jsonl'}
  version_control: none
{extra_spec}""", encoding="utf-8")
    return spec


def data_results(spec: Path) -> dict:
    return {k: v for k, v in run_checks_on(spec, gpu_probes()).items() if k.startswith("data.")}


def test_clean_data_passes_every_data_check(tmp_path):
    results = data_results(make_dataset(tmp_path))
    for cid, r in results.items():
        assert r.status in (Status.PASS, Status.SKIP), (cid, r.found, r.evidence)
    assert results["data.splits"].status == Status.PASS
    assert "train 1,800 (90.0%)" in results["data.splits"].found
    assert results["data.length"].found.endswith("(estimated)")


def test_planted_exact_leaks_are_counted(tmp_path):
    rows = rows_for(prompts(2000))
    train, val, test = rows[:1800], rows[1800:1900], rows[1900:]
    # 7 val prompts and 3 test prompts copied into train, with case and spacing changed.
    for r in val[:7] + test[:3]:
        train.append({**r, "id": r["id"] + "-copy", "prompt": "  " + r["prompt"].upper().replace(" ", "   ")})
    results = data_results(make_dataset(tmp_path, train_rows=train, val_rows=val, test_rows=test))
    r = results["data.leakage.exact"]
    assert r.status == Status.FAIL
    assert r.evidence["leaked"] == {"val": 7, "test": 3}
    assert "train.jsonl:1801" in r.evidence["examples"][0]


def test_eval_prompt_differing_from_a_train_prompt_in_one_inner_word_is_no_exact_leak(tmp_path):
    # Same length, start and end: the check must compare the texts, not a sample of them.
    rows = rows_for(prompts(2000))
    train, val, test = rows[:1800], rows[1800:1900], rows[1900:]
    words = train[5]["prompt"].split()
    words[len(words) // 2 + 1] = "x" * len(words[len(words) // 2 + 1])
    val[0] = {**val[0], "prompt": " ".join(words)}
    val[1] = {**val[1], "prompt": train[9]["prompt"].title()}  # a real leak beside it
    results = data_results(make_dataset(tmp_path, train_rows=train, val_rows=val, test_rows=test))
    assert results["data.leakage.exact"].evidence["leaked"] == {"val": 1, "test": 0}
    assert "val.jsonl:2" in results["data.leakage.exact"].evidence["examples"][0]


def test_planted_near_duplicate_leaks_are_found(tmp_path):
    rows = rows_for(prompts(2000, words=40))
    train, val, test = rows[:1800], rows[1800:1900], rows[1900:]
    for r in val[:5]:
        words = r["prompt"].split()
        words[0] = "changed"  # the first word: 1 of ~40 shingles differs, Jaccard ~0.95
        train.append({**r, "id": r["id"] + "-near", "prompt": " ".join(words)})
    results = data_results(make_dataset(tmp_path, train_rows=train, val_rows=val, test_rows=test))
    near = results["data.leakage.near"]
    assert near.status == Status.FAIL
    assert near.evidence["pairs"] == {"train-val": 5}
    assert results["data.leakage.exact"].status == Status.PASS


def test_export_leaks_writes_every_pair(tmp_path, capsys):
    rows = rows_for(prompts(1000))
    train, val, test = rows[:900], rows[900:950], rows[950:]
    train += [dict(r) for r in val[:4]]
    spec = make_dataset(tmp_path, train_rows=train, val_rows=val, test_rows=test,
                        hardware="{gpu_required: false}")
    out = tmp_path / "leaks.jsonl"
    main(["check", str(spec), "--no-attest", "--format", "json", "--export-leaks", str(out)])
    leaks = [json.loads(line) for line in out.read_text().splitlines()]
    exact = [x for x in leaks if x["kind"] == "exact"]
    assert len(exact) == 4 and all("val.jsonl:" in x["b"] for x in exact)
    assert {x["kind"] for x in leaks} <= {"exact", "near", "ngram"}
    assert all(x["similarity"] == 1.0 for x in exact)
    # the copies share 13-grams too: those are listed with their n, and no made-up similarity
    ngram = [x for x in leaks if x["kind"] == "ngram"]
    assert ngram and all(x["similarity"] is None and x["ngram"] == 13 for x in ngram)


def test_in_split_duplicates_counted_after_normalization(tmp_path):
    rows = rows_for(prompts(2000))
    train = rows[:1800] + [{**rows[0], "prompt": rows[0]["prompt"].title()}, {**rows[1]}, {**rows[1]}]
    results = data_results(make_dataset(tmp_path, train_rows=train))
    r = results["data.duplicates"]
    assert r.status == Status.FAIL
    assert r.evidence["repeated"]["train"] == 3


def test_skewed_difficulty_mix_fails_stratification(tmp_path):
    rows = rows_for(prompts(2000))
    val = [{**r, "difficulty": "hard"} for r in rows[1800:1900]]  # val is all hard
    results = data_results(make_dataset(tmp_path, val_rows=val))
    r = results["data.stratification"]
    assert r.status == Status.FAIL
    assert "val" in r.found and "'hard'" in r.found
    assert r.evidence["shares"]["val"]["hard"] == 1.0


def test_split_ratios_and_holdout(tmp_path):
    rows = rows_for(prompts(2000))
    results = data_results(make_dataset(tmp_path, train_rows=rows[:1900], val_rows=rows[1900:1950],
                                        test_rows=rows[1950:1960]))
    r = results["data.splits"]
    assert r.status == Status.FAIL
    assert "holdout is only 3.1%" in r.found
    empty = data_results(make_dataset(tmp_path, test_rows=[]))["data.splits"]
    assert empty.status == Status.FAIL and "test" in empty.found


def test_malformed_rows_counted_with_file_and_line(tmp_path):
    spec = make_dataset(tmp_path)
    train = tmp_path / "train.jsonl"
    lines = train.read_bytes().splitlines(keepends=True)
    lines[4] = b'{"id": "x", "prompt": 42, "answer": "1"}\n'
    lines[9] = b'{"id": "y", "prompt": "ok", "answer": "1"\n'  # broken JSON
    lines[14] = b'{"id": "z", "prompt": "\xff\xfe bad bytes", "answer": "1"}\n'
    lines[19] = b'{"id": "w", "prompt": "", "answer": "1"}\n'
    train.write_bytes(b"".join(lines))
    r = data_results(spec)["data.format"]
    assert r.status == Status.FAIL
    kinds = r.evidence["problems"]["train"]
    assert kinds["wrong-type:prompt"] == 1 and kinds["bad-json"] == 1
    assert kinds["undecodable"] == 1 and kinds["empty:prompt"] == 1
    assert any(f"{train}:5" in e for e in r.evidence["examples"])


def test_over_length_rows_warn_on_an_estimate(tmp_path):
    rows = rows_for(prompts(2000))
    rows[3]["prompt"] = "word " * 5000
    spec = make_dataset(tmp_path, train_rows=rows[:1800], extra_spec="training: {max_prompt_tokens: 512}\n")
    r = data_results(spec)["data.length"]
    assert r.status == Status.WARN and "1 rows over" in r.found and "(estimated)" in r.found
    assert "train.jsonl:4" in r.evidence["examples"][0]


def test_lexicon_hits_with_custom_lexicon_and_allow_list(tmp_path):
    (tmp_path / "lexicon.txt").write_text("# terms\nbadword\nworse phrase\n")
    rows = rows_for(prompts(2000))
    rows[0]["prompt"] += " BADWORD!"
    rows[1]["prompt"] += " a worse phrase here"
    rows[2]["prompt"] += " notabadwordhere"  # not a whole word
    extra = f"  toxicity: {{lexicon: {tmp_path / 'lexicon.txt'}, max_rate: 0.0}}\n"
    spec = make_dataset(tmp_path, train_rows=rows[:1800], extra_spec="").read_text()
    spec_path = tmp_path / "run.yaml"
    spec_path.write_text(spec.replace("  version_control: none\n", "  version_control: none\n" + extra))
    r = data_results(spec_path)["data.toxicity"]
    assert r.status == Status.FAIL
    assert r.evidence["terms"] == {"badword": 1, "worse phrase": 1}
    allowed = spec_path.read_text().replace("max_rate: 0.0", "max_rate: 0.0, allow: [badword, worse phrase]")
    spec_path.write_text(allowed)
    assert data_results(spec_path)["data.toxicity"].status == Status.PASS


def test_default_lexicon_is_the_shipped_word_list(tmp_path):
    rows = rows_for(prompts(2000))
    rows[0]["prompt"] += " what the fuck"
    r = data_results(make_dataset(tmp_path, train_rows=rows[:1800]))["data.toxicity"]
    assert r.status == Status.WARN and r.found.startswith("1 of 2,000 rows")
    assert "unambiguous obscenities" in r.evidence["lexicon"]


def test_ngram_contamination_against_a_benchmark(tmp_path):
    bench = tmp_path / "bench.jsonl"
    secret = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron"
    write_jsonl(bench, [{"prompt": f"benchmark question: {secret} ?", "answer": "1"}])
    rows = rows_for(prompts(2000))
    rows[5]["prompt"] = f"solve this: {secret} now"
    spec = make_dataset(tmp_path, train_rows=rows[:1800], extra_spec=f"  benchmarks: [{bench}]\n")
    text = spec.read_text().replace(f"\n  benchmarks: [{bench}]\n", "\n")
    spec.write_text(text.replace("  version_control: none\n", f"  version_control: none\n  benchmarks: [{bench}]\n"))
    r = data_results(spec)["data.contamination"]
    assert r.status == Status.FAIL
    assert r.found.startswith("1 of 1,800 train rows")
    assert "train.jsonl:6" in r.evidence["examples"][0] and "bench.jsonl:1" in r.evidence["examples"][0]


def test_unreadable_split_is_an_error_and_other_checks_still_run(tmp_path):
    spec = make_dataset(tmp_path)
    (tmp_path / "val.jsonl").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 3\n")
    results = data_results(spec)
    assert results["data.files"].status == Status.FAIL and "LFS pointer" in results["data.files"].found
    assert results["data.splits"].status == Status.ERROR
    assert set(results) >= {"data.format", "data.duplicates", "data.length"}


def test_version_control_warns_for_untracked_files(tmp_path):
    spec = make_dataset(tmp_path)
    spec.write_text(spec.read_text().replace("version_control: none", "version_control: git-lfs"))
    r = data_results(spec)["data.version_control"]
    assert r.status == Status.WARN and "git lfs track" in r.remediation


def test_attestation_records_data_and_verify_notices_changes(tmp_path, capsys):
    spec = make_dataset(tmp_path, hardware="{gpu_required: false, min_host_memory_gb: 1, min_cpus: 1}")
    spec.write_text(spec.read_text() + "storage: {min_free_gb: 0.001, checkpoint_size_gb: 0.0001}\n"
                    "stack: {packages: {wandb: null}}\nmonitoring: {sinks: [jsonl]}\n")
    code = main(["check", str(spec), "--format", "json"])
    assert code == 0, capsys.readouterr().out
    att = json.loads(attestation_path(spec).read_text())
    assert {Path(d["path"]).name for d in att["data_files"]} == {"train.jsonl", "val.jsonl", "test.jsonl"}
    assert main(["verify", str(spec)]) == 0
    with (tmp_path / "val.jsonl").open("a") as fh:
        fh.write(json.dumps({"prompt": "a late addition", "answer": "1"}) + "\n")
    capsys.readouterr()
    assert main(["verify", str(spec)]) == 1
    assert "data changed since the check" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["empty", "directory"])
def test_empty_or_directory_split(tmp_path, kind):
    spec = make_dataset(tmp_path)
    val = tmp_path / "val.jsonl"
    val.unlink()
    if kind == "empty":
        val.write_text("")
    else:
        val.mkdir()
    results = data_results(spec)
    assert results["data.files"].status == Status.FAIL
    assert results["data.splits"].status in (Status.FAIL, Status.ERROR)


@pytest.mark.parametrize("content,phrase", [(None, "no such file"), ('{"type": "object"', "not valid JSON"),
                                            ("[1, 2]", "must hold a JSON object")])
def test_a_bad_row_schema_is_a_clear_error_on_every_data_check(tmp_path, content, phrase):
    schema = tmp_path / "row.schema.json"
    if content is not None:
        schema.write_text(content)
    spec = make_dataset(tmp_path, extra_spec=f"  row_schema: {schema}\n")
    results = data_results(spec)
    for cid in ("data.splits", "data.format", "data.duplicates"):
        assert results[cid].status == Status.ERROR, cid
        assert "data.row_schema" in results[cid].found and phrase in results[cid].found
        assert "the check itself failed" not in results[cid].found


def test_row_schema_violations_fail_the_format_check(tmp_path):
    schema = tmp_path / "row.schema.json"
    schema.write_text(json.dumps({"type": "object", "required": ["id", "prompt", "answer"],
                                  "properties": {"answer": {"type": "string", "pattern": "^[0-9]+$"}}}))
    rows = rows_for(prompts(2000))
    rows[2]["answer"] = "twelve"
    spec = make_dataset(tmp_path, train_rows=rows[:1800], extra_spec=f"  row_schema: {schema}\n")
    r = data_results(spec)["data.format"]
    assert r.status == Status.FAIL and r.evidence["problems"]["train"]["schema"] == 1


def test_a_row_over_in_prompt_and_answer_counts_once(tmp_path):
    rows = rows_for(prompts(2000))
    rows[3]["prompt"] = "word " * 5000
    rows[3]["answer"] = "7" * 100_000
    spec = make_dataset(tmp_path, train_rows=rows[:1800], extra_spec="training: {max_prompt_tokens: 512}\n")
    r = data_results(spec)["data.length"]
    assert r.found.startswith("1 rows over")
    assert len(r.evidence["examples"]) == 2  # both fields are named


def test_a_quality_check_left_out_of_quality_checks_is_skipped_and_the_rest_still_run(tmp_path):
    spec = make_dataset(tmp_path, n=400, extra_spec="  quality_checks: [format_standardization]\n")
    results = data_results(spec)
    for name, flag in (("data.duplicates", "duplicate_detection"), ("data.length", "length_validation"),
                       ("data.toxicity", "toxicity_filtering")):
        assert results[name].status == Status.SKIP and flag in results[name].found
    assert results["data.format"].status == Status.PASS
    assert results["data.leakage.exact"].status == Status.PASS


def test_without_data_files_the_data_checks_skip_and_say_why(tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text("run: {name: no-data}\nhardware: {nodes: 2}\n", encoding="utf-8")
    results = data_results(spec)
    for name in ("data.splits", "data.duplicates", "data.leakage.near", "data.length"):
        assert results[name].status == Status.SKIP and "no data files declared" in results[name].found


def test_a_broken_tokenizer_file_is_an_error_naming_it_not_a_check_bug(tmp_path):
    pytest.importorskip("tokenizers")
    tok = tmp_path / "tokenizer.json"
    tok.write_text('{"a": 1', encoding="utf-8")
    spec = make_dataset(tmp_path, n=400, extra_spec=f"  tokenizer: {tok}\n")
    r = data_results(spec)["data.length"]
    assert r.status == Status.ERROR
    assert str(tok) in r.found and "traceback" not in r.evidence
