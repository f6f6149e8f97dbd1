"""The spec's dataset, read once per check run and shared by every data check.

Reading a split, normalizing its prompts and finding leaks are each memoized on the check
context, so ten data checks running concurrently read each file once. pyarrow is imported only
once a split is read, so a spec without data costs nothing here.

Each split is read with the spec's data.format (auto: detected per file) and data.fields; a
benchmark file (data.benchmarks) may name its own prompt field and format. ``unreadable`` counts
the rows in which a check cannot read the text it needs, so the checks fail closed (see
``fail_closed``).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.formats import AUTO
from ..data.model import DataFileError, SplitTable
from ..data.normalize import contamination_text, decontamination_array, normalize_array
from ..data.readers import read_split
from ..data.repeats import valid_row_keys
from ..errors import InputFileError
from ..registry import Context
from ..result import Outcome, Status, errored
from ..yamlio import read_text

SPLITS = ("train", "val", "test")
# the text columns the reader fills in each domain (a check reading another one has nothing to read)
READ_COLUMNS = {"math": ("prompt", "answer"), "code": ("prompt", "tests"), "chat": ("prompt",)}
FIELDS_HINT = ("set data.fields.{column} to the field holding it (a dotted path for a nested field, e.g. "
               "reward_model.ground_truth), or data.format (plain | verl | trl | openrlhf)")


def declared(ctx: Context) -> dict[str, Path]:
    return {k: Path(ctx.spec.get(f"data.{k}")) for k in SPLITS if ctx.spec.get(f"data.{k}")}


def row_schema(ctx: Context) -> dict[str, Any] | None:
    name = ctx.spec.get("data.row_schema")
    if not name:
        return None

    def load() -> dict[str, Any]:
        try:
            schema = json.loads(read_text(Path(name), "row JSON Schema"))
        except InputFileError as exc:
            raise DataFileError(name, f"data.row_schema: {exc.reason}", exc.hint) from None
        except json.JSONDecodeError as exc:
            raise DataFileError(name, f"data.row_schema is not valid JSON (line {exc.lineno}: {exc.msg})",
                                "fix the schema file") from None
        if not isinstance(schema, dict):
            raise DataFileError(name, "data.row_schema must hold a JSON object (a JSON Schema)")
        return schema

    result: dict[str, Any] = ctx.memo("data.row_schema", load)
    return result


def _return_freed_memory() -> None:
    """Have Arrow allocate from the C library's malloc, which gives a large freed block back at
    once: the data checks make large short-lived arrays. Arrow's default mimalloc pool keeps
    decommitting and refaulting those pages; on 1M rows that doubled the time of the checks
    (mostly in the kernel) and raised their peak memory by 0.4 GB. Arrays already made keep
    the pool they came from."""
    import pyarrow as pa

    with contextlib.suppress(NotImplementedError, AttributeError, OSError):
        pa.set_memory_pool(pa.system_memory_pool())


def data_format(ctx: Context) -> str:
    """data.format as the readers take it: a preset's name, or auto (detected per file)."""
    return str(ctx.spec.get("data.format") or AUTO)


def fields(ctx: Context) -> dict[str, str]:
    """data.fields as written (a column left out takes the format's preset); the difficulty
    column is data.split.stratify_by when the spec sets that and not data.fields.difficulty."""
    named = {k: str(v) for k, v in (ctx.spec.get("data.fields") or {}).items() if v}
    stratify = ((ctx.spec.user.get("data") or {}).get("split") or {}).get("stratify_by")
    if stratify and "difficulty" not in named:
        named["difficulty"] = str(stratify)
    return named


def split(ctx: Context, name: str) -> SplitTable:
    """The SplitTable of a declared split; DataFileError propagates."""
    ctx.memo("data.allocator", _return_freed_memory)

    target = declared(ctx)[name]
    domain = str(ctx.spec.get("run.domain"))
    fmt = data_format(ctx)
    found: SplitTable = ctx.memo(f"data.split.{name}", lambda: read_split(
        target, name, fields(ctx), domain, row_schema(ctx), fmt))
    return found


@dataclass
class Benchmark:
    path: Path
    fields: dict[str, str]
    format: str

    @property
    def key(self) -> str:
        return f"benchmark:{self.path}"


