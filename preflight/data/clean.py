"""The quality-filtering pipeline: one input file in, ``clean.jsonl`` and ``quarantine.jsonl`` out.

Nothing is lost: every non-blank line of the input ends up in exactly one of the two files (blank
lines, which the readers skip too, in neither). Each dropped line is one quarantine record::

    {"line": 17, "reason": "missing:answer", "detail": "...", "row": {...the original object...}}
    {"line": 18, "reason": "undecodable", "detail": "...", "raw": "the line, decoded with errors='replace'"}

Reasons, checked in this order (a row gets the first that applies):

1. format, as the readers name problems: ``undecodable`` and ``bad-json`` (lines that are not rows:
   invalid UTF-8, invalid JSON, not a JSON object; these carry ``raw``), ``missing:<col>``,
   ``empty:<col>``, ``wrong-type:<col>``, ``bad-role``, ``empty:prompt`` (a chat without user
   text) and, with a row schema, ``schema``. Which rows have a problem is decided by the reader
   (the canonical column it left null); the label is read off the original value.
2. ``too-long``: a prompt over ``max_prompt_tokens`` (or an answer over ``max_answer_tokens``),
   counted with ``tokenizer`` when given, else estimated as ``preflight check`` does
   (``lengths.token_lengths``).
3. ``lexicon``: a whole-word hit of the lexicon in the prompt or the answer (``toxicity.Matcher``):
   by default the list `preflight check` uses by default (``toxicity.DEFAULT_LEXICON``), the same
   detector in both places; ``lexicon=None`` turns the filter off.
4. ``duplicate``: the same prompt after normalization (NFKC, lower case, collapsed whitespace) as an
   earlier row that was kept; the first one stays (``duplicate_of`` names its line).

JSONL input (plain or gzip): ``clean.jsonl`` holds the original lines byte for byte, and a
quarantined row's ``row`` is the line parsed. Parquet, Arrow and dataset-folder input: the clean
rows are the canonical columns written back under the field names (as ``split_file`` writes them),
a quarantined row's ``row`` is the original row from the file, and ``line`` is the 1-based row.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .formats import AUTO, describe_value, value_at
from .lengths import token_lengths
from .model import SplitTable
from .normalize import normalize_array
from .readers import REQUIRED, message_problem, original_batches, read_split
from .split import (
    AtomicWriters,
    file_kind,
    given_fields,
    guard_outputs,
    is_blank,
    iter_lines,
    json_value,
    read_fields,
)
from .toxicity import Matcher, matcher_for, scan_column


def clean_file(input: str | Path, out_dir: str | Path, fields: dict[str, str] | None = None,
               domain: str = "math", max_prompt_tokens: int | None = None,
               lexicon: str | Path | Iterable[str] | None = "default", *, allow: Iterable[str] = (),
               tokenizer: str | None = None, max_answer_tokens: int | None = None, dedupe: bool = True,
               row_schema: dict[str, Any] | None = None, data_format: str = AUTO) -> dict[str, Any]:
    """Filter ``input`` into ``out_dir``/clean.jsonl and quarantine.jsonl; return a summary.

    ``lexicon``: a word-list file (one term per line, ``#`` comments; syntax in
    :mod:`preflight.data.toxicity`), ``"default"`` (the default) for the list `preflight check`
    uses by default, or the terms themselves; ``None`` skips the lexicon filter. ``allow``
    lists terms never counted. Raises ``DataFileError`` for a file that cannot be read at all (the
    input or the tokenizer), ``FileNotFoundError`` for a missing lexicon, ``ValueError`` for bad
    arguments.
    The summary::

        {"input", "out_dir", "format", "lines", "clean", "quarantined", "reasons": {reason: n},
         "files": {"clean", "quarantine"}, "filters": [what was applied]}
    """
    if domain not in REQUIRED:
        raise ValueError(f"unknown domain {domain!r}: expected one of {', '.join(REQUIRED)}")
    source, out = Path(input), Path(out_dir)
    fields = given_fields(fields)
    paths = {"clean": out / "clean.jsonl", "quarantine": out / "quarantine.jsonl"}
    guard_outputs(source, list(paths.values()))
    kind = file_kind(source)
    st = read_split(source, source.name, fields, domain, row_schema, data_format)
    fields = read_fields(st, fields)
    judge, filters = _judge(st, fields, domain, max_prompt_tokens, max_answer_tokens, tokenizer, lexicon, allow,
                            dedupe, row_schema)
    out.mkdir(parents=True, exist_ok=True)
    writers = AtomicWriters(paths)
    ok = False
    try:
        if kind == "jsonl":
            lines_in, reasons = _filter_lines(source, st, judge, writers)
        else:
            lines_in, reasons = _filter_rows(source, kind, judge, writers)
        ok = True
    finally:
        writers.close(ok)
    return {
        "input": str(source),
        "out_dir": str(out),
        "format": kind,
        "lines": lines_in,
        "clean": writers.counts["clean"],
        "quarantined": writers.counts["quarantine"],
        "reasons": dict(reasons.most_common()),
        "files": {k: str(p) for k, p in paths.items()},
        "filters": filters,
    }


@dataclass
class _Judge:
    """Each row's verdict: the first reason, in the module's order, that drops it, or none."""

    canon: list[dict[str, Any]]  # the reader's canonical rows
    fields: dict[str, str]
    domain: str
    validator: Any  # the row schema's validator, or None
    odd_optional: list[str]  # optional columns that had a wrong type somewhere (their null may be a problem)
    too_long: dict[int, str]  # row -> why it is too long
    hits: dict[int, list[str]]  # row -> the lexicon terms it holds
    norm: list[str | None]  # normalized prompts (all None without deduplication)
    kept: dict[str, int] = field(default_factory=dict)  # normalized prompt -> line of the row kept with it

    @property
    def required(self) -> tuple[str, ...]:
        return REQUIRED[self.domain]

    def verdict(self, r: int, obj: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
        """(reason, detail, extra fields of the quarantine record); ("", "", {}) keeps the row.
        ``obj`` is the original row; it may be empty when ``suspect(r)`` is false."""
        problem = _format_problem(obj, self.canon[r], self.fields, self.domain, self.required, self.odd_optional,
                                  self.validator)
        if problem:
            return problem[0], problem[1], {}
        if self.too_long.get(r):
            return "too-long", self.too_long[r], {}
        if r in self.hits:
            return "lexicon", "lexicon hit: " + ", ".join(self.hits[r]), {}
        key = self.norm[r]
        if key:
            first = self.kept.get(key)
            if first is not None:
                return "duplicate", f"same prompt as line {first} after normalization", {"duplicate_of": first}
            self.kept[key] = self.canon[r]["_line"]
        return "", "", {}

    def suspect(self, r: int) -> bool:
        """Whether the row may have a format problem, which is labelled from the original row."""
        row = self.canon[r]
        return (self.validator is not None or any(row[c] is None for c in self.required)
                or (self.domain == "chat" and row["prompt"] is None)
                or any(row[c] is None for c in self.odd_optional))


def _judge(st: SplitTable, fields: dict[str, str], domain: str, max_prompt_tokens: int | None,
           max_answer_tokens: int | None, tokenizer: str | None, lexicon: str | Path | Iterable[str] | None,
           allow: Iterable[str], dedupe: bool, row_schema: dict[str, Any] | None) -> tuple[_Judge, list[str]]:
    """Run the filters over the whole table; the judge of each row, and what was applied."""
    table = st.table
    canon = table.to_pylist()
    filters = ["format"]
    too_long, length_note = _lengths(table, max_prompt_tokens, max_answer_tokens, tokenizer)
    if length_note:
        filters.append(length_note)
    hits, lexicon_note = _lexicon(table, lexicon, allow)
    if lexicon_note:
        filters.append(lexicon_note)
    if dedupe:
        filters.append("duplicates (normalized prompt)")
    prompts = table.column("prompt")
    norm = normalize_array(prompts.combine_chunks()).to_pylist() if dedupe else [None] * len(canon)
    # wrong-type on difficulty/id leaves a null that is otherwise normal (the field may be absent)
    odd_optional = [c for c in ("difficulty", "id") if f"wrong-type:{c}" in st.problems]
    judge = _Judge(canon, fields, domain, _validator(row_schema), odd_optional, too_long, hits, norm)
    return judge, filters


def _filter_lines(source: Path, st: SplitTable, judge: _Judge, writers: AtomicWriters) -> tuple[int, Counter[str]]:
    """JSON Lines: each clean line written byte for byte, each other one quarantined with its
    reason. Returns the non-blank lines read and the count per reason."""
    reasons: Counter[str] = Counter()
    lines_in = 0
    row_at = {int(line): r for r, line in enumerate(st.table.column("_line").to_pylist())}
    matched = 0
    for number, line in iter_lines(source):
        if is_blank(line):
            continue
        lines_in += 1
        r = row_at.get(number)
        if r is None:
            reason, detail = _not_a_row(line)
            record: dict[str, Any] = {"line": number, "reason": reason, "detail": detail,
                                      "raw": line.decode("utf-8", errors="replace")}
            writers.write("quarantine", _dump(record))
            reasons[reason] += 1
            continue
        matched += 1
        obj = json.loads(line) if judge.suspect(r) else None
        reason, detail, extra = judge.verdict(r, obj if obj is not None else {})
        if not reason:
            writers.write("clean", line)
            continue
        obj = obj if obj is not None else json.loads(line)
        writers.write("quarantine", _dump({"line": number, "reason": reason, "detail": detail, **extra,
                                           "row": obj}))
        reasons[reason] += 1
    if matched != len(judge.canon):
        raise RuntimeError(f"{source}: matched {matched} of {len(judge.canon)} rows to their lines")
    return lines_in, reasons


def _filter_rows(source: Path, kind: str, judge: _Judge, writers: AtomicWriters) -> tuple[int, Counter[str]]:
    """Parquet, Arrow, a dataset folder: each row written as the file holds it (every column), to
    the clean file or, with its reason, to the quarantine. Returns the rows read and the count per
    reason."""
    reasons: Counter[str] = Counter()
    lines_in = 0
    originals = (row for batch in original_batches(source, kind) for row in batch.to_pylist())
    for r, (row, obj) in enumerate(zip(judge.canon, originals, strict=True)):
        lines_in += 1
        reason, detail, extra = judge.verdict(r, obj)
        if not reason:
            writers.write("clean", _dump(obj))
            continue
        writers.write("quarantine", _dump({"line": row["_line"], "reason": reason, "detail": detail,
                                           **extra, "row": obj}))
        reasons[reason] += 1
    return lines_in, reasons


# --- the filters ---------------------------------------------------------------------------------


def _lengths(table: Any, max_prompt: int | None, max_answer: int | None,
             tokenizer: str | None) -> tuple[dict[int, str], str]:
    """Row -> "prompt N tokens > LIMIT" for rows over a limit, and the filter's description."""
    limits = {c: v for c, v in (("prompt", max_prompt), ("answer", max_answer)) if v is not None}
    if not limits:
        return {}, ""
    if any(int(v) < 1 for v in limits.values()):
        raise ValueError("token limits must be at least 1")
    over: dict[int, str] = {}
    exact = False
    for column, limit in limits.items():
        try:
            lens = token_lengths(table.column(column), tokenizer)
        except RuntimeError as exc:  # the tokenizers package is missing
            raise ValueError(str(exc)) from None
        exact = lens.exact
        how = "" if exact else " (estimated)"
        for r in (lens.tokens > limit).nonzero()[0].tolist():
            over.setdefault(r, f"{column} {int(lens.tokens[r]):,} tokens > {int(limit):,}{how}")
    note = " and ".join(f"{c} <= {int(v):,} tokens" for c, v in limits.items())
    return over, f"length: {note} ({'counted' if exact else 'estimated'})"


