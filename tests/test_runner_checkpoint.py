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
    read_manifest,
    save_training_state,
)
from runner.checkpoint_load import choose_checkpoint, load_training_state, restore_newest
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
    shard = folder / "__0_0.distcp"  # rank 0's first shard file
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
        shard = folder / "__0_0.distcp"  # rank 0's first shard file
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


def _fill_the_disk(monkeypatch, only: str | None = None) -> None:
    """Writes to the checkpoint's shard files (or only to the file named ``only``) fail as a full
    disk fails them."""
    from runner import checkpoint_io

    real = checkpoint_io._HashingStream.write

    def write(self, b):
        name = Path(self.raw.name).name
        if name.endswith(".distcp") and (only is None or name == only):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, b)

    monkeypatch.setattr(checkpoint_io._HashingStream, "write", write)


def test_a_full_disk_while_the_shards_are_written_is_a_failed_save_not_a_crash(
        tmp_path, policy, monkeypatch):
    model, opt = _fresh(policy)
    store = CheckpointStore(tmp_path / "ck")
    assert _save(store, 1, model, opt).ok
    _fill_the_disk(monkeypatch)
    out = _save(store, 2, model, opt)
    assert not out.ok and ck.disk_full(out.error)
    assert [p.name for p in store.root.iterdir()] == ["step_000001"]
    chosen, _ = choose_checkpoint(store, rank=0)
    assert chosen is not None and chosen.step == 1


def test_a_full_disk_under_one_of_the_writer_threads_fails_the_save(tmp_path, policy, monkeypatch):
    """Each writer thread writes a file of its own; one that fails fails the save, which must not
    commit a checkpoint with that file's tensors missing."""
    assert ck.WRITE_THREADS > 1
    model, opt = _fresh(policy)
    store = CheckpointStore(tmp_path / "ck")
    assert _save(store, 1, model, opt).ok
    _fill_the_disk(monkeypatch, only="__0_1.distcp")
    out = _save(store, 2, model, opt)
    assert not out.ok and ck.disk_full(out.error)
    assert [p.name for p in store.root.iterdir()] == ["step_000001"]


def _save_in_the_background(store, step, model, opt, rank, group, host):
    """Stage, write on a thread over the writers' own group while this thread trains on and meets
    the other rank on the default group (what the training loop does); the outcome."""
    import threading

    import torch.distributed as dist

    staged = ck.stage_training_state(step, model=model, optimizer=opt, rank_state={"rank": rank},
                                     trainer_state={"step": step})
    staging = ck.HostStaging(host, staged.state)
    done = []
    writer = threading.Thread(target=lambda: done.append(ck.write_training_state(
        store, staged, rank=rank, device="cpu", metric=None, metric_name="m", group=group,
        staging=staging)))
    writer.start()
    staging.wait()  # what the optimizer's step pre-hook does before the loop changes the weights
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(3):  # training's collectives and updates, while the save is in flight
        dist.all_reduce(torch.ones(4))
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
    writer.join()
    with torch.no_grad():  # back to the state that was staged, so both variants train alike
        for k, v in model.state_dict().items():
            v.copy_(before[k])
    return done[0]


def _two_rank_worker(rank: int, port: int, root: str, out: str, background: bool) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 4))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        store = CheckpointStore(Path(root), save_best_only=False, keep_last=5)
        group, host = (dist.new_group(backend="gloo"), ck.HostCopy()) if background else (None, None)
        results = []
        for step in (1, 2):
            model(torch.ones(2, 16)).sum().backward()
            opt.step()
            if step == 1:
                at_1 = {k: v.clone() for k, v in model.state_dict().items()}
            if background:
                out_ = _save_in_the_background(store, step, model, opt, rank, group, host)
            else:
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
            "exact": all(torch.equal(at_1[k], v) for k, v in model.state_dict().items()),
            "saved": results, "chosen": chosen.step, "rejected": [Path(p).name for p, _ in rejected],
            "problem": rejected[0][1] if rejected else "", "mine": mine}))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes with a gloo group
@pytest.mark.parametrize("background", [False, True], ids=["blocking", "background"])
def test_two_ranks_save_together_and_agree_on_the_checkpoint_to_resume(tmp_path, background):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_two_rank_worker,
                                args=(port, str(tmp_path / "ck"), str(tmp_path), background),
                                nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank, result in enumerate(results):
        assert result["saved"] == [True, True]
        assert result["chosen"] == 1 and result["rejected"] == ["step_000002"]
        assert result["mine"] == {"rank": rank}  # each rank gets its own state back
        assert result["exact"]  # the state of step 1, not what training did while it was written
    assert "rank1.pt" in results[0]["problem"] and results[0]["problem"] == results[1]["problem"]
    manifest = read_manifest(tmp_path / "ck" / "step_000001")
    assert {"rank0.pt", "rank1.pt", ".metadata"} <= set(manifest["files"])
    assert manifest["world_size"] == 2


# --- hashing while writing, verifying while reading -------------------------------------------------