def benchmarks(ctx: Context) -> list[Benchmark]:
    """data.benchmarks: a path (read like the splits), or {path, prompt, format} for a file
    laid out otherwise."""
    out = []
    for item in ctx.spec.get("data.benchmarks") or []:
        if isinstance(item, dict):
            own = {"prompt": str(item["prompt"])} if item.get("prompt") else {}
            out.append(Benchmark(Path(item["path"]), own, str(item.get("format") or AUTO)))
        else:
            out.append(Benchmark(Path(item), fields(ctx), data_format(ctx)))
    return out


def benchmark(ctx: Context, bench: Benchmark) -> SplitTable:
    """A benchmark file's SplitTable (no row schema: it is not training data)."""
    ctx.memo("data.allocator", _return_freed_memory)
    domain = str(ctx.spec.get("run.domain"))
    found: SplitTable = ctx.memo(f"data.split.{bench.key}", lambda: read_split(
        bench.path, bench.key, bench.fields, domain, None, bench.format))
    return found


def readable_splits(ctx: Context) -> tuple[dict[str, Any], dict[str, str]]:
    """Every declared split that can be read, and the reason for each that cannot."""
    tables, errors = {}, {}
    for name in declared(ctx):
        try:
            tables[name] = split(ctx, name)
        except DataFileError as exc:
            errors[name] = exc.reason + (f" ({exc.hint})" if exc.hint else "")
    return tables, errors


def normalized(ctx: Context, name: str) -> Any:
    """The split's prompts, normalized (NFKC, lower case, single spaces), as a pyarrow array."""

    def compute() -> Any:
        # here, not at the top: concurrent.futures brings logging, which `preflight check` need not load
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow as pa

        # Chunk by chunk, on every core (Arrow's kernels release the GIL): no combined copy of
        # the raw column, and each chunk's temporaries are freed as soon as it is done.
        column = split(ctx, name).table.column("prompt")
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="normalize") as pool:
            return pa.chunked_array(list(pool.map(normalize_array, column.chunks)), pa.string())

    return ctx.memo(f"data.norm.{name}", compute)


def contamination_texts(ctx: Context, t: SplitTable) -> Any:
    """What contamination compares in each row: the whole conversation of a chat prompt (every
    turn but the system's) or else the prompt, normalized and stripped of punctuation (see
    ``normalize``), as one pyarrow array."""

    def compute() -> Any:
        conversation = t.table.column("conversation")
        if conversation.null_count == len(conversation) and t.name in SPLITS:
            # the prompts are the whole texts, and already normalized for the other checks
            return decontamination_array(normalized(ctx, t.name).combine_chunks())
        return contamination_text(t.table)

    return ctx.memo(f"data.decontaminated.{t.name}", compute)


def keys(ctx: Context, name: str) -> Any:
    """``valid_row_keys`` of the split's normalized prompts (cheap keys that equal texts share)."""
    return ctx.memo(f"data.keys.{name}", lambda: valid_row_keys(normalized(ctx, name)))


@dataclass
class Leak:
    kind: str  # exact | near | ngram
    a: str  # "train.jsonl:17"
    b: str  # "val.jsonl:3"
    similarity: float | None  # Jaccard (near) or 1.0 (exact); None for an n-gram leak, which is no similarity
    a_text: str = ""
    b_text: str = ""
    ngram: int | None = None  # the n of the shared word n-gram (n-gram leaks)


@dataclass
class Leaks:
    items: list[Leak] = field(default_factory=list)


def leaks(ctx: Context) -> Leaks:
    """Every leak the data checks find, collected for `--export-leaks`."""
    found: Leaks = ctx.memo("data.leaks", Leaks)
    return found


def where(table: Any, index: int, path: Path) -> str:
    return f"{path}:{table.column('_line')[index].as_py()}"


def short(text: str | None, width: int = 80) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------------------------------------
# failing closed: text a check cannot read


@dataclass
class Unreadable:
    """Rows of a split in which a canonical column has no readable text."""

    split: str
    path: Path
    column: str
    field: str  # the file's field path (or "messages (user turns)")
    count: int  # rows (and lines that are no rows) without the text
    rows: int  # lines read
    why: str  # "is absent", "has the wrong type" ...
    example: str  # "train.jsonl:3: no prompt (field 'prompt' absent or null)"

    @property
    def everywhere(self) -> bool:
        return self.count >= self.rows

    def sentence(self) -> str:
        if self.everywhere:
            return (f"{self.split} ({self.path}): no row has a readable {self.column}: field {self.field!r} "
                    f"{self.why} in all {self.rows:,} rows (e.g. {self.example})")
        return (f"{self.count:,} of {self.rows:,} {self.split} rows have no readable {self.column} and were not "
                f"compared (e.g. {self.example})")