def _lexicon(table: Any, lexicon: str | Path | Iterable[str] | None,
             allow: Iterable[str]) -> tuple[dict[int, list[str]], str]:
    """Row -> the lexicon terms it hit (prompt and answer), and the filter's description."""
    if lexicon is None:
        return {}, ""
    allowed = tuple(sorted({a.lower() for a in allow}))
    if isinstance(lexicon, (Path, str)):
        # "default" (or "") is the list `preflight check` uses by default (toxicity.DEFAULT_LEXICON)
        matcher, source = matcher_for(str(lexicon), allowed)
    else:
        terms = sorted({t.strip().lower() for t in lexicon if t.strip()})
        matcher, source = Matcher(terms, set(allowed)), f"{len(terms)} given terms"
    hits: dict[int, list[str]] = {}
    for column in ("prompt", "answer"):
        col = table.column(column)
        flagged, _ = scan_column(col, matcher)
        for r in flagged:
            found = hits.setdefault(r, [])
            found += [t for t in dict.fromkeys(matcher.hits(col[r].as_py())) if t not in found]
    return hits, f"lexicon ({source})"


def _validator(row_schema: dict[str, Any] | None) -> Any:
    if row_schema is None:
        return None
    import jsonschema

    cls = jsonschema.validators.validator_for(row_schema)
    return cls(row_schema)


