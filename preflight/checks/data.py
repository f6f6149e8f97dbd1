"""The dataset: splits present and in proportion, stratified, well-formed, unique, leak-free,
within the length budget, clean of lexicon hits, and under version control.

Every check reads the splits through the shared, memoized loader in ``_dataset``; pyarrow and
numpy are imported only once a check has data to look at (the data modules import them inside
their functions), so `preflight check` on a spec without data stays light.

The checks fail closed: each one that reads row text is wrapped by ``_reads`` with the columns it
reads, and a split in which none of them can be read is an error, never a pass (docs/data.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data.formats import Layout
from ..data.lengths import token_lengths
from ..data.minhash import NearDupConfig, near_duplicate_pairs
from ..data.model import DataFileError
from ..data.ngrams import overlap, split_templates, template_phrases
from ..data.readers import peek
from ..data.repeats import repeated_rows
from ..data.stats import stratification as stratify
from ..data.toxicity import matcher_for, scan_column
from ..data.vcs import tracking
from ..registry import Context, Rule, check
from ..result import Outcome, Status, errored, failed, passed, skipped, warned
from . import _dataset as ds

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
DATA_TIMEOUT_S = 900.0  # a million-row split takes seconds; a slow network mount can take minutes
NO_DATA = "no data files declared: the runner generates its built-in arithmetic task"
CLEAN_HINT = "`preflight data clean FILE --out DIR` writes the passing rows and quarantines the rest with reasons"


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _reads(*columns: str) -> Callable[[Callable[[Context], Outcome]], Callable[[Context], Outcome]]:
    """Have a check fail closed on the text columns it reads (see ``_dataset.fail_closed``)."""

    def wrap(fn: Callable[[Context], Outcome]) -> Callable[[Context], Outcome]:
        @functools.wraps(fn)
        def run(ctx: Context) -> Outcome:
            return ds.fail_closed(ctx, fn(ctx), columns)

        return run

    return wrap


def _no_data(ctx: Context) -> Outcome | None:
    """The outcome for a check when there is no data to check, else None."""
    if ds.declared(ctx):
        return None
    if ctx.spec.get("run.domain") == "math":
        return skipped(NO_DATA)
    return skipped("no data files declared (see data.files)")


def _unreadable(errors: dict[str, str]) -> Outcome:
    return errored("; ".join(f"{k}: {v}" for k, v in errors.items()), "fix the files first (see data.files)")


def _quality_off(ctx: Context, name: str) -> Outcome | None:
    if name not in (ctx.spec.get("data.quality_checks") or []):
        return skipped(f"{name} is not in data.quality_checks")
    return None


def _splits(ctx: Context, quality: str | None = None) -> tuple[dict[str, Any], Outcome | None]:
    """The readable splits, or the outcome that ends the check before it looks at any row: no
    data declared, its quality check left out of data.quality_checks, or a split unreadable."""
    if (none := _no_data(ctx)) is not None:
        return {}, none
    if quality is not None and (off := _quality_off(ctx, quality)) is not None:
        return {}, off
    tables, errors = ds.readable_splits(ctx)
    return tables, (_unreadable(errors) if errors else None)


@check("data.files", "Dataset split files are present", "node", rules=(
    Rule("data.train", ("data.val", "data.test", "data: the files on disk"), "fail",
         "every declared split is a readable, non-empty file or save_to_disk folder (not an LFS pointer)"),
    Rule("data.format", ("data.fields.prompt", "data.fields.answer", "data.fields.tests", "data.fields.messages",
                         "run.domain", "data: the first rows or the schema"), "fail",
         "each file holds the fields its domain needs where data.format and data.fields say"),
))
def split_files(ctx: Context) -> Outcome:
    """Each declared split (data.train / val / test) is a readable, non-empty file or a Hugging
    Face save_to_disk folder, not a Git LFS pointer that was never pulled, and holds the fields the
    domain needs (math: prompt and answer; code: prompt and tests; chat: messages) where data.fields
    and data.format say: its first rows (JSON Lines) or its schema (Parquet, Arrow) are looked at.
    The format each file is read as (data.format, or detected: plain, verl, trl, openrlhf) is
    stated. Without a data section, the math domain uses the runner's built-in generated task; code
    and chat need data."""
    declared = ds.declared(ctx)
    domain = ctx.spec.get("run.domain")
    if not declared:
        if domain == "math":
            return skipped(NO_DATA)
        return failed("no data files declared", "data.train (and data.val)",
                      f"the {domain} domain has no built-in task; set data.train and data.val")
    problems, sizes, layouts = [], {}, {}
    expected = "every declared split readable, non-empty, with the fields its domain needs"
    for split, path in declared.items():
        problem, size = _file_problem(split, path)
        if size:
            sizes[split] = size
        if problem is None:
            problem, layouts[split] = _field_problem(ctx, split, path)
        if problem:
            problems.append(problem)
    formats = {k: v.describe() for k, v in layouts.items() if v is not None}
    if problems:
        return failed("; ".join(problems), expected,
                      "fix the paths in the data section, or fetch the files; name fields with data.fields "
                      "(dotted for nested ones) or data.format", sizes=sizes, formats=formats)
    return passed(", ".join(f"{k} {v} ({b.brief()})" for k, v in sizes.items() if (b := layouts[k]) is not None),
                  expected, sizes=sizes, formats=formats)


def _file_problem(split: str, path: Path) -> tuple[str | None, str | None]:
    """(what is wrong with a split's file or None, its size)."""
    if path.is_dir():
        if (path / "state.json").is_file():
            return None, _human(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()))
        return f"{split}: {path} is a directory, not a dataset file or save_to_disk folder", None
    if not path.is_file():
        return f"{split}: {path} does not exist", None
    try:
        with path.open("rb") as fh:
            head = fh.read(len(LFS_POINTER_PREFIX))
    except OSError as exc:
        return f"{split}: {path} cannot be read ({exc.strerror})", None
    size = path.stat().st_size
    if size == 0:
        return f"{split}: {path} is empty", _human(size)
    if head == LFS_POINTER_PREFIX:
        return f"{split}: {path} is a Git LFS pointer, not the data (run `git lfs pull`)", _human(size)
    return None, _human(size)


