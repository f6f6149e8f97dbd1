"""Read one split file (JSONL, JSONL.gz, Parquet, a Hugging Face ``save_to_disk`` folder) into a
``SplitTable`` of canonical columns, counting every format problem with file:line examples.

JSON Lines is read in blocks of about 32 MB cut at newlines (a thread reads the next block while
this one is parsed; gzip is decompressed as a stream). Each block is parsed by ``pyarrow.json``
against an explicit schema of only the fields the domain needs (everything else in a row is
skipped unparsed, so unrelated fields may hold anything, as long as the line is valid JSON in
UTF-8), and the columns are checked and projected with compute kernels: no ``json.loads`` per
line. Lines pyarrow rejects (bad JSON, bad UTF-8, a field whose type changes between rows, a wrong
type in a required field, two objects on one line ...) are found by parsing the block again in
smaller runs; the failing runs of a few hundred lines are read line by line in Python, where each
line is decoded, parsed and checked on its own, so problems are counted exactly and located. Both
paths produce the same canonical values (tests compare them). Blank lines are skipped and line
numbers stay those of the file. A BOM at the start is skipped.

Other formats: Parquet is read in row batches of only the needed columns; a ``save_to_disk``
folder (``state.json`` listing Arrow IPC stream files) and a single ``.arrow`` file are read with
``pyarrow.ipc``, without the ``datasets`` library; their line numbers are 1-based row numbers. A
name without a known suffix is sniffed by its first bytes. A file starting like a JSON array over
many lines is refused (a one-line array is a line that is no object). Refused with
``DataFileError``: a missing path, a folder that is no dataset (or a whole DatasetDict), a Git LFS
pointer, an unknown format, Parquet/Arrow/gzip that cannot be read. An empty file is 0 rows.

Value rules (both paths): strings are kept as they are; numbers and booleans in ``answer``,
``difficulty`` and ``id`` become their JSON text (integers as digits, other numbers as Arrow's
shortest round-trip text, e.g. 2.5 -> "2.5", 1.0 -> "1"; true -> "true"); ``tests`` is a string as
is or the ``json.dumps(..., ensure_ascii=False)`` text of a list of strings; ``messages`` is the
JSON text of the list of ``{"role", "content"}`` objects (other keys in a message are dropped) and
``prompt`` in the chat domain is the user turns' contents joined by "\\n".

Only the fields the domain uses are read: math: prompt, answer; code: prompt, tests; chat:
messages; plus difficulty and id in every domain. The other canonical columns are null.

Problem kinds: ``undecodable``, ``bad-json``, ``missing:<col>``, ``wrong-type:<col>``,
``empty:<col>`` (also ``empty:prompt`` for a chat row without user text, and ``empty:tests`` /
``empty:messages`` for an empty list), ``bad-role`` and, with a row schema, ``schema``. A wrong type
is reported for difficulty and id too (a list or an object); missing and empty only for the
domain's required fields. A row with a problem keeps its place in the table with the affected
column null; lines that are undecodable or not JSON objects cannot become rows. A ``row_schema``
is checked in addition to the field rules (its problems are a separate kind, so a caller may weigh
them instead), and needs every row as a Python object: with one, JSON Lines are parsed line by line.

numpy and pyarrow are imported inside the functions that use them: `preflight check` imports this
module even when the spec declares no data, and must not pay for them then.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import queue
import re
import threading
import zlib
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model import CANONICAL_COLUMNS, MAX_EXAMPLES, DataFileError, SplitTable

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import pyarrow as pa

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
BLOCK_BYTES = 32 << 20  # JSON Lines are parsed this much at a time, cut at a newline
PARQUET_BATCH_ROWS = 65_536
SLOW_RUN_LINES = 512  # a failing run of JSON lines this short is read line by line
SPLIT_WAYS = 16  # a longer failing run is tried again in this many parts
_CPUS = os.cpu_count() or 1
ROLES = ("system", "user", "assistant", "tool")
REQUIRED = {"math": ("prompt", "answer"), "code": ("prompt", "tests"), "chat": ("messages",)}
FIELD_COLUMNS = ("prompt", "answer", "tests", "messages", "difficulty", "id")
SCALAR_TEXT = ("answer", "difficulty", "id")  # numbers and booleans allowed, turned into text
SUPPORTED = ("JSON Lines (.jsonl, .json), gzip JSON Lines (.jsonl.gz, .json.gz), Parquet (.parquet) "
             "or a folder written by Hugging Face Dataset.save_to_disk")
_BOM = b"\xef\xbb\xbf"
_WS = b" \t\r"  # what may surround a JSON value on a line (besides the newline)
_INT64 = (-(1 << 63), (1 << 63) - 1)
# character -> how json.dumps writes it, and the escape that puts it into a parsed JSON string
_JSON_ESCAPES = (("\\", "\\\\", b"\\\\"), ('"', '\\"', b'\\"'), ("\n", "\\n", b"\\n"),
                 ("\r", "\\r", b"\\r"), ("\t", "\\t", b"\\t"), ("\b", "\\b", b"\\b"),
                 ("\f", "\\f", b"\\f"))
_OTHER_CONTROL = "[\\x00-\\x07\\x0b\\x0e-\\x1f]"  # control characters json.dumps writes as \\u00XX
_OTHER_CONTROL_RE = re.compile(_OTHER_CONTROL)
_CHANGED = re.compile(r"Column\(/([^)/]*)[^)]*\) changed from (\w+) to (\w+)")
_FAST_JSON = True  # tests turn the pyarrow path off to compare it with the line-by-line one


@cache
def _schema() -> pa.Schema:
    """The canonical table's schema: the line number, then every canonical column as text."""
    import pyarrow as pa

    return pa.schema([pa.field("_line", pa.int64())] + [pa.field(c, pa.string()) for c in CANONICAL_COLUMNS[1:]])


