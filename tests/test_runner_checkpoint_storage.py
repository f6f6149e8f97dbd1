"""How the runner's checkpoints store tensors (runner.checkpoint_storage): their raw bytes, read back
exactly into another world size, another dtype, and from checkpoints written before as torch.save
archives; torch's own reader refuses them instead of misreading them."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch

from runner import checkpoint as ck
from runner.checkpoint import CheckpointStore, save_training_state
from runner.checkpoint_load import load_training_state
from runner.checkpoint_storage import RAW


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    # 7 and 5 rows: FSDP2's dim-0 shards on two ranks are uneven (4 + 3, 3 + 2)
    return torch.nn.Sequential(torch.nn.Linear(16, 7), torch.nn.Linear(7, 5))


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    model(torch.ones(3, 16)).pow(2).sum().backward()
    opt.step()
    opt.zero_grad()


def _save(store: CheckpointStore, step: int, model, opt, rank: int = 0):
    return save_training_state(store, step, model=model, optimizer=opt, rank=rank, device="cpu",
                               rank_state={"rank": rank}, trainer_state={"step": step},
                               metric=None, metric_name="m")


def _full(tensor: torch.Tensor) -> torch.Tensor:
    full = getattr(tensor, "full_tensor", None)
    return (full() if full is not None else tensor).detach().clone()


def _everything(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Every parameter and Adam moment, gathered whole (FSDP2's shards included)."""
    out = {f"param.{k}": _full(v) for k, v in model.named_parameters()}
    names = {id(p): k for k, p in model.named_parameters()}
    for p, state in opt.state.items():
        for key in ("exp_avg", "exp_avg_sq"):
            out[f"{key}.{names[id(p)]}"] = _full(state[key])
    return out


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tensors_are_stored_as_their_bytes_and_load_back_exactly(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _step(model, opt)
    out = _save(CheckpointStore(tmp_path / "ck"), 1, model, opt)
    assert out.ok
    from torch.distributed.checkpoint import FileSystemReader

    metadata = FileSystemReader(out.committed.path).read_metadata()
    infos = list(metadata.storage_data.values())
    tensors = [i for i in infos if i.transform_descriptors]
    assert tensors and all(list(i.transform_descriptors) == [RAW] for i in tensors)
    weight = model[0].weight.detach()
    # the first layer's weight is in a shard exactly as it is in memory
    stored = [i for k, i in metadata.storage_data.items() if k.fqn == "model.0.weight"]
    assert len(stored) == 1 and stored[0].length == weight.numel() * 4
    data = (out.committed.path / stored[0].relative_path).read_bytes()
    raw = data[stored[0].offset:stored[0].offset + stored[0].length]
    assert torch.equal(torch.frombuffer(bytearray(raw), dtype=torch.float32).view_as(weight), weight)

    other = _model(seed=1)
    other_opt = torch.optim.AdamW(other.parameters(), lr=1e-2)
    _step(other, other_opt)
    load_training_state(out.committed.path, model=other, optimizer=other_opt, rank=0)
    assert _same(_everything(model, opt), _everything(other, other_opt))


def test_torch_s_own_reader_refuses_the_raw_tensors_instead_of_misreading_them(tmp_path):
    import torch.distributed.checkpoint as dcp

    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    out = _save(CheckpointStore(tmp_path / "ck"), 1, model, opt)
    state = {"model": {k: torch.zeros_like(v) for k, v in model.state_dict().items()}}
    with pytest.raises(BaseException, match="(?i)extension"):
        dcp.load(state, checkpoint_id=out.committed.path, no_dist=True)


def test_a_checkpoint_loads_into_a_model_of_another_dtype(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _step(model, opt)
    out = _save(CheckpointStore(tmp_path / "ck"), 1, model, opt)
    other = _model(seed=1).to(torch.bfloat16)
    other_opt = torch.optim.AdamW(other.parameters(), lr=1e-2)
    load_training_state(out.committed.path, model=other, optimizer=other_opt, rank=0)
    for (name, want), got in zip(model.named_parameters(), other.parameters(), strict=True):
        assert got.dtype == torch.bfloat16 and torch.equal(got, want.detach().to(torch.bfloat16)), name


def test_a_checkpoint_written_before_as_torch_save_archives_still_loads(tmp_path, monkeypatch):
    from torch.distributed.checkpoint import FileSystemWriter

    from runner.checkpoint_io import HashingFileSystem

    class ArchiveWriter(FileSystemWriter):  # the runner's writer before tensors were stored raw
        def __init__(self, path, digests, thread_count=1):
            super().__init__(path, single_file_per_rank=True, sync_files=True, thread_count=thread_count)
            self.fs = HashingFileSystem(digests)
            self.path = self.fs.init_path(path)

    monkeypatch.setattr(ck, "HashingWriter", ArchiveWriter)
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _step(model, opt)
    out = _save(CheckpointStore(tmp_path / "ck"), 1, model, opt)
    monkeypatch.undo()
    from torch.distributed.checkpoint import FileSystemReader

    infos = FileSystemReader(out.committed.path).read_metadata().storage_data.values()
    assert not any(i.transform_descriptors for i in infos)  # archives, as before

    other = _model(seed=1)
    other_opt = torch.optim.AdamW(other.parameters(), lr=1e-2)
    load_training_state(out.committed.path, model=other, optimizer=other_opt, rank=0)
    assert _same(_everything(model, opt), _everything(other, other_opt))


# --- another world size: FSDP2 shards of two ranks <-> one whole model -------------------------


def _fsdp_worker(rank: int, port: int, root: str) -> None:
    import os

    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        model = _model(seed=5)  # other weights than the checkpoint's
        mesh = init_device_mesh("cpu", (2,))
        for layer in model:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        # one process's checkpoint, loaded into two ranks' shards
        load_training_state(Path(root, "one", "step_000001"), model=model, optimizer=opt, rank=rank)
        loaded = _everything(model, opt)
        _step(model, opt)
        out = _save(CheckpointStore(Path(root, "two")), 2, model, opt, rank=rank)
        whole = _everything(model, opt)
        if rank == 0:
            torch.save({"loaded": loaded, "after": whole, "ok": out.ok}, Path(root, "fsdp.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes with a gloo group
def test_checkpoints_load_across_world_sizes_through_fsdp2_shards(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _step(model, opt)
    assert _save(CheckpointStore(tmp_path / "one"), 1, model, opt).ok
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_fsdp_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "fsdp.pt", weights_only=True)
    assert got["ok"]
    assert _same(got["loaded"], _everything(model, opt))  # 1 -> 2 ranks: each shard is its slice

    whole = _model(seed=9)
    whole_opt = torch.optim.AdamW(whole.parameters(), lr=1e-2)
    _, mine = load_training_state(tmp_path / "two" / "step_000002", model=whole, optimizer=whole_opt, rank=0)
    assert mine == {"rank": 0}
    assert _same(got["after"], _everything(whole, whole_opt))  # 2 ranks -> 1: the shards reassembled
    manifest = json.loads((tmp_path / "two" / "step_000002" / "manifest.json").read_text())
    assert manifest["world_size"] == 2


def test_a_save_leaves_the_intra_op_thread_count_of_threads_started_later_alone(tmp_path):
    """The writer threads copy on one intra-op thread each; that setting is also the default a new
    thread takes, so it is put back: a thread started after a save runs with the count before."""
    import threading

    before = torch.get_num_threads()
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _step(model, opt)
    assert _save(CheckpointStore(tmp_path / "ck"), 1, model, opt).ok
    seen: list[int] = []
    later = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    later.start()
    later.join()
    assert seen == [before]


def test_an_item_longer_than_one_read_returns_is_read_whole():
    """Linux returns at most about 2 GiB from one read: a long stored item is read on until whole,
    not reported as truncated (which would set a good checkpoint aside as damaged)."""
    import io

    from runner.checkpoint_io import new_hash
    from runner.checkpoint_storage import _read_bytes

    class ShortReads(io.RawIOBase):  # a file whose reads stop at 1000 bytes, as a long read does
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def read(self, n: int = -1) -> bytes:
            n = min(n if n >= 0 else len(self.data), 1000)
            out = self.data[self.pos:self.pos + n]
            self.pos += len(out)
            return out

    data = bytes(range(256)) * 20
    got = _read_bytes(ShortReads(data), new_hash("xxh3_128"), Path("f"), len(data))
    assert got == data
    with pytest.raises(ck.CheckpointError, match="truncated"):
        _read_bytes(ShortReads(data[:3000]), new_hash("xxh3_128"), Path("f"), len(data))
