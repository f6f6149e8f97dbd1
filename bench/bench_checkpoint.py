"""Checkpoint save and load speed against a plain torch.save / torch.load of the same state.

Builds a randomly initialized Llama (runner.model.build_tiny_model, widened; by default hidden 768,
6 layers: about 0.7 GB of model + AdamW state after one optimizer step), then alternately, in a
temporary directory:
  - peer:     torch.save({"model": state_dict, "optim": optimizer.state_dict()}) to one file (no
              fsync), and torch.load of it into a second model + optimizer (load_state_dict); also,
              for information, the same torch.save with flush + fsync (durable, as a commit must be);
  - runner:   a background save as the training loop makes it with checkpoints.async on:
              runner.checkpoint.stage_training_state on the loop's thread, then on a writer thread
              the copy to host memory (HostStaging, into buffers kept from one save to the next)
              and write_training_state (torch.distributed.checkpoint shards of raw tensor bytes,
              per-rank state, every file hashed with xxh3_128 while written and fsynced,
              manifest, atomic rename).
              "save": from the save's start to the commit, with the loop idle.
              "blocked": what the loop waits for in a second save, during which it runs a rollout
              (forward passes of the same model, about --rollout seconds alone) and then waits for
              the host copy as the optimizer's step pre-hook does: the save call plus that wait.
              Also printed: the save call plus the whole copy (what a loop with no rollout between
              a save and its next update would wait).
              "load": choose_checkpoint + load_training_state into the second model + optimizer,
              every file verified while it is read.
Before each timed save the disk is settled (os.sync, untimed), so no earlier save's write-back
competes with it. The first round of each is an untimed warm-up. Prints the median seconds and GB/s of each and, as
its last line, the ratios runner / torch (above 1 = the runner is slower):
``save Nx torch.save, blocked Nx, load Nx``.

    .venv/bin/python bench/bench_checkpoint.py [--hidden 768] [--layers 6] [--rounds 3]
                                               [--rollout 0.5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from runner import checkpoint  # noqa: E402
from runner.checkpoint import (  # noqa: E402
    CheckpointStore,
    HostCopy,
    HostStaging,
    stage_training_state,
    write_training_state,
)
from runner.checkpoint_io import hash_file  # noqa: E402
from runner.checkpoint_load import choose_checkpoint, load_training_state  # noqa: E402
from runner.model import build_tiny_model, build_tokenizer  # noqa: E402

GB = 1e9


def build(hidden: int, layers: int, seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = build_tiny_model(build_tokenizer(), hidden=hidden, layers=layers,
                             heads=max(hidden // 64, 1), seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for p in model.parameters():  # one step, so the optimizer has its two moments per parameter
        p.grad = torch.randn_like(p) * 1e-3
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model, optimizer


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    tensors = list(model.state_dict().values())
    tensors += [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return sum(t.numel() * t.element_size() for t in tensors)


def settle() -> None:
    """Untimed, before each timed save: no write-back of an earlier save (the peer's page-cache
    file, or ours) is still going to the disk when the next one starts."""
    os.sync()


def torch_round(folder: Path, model, optimizer, other, other_opt) -> tuple[float, float, float]:
    """(torch.save, torch.load + load_state_dict, torch.save with flush + fsync) seconds."""
    path = folder / "plain.pt"
    settle()
    t0 = time.perf_counter()
    torch.save({"model": model.state_dict(), "optim": optimizer.state_dict()}, path)
    t1 = time.perf_counter()
    loaded = torch.load(path, weights_only=True)
    other.load_state_dict(loaded["model"])
    other_opt.load_state_dict(loaded["optim"])
    t2 = time.perf_counter()
    path.unlink()
    durable = folder / "durable.pt"
    settle()
    t3 = time.perf_counter()
    with open(durable, "wb") as f:
        torch.save({"model": model.state_dict(), "optim": optimizer.state_dict()}, f)
        f.flush()
        os.fsync(f.fileno())
    t4 = time.perf_counter()
    durable.unlink()
    return t1 - t0, t2 - t1, t4 - t3


def rollout(model: torch.nn.Module, passes: int) -> float:
    """Seconds for ``passes`` forward passes without gradients: a stand-in for generation, which
    reads the weights and changes nothing the checkpoint holds."""
    ids = torch.randint(4, 60, (8, 64))
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(passes):
            model(input_ids=ids)
    return time.perf_counter() - t0


def background_save(store: CheckpointStore, host: HostCopy, model, optimizer,
                    work: Callable[[], float] | None) -> tuple[float, float, float]:
    """One save as the loop makes it: (seconds to the commit, seconds the loop was blocked,
    seconds of ``work`` done meanwhile). ``work``: what the loop does before its next optimizer
    step; None: the loop waits for the host copy at once (blocked = the call + the whole copy)."""
    outcome: list[checkpoint.SaveOutcome] = []
    settle()
    t0 = time.perf_counter()
    staged = stage_training_state(1, model=model, optimizer=optimizer,
                                  rank_state={"torch_rng": torch.get_rng_state()},
                                  trainer_state={"step": 1})
    staging = HostStaging(host, staged.state)
    writer = threading.Thread(target=lambda: outcome.append(write_training_state(
        store, staged, rank=0, device="cpu", metric=None, metric_name="none", staging=staging)))
    writer.start()
    call = time.perf_counter() - t0
    worked = work() if work is not None else 0.0
    staging.wait()  # what the optimizer's step pre-hook does
    blocked = call + staging.waited
    writer.join()
    total = time.perf_counter() - t0
    if not outcome or not outcome[0].ok:
        raise SystemExit(f"bench_checkpoint: the save failed: {outcome[0].error if outcome else 'no outcome'}")
    return total, blocked, worked


def runner_round(folder: Path, host: HostCopy, model, optimizer, other, other_opt,
                 passes: int) -> tuple[float, float, float, float, float]:
    """(seconds to the commit, blocked behind a rollout, seconds to load, seconds of that rollout,
    blocked with no rollout: the save call + the whole copy)."""
    store = CheckpointStore(folder / "ck", save_best_only=False, keep_last=1)
    save_s, copy_s, _ = background_save(store, host, model, optimizer, None)
    t1 = time.perf_counter()
    chosen, _ = choose_checkpoint(store, rank=0)
    assert chosen is not None
    load_training_state(chosen.path, model=other, optimizer=other_opt, rank=0)
    load_s = time.perf_counter() - t1
    shutil.rmtree(store.root)
    _, blocked, worked = background_save(store, host, model, optimizer, lambda: rollout(model, passes))
    shutil.rmtree(store.root)
    return save_s, blocked, load_s, worked, copy_s


def hashing_seconds(folder: Path, model, optimizer) -> float:
    """xxh3_128 of every file of one checkpoint, alone (what the save and the load do in-stream)."""
    store = CheckpointStore(folder / "hash", save_best_only=False, keep_last=1)
    staged = stage_training_state(1, model=model, optimizer=optimizer, rank_state={},
                                  trainer_state={"step": 1})
    out = write_training_state(store, staged, rank=0, device="cpu", metric=None, metric_name="none")
    assert out.committed is not None
    t0 = time.perf_counter()
    for f in out.committed.path.iterdir():
        hash_file(f)
    seconds = time.perf_counter() - t0
    shutil.rmtree(store.root)
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rollout", type=float, default=0.5,
                    help="seconds of forward passes (alone) the loop runs while a save is in flight")
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.dir is not None:
        try:
            args.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            ap.error(f"--dir {args.dir}: cannot create it ({exc.strerror}); give a writable folder")

    model, optimizer = build(args.hidden, args.layers, seed=0)
    other, other_opt = build(args.hidden, args.layers, seed=1)
    model.eval()
    size = state_bytes(model, optimizer)
    rollout(model, 1)  # warm
    one_pass = min(rollout(model, 1) for _ in range(3))
    passes = max(1, round(args.rollout / one_pass))
    alone = statistics.median(rollout(model, passes) for _ in range(3))
    folder = Path(tempfile.mkdtemp(prefix="rp-ckbench-", dir=args.dir))
    print(f"state: model + AdamW, {size / GB:.3f} GB; writing under {folder}")
    host = HostCopy()  # the training loop keeps its host buffers from one save to the next
    plain: list[tuple[float, float, float]] = []
    ours: list[tuple[float, float, float, float, float]] = []
    try:
        for i in range(args.rounds + 1):  # round 0 warms caches, imports and the host buffers, untimed
            p = torch_round(folder, model, optimizer, other, other_opt)
            o = runner_round(folder, host, model, optimizer, other, other_opt, passes)
            if i:
                plain.append(p)
                ours.append(o)
        hashing = hashing_seconds(folder, model, optimizer)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def med(rows: list[tuple[float, ...]], k: int) -> float:
        return statistics.median(r[k] for r in rows)

    t_save, t_load, t_durable = (med(plain, k) for k in range(3))  # type: ignore[arg-type]
    r_save, r_blocked, r_load, r_worked, r_copy = (med(ours, k) for k in range(5))  # type: ignore[arg-type]
    gb = size / GB
    print(f"{'':26}{'save s':>9}{'s/GB':>8}{'load s':>9}{'s/GB':>8}")
    print(f"{'torch.save/torch.load':26}{t_save:9.3f}{t_save / gb:8.3f}{t_load:9.3f}{t_load / gb:8.3f}")
    print(f"{'runner checkpoint':26}{r_save:9.3f}{r_save / gb:8.3f}{r_load:9.3f}{r_load / gb:8.3f}")
    print(f"{'torch.save + fsync':26}{t_durable:9.3f}{t_durable / gb:8.3f}   (durable, as the runner's commit)")
    print(f"runner save / (torch.save + fsync): {r_save / t_durable:.2f}x")
    print(f"loop blocked, a rollout of {alone:.2f} s alone ({r_worked:.2f} s beside the save) before "
          f"the next update: {r_blocked:.3f} s ({r_blocked / t_save:.2f}x torch.save)")
    print(f"loop blocked, no rollout between the save and the next update (the call + the whole "
          f"copy to host memory): {r_copy:.3f} s ({r_copy / t_save:.2f}x torch.save)")
    print(f"xxh3_128 of every file alone (done in-stream by save and load): {hashing:.3f} s "
          f"({hashing / gb:.3f} s/GB); median of {args.rounds} rounds")
    print(f"save {r_save / t_save:.2f}x torch.save, blocked {r_blocked / t_save:.2f}x, "
          f"load {r_load / t_load:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
