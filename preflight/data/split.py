"""Split a dataset into train / val / test: duplicates kept together, stratified, deterministic.

How ``split_rows`` decides:

1. **Groups.** Prompts are normalized (``normalize_text``: NFKC, lower case, collapsed
   whitespace). Rows whose normalized prompts are equal, or near-duplicates (MinHash LSH over word
   shingles, verified by exact Jaccard >= ``NearDupConfig.threshold``), are joined into one group
   (connected components), and a group always lands in one split: no prompt can leak from train
   into val or test through a copy or a light edit. ``split_file`` (and ``plan_split`` with
   ``ngram``) also joins rows that share a word n-gram (13 by default) of what the contamination
   check compares, template text shared by many rows cut out first, so the splits it writes pass
   ``data.contamination`` between them. Rows without a prompt (missing or empty) are never grouped
   with each other; each is its own group.
2. **Strata.** A group's stratum is the most common ``stratify_by`` value among its rows (a tie
   goes to the value of the group's first row); a missing value is a stratum of its own.
   ``stratify_by=None`` puts every row in one stratum.
3. **Assignment.** Strata are taken in sorted order (the missing-value stratum last). Within a
   stratum the groups are shuffled by a ``random.Random(seed)`` shared by all strata, then ordered
   by size, largest first (stable, so equal sizes keep the shuffled order). Each group goes to the
   split with the largest remaining deficit, ``ratio * stratum_rows - rows_assigned_so_far``
   (ties go to the earlier split: train, then val, then test; a split whose ratio is 0 gets
   nothing). With single-row groups every split ends within one row of its target, and the
   rounding rule for tiny strata follows from it. At 0.9/0.05/0.05 a stratum of 1 to 6 rows goes
   entirely to train (val's deficit, 0.05 * rows, never leads); 7 to 13 rows give val one row
   (10 rows: 9/1/0, since after 9 train rows val's 0.5 beats train's 0 and ties test's, and the
   earlier split wins the tie); from 14 rows test gets one too (14: 12/1/1, 20: 18/1/1). A
   small dataset stratified into several small strata can therefore leave val or test empty.

The result is deterministic for a seed (no dependence on ``PYTHONHASHSEED`` or the machine), a
different seed gives a different assignment, and every row is in exactly one split.

``split_file`` reads a file through ``read_split`` (JSONL, JSONL.gz, Parquet, a Hugging Face
``save_to_disk`` folder) and writes ``train.jsonl``, ``val.jsonl``, ``test.jsonl``:

- JSONL input: each output line is the original line's text, byte for byte (looked up by its line
  number), so fields the canonical columns do not carry survive. Rows with format problems (a
  missing answer, a wrong type) are rows and go to a split; lines that are not rows at all
  (undecodable bytes, invalid JSON, not an object) go nowhere and are counted in the summary.
- Parquet / Arrow / dataset-folder input: each output line is the input row as the file holds it,
  every column, as JSON (a chat prompt stays a list of messages, nested fields stay nested; bytes
  become text, dates ISO text).
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .formats import AUTO
from .minhash import NearDupConfig, duplicate_groups, near_duplicate_pairs
from .ngrams import shared_ngram_pairs, split_templates, template_phrases
from .normalize import contamination_text, normalize_array, normalize_text
from .readers import original_batches, read_split

if TYPE_CHECKING:
    from .model import SplitTable

SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (0.9, 0.05, 0.05)
DEFAULT_FIELDS = {"prompt": "prompt", "answer": "answer", "tests": "tests", "messages": "messages",
                  "difficulty": "difficulty", "id": "id"}
MISSING_STRATUM = "(missing)"  # how the stratum of rows without a stratify_by value is reported
NOT_ROWS = ("undecodable", "bad-json")  # problem kinds of lines that never become rows
_PARQUET_MAGIC = b"PAR1"
_BOM = b"\xef\xbb\xbf"


@dataclass
class SplitPlan:
    """Row indices per split, and how they came about."""

    train: list[int]
    val: list[int]
    test: list[int]
    group_of: list[int]  # per row: the smallest row index of its duplicate group
    strata: dict[str, dict[str, int]]  # stratum -> {"rows", "train", "val", "test"}
    groups_kept_together: int  # groups of two or more rows
    rows_in_groups: int  # rows in those groups
    near_duplicate_groups: int  # groups joined by at least one near-duplicate (not identical) pair
    exact_duplicate_groups: int  # groups of identical normalized prompts only
    ngram_groups: int = 0  # groups joined only by shared word n-grams (no duplicate or near-duplicate pair)
    split_of: list[str] = field(default_factory=list)  # per row: "train" | "val" | "test"

    @property
    def parts(self) -> tuple[list[int], list[int], list[int]]:
        return self.train, self.val, self.test


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Three non-negative ratios summing to 1 (within 1e-6), or a ValueError saying what is wrong."""
    values = tuple(float(r) for r in ratios)
    if len(values) != 3:
        raise ValueError(f"expected 3 ratios (train, val, test), got {len(values)}")
    if any(not math.isfinite(r) or r < 0 for r in values):
        raise ValueError(f"ratios must be non-negative numbers, got {','.join(map(str, values))}")
    total = sum(values)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"ratios must sum to 1, got {','.join(map(str, values))} (sum {total:g})")
    return values[0] / total, values[1] / total, values[2] / total


