"""The shapes the data pipeline passes around: a split read into columns, and its problems.

Readers turn any supported file (JSONL, JSONL.gz, Parquet, a Hugging Face ``save_to_disk``
folder) into a ``SplitTable``: one pyarrow table with a fixed set of canonical columns, plus the
format problems found while reading, each located by file and line (or row). Checks, the splitter
and the cleaner all work from that one shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

    from .formats import Layout

# Canonical columns every SplitTable has (nullable strings unless said otherwise):
#   _line       int64: 1-based line in a JSONL file, or 1-based row in Parquet / Arrow
#   prompt      the prompt text; for a prompt given as chat messages (or the chat domain's
#               messages), the contents of the user turns joined by "\n" (system turns left out)
#   answer      math answer, as text (numbers are turned into their JSON text)
#   tests       code tests: a string as given, or the JSON text of a list
#   messages    chat messages as JSON text (roles validated while reading)
#   difficulty  the stratification field, as text (numbers as their JSON text)
#   id          the row id, as text
#   conversation  for chat messages with assistant or tool turns besides the user's: every
#               non-system turn's content joined by "\n" (what contamination compares); null
#               otherwise (then the prompt is the whole text)
CANONICAL_COLUMNS = ("_line", "prompt", "answer", "tests", "messages", "difficulty", "id", "conversation")
MAX_EXAMPLES = 5  # examples kept per kind of problem; counts are always complete


class DataFileError(Exception):
    """A file that cannot be read as a dataset at all: missing, an LFS pointer, corrupt Parquet."""

    def __init__(self, file: str, reason: str, hint: str = "") -> None:
        super().__init__(f"{file}: {reason}")
        self.file, self.reason, self.hint = file, reason, hint


@dataclass
class Problem:
    """One kind of format problem in one split: how many rows, and a few located examples."""

    kind: str  # e.g. "undecodable", "bad-json", "missing:prompt", "wrong-type:answer", "empty:prompt", "bad-role"
    count: int = 0
    examples: list[str] = field(default_factory=list)  # "train.jsonl:17: prompt is a number"

    def add(self, where: str, detail: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {detail}")


@dataclass
class SplitTable:
    name: str  # train | val | test | benchmark:<file name>
    path: Path
    table: pa.Table  # the rows that could be parsed, in CANONICAL_COLUMNS
    rows_seen: int  # lines (or rows) read, including ones that could not be parsed
    problems: dict[str, Problem] = field(default_factory=dict)
    layout: Layout | None = None  # the format it was read as, and the field path of each column

    def problem(self, kind: str) -> Problem:
        return self.problems.setdefault(kind, Problem(kind))

    @property
    def rows(self) -> int:
        return int(self.table.num_rows)