def _format_problem(obj: dict[str, Any], row: dict[str, Any], fields: dict[str, str], domain: str,
                    required: tuple[str, ...], odd_optional: list[str],
                    validator: Any) -> tuple[str, str] | None:
    """The reader's verdict on one row, labelled from its original value; None when it is fine."""
    for c in required:
        if row[c] is None:
            return _label(c, obj, fields[c])
    if domain == "chat" and row["prompt"] is None:
        return "empty:prompt", "the user turns have no text"
    for c in odd_optional:
        value, _ = value_at(obj, fields[c])
        if row[c] is None and value is not None:
            return f"wrong-type:{c}", f"{c} is {describe_value(value)}"
    if validator is not None:
        import jsonschema

        error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
        if error is not None:
            return "schema", error.message[:300]
    return None


def _label(column: str, obj: dict[str, Any], field: str) -> tuple[str, str]:
    value, unreachable = value_at(obj, field)
    if unreachable:
        return f"wrong-type:{column}", f"{column}: {unreachable}"
    if value is None:
        return f"missing:{column}", f"no {column} (field {field!r} absent or null)"
    if column == "messages":
        return _messages_problem(value)
    if isinstance(value, str) and (not value or value.isspace()):
        return f"empty:{column}", f"{column} is empty"
    if isinstance(value, list) and not value:
        return f"empty:{column}", f"{column} is an empty list"
    if isinstance(value, list):
        held = next((x for x in value if not isinstance(x, str)), None)
        return f"wrong-type:{column}", f"{column} is a list holding {describe_value(held)}"
    return f"wrong-type:{column}", f"{column} is {describe_value(value)}"


def _messages_problem(value: Any) -> tuple[str, str]:
    kind, detail = message_problem(value)
    return (kind, detail) if kind else ("wrong-type:messages", "messages could not be read")


def _not_a_row(line: bytes) -> tuple[str, str]:
    """Why a non-blank line the reader did not turn into a row is not one."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "undecodable", f"not valid UTF-8 (byte 0x{line[exc.start]:02x} at column {exc.start + 1})"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return "bad-json", f"{exc.msg} at column {exc.colno}"
    if not isinstance(obj, dict):
        return "bad-json", f"not a JSON object ({describe_value(obj)})"
    return "bad-json", "not readable as a row (e.g. a \\u escape that is a lone surrogate)"


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, default=json_value).encode("utf-8", errors="surrogatepass")


