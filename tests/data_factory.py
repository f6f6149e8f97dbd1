"""Write small dataset files for tests: JSON Lines (plain or gzip), Parquet, and Hugging Face
``save_to_disk`` folders, all from a list of dicts. Nothing here knows about the readers."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def jsonl_bytes(rows: Iterable[Any], *, newline: str = "\n", trailing_newline: bool = True) -> bytes:
    """Each row as one line of JSON (non-ASCII kept as is); a row that is already bytes or str is
    written as it stands, so tests can mix in blank, broken or non-UTF-8 lines."""
    lines: list[bytes] = []
    for row in rows:
        if isinstance(row, bytes):
            lines.append(row)
        elif isinstance(row, str):
            lines.append(row.encode("utf-8"))
        else:
            lines.append(json.dumps(row, ensure_ascii=False).encode("utf-8"))
    sep = newline.encode()
    return sep.join(lines) + (sep if trailing_newline and lines else b"")


def write_jsonl(path: Path, rows: Iterable[Any], **kw: Any) -> Path:
    path.write_bytes(jsonl_bytes(rows, **kw))
    return path


def write_jsonl_gz(path: Path, rows: Iterable[Any], **kw: Any) -> Path:
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(jsonl_bytes(rows, **kw))
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]], **kw: Any) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, **kw)
    return path


def write_hf(path: Path, rows: list[dict[str, Any]]) -> Path:
    """A folder written by the real ``datasets`` library (``Dataset.save_to_disk``). Callers set
    HF_DATASETS_OFFLINE=1 first (nothing here needs the network)."""
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


def data_parser() -> Any:
    """The `preflight data ...` argument parser on its own, so tests can see raised errors."""
    import argparse

    from preflight.data.commands import add_data_commands

    parser = argparse.ArgumentParser(prog="preflight")
    add_data_commands(parser.add_subparsers(dest="command"))
    return parser


def run_data_cli(*argv: str) -> int:
    """Run `preflight data ARGV...` through its handler; errors propagate as exceptions."""
    args = data_parser().parse_args(["data", *argv])
    return int(args.data_handler(args))
