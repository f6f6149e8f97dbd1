"""Checkpoint save and load speed, seconds per GB, against a plain torch.save / torch.load.

Builds a randomly initialized Llama (runner.model.build_tiny_model, widened; by default hidden 768,
6 layers: about 0.7 GB of model + AdamW state after one optimizer step), then alternately, in a
temporary directory:
  - peer:     torch.save({"model": state_dict, "optim": optimizer.state_dict()}) to one file, and
              torch.load of it into a second model + optimizer (load_state_dict);
  - runner:   runner.checkpoint.save_training_state (torch.distributed.checkpoint shards, per-rank
              state, manifest with sha256 of every file, fsync, atomic rename), and
              choose_checkpoint (verifies every checksum) + load_training_state into the second
              model + optimizer.
The first round of each is an untimed warm-up. Prints the median seconds and GB/s of each and the
ratios runner / torch (above 1 = the runner is slower). The runner does strictly more work: it
hashes every byte and fsyncs before the rename, and verifies every checksum before a load; the
last line splits out how much of the runner's time was that hashing.

    .venv/bin/python bench/bench_checkpoint.py [--hidden 768] [--layers 6] [--rounds 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from runner.checkpoint import (  # noqa: E402
    CheckpointStore,
    choose_checkpoint,
    load_training_state,
    save_training_state,
    sha256_file,
)
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


def torch_round(folder: Path, model, optimizer, other, other_opt) -> tuple[float, float]:
    path = folder / "plain.pt"
    t0 = time.perf_counter()
    torch.save({"model": model.state_dict(), "optim": optimizer.state_dict()}, path)
    t1 = time.perf_counter()
    loaded = torch.load(path, weights_only=True)
    other.load_state_dict(loaded["model"])
    other_opt.load_state_dict(loaded["optim"])
    t2 = time.perf_counter()
    path.unlink()
    return t1 - t0, t2 - t1


def runner_round(folder: Path, model, optimizer, other, other_opt) -> tuple[float, float, float]:
    store = CheckpointStore(folder / "ck", save_best_only=False, keep_last=1)
    t0 = time.perf_counter()
    out = save_training_state(store, 1, model=model, optimizer=optimizer, rank=0, device="cpu",
                              rank_state={"torch_rng": torch.get_rng_state()},
                              trainer_state={"step": 1}, metric=None, metric_name="none")
    t1 = time.perf_counter()
    if not out.ok:
        raise SystemExit(f"bench_checkpoint: the save failed: {out.error}")
    chosen, _ = choose_checkpoint(store, rank=0)
    assert chosen is not None
    load_training_state(chosen.path, model=other, optimizer=other_opt, rank=0)
    t2 = time.perf_counter()
    h0 = time.perf_counter()
    for f in chosen.path.rglob("*"):
        if f.is_file():
            sha256_file(f)
    hashing = time.perf_counter() - h0
    shutil.rmtree(store.root)
    return t1 - t0, t2 - t1, hashing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.dir is not None:
        try:
            args.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            ap.error(f"--dir {args.dir}: cannot create it ({exc.strerror}); give a writable folder")

    model, optimizer = build(args.hidden, args.layers, seed=0)
    other, other_opt = build(args.hidden, args.layers, seed=1)
    size = state_bytes(model, optimizer)
    folder = Path(tempfile.mkdtemp(prefix="rp-ckbench-", dir=args.dir))
    print(f"state: model + AdamW, {size / GB:.3f} GB; writing under {folder}")
    plain: list[tuple[float, float]] = []
    ours: list[tuple[float, float, float]] = []
    try:
        for i in range(args.rounds + 1):  # round 0 warms caches and imports, untimed
            p, o = torch_round(folder, model, optimizer, other, other_opt), \
                runner_round(folder, model, optimizer, other, other_opt)
            if i:
                plain.append(p)
                ours.append(o)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    t_save, t_load = med([p[0] for p in plain]), med([p[1] for p in plain])
    r_save, r_load = med([o[0] for o in ours]), med([o[1] for o in ours])
    hashing = med([o[2] for o in ours])
    gb = size / GB
    print(f"{'':24}{'save s':>9}{'s/GB':>8}{'load s':>9}{'s/GB':>8}")
    print(f"{'torch.save/torch.load':24}{t_save:9.3f}{t_save / gb:8.3f}{t_load:9.3f}{t_load / gb:8.3f}")
    print(f"{'runner checkpoint':24}{r_save:9.3f}{r_save / gb:8.3f}{r_load:9.3f}{r_load / gb:8.3f}")
    print(f"ratio runner / torch: save {r_save / t_save:.2f}x, load {r_load / t_load:.2f}x "
          f"(median of {args.rounds} rounds)")
    print(f"of which sha256 of every file (once per save, once per verified load): {hashing:.3f} s "
          f"({hashing / gb:.3f} s/GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
