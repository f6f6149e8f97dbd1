"""Checkpoints (runner.checkpoint): a committed one loads back exactly; a corrupt, edited or
half-written one is not a checkpoint; a save that fails (a full disk) leaves the previous one
loadable; the keep policy keeps the best and the latest."""

from __future__ import annotations

import errno
import json
import random
from pathlib import Path

import pytest
import torch

from runner import checkpoint as ck
from runner.checkpoint import (
    MANIFEST,
    CheckpointError,
    CheckpointStore,
    choose_checkpoint,
    load_training_state,
    read_manifest,
    save_training_state,
)
from runner.model import load_policy


@pytest.fixture(scope="module")
def policy():
    return load_policy("tiny")


def _fresh(policy_pair):
    model, _ = policy_pair
    model = type(model)(model.config)  # same shapes, its own weights
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def _train_a_step(model, optimizer, seed: int) -> None:
    torch.manual_seed(seed)
    ids = torch.randint(4, 40, (2, 12))
    model(input_ids=ids).logits.float().pow(2).mean().backward()
    optimizer.step()
    optimizer.zero_grad()


def _save(store, step, model, optimizer, metric=None, rank_state=None, fault_hook=None):
    return save_training_state(store, step, model=model, optimizer=optimizer, rank=0, device="cpu",
                               rank_state=rank_state or {"python_rng": random.getstate()},
                               trainer_state={"step": step, "note": f"at {step}"},
                               metric=metric, metric_name="validation_accuracy",
                               fault_hook=fault_hook)


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_committed_checkpoint_has_a_verifying_manifest_and_loads_back_exactly(tmp_path, policy):
    model, opt = _fresh(policy)
    _train_a_step(model, opt, seed=1)
    store = CheckpointStore(tmp_path / "ck")
    out = _save(store, 7, model, opt, metric=0.25,
                rank_state={"torch_rng": torch.get_rng_state(), "order": [3, 1, 2]})
    assert out.ok and out.committed is not None and out.committed.step == 7
    folder = tmp_path / "ck" / "step_000007"
    assert out.committed.path == folder
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["step_000007"]  # no temp folder left
    manifest = read_manifest(folder)
    assert {".metadata", "rank0.pt", "trainer.json"} <= set(manifest["files"])
    assert manifest["bytes"] == out.committed.bytes == sum(
        p.stat().st_size for p in folder.rglob("*") if p.name != MANIFEST)
    assert manifest["metric"] == 0.25

    want_params, want_state = _params(model), opt.state_dict()["state"]
    other, other_opt = _fresh(policy)
    trainer, mine = load_training_state(folder, model=other, optimizer=other_opt, rank=0)
    assert trainer["note"] == "at 7" and trainer["optimizer_state"] is True
    assert mine is not None and mine["order"] == [3, 1, 2]
    assert all(torch.equal(want_params[k], v) for k, v in other.state_dict().items())
    got_state = other_opt.state_dict()["state"]
    for key, entry in want_state.items():
        assert all(torch.equal(entry[name], got_state[key][name]) for name in entry)


def test_a_checkpoint_before_the_first_step_restores_a_fresh_optimizer(tmp_path, policy):
    model, opt = _fresh(policy)
    store = CheckpointStore(tmp_path / "ck")
    assert _save(store, 0, model, opt).ok
    assert not opt.state  # saving did not invent optimizer state (Adam's step count stays 0)
    _train_a_step(model, opt, seed=2)
    trainer, _ = load_training_state(store.root / "step_000000", model=model, optimizer=opt, rank=0)
    assert trainer["optimizer_state"] is False and not opt.state


@pytest.mark.parametrize("damage", ["truncated shard", "edited manifest", "deleted file",
                                    "no manifest"])