@cache
def _message_type() -> pa.DataType:
    """The type a ``messages`` field is parsed as: a list of {role, content} strings."""
    import pyarrow as pa

    return pa.list_(pa.struct([pa.field("role", pa.string()), pa.field("content", pa.string())]))


@cache
def _types() -> dict[str, pa.DataType]:
    """The explicit JSON types a field may adapt to, by the names ``_Reader.adapt`` returns."""
    import pyarrow as pa

    return {"int64": pa.int64(), "double": pa.float64(), "bool": pa.bool_(), "string": pa.string(),
            "list": pa.list_(pa.string())}


def read_split(path: Path | str, name: str, fields: dict[str, str], domain: str,
               row_schema: dict | None = None) -> SplitTable:
    """Read one split into canonical columns.

    ``fields`` maps canonical names (prompt, answer, tests, messages, difficulty, id) to the names
    in the file (absent keys: the same name). ``domain`` (math | code | chat) decides the required
    fields. Raises ``DataFileError`` for a file that cannot be read as a dataset at all (missing, a
    directory that is no dataset, an LFS pointer, an unknown format, corrupt Parquet/Arrow/gzip).
    """
    if domain not in REQUIRED:
        raise ValueError(f"unknown domain {domain!r}: expected one of {', '.join(REQUIRED)}")
    reader = _Reader(Path(path), name, fields, domain, row_schema)
    return reader.read()


# ---------------------------------------------------------------------------------------------
# formats


def _kind_of(path: Path) -> str:
    """jsonl | jsonl.gz | parquet | arrow | hf | sniff; raises for what cannot be a dataset."""
    shown = str(path)
    if not path.exists():
        raise DataFileError(shown, "does not exist", "check the path in the spec's data section")
    if path.is_dir():
        if (path / "state.json").is_file():
            return "hf"
        if (path / "dataset_dict.json").is_file():
            splits = sorted(p.name for p in path.iterdir() if (p / "state.json").is_file())
            raise DataFileError(shown, "is a Hugging Face DatasetDict folder, not one split",
                                f"point at one split folder inside it ({', '.join(splits) or 'none found'})")
        raise DataFileError(shown, "is a directory, not a dataset file",
                            f"point at a file or a save_to_disk folder; supported: {SUPPORTED}")
    low = path.name.lower()
    if low.endswith((".jsonl.gz", ".json.gz", ".ndjson.gz")):
        return "jsonl.gz"
    if low.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if low.endswith((".parquet", ".pq")):
        return "parquet"
    if low.endswith(".arrow"):
        return "arrow"
    return "sniff"


def _sniff(path: Path, head: bytes) -> str:
    stripped = head.removeprefix(_BOM).lstrip()
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\x1f\x8b"):
        return "jsonl.gz"
    if head.startswith(b"ARROW1") or head.startswith(b"\xff\xff\xff\xff"):
        return "arrow"
    if stripped.startswith(b"{") or stripped.startswith(b"["):
        return "jsonl"
    raise DataFileError(str(path), "is not in a supported format (by its name or its first bytes)",
                        f"supported: {SUPPORTED}")


class _Buffer:
    """A reused read buffer (no fresh 32 MB allocation per block: the page faults of one cost as
    much as parsing it) with its scratch space for the newline search."""

    def __init__(self, size: int) -> None:
        import numpy as np

        self.data = bytearray(size)
        self.newlines = np.empty(size, dtype=bool)

    def grow(self, size: int, keep: int) -> None:
        import numpy as np

        grown = bytearray(size)
        grown[:keep] = self.data[:keep]
        self.data = grown
        self.newlines = np.empty(size, dtype=bool)


_DONE = object()


class _Blocks:
    """Blocks of whole lines of a binary stream, with their line tables, read ahead by one block.

    A thread reads (and for gzip, decompresses) the next block and finds its lines while the
    caller parses the current one; two buffers take turns. Each block is a memoryview valid until
    the next one is asked for; only the stream's last block may lack its final newline; a line
    longer than a buffer grows it. Use as a context manager, so the thread is always stopped."""

    def __init__(self, fh: Any, size_hint: int, escapes: bool) -> None:
        self.fh, self.escapes = fh, escapes  # escapes: also find which JSON escapes each block has
        self.size = min(BLOCK_BYTES, max(1 << 16, size_hint))
        self.ready: queue.Queue[Any] = queue.Queue(maxsize=1)
        self.free: queue.Queue[_Buffer] = queue.Queue()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._produce, name="jsonl-read-ahead", daemon=True)

    def __enter__(self) -> _Blocks:
        self.free.put(_Buffer(self.size))
        self.free.put(_Buffer(self.size))
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        while self.thread.is_alive():  # unblock a producer waiting to hand over a block
            with contextlib.suppress(queue.Empty):
                self.ready.get(timeout=0.05)

    def __iter__(self) -> Iterator[tuple[memoryview, np.ndarray, np.ndarray, np.ndarray,
                                         frozenset[str] | None]]:
        held: _Buffer | None = None
        while True:
            if held is not None:
                self.free.put(held)  # the caller is done with the previous block
                held = None
            item = self.ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            held, *rest = item
            yield tuple(rest)

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            carry, first = b"", True
            while not self.stop.is_set():
                try:
                    buf = self.free.get(timeout=0.05)
                except queue.Empty:
                    continue
                if len(carry) * 2 > len(buf.data):
                    buf.grow(2 * len(carry) + self.size, 0)
                buf.data[:len(carry)] = carry
                filled, eof = len(carry), False
                while True:
                    view = memoryview(buf.data)
                    while not eof and filled < len(buf.data):
                        n = self.fh.readinto(view[filled:])
                        if n:
                            filled += n
                        else:
                            eof = True
                    if first:
                        first = False
                        if filled >= 3 and buf.data.startswith(_BOM):  # pyarrow skips a BOM; json.loads would not
                            buf.data[:filled - 3] = buf.data[3:filled]
                            filled -= 3
                    cut = filled - 1 if eof else buf.data.rfind(b"\n", 0, filled)
                    if cut >= 0 or eof:
                        break
                    view.release()
                    buf.grow(2 * len(buf.data), filled)  # a line longer than the buffer
                if cut >= 0:
                    block = view[:cut + 1]
                    carry = bytes(buf.data[cut + 1:filled])
                    escapes = _escapes_in(buf.data, cut + 1, buf.newlines) if self.escapes else None
                    if not self._put((buf, block, *_line_table(block, buf.newlines), escapes)):
                        return
                if eof:
                    self._put(_DONE)
                    return
        except BaseException as exc:  # handed to the reader, raised there
            self._put(exc)


