"""The basic algorithm test (pre-start checklist): a few RL steps of the spec's algorithm on the tiny
model, in this process, judged on what breaks runs early.

``python -m runner.smoke SPEC [--steps N] [--json]`` is what the ``algo.smoke`` check runs (as a child
process, so ``preflight check`` itself never imports torch). It passes when

- the reward is not degenerate: the spec's verifier scores the train split's reference answers
  above corrupted ones (a verifier that always says 0 or always 1 gives RL nothing to learn from);
- every step's loss and gradient norm are finite;
- the parameters moved (the optimizer really steps: no frozen model, no zero learning rate, no
  advantages that are all zero).

A randomly initialized tiny model almost never solves a prompt, so its own groups would all score 0
and carry no gradient. One completion of each group is therefore the row's reference answer (a known
positive, as in expert-augmented rollouts); the other G-1 are sampled from the policy. The update then
runs exactly the spec's loss: advantages (std scaling, batch normalization, zero-variance filter),
overlong shaping, PPO-clip or CISPO, the aggregation, the optional k3 KL to a frozen reference,
gradient clipping.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from preflight.errors import PreflightError
from preflight.spec import Spec, load_spec

from .algo import finite, policy_loss
from .config import ConfigError, DataConfig
from .data import encode_prompts, load_rows
from .model import build_tiny_model, build_tokenizer
from .policy import FP32LMHead
from .rewards import reward_for
from .rollout import (
    LossFn,
    RewardShaping,
    Rollout,
    generate,
    loss_config,
    policy_backward,
    score_groups,
    sequence_logprobs,
)

SMOKE_PROMPTS = 4  # prompts per step: enough for a group-relative signal, small enough to be quick
SMOKE_GROUP_MAX = 8
SMOKE_NEW_TOKENS_MAX = 16
CPU = torch.device("cpu")


@dataclass
class SmokeResult:
    ok: bool
    problems: list[str] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)
    reward_reference: float = float("nan")  # mean reward of the reference answers
    reward_corrupted: float = float("nan")  # mean reward of corrupted reference answers
    policy_pass_rate: float = float("nan")  # the sampled completions alone (not the references)
    param_change: float = 0.0  # ||theta_after - theta_before|| / ||theta_before||
    algorithm: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def corrupt(answer: str) -> str:
    """A wrong answer of the same shape: the last digit changed, or a suffix for non-numbers."""
    text = str(answer)
    for i in range(len(text) - 1, -1, -1):
        if text[i].isdigit():
            return text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1:]
    return text + " (wrong)"


def run_smoke(spec: Spec, steps: int = 3, loss_fn: LossFn = policy_loss) -> SmokeResult:
    """Run ``steps`` RL updates of the spec's algorithm on the tiny model; never raises for a
    finding (a crash inside the algorithm is reported as a problem). ``loss_fn``: the policy loss
    (a test plants a broken one)."""
    t0 = time.time()
    torch.manual_seed(int(spec.get("training.seed", 0)))
    smoke = _Smoke(spec, loss_fn)
    result = smoke.result
    try:
        reward_fn = reward_for(spec)
    except Exception as exc:  # an unknown name or a broken plug-in: say which, do not crash
        result.problems.append(f"cannot load the reward: {exc}")
        return _done(result, t0)
    try:
        data = DataConfig.from_spec(spec)
    except ConfigError as exc:  # data the runner would refuse: a finding, not a crash
        result.problems.append(str(exc))
        return _done(result, t0)
    rows = [r for r in load_rows(data, smoke.tokenizer, [], smoke.max_prompt)[0] if _reference(r) is not None]
    if not rows:
        result.problems.append("no train row has a reference answer ('answer') to check the reward "
                               "against; the smoke test needs one")
        return _done(result, t0)
    rows = rows[:SMOKE_PROMPTS * steps]
    smoke.check_reward(reward_fn, rows, str(spec.get("run.domain")))
    smoke.train(reward_fn, rows, steps)
    result.ok = not result.problems
    return _done(result, t0)


class _Smoke:
    """The tiny model with the spec's algorithm settings, and the result it fills in."""

    def __init__(self, spec: Spec, loss_fn: LossFn) -> None:
        cfg = spec.get
        self.group = min(int(cfg("training.group_size")), SMOKE_GROUP_MAX)
        self.max_new = min(int(cfg("training.max_response_tokens")), SMOKE_NEW_TOKENS_MAX)
        self.max_prompt = int(cfg("training.max_prompt_tokens"))
        self.temperature = float(cfg("training.temperature"))
        self.lr = float(cfg("training.learning_rate"))
        self.grad_clip = float(cfg("training.grad_clip"))
        self.loss_cfg = loss_config(spec)
        self.shaping = RewardShaping.from_spec(spec)
        self.loss_fn = loss_fn
        self.result = SmokeResult(ok=False, algorithm={**vars(self.loss_cfg), "group_size": self.group,
                                                       "max_new_tokens": self.max_new})
        self.tokenizer = build_tokenizer()
        self.model = build_tiny_model(self.tokenizer, max_positions=max(256, self.max_prompt + self.max_new))
        if bool(cfg("algorithm.fp32_lm_head")):
            self.model.set_output_embeddings(FP32LMHead(self.model.get_output_embeddings()))
        self.reference = (copy.deepcopy(self.model).requires_grad_(False) if self.loss_cfg.kl_beta > 0
                          else None)

    def check_reward(self, reward_fn: Any, rows: list[dict], domain: str) -> None:
        """The reward: references must score above corrupted references."""
        result = self.result
        prompts = [r["prompt"] for r in rows]
        good = reward_fn(prompts, [str(_reference(r)) for r in rows], rows)
        bad = reward_fn(prompts, [corrupt(str(_reference(r))) for r in rows], rows)
        result.reward_reference, result.reward_corrupted = _mean(good), _mean(bad)
        if not result.reward_reference > result.reward_corrupted:
            result.problems.append(
                f"degenerate reward: reference answers score {result.reward_reference:.2f} and "
                f"corrupted ones {result.reward_corrupted:.2f}; the verifier for run.domain="
                f"{domain!r} cannot tell right from wrong")

    def train(self, reward_fn: Any, rows: list[dict], steps: int) -> None:
        """A few updates; a step that raises ends them (a finding)."""
        before = torch.cat([p.detach().flatten().clone() for p in self.model.parameters()])
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=0.0)
        sampled_rewards: list[float] = []
        for step in range(steps):
            batch = rows[step * SMOKE_PROMPTS:(step + 1) * SMOKE_PROMPTS] or rows[:SMOKE_PROMPTS]
            if not self.step(step + 1, batch, reward_fn, optimizer, sampled_rewards):
                return
        after = torch.cat([p.detach().flatten() for p in self.model.parameters()])
        self.result.param_change = float((after - before).norm() / before.norm().clamp(min=1e-12))
        self.result.policy_pass_rate = _mean(sampled_rewards)
        if not self.result.param_change > 0:
            self.result.problems.append("the parameters did not move: check training.learning_rate "
                                        "and that advantages are not all zero (see reward_reference "
                                        "above)")

    def step(self, step: int, batch: list[dict], reward_fn: Any, optimizer: torch.optim.Optimizer,
             sampled_rewards: list[float]) -> bool:
        """One update on ``batch``; False when it raised (the smoke test ends there)."""
        group = self.group
        enc, seqs, mask, truncated = self._rollouts_with_references(batch)
        width = enc["input_ids"].shape[1]
        texts = self.tokenizer.batch_decode(seqs[:, width:], skip_special_tokens=True)
        group_rows = [r for r in batch for _ in range(group)]
        raw = torch.tensor(reward_fn([r["prompt"] for r in group_rows], texts, group_rows), dtype=torch.float32)
        sampled_rewards += [float(x) for i, x in enumerate(raw) if i % group != group - 1]
        adv, keep = score_groups(self.shaping, self.loss_cfg, raw, mask.sum(dim=1), group, self.max_new)
        loss_mask = mask * keep.repeat_interleave(group).unsqueeze(1).float()
        attn = torch.cat([enc["attention_mask"].repeat_interleave(group, dim=0), mask.long()], dim=1)
        try:
            with torch.no_grad():
                ref_logp = (sequence_logprobs(self.reference, seqs, attn, self.max_new)[0]
                            if self.reference is not None else None)
            self.model.train()
            rollout = Rollout(seqs, attn, self.max_new, adv, loss_mask, group, ref_logp)
            loss, _stats, grad_norm, _, _ = policy_backward(
                self.model, optimizer, self.loss_cfg, rollout, None, self.grad_clip, self.loss_fn)
        except Exception as exc:  # a bug in a loss piece is a finding, not a crash of the check
            self.result.problems.append(f"step {step}: the update raised {type(exc).__name__}: {exc}")
            return False
        loss_value, gn = float(loss.detach()), float(grad_norm)
        self.result.steps.append({"step": step, "loss": loss_value, "grad_norm": gn,
                                  "reward_mean": float(raw.mean()), "adv_abs_mean": float(adv.abs().mean()),
                                  "truncation_rate": float(truncated.float().mean())})
        if not finite(loss_value, gn):
            self.result.problems.append(f"step {step}: non-finite loss ({loss_value}) or gradient norm ({gn})")
        else:
            optimizer.step()
        return True

    def _rollouts_with_references(self, batch: list[dict]) -> tuple[dict[str, torch.Tensor], torch.Tensor,
                                                                    torch.Tensor, torch.Tensor]:
        """G-1 sampled completions per prompt and, last in each group, the row's reference answer
        (EOS-terminated): (encoded prompts, sequences, completion mask, truncated)."""
        tokenizer, group = self.tokenizer, self.group
        enc = encode_prompts(tokenizer, [r["prompt"] for r in batch], self.max_prompt, CPU)
        self.model.eval()
        seqs, mask, truncated = generate(self.model, tokenizer, enc, max_new_tokens=self.max_new,
                                         temperature=self.temperature, repeat=group)
        width = enc["input_ids"].shape[1]
        for p, row in enumerate(batch):
            ids = tokenizer(f" {_reference(row)}{tokenizer.eos_token}",
                            add_special_tokens=False)["input_ids"][:self.max_new]
            i = p * group + group - 1
            seqs[i, width:] = tokenizer.pad_token_id
            seqs[i, width:width + len(ids)] = torch.tensor(ids)
            mask[i] = 0.0
            mask[i, :len(ids)] = 1.0
        return enc, seqs, mask, truncated