def _field_problem(ctx: Context, split: str, path: Path) -> tuple[str | None, Layout | None]:
    """(the required fields a split's file lacks, or None; the layout it is read as)."""
    try:
        look = peek(path, ds.fields(ctx), str(ctx.spec.get("run.domain")), ds.data_format(ctx))
    except DataFileError as exc:
        return f"{split}: {exc.reason}", None
    if not look.absent:
        return None, look.layout
    missing = "; ".join(f"{c}: {why}" for c, why in look.absent.items())
    return f"{split}: {path}: {missing} (e.g. {path}:1; read as {look.layout.describe()})", look.layout


@check("data.splits", "Split sizes match the declared ratios", "node", timeout_s=DATA_TIMEOUT_S, rules=(
    Rule("data.split.train_ratio", ("data.split.val_ratio", "data.split.test_ratio", "data.split.tolerance",
                                    "data: rows per split"), "fail",
         "each split's share of the rows is its declared ratio within the tolerance"),
    Rule("data.split.min_holdout", ("data: rows in val and test",), "fail",
         "val + test hold at least min_holdout of the rows"),
))
@_reads("prompt", "answer", "tests")
def split_ratios(ctx: Context) -> Outcome:
    """Each split's share of all rows against data.split.{train,val,test}_ratio (docs/reference.md
    section 6: 0.9 / 0.05 / 0.05) within data.split.tolerance (0.02), and the holdout (val + test) at least
    data.split.min_holdout (10 %). A split with a ratio above 0 must be declared and non-empty. A
    split in which no row has a readable prompt or answer (tests for code) is an error: those are
    not the rows the ratios are about."""
    tables, stop = _splits(ctx)
    if stop is not None:
        return stop
    want = {k: float(ctx.spec.get(f"data.split.{k}_ratio")) for k in ds.SPLITS}
    tol = float(ctx.spec.get("data.split.tolerance"))
    rows = {k: t.rows for k, t in tables.items()}
    total = sum(rows.values())
    expected = ", ".join(f"{k} {v:.0%}" for k, v in want.items()) + f" (± {tol:.0%}), holdout >= " \
        f"{float(ctx.spec.get('data.split.min_holdout')):.0%}"
    missing = [k for k in ds.SPLITS if want[k] > 0 and rows.get(k, 0) == 0]
    if total == 0 or missing:
        what = "no rows in any split" if total == 0 else "empty or undeclared: " + ", ".join(missing)
        return failed(what, expected, "declare every split with a ratio above 0 (data.train/val/test), "
                      "or build them with `preflight data split`", rows=rows)
    share = {k: rows.get(k, 0) / total for k in ds.SPLITS}
    found = ", ".join(f"{k} {rows.get(k, 0):,} ({share[k]:.1%})" for k in ds.SPLITS)
    off = [k for k in ds.SPLITS if abs(share[k] - want[k]) > tol]
    holdout = share["val"] + share["test"]
    slack = max(1 / total, 0.001)  # rounding a split to whole rows
    problems = [f"{k} is {share[k]:.1%}, declared {want[k]:.0%}" for k in off]
    if holdout + slack < float(ctx.spec.get("data.split.min_holdout")):
        problems.append(f"holdout is only {holdout:.1%}")
    if problems:
        return failed(found + " — " + "; ".join(problems), expected,
                      "re-split with `preflight data split` (stratified; exact and near duplicates kept in one split), or change data.split",
                      rows=rows)
    return passed(found, expected, rows=rows)


