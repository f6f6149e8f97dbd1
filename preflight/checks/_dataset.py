"""The spec's dataset, read once per check run and shared by every data check.

Reading a split, normalizing its prompts and finding leaks are each memoized on the check
context, so ten data checks running concurrently read each file once. pyarrow is imported only
once a split is read, so a spec without data costs nothing here.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.model import DataFileError
from ..data.normalize import normalize_array
from ..data.readers import read_split
from ..data.repeats import valid_row_keys
from ..errors import InputFileError
from ..registry import Context
from ..yamlio import read_text

SPLITS = ("train", "val", "test")


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


def split(ctx: Context, name: str, path: Path | None = None) -> Any:
    """The SplitTable of a declared split (or a benchmark file); DataFileError propagates."""
    ctx.memo("data.allocator", _return_freed_memory)

    target = path if path is not None else declared(ctx)[name]
    fields = dict(ctx.spec.get("data.fields") or {})
    domain = str(ctx.spec.get("run.domain"))
    schema = row_schema(ctx) if not name.startswith("benchmark:") else None
    return ctx.memo(f"data.split.{name}", lambda: read_split(target, name, fields, domain, schema))


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


def keys(ctx: Context, name: str) -> Any:
    """``valid_row_keys`` of the split's normalized prompts (cheap keys that equal texts share)."""
    return ctx.memo(f"data.keys.{name}", lambda: valid_row_keys(normalized(ctx, name)))


@dataclass
class Leak:
    kind: str  # exact | near | ngram
    a: str  # "train.jsonl:17"
    b: str  # "val.jsonl:3"
    similarity: float
    a_text: str = ""
    b_text: str = ""


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