def test_a_damaged_newest_checkpoint_is_skipped_for_the_one_before(tmp_path, policy, damage):
    model, opt = _fresh(policy)
    store = CheckpointStore(tmp_path / "ck", save_best_only=False, keep_last=5)
    assert _save(store, 2, model, opt).ok
    before = _params(model)
    _train_a_step(model, opt, seed=3)
    assert _save(store, 4, model, opt, metric=0.5).ok
    newest = store.root / "step_000004"
    shard = next(newest.glob("*.distcp"))
    if damage == "truncated shard":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    elif damage == "edited manifest":
        manifest = json.loads((newest / MANIFEST).read_text())
        manifest["metric"] = 0.99  # someone "fixes" the metric by hand
        (newest / MANIFEST).write_text(json.dumps(manifest))
    elif damage == "deleted file":
        (newest / "rank0.pt").unlink()
    else:
        (newest / MANIFEST).unlink()

    with pytest.raises(CheckpointError):
        read_manifest(newest)
    chosen, rejected = choose_checkpoint(store, rank=0)
    assert chosen is not None and chosen.step == 2
    if damage == "no manifest":
        assert rejected == []  # a folder without a manifest never was a checkpoint
    else:
        assert [Path(p).name for p, _ in rejected] == ["step_000004"]
        assert "moved to step_000004.corrupt" in rejected[0][1]
        assert (store.root / "step_000004.corrupt").is_dir()  # kept aside for a look
    other, other_opt = _fresh(policy)
    load_training_state(chosen.path, model=other, optimizer=other_opt, rank=0)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


def test_the_manifest_names_what_is_wrong(tmp_path, policy):
    model, opt = _fresh(policy)
    store = CheckpointStore(tmp_path / "ck")
    _save(store, 1, model, opt)
    folder = store.root / "step_000001"
    shard = next(folder.glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=r"__0_0\.distcp: \d+ bytes, the manifest says \d+"):
        read_manifest(folder)
    data = bytearray(shard.read_bytes() + b"0123456789")
    data[0] ^= 0xFF  # same size, different content
    shard.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="xxh3_128 differs from the manifest"):
        read_manifest(folder)


def test_a_disk_that_fills_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path, policy):
    model, opt = _fresh(policy)
    store = CheckpointStore(tmp_path / "ck")
    assert _save(store, 10, model, opt, metric=0.1).ok
    good = _params(model)
    _train_a_step(model, opt, seed=4)

    def disk_fills(stage: str, folder: Path) -> None:
        # the last shard only got half written, then the device ran out of space
        shard = next(folder.glob("*.distcp"))
        shard.write_bytes(shard.read_bytes()[:100])
        raise OSError(errno.ENOSPC, "No space left on device", str(shard))

    out = _save(store, 20, model, opt, metric=0.2, fault_hook=disk_fills)
    assert not out.ok and out.committed is None
    assert ck.disk_full(out.error)
    assert sorted(p.name for p in store.root.iterdir()) == ["step_000010"]  # temp folder removed
    chosen, rejected = choose_checkpoint(store, rank=0)
    assert chosen is not None and chosen.step == 10 and rejected == []
    other, other_opt = _fresh(policy)
    load_training_state(chosen.path, model=other, optimizer=other_opt, rank=0)
    assert all(torch.equal(good[k], v) for k, v in other.state_dict().items())


def test_a_save_left_half_done_by_a_crash_is_removed_at_the_next_start(tmp_path, policy):
    model, opt = _fresh(policy)
    store = CheckpointStore(tmp_path / "ck")
    _save(store, 1, model, opt)
    partial = store.prepare(2)
    (partial / "__0_0.distcp").write_bytes(b"half")
    chosen, _ = choose_checkpoint(store, rank=0)
    assert chosen is not None and chosen.step == 1 and not partial.exists()


def test_save_best_only_keeps_the_best_and_the_latest(tmp_path, policy):
    model, opt = _fresh(policy)
    store = CheckpointStore(tmp_path / "ck", save_best_only=True, mode="max")
    kept = []
    for step, metric in [(1, 0.2), (2, 0.6), (3, 0.4), (4, None), (5, 0.5)]:
        assert _save(store, step, model, opt, metric=metric).ok
        store.prune()
        kept.append(sorted(int(p.name[5:]) for p in store.committed()))
    assert kept == [[1], [2], [2, 3], [2, 4], [2, 5]]


def test_keep_last_without_save_best_only(tmp_path, policy):
    model, opt = _fresh(policy)
    store = CheckpointStore(tmp_path / "ck", save_best_only=False, keep_last=2)
    for step in range(1, 5):
        _save(store, step, model, opt, metric=1.0 / step)
        deleted = store.prune()
    assert [p.name for p in deleted] == ["step_000002"]
    assert [p.name for p in store.committed()] == ["step_000003", "step_000004"]