def _difficulty_counts(tables: dict[str, Any]) -> dict[str, dict[str, int]]:
    import pyarrow.compute as pc

    counts: dict[str, dict[str, int]] = {}
    for name, t in tables.items():
        vc = pc.value_counts(t.table.column("difficulty").combine_chunks())
        counts[name] = {str(v["values"]) if v["values"] is not None else "(none)": int(v["counts"])
                        for v in vc.to_pylist()}
    return counts


@check("data.stratification", "Splits share the difficulty mix", "node", timeout_s=DATA_TIMEOUT_S, rules=(
    Rule("data.split.stratify_by", ("data.fields.difficulty", "data.stratification.max_deviation",
                                    "data.stratification.max_cramers_v", "data: levels per split"), "fail",
         "every split has the whole dataset's mix of the stratification field"),
))
def stratification(ctx: Context) -> Outcome:
    """Each split's distribution of data.split.stratify_by (difficulty) against the whole: the
    largest deviation of a level's share, Cramér's V between split and level, and a chi-square
    test. Fails when the deviation exceeds data.stratification.max_deviation (0.05) or V exceeds
    max_cramers_v (0.1): a validation split with another difficulty mix makes pass rates
    incomparable. No row with a value skips the check, unless the spec names the field
    (data.fields.difficulty or data.split.stratify_by): then it is an error."""
    tables, stop = _splits(ctx)
    if stop is not None:
        return stop

    field = ds.fields(ctx).get("difficulty") or next(
        (t.layout.field_of("difficulty") for t in tables.values() if t.layout is not None), "difficulty")
    counts = _difficulty_counts({k: t for k, t in tables.items() if t.rows})
    if all(set(c) <= {"(none)"} for c in counts.values()):
        if "difficulty" in ds.fields(ctx):  # named in the spec: its absence is a mistake, not a choice
            return errored(f"no row of any split has a '{field}' value (the field data.fields.difficulty or "
                           "data.split.stratify_by names)", "name the field the splits are stratified by, "
                           "or drop the setting to skip stratification")
        return skipped(f"no row has a '{field}' value: nothing to stratify by")
    if len(counts) < 2:
        return skipped("only one non-empty split: nothing to compare")
    st = stratify(counts)
    max_dev = float(ctx.spec.get("data.stratification.max_deviation"))
    max_v = float(ctx.spec.get("data.stratification.max_cramers_v"))
    split_name, level, dev = st.worst
    found = (f"largest deviation {dev:.1%} ({split_name}, '{level}'), Cramér's V {st.cramers_v:.3f}, "
             f"chi2 {st.chi2:.1f} (dof {st.dof}, p {st.p_value:.3g})")
    expected = f"deviation <= {max_dev:.0%} and V <= {max_v:g}"
    evidence = {"shares": {s: {k: round(v, 4) for k, v in sh.items()} for s, sh in st.shares.items()},
                "counts": st.counts}
    if dev > max_dev or st.cramers_v > max_v:
        return failed(found, expected, f"re-split stratified by '{field}': `preflight data split FILE --out DIR`",
                      **evidence)
    return passed(found, expected, **evidence)


@check("data.format", "Rows are well-formed", "node", timeout_s=DATA_TIMEOUT_S, rules=(
    Rule("data.row_schema", ("data: every row",), "fail", "every row satisfies the row JSON Schema"),
    Rule("data.fields.id", ("data.fields.prompt", "data.fields.answer", "data.format", "run.domain",
                            "data: every row"), "fail",
         "every row has the domain's fields, with the right types, where data.fields say"),
    Rule("data.quality_checks", ("data: every row",), "fail",
         "format_standardization on: malformed rows (broken JSON, wrong types, empty fields) fail"),
))
def row_format(ctx: Context) -> Outcome:
    """Required fields present with the right types, per domain (math: prompt + answer; code:
    prompt + tests; chat: messages with valid roles) or per data.row_schema; empty strings, wrong
    types, undecodable lines and broken JSON are counted, with file:line examples. Fields are where
    data.fields (dotted paths for nested fields) and data.format say; a prompt (or answer) may be a
    string or a list of chat messages, each {role, content} with role system, user, assistant or
    tool. The format each split was read as is stated."""
    tables, stop = _splits(ctx, "format_standardization")
    if stop is not None:
        return stop
    counts: dict[str, dict[str, int]] = {}
    examples: list[str] = []
    for name, t in tables.items():
        for kind, p in t.problems.items():
            counts.setdefault(name, {})[kind] = p.count
            examples += p.examples[:2]
    rows = sum(t.rows_seen for t in tables.values())
    bad = sum(sum(c.values()) for c in counts.values())
    expected = "no malformed rows"
    formats = {name: t.layout.describe() for name, t in tables.items() if t.layout is not None}
    if bad:
        kinds = sorted({k for c in counts.values() for k in c})
        return failed(f"{bad:,} problems in {rows:,} rows ({', '.join(kinds)}); e.g. {examples[0]}", expected,
                      CLEAN_HINT, problems=counts, examples=examples[:10], formats=formats)
    shown = ", ".join(f"{k}: {t.layout.brief()}" for k, t in tables.items() if t.layout is not None)
    return passed(f"{rows:,} rows well-formed ({shown})", expected, formats=formats)