def _reference(row: dict) -> Any:
    return row.get("answer") if row.get("answer") not in (None, "") else None


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _done(result: SmokeResult, t0: float) -> SmokeResult:
    result.ok = result.ok and not result.problems
    result.seconds = time.time() - t0
    return result


def _json_safe(value: Any) -> Any:
    """NaN and infinities as null: the output is strict JSON for any reader."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.smoke", description=__doc__.split("\n")[0])
    parser.add_argument("spec", help="the run spec (YAML)")
    parser.add_argument("--steps", type=int, default=3, help="RL updates to run (default 3)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(Path(args.spec))
    except PreflightError as exc:
        print(exc, file=sys.stderr)
        return 2
    result = run_smoke(spec, steps=max(args.steps, 1))
    if args.json:
        print(json.dumps(_json_safe(asdict(result))))
    else:
        verdict = "ok" if result.ok else "FAILED"
        print(f"algorithm smoke test {verdict} in {result.seconds:.1f} s: "
              f"{len(result.steps)} steps, parameters moved {result.param_change:.2e}")
        for s in result.steps:
            print(f"  step {s['step']}: loss {s['loss']:.4g} grad_norm {s['grad_norm']:.4g} "
                  f"reward {s['reward_mean']:.2f}")
        for p in result.problems:
            print(f"  problem: {p}")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
