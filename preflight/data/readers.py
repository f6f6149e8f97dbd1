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

Formats and fields: each file's field paths come from its format (``data_format``: plain, verl,
trl, openrlhf, or auto: detected from the first rows of JSON Lines, up to 200 in the first MB, or
from the schema of Parquet and Arrow; see ``formats``), overridden by ``fields``; the result is
``SplitTable.layout``. A dotted path reaches into nested objects (in JSON Lines as nested structs
of the explicit schema, in Parquet by reading just that leaf). A prompt or answer field may hold a
string or a list of chat messages: the prompt is then the user turns' contents and the answer
every non-system turn's, joined by "\\n"; ``conversation`` holds every non-system turn of a
prompt (or chat-domain messages) that has turns besides the user's, else null; the layout counts
the chat prompts, those with a system turn and those with several non-system turns.

Only the fields the domain uses are read: math: prompt, answer; code: prompt, tests; chat:
messages; plus difficulty and id in every domain. The other canonical columns are null.

Problem kinds: ``undecodable``, ``bad-json``, ``missing:<col>``, ``wrong-type:<col>``,
``empty:<col>`` (also ``empty:prompt`` for a chat row without user text, and ``empty:tests`` /
``empty:messages`` / ``empty:prompt`` for an empty list), ``bad-role`` and, with a row schema,
``schema``. A field path through something that is not an object is ``wrong-type:<col>``. A wrong type
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
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .formats import (
    AUTO,
    COLUMNS,
    FORMATS,
    Layout,
    describe_value,
    is_chat,
    resolve,
    split_path,
    value_at,
)
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
CHAT_TEXT = ("prompt", "answer")  # columns whose field may hold chat messages instead of a string
SAMPLE_BYTES = 1 << 20  # the head of a JSON Lines file read to detect its format
SAMPLE_ROWS = 200
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
_CHANGED = re.compile(r"Column\(/([^)]*)\) changed from (\w+) to (\w+)")
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
            "list": pa.list_(pa.string()), "chat": _message_type()}


def read_split(path: Path | str, name: str, fields: dict[str, str], domain: str,
               row_schema: dict | None = None, data_format: str = AUTO) -> SplitTable:
    """Read one split into canonical columns.

    ``fields`` maps canonical names (prompt, answer, tests, messages, difficulty, id) to field
    paths in the file, dotted for nested objects (``reward_model.ground_truth``); a column it
    leaves out takes the path of ``data_format``'s preset (plain | verl | trl | openrlhf, or auto:
    detected from the first rows; see ``formats``), which ``SplitTable.layout`` records.
    ``domain`` (math | code | chat) decides the required fields. Raises ``DataFileError`` for a
    file that cannot be read as a dataset at all (missing, a directory that is no dataset, an LFS
    pointer, an unknown format, corrupt Parquet/Arrow/gzip).
    """
    if domain not in REQUIRED:
        raise ValueError(f"unknown domain {domain!r}: expected one of {', '.join(REQUIRED)}")
    if data_format != AUTO and data_format not in FORMATS:
        raise ValueError(f"unknown data format {data_format!r}: expected {AUTO} or one of {', '.join(FORMATS)}")
    reader = _Reader(Path(path), name, fields, domain, row_schema, data_format)
    return reader.read()


@dataclass
class Peek:
    """A quick look at a split file: the format it will be read as, and the required fields that
    none of its first rows (or its schema) has."""

    layout: Layout
    absent: dict[str, str]  # canonical column -> where it was looked for
    rows: int  # sample rows looked at (1 for a schema)