def split_rows(table_or_rows: Any, ratios: Sequence[float] = DEFAULT_RATIOS,
               stratify_by: str | None = "difficulty", seed: int = 0,
               near_dup_cfg: NearDupConfig | None = None) -> tuple[list[int], list[int], list[int]]:
    """Row indices (ascending) of train, val and test; see the module docstring for the rules.

    ``table_or_rows``: a canonical ``pyarrow.Table`` (or a ``SplitTable``), whose ``prompt`` column
    is grouped and whose ``stratify_by`` column stratifies; or a list of dicts with a ``"prompt"``
    key and the ``stratify_by`` key.
    """
    return plan_split(table_or_rows, ratios, stratify_by, seed, near_dup_cfg).parts


def plan_split(table_or_rows: Any, ratios: Sequence[float] = DEFAULT_RATIOS,
               stratify_by: str | None = "difficulty", seed: int = 0,
               near_dup_cfg: NearDupConfig | None = None, ngram: int | None = None) -> SplitPlan:
    """``split_rows`` with the details: groups, strata, counts. With ``ngram`` (a table only), rows
    that share a word n-gram of what the contamination check compares are grouped too."""
    shares = check_ratios(ratios)
    prompts, strata = _columns(table_or_rows, stratify_by)
    n = len(prompts)
    shared = _shared_ngram_pairs(table_or_rows, ngram) if ngram else []
    labels, near_labels, exact_labels, ngram_labels = _groups(prompts, near_dup_cfg or NearDupConfig(), shared)

    members: dict[int, list[int]] = {}
    for i, g in enumerate(labels):
        members.setdefault(g, []).append(i)
    by_stratum: dict[str | None, list[list[int]]] = {}
    for rows in members.values():  # in order of each group's first row
        by_stratum.setdefault(_group_stratum(rows, strata), []).append(rows)

    rng = random.Random(seed)
    split_of = [""] * n
    counts: dict[str, dict[str, int]] = {}
    for stratum in sorted(by_stratum, key=lambda s: (s is None, s or "")):
        groups = by_stratum[stratum]
        rng.shuffle(groups)
        groups.sort(key=len, reverse=True)
        size = sum(len(g) for g in groups)
        targets = [r * size for r in shares]
        assigned = [0, 0, 0]
        open_splits = [k for k in range(3) if shares[k] > 0]
        for rows in groups:
            k = max(open_splits, key=lambda k: (targets[k] - assigned[k], -k))
            assigned[k] += len(rows)
            for i in rows:
                split_of[i] = SPLITS[k]
        counts[MISSING_STRATUM if stratum is None else stratum] = {
            "rows": size, **dict(zip(SPLITS, assigned, strict=True))}

    parts: dict[str, list[int]] = {s: [] for s in SPLITS}
    for i, s in enumerate(split_of):
        parts[s].append(i)
    multi = [rows for rows in members.values() if len(rows) > 1]
    return SplitPlan(
        train=parts["train"], val=parts["val"], test=parts["test"], group_of=labels, strata=counts,
        groups_kept_together=len(multi), rows_in_groups=sum(len(r) for r in multi),
        near_duplicate_groups=len(near_labels),
        exact_duplicate_groups=len(exact_labels - near_labels),
        ngram_groups=len(ngram_labels - near_labels - exact_labels),
        split_of=split_of,
    )


