"""A real TRL GRPOTrainer run on CPU for tests/test_monitor_trl_live.py: the project's tiny model
and tokenizer (runner.model, built locally from a seed: nothing downloaded), the built-in arithmetic
prompts, TensorBoard logging on, and completions cut at 4 tokens so most of them are truncated.

    python tests/trl_grpo_tiny.py OUTPUT_DIR [--steps 30]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--step-delay", type=float, default=0.0,
                        help="sleep after each step, so a follower sees the run while it is running")
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from preflight.arithmetic import generate
    from runner.model import load_policy
    from runner.rewards import math_reward

    torch.manual_seed(0)
    torch.set_num_threads(1)
    model, tokenizer = load_policy("tiny")
    rows = [r for r in generate(400, seed=0, with_expression=True) if r["difficulty"] == "easy"]
    data = Dataset.from_list([{"prompt": f"{r['expression']} =", "answer": r["answer"]} for r in rows])

    def reward(prompts, completions, answer, **_):  # type: ignore[no-untyped-def]
        return math_reward(prompts, completions, [{"answer": a} for a in answer])

    class Pace(TrainerCallback):
        def on_log(self, *a, **k):  # type: ignore[no-untyped-def]
            time.sleep(args.step_delay)

    config = GRPOConfig(
        output_dir=args.output_dir, use_cpu=True, report_to=["tensorboard"], save_strategy="no",
        logging_steps=1, max_steps=args.steps, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=4, temperature=1.0, learning_rate=1e-4, beta=0.0, seed=0,
        dataloader_num_workers=0, bf16=False, fp16=False)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=reward, args=config,
                          train_dataset=data, callbacks=[Pace()])
    trainer.train()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
