"""torch.distributed.checkpoint storage for the runner: tensors stored as their raw bytes, each file
hashed while it is written and verified while it is read, and a load that reads straight into the
model's and optimizer's own tensors.

torch's ``FileSystemWriter`` stores every tensor as a small ``torch.save`` archive, which computes a
CRC-32 of every byte (half the time of a ``torch.save``: 0.15 of 0.27 s for 0.67 GB on the machine
of bench/README.md) and, on load, is parsed into a new tensor that is then copied into the model:
two copies of every byte besides the read. Here a tensor's bytes go to the file as they are in
memory (its dtype and shape are in the checkpoint's ``.metadata`` already), hashed with XXH3-128 on
their way (runner.checkpoint_io); a load reads them into the destination tensor itself when it is
a contiguous host tensor of the stored dtype holding the whole stored chunk (the usual resume), and
otherwise (another world size, a GPU, another dtype) into one host tensor that is then copied where
it belongs. Each such item carries the transform descriptor ``RAW``, so torch's own reader refuses
it (an unknown extension) instead of misreading it; items without it are torch.save archives
(checkpoints written before), which load as before.
"""

from __future__ import annotations

import ctypes
import io
import os
import pickle
from pathlib import Path
from typing import Any, cast

import torch
from torch.distributed._shard._utils import narrow_tensor_by_index
from torch.distributed.checkpoint.filesystem import (
    DEFAULT_SUFFIX,
    FileSystemReader,
    FileSystemWriter,
    _split_by_size_and_type,
    _StorageInfo,
)
from torch.distributed.checkpoint.metadata import (
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import (
    LoadItemType,
    LoadPlan,
    LoadPlanner,
    ReadItem,
    SavePlan,
    SavePlanner,
    WriteItem,
    WriteItemType,
)
from torch.distributed.checkpoint.storage import WriteResult
from torch.futures import Future

from .checkpoint_io import (
    CheckpointError,
    Digests,
    HashingFileSystem,
    check_entry,
    expected_entry,
    hash_range,
    in_parallel,
    new_hash,
    read_verified,
)

RAW = "raw@rl-preflight/1"  # the transform descriptor of a tensor stored as its bytes
PIECE = 4 << 20  # bytes hashed and then written (or read and then hashed) at a time: they stay in cache
READ_THREADS = 2  # files of one rank read and verified at once: 0.18 s against 0.25 s for 0.68 GB (bench/README.md)


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The bytes of a contiguous host tensor, without a copy (the tensor must outlive the view)."""
    n = tensor.numel() * tensor.element_size()
    if n == 0:
        return memoryview(b"")
    return memoryview((ctypes.c_char * n).from_address(tensor.data_ptr())).cast("B")


def _host_contiguous(tensor: torch.Tensor) -> torch.Tensor:
    """A plain contiguous host tensor holding ``tensor``'s values as they read (a conjugate or
    negative view resolved), whose memory is exactly its bytes."""
    t = tensor.detach().resolve_conj().resolve_neg()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    return t if type(t) is torch.Tensor else t.as_subclass(torch.Tensor)


class HashingWriter(FileSystemWriter):
    """torch.distributed.checkpoint's file writer with the runner's encoding: one file per rank and
    thread, tensors as raw bytes, every file hashed while written and fsynced; ``digests`` holds
    the sizes and digests (``.metadata`` included, written by torch through ``self.fs``)."""

    def __init__(self, path: Path, digests: Digests, thread_count: int = 1) -> None:
        super().__init__(path, single_file_per_rank=True, sync_files=True, thread_count=thread_count)
        self.digests = digests
        self.fs = HashingFileSystem(digests)
        self.path = self.fs.init_path(path)

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        prefix = plan.storage_data.prefix
        files = [(f"{prefix}{i}{DEFAULT_SUFFIX}", bucket) for i, bucket in
                 enumerate(_split_by_size_and_type(self.thread_count, plan.items))]
        results: list[list[WriteResult]] = [[] for _ in files]

        def write(i: int) -> None:
            name, items = files[i]
            results[i] = self._write_file(name, items, planner)

        in_parallel(write, range(len(files)), threads=self.thread_count)  # raises the first error
        done: Future[list[WriteResult]] = Future()
        done.set_result([r for part in results for r in part])
        return done

    def _write_file(self, name: str, items: list[WriteItem], planner: SavePlanner) -> list[WriteResult]:
        out: list[WriteResult] = []
        path = cast(Path, self.fs.concat_path(self.path, name))
        # the small pickled objects first, then the tensors, largest first (as torch orders them)
        ordered = [i for i in items if i.type == WriteItemType.BYTE_IO] + \
                  [i for i in items if i.type != WriteItemType.BYTE_IO]
        with self.fs.create_stream(path, "wb") as stream:
            for item in ordered:
                offset = stream.tell()
                data = planner.resolve_data(item)
                if item.type == WriteItemType.BYTE_IO:
                    stream.write(cast(io.BytesIO, data).getbuffer())
                    descriptors = None
                else:
                    tensor = _host_contiguous(cast(torch.Tensor, data))
                    view = tensor_bytes(tensor)
                    for start in range(0, len(view), PIECE):
                        stream.write(view[start:start + PIECE])
                    descriptors = [RAW]
                length = stream.tell() - offset
                out.append(WriteResult(index=item.index, size_in_bytes=length,
                                       storage_data=_StorageInfo(name, offset, length,
                                                                 transform_descriptors=descriptors)))
            stream.flush()
            os.fsync(stream.fileno())
        return out


class VerifyingReader(FileSystemReader):
    """torch.distributed.checkpoint's file reader for the runner's checkpoints: each file read once,
    verified against the manifest's digest (``expected``: file name -> manifest entry) in the same
    pass, raw tensors read into their destination when they can be."""

    def __init__(self, path: Path, expected: dict[str, dict[str, Any]], algorithm: str) -> None:
        super().__init__(path)
        self.folder = Path(path)
        self.expected = expected
        self.algorithm = algorithm
        self.metadata: Metadata | None = None

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        name = Path(self._get_metadata_path(kwargs.get("rank"))).name
        data = read_verified(self.folder / name, self.expected, self.algorithm)
        metadata = pickle.loads(data)  # noqa: S301 - a file this checkpoint's manifest vouches for
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return cast(Metadata, metadata)

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args: Any,
                              **kwargs: Any) -> None:
        super().set_up_storage_reader(metadata, is_coordinator, *args, **kwargs)
        self.metadata = metadata

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        per_file: dict[str, list[ReadItem]] = {}
        for item in plan.items:
            per_file.setdefault(self.storage_data[item.storage_index].relative_path, []).append(item)
        # each file on its own thread (a rank writes WRITE_THREADS of them): reads, hashes and
        # copies of two files overlap; every item lands in a tensor of its own
        in_parallel(lambda entry: self._read_file(entry[0], entry[1], planner), list(per_file.items()),
                    threads=READ_THREADS)
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def _read_file(self, name: str, items: list[ReadItem], planner: LoadPlanner) -> None:
        """Read the stored items ``items`` need in file order, each once, hashing them and the bytes
        between and after them; each goes to its destination as soon as it is read. The file's
        digest is known at its end: a mismatch raises CheckpointError, and the caller treats what
        was loaded as garbage (runner.checkpoint_load.restore_newest)."""
        path = self.folder / name
        entry = expected_entry(path, self.expected, self.algorithm)
        # (offset, length, n) -> info, items; n tells apart empty items stored at one offset
        stored: dict[tuple[int, int, int], tuple[Any, list[ReadItem]]] = {}
        for n, item in enumerate(items):
            info = self.storage_data[item.storage_index]
            key = (info.offset, info.length, n if info.length == 0 else -1)
            stored.setdefault(key, (info, []))[1].append(item)
        h = new_hash(self.algorithm)
        pos = 0
        with open(path, "rb", buffering=0) as f:
            for key in sorted(stored):
                info, wanted = stored[key]
                if info.offset < pos:  # items are written back to back, never overlapping
                    raise CheckpointError(f"{path}: stored items overlap (not a file this runner wrote)")
                pos = hash_range(f, h, pos, info.offset)
                if list(info.transform_descriptors or ()) == [RAW]:
                    self._read_raw(f, h, path, info, wanted, planner)
                else:
                    self._read_archive(f, h, path, info, wanted, planner)
                pos = info.offset + info.length
            pos = hash_range(f, h, pos, None)
        check_entry(path, pos, str(h.hexdigest()), entry, self.algorithm)

    # --- raw tensors (what the runner writes) -----------------------------------------------------

    def _read_raw(self, f: Any, h: Any, path: Path, info: Any, wanted: list[ReadItem],
                  planner: LoadPlanner) -> None:
        if any(item.type == LoadItemType.BYTE_IO for item in wanted):
            raise CheckpointError(f"{path}: {wanted[0].storage_index.fqn} is stored as raw tensor bytes "
                                  "but is no tensor (not a file this runner wrote)")
        dtype, sizes = self._stored_chunk(wanted[0].storage_index)
        resolved: dict[int, torch.Tensor] = {}  # resolved once: commit_tensor gets what resolve_tensor gave
        if len(wanted) == 1:
            item = wanted[0]
            target = resolved[0] = planner.resolve_tensor(item).detach()
            if _fits_in_place(target, item, dtype, sizes, info.length):
                _read_into(f, h, path, tensor_bytes(target))  # the file's bytes land in the model's tensor
                planner.commit_tensor(item, target)
                return
        chunk = torch.empty(sizes, dtype=dtype)
        if chunk.numel() * chunk.element_size() != info.length:
            raise CheckpointError(f"{path}: {wanted[0].storage_index.fqn} takes {info.length} bytes, its "
                                  f"shape {tuple(sizes)} and {dtype} need "
                                  f"{chunk.numel() * chunk.element_size()} (not a file this runner wrote)")
        _read_into(f, h, path, tensor_bytes(chunk))
        for i, item in enumerate(wanted):
            self._copy_to_target(narrow_tensor_by_index(chunk, item.storage_offsets, item.lengths), item,
                                 planner, resolved.get(i))

    def _stored_chunk(self, index: MetadataIndex) -> tuple[torch.dtype, torch.Size]:
        """The dtype and shape of the stored chunk ``index`` names (from the checkpoint's metadata)."""
        assert self.metadata is not None  # set up by torch before any read
        md = self.metadata.state_dict_metadata.get(index.fqn)
        if isinstance(md, TensorStorageMetadata):
            chunks = md.chunks
            hint = index.index
            if hint is not None and 0 <= hint < len(chunks) and chunks[hint].offsets == index.offset:
                return md.properties.dtype, chunks[hint].sizes
            for chunk in chunks:
                if chunk.offsets == index.offset:
                    return md.properties.dtype, chunk.sizes
        raise CheckpointError(f"{self.folder}: {index.fqn} has no stored tensor chunk at offset "
                              f"{tuple(index.offset or ())} (the .metadata does not match the files)")

    # --- torch.save archives (checkpoints written before the raw encoding) -----------------------

    def _read_archive(self, f: Any, h: Any, path: Path, info: Any, wanted: list[ReadItem],
                      planner: LoadPlanner) -> None:
        buf = _read_bytes(f, h, path, info.length)
        for item in wanted:
            stream = self.transforms.transform_load_stream(item, info.transform_descriptors or (),
                                                           io.BytesIO(buf))
            if item.type == LoadItemType.BYTE_IO:
                planner.load_bytes(item, io.BytesIO(stream.read()))
                continue
            seekable = stream if stream.seekable() else io.BytesIO(stream.read())
            tensor = torch.load(seekable, map_location="cpu", weights_only=True)
            self._copy_to_target(narrow_tensor_by_index(tensor, item.storage_offsets, item.lengths), item,
                                 planner)

    def _copy_to_target(self, tensor: torch.Tensor, item: ReadItem, planner: LoadPlanner,
                        target: torch.Tensor | None = None) -> None:
        if target is None:
            target = planner.resolve_tensor(item).detach()
        if target.size() != tensor.size():
            raise RuntimeError(f"{self.folder}: stored {item.storage_index.fqn} has shape "
                               f"{tuple(tensor.size())}, the model has {tuple(target.size())}")
        target.copy_(tensor)
        planner.commit_tensor(item, target)


def _fits_in_place(target: torch.Tensor, item: ReadItem, dtype: torch.dtype, sizes: torch.Size,
                   length: int) -> bool:
    """The stored chunk can be read straight into ``target``: a whole chunk, the same dtype and
    shape, a contiguous host tensor with exactly its bytes."""
    return (type(target) is torch.Tensor and target.device.type == "cpu" and target.dtype == dtype
            and target.is_contiguous() and not target.is_conj() and not target.is_neg()
            and target.size() == sizes and tuple(item.lengths) == tuple(sizes)
            and not any(item.storage_offsets) and target.numel() * target.element_size() == length)


def _read_into(f: Any, h: Any, path: Path, view: memoryview) -> None:
    """Fill ``view`` from the file, a piece at a time, hashing each piece while it is in cache.
    (Written behind torch's back, the tensor's autograd version does not change: loads happen
    outside any graph.)"""
    for start in range(0, len(view), PIECE):
        piece = view[start:start + PIECE]
        got = 0
        while got < len(piece):
            n = f.readinto(piece[got:])
            if not n:
                raise CheckpointError(f"{path}: ends inside a stored tensor (truncated)")
            got += n
        h.update(piece)


def _read_bytes(f: Any, h: Any, path: Path, length: int) -> bytes:
    buf = f.read(length)  # bytes: BytesIO shares them instead of copying
    if len(buf) < length:  # one read returns at most ~2 GiB on Linux: go on until the item is whole
        parts = [buf]
        got = len(buf)
        while got < length and (more := f.read(length - got)):
            parts.append(more)
            got += len(more)
        buf = b"".join(parts)
    if len(buf) != length:
        raise CheckpointError(f"{path}: ends inside a stored item (truncated)")
    h.update(buf)
    return cast(bytes, buf)

