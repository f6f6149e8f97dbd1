"""`preflight data split | clean | demo`: the dataset tools on the command line.

``add_data_commands(subparsers)`` adds the ``data`` command; each of its subcommands sets
``data_handler`` (``(args) -> int``), which the main CLI calls. Handlers print a short summary
and return 0; what a user can fix raises ``UsageError`` or ``InputFileError`` (exit 2).

The data modules import pyarrow and numpy inside their functions, so ``preflight`` starts fast.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import InputFileError, UsageError
from ..spec import Spec, load_spec
from .clean import clean_file
from .demo import write_demo
from .formats import AUTO, COLUMNS, FORMATS
from .minhash import NearDupConfig
from .model import DataFileError
from .split import MISSING_STRATUM, SPLITS, check_ratios, split_file


def add_data_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``data`` (with ``split``, ``clean``, ``demo``) to a subparsers object; returns its parser."""
    d = subparsers.add_parser("data", help="dataset tools: split, clean, generate a demo set",
                              description="Dataset tools: split a file into train/val/test, filter it "
                                          "into clean and quarantined rows, or generate a demo dataset.")
    sub = d.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True

    s = sub.add_parser("split", help="split a dataset into train/val/test (duplicates kept together, stratified)",
                       description="Write OUT/train.jsonl, val.jsonl and test.jsonl. Exact and near-duplicate "
                                   "prompts always land in one split; each stratum is split by the ratios.")
    s.add_argument("input", metavar="INPUT", help="JSONL, JSONL.gz, Parquet or a Hugging Face save_to_disk folder")
    s.add_argument("--out", required=True, metavar="DIR", help="folder for train/val/test.jsonl")
    s.add_argument("--ratios", metavar="TRAIN,VAL,TEST",
                   help="split ratios, summing to 1 (default 0.9,0.05,0.05, or the spec's data.split)")
    s.add_argument("--stratify-by", metavar="FIELD",
                   help="field to stratify by; 'none' for no stratification (default difficulty, or the spec's)")
    s.add_argument("--seed", type=int, default=0, help="shuffling seed (default 0)")
    s.add_argument("--spec", metavar="SPEC", help="take field names, domain, ratios and stratify_by from a run spec")
    s.add_argument("--domain", choices=("math", "code", "chat"), help="row format (default math, or the spec's)")
    _add_layout_flags(s)
    s.set_defaults(data_handler=cmd_split)

    c = sub.add_parser("clean", help="filter a dataset into clean.jsonl and quarantine.jsonl",
                       description="Write OUT/clean.jsonl (rows that pass) and OUT/quarantine.jsonl (every "
                                   "dropped line with its line number and reason): format problems, exact "
                                   "duplicates after normalization, over-long prompts, lexicon hits.")
    c.add_argument("input", metavar="INPUT", help="JSONL, JSONL.gz, Parquet or a Hugging Face save_to_disk folder")
    c.add_argument("--out", required=True, metavar="DIR", help="folder for clean.jsonl and quarantine.jsonl")
    c.add_argument("--spec", metavar="SPEC",
                   help="take field names, domain, max_prompt_tokens, tokenizer, quality checks and lexicon "
                        "from a run spec")
    c.add_argument("--max-prompt-tokens", type=int, metavar="N", help="drop prompts longer than N tokens")
    c.add_argument("--max-answer-tokens", type=int, metavar="N", help="drop answers longer than N tokens")
    c.add_argument("--tokenizer", metavar="PATH", help="a local tokenizer.json (or a folder holding one) to count "
                                                       "tokens; default: estimated from words")
    c.add_argument("--lexicon", metavar="PATH", help="drop rows with a word of this list (one per line); "
                                                     "default: the list `preflight check` uses (unambiguous "
                                                     "obscenities and slurs); 'none' for no lexicon filter")
    c.add_argument("--domain", choices=("math", "code", "chat"), help="row format (default math, or the spec's)")
    _add_layout_flags(c)
    c.set_defaults(data_handler=cmd_clean)

    m = sub.add_parser("demo", help="generate a synthetic arithmetic dataset, its splits and a run spec",
                       description="Write OUT/all.jsonl, train/val/test.jsonl and run.yaml, a CPU smoke run "
                                   "spec that `preflight check` accepts.")
    m.add_argument("--out", required=True, metavar="DIR")
    m.add_argument("--rows", type=int, default=2000, help="rows to generate (default 2000)")
    m.add_argument("--seed", type=int, default=0, help="generator and split seed (default 0)")
    m.set_defaults(data_handler=cmd_demo)
    return d


def _add_layout_flags(parser: argparse.ArgumentParser) -> None:
    """--format and --field: where the columns are, for a file used without a spec (or to override
    the spec's data.format / data.fields)."""
    parser.add_argument("--format", dest="data_format", choices=(AUTO, *FORMATS),
                        help="how the rows are laid out (default: the spec's data.format, else detected "
                             "from the file's first rows)")
    parser.add_argument("--field", dest="field_paths", action="append", default=[], metavar="COLUMN=PATH",
                        help=f"where a column is, as a field name or dotted path (e.g. answer=test, "
                             f"answer=reward_model.ground_truth); columns: {', '.join(COLUMNS)}; "
                             "repeatable; overrides the spec's data.fields")


