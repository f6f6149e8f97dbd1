"""Micro-batching, activation checkpointing and chunked generation in the runner, on the tiny model
(CPU, one process): each gives what the one-pass run gives, within float tolerance.

training.micro_batch_size splits a rank's share into forward/backward passes whose gradients add
up; the loss normalizer is the whole batch's (a token mean divides by every micro-batch's tokens
together), so the gradients, the reported loss and the stats match the one pass for every
loss_aggregation and for the updates after the first. training.gradient_checkpointing recomputes
each decoder layer's activations; training.generation_batch_size generates whole groups a chunk at
a time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from test_runner_train import free_port, gloo_rank

from preflight.spec import load_spec
from runner.algo import AGGREGATIONS, LossConfig, aggregate, aggregation_weights
from runner.config import BatchPlan, ConfigError, TrainConfig, WarmStartConfig
from runner.data import PromptSampler, encode_prompts
from runner.model import build_tiny_model, build_tokenizer
from runner.policy import build_policy
from runner.rollout import (
    Rollout,
    generate,
    generate_in_chunks,
    micro_slices,
    policy_backward,
    reference_logprobs,
)
from runner.train import Trainer
from runner.warm_start import _answer_backward, warm_start

GROUP = 4
PROMPTS = ["1+2=", "7*3=", "10-4=", "9+9=", "2*8=", "5+6="]


def _model() -> tuple[Any, Any]:
    tok = build_tokenizer()
    return build_tiny_model(tok), tok


def _rollout(model: Any, tok: Any, kl: bool, seed: int = 0) -> Rollout:
    """Six prompts x 4 sampled completions with uneven lengths, one group filtered out (all-zero
    loss mask) and one completion with no token in the loss, as score_groups leaves them."""
    torch.manual_seed(seed)
    enc = encode_prompts(tok, PROMPTS, 16, torch.device("cpu"))
    seqs, mask, _ = generate(model, tok, enc, max_new_tokens=6, temperature=1.0, repeat=GROUP)
    rows = seqs.shape[0]
    mask = mask.clone()
    mask[GROUP:2 * GROUP] = 0  # a group the zero-variance filter dropped
    mask[3, 2:] = 0  # completions of different lengths
    mask[5] = 0
    adv = torch.randn(rows)
    attn = torch.cat([enc["attention_mask"].repeat_interleave(GROUP, dim=0), torch.ones_like(mask).long()], dim=1)
    ref = reference_logprobs(build_tiny_model(tok, seed=1), seqs, attn, 6) if kl else None
    return Rollout(seqs, attn, 6, adv, mask, GROUP, ref)


def _grads(model: Any) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _update(model: Any, cfg: LossConfig, rollout: Rollout, micro: int | None, updates: int = 2) -> list[Any]:
    """``updates`` clipped updates on one rollout (GRPO's mu), stepping between them; returns each
    update's (loss, stats, grad norm, gradients, old_logp, entropy)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    out, old = [], None
    model.train()
    for _ in range(updates):
        loss, stats, gn, old_logp, ent = policy_backward(model, opt, cfg, rollout, old, 0.5, micro=micro)
        out.append((float(loss.detach()), stats, float(gn), _grads(model), old_logp, ent))
        old = old_logp
        opt.step()
    return out


@pytest.mark.parametrize("rows, micro, expected", [
    (8, None, [(0, 8)]), (8, 8, [(0, 8)]), (8, 16, [(0, 8)]), (8, 4, [(0, 4), (4, 8)]), (8, 3, [(0, 3), (3, 6), (6, 8)]),
])
def test_micro_slices(rows: int, micro: int | None, expected: list[tuple[int, int]]) -> None:
    assert [(s.start, s.stop) for s in micro_slices(rows, micro)] == expected


@pytest.mark.parametrize("mode", AGGREGATIONS)
def test_aggregation_weights_give_the_aggregate(mode: str) -> None:
    torch.manual_seed(0)
    per_token = torch.randn(12, 5)
    mask = (torch.rand(12, 5) > 0.4).float()
    mask[4:8] = 0  # an empty group, so "prompt" and "sequence" must leave it out of the mean
    per_token[mask == 0] = float("nan")  # masked-out values never leak
    w = aggregation_weights(mask, mode, 4)
    got = (torch.where(mask.bool(), per_token, torch.zeros(())) * w).sum()
    assert torch.allclose(got, aggregate(per_token, mask, mode, 4), atol=1e-6)
    assert float(aggregation_weights(torch.zeros(4, 3), mode, 2).sum()) == 0.0  # nothing masked in


@pytest.mark.parametrize("loss", ["ppo_clip", "cispo"])
@pytest.mark.parametrize("mode", AGGREGATIONS)
@pytest.mark.parametrize("micro", [1, 3, 8])  # 3: a group split over two micro-batches, a shorter last one
def test_micro_batches_give_the_one_pass_gradients_loss_and_stats(loss: str, mode: str, micro: int) -> None:
    kl = mode != "sequence"  # the KL term rides on two of the aggregations, not on all cases
    cfg = LossConfig(loss=loss, aggregation=mode, eps_low=0.2 if loss == "ppo_clip" else None, eps_high=0.28,
                     kl_beta=0.05 if kl else 0.0)
    model, tok = _model()
    rollout = _rollout(model, tok, kl)
    whole = _update(model, cfg, rollout, None)
    model2, _ = _model()
    split = _update(model2, cfg, rollout, micro)
    for one, parts in zip(whole, split, strict=True):  # the first update and the off-policy second
        loss1, stats1, gn1, grads1, old1, ent1 = one
        loss2, stats2, gn2, grads2, old2, ent2 = parts
        assert loss2 == pytest.approx(loss1, rel=1e-5, abs=1e-7)
        assert gn2 == pytest.approx(gn1, rel=1e-5)
        assert stats2.keys() == stats1.keys() and ("kl" in stats1) == kl
        for key in stats1:
            assert stats2[key] == pytest.approx(stats1[key], rel=1e-5, abs=1e-7), key
        assert grads2.keys() == grads1.keys()
        for name in grads1:
            assert torch.allclose(grads2[name], grads1[name], rtol=1e-4, atol=1e-7), name
        assert torch.allclose(old2, old1, atol=1e-6)
        assert (ent1 is None) == (ent2 is None)
        if ent1 is not None:
            assert torch.allclose(ent2, ent1, atol=1e-5)
    assert whole[1][5] is None  # the entropy comes with the first update only
    assert split[0][1]["clip_frac_high"] == 0.0 and split[1][1]["ratio_mean"] != 1.0  # the second is off-policy


def test_micro_batched_reference_logprobs_are_the_one_pass_ones() -> None:
    model, tok = _model()
    rollout = _rollout(model, tok, kl=False)
    whole = reference_logprobs(model, rollout.seqs, rollout.attn, 6)
    assert torch.allclose(reference_logprobs(model, rollout.seqs, rollout.attn, 6, micro=5), whole, atol=1e-6)


def _config(tmp_path: Path, training: str = "") -> TrainConfig:
    path = tmp_path / "spec.yaml"
    path.write_text(f"""run: {{name: mb, run_dir: {tmp_path / 'run'}}}
hardware: {{gpu_required: false, gpus_per_node: 0}}
model: {{name_or_path: tiny, params_b: 0.001, dtype: fp32}}
training: {{batch_size: 16, group_size: 4, max_prompt_tokens: 16, max_response_tokens: 6, {training}}}
""", encoding="utf-8")
    return TrainConfig.from_spec(load_spec(path))


def test_gradient_checkpointing_gives_the_same_gradients(tmp_path: Path) -> None:
    cfg = LossConfig.dapo()
    grads = []
    for on in (False, True):
        notes: list[str] = []
        config = _config(tmp_path, f"gradient_checkpointing: {str(on).lower()}")
        assert config.gradient_checkpointing is on
        policy = build_policy(config, torch.device("cpu"), 1, notes, given=_model())
        assert any(getattr(m, "gradient_checkpointing", False) for m in policy.model.modules()) is on
        assert any("recomputed in the backward pass" in n for n in notes) is on
        rollout = _rollout(policy.model, policy.tokenizer, kl=False)
        grads.append(_update(policy.model, cfg, rollout, None, updates=1)[0])
    (loss1, _, gn1, g1, _, _), (loss2, _, gn2, g2, _, _) = grads
    assert loss2 == pytest.approx(loss1, rel=1e-6) and gn2 == pytest.approx(gn1, rel=1e-5)
    assert g1.keys() == g2.keys()
    for name in g1:
        assert torch.allclose(g2[name], g1[name], rtol=1e-4, atol=1e-7), name


def test_chunked_generation_decodes_what_one_call_decodes() -> None:
    model, tok = _model()
    enc = encode_prompts(tok, PROMPTS, 16, torch.device("cpu"))
    one = generate(model, tok, enc, max_new_tokens=6, temperature=None, repeat=GROUP)
    for completions in (GROUP, 2 * GROUP, 4 * GROUP, 100):  # 4 groups: a shorter last chunk
        chunked = generate_in_chunks(model, tok, enc, max_new_tokens=6, temperature=None, repeat=GROUP,
                                     completions=completions)
        for a, b in zip(one, chunked, strict=True):
            assert torch.equal(a, b), completions


def test_warm_start_in_micro_batches_takes_the_one_pass_gradients() -> None:
    rows = [{"prompt": p, "answer": str(i)} for i, p in enumerate(PROMPTS * 2)]
    model, tok = _model()
    model.train()
    runs = []
    for micro in (None, 5):
        model.zero_grad(set_to_none=True)
        loss = _answer_backward(model, tok, rows, 16, torch.device("cpu"), micro)
        runs.append((float(loss), _grads(model)))
    (loss1, g1), (loss2, g2) = runs
    assert loss2 == pytest.approx(loss1, rel=1e-6)
    for name in g1:
        assert torch.allclose(g2[name], g1[name], rtol=1e-4, atol=1e-7), name
    # and the warm start passes its micro-batch size down to that loss
    warm_start(model, tok, WarmStartConfig(steps=1, lr=1e-3, target=None),
               sampler=PromptSampler(rows, rank=0, world_size=1, seed=0), batch=12, max_prompt=16,
               grad_clip=1.0, device=torch.device("cpu"), pass_rate=lambda: 0.0, micro=5)


def test_the_batch_plan_refuses_what_does_not_divide_and_names_the_fix(tmp_path: Path) -> None:
    plan = BatchPlan(64, 4, 2, micro=8, generation=16)  # a share of 32: 4 micro-batches, 2 chunks
    assert plan.prompts_per_rank == 8
    assert BatchPlan(64, 4, 2, micro=64, generation=64).micro == 64  # more than the share: one pass
    with pytest.raises(ConfigError, match=r"micro_batch_size 12 must divide each rank's share of the batch, 32 "
                                          r"completions .*such as 8"):
        BatchPlan(64, 4, 2, micro=12)
    with pytest.raises(ConfigError, match=r"generation_batch_size 6 must hold whole groups of training.group_size "
                                          r"4: use a multiple of 4"):
        BatchPlan(64, 4, 2, generation=6)
    with pytest.raises(ConfigError, match=r"generation_batch_size 12 must divide .* such as 8"):
        BatchPlan(64, 4, 2, generation=12)
    config = _config(tmp_path, "micro_batch_size: 4, generation_batch_size: 8")
    assert (config.batch.micro, config.batch.generation, config.gradient_checkpointing) == (4, 8, False)
    plain = _config(tmp_path)
    assert (plain.batch.micro, plain.batch.generation) == (None, None)


def _alternating_reward(prompts: list[str], completions: list[str], rows: list[dict]) -> list[float]:
    return [float(i % 2) for i in range(len(completions))]


def test_a_training_step_in_micro_batches_records_the_one_pass_numbers(tmp_path: Path) -> None:
    steps: list[list[dict[str, Any]]] = []
    for training in ("", "micro_batch_size: 4, gradient_checkpointing: true"):
        path = tmp_path / "spec.yaml"
        run_dir = tmp_path / f"run{len(steps)}"
        path.write_text(f"""run: {{name: mb, run_dir: {run_dir}}}
hardware: {{gpu_required: false, gpus_per_node: 0}}
storage: {{checkpoint_dir: {run_dir}/checkpoints}}
model: {{name_or_path: tiny, params_b: 0.001, dtype: fp32}}
algorithm: {{kl_beta: 0.01, updates_per_batch: 2}}
training: {{batch_size: 16, group_size: 4, max_prompt_tokens: 16, max_response_tokens: 6, max_steps: 2,
           eval_interval: 2, {training}}}
checkpoints: {{save_interval: 10}}
monitoring: {{sinks: [jsonl]}}
""", encoding="utf-8")
        spec = load_spec(path)
        trainer = Trainer(spec, run_dir, policy=_model(), val_limit=4, reward=_alternating_reward)
        trainer.fit()
        events = [e for e in map(json.loads, (run_dir / "events.jsonl").read_text().splitlines())
                  if e["type"] == "step"]
        steps.append(events)
    for one, split in zip(*steps, strict=True):
        for key in ("loss", "grad_norm", "entropy", "clip_frac_low", "clip_frac_high", "pass_rate", "gen_len_mean"):
            assert split[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key


def _fsdp_worker(rank: int, world_size: int, port: int, spec_path: str) -> None:
    import torch.distributed as dist

    with gloo_rank(rank, world_size, port):
        spec = load_spec(spec_path)
        Trainer(spec, spec.run_dir, rank=rank, world_size=world_size, val_limit=4,
                reward=_alternating_reward).fit()
        dist.barrier()


@pytest.mark.slow
def test_two_fsdp2_ranks_in_micro_batches_record_the_one_pass_numbers(tmp_path: Path) -> None:
    """Under FSDP2 (2 CPU ranks, gloo) each micro-batch's backward reduce-scatters into the sharded
    gradients: the step's loss, gradient norm and stats are the one-pass ones; with generation
    chunks every rank makes the same number of generate calls and the run completes."""
    runs = {}
    for name, training in (("one pass", ""), ("micro", "micro_batch_size: 2, gradient_checkpointing: true"),
                           ("chunks", "micro_batch_size: 4, generation_batch_size: 4")):
        run_dir = tmp_path / name.replace(" ", "-")
        path = tmp_path / f"{run_dir.name}.yaml"
        path.write_text(f"""run: {{name: mb, run_dir: {run_dir}}}
hardware: {{gpu_required: false, gpus_per_node: 0}}
distributed: {{cpu_workers: 2}}
storage: {{checkpoint_dir: {run_dir}/checkpoints}}
model: {{name_or_path: tiny, params_b: 0.001, dtype: fp32}}
algorithm: {{kl_beta: 0.01}}
training: {{batch_size: 16, group_size: 4, max_prompt_tokens: 16, max_response_tokens: 6, max_steps: 1,
           eval_interval: 1, {training}}}
checkpoints: {{save_interval: 10}}
monitoring: {{sinks: [jsonl]}}
""", encoding="utf-8")
        torch.multiprocessing.spawn(_fsdp_worker, args=(2, free_port(), str(path)), nprocs=2, join=True)
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
        runs[name] = [e for e in events if e["type"] == "step"]
        assert events[-1]["type"] == "run_end" and events[-1]["status"] == "completed", events[-1]
    one, micro = runs["one pass"][0], runs["micro"][0]
    assert one["grad_norm"] > 0
    for key in ("loss", "grad_norm", "entropy", "clip_frac_low", "clip_frac_high", "pass_rate"):
        assert micro[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key
    assert len(runs["chunks"]) == 1 and runs["chunks"][0]["grad_norm"] > 0


def _reference_worker(rank: int, world_size: int, port: int, spec_path: str, out: str) -> None:
    import copy

    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    with gloo_rank(rank, world_size, port):
        torch.manual_seed(0)
        model, tok = _model()
        whole = copy.deepcopy(model)  # the same weights, never sharded
        notes: list[str] = []
        policy = build_policy(TrainConfig.from_spec(load_spec(spec_path)), torch.device("cpu"), world_size, notes,
                              given=(model, tok))
        assert policy.reference is not None
        params = list(policy.reference.parameters())
        sharded = all(isinstance(p, DTensor) for p in params)
        local = sum(p.to_local().numel() for p in params if isinstance(p, DTensor))
        rollout = _rollout(whole, tok, kl=True)
        with torch.no_grad():
            got = reference_logprobs(policy.reference, rollout.seqs, rollout.attn, 6)
            want = reference_logprobs(whole, rollout.seqs, rollout.attn, 6)
        if rank == 0:
            Path(out).write_text(json.dumps({
                "sharded": sharded, "local": local, "total": sum(p.numel() for p in whole.parameters()),
                "max_diff": float((got - want).abs().max()), "notes": notes}), encoding="utf-8")
        dist.barrier()


@pytest.mark.slow
def test_the_reference_policy_is_sharded_like_the_policy_and_gives_the_same_logprobs(tmp_path: Path) -> None:
    """With a KL term under FSDP2 each rank holds about half of the frozen reference (not a whole
    copy, which is what hw.memory.gpu's estimate now counts), and its log-probs are the unsharded
    model's."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""run: {{name: ref, run_dir: {tmp_path / 'run'}}}
hardware: {{gpu_required: false, gpus_per_node: 0}}
distributed: {{cpu_workers: 2}}
model: {{name_or_path: tiny, params_b: 0.001, dtype: fp32}}
algorithm: {{kl_beta: 0.01}}
training: {{batch_size: 16, group_size: 4, max_prompt_tokens: 16, max_response_tokens: 6}}
""", encoding="utf-8")
    out = tmp_path / "out.json"
    torch.multiprocessing.spawn(_reference_worker, args=(2, free_port(), str(spec), str(out)), nprocs=2, join=True)
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["sharded"], result
    assert result["local"] <= result["total"] / 2 + 1024, result  # about half on each of 2 ranks
    assert result["max_diff"] < 1e-5, result
    assert any("reference policy is sharded" in n for n in result["notes"]), result["notes"]