@check("data.duplicates", "No duplicate prompts within a split", "node", timeout_s=DATA_TIMEOUT_S, rules=(
    Rule("data.duplicates.max_rate", ("data.quality_checks", "data: normalized prompts per split"), "fail",
         "no more than max_rate of a split's rows repeat an earlier prompt"),
))
@_reads("prompt")
def duplicates(ctx: Context) -> Outcome:
    """Prompts repeated inside a split after normalization (Unicode NFKC, lower case, whitespace).
    More than data.duplicates.max_rate (0) of a split's rows repeating an earlier row fails.
    A prompt given as chat messages is compared by its user turns' text, joined by newlines;
    system turns are left out (the same instructions in every row would hide nothing and mark
    nothing), and a multi-turn prompt's user turns are all joined; the result says how many rows
    had a system turn or several turns.
    A split without a readable prompt in any row is an error; rows without one are counted."""
    tables, stop = _splits(ctx, "duplicate_detection")
    if stop is not None:
        return stop
    import pyarrow.compute as pc

    max_rate = float(ctx.spec.get("data.duplicates.max_rate"))
    per_split: dict[str, int] = {}
    examples: list[str] = []
    worst = 0.0
    for name, t in tables.items():
        norm = ds.normalized(ctx, name)
        # Counted from cheap per-row keys, exactly (see repeated_rows); only a split that has
        # repeats pays for counting each value, to show examples.
        extra = repeated_rows(norm, ds.keys(ctx, name))
        per_split[name] = extra
        if t.rows:
            worst = max(worst, extra / t.rows)
        if extra and len(examples) < 5:
            vc = pc.value_counts(norm)
            vc = vc.filter(pc.is_valid(vc.field("values")))
            repeated = vc.filter(pc.greater(vc.field("counts"), 1)).slice(0, 5 - len(examples))
            for item in repeated.to_pylist():
                lines = pc.indices_nonzero(pc.equal(norm, item["values"])).to_pylist()[:3]
                where = ", ".join(str(t.table.column("_line")[i].as_py()) for i in lines)
                examples.append(f"{t.path} lines {where}: {ds.short(item['values'], 60)!r} x{item['counts']}")
    total = sum(per_split.values())
    found = ", ".join(f"{k} {v:,}" for k, v in per_split.items()) + " repeated rows"
    expected = f"at most {max_rate:.1%} of a split repeated" if max_rate else "no repeated prompt"
    chat = _compared(tables)
    if worst > max_rate:
        return failed(found, expected, "drop repeats with `preflight data clean` (keeps the first)",
                      examples=examples, repeated=per_split, **chat)
    if total:
        return warned(found, expected, "within data.duplicates.max_rate, but repeats overweight those prompts",
                      examples=examples, repeated=per_split, **chat)
    return passed("no repeated prompt in any split", expected, **chat)