# --- shared --------------------------------------------------------------------------------------


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the data layer's exceptions into the CLI's: DataFileError and unreadable files become
    InputFileError, bad arguments UsageError."""
    try:
        yield
    except DataFileError as exc:
        raise InputFileError(exc.file, exc.reason, exc.hint) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        if exc.filename is None:  # e.g. no default lexicon: there is no file to name
            raise UsageError(str(exc)) from None
        raise InputFileError(str(exc.filename), str(exc.strerror or exc)) from None


def _existing(path: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputFileError(path, "does not exist", "check the path (relative paths are taken from the current "
                                                     "directory)")
    return p


def parse_ratios(text: str) -> tuple[float, float, float]:
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise UsageError(f"--ratios {text!r}: expected three numbers TRAIN,VAL,TEST like 0.9,0.05,0.05")
    try:
        return check_ratios(values)
    except ValueError as exc:
        raise UsageError(f"--ratios {text!r}: {exc}") from None


def _load_spec(path: str | None) -> Spec | None:
    if not path:
        return None
    return load_spec(path)


def _row_schema(spec: Any) -> dict[str, Any] | None:
    name = spec.get("data.row_schema") if spec is not None else None
    if not name:
        return None
    try:
        schema = json.loads(Path(name).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputFileError(name, f"cannot read the row schema ({exc.strerror or exc})",
                             "data.row_schema names a JSON Schema file") from None
    except ValueError as exc:
        raise InputFileError(name, f"the row schema is not valid JSON ({exc})") from None
    if not isinstance(schema, dict):
        raise InputFileError(name, "the row schema must be a JSON object")
    return schema


def _fields(args: argparse.Namespace, spec: Any) -> dict[str, str] | None:
    """The spec's data.fields with each --field COLUMN=PATH over it; None when neither says anything."""
    fields = dict(spec.get("data.fields") or {}) if spec is not None else None
    for item in getattr(args, "field_paths", None) or []:
        column, sep, path = item.partition("=")
        column, path = column.strip(), path.strip()
        if not sep or not path or column not in COLUMNS:
            raise UsageError(f"--field {item!r}: expected COLUMN=PATH with COLUMN one of "
                             f"{', '.join(COLUMNS)} (e.g. --field answer=test)")
        fields = {**(fields or {}), column: path}
    return fields


def _data_format(args: argparse.Namespace, spec: Any) -> str:
    """--format, else the spec's data.format; without either the format is detected from the file."""
    if getattr(args, "data_format", None):
        return str(args.data_format)
    return str(spec.get("data.format") or AUTO) if spec is not None else AUTO


def _domain(args: argparse.Namespace, spec: Any) -> str:
    return str(args.domain or (spec.get("run.domain") if spec is not None else None) or "math")


def _near_dup_cfg(spec: Any) -> NearDupConfig:
    cfg = NearDupConfig()
    for key, value in ((spec.get("data.near_duplicates") if spec is not None else None) or {}).items():
        if hasattr(cfg, key):
            setattr(cfg, key, value)
    return cfg


def _n(x: int) -> str:
    return f"{x:,}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


# --- split ---------------------------------------------------------------------------------------