def test_a_min_metric_keeps_the_lowest(tmp_path, policy):
    model, opt = _fresh(policy)
    store = CheckpointStore(tmp_path / "ck", save_best_only=True, mode="min")
    for step, loss in [(1, 0.9), (2, 0.3), (3, 0.8)]:
        _save(store, step, model, opt, metric=loss)
        store.prune()
    assert [p.name for p in store.committed()] == ["step_000002", "step_000003"]


def test_saving_a_step_again_after_a_rollback_replaces_the_old_folder(tmp_path, policy):
    model, opt = _fresh(policy)
    store = CheckpointStore(tmp_path / "ck", save_best_only=False)
    _save(store, 3, model, opt, metric=0.1)
    _train_a_step(model, opt, seed=5)
    _save(store, 3, model, opt, metric=0.7)
    assert read_manifest(store.root / "step_000003")["metric"] == 0.7
    assert [p.name for p in store.root.iterdir()] == ["step_000003"]


def test_a_full_disk_inside_torch_distributed_checkpoint_is_a_failed_save_not_a_crash(
        tmp_path, policy, monkeypatch):
    import torch.distributed.checkpoint.filesystem as fs

    model, opt = _fresh(policy)
    store = CheckpointStore(tmp_path / "ck")
    assert _save(store, 1, model, opt).ok

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fs, "_write_item", no_space)  # the shard writer itself fails
    out = _save(store, 2, model, opt)
    assert not out.ok and ck.disk_full(out.error)
    assert [p.name for p in store.root.iterdir()] == ["step_000001"]
    chosen, _ = choose_checkpoint(store, rank=0)
    assert chosen is not None and chosen.step == 1


def test_each_rank_hashes_what_it_wrote_and_rank_0_the_shared_files():
    names = [".metadata", "__0_0.distcp", "__1_0.distcp", "__1_1.distcp", "rank0.pt", "rank1.pt",
             "trainer.json"]
    shares = [ck.share_of(names, rank, 2) for rank in range(2)]
    assert shares == [[".metadata", "__0_0.distcp", "rank0.pt", "trainer.json"],
                      ["__1_0.distcp", "__1_1.distcp", "rank1.pt"]]
    assert ck.share_of(names, 0, 1) == names  # one process hashes everything


def _two_rank_worker(rank: int, port: int, root: str, out: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 4))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        store = CheckpointStore(Path(root), save_best_only=False, keep_last=5)
        results = []
        for step in (1, 2):
            model(torch.ones(2, 16)).sum().backward()
            opt.step()
            out_ = save_training_state(store, step, model=model, optimizer=opt, rank=rank,
                                       device="cpu", rank_state={"rank": rank},
                                       trainer_state={"step": step}, metric=None, metric_name="m")
            results.append(out_.ok)
        if rank == 0:  # damage rank 1's own state file in the newest checkpoint
            (Path(root) / "step_000002" / "rank1.pt").write_bytes(b"garbage")
        dist.barrier()
        chosen, rejected = choose_checkpoint(store, rank)
        _, mine = load_training_state(chosen.path, model=model, optimizer=opt, rank=rank)
        Path(out, f"rank{rank}.json").write_text(json.dumps({
            "saved": results, "chosen": chosen.step, "rejected": [Path(p).name for p, _ in rejected],
            "problem": rejected[0][1] if rejected else "", "mine": mine}))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes with a gloo group
def test_two_ranks_save_together_and_agree_on_the_checkpoint_to_resume(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_two_rank_worker, args=(port, str(tmp_path / "ck"), str(tmp_path)),
                                nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank, result in enumerate(results):
        assert result["saved"] == [True, True]
        assert result["chosen"] == 1 and result["rejected"] == ["step_000002"]
        assert result["mine"] == {"rank": rank}  # each rank gets its own state back
    assert "rank1.pt" in results[0]["problem"] and results[0]["problem"] == results[1]["problem"]
    manifest = read_manifest(tmp_path / "ck" / "step_000001")
    assert {"rank0.pt", "rank1.pt", ".metadata"} <= set(manifest["files"])
    assert manifest["world_size"] == 2