def _columns(data: Any, stratify_by: str | None) -> tuple[list[str | None], list[str | None]]:
    """Normalized prompts and stratum values of a table, a SplitTable or a list of dicts."""
    table = getattr(data, "table", data)
    if hasattr(table, "column_names"):
        n = table.num_rows
        if "prompt" not in table.column_names:
            raise ValueError("the table has no 'prompt' column")
        if stratify_by and stratify_by not in table.column_names:
            raise ValueError(f"the table has no {stratify_by!r} column to stratify by")
        column = table.column("prompt")
        column = column.combine_chunks() if hasattr(column, "combine_chunks") else column
        prompts = normalize_array(column).to_pylist()
        strata: list[str | None] = ([_as_text(v) for v in table.column(stratify_by).to_pylist()]
                                    if stratify_by else [None] * n)
        return list(prompts), strata
    rows = list(data)
    prompts = [None if r.get("prompt") is None else normalize_text(_as_text(r.get("prompt")) or "")
               for r in rows]
    strata = [_as_text(r.get(stratify_by)) if stratify_by else None for r in rows]
    return prompts, strata


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _groups(prompts: list[str | None], cfg: NearDupConfig,
            shared: list[tuple[int, int]]) -> tuple[list[int], set[int], set[int], set[int]]:
    """Group label per row (smallest index of its group), and the labels of groups joined by a
    near-duplicate pair, by identical prompts, and by a shared n-gram (``shared``'s pairs)."""
    first: dict[str, int] = {}
    unique: list[int] = []
    pairs: list[tuple[int, int]] = []
    for i, p in enumerate(prompts):
        if not p:
            continue
        j = first.setdefault(p, i)
        if j == i:
            unique.append(i)
        else:
            pairs.append((j, i))
    near: list[tuple[int, int]] = []
    if len(unique) > 1:
        texts = [prompts[i] or "" for i in unique]
        near = [(unique[a], unique[b]) for a, b, _ in near_duplicate_pairs(texts, cfg)]
    labels = [int(x) for x in duplicate_groups(len(prompts), pairs + near + shared)]
    return (labels, {labels[i] for i, _ in near}, {labels[i] for i, _ in pairs},
            {labels[i] for i, _ in shared})


def _shared_ngram_pairs(data: Any, n: int) -> list[tuple[int, int]]:
    """Pairs of rows sharing a word n-gram in the texts `data.contamination` compares (the
    conversation of a chat prompt, else the prompt, normalized the lm-evaluation-harness way, with
    template text cut out), so that rows it would flag between splits stay in one split."""
    import pyarrow as pa

    table = getattr(data, "table", data)
    if not hasattr(table, "column_names"):
        return []  # rows as dicts (the built-in task): duplicates and near-duplicates only
    if "conversation" not in table.column_names:
        table = table.append_column("conversation", pa.nulls(len(table), pa.string()))
    texts = contamination_text(table)
    pieces, owner = split_templates(texts, template_phrases([texts]))
    return [(int(a), int(b)) for a, b in shared_ngram_pairs(pieces, n, owner).tolist()]


def _group_stratum(rows: list[int], strata: list[str | None]) -> str | None:
    if len(rows) == 1:
        return strata[rows[0]]
    tally = Counter(strata[i] for i in rows)
    top = max(tally.values())
    return next(strata[i] for i in rows if tally[strata[i]] == top)


# --- files ---------------------------------------------------------------------------------------


def file_kind(path: Path) -> str:
    """'dataset' (a save_to_disk folder), 'parquet', 'arrow' or 'jsonl' (plain or gzip), by name,
    then by the first bytes, as the readers decide."""
    if path.is_dir():
        return "dataset"
    low = path.name.lower()
    if low.endswith((".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz")):
        return "jsonl"
    if low.endswith((".parquet", ".pq")):
        return "parquet"
    if low.endswith(".arrow"):
        return "arrow"
    head = _head(path)
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    if head.startswith((b"ARROW1", b"\xff\xff\xff\xff")):
        return "arrow"
    return "jsonl"


def _head(path: Path, size: int = 8) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(size)
    except OSError:
        return b""


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line_number, bytes)`` of a JSONL file (gzip by name or by its first bytes), 1-based,
    line ends and a leading BOM removed: the numbering the readers use for ``_line``."""
    gz = path.name.lower().endswith(".gz") or _head(path, 2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gz else path.open("rb")) as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.rstrip(b"\r\n")
            if number == 1 and line.startswith(_BOM):
                line = line[len(_BOM):]
            yield number, line


def is_blank(line: bytes) -> bool:
    """A line the readers skip (empty, or only spaces, tabs and carriage returns)."""
    return not line.strip(b" \t\r")


def given_fields(fields: dict[str, str] | None) -> dict[str, str]:
    """The field paths a spec names; a column it leaves out takes its format preset's path."""
    return {k: v for k, v in (fields or {}).items() if v}


def read_fields(st: SplitTable, fields: dict[str, str]) -> dict[str, str]:
    """Where each canonical column was read from: the format's preset (verl's
    ``reward_model.ground_truth``...) under the spec's own ``fields``, the plain names otherwise."""
    layout = st.layout.fields if st.layout is not None else {}
    return {**DEFAULT_FIELDS, **layout, **fields}


def guard_outputs(source: Path, outputs: list[Path]) -> None:
    """Refuse to write over the input (reading and writing one file at once would lose it)."""
    src = source.resolve()
    for out in outputs:
        if out.resolve() == src:
            raise ValueError(f"{out} is the input file; choose another output folder")