def cmd_split(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    source = _existing(args.input)
    spec = _load_spec(args.spec)
    if args.ratios:
        ratios = parse_ratios(args.ratios)
    elif spec is not None:
        try:
            ratios = check_ratios([spec.get(f"data.split.{k}_ratio") for k in SPLITS])
        except ValueError as exc:
            raise UsageError(f"{args.spec}: data.split: {exc}") from None
    else:
        ratios = (0.9, 0.05, 0.05)
    stratify = args.stratify_by or (spec.get("data.split.stratify_by") if spec is not None else None) or "difficulty"
    stratify_by = None if stratify.lower() == "none" else stratify
    with user_errors():
        summary = split_file(source, args.out, ratios, stratify_by, args.seed, _fields(args, spec), _domain(args, spec),
                             near_dup_cfg=_near_dup_cfg(spec), row_schema=_row_schema(spec),
                             data_format=_data_format(args, spec),
                             ngram=int(spec.get("data.contamination.ngram")) if spec is not None else 13)
    for line in split_summary_lines(summary):
        out(line)
    return 0


def split_summary_lines(summary: dict[str, Any]) -> list[str]:
    rows = summary["rows"]
    lines = [f"split {summary['input']} ({_n(rows)} rows) into {summary['out_dir']}:"]
    for name, info in summary["splits"].items():
        lines.append(f"  {name:<5} {_n(info['rows']):>9} {'(' + _pct(info['rows'], rows) + ')':>8}  {info['path']}")
    if summary["stratify_by"]:
        strata = ", ".join(f"{k} {_n(v['rows'])}" for k, v in summary["strata"].items())
        lines.append(f"stratified by {summary['stratify_by']}: {strata}")
        if rows and set(summary["strata"]) == {MISSING_STRATUM}:
            lines.append(f"note: no row has a {summary['stratify_by']!r} value, so the split is not stratified "
                         "(name the field with --stratify-by, or --stratify-by none)")
    g = summary["groups"]
    if g["kept_together"]:
        lines.append(f"duplicate groups kept in one split: {_n(g['kept_together'])} ({_n(g['rows_in_groups'])} rows; "
                     f"{_n(g['near_duplicate'])} joined by near-duplicates, {_n(g['shared_ngram'])} by a shared "
                     f"{summary['ngram']}-word run that the contamination check would flag)")
    skipped = {k: v for k, v in summary["lines_skipped"].items() if v}
    if skipped:
        lines.append(f"skipped {_n(sum(skipped.values()))} lines that are not rows ("
                     + ", ".join(f"{v} {k}" for k, v in skipped.items()) + ")")
    if summary["format_problems"]:
        lines.append("rows with format problems (still split; `preflight data clean` drops them): "
                     + ", ".join(f"{k} {_n(v)}" for k, v in summary["format_problems"].items()))
    return lines


# --- clean ---------------------------------------------------------------------------------------


def cmd_clean(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    source = _existing(args.input)
    spec = _load_spec(args.spec)
    checks: set[str] = set(spec.get("data.quality_checks") or []) if spec is not None else set()
    max_tokens = args.max_prompt_tokens
    if max_tokens is None and spec is not None and "length_validation" in checks:
        max_tokens = spec.get("training.max_prompt_tokens")
    max_answer = args.max_answer_tokens
    if max_answer is None and spec is not None and "length_validation" in checks:
        max_answer = spec.get("training.max_response_tokens")
    for flag, value in (("--max-prompt-tokens", max_tokens), ("--max-answer-tokens", max_answer)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} {value}: must be at least 1")
    tokenizer = args.tokenizer or (spec.get("data.tokenizer") if spec is not None else None)
    lexicon: str | None = args.lexicon
    allow: tuple[str, ...] = ()
    if spec is not None:
        allow = tuple(spec.get("data.toxicity.allow") or ())
        if lexicon is None and "toxicity_filtering" in checks:
            lexicon = spec.get("data.toxicity.lexicon") or "default"
    elif lexicon is None:  # the same default as `preflight check`'s data.toxicity
        lexicon = "default"
    if lexicon == "none":
        lexicon = None
    dedupe = spec is None or "duplicate_detection" in checks
    with user_errors():
        summary = clean_file(source, args.out, _fields(args, spec), _domain(args, spec), max_prompt_tokens=max_tokens,
                             lexicon=lexicon, allow=allow, tokenizer=tokenizer, max_answer_tokens=max_answer,
                             dedupe=dedupe,
                             row_schema=_row_schema(spec), data_format=_data_format(args, spec))
    for line in clean_summary_lines(summary):
        out(line)
    if summary["clean"] == 0 and summary["quarantined"] > 0:
        # nothing usable came out: most often the fields are named differently from the format's preset
        reason = next(iter(summary["reasons"]), "")
        raise UsageError(f"{args.input}: every row was quarantined (the commonest reason: {reason}); "
                              f"{summary['files']['quarantine']} holds them all. If the file names its "
                              "columns differently, say where they are with --field COLUMN=PATH (or --format, "
                              "or --spec with data.fields)")
    return 0


def clean_summary_lines(summary: dict[str, Any]) -> list[str]:
    total = summary["lines"]
    lines = [f"cleaned {summary['input']} ({_n(total)} lines) into {summary['out_dir']}:",
             f"  clean       {_n(summary['clean']):>9} {'(' + _pct(summary['clean'], total) + ')':>8}  "
             f"{summary['files']['clean']}",
             f"  quarantine  {_n(summary['quarantined']):>9} {'(' + _pct(summary['quarantined'], total) + ')':>8}  "
             f"{summary['files']['quarantine']}"]
    for reason, count in summary["reasons"].items():
        lines.append(f"    {reason}: {_n(count)}")
    applied = ", ".join(summary["filters"])
    lines.append(f"filters: {applied}")
    return lines


# --- demo ----------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    if args.rows < 1:
        raise UsageError(f"--rows {args.rows}: must be at least 1")
    with user_errors():
        result = write_demo(args.out, n=args.rows, seed=args.seed, split=True)
    files, rows = result["files"], result["rows"]
    out(f"generated {_n(rows['all'])} arithmetic word problems (seed {args.seed}) in {result['out_dir']}:")
    for name in ("all", *SPLITS):
        out(f"  {name:<5} {_n(rows[name]):>7}  {files[name]}")
    out(f"  spec  {files['spec']}")
    out(f"next: preflight check {files['spec']}")
    return 0
