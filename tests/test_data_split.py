"""The splitter: duplicate groups stay in one split, strata follow the ratios, the seed decides."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
from data_factory import run_data_cli

from preflight.arithmetic import generate
from preflight.cli import main
from preflight.data.split import check_ratios, plan_split, split_file, split_rows
from preflight.errors import InputFileError, UsageError

RATIOS = (0.9, 0.05, 0.05)




def where(parts: tuple[list[int], list[int], list[int]]) -> dict[int, str]:
    return {i: name for name, idx in zip(("train", "val", "test"), parts, strict=True) for i in idx}


def with_planted_groups(n: int = 1000) -> tuple[list[dict], list[int], list[int]]:
    """Generated rows plus a near-duplicate group of 5 and an exact-duplicate group of 4."""
    rows = generate(n, seed=11)
    hard = [r["prompt"] for r in rows if r["difficulty"] == "hard"][:2]
    base = (hard[0] + " " + hard[1]).split()  # ~120 words: one changed word keeps Jaccard >= 0.8
    near = []
    for k in range(5):
        words = list(base)
        words[10 + 20 * k] = f"zebra{k}"
        near.append({"id": f"near{k}", "prompt": " ".join(words), "answer": "1",
                     "difficulty": ("easy", "hard", "hard", "medium", "hard")[k]})
    exact_text = "Tobias counts 77 lanterns in the shop, then sells 12. How many lanterns are left?"
    exact = [{"id": f"dup{k}", "prompt": p, "answer": "65", "difficulty": "medium"}
             for k, p in enumerate([exact_text, exact_text.upper(), "  " + exact_text.replace(" ", "\t"),
                                    exact_text])]
    all_rows = rows[:300] + near[:2] + rows[300:700] + exact[:2] + near[2:] + rows[700:] + exact[2:]
    near_idx = [i for i, r in enumerate(all_rows) if r["id"].startswith("near")]
    exact_idx = [i for i, r in enumerate(all_rows) if r["id"].startswith("dup")]
    return all_rows, near_idx, exact_idx


def test_ratios_hold_per_stratum_on_5k_rows() -> None:
    rows = generate(5000, seed=3)
    parts = split_rows(rows, RATIOS, stratify_by="difficulty", seed=0)
    split_of = where(parts)
    assert sorted(split_of) == list(range(5000))
    by = Counter((rows[i]["difficulty"], s) for i, s in split_of.items())
    sizes = Counter(r["difficulty"] for r in rows)
    for level, size in sizes.items():
        for name, ratio in zip(("train", "val", "test"), RATIOS, strict=True):
            assert abs(by[(level, name)] - ratio * size) <= 1, (level, name, by[(level, name)], size)
            assert abs(by[(level, name)] / size - ratio) <= 0.01

    from preflight.data.stats import stratification

    counts = {s: {lvl: by[(lvl, s)] for lvl in sizes} for s in ("train", "val", "test")}
    stats = stratification(counts)
    assert stats.worst[2] < 0.01 and stats.cramers_v < 0.01


def test_planted_duplicate_groups_are_never_split() -> None:
    rows, near_idx, exact_idx = with_planted_groups()
    seen_splits = set()
    for seed in range(12):
        plan = plan_split(rows, RATIOS, "difficulty", seed)
        split_of = where(plan.parts)
        assert len({split_of[i] for i in near_idx}) == 1, seed
        assert len({split_of[i] for i in exact_idx}) == 1, seed
        assert len({plan.group_of[i] for i in near_idx}) == 1
        assert len({plan.group_of[i] for i in exact_idx}) == 1
        assert plan.groups_kept_together == 2 and plan.rows_in_groups == 9
        assert plan.near_duplicate_groups == 1 and plan.exact_duplicate_groups == 1
        seen_splits.add(split_of[near_idx[0]])
    # The near-duplicate group's stratum is its most common difficulty (hard: 3 of 5).
    plan = plan_split(rows, RATIOS, "difficulty", 0)
    hard = sum(1 for r in rows if r["difficulty"] == "hard")
    assert plan.strata["hard"]["rows"] == hard - 3 + 5


def test_same_seed_same_split_other_seed_other_split() -> None:
    rows = generate(1000, seed=4)
    first = split_rows(rows, RATIOS, seed=7)
    assert split_rows(rows, RATIOS, seed=7) == first
    other = split_rows(rows, RATIOS, seed=8)
    assert other != first
    assert [len(p) for p in other] == [len(p) for p in first]  # the counts depend on the data only
    for parts in (first, other):
        flat = [i for p in parts for i in p]
        assert sorted(flat) == list(range(1000)) and len(flat) == len(set(flat))
        assert all(p == sorted(p) for p in parts)


def test_table_and_rows_give_the_same_split() -> None:
    import pyarrow as pa

    from preflight.data.model import CANONICAL_COLUMNS

    rows, _, _ = with_planted_groups(400)
    table = pa.table({c: pa.array([i + 1 for i in range(len(rows))], pa.int64()) if c == "_line"
                      else pa.array([r.get(c) for r in rows], pa.string()) for c in CANONICAL_COLUMNS})
    assert split_rows(table, RATIOS, seed=2) == split_rows(rows, RATIOS, seed=2)


def test_tiny_datasets_follow_the_rounding_rule() -> None:
    ten = generate(10, seed=0)
    parts = split_rows(ten, RATIOS)
    assert sorted(i for p in parts for i in p) == list(range(10))
    # Strata of 4, 4 and 2 rows: val's and test's targets (0.2, 0.1) never lead, all go to train.
    assert [len(p) for p in parts] == [10, 0, 0]
    # One stratum: the largest remaining deficit wins, ties go to the earlier split.
    assert [len(p) for p in split_rows(ten, RATIOS, stratify_by=None)] == [9, 1, 0]
    assert [len(p) for p in split_rows(generate(20), RATIOS, stratify_by=None)] == [18, 1, 1]
    assert [len(p) for p in split_rows(ten[:1], RATIOS)] == [1, 0, 0]
    many = generate(30, seed=1)
    for size, counts in ((6, [6, 0, 0]), (7, [6, 1, 0]), (13, [12, 1, 0]), (14, [12, 1, 1])):
        assert [len(p) for p in split_rows(many[:size], RATIOS, stratify_by=None)] == counts, size
    assert split_rows([], RATIOS) == ([], [], [])
    assert [len(p) for p in split_rows(ten, (0.0, 0.5, 0.5), stratify_by=None)] == [0, 5, 5]
    assert [len(p) for p in split_rows(ten, (1, 0, 0))] == [10, 0, 0]


def test_missing_values_and_prompts() -> None:
    rows = [{"prompt": f"question number {i} about {i * 7} apples", "difficulty": d}
            for i, d in enumerate(["easy", None, "easy", None, 3, 3, "easy", None])]
    rows += [{"difficulty": "easy"}, {"prompt": "", "difficulty": "easy"}, {"prompt": None, "difficulty": "easy"}]
    plan = plan_split(rows, (0.5, 0.25, 0.25), "difficulty", 0)
    assert set(plan.strata) == {"easy", "3", "(missing)"}
    assert plan.strata["(missing)"]["rows"] == 3 and plan.strata["easy"]["rows"] == 6
    assert plan.groups_kept_together == 0  # rows without a prompt are not one big group
    assert sorted(i for p in plan.parts for i in p) == list(range(len(rows)))


@pytest.mark.parametrize("ratios", [(0.5, 0.5), (0.9, 0.1, 0.1), (1.1, -0.05, -0.05), (float("nan"), 0.5, 0.5)])
def test_bad_ratios_are_refused(ratios: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        check_ratios(ratios)
    with pytest.raises(ValueError):
        split_rows([{"prompt": "a"}], ratios)


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def test_split_file_writes_the_original_lines(tmp_path: Path) -> None:
    rows, near_idx, exact_idx = with_planted_groups(600)
    lines = []
    for k, r in enumerate(rows):
        # Odd formatting and extra fields must survive byte for byte.
        extra = {"source": "gen", "n": k, "note": "café ☕"}
        text = json.dumps({**extra, **r}, ensure_ascii=k % 2 == 0, indent=None, separators=(", ", " : "))
        lines.append(text.encode("utf-8"))
    bad = [b"{not json", b"\xff\xfe broken bytes", b"", b"   "]
    missing_answer = json.dumps({"prompt": "A question with no answer field at all, about 31 owls."}).encode()
    all_lines = lines[:5] + bad + [missing_answer] + lines[5:]
    source = write_lines(tmp_path / "data.jsonl", all_lines)

    summary = split_file(source, tmp_path / "out", RATIOS, "difficulty", 0, None, "math")
    out_lines = {s: (tmp_path / "out" / f"{s}.jsonl").read_bytes().splitlines() for s in ("train", "val", "test")}
    written = [line for s in out_lines.values() for line in s]
    assert sorted(written) == sorted(lines + [missing_answer])  # every row once, exactly as it was
    assert summary["rows"] == len(lines) + 1
    assert summary["lines_skipped"] == {"undecodable": 1, "bad-json": 1}
    assert summary["format_problems"].get("missing:answer") == 1
    assert {s: v["rows"] for s, v in summary["splits"].items()} == {s: len(v) for s, v in out_lines.items()}
    # the near-duplicate group also takes in the two generated rows it was built from: they share
    # 13-word runs with it, which the contamination check would flag across splits (11 rows, not 9)
    assert summary["groups"] == {"kept_together": 2, "rows_in_groups": 11, "near_duplicate": 1,
                                 "exact_duplicate": 1, "shared_ngram": 0}
    assert sum(v["rows"] for v in summary["strata"].values()) == summary["rows"]
    # Planted groups: each group's lines all in one output file.
    for idx in (near_idx, exact_idx):
        homes = {s for i in idx for s, ls in out_lines.items() if lines[i] in ls}
        assert len(homes) == 1
    # Deterministic: the same call writes the same bytes.
    again = split_file(source, tmp_path / "again", RATIOS, "difficulty", 0, None, "math")
    assert again["splits"]["val"]["rows"] == summary["splits"]["val"]["rows"]
    assert (tmp_path / "again" / "val.jsonl").read_bytes() == (tmp_path / "out" / "val.jsonl").read_bytes()


def test_split_file_reads_gzip_and_custom_field_names(tmp_path: Path) -> None:
    rows = [{"question": r["prompt"], "solution": r["answer"], "level": r["difficulty"], "uid": r["id"]}
            for r in generate(200, seed=9)]
    source = tmp_path / "data.jsonl.gz"
    with gzip.open(source, "wb") as fh:
        fh.write(b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    fields = {"prompt": "question", "answer": "solution", "id": "uid"}
    summary = split_file(source, tmp_path / "out", RATIOS, "level", 1, fields, "math")
    assert set(summary["strata"]) == {"easy", "medium", "hard"}
    back = [json.loads(x) for s in ("train", "val", "test")
            for x in (tmp_path / "out" / f"{s}.jsonl").read_text("utf-8").splitlines()]
    assert sorted(back, key=lambda r: r["uid"]) == sorted(rows, key=lambda r: r["uid"])


def test_split_file_parquet_writes_each_row_as_the_file_holds_it(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = generate(100, seed=5)
    table = pa.table({"question": [r["prompt"] for r in rows], "solution": [int(r["answer"]) for r in rows],
                      "level": [r["difficulty"] for r in rows], "uid": [r["id"] for r in rows],
                      "extra": ["kept"] * len(rows)})
    pq.write_table(table, tmp_path / "data.parquet")
    fields = {"prompt": "question", "answer": "solution", "difficulty": "level", "id": "uid"}
    summary = split_file(tmp_path / "data.parquet", tmp_path / "out", RATIOS, "level", 0, fields, "math")
    assert summary["format"] == "parquet" and summary["rows"] == 100
    back = [json.loads(x) for s in ("train", "val", "test")
            for x in (tmp_path / "out" / f"{s}.jsonl").read_text("utf-8").splitlines()]
    assert len(back) == 100
    assert all(set(r) == {"question", "solution", "level", "uid", "extra"} for r in back)  # every column
    by_id = {r["uid"]: r for r in back}
    assert all(by_id[r["id"]]["solution"] == int(r["answer"]) for r in rows)  # numbers stay numbers


def test_split_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = generate(400, seed=2)
    source = write_lines(tmp_path / "all.jsonl", [json.dumps(r).encode() for r in rows])
    assert run_data_cli("split", str(source), "--out", str(tmp_path / "o"), "--ratios", "0.8,0.1,0.1",
                   "--seed", "3") == 0
    out = capsys.readouterr().out
    assert "train" in out and "320  (80.0%)" in out and "stratified by difficulty" in out
    assert sum(len((tmp_path / "o" / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "val", "test")) == 400

    assert run_data_cli("split", str(source), "--out", str(tmp_path / "n"), "--stratify-by", "none") == 0
    assert "stratified" not in capsys.readouterr().out
    assert run_data_cli("split", str(source), "--out", str(tmp_path / "l"), "--stratify-by", "level") == 0
    assert "no row has a 'level' value" in capsys.readouterr().out

    spec = tmp_path / "run.yaml"
    spec.write_text("run: {name: s, domain: math}\ndata:\n  split: {train_ratio: 0.5, val_ratio: 0.25, "
                    "test_ratio: 0.25}\n", encoding="utf-8")
    assert run_data_cli("split", str(source), "--out", str(tmp_path / "s"), "--spec", str(spec)) == 0
    assert len((tmp_path / "s" / "train.jsonl").read_text().splitlines()) == 200

    with pytest.raises(UsageError, match="three numbers"):
        run_data_cli("split", str(source), "--out", str(tmp_path / "x"), "--ratios", "0.9,0.1")
    with pytest.raises(UsageError, match="sum to 1"):
        run_data_cli("split", str(source), "--out", str(tmp_path / "x"), "--ratios", "0.9,0.1,0.1")
    with pytest.raises(InputFileError):
        run_data_cli("split", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "x"))
    # Writing train.jsonl over the input would lose it.
    inside = write_lines(tmp_path / "w" / "train.jsonl", [json.dumps(r).encode() for r in rows[:20]])
    with pytest.raises(UsageError, match="input file"):
        run_data_cli("split", str(inside), "--out", str(tmp_path / "w"))
    assert len(inside.read_text().splitlines()) == 20


def test_rows_sharing_a_13_word_run_stay_in_one_split_so_the_split_passes_contamination(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two different problems quoting one 13+ word sentence are not near-duplicates, yet the
    contamination check flags them across train and val: `data split` keeps them together, and
    `preflight check` then finds no contamination between the splits it wrote."""
    rows = generate(1200, seed=5)
    sentence = "a famous riddle says that the old ferryman crosses the wide river with seven heavy sacks of grain"
    planted = [{"id": f"quote{k}", "prompt": f"{rows[k]['prompt']} Note: {sentence}.", "answer": rows[k]["answer"],
                "difficulty": rows[k]["difficulty"]} for k in range(12)]
    source = tmp_path / "all.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in planted + rows[12:]), encoding="utf-8")
    summary = split_file(source, tmp_path / "out", (0.8, 0.1, 0.1), "difficulty", seed=3)
    placed = {json.loads(line)["id"]: name for name in ("train", "val", "test")
              for line in (tmp_path / "out" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()}
    assert len({placed[f"quote{k}"] for k in range(12)}) == 1
    assert summary["groups"]["shared_ngram"] >= 1
    without = split_file(source, tmp_path / "plain", (0.8, 0.1, 0.1), "difficulty", seed=3, ngram=None)
    assert without["groups"]["shared_ngram"] == 0

    spec = tmp_path / "run.yaml"
    spec.write_text(
        "run: {name: t, domain: math}\n"
        f"data: {{train: {tmp_path / 'out' / 'train.jsonl'}, val: {tmp_path / 'out' / 'val.jsonl'}, "
        f"test: {tmp_path / 'out' / 'test.jsonl'}, split: {{train_ratio: 0.8, val_ratio: 0.1, test_ratio: 0.1}}}}\n",
        encoding="utf-8")
    main(["check", str(spec), "--only", "data.contamination", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    (result,) = [r for r in report["results"] if r["id"] == "data.contamination"]
    assert result["status"] == "pass", result
