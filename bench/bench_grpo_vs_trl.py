"""Our RL training step against TRL's GRPOTrainer: completions per second, single process on CPU.

Both sides train the same tiny model (runner.model: the char tokenizer and the 2-layer Llama built
from the same seed) on the same built-in arithmetic prompts, with the same batch (completions per
step), group size, completion length, temperature, learning rate and DAPO-style loss (token-level
average, beta = 0: no reference model). A step is: sample the group completions, score them with
the same exact-answer reward, compute advantages, one policy-gradient update. Steps after the first
(warm-up) ones are timed; validation and logging are left out on both sides.

Goal (issue 4): at least as fast as TRL. Needs `pip install trl` (the bench extra).

    python bench/bench_grpo_vs_trl.py [--steps 30] [--batch 64] [--group 8] [--tokens 16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

WARMUP_STEPS = 3


def spec_for(run_dir: Path, args: argparse.Namespace):
    from preflight.spec import load_spec

    # a fresh run dir for every measurement: on one with checkpoints the runner would resume
    text = f"""
run: {{name: bench, domain: math, run_dir: {run_dir}}}
storage: {{checkpoint_dir: {run_dir}/checkpoints}}
model: {{name_or_path: tiny}}
training:
  batch_size: {args.batch}
  group_size: {args.group}
  learning_rate: 1.0e-4
  temperature: 1.0
  max_steps: {args.steps}
  eval_interval: {args.steps}
  val_prompts: 1
  max_prompt_tokens: 16
  max_response_tokens: {args.tokens}
  task_difficulty: [easy]
  task_rows: 2000
algorithm: {{loss: ppo_clip, loss_aggregation: token, kl_beta: 0.0}}
checkpoints: {{save_interval: {args.steps * 10}}}
monitoring: {{sinks: [jsonl]}}
"""
    run_dir.mkdir(parents=True)
    path = run_dir / "bench.yaml"
    path.write_text(text)
    return load_spec(path)


def ours_side(args: argparse.Namespace, tmp: Path) -> float:
    """Completions per second of runner.train's RL steps (timed between step events)."""
    from runner.train import train

    run_dir = Path(tempfile.mkdtemp(prefix="ours-", dir=tmp))
    spec = spec_for(run_dir / "run", args)
    summary = train(spec, run_dir / "run", max_steps=args.steps, warm_start_steps=0)
    with open(summary["events"]) as f:
        steps = [json.loads(line) for line in f if '"type": "step"' in line]
    timed = steps[WARMUP_STEPS:]
    seconds = timed[-1]["time"] - steps[WARMUP_STEPS - 1]["time"]
    return len(timed) * args.batch / seconds


def trl_side(args: argparse.Namespace, tmp: Path) -> float:
    """Completions per second of trl.GRPOTrainer's training steps (timed by a callback)."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from preflight.arithmetic import generate
    from runner.model import load_policy
    from runner.rewards import math_reward

    model, tokenizer = load_policy("tiny")
    rows = [r for r in generate(5000, seed=0, with_expression=True) if r["difficulty"] == "easy"]
    data = Dataset.from_list([{"prompt": f"{r['expression']} =", "answer": r["answer"]} for r in rows])

    def reward(prompts, completions, answer, **_):
        return math_reward(prompts, completions, [{"answer": a} for a in answer])

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())

    config = GRPOConfig(
        output_dir=str(tmp / "trl"), use_cpu=True, report_to="none", save_strategy="no",
        logging_steps=10 ** 6, max_steps=args.steps, per_device_train_batch_size=args.batch,
        num_generations=args.group, max_completion_length=args.tokens, temperature=1.0,
        learning_rate=1e-4, beta=0.0, loss_type="dapo", num_iterations=1, seed=0,
        dataloader_num_workers=0, bf16=False, fp16=False)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=reward,
                          args=config, train_dataset=data, callbacks=[Clock()])
    trainer.train()
    timed = stamps[WARMUP_STEPS:]
    return len(timed) * args.batch / (timed[-1] - stamps[WARMUP_STEPS - 1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64, help="completions per step")
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=16, help="max completion tokens")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    try:
        import trl  # noqa: F401
    except ImportError:
        print("trl is not installed: pip install trl (or pip install -e '.[bench]')", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-trl-") as tmp_name:
        tmp = Path(tmp_name)
        # interleaved so machine load drifts hit both sides alike
        results: dict[str, list[float]] = {"ours": [], "trl": []}
        for _ in range(2):
            results["ours"].append(ours_side(args, tmp))
            results["trl"].append(trl_side(args, tmp))
    best = {k: max(v) for k, v in results.items()}
    print(f"batch {args.batch} completions ({args.batch // args.group} prompts x group {args.group}), "
          f"{args.tokens} new tokens, {args.steps} steps ({WARMUP_STEPS} warm-up), "
          f"{args.threads} threads, best of 2")
    print(f"  runner.train       {best['ours']:8.1f} completions/s   runs {[round(x, 1) for x in results['ours']]}")
    print(f"  trl GRPOTrainer    {best['trl']:8.1f} completions/s   runs {[round(x, 1) for x in results['trl']]}")
    ratio = best["ours"] / best["trl"]
    print(f"  ratio ours / TRL   {ratio:8.2f}x   (goal >= 1.0: {'met' if ratio >= 1.0 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
