"""A data check that cannot read the text it needs never passes.

Every check that reads rows fails closed on the fields it reads: a split in which no row has one
is an error naming the split, the field and a row; rows without it are counted and turn a pass
into a warning. data.files looks at each file's first rows or schema and fails on a required
field none of them has. data.version_control judges how files are stored and reads no field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from data_factory import write_jsonl, write_parquet
from data_layouts import as_layout, canonical_rows, data_outcomes, prompts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from preflight.engine import REGISTRY
from preflight.result import Status

# The canonical fields each data check reads, by domain (what the property below drops).
READS: dict[str, dict[str, tuple[str, ...]]] = {
    "data.files": {"math": ("prompt", "answer"), "code": ("prompt", "tests"), "chat": ("messages",)},
    "data.splits": {"math": ("prompt", "answer"), "code": ("prompt", "tests"), "chat": ("messages",)},
    "data.format": {"math": ("prompt", "answer"), "code": ("prompt", "tests"), "chat": ("messages",)},
    "data.duplicates": {"math": ("prompt",), "code": ("prompt",), "chat": ("messages",)},
    "data.leakage.exact": {"math": ("prompt",), "code": ("prompt",), "chat": ("messages",)},
    "data.leakage.near": {"math": ("prompt",), "code": ("prompt",), "chat": ("messages",)},
    "data.contamination": {"math": ("prompt",), "code": ("prompt",), "chat": ("messages",)},
    "data.length": {"math": ("prompt", "answer"), "code": ("prompt",), "chat": ("messages",)},
    "data.toxicity": {"math": ("prompt", "answer"), "code": ("prompt",), "chat": ("messages",)},
    "data.stratification": {"math": ("difficulty",), "code": ("difficulty",), "chat": ("difficulty",)},
}
NO_FIELD = {"data.version_control"}  # how files are stored: reads no field


def test_every_data_check_is_covered() -> None:
    assert set(READS) | NO_FIELD == {c for c in REGISTRY if c.startswith("data.")}


def domain_row(row: dict[str, Any], domain: str) -> dict[str, Any]:
    if domain == "code":
        return {"id": row["id"], "prompt": row["prompt"], "tests": [f"assert f() == {row['answer']}"],
                "difficulty": row["difficulty"]}
    if domain == "chat":
        return {"id": row["id"], "messages": [{"role": "user", "content": row["prompt"]}],
                "difficulty": row["difficulty"]}
    return dict(row)


def laid_out(row: dict[str, Any], domain: str, layout: str, index: int) -> dict[str, Any]:
    """A row in a format; the chat domain keeps its messages field, the others may use a preset."""
    return domain_row(row, domain) if domain != "math" or layout == "plain" else as_layout(row, layout, index)


def field_path(layout: str, domain: str, column: str) -> str:
    if domain != "math" or layout == "plain":
        return column
    return {"verl": {"prompt": "prompt", "answer": "reward_model.ground_truth", "difficulty": "extra_info.difficulty"},
            "trl": {"prompt": "prompt", "answer": "completion", "difficulty": "difficulty"},
            "openrlhf": {"prompt": "input", "answer": "label", "difficulty": "difficulty"}}[layout][column]


def drop(obj: dict[str, Any], path: str) -> None:
    """Remove a dotted path from a row (the field is absent)."""
    *parents, last = path.split(".")
    for p in parents:
        obj = obj[p]
    obj.pop(last, None)


def build(folder: Path, domain: str, layout: str, suffix: str, missing: tuple[str, str] | None,
          how: str = "absent", extra: str = "") -> Path:
    """A clean 200-row dataset (90/5/5) whose ``missing`` = (split, canonical field) is absent."""
    rows = canonical_rows(prompts(200, seed=11))
    parts = {"train": rows[:180], "val": rows[180:190], "test": rows[190:]}
    paths = {}
    for name, part in parts.items():
        laid = [laid_out(r, domain, layout, i) for i, r in enumerate(part)]
        if missing is not None and missing[0] == name:
            path = field_path(layout, domain, missing[1])
            for r in laid:
                if how == "absent":
                    drop(r, path)
                else:  # renamed: the file has it under another name than the spec says
                    r["other_" + path.replace(".", "_")] = "x"
                    drop(r, path)
        write = write_parquet if suffix == ".parquet" else write_jsonl
        paths[name] = write(folder / f"{name}{suffix}", laid)
    return _spec(folder, paths, domain, extra)


def _spec(folder: Path, paths: dict[str, Path], domain: str, extra: str) -> Path:
    spec = folder / "run.yaml"
    spec.write_text(f"run: {{name: closed, domain: {domain}}}\nhardware: {{gpu_required: false}}\ndata:\n"
                    + "".join(f"  {k}: {p}\n" for k, p in paths.items()) + "  version_control: none\n"
                    + "  stratification: {max_deviation: 0.1}\n" + extra,  # 10-row splits cannot be closer
                    encoding="utf-8")
    return spec


def test_a_clean_dataset_in_each_layout_passes_every_check_that_reads_it(tmp_path: Path) -> None:
    for layout, suffix in (("plain", ".jsonl"), ("verl", ".parquet"), ("trl", ".jsonl"), ("openrlhf", ".parquet")):
        folder = tmp_path / layout
        folder.mkdir()
        results = data_outcomes(build(folder, "math", layout, suffix, None))
        for cid, r in results.items():
            assert r.status in (Status.PASS, Status.SKIP), (layout, cid, r.found)
        assert results["data.duplicates"].status == Status.PASS, layout


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_split_whose_configured_field_is_absent_never_passes(tmp_path_factory: pytest.TempPathFactory,
                                                               data: st.DataObject) -> None:
    domain = data.draw(st.sampled_from(["math", "code", "chat"]), label="domain")
    layout = data.draw(st.sampled_from(["plain", "verl", "trl", "openrlhf"] if domain == "math" else ["plain"]))
    suffix = data.draw(st.sampled_from([".jsonl", ".parquet"]), label="suffix")
    split = data.draw(st.sampled_from(["train", "val", "test"]), label="split")
    fields = sorted({f for reads in READS.values() for f in reads[domain]})
    column = data.draw(st.sampled_from(fields), label="field")
    how = data.draw(st.sampled_from(["absent", "renamed"]), label="how")
    extra = ""
    if column == "difficulty":  # stratification reads the field the spec names: name it
        extra = f"  fields: {{difficulty: {field_path(layout, domain, 'difficulty')}}}\n"
    folder = tmp_path_factory.mktemp("closed")
    results = data_outcomes(build(folder, domain, layout, suffix, (split, column), how, extra))
    for cid, reads in READS.items():
        if column in reads[domain]:
            r = results[cid]
            assert r.status != Status.PASS, (cid, domain, layout, split, column, r.found)
            if column == "difficulty" and split != "train":
                continue  # the other splits still have it: stratification judges what there is
            assert r.status in (Status.ERROR, Status.FAIL), (cid, domain, layout, split, column, r.status, r.found)


@pytest.mark.parametrize(("cid", "column"), [(c, f) for c in sorted(READS) for f in ("prompt", "answer")
                                             if f in READS[c]["math"]])
def test_each_check_errs_or_fails_naming_the_field_the_split_and_a_row(tmp_path: Path, cid: str, column: str) -> None:
    spec = build(tmp_path, "math", "verl", ".parquet", ("val", column))
    r = data_outcomes(spec, (cid,))[cid]
    assert r.status in (Status.ERROR, Status.FAIL), r.found
    field = field_path("verl", "math", column)
    assert f"'{field}'" in r.found
    assert "val" in r.found and f"{tmp_path / 'val.parquet'}:1" in r.found


def test_a_prompt_field_named_wrong_is_an_error_that_says_how_to_fix_it(tmp_path: Path) -> None:
    spec = build(tmp_path, "math", "plain", ".jsonl", None, extra="  fields: {prompt: question}\n")
    r = data_outcomes(spec, ("data.duplicates",))["data.duplicates"]
    assert r.status == Status.ERROR
    assert r.found.startswith(f"train ({tmp_path / 'train.jsonl'}): no row has a readable prompt: field 'question' "
                              "is absent in all 180 rows")
    assert "read as plain (detected" in r.found
    assert "data.fields.prompt" in r.remediation and "data.format" in r.remediation


def test_rows_partly_without_the_field_are_counted_and_do_not_pass(tmp_path: Path) -> None:
    rows = canonical_rows(prompts(200, seed=5))
    for i in (3, 50, 77):
        rows[i] = {k: v for k, v in rows[i].items() if k != "prompt"}
    rows[90]["prompt"] = 17  # a wrong type
    paths = {"train": write_jsonl(tmp_path / "train.jsonl", rows[:180]),
             "val": write_jsonl(tmp_path / "val.jsonl", rows[180:190]),
             "test": write_jsonl(tmp_path / "test.jsonl", rows[190:])}
    results = data_outcomes(_spec(tmp_path, paths, "math", ""))
    for cid in ("data.duplicates", "data.leakage.exact", "data.leakage.near", "data.contamination"):
        r = results[cid]
        assert r.status == Status.WARN, (cid, r.found)
        assert "4 of 180 train rows have no readable prompt and were not compared" in r.found
        assert r.evidence["unreadable"] == {"train.prompt": 4}
    assert results["data.format"].status == Status.FAIL


def test_an_empty_prompt_in_every_row_is_an_error(tmp_path: Path) -> None:
    rows = [{**r, "prompt": "  "} for r in canonical_rows(prompts(200))]
    paths = {"train": write_jsonl(tmp_path / "train.jsonl", rows[:180]),
             "val": write_jsonl(tmp_path / "val.jsonl", canonical_rows(prompts(10, seed=2))),
             "test": write_jsonl(tmp_path / "test.jsonl", canonical_rows(prompts(10, seed=3)))}
    r = data_outcomes(_spec(tmp_path, paths, "math", ""), ("data.leakage.exact",))["data.leakage.exact"]
    assert r.status == Status.ERROR and "is empty in all 180 rows" in r.found


def test_a_named_stratification_field_that_no_row_has_is_an_error(tmp_path: Path) -> None:
    spec = build(tmp_path, "math", "plain", ".jsonl", None, extra="  split: {stratify_by: level}\n")
    r = data_outcomes(spec, ("data.stratification",))["data.stratification"]
    assert r.status == Status.ERROR and "'level'" in r.found
    spec = build(tmp_path, "math", "trl", ".jsonl", None)  # trl rows here have a difficulty field
    assert data_outcomes(spec, ("data.stratification",))["data.stratification"].status == Status.PASS
