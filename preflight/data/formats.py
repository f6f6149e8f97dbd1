"""Which field of a row holds each canonical column: the dataset formats people train with, their
detection, and dotted field paths.

A *format* is a preset of field paths (``data.format: plain | verl | trl | openrlhf``, or ``auto``
to detect it from the first rows of each file); ``data.fields`` overrides any of them, and each
field may be a dotted path into nested objects (``reward_model.ground_truth``). Where a preset
names several candidates (TRL's answer may be ``completion``, ``solution`` ...) the first one the
file has is used. The presets:

- plain: every canonical column under its own name (prompt, answer, tests, messages, difficulty, id).
- verl (its RL Parquet files): ``prompt`` is a list of chat messages, the answer (code: the tests)
  is ``reward_model.ground_truth``, the id ``extra_info.index``; ``data_source`` and the rest of
  ``extra_info`` are not read.
- trl (TRL's prompt-only and prompt-completion types, standard or conversational): ``prompt`` is a
  string or a list of chat messages; the answer is ``completion`` (a string or messages) or, for
  GRPO-style prompt-only data, ``solution`` / ``answer`` / ``ground_truth``.
- openrlhf (its prompt datasets, ``--input_key input --label_key label``): ``input`` is the prompt
  (a string or chat messages), ``label`` the answer.

Detection, in order (the first rule that holds decides; the reason is stated in the report):
a ``reward_model`` object holding ``ground_truth`` (or ``data_source`` beside a chat ``prompt``)
is verl; an ``input`` field without ``prompt`` is openrlhf; a ``prompt`` that is a chat list, or a
``completion`` field, is trl; anything else is plain.

This module holds no pyarrow: it works on sample rows as Python objects (the readers turn a
Parquet or Arrow schema into such a row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("plain", "verl", "trl", "openrlhf")
AUTO = "auto"
COLUMNS = ("prompt", "answer", "tests", "messages", "difficulty", "id")

# canonical column -> candidate field paths, first present wins (the first is used when none is)
PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    "plain": {c: (c,) for c in COLUMNS},
    "verl": {"prompt": ("prompt",), "answer": ("reward_model.ground_truth",),
             "tests": ("reward_model.ground_truth",), "messages": ("prompt",),
             "difficulty": ("difficulty", "extra_info.difficulty"), "id": ("extra_info.index", "id")},
    "trl": {"prompt": ("prompt",), "answer": ("completion", "solution", "answer", "ground_truth"),
            "tests": ("tests", "test_cases"), "messages": ("messages", "prompt"),
            "difficulty": ("difficulty",), "id": ("id",)},
    "openrlhf": {"prompt": ("input",), "answer": ("label",), "tests": ("label",), "messages": ("input",),
                 "difficulty": ("difficulty",), "id": ("id",)},
}


@dataclass
class ChatShape:
    """How many rows held a prompt as chat messages, and of those how many had a system turn or
    more than one non-system turn (multi-turn); said in the results so nobody has to guess."""

    rows: int = 0
    with_system: int = 0
    multi_turn: int = 0

    def add(self, rows: int, with_system: int, multi_turn: int) -> None:
        self.rows += rows
        self.with_system += with_system
        self.multi_turn += multi_turn


@dataclass
class Layout:
    """The format a file was read as, why, and the field path of each canonical column."""

    format: str
    how: str  # "data.format" | "detected: <reason>"
    fields: dict[str, str]  # canonical column -> dotted field path
    overridden: tuple[str, ...] = ()  # the columns data.fields named
    chat: ChatShape = field(default_factory=ChatShape)

    def describe(self) -> str:
        """e.g. "verl (detected: a reward_model object with ground_truth)"."""
        return f"{self.format} ({self.how})"

    def brief(self) -> str:
        """e.g. "verl, detected" (the reason is in ``describe``)."""
        return f"{self.format}, {'declared' if self.how == 'data.format' else 'detected'}"

    def field_of(self, column: str) -> str:
        return self.fields.get(column, column)


def split_path(path: str) -> tuple[str, ...]:
    """A dotted field path as its parts; empty parts are refused by the caller's schema."""
    return tuple(p for p in path.split(".") if p)


_MISSING = object()


def value_at(obj: Any, path: str) -> tuple[Any, str]:
    """The value at a dotted path of a parsed row, and '' or the reason it cannot be reached:
    a missing key gives (None, ''); a step through something that is not an object gives
    (None, "reward_model is a string, not an object")."""
    node = obj
    parts = split_path(path)
    for i, part in enumerate(parts):
        if node is None:
            return None, ""
        if not isinstance(node, dict):
            return None, f"{'.'.join(parts[:i])} is {describe_value(node)}, not an object"
        node = node.get(part, _MISSING)
        if node is _MISSING:
            return None, ""
    return node, ""


def describe_value(value: Any) -> str:
    """How a problem message names a JSON value's kind: "a number", "a list", "null" ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def is_chat(value: Any) -> bool:
    """A non-empty list of objects with role and content: chat messages."""
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, dict) and "role" in m and "content" in m for m in value[:8]))


def _has(rows: Sequence[Mapping[str, Any]], path: str) -> bool:
    return any(value_at(r, path)[0] is not None for r in rows)


def detect(rows: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(format, reason) from sample rows (see the module docstring for the rules)."""
    if any(isinstance(r.get("reward_model"), dict) and "ground_truth" in r["reward_model"] for r in rows):
        return "verl", "detected: a reward_model object with ground_truth"
    if _has(rows, "data_source") and any(is_chat(r.get("prompt")) for r in rows):
        return "verl", "detected: data_source beside a chat-message prompt"
    if _has(rows, "input") and not _has(rows, "prompt"):
        return "openrlhf", "detected: an input field and no prompt"
    if any(is_chat(r.get("prompt")) for r in rows):
        return "trl", "detected: prompt is a list of chat messages (conversational)"
    if _has(rows, "prompt") and _has(rows, "completion"):
        return "trl", "detected: prompt and completion fields (prompt-completion)"
    return "plain", "detected: no other format's fields" if rows else "no rows to detect from"


def resolve(declared: str, fields: Mapping[str, str | None], rows: Sequence[Mapping[str, Any]]) -> Layout:
    """The layout for a file: ``declared`` (a format, or auto), ``fields`` (data.fields: a path
    per canonical column, overriding the preset) and the file's first rows."""
    if declared == AUTO:
        fmt, how = detect(rows)
    elif declared in PRESETS:
        fmt, how = declared, "data.format"
    else:
        raise ValueError(f"unknown data format {declared!r}: expected {AUTO} or one of {', '.join(FORMATS)}")
    chosen: dict[str, str] = {}
    for column, candidates in PRESETS[fmt].items():
        chosen[column] = next((p for p in candidates if _has(rows, p)), candidates[0])
    named = tuple(c for c in COLUMNS if fields.get(c))
    for c in named:
        chosen[c] = str(fields[c])
    return Layout(fmt, how, chosen, named)