@check("data.leakage.exact", "No eval prompt appears in train", "node", timeout_s=DATA_TIMEOUT_S, rules=(
    Rule("data.val", ("data.train", "data.test", "data: normalized prompts"), "fail",
         "no val or test prompt also occurs in train"),
))
@_reads("prompt")
def exact_leakage(ctx: Context) -> Outcome:
    """val/test prompts that also occur in train after normalization (NFKC, lower case,
    whitespace). Any such leak fails: the model would be validated on what it trained on.
    A prompt given as chat messages is compared by its user turns' text, joined by newlines;
    system turns are left out (the same instructions in every row would hide nothing and mark
    nothing), and a multi-turn prompt's user turns are all joined; the result says how many rows
    had a system turn or several turns.
    A split without a readable prompt in any row is an error; rows without one are counted."""
    tables, stop = _splits(ctx)
    if stop is not None:
        return stop
    import pyarrow.compute as pc

    if "train" not in tables or not any(k in tables for k in ("val", "test")):
        return skipped("needs train and at least one of val/test")
    import numpy as np
    import pyarrow as pa

    # Hash the small side (val + test) and stream train through it: building a hash table of
    # the whole train split would cost more than everything else here. Only a train row whose
    # cheap key (shared with data.duplicates) some eval row has can equal one: look up just those.
    evals = [n for n in ("val", "test") if n in tables]
    eval_norm = pa.chunked_array([c for n in evals for c in ds.normalized(ctx, n).chunks], pa.string())
    value_set = eval_norm.combine_chunks()
    owner = [(n, i) for n in evals for i in range(tables[n].rows)]
    train_norm = ds.normalized(ctx, "train")
    keyed = [ds.keys(ctx, n) for n in ("train", *evals)]
    if any(k is None for k in keyed):  # large strings have no keys: look every train row up
        hits = pc.fill_null(pc.index_in(train_norm, value_set=value_set, skip_nulls=True),
                            -1).to_numpy(zero_copy_only=False)
    else:
        look_up = keyed[0][1][np.isin(keyed[0][0], np.concatenate([k[0] for k in keyed[1:]]))]
        hits = np.full(len(train_norm), -1, dtype=np.int64)
        if len(look_up):
            found = pc.index_in(train_norm.take(pa.array(look_up)), value_set=value_set, skip_nulls=True)
            hits[look_up] = pc.fill_null(found, -1).to_numpy(zero_copy_only=False)
    # Each leaked eval row, with the first train row that repeats it.
    leaked, first_train = np.unique(hits[hits >= 0], return_index=True)
    train_rows = np.nonzero(hits >= 0)[0][first_train]
    per_split: dict[str, int] = {n: 0 for n in evals}
    examples: list[str] = []
    found_leaks = ds.leaks(ctx)
    train = tables["train"]
    for k, j in zip(leaked.tolist(), train_rows.tolist(), strict=True):
        name, i = owner[k]
        per_split[name] += 1
        leak = ds.Leak("exact", ds.where(train.table, j, train.path), ds.where(tables[name].table, i, tables[name].path),
                       1.0, str(train.table.column("prompt")[j].as_py()),
                       str(tables[name].table.column("prompt")[i].as_py()))
        found_leaks.items.append(leak)
        if len(examples) < 5:
            examples.append(f"{leak.b} = {leak.a}: {ds.short(leak.b_text, 60)!r}")
    total = sum(per_split.values())
    found = ", ".join(f"{k} {v:,}" for k, v in per_split.items()) + " prompts also in train"
    chat = _compared(tables)
    if total:
        return failed(found, "no val/test prompt in train",
                      "re-split with `preflight data split` (duplicates stay in one split), or drop the leaked "
                      "rows from train; --export-leaks FILE lists them all", examples=examples, leaked=per_split,
                      **chat)
    return passed("no val/test prompt occurs in train", "no val/test prompt in train", **chat)


@check("data.leakage.near", "No near-duplicates across splits", "node", timeout_s=DATA_TIMEOUT_S, rules=(
    Rule("data.near_duplicates.threshold", ("data.near_duplicates.num_perm", "data.near_duplicates.shingle_words",
                                            "data: prompts of every split"), "fail",
         "no prompt pair in different splits reaches the Jaccard threshold"),
))
@_reads("prompt")
def near_leakage(ctx: Context) -> Outcome:
    """Near-duplicate prompts in different splits: MinHash LSH over word shingles
    (data.near_duplicates: 128 permutations, 5-word shingles, Jaccard >= 0.8), every candidate
    pair verified by its real Jaccard. Exact duplicates are left to data.leakage.exact.
    A prompt given as chat messages is compared by its user turns' text, joined by newlines;
    system turns are left out (the same instructions in every row would hide nothing and mark
    nothing), and a multi-turn prompt's user turns are all joined; the result says how many rows
    had a system turn or several turns.
    A split without a readable prompt in any row is an error; rows without one are counted."""
    tables, stop = _splits(ctx)
    if stop is not None:
        return stop

    names = [n for n in ds.SPLITS if n in tables and tables[n].rows]
    if len(names) < 2:
        return skipped("needs at least two non-empty splits")
    texts, owner = [], []
    for n in names:
        values = ds.normalized(ctx, n).to_pylist()
        texts += [v or "" for v in values]
        owner += [(n, i) for i in range(len(values))]
    cfg = NearDupConfig(num_perm=int(ctx.spec.get("data.near_duplicates.num_perm")),
                        threshold=float(ctx.spec.get("data.near_duplicates.threshold")),
                        shingle_words=int(ctx.spec.get("data.near_duplicates.shingle_words")))
    groups = [names.index(n) for n, _ in owner]
    pairs = [(i, j, s) for i, j, s in near_duplicate_pairs(texts, cfg, groups=groups, cross_only=True)
             if texts[i] != texts[j]]
    found_leaks = ds.leaks(ctx)
    examples: list[str] = []
    per_pair: dict[str, int] = {}
    for i, j, sim in pairs:
        (a_split, a), (b_split, b) = owner[i], owner[j]
        ta, tb = tables[a_split], tables[b_split]
        leak = ds.Leak("near", ds.where(ta.table, a, ta.path), ds.where(tb.table, b, tb.path), round(sim, 4),
                       str(ta.table.column("prompt")[a].as_py()), str(tb.table.column("prompt")[b].as_py()))
        found_leaks.items.append(leak)
        key = f"{a_split}-{b_split}"
        per_pair[key] = per_pair.get(key, 0) + 1
        if len(examples) < 5:
            examples.append(f"{leak.a} ~ {leak.b} (Jaccard {sim:.2f})")
    expected = f"no cross-split pair with Jaccard >= {cfg.threshold:g}"
    chat = _compared(tables)
    if pairs:
        found = f"{len(pairs):,} near-duplicate pairs across splits (" + ", ".join(
            f"{k} {v:,}" for k, v in per_pair.items()) + ")"
        return failed(found, expected, "re-split with `preflight data split`, which keeps near-duplicate groups in "
                      "one split; --export-leaks FILE lists every pair", examples=examples, pairs=per_pair, **chat)
    return passed(f"no near-duplicate pair across {', '.join(names)}", expected, **chat)


