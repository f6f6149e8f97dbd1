"""verl's data files as its reward routing sees them: the rows' prompt, data_source and
reward_model columns, and the data_source keys verl's default scorer knows.

KNOWN_SOURCES is verl's ``default_compute_score`` (verl/utils/reward_score/__init__.py, verl 0.9.1):
a row whose data_source is none of these (nor starts with ``aime``) raises NotImplementedError at
its first reward unless a custom reward function is configured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KNOWN_SOURCES: tuple[str, ...] = (
    "openai/gsm8k", "lighteval/MATH", "DigitalLearningGmbH/MATH-lighteval", "HuggingFaceH4/MATH-500",
    "math_dapo", "math", "math_dapo_reasoning",
    "numina_aops_forum", "numina_synthetic_math", "numina_amc_aime", "numina_synthetic_amc", "numina_cn_k12",
    "numina_olympiads",
    "codecontests", "apps", "codeforces", "taco",
    "hiyouga/geometry3k",
    "searchR1_nq", "searchR1_triviaqa", "searchR1_popqa", "searchR1_hotpotqa", "searchR1_2wikimultihopqa",
    "searchR1_musique", "searchR1_bamboogle",
)
KNOWN_PREFIXES: tuple[str, ...] = ("aime",)
COLUMNS = ("data_source", "reward_model")


def is_known_source(value: Any) -> bool:
    return isinstance(value, str) and (value in KNOWN_SOURCES or value.startswith(KNOWN_PREFIXES))


def read_rows(path: Path, prompt_key: str = "prompt") -> tuple[list[dict[str, Any]], str]:
    """The rows (only the columns the reward routing reads, and the prompt) and '' , or [] and why
    the file cannot be read."""
    if not path.is_file():
        return [], "not found"
    try:
        if path.suffix == ".parquet":
            return _parquet(path, prompt_key), ""
        if path.suffix in (".jsonl", ".json"):
            return _jsonl(path), ""
    except (OSError, ValueError) as exc:
        return [], f"cannot be read: {exc}"
    except ImportError:
        return [], "pyarrow is not installed, so parquet cannot be read (pip install pyarrow)"
    return [], f"{path.suffix or 'no suffix'}: verl reads parquet (or JSON lines) files"


def _parquet(path: Path, prompt_key: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq  # only when a run names parquet files

    pf = pq.ParquetFile(path)
    names = set(pf.schema_arrow.names)
    wanted = [c for c in (prompt_key, *COLUMNS) if c in names]
    table = pf.read(columns=wanted)
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _jsonl(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json" and text.lstrip().startswith("["):
        loaded = json.loads(text)
        return [r for r in loaded if isinstance(r, dict)]
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"line {number} is not a JSON object")
            rows.append(row)
    return rows