class AtomicWriters:
    """One output file per name, written to a temporary file and moved into place on close."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths
        self._tmp = {k: p.with_name(p.name + ".tmp") for k, p in paths.items()}
        self._fh = {k: t.open("wb") for k, t in self._tmp.items()}
        self.counts = dict.fromkeys(paths, 0)

    def write(self, name: str, line: bytes) -> None:
        self._fh[name].write(line + b"\n")
        self.counts[name] += 1

    def close(self, ok: bool = True) -> None:
        for k, fh in self._fh.items():
            fh.close()
            if ok:
                os.replace(self._tmp[k], self.paths[k])
            else:
                self._tmp[k].unlink(missing_ok=True)


def split_file(input: str | Path, out_dir: str | Path, ratios: Sequence[float] = DEFAULT_RATIOS,
               stratify_by: str | None = "difficulty", seed: int = 0,
               fields: dict[str, str] | None = None, domain: str = "math",
               near_dup_cfg: NearDupConfig | None = None,
               row_schema: dict[str, Any] | None = None, data_format: str = AUTO,
               ngram: int | None = 13) -> dict[str, Any]:
    """Split ``input`` into ``out_dir``/train.jsonl, val.jsonl, test.jsonl; return a summary.

    ``fields`` maps canonical names to the file's field names (defaults: the same names);
    ``stratify_by`` names the file's field to stratify by (it is read in place of ``fields
    ["difficulty"]``). Raises ``DataFileError`` for a file that cannot be read at all and
    ``ValueError`` for bad arguments. The summary::

        {"input", "out_dir", "format", "rows", "lines_skipped": {"undecodable", "bad-json"},
         "format_problems": {kind: rows}, "ratios", "stratify_by", "seed",
         "splits": {split: {"path", "rows"}}, "strata": {stratum: {"rows", "train", "val", "test"}},
         "groups": {"kept_together", "rows_in_groups", "near_duplicate", "exact_duplicate", "shared_ngram"}}

    ``ngram``: rows sharing a word n-gram (what ``data.contamination`` compares) are kept in one
    split too; None turns that off.
    """
    shares = check_ratios(ratios)
    source = Path(input)
    out = Path(out_dir)
    fields = given_fields(fields)
    if stratify_by:
        fields["difficulty"] = stratify_by
    paths = {s: out / f"{s}.jsonl" for s in SPLITS}
    guard_outputs(source, list(paths.values()))
    kind = file_kind(source)
    st = read_split(source, source.name, fields, domain, row_schema, data_format)
    fields = read_fields(st, fields)
    plan = plan_split(st.table, shares, "difficulty" if stratify_by else None, seed, near_dup_cfg, ngram)

    out.mkdir(parents=True, exist_ok=True)
    writers = AtomicWriters(paths)
    ok = False
    try:
        if kind == "jsonl":
            where = dict(zip(st.table.column("_line").to_pylist(), plan.split_of, strict=True))
            for number, line in iter_lines(source):
                split = where.get(number)
                if split:
                    writers.write(split, line)
        else:  # each row as the file holds it, every column (a chat prompt stays a message list)
            where = dict(zip(st.table.column("_line").to_pylist(), plan.split_of, strict=True))
            number = 0
            for batch in original_batches(source, kind):
                for row in batch.to_pylist():
                    number += 1
                    split = where.get(number)
                    if split:
                        writers.write(split, json.dumps(row, ensure_ascii=False, default=json_value).encode("utf-8"))
        ok = True
    finally:
        writers.close(ok)
    return _summary(source, out, kind, st, plan, shares, stratify_by, seed, paths, writers.counts, ngram)


def json_value(value: Any) -> Any:
    """A column value JSON has no type for: bytes as text (or base64), dates and times in ISO
    format, decimals and anything else as their text."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _summary(source: Path, out: Path, kind: str, st: SplitTable, plan: SplitPlan,
             shares: tuple[float, float, float], stratify_by: str | None, seed: int,
             paths: dict[str, Path], written: dict[str, int], ngram: int | None) -> dict[str, Any]:
    return {
        "input": str(source),
        "out_dir": str(out),
        "format": kind,
        "rows": st.rows,
        "lines_skipped": {k: st.problems[k].count if k in st.problems else 0 for k in NOT_ROWS},
        "format_problems": {k: p.count for k, p in sorted(st.problems.items()) if k not in NOT_ROWS and p.count},
        "ratios": list(shares),
        "stratify_by": stratify_by,
        "seed": seed,
        "ngram": ngram,
        "splits": {s: {"path": str(paths[s]), "rows": written[s]} for s in SPLITS},
        "strata": plan.strata,
        "groups": {"kept_together": plan.groups_kept_together, "rows_in_groups": plan.rows_in_groups,
                   "near_duplicate": plan.near_duplicate_groups,
                   "exact_duplicate": plan.exact_duplicate_groups, "shared_ngram": plan.ngram_groups},
    }