@check("data.contamination", "No n-gram overlap of train with eval sets", "node", timeout_s=DATA_TIMEOUT_S, rules=(
    Rule("data.contamination.max_rate", ("data.contamination.ngram", "data.benchmarks", "data.val", "data.test",
                                         "data: train rows' n-grams"), "fail",
         "no more than max_rate of train rows share an n-gram with a held-out row or benchmark"),
))
@_reads("prompt")
def contamination(ctx: Context) -> Outcome:
    """Train rows sharing a word n-gram (data.contamination.ngram, 13) with any val/test row or a
    benchmark file in data.benchmarks, and the held-out rows they share it with. More than
    data.contamination.max_rate (0) of train rows fails. Texts are compared as the decontamination
    convention of the field has it (GPT-3's overlap analysis as lm-evaluation-harness implements
    it): Unicode NFKC, lower case, punctuation deleted (Python's string.punctuation, as the
    harness, plus all Unicode punctuation such as curly quotes and dashes), whitespace collapsed,
    then word n-grams. A prompt given as chat messages is compared as its whole conversation:
    every turn but the system's (user, assistant, tool), joined by newlines; system turns are left
    out, since the same instructions in every row would make every row share n-grams. Template
    text shared by many rows of a split (an instruction around every problem: in 5-grams held by at
    least 20 % of a sampled split's rows) is cut out first, and no n-gram spans a cut: alone it is no
    leak. --export-leaks FILE lists every train row and every held-out row involved. A benchmark or
    split without a readable prompt in any row is an error."""
    tables, stop = _splits(ctx)
    if stop is not None:
        return stop

    if "train" not in tables:
        return skipped("no train split")
    n = int(ctx.spec.get("data.contamination.ngram"))
    evals: list[tuple[str, Any]] = [(k, tables[k]) for k in ("val", "test") if k in tables]
    domain = str(ctx.spec.get("run.domain"))
    gaps = []  # benchmarks with rows without a readable prompt (the splits' are fail_closed's)
    for bench in ds.benchmarks(ctx):
        try:
            t = ds.benchmark(ctx, bench)
        except DataFileError as exc:
            return errored(f"benchmark {bench.path}: {exc.reason}", exc.hint or "fix data.benchmarks")
        gap = ds.unreadable(t, "prompt", domain)
        if gap is not None and gap.everywhere:
            return errored(gap.sentence(), "give the benchmark's prompt field: data.benchmarks: "
                           "[{path: FILE, prompt: FIELD}] (a dotted path for a nested field)")
        if gap is not None:
            gaps.append(gap)
        evals.append((bench.path.name, t))
    if not evals:
        return skipped("nothing to compare train with (no val/test/benchmarks)")
    found_overlap, owner, templates = _overlap(ctx, tables["train"], evals, n)
    outcome = _contamination_result(ctx, tables, evals, found_overlap, owner, templates, n)
    if gaps:
        outcome.evidence["unreadable"] = {f"{g.path.name}.prompt": g.count for g in gaps}
        outcome.found += "; " + "; ".join(g.sentence() for g in gaps)
        if outcome.status == Status.PASS:
            outcome.status, outcome.remediation = Status.WARN, "data.benchmarks: name the prompt field of every row"
    return outcome


def _overlap(ctx: Context, train: Any, evals: list[tuple[str, Any]], n: int) -> tuple[Any, list[tuple[str, Any, int]], list[str]]:
    """The n-gram overlap of train with the held-out texts, each held-out row's (label, table,
    row), and the template phrases cut out."""
    import numpy as np
    import pyarrow as pa

    texts = {t.name: ds.contamination_texts(ctx, t) for t in [train] + [t for _, t in evals]}
    phrases = template_phrases([texts[train.name]] + [texts[t.name] for _, t in evals])
    train_pieces, train_owner = split_templates(texts[train.name], phrases)
    eval_pieces, owners, owner, base = [], [], [], 0
    for label, t in evals:
        pieces, rows = split_templates(texts[t.name], phrases)
        eval_pieces.append(pieces)
        owners.append((rows if rows is not None else np.arange(len(pieces), dtype=np.int64)) + base)
        owner += [(label, t, i) for i in range(t.rows)]
        base += t.rows
    eval_owner = np.concatenate(owners) if owners else np.empty(0, np.int64)
    held_out = pa.chunked_array(eval_pieces, pa.string())
    return overlap(train_pieces, held_out, n, train_owner, eval_owner), owner, phrases