_WHY = {"missing": "is absent", "wrong-type": "has the wrong type", "empty": "is empty", "bad-role": "has a bad role",
        "bad-json": "cannot be read (not JSON)", "undecodable": "cannot be read (not UTF-8)"}


def unreadable(t: SplitTable, column: str, domain: str) -> Unreadable | None:
    """The rows of ``t`` without readable ``column`` text, or None when every row has it (or
    the split has no line at all: the split checks report an empty file)."""
    if t.rows_seen == 0:
        return None
    lost = t.rows_seen - t.rows
    count = t.table.column(column).null_count + lost
    if not count:
        return None
    source = "messages" if domain == "chat" and column == "prompt" else column
    kinds = [f"{k}:{c}" for c in dict.fromkeys((source, column)) for k in ("missing", "wrong-type", "empty")]
    kinds += ["bad-role", "bad-json", "undecodable"]
    seen = [(k, t.problems[k]) for k in kinds if k in t.problems and t.problems[k].count]
    layout = t.layout
    field = layout.field_of(source) if layout is not None else source
    if source == "messages":
        field += " (user turns)"
    if seen:
        kind, problem = max(seen, key=lambda kp: kp[1].count)
        why, example = _WHY.get(kind.split(":")[0], kind), problem.examples[0] if problem.examples else kind
    else:
        nulls = t.table.column(column).is_null().combine_chunks().to_numpy(zero_copy_only=False).nonzero()[0]
        line = t.table.column("_line")[int(nulls[0])].as_py() if len(nulls) else "?"
        why, example = "is absent", f"{t.path}:{line}"
    name = f"benchmark {t.path.name}" if t.name.startswith("benchmark:") else t.name
    return Unreadable(name, t.path, column, field, count, t.rows_seen, why, example)


def fail_closed(ctx: Context, outcome: Outcome, columns: tuple[str, ...]) -> Outcome:
    """No pass, and no warning either, on text a check could not read: a split in which no row has
    a column the check reads is an error naming the split, the field and a row; rows without it
    in an otherwise readable split are counted, named, and turn a pass into a warning."""
    if outcome.status not in (Status.PASS, Status.WARN) or not declared(ctx):
        return outcome
    tables, _ = readable_splits(ctx)
    domain = str(ctx.spec.get("run.domain"))
    gaps = [u for t in tables.values() for c in columns if c in READ_COLUMNS.get(domain, ())
            if (u := unreadable(t, c, domain)) is not None]
    if not gaps:
        return outcome
    counts = {f"{u.split}.{u.column}": u.count for u in gaps}
    whole = [u for u in gaps if u.everywhere]
    if whole:
        u = whole[0]
        how = f"; read as {tables[u.split].layout.describe()}" if tables[u.split].layout is not None else ""
        return errored("; ".join(g.sentence() for g in whole) + how, FIELDS_HINT.format(column=u.column),
                       unreadable=counts)
    note = "; ".join(g.sentence() for g in gaps)
    evidence = {**outcome.evidence, "unreadable": counts}
    remediation = outcome.remediation or "data.format names the rows without it; fix or drop them"
    return Outcome(Status.WARN, f"{outcome.found}; {note}", outcome.expected, remediation, evidence)


def chat_note(tables: dict[str, SplitTable], whole_conversation: bool = False) -> str | None:
    """What was compared in prompts given as chat messages, or None when no prompt was."""
    shapes = [(n, t.layout.chat) for n, t in tables.items() if t.layout is not None and t.layout.chat.rows]
    if not shapes:
        return None
    rows = sum(c.rows for _, c in shapes)
    system = sum(c.with_system for _, c in shapes)
    multi = sum(c.multi_turn for _, c in shapes)
    what = ("every turn but the system's (user, assistant, tool), joined by newlines" if whole_conversation
            else "the user turns' text, joined by newlines")
    return (f"{rows:,} prompts given as chat messages ({', '.join(n for n, _ in shapes)}): compared by {what}; "
            f"system turns left out ({system:,} rows have one); {multi:,} rows have several non-system turns")