def peek(path: Path | str, fields: dict[str, str], domain: str, data_format: str = AUTO) -> Peek:
    """The format and the missing required fields of a file from its first rows (JSON Lines) or
    its schema (Parquet, Arrow, a save_to_disk folder), without reading it all; raises
    ``DataFileError`` like ``read_split``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    reader = _Reader(path, path.name, fields, domain, None, data_format)
    kind = _kind_of(path)
    if kind == "sniff":
        with path.open("rb") as fh:
            kind = _sniff(path, fh.read(4096))
    try:
        if kind in ("jsonl", "jsonl.gz"):
            rows, where = reader.sample_jsonl(kind == "jsonl.gz"), "the first rows"
        elif kind == "parquet":
            rows, where = _schema_rows(pq.read_schema(str(path))), "the Parquet schema"
        else:
            files = hf_files(path) if kind == "hf" else [path]
            rows, where = _schema_rows(_arrow_schema(files[0])) if files else [], "the Arrow schema"
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(str(path), f"cannot be read ({exc})") from exc
    reader.setup(rows)
    need = ("messages",) if domain == "chat" else REQUIRED[domain]
    absent = {c: f"no field {reader.fields[c]!r} in {where}" for c in need
              if rows and not any(value_at(r, reader.fields[c])[0] is not None for r in rows)}
    return Peek(reader.layout, absent, len(rows))


def hf_files(folder: Path) -> list[Path]:
    """The Arrow files a save_to_disk folder's state.json lists, each checked to exist."""
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        files = [folder / f["filename"] for f in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataFileError(str(folder), f"has a state.json that does not list the data files ({exc})",
                            "write the folder again with Dataset.save_to_disk") from exc
    for f in files:
        if not f.is_file():
            raise DataFileError(str(folder), f"lists {f.name} in state.json but the file is missing",
                                "copy the whole save_to_disk folder")
    return files


def arrow_file_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The record batches of an Arrow IPC file, in the file or the stream format."""
    import pyarrow as pa

    source = pa.memory_map(str(path))
    try:
        reader: Any = pa.ipc.open_file(source)
    except pa.ArrowInvalid:  # not the file format: the stream format
        source.seek(0)
        yield from pa.ipc.open_stream(source)
        return
    yield from (reader.get_batch(i) for i in range(reader.num_record_batches))


def original_batches(path: Path, kind: str) -> Iterator[pa.RecordBatch]:
    """Every column of a Parquet file, an Arrow file or a save_to_disk folder (``kind`` as
    ``split.file_kind`` says), batch by batch in the order the readers number the rows (``_line``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if kind == "parquet":
        yield from pq.ParquetFile(str(path)).iter_batches(batch_size=PARQUET_BATCH_ROWS)
    elif kind == "arrow":
        yield from arrow_file_batches(path)
    else:
        for f in hf_files(path):
            yield from pa.ipc.open_stream(pa.memory_map(str(f)))


def _arrow_schema(path: Path) -> pa.Schema:
    import pyarrow as pa

    source = pa.memory_map(str(path))
    try:
        return pa.ipc.open_file(source).schema
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_stream(source).schema


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
    if _is_text(t):
        return "a string"
    return f"of type {t}"


def _is_list(t: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


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


class _Chat(NamedTuple):
    """What a column of chat message lists becomes (each null where the row's list is bad)."""

    json: pa.Array | None  # the list as JSON text (messages only)
    user: pa.Array  # the user turns' contents joined by "\n"
    text: pa.Array  # every non-system turn's content joined by "\n"
    other: pa.Array  # ``text`` where the row has a turn that is neither system nor user, else null
    bad: np.ndarray  # rows with a problem (reported)


class _Reader:
    def __init__(self, path: Path, name: str, fields: dict[str, str], domain: str,
                 row_schema: dict | None, data_format: str) -> None:

        self.path, self.where, self.domain = path, str(path), domain
        self.required = REQUIRED[domain]
        used = ("messages",) if domain == "chat" else REQUIRED[domain]
        self.used: tuple[str, ...] = (*used, "difficulty", "id")
        self.requested, self.data_format = dict(fields), data_format
        self.fields = {c: (fields.get(c) or c) for c in COLUMNS}  # set for the file by setup()
        self.chat_prompt = False  # the current batch had prompts given as chat messages
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
        # explicit pyarrow types per field path in the file (set by setup()); answer/difficulty/
        # id/tests adapt to what the file holds (a number column, a list of tests) as blocks are read
        self.json_types: dict[str, pa.DataType] = {}

    def setup(self, rows: list[dict[str, Any]]) -> None:
        """Decide the file's format and field paths from its first rows (or its schema)."""
        import pyarrow as pa

        layout = resolve(self.data_format, self.requested, rows)
        self.split.layout = layout
        self.fields = {c: layout.field_of(c) for c in COLUMNS}
        for c in self.used:
            path = self.fields[c]
            chat = c == "messages" or (c in CHAT_TEXT and any(is_chat(value_at(r, path)[0]) for r in rows))
            self.json_types.setdefault(path, _message_type() if chat else pa.string())

    def sample_jsonl(self, gz: bool) -> list[dict[str, Any]]:
        """The first rows of a JSON Lines file that parse as objects (for format detection; the
        file's problems are found and reported by the full read)."""
        try:
            with (gzip.open(self.path, "rb") if gz else self.path.open("rb")) as fh:
                head = fh.read(SAMPLE_BYTES)
        except (OSError, EOFError, zlib.error):
            return []
        lines = head.removeprefix(_BOM).split(b"\n")
        if len(head) == SAMPLE_BYTES:
            lines = lines[:-1]  # cut mid-line
        rows: list[dict[str, Any]] = []
        for raw in lines:
            if len(rows) >= SAMPLE_ROWS:
                break
            with contextlib.suppress(ValueError, RecursionError):
                obj = json.loads(raw) if raw.strip() else None
                if isinstance(obj, dict):
                    rows.append(obj)
        return rows

    @property
    def layout(self) -> Layout:
        assert self.split.layout is not None, "setup() runs before any row is read"
        return self.split.layout

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
                self.setup([])
                return self.finish()  # empty: zero rows, the split-presence check reports it
            if kind == "sniff":
                kind = _sniff(self.path, head)
            if kind in ("jsonl", "jsonl.gz"):
                self.setup(self.sample_jsonl(kind == "jsonl.gz"))
                self.read_jsonl(kind == "jsonl.gz")
            elif kind == "parquet":
                self.read_parquet()
            else:
                self.read_arrow_file()
        return self.finish()

    def finish(self) -> SplitTable:
        import pyarrow as pa

        if self.split.layout is None:  # a columnar file without a batch
            self.setup([])
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
                    self.project({c: self.json_column(batch, c) for c in self.used}, lines[run[at:at + n]])
                    at += n
                continue
            clean = False
            if len(run) <= SLOW_RUN_LINES:
                self.slow_lines(block, keep[run], starts, ends, lines[run])
            else:
                self.runs(block, keep, starts, ends, lines, np.array_split(run, SPLIT_WAYS))
        return clean

    def json_column(self, batch: pa.RecordBatch, c: str) -> pa.Array | None:
        """A column's values in a batch parsed against the explicit schema (which has every path)."""
        parts = split_path(self.fields[c])
        return _walk(batch.column(parts[0]), parts)[0]

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
            schema = _nested_schema(self.json_types)
            if schema is None:
                return None
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
        path = m.group(1).replace("/", ".") if m else ""
        if path not in columns:
            return None
        canon, found = columns[path], m.group(3) if m else ""
        if canon in SCALAR_TEXT and found in ("number", "boolean", "string"):
            return path, {"number": "int64", "boolean": "bool", "string": "string"}[found]
        if canon == "tests" and found in ("array", "string"):
            return path, {"array": "list", "string": "string"}[found]
        if canon in CHAT_TEXT and found in ("array", "string"):
            return path, {"array": "chat", "string": "string"}[found]
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
            self.setup(_schema_rows(pf.schema_arrow))
            columns = None if self.validator is not None else _parquet_columns(
                pf.schema_arrow, [self.fields[c] for c in self.used])
            for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
                self.arrow_batch(batch)
        except (pa.ArrowException, OSError) as exc:
            raise DataFileError(self.where, f"is not a readable Parquet file ({exc})", hint) from exc

    def read_arrow_file(self) -> None:
        import pyarrow as pa

        try:
            for batch in arrow_file_batches(self.path):
                self.arrow_batch(batch)
        except (pa.ArrowException, OSError) as exc:
            raise DataFileError(self.where, f"is not a readable Arrow IPC file ({exc})",
                                "the file is damaged or not Arrow; write it again") from exc

    def read_hf(self) -> None:
        import pyarrow as pa

        for f in hf_files(self.path):
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

        if self.split.layout is None:
            self.setup(_schema_rows(batch.schema))
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
        wrong: dict[str, np.ndarray] = {}
        for c in self.used:
            parts = split_path(self.fields[c])
            cols[c], problem = _walk(batch.column(names.index(parts[0])), parts) if parts[0] in names else (None, None)
            if problem is not None:
                wrong[c], detail = problem
                self.report(f"wrong-type:{c}", lines, np.flatnonzero(wrong[c]), detail)
        self.project(cols, lines, wrong)

    # -- projection: Arrow columns -----------------------------------------------------------

    def project(self, cols: dict[str, pa.Array | None], lines: np.ndarray,
                wrong: dict[str, np.ndarray] | None = None) -> None:
        """Canonical columns from the batch's field values; ``wrong``: rows already reported as
        a wrong type for a column (a field path through something that is no object)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        n = len(lines)
        out: dict[str, pa.Array] = {}
        bad: dict[str, np.ndarray] = {}
        self.chat_prompt = False
        for c in self.used:
            arr = cols.get(c)
            if arr is not None and pa.types.is_dictionary(arr.type):
                arr = arr.dictionary_decode()
            if arr is None or pa.types.is_null(arr.type):
                out[c], bad[c] = pa.nulls(n, pa.string()), np.zeros(n, dtype=bool)
                if c == "messages":  # no messages column at all: no prompt either (reported as missing)
                    out["prompt"], bad["prompt"] = out[c], bad[c]
            elif c == "messages":
                chat = self.arrow_chat(c, arr, lines)
                out["messages"], out["prompt"], out["conversation"], bad[c] = chat.json, chat.user, chat.other, chat.bad
                bad["prompt"] = bad[c] | _mask(pc.is_null(out["messages"]))
            elif c in CHAT_TEXT and _is_list(arr.type):
                chat = self.arrow_chat(c, arr, lines)
                out[c], bad[c] = (chat.user, chat.bad) if c == "prompt" else (chat.text, chat.bad)
                if c == "prompt":
                    out["conversation"], self.chat_prompt = chat.other, True
            elif c == "tests" and not _is_text(arr.type):
                out[c], bad[c] = self.arrow_tests(arr, lines)
            else:
                out[c], bad[c] = self.arrow_scalar(c, arr, lines)
            if wrong and c in wrong:
                bad[c] = bad[c] | wrong[c]
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

    def arrow_chat(self, c: str, arr: pa.Array, lines: np.ndarray) -> _Chat:
        """A column of chat message lists (``messages``, or a prompt / answer given as messages):
        checked (each a non-empty list of {role, content} strings with a known role) and turned
        into texts; the JSON text of the whole list only for ``messages``."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        t = arr.type
        n = len(arr)
        usable = _is_list(t) and pa.types.is_struct(t.value_type)
        if usable:
            names = [t.value_type.field(i).name for i in range(t.value_type.num_fields)]
            usable = all(k in names and _is_text(t.value_type.field(k).type) for k in ("role", "content"))
        if not usable:
            if _is_list(t) or pa.types.is_struct(t) or _is_text(t):
                return self.py_chat(c, arr.to_pylist(), lines)
            wrong = _mask(pc.is_valid(arr))
            self.report(f"wrong-type:{c}", lines, np.flatnonzero(wrong), f"{c} is {_describe_type(t)}")
            nulls = pa.nulls(n, pa.string())
            return _Chat(nulls if c == "messages" else None, nulls, nulls, nulls, wrong)
        if pa.types.is_fixed_size_list(t):
            arr = pc.cast(arr, pa.list_(t.value_type))
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

        self.report(f"wrong-type:{c}", lines, np.flatnonzero(wrong),
                    f"{c} is not a list of {{role, content}} objects with string values")
        self.report(f"empty:{c}", lines, np.flatnonzero(empty), f"{c} is an empty list")
        self.report("bad-role", lines, np.flatnonzero(bad_role), role_detail)
        bad = wrong | empty | bad_role
        drop = bad | ~valid
        is_user = _mask(pc.equal(role, "user")) & ~elem_bad
        is_other = ~_mask(pc.equal(role, "system")) & ~elem_bad  # every turn but the system's
        user_counts = np.bincount(parents[is_user], minlength=n)
        other_counts = np.bincount(parents[is_other], minlength=n)
        if c != "answer":
            system = np.bincount(parents[_mask(pc.equal(role, "system")) & ~elem_bad], minlength=n) > 0
            ok = ~drop
            self.layout.chat.add(int(ok.sum()), int((ok & system).sum()), int((ok & (other_counts > 1)).sum()))
        user = _join_lists(np.concatenate(([0], np.cumsum(user_counts))), content.filter(pa.array(is_user)), "\n")
        text = _join_lists(np.concatenate(([0], np.cumsum(other_counts))), content.filter(pa.array(is_other)), "\n")
        other = _null_where(text, drop | (other_counts == user_counts))  # null: the user turns are the whole text
        messages = None
        if c == "messages":
            safe_role, safe_content = pc.fill_null(role, ""), pc.fill_null(content, "")
            elems = pc.binary_join_element_wise('{"role": "', json_string_array(safe_role, self.escapes, False),
                                                '", "content": "', json_string_array(safe_content, self.escapes, False),
                                                '"}', "")
            messages = _null_where(pc.binary_join_element_wise("[", _join_lists(offs, elems, ", "), "]", ""), drop)
        return _Chat(messages, _null_where(user, drop), _null_where(text, drop), other, bad)

    # -- projection: Python values (the line-by-line path, odd Arrow types) ------------------

    def project_py(self, objs: list[dict], lines: np.ndarray) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        out: dict[str, pa.Array] = {}
        bad: dict[str, np.ndarray] = {}
        self.chat_prompt = False
        for c in self.used:
            found = [value_at(o, self.fields[c]) for o in objs]
            values = [v for v, _ in found]
            unreachable = [(i, why) for i, (_, why) in enumerate(found) if why]
            self.report(f"wrong-type:{c}", lines, [i for i, _ in unreachable], dict(unreachable).__getitem__)
            if c == "messages":
                chat = self.py_chat(c, values, lines)
                out["messages"], out["prompt"], out["conversation"], bad[c] = chat.json, chat.user, chat.other, chat.bad
                bad["prompt"] = bad[c] | _mask(pc.is_null(out["messages"]))
            elif c in CHAT_TEXT and any(isinstance(v, list) for v in values):
                at = [i for i, v in enumerate(values) if isinstance(v, list)]
                texts, bad[c] = self.py_scalar(c, [None if isinstance(v, list) else v for v in values], lines)
                chat = self.py_chat(c, [values[i] for i in at], lines[np.asarray(at, dtype=np.int64)])
                merged = texts.to_pylist()
                for i, v in zip(at, (chat.user if c == "prompt" else chat.text).to_pylist(), strict=True):
                    merged[i] = v
                out[c] = pa.array(merged, pa.string())
                bad[c][at] = chat.bad
                if c == "prompt":
                    conversation: list[str | None] = [None] * len(values)
                    for i, v in zip(at, chat.other.to_pylist(), strict=True):
                        conversation[i] = v
                    out["conversation"], self.chat_prompt = pa.array(conversation, pa.string()), True
            else:
                out[c], bad[c] = self.py_scalar(c, values, lines)
            bad[c][[i for i, _ in unreachable]] = True
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

    def py_chat(self, c: str, values: list[Any], lines: np.ndarray) -> _Chat:
        """``arrow_chat`` for Python values (the line-by-line path, odd Arrow types)."""
        import numpy as np
        import pyarrow as pa

        n = len(values)
        msgs: list[str | None] = [None] * n
        users: list[str | None] = [None] * n
        texts: list[str | None] = [None] * n
        others: list[str | None] = [None] * n
        bad = np.zeros(n, dtype=bool)
        found: dict[str, list[tuple[int, str]]] = {f"wrong-type:{c}": [], f"empty:{c}": [], "bad-role": []}
        shape = [0, 0, 0]
        for i, v in enumerate(values):
            if v is None:
                continue
            kind, detail = message_problem(v, c)
            if kind:
                found[kind].append((i, detail))
                bad[i] = True
                continue
            if c == "messages":
                msgs[i] = json.dumps([{"role": m["role"], "content": m["content"]} for m in v], ensure_ascii=False)
            turns = [m for m in v if m["role"] != "system"]
            users[i] = "\n".join(m["content"] for m in turns if m["role"] == "user")
            texts[i] = "\n".join(m["content"] for m in turns)
            if any(m["role"] != "user" for m in turns):
                others[i] = texts[i]
            shape[0] += 1
            shape[1] += len(turns) < len(v)
            shape[2] += len(turns) > 1
        for kind, items in found.items():
            self.report(kind, lines, [i for i, _ in items], dict(items).__getitem__)
        if c != "answer":
            self.layout.chat.add(*shape)
        return _Chat(pa.array(msgs, pa.string()) if c == "messages" else None, pa.array(users, pa.string()),
                     pa.array(texts, pa.string()), pa.array(others, pa.string()), bad)

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
                what = f"{c} is empty"
                if c == "prompt" and self.domain == "chat":
                    what = "the user turns have no text"
                elif c == "prompt" and self.chat_prompt:
                    what = "prompt is empty, or its chat messages have no user turn with text"
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


def message_problem(v: Any, column: str = "messages") -> tuple[str, str]:
    """('', '') for a good message list, else (problem kind, detail); ``column`` names the
    canonical column the list was read for (messages, or a prompt / answer given as messages)."""
    if not isinstance(v, list):
        return f"wrong-type:{column}", f"{column} is {describe_value(v)}"
    if not v:
        return f"empty:{column}", f"{column} is an empty list"
    for k, m in enumerate(v):
        if not isinstance(m, dict):
            return f"wrong-type:{column}", f"{column}[{k}] is {describe_value(m)}, not an object"
        for key in ("role", "content"):
            if not isinstance(m.get(key), str):
                return f"wrong-type:{column}", f"{column}[{k}].{key} is {describe_value(m.get(key))}"
    for m in v:
        if m["role"] not in ROLES:
            return "bad-role", _role_message(m["role"])
    return "", ""


def _shape(t: pa.DataType) -> Any:
    """A Python value shaped like a value of Arrow type ``t`` (format detection looks at shapes)."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        return _shape(t.value_type)
    if pa.types.is_struct(t):
        return {t.field(i).name: _shape(t.field(i).type) for i in range(t.num_fields)}
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return [_shape(t.value_type)]
    return None if pa.types.is_null(t) else ""


def _schema_rows(schema: pa.Schema) -> list[dict[str, Any]]:
    """One sample row standing for a columnar file, from its schema."""
    return [{f.name: _shape(f.type) for f in schema}]


def _nested_schema(types: dict[str, pa.DataType]) -> pa.Schema | None:
    """The explicit JSON schema for field paths and their types: a dotted path becomes nested
    structs. None when one path is both a value and an object holding another (no schema can say
    both; such files are read line by line)."""
    import pyarrow as pa

    tree: dict[str, Any] = {}
    for path, t in types.items():
        parts = split_path(path)
        node = tree
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                return None
        if isinstance(node.get(parts[-1]), dict):
            return None
        node[parts[-1]] = t

    def build(node: dict[str, Any]) -> list[pa.Field]:
        return [pa.field(k, pa.struct(build(v)) if isinstance(v, dict) else v) for k, v in node.items()]

    return pa.schema(build(tree))


def _parquet_columns(schema: pa.Schema, paths: list[str]) -> list[str]:
    """The Parquet columns to read for field paths: a nested path as far as the file has it (a
    leaf of a struct is read without its siblings)."""
    import pyarrow as pa

    out = set()
    for path in paths:
        parts = split_path(path)
        if parts[0] not in schema.names:
            continue
        t, got = schema.field(parts[0]).type, [parts[0]]
        for part in parts[1:]:
            if not pa.types.is_struct(t) or t.get_field_index(part) < 0:
                break
            t = t.field(t.get_field_index(part)).type
            got.append(part)
        out.add(".".join(got))
    return sorted(out)


def _walk(top: pa.Array, parts: tuple[str, ...]) -> tuple[pa.Array | None, tuple[np.ndarray, str] | None]:
    """The values at a field path below a column (a parent null gives null), or None when a key
    is absent; with the rows where a step meets something that is not an object, and why."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = top
    for i, part in enumerate(parts[1:], 1):
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        if not pa.types.is_struct(arr.type):
            where = ".".join(parts[:i])
            return None, (_mask(pc.is_valid(arr)), f"{where} is {_describe_type(arr.type)}, not an object")
        k = arr.type.get_field_index(part)
        if k < 0:
            return None, None
        arr = pc.struct_field(arr, [k])
    return arr, None