def _contamination_result(ctx: Context, tables: dict[str, Any], evals: list[tuple[str, Any]], found: Any,
                          owner: list[tuple[str, Any, int]], templates: list[str], n: int) -> Outcome:
    train = tables["train"]
    per_eval = {label: 0 for label, _ in evals}
    for e in found.eval_rows.tolist():
        per_eval[owner[e][0]] += 1
    leaks = ds.leaks(ctx)
    examples: list[str] = []
    for ti, ei in found.pairs:
        _, t, k = owner[ei]
        leak = ds.Leak("ngram", ds.where(train.table, ti, train.path), ds.where(t.table, k, t.path), None,
                       str(train.table.column("prompt")[ti].as_py()), str(t.table.column("prompt")[k].as_py()), n)
        leaks.items.append(leak)
        if len(examples) < 5:
            examples.append(f"{leak.a} shares a {n}-gram with {leak.b}")
    rows = len(found.train_rows)
    rate = rows / max(train.rows, 1)
    max_rate = float(ctx.spec.get("data.contamination.max_rate"))
    held = ", ".join(f"{label} {c:,}" for label, c in per_eval.items())
    text = (f"{rows:,} of {train.rows:,} train rows ({rate:.2%}) share a {n}-gram with "
            f"{len(found.eval_rows):,} held-out rows ({held})")
    expected = f"at most {max_rate:.2%} of train rows" if max_rate else f"no shared {n}-gram"
    evidence: dict[str, Any] = {"ngram": n, "train_rows": rows, "held_out_rows": per_eval,
                                **_compared(tables, whole_conversation=True)}
    if templates:
        evidence["templates"] = [ds.short(p, 120) for p in templates[:5]]
    if rate > max_rate:
        return failed(text, expected, "drop the contaminated train rows (--export-leaks FILE lists every train and "
                      "held-out row involved)", examples=examples, **evidence)
    return passed(text, expected, **evidence)


def _compared(tables: dict[str, Any], whole_conversation: bool = False) -> dict[str, str]:
    """Evidence saying what was compared in chat prompts (nothing when no prompt was one)."""
    note = ds.chat_note(tables, whole_conversation)
    return {"compared": note} if note else {}


@check("data.length", "Prompts and answers fit the token budget", "node", timeout_s=DATA_TIMEOUT_S, rules=(
    Rule("data.lengths.max_over_rate", ("training.max_prompt_tokens", "training.max_response_tokens",
                                        "data.tokenizer", "data: token lengths of prompts and answers"),
         "fail with a tokenizer; warn on the byte estimate",
         "no more than max_over_rate of rows exceed the prompt or response budget"),
))
@_reads("prompt", "answer")
def lengths(ctx: Context) -> Outcome:
    """Prompt tokens against training.max_prompt_tokens and answer tokens against
    training.max_response_tokens, counted with data.tokenizer (a local tokenizer.json, no
    downloads) or else estimated from the UTF-8 size, which the result says. A row counts once
    however many of its fields are over. Over the limit fails with a tokenizer, and warns on an
    estimate. A split without a readable prompt (or, in math, answer) in any row is an error."""
    tables, stop = _splits(ctx, "length_validation")
    if stop is not None:
        return stop
    import numpy as np

    limits = {"prompt": int(ctx.spec.get("training.max_prompt_tokens")),
              "answer": int(ctx.spec.get("training.max_response_tokens"))}
    tokenizer = ctx.spec.get("data.tokenizer")
    over, exact, how = 0, True, ""
    examples: list[str] = []
    stats: dict[str, dict[str, int]] = {}
    total = 0
    for name, t in tables.items():
        row_over = np.zeros(t.rows, dtype=bool)
        for column, limit in limits.items():
            try:
                lens = token_lengths(t.table.column(column), tokenizer)
            except DataFileError as exc:
                return errored(f"data.tokenizer {exc}", exc.hint)
            except RuntimeError as exc:  # the tokenizers package is missing
                return errored(str(exc), "fix data.tokenizer")
            exact, how = lens.exact, lens.how
            if len(lens.tokens) and lens.tokens.any():
                stats[f"{name}.{column}"] = {"max": int(lens.tokens.max()),
                                             "p50": int(np.percentile(lens.tokens, 50)),
                                             "p99": int(np.percentile(lens.tokens, 99))}
            idx = np.nonzero(lens.tokens > limit)[0]
            row_over[idx] = True
            for i in idx[: max(0, 5 - len(examples))]:
                examples.append(f"{ds.where(t.table, int(i), t.path)}: {column} {int(lens.tokens[i]):,} tokens > {limit:,}")
        over += int(row_over.sum())
        total += t.rows
    rate = over / max(total, 1)
    max_rate = float(ctx.spec.get("data.lengths.max_over_rate"))
    expected = f"prompt <= {limits['prompt']:,} and answer <= {limits['answer']:,} tokens"
    found = f"{over:,} rows over ({rate:.2%})" + ("" if exact else " (estimated)")
    evidence = {"tokens": stats, "counted": how}
    if rate > max_rate:
        fix = "filter them with `preflight data clean --max-prompt-tokens N`, or raise training.max_prompt_tokens"
        return (failed if exact else warned)(found, expected, fix, examples=examples, **evidence)
    return passed(found if over else "every row fits" + ("" if exact else " (estimated)"), expected, **evidence)