def _line_table(block: memoryview, scratch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 0-based indices of the block's non-blank lines, and every line's start and end."""
    import numpy as np

    arr = np.frombuffer(block, dtype=np.uint8)
    is_nl = scratch[:len(arr)]
    np.equal(arr, 10, out=is_nl)
    nl = np.flatnonzero(is_nl)
    trailing = len(arr) > 0 and arr[-1] != 10
    n_lines = len(nl) + (1 if trailing else 0)
    starts = np.empty(n_lines, dtype=np.int64)
    ends = np.empty(n_lines, dtype=np.int64)
    if n_lines:
        starts[0] = 0
        starts[1:] = nl[: n_lines - 1] + 1
        ends[: len(nl)] = nl
        if trailing:
            ends[-1] = len(arr)
    blank = ends == starts
    maybe = np.flatnonzero(~blank)
    if len(maybe):
        first = arr[starts[maybe]]
        for i in maybe[(first == 32) | (first == 9) | (first == 13)]:
            if not bytes(block[starts[i]:ends[i]]).strip(_WS):
                blank[i] = True
    return np.flatnonzero(~blank), starts, ends


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


def _describe_type(t: pa.DataType) -> str:
    import pyarrow as pa

    if pa.types.is_boolean(t):
        return "a boolean"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "a number"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return "a list"
    if pa.types.is_struct(t) or pa.types.is_map(t):
        return "an object"
    return f"of type {t}"


def _is_text(t: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _as_string(arr: pa.Array) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    return arr if arr.type == pa.string() else pc.cast(arr, pa.string())


def _mask(arr: pa.Array) -> np.ndarray:
    """A boolean pyarrow array (nulls count as false) as a numpy bool array."""
    import numpy as np
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _null_where(text: pa.Array, mask: np.ndarray) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not mask.any():
        return text
    return pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), text)


def json_string_array(arr: pa.Array, present: frozenset[str] | None = None, quoted: bool = True) -> pa.Array:
    """Each string as ``json.dumps(s, ensure_ascii=False)`` writes it (quotes included unless
    ``quoted`` is false: callers that join more text around it add them in the same pass).

    ``present``: the characters needing an escape that may occur at all (``_escapes_in`` finds
    them in raw JSON text); None: any may. Each escape is one pass over the text, so knowing that
    most cannot occur saves most of the work."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    out = _as_string(arr)
    for old, new, _ in _JSON_ESCAPES:
        if present is None or old in present:
            out = pc.replace_substring(out, old, new)
    odd = (_mask(pc.match_substring_regex(out, _OTHER_CONTROL)) if present is None or "\x00" in present
           else np.zeros(0, dtype=bool))
    if odd.any():  # rare: control characters json.dumps writes as \u00XX, fixed in Python
        idx = np.flatnonzero(odd)
        fixed = [_OTHER_CONTROL_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", s)
                 for s in pc.take(out, pa.array(idx)).to_pylist()]
        out = pc.replace_with_mask(out, pa.array(odd), pa.array(fixed, pa.string()))
    return pc.binary_join_element_wise('"', out, '"', "") if quoted else out


def _escapes_in(raw: bytearray, end: int, scratch: np.ndarray) -> frozenset[str]:
    """The characters json.dumps escapes that strings parsed from this raw JSON text can hold: a
    JSON string holds a quote, a backslash or a control character only through an escape (a
    backslash-u escape stands for any of them; NUL in the result stands for the rare ones
    json.dumps writes as backslash-u-00XX). A superset is fine: it only costs a pass."""
    import numpy as np

    arr = np.frombuffer(raw, dtype=np.uint8, count=end)
    is_backslash = scratch[:end]
    np.equal(arr, 92, out=is_backslash)
    at = np.flatnonzero(is_backslash)
    after = set(np.unique(arr[at[at + 1 < end] + 1]).tolist())
    if ord("u") in after:
        return frozenset([c for c, _, _ in _JSON_ESCAPES] + ["\x00"])
    return frozenset(c for c, _, esc in _JSON_ESCAPES if esc[1] in after)


def _join_lists(offsets: np.ndarray, values: pa.Array, sep: str) -> pa.Array:
    """One string per row: ``values[offsets[i]:offsets[i+1]]`` joined by sep."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)
    return pc.binary_join(lists, sep)


def _list_parts(arr: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Offsets (rebased to 0, one more than rows) and the flat child values of a list array."""
    import numpy as np

    offs = np.asarray(arr.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    flat = arr.values.slice(int(offs[0]), int(offs[-1] - offs[0])) if len(offs) else arr.values.slice(0, 0)
    return offs - offs[0], flat


def _float_texts(values: list[float]) -> list[str]:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(pa.array(values, pa.float64()), pa.string()).to_pylist()


# ---------------------------------------------------------------------------------------------
# the reader


class _Reader:
    def __init__(self, path: Path, name: str, fields: dict[str, str], domain: str,
                 row_schema: dict | None) -> None:
        import pyarrow as pa

        self.path, self.where, self.domain = path, str(path), domain
        self.required = REQUIRED[domain]
        used = ("messages",) if domain == "chat" else REQUIRED[domain]
        self.used: tuple[str, ...] = (*used, "difficulty", "id")
        self.fields = {c: (fields.get(c) or c) for c in FIELD_COLUMNS}
        self.escapes: frozenset[str] | None = None  # JSON escapes in the current block (None: any)
        self.dirty = False  # the last block of JSON lines had lines pyarrow refused
        self.pool: ThreadPoolExecutor | None = None  # parses runs of lines side by side
        self.split = SplitTable(name=name, path=path, table=_schema().empty_table(), rows_seen=0)
        self.batches: list[pa.RecordBatch] = []
        self.validator: Any = None
        if row_schema is not None:
            import jsonschema

            cls = jsonschema.validators.validator_for(row_schema)
            try:
                cls.check_schema(row_schema)
            except jsonschema.exceptions.SchemaError as exc:
                raise DataFileError("row_schema", f"is not a valid JSON Schema: {exc.message}",
                                    "fix the schema file named by data.row_schema") from exc
            self.validator = cls(row_schema)
        # explicit pyarrow types per field name in the file; answer/difficulty/id/tests adapt to
        # what the file holds (a number column, a list of tests) as blocks are read
        self.json_types: dict[str, pa.DataType] = {}
        for c in self.used:
            self.json_types.setdefault(self.fields[c], _message_type() if c == "messages" else pa.string())

    # -- problems ----------------------------------------------------------------------------

    def report(self, kind: str, lines: np.ndarray, rows: np.ndarray | list[int],
               detail: str | Callable[[int], str]) -> None:
        n = len(rows)
        if not n:
            return
        problem = self.split.problem(kind)
        room = max(0, min(n, MAX_EXAMPLES - len(problem.examples)))
        for r in rows[:room]:
            problem.add(f"{self.where}:{int(lines[r])}", detail if isinstance(detail, str) else detail(int(r)))
        problem.count += n - room

    def report_one(self, kind: str, line: int, detail: str) -> None:
        self.split.problem(kind).add(f"{self.where}:{line}", detail)

    # -- entry -------------------------------------------------------------------------------

    def read(self) -> SplitTable:
        kind = _kind_of(self.path)
        if kind == "hf":
            self.read_hf()
        else:
            try:
                with self.path.open("rb") as fh:
                    head = fh.read(4096)
            except OSError as exc:
                raise DataFileError(self.where, f"cannot be read ({exc.strerror or exc})") from exc
            if head.startswith(LFS_POINTER_PREFIX):
                raise DataFileError(self.where, "is a Git LFS pointer, not the data",
                                    "run `git lfs pull` to fetch the file")
            if not head:
                return self.finish()  # empty: zero rows, the split-presence check reports it
            if kind == "sniff":
                kind = _sniff(self.path, head)
            if kind in ("jsonl", "jsonl.gz"):
                self.read_jsonl(kind == "jsonl.gz")
            elif kind == "parquet":
                self.read_parquet()
            else:
                self.read_arrow_file()
        return self.finish()

    def finish(self) -> SplitTable:
        import pyarrow as pa

        if self.batches:
            self.split.table = pa.Table.from_batches(self.batches, schema=_schema())
        return self.split

    # -- JSON Lines --------------------------------------------------------------------------

    def read_jsonl(self, gz: bool) -> None:
        base = 0  # lines before the current block
        first = True
        try:
            size = self.path.stat().st_size * (8 if gz else 1) + 1  # a first guess; blocks adapt
            with (gzip.open(self.path, "rb") if gz else self.path.open("rb")) as fh, \
                    _Blocks(fh, size, escapes=self.domain != "math") as blocks:
                for block, keep, starts, ends, escapes in blocks:
                    self.escapes = escapes
                    if first:
                        first = False
                        if _json_array_start(bytes(block[:1 << 20])):
                            raise DataFileError(
                                self.where, "holds a JSON array, not JSON Lines (one object per line)",
                                "rewrite it with one JSON object per line, e.g. jq -c '.[]' in > out.jsonl")
                    if len(keep):
                        self.split.rows_seen += len(keep)
                        self.lines(block, keep, starts, ends, keep + (base + 1))
                    base += len(starts)
        except (OSError, EOFError, zlib.error) as exc:
            if not gz:
                raise DataFileError(self.where, f"cannot be read ({exc})") from exc
            raise DataFileError(self.where, f"cannot be decompressed ({exc})",
                                "the gzip file is corrupt or truncated; fetch or write it again") from exc
        finally:
            if self.pool is not None:
                self.pool.shutdown()
                self.pool = None

    def lines(self, block: memoryview, keep: np.ndarray, starts: np.ndarray, ends: np.ndarray,
              lines: np.ndarray) -> None:
        """Read a block's non-blank lines ``keep`` (numbered ``lines``): with pyarrow if it takes
        them all, else in smaller runs, and runs of a few hundred lines that still fail line by
        line. So a few bad lines cost little more than they do alone. Once a whole block has
        failed, the next blocks start out in runs (a file with one bad line often has more), until
        a block reads clean again."""
        import numpy as np

        if not _FAST_JSON or self.validator is not None:
            self.slow_lines(block, keep, starts, ends, lines)
            return
        whole = np.arange(len(keep))
        runs = np.array_split(whole, SPLIT_WAYS) if self.dirty and len(keep) > SLOW_RUN_LINES else [whole]
        self.dirty = not self.runs(block, keep, starts, ends, lines, runs)

    def runs(self, block: memoryview, keep: np.ndarray, starts: np.ndarray, ends: np.ndarray,
             lines: np.ndarray, runs: list[np.ndarray]) -> bool:
        """Parse consecutive runs of lines (several at once), then take them in order: a run
        pyarrow read is projected, a failed one split again or read line by line. Returns whether
        every run was read by pyarrow."""
        import numpy as np

        def parse(run: np.ndarray) -> pa.Table | None:
            first, last = keep[run[0]], keep[run[-1]]
            part = block[int(starts[first]):int(ends[last])]
            table = self.parse_block(part, int((ends[keep[run]] - starts[keep[run]]).max()))
            ok = table is not None and table.num_rows == len(run) and _utf8(part)
            return table if ok else None

        if len(runs) > 1:
            if self.pool is None:
                # here, not at the top: concurrent.futures brings logging, which `preflight check` need not load
                from concurrent.futures import ThreadPoolExecutor

                self.pool = ThreadPoolExecutor(max_workers=_CPUS, thread_name_prefix="jsonl-parse")
            tables = list(self.pool.map(parse, runs))
        else:
            tables = [parse(runs[0])]
        clean = True
        for run, table in zip(runs, tables, strict=True):
            if table is not None:
                at = 0
                for batch in table.to_batches():
                    n = batch.num_rows
                    self.project({c: batch.column(self.fields[c]) for c in self.used}, lines[run[at:at + n]])
                    at += n
                continue
            clean = False
            if len(run) <= SLOW_RUN_LINES:
                self.slow_lines(block, keep[run], starts, ends, lines[run])
            else:
                self.runs(block, keep, starts, ends, lines, np.array_split(run, SPLIT_WAYS))
        return clean

    def parse_block(self, block: memoryview, longest: int) -> pa.Table | None:
        """pyarrow's parse of a block against the current explicit schema, adapting the types of
        answer/difficulty/id (number, boolean) and tests (list) to the file; None if it fails."""
        import pyarrow as pa
        import pyarrow.json as pj

        # sub-blocks let pyarrow parse in parallel; each must hold the longest line whole
        block_size = max(1 << 20, 2 * longest + 16, len(block) // (4 * _CPUS) + 1)
        block_size = min(block_size, max(len(block) + 1, 1 << 20))
        ropts = pj.ReadOptions(block_size=block_size, use_threads=True)
        tried: set[tuple[str, str]] = set()
        for _ in range(6):
            schema = pa.schema([pa.field(k, t) for k, t in self.json_types.items()])
            popts = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
            try:
                return pj.read_json(pa.BufferReader(pa.py_buffer(block)), read_options=ropts,
                                    parse_options=popts)
            except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                change = self.adapt(str(exc))
                if change is None or change in tried:
                    return None
                tried.add(change)
                self.json_types[change[0]] = _types()[change[1]]
            except pa.ArrowException:
                return None
        return None

    def adapt(self, message: str) -> tuple[str, str] | None:
        """The (field, type name) to try after a pyarrow type error, if the field may change."""
        import pyarrow as pa

        columns = {self.fields[c]: c for c in self.used}
        if "Failed to convert JSON to int64" in message:
            ints = [k for k, t in self.json_types.items() if t == pa.int64()]
            return (ints[0], "double") if ints else None
        m = _CHANGED.search(message)
        if not m or m.group(1) not in columns:
            return None
        canon, found = columns[m.group(1)], m.group(3)
        if canon in SCALAR_TEXT and found in ("number", "boolean", "string"):
            return m.group(1), {"number": "int64", "boolean": "bool", "string": "string"}[found]
        if canon == "tests" and found in ("array", "string"):
            return m.group(1), {"array": "list", "string": "string"}[found]
        return None

    def slow_lines(self, block: memoryview, keep: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                   lines: np.ndarray) -> None:
        """Line by line: decode, parse and check each line on its own."""
        import numpy as np

        objs: list[dict] = []
        good: list[int] = []
        unterminated = len(block) > 0 and block[-1] != 10  # only a file's last line can be
        for j, i in enumerate(keep):
            raw = bytes(block[starts[i]:ends[i]])
            line = int(lines[j])
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.report_one("undecodable", line, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                cut = unterminated and int(ends[i]) == len(block)
                self.report_one("bad-json", line, f"{exc.msg} at column {exc.colno}"
                                + (" (the last line has no newline: truncated?)" if cut else ""))
                continue
            except (ValueError, RecursionError) as exc:  # an integer of > 4300 digits, deep nesting
                self.report_one("bad-json", line, f"cannot be parsed ({str(exc)[:100]})")
                continue
            if not isinstance(obj, dict):
                self.report_one("bad-json", line, f"not a JSON object ({describe_value(obj)})")
                continue
            if "\\u" in text:
                try:  # a lone surrogate escape parses in Python but is no text (pyarrow rejects it)
                    json.dumps(obj, ensure_ascii=False).encode("utf-8")
                except UnicodeEncodeError:
                    self.report_one("bad-json", line, "a \\u escape is a lone surrogate, not a character")
                    continue
            if self.validator is not None:
                self.check_schema(obj, line)
            objs.append(obj)
            good.append(j)
        if objs:
            self.project_py(objs, lines[np.asarray(good, dtype=np.int64)])

    def check_schema(self, obj: Any, line: int) -> None:
        import jsonschema

        error = jsonschema.exceptions.best_match(self.validator.iter_errors(obj))
        if error is not None:
            self.report_one("schema", line, error.message[:300])

    # -- Parquet and Arrow -------------------------------------------------------------------

    def read_parquet(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        hint = "the file is not Parquet or is damaged (truncated?); write or fetch it again"
        try:
            pf = pq.ParquetFile(str(self.path))
            names = pf.schema_arrow.names
            columns = None if self.validator is not None else sorted(
                {self.fields[c] for c in self.used if self.fields[c] in names})
            for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
                self.arrow_batch(batch)
        except (pa.ArrowException, OSError) as exc:
            raise DataFileError(self.where, f"is not a readable Parquet file ({exc})", hint) from exc

    def read_arrow_file(self) -> None:
        import pyarrow as pa

        try:
            source = pa.memory_map(str(self.path))
            try:
                reader: Any = pa.ipc.open_file(source)
                batches: Iterator[pa.RecordBatch] = (reader.get_batch(i) for i in range(reader.num_record_batches))
            except pa.ArrowInvalid:
                source.seek(0)
                batches = iter(pa.ipc.open_stream(source))
            for batch in batches:
                self.arrow_batch(batch)
        except (pa.ArrowException, OSError) as exc:
            raise DataFileError(self.where, f"is not a readable Arrow IPC file ({exc})",
                                "the file is damaged or not Arrow; write it again") from exc

    def read_hf(self) -> None:
        import pyarrow as pa

        state_file = self.path / "state.json"
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
            files = [self.path / f["filename"] for f in state["_data_files"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataFileError(self.where, f"has a state.json that does not list the data files ({exc})",
                                "write the folder again with Dataset.save_to_disk") from exc
        for f in files:
            if not f.is_file():
                raise DataFileError(self.where, f"lists {f.name} in state.json but the file is missing",
                                    "copy the whole save_to_disk folder")
            with f.open("rb") as fh:
                if fh.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX:
                    raise DataFileError(str(f), "is a Git LFS pointer, not the data",
                                        "run `git lfs pull` to fetch the file")
            try:
                for batch in pa.ipc.open_stream(pa.memory_map(str(f))):
                    self.arrow_batch(batch)
            except (pa.ArrowException, OSError) as exc:
                raise DataFileError(str(f), f"is not a readable Arrow stream ({exc})",
                                    "write the folder again with Dataset.save_to_disk") from exc

    def arrow_batch(self, batch: pa.RecordBatch) -> None:
        import numpy as np

        n = batch.num_rows
        if not n:
            return
        first = self.split.rows_seen + 1
        self.split.rows_seen += n
        lines = np.arange(first, first + n, dtype=np.int64)
        if self.validator is not None:
            # a column table cannot tell an absent key from a null: a null counts as absent
            for i, row in enumerate(batch.to_pylist()):
                self.check_schema({k: v for k, v in row.items() if v is not None}, first + i)
        names = batch.schema.names
        cols: dict[str, pa.Array | None] = {}
        for c in self.used:
            f = self.fields[c]
            cols[c] = batch.column(names.index(f)) if f in names else None
        self.project(cols, lines)

    # -- projection: Arrow columns -----------------------------------------------------------

    def project(self, cols: dict[str, pa.Array | None], lines: np.ndarray) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(lines)
        out: dict[str, pa.Array] = {}
        bad: dict[str, np.ndarray] = {}
        for c in self.used:
            arr = cols.get(c)
            if arr is not None and pa.types.is_dictionary(arr.type):
                arr = arr.dictionary_decode()
            if arr is None or pa.types.is_null(arr.type):
                out[c], bad[c] = pa.nulls(n, pa.string()), np.zeros(n, dtype=bool)
            elif c == "messages":
                out["messages"], out["prompt"], bad[c] = self.arrow_messages(arr, lines)
                bad["prompt"] = bad[c] | _mask(pc.is_null(out["messages"]))
            elif c == "tests" and not _is_text(arr.type):
                out[c], bad[c] = self.arrow_tests(arr, lines)
            else:
                out[c], bad[c] = self.arrow_scalar(c, arr, lines)
        self.emit(out, bad, lines)

    def arrow_scalar(self, c: str, arr: pa.Array, lines: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        t = arr.type
        if _is_text(t):
            return _as_string(arr), np.zeros(len(arr), dtype=bool)
        numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
        if c in SCALAR_TEXT and (numeric or pa.types.is_boolean(t)):
            if t == pa.float16():
                arr = pc.cast(arr, pa.float64())
            return pc.cast(arr, pa.string()), np.zeros(len(arr), dtype=bool)
        if pa.types.is_nested(t) or numeric or pa.types.is_boolean(t):
            wrong = _mask(pc.is_valid(arr))
            self.report(f"wrong-type:{c}", lines, np.flatnonzero(wrong), f"{c} is {_describe_type(t)}")
            return pa.nulls(len(arr), pa.string()), wrong
        # anything else (binary, dates, ...): decide value by value in Python
        return self.py_scalar(c, arr.to_pylist(), lines)

    def arrow_tests(self, arr: pa.Array, lines: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        t = arr.type
        n = len(arr)
        if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
            return self.arrow_scalar("tests", arr, lines)
        if pa.types.is_fixed_size_list(t):
            arr = pc.cast(arr, pa.list_(t.value_type))
        valid = _mask(pc.is_valid(arr))
        offs, flat = _list_parts(arr)
        sizes = np.diff(offs)
        empty = valid & (sizes == 0)
        if _is_text(flat.type):
            flat = _as_string(flat)
            parents = np.repeat(np.arange(n), sizes)
            nulls = np.asarray(_mask(pc.is_null(flat)), dtype=bool)
            wrong = valid & (np.bincount(parents[nulls], minlength=n) > 0)
        else:
            wrong = valid & ~empty
        self.report("wrong-type:tests", lines, np.flatnonzero(wrong),
                    f"tests is a list holding {_describe_type(flat.type)}" if not _is_text(flat.type)
                    else "tests is a list holding null")
        self.report("empty:tests", lines, np.flatnonzero(empty & ~wrong), "tests is an empty list")
        bad = wrong | empty
        if _is_text(flat.type) and len(flat):
            # rows with an empty list are null in the end, so '["' + joined + '"]' is right
            text = _join_lists(offs, json_string_array(pc.fill_null(flat, ""), self.escapes, False), '", "')
            text = pc.binary_join_element_wise('["', text, '"]', "")
        else:
            text = pa.nulls(n, pa.string())
        return _null_where(text, bad | ~valid), bad

    def arrow_messages(self, arr: pa.Array, lines: np.ndarray) -> tuple[pa.Array, pa.Array, np.ndarray]:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        t = arr.type
        n = len(arr)
        usable = (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_struct(t.value_type)
        if usable:
            names = [t.value_type.field(i).name for i in range(t.value_type.num_fields)]
            usable = all(k in names and _is_text(t.value_type.field(k).type) for k in ("role", "content"))
        if not usable:
            if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_struct(t) or _is_text(t):
                return self.py_messages(arr.to_pylist(), lines)
            wrong = _mask(pc.is_valid(arr))
            self.report("wrong-type:messages", lines, np.flatnonzero(wrong), f"messages is {_describe_type(t)}")
            return pa.nulls(n, pa.string()), pa.nulls(n, pa.string()), wrong
        valid = _mask(pc.is_valid(arr))
        offs, flat = _list_parts(arr)
        sizes = np.diff(offs)
        parents = np.repeat(np.arange(n), sizes)
        role = _as_string(pc.struct_field(flat, "role"))
        content = _as_string(pc.struct_field(flat, "content"))
        elem_bad = _mask(pc.is_null(flat)) | _mask(pc.is_null(role)) | _mask(pc.is_null(content))
        wrong = valid & (np.bincount(parents[elem_bad], minlength=n) > 0)
        empty = valid & (sizes == 0)
        role_bad = ~_mask(pc.is_in(role, value_set=pa.array(ROLES))) & ~elem_bad
        bad_role = valid & ~wrong & (np.bincount(parents[role_bad], minlength=n) > 0)

        def role_detail(r: int) -> str:
            for m in arr[r].as_py():
                if m["role"] not in ROLES:
                    return _role_message(m["role"])
            return "a message has a role outside " + ", ".join(ROLES)

        self.report("wrong-type:messages", lines, np.flatnonzero(wrong),
                    "messages is not a list of {role, content} objects with string values")
        self.report("empty:messages", lines, np.flatnonzero(empty), "messages is an empty list")
        self.report("bad-role", lines, np.flatnonzero(bad_role), role_detail)
        bad = wrong | empty | bad_role
        is_user = _mask(pc.equal(role, "user")) & ~elem_bad
        user_counts = np.bincount(parents[is_user], minlength=n)
        user_offs = np.concatenate(([0], np.cumsum(user_counts)))
        prompt = _join_lists(user_offs, content.filter(pa.array(is_user)), "\n")
        safe_role, safe_content = pc.fill_null(role, ""), pc.fill_null(content, "")
        elems = pc.binary_join_element_wise('{"role": "', json_string_array(safe_role, self.escapes, False),
                                            '", "content": "', json_string_array(safe_content, self.escapes, False),
                                            '"}', "")
        messages = pc.binary_join_element_wise("[", _join_lists(offs, elems, ", "), "]", "")
        drop = bad | ~valid
        return _null_where(messages, drop), _null_where(prompt, drop), bad

    # -- projection: Python values (the line-by-line path, odd Arrow types) ------------------

    def project_py(self, objs: list[dict], lines: np.ndarray) -> None:
        import pyarrow.compute as pc

        out: dict[str, pa.Array] = {}
        bad: dict[str, np.ndarray] = {}
        for c in self.used:
            values = [o.get(self.fields[c]) for o in objs]
            if c == "messages":
                out["messages"], out["prompt"], bad[c] = self.py_messages(values, lines)
                bad["prompt"] = bad[c] | _mask(pc.is_null(out["messages"]))
            else:
                out[c], bad[c] = self.py_scalar(c, values, lines)
        self.emit(out, bad, lines)

    def py_scalar(self, c: str, values: list[Any], lines: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        import numpy as np
        import pyarrow as pa

        texts: list[str | None] = [None] * len(values)
        bad = np.zeros(len(values), dtype=bool)
        floats: list[int] = []
        wrong: list[tuple[int, str]] = []
        empty: list[int] = []
        for i, v in enumerate(values):
            if v is None or isinstance(v, str):
                texts[i] = v
            elif c in SCALAR_TEXT and isinstance(v, bool):
                texts[i] = "true" if v else "false"
            elif c in SCALAR_TEXT and isinstance(v, int) and _INT64[0] <= v <= _INT64[1]:
                texts[i] = str(v)
            elif c in SCALAR_TEXT and isinstance(v, int | float):
                floats.append(i)
            elif c == "tests" and isinstance(v, list) and all(isinstance(x, str) for x in v):
                if v:
                    texts[i] = json.dumps(v, ensure_ascii=False)
                else:
                    empty.append(i)
            else:
                held = next((x for x in v if not isinstance(x, str)), None) if isinstance(v, list) else None
                what = f"a list holding {describe_value(held)}" if c == "tests" and isinstance(v, list) else describe_value(v)
                wrong.append((i, f"{c} is {what}"))
        if floats:
            big = [i for i in floats if isinstance(values[i], int) and not -1e308 < values[i] < 1e308]
            for i in big:  # no double holds it (pyarrow refused it too): its digits
                texts[i] = str(values[i])
            rest = [i for i in floats if i not in set(big)] if big else floats
            for i, s in zip(rest, _float_texts([float(values[i]) for i in rest]), strict=True):
                texts[i] = s
        for i, _ in wrong:
            bad[i] = True
        for i in empty:
            bad[i] = True
        self.report(f"wrong-type:{c}", lines, [i for i, _ in wrong], dict(wrong).__getitem__)
        self.report(f"empty:{c}", lines, empty, f"{c} is an empty list")
        return pa.array(texts, pa.string()), bad

    def py_messages(self, values: list[Any], lines: np.ndarray) -> tuple[pa.Array, pa.Array, np.ndarray]:
        import numpy as np
        import pyarrow as pa

        n = len(values)
        msgs: list[str | None] = [None] * n
        prompts: list[str | None] = [None] * n
        bad = np.zeros(n, dtype=bool)
        found: dict[str, list[tuple[int, str]]] = {"wrong-type:messages": [], "empty:messages": [], "bad-role": []}
        for i, v in enumerate(values):
            if v is None:
                continue
            kind, detail = message_problem(v)
            if kind:
                found[kind].append((i, detail))
                bad[i] = True
                continue
            msgs[i] = json.dumps([{"role": m["role"], "content": m["content"]} for m in v], ensure_ascii=False)
            prompts[i] = "\n".join(m["content"] for m in v if m["role"] == "user")
        for kind, items in found.items():
            self.report(kind, lines, [i for i, _ in items], dict(items).__getitem__)
        return pa.array(msgs, pa.string()), pa.array(prompts, pa.string()), bad

    # -- shared: missing and empty checks, then the batch ------------------------------------

    def emit(self, out: dict[str, pa.Array], bad: dict[str, np.ndarray], lines: np.ndarray) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(lines)
        checks = list(self.required) + (["prompt"] if self.domain == "chat" else [])
        for c in checks:
            text = out[c]
            if c != "prompt" or self.domain != "chat":
                missing = _mask(pc.is_null(text)) & ~bad[c]
                self.report(f"missing:{c}", lines, np.flatnonzero(missing),
                            f"no {c} (field {self.fields[c]!r} absent or null)")
            blank = _mask(pc.or_(pc.equal(pc.binary_length(text), 0), pc.utf8_is_space(text))) & ~bad[c]
            if blank.any():
                what = "the user turns have no text" if c == "prompt" and self.domain == "chat" else f"{c} is empty"
                self.report(f"empty:{c}", lines, np.flatnonzero(blank), what)
                out[c] = _null_where(text, blank)
        arrays = [pa.array(lines, pa.int64())]
        for c in CANONICAL_COLUMNS[1:]:
            arrays.append(out[c] if c in out else pa.nulls(n, pa.string()))
        self.batches.append(pa.RecordBatch.from_arrays(arrays, schema=_schema()))


def _utf8(block: memoryview) -> bool:
    """Whether the block is valid UTF-8 (pyarrow does not look inside fields it skips)."""
    import numpy as np

    if int(np.frombuffer(block, dtype=np.uint8).max(initial=0)) < 128:
        return True
    try:
        str(block, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _json_array_start(head: bytes) -> bool:
    """Whether a file starts like a JSON array written over many lines: "[" alone on its first
    line, or "[{...}," (a one-line array is left to the line checks: "not a JSON object")."""
    first = head.lstrip().split(b"\n", 1)[0].strip()
    return first.startswith(b"[") and (first == b"[" or first.endswith(b","))


def _role_message(role: Any) -> str:
    return f"role {role!r} is not one of {', '.join(ROLES)}"


def message_problem(v: Any) -> tuple[str, str]:
    """('', '') for a good message list, else (problem kind, detail)."""
    if not isinstance(v, list):
        return "wrong-type:messages", f"messages is {describe_value(v)}"
    if not v:
        return "empty:messages", "messages is an empty list"
    for k, m in enumerate(v):
        if not isinstance(m, dict):
            return "wrong-type:messages", f"messages[{k}] is {describe_value(m)}, not an object"
        for key in ("role", "content"):
            if not isinstance(m.get(key), str):
                return "wrong-type:messages", f"messages[{k}].{key} is {describe_value(m.get(key))}"
    for m in v:
        if m["role"] not in ROLES:
            return "bad-role", _role_message(m["role"])
    return "", ""