def test_each_file_is_hashed_while_written_and_the_manifest_names_the_hash(tmp_path, policy):
    from runner.checkpoint_io import hash_file

    model, opt = _fresh(policy)
    _train_a_step(model, opt, seed=6)
    store = CheckpointStore(tmp_path / "ck")
    assert _save(store, 1, model, opt).ok
    folder = store.root / "step_000001"
    manifest = read_manifest(folder)
    assert manifest["hash"] == "xxh3_128"
    on_disk = {p.name for p in folder.iterdir() if p.name != MANIFEST}
    assert set(manifest["files"]) == on_disk  # .metadata included: its rename carried the digest
    for name, entry in manifest["files"].items():
        assert entry == {"bytes": (folder / name).stat().st_size,
                         "xxh3_128": hash_file(folder / name)}, name


def _as_sha256_manifest(folder: Path) -> None:
    """Rewrite a manifest as the runner wrote them before the hash was recorded: sha256 digests
    under "sha256", no "hash" field."""
    from preflight.spec import canonical_sha256
    from runner.checkpoint_io import hash_file

    manifest = json.loads((folder / MANIFEST).read_text())
    for key in ("manifest_sha256", "hash"):
        manifest.pop(key)
    manifest["files"] = {name: {"bytes": e["bytes"], "sha256": hash_file(folder / name, "sha256")}
                         for name, e in manifest["files"].items()}
    manifest["manifest_sha256"] = canonical_sha256(manifest)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_a_checkpoint_with_an_older_sha256_manifest_still_verifies_and_loads(tmp_path, policy):
    model, opt = _fresh(policy)
    _train_a_step(model, opt, seed=7)
    store = CheckpointStore(tmp_path / "ck")
    assert _save(store, 3, model, opt).ok
    folder = store.root / "step_000003"
    _as_sha256_manifest(folder)
    assert read_manifest(folder)["hash"] == "sha256"
    other, other_opt = _fresh(policy)
    trainer, _ = load_training_state(folder, model=other, optimizer=other_opt, rank=0)
    assert trainer["note"] == "at 3"
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in model.state_dict().items())
    _flip_a_byte_of_the_shard(folder)
    with pytest.raises(CheckpointError, match="sha256 differs from the manifest"):
        load_training_state(folder, model=other, optimizer=other_opt, rank=0)


def _flip_a_byte_of_the_shard(folder: Path) -> None:
    shard = folder / "__0_0.distcp"  # rank 0's first shard file
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size: only the digest can tell
    shard.write_bytes(bytes(data))


def test_a_shard_damaged_in_place_fails_the_load_that_reads_it_and_the_one_before_is_loaded(
        tmp_path, policy):
    model, opt = _fresh(policy)
    store = CheckpointStore(tmp_path / "ck", save_best_only=False, keep_last=5)
    _train_a_step(model, opt, seed=8)
    assert _save(store, 2, model, opt).ok
    good = _params(model)
    _train_a_step(model, opt, seed=9)
    assert _save(store, 4, model, opt).ok
    _flip_a_byte_of_the_shard(store.root / "step_000004")

    chosen, _ = choose_checkpoint(store, rank=0)
    assert chosen is not None and chosen.step == 4  # sizes and manifest are fine: no byte read yet
    other, other_opt = _fresh(policy)
    with pytest.raises(CheckpointError, match=r"__0_0\.distcp: xxh3_128 differs from the manifest"):
        load_training_state(chosen.path, model=other, optimizer=other_opt, rank=0)

    restored = restore_newest(store, 0, model=other, optimizer=other_opt)
    assert restored.committed is not None and restored.committed.step == 2 and not restored.dirty
    assert [Path(p).name for p, _ in restored.rejected] == ["step_000004"]
    assert "moved to step_000004.corrupt" in restored.rejected[0][1]
    assert all(torch.equal(good[k], v) for k, v in other.state_dict().items())  # nothing of step 4 left


def test_when_the_only_checkpoint_fails_while_loading_the_model_is_flagged_as_partly_overwritten(
        tmp_path, policy):
    model, opt = _fresh(policy)
    store = CheckpointStore(tmp_path / "ck")
    assert _save(store, 1, model, opt).ok
    _flip_a_byte_of_the_shard(store.root / "step_000001")
    other, other_opt = _fresh(policy)
    restored = restore_newest(store, 0, model=other, optimizer=other_opt)
    assert restored.committed is None and restored.dirty
    assert [Path(p).name for p, _ in restored.rejected] == ["step_000001"]


def test_a_host_copy_keeps_the_state_of_its_step_while_training_changes_the_model(tmp_path, policy):
    model, opt = _fresh(policy)
    _train_a_step(model, opt, seed=10)
    host = ck.HostCopy()
    at_1 = _params(model)
    staged = ck.stage_training_state(1, model=model, optimizer=opt, rank_state={"n": 1},
                                     trainer_state={"step": 1})
    staged = ck.HostStaging(host, staged.state).copy(staged)
    _train_a_step(model, opt, seed=11)  # training goes on while the copy waits to be written
    store = CheckpointStore(tmp_path / "ck")
    out = ck.write_training_state(store, staged, rank=0, device="cpu", metric=None, metric_name="m")
    assert out.ok
    other, other_opt = _fresh(policy)
    load_training_state(out.committed.path, model=other, optimizer=other_opt, rank=0)
    assert all(torch.equal(at_1[k], v) for k, v in other.state_dict().items())
    buffers = host._buffers
    again = ck.stage_training_state(2, model=model, optimizer=opt, rank_state={}, trainer_state={})
    ck.HostStaging(host, again.state).copy(again)
    assert host._buffers is buffers  # the host buffers are reused from one save to the next