@check("data.toxicity", "No lexicon hits in the data", "node", timeout_s=DATA_TIMEOUT_S, rules=(
    Rule("data.toxicity.max_rate", ("data.toxicity.lexicon", "data.toxicity.allow", "data.quality_checks",
                                    "data: prompts and answers"), "warn; fail above max_rate",
         "no more than max_rate of rows hold a lexicon term"),
))
@_reads("prompt", "answer")
def toxicity(ctx: Context) -> Outcome:
    """Whole-word, case-insensitive matches of a lexicon in prompts and answers, minus
    data.toxicity.allow. The default lexicon (data.toxicity.lexicon unset) is preflight's list of
    unambiguous English obscenities and slurs, chosen for precision: words with an ordinary
    meaning (ass, cock, dick, bitch, tits, kill, pot, fat, sex) are not on it. Measured on 22,150
    rows of 12 real clean datasets (ASDiv, HumanEval, MMLU, BoolQ, ...): 11 rows flagged, each
    really holding one of the words (a quoted slur, song titles, "the origin of the word"), none
    for an ordinary word, where better-profanity's list flagged 4.9 %; 58 of 58 planted
    obscenities caught, precision and recall 100 % (bench/README.md). `preflight data clean`
    applies the same default. More rows than data.toxicity.max_rate (0.1 %) fails; fewer warns
    with examples."""
    tables, stop = _splits(ctx, "toxicity_filtering")
    if stop is not None:
        return stop

    try:
        matcher, source = matcher_for(ctx.spec.get("data.toxicity.lexicon"),
                                      tuple(ctx.spec.get("data.toxicity.allow") or []))
    except OSError as exc:
        return errored(f"lexicon: {exc}", "set data.toxicity.lexicon to a readable word list")
    flagged_rows, total = 0, 0
    examples: list[str] = []
    terms: dict[str, int] = {}
    for t in tables.values():
        hit_rows: set[int] = set()
        for column in ("prompt", "answer"):
            flagged, counter = scan_column(t.table.column(column), matcher)
            hit_rows.update(flagged)
            for term, c in counter.items():
                terms[term] = terms.get(term, 0) + c
            for i in flagged[: max(0, 5 - len(examples))]:
                examples.append(f"{ds.where(t.table, i, t.path)}: {column}")
        flagged_rows += len(hit_rows)
        total += t.rows
    rate = flagged_rows / max(total, 1)
    max_rate = float(ctx.spec.get("data.toxicity.max_rate"))
    found = f"{flagged_rows:,} of {total:,} rows with a lexicon hit ({rate:.3%})"
    top = dict(sorted(terms.items(), key=lambda kv: -kv[1])[:10])
    expected = f"at most {max_rate:.1%} of rows"
    if rate > max_rate:
        return failed(found, expected, "review and drop them (`preflight data clean`), or allow-list terms that "
                      "are fine in your domain (data.toxicity.allow)", examples=examples, terms=top, lexicon=source)
    if flagged_rows:
        return warned(found, expected, "within the allowed rate; review the examples", examples=examples,
                      terms=top, lexicon=source)
    return passed(f"no lexicon hit in {total:,} rows", expected, lexicon=source)


@check("data.version_control", "Data files are versioned", "node", rules=(
    Rule("data.version_control", ("data: git-lfs / DVC tracking of each file",), "warn",
         "every data file is tracked by the declared tool"),
))
def version_control(ctx: Context) -> Outcome:
    """Each data file is tracked by Git LFS or DVC (data.version_control, default git-lfs as
    in docs/reference.md section 6), so the run can name the exact data it trained on. Untracked files warn. Every
    passing attestation also records each file's size and SHA-256 for `preflight verify`."""
    if (none := _no_data(ctx)) is not None:
        return none

    want = ctx.spec.get("data.version_control")
    if want == "none":
        return skipped("data.version_control is none")
    files = list(ds.declared(ctx).values()) + [Path(b) for b in ctx.spec.get("data.benchmarks") or []]
    status = {str(p): (tracking(p) if p.exists() else "missing") for p in files}
    untracked = [p for p, s in status.items() if s not in ("git-lfs", "dvc")]
    expected = "every data file tracked by git-lfs or DVC"
    if untracked:
        return warned(f"not in git-lfs/DVC: {', '.join(untracked)}", expected,
                      "`git lfs track FILE && git add FILE`, or `dvc add FILE`; or set data.version_control: none",
                      tracking=status)
    return passed(", ".join(f"{Path(p).name}: {s}" for p, s in status.items()), expected, tracking=status)
