"""The training loop (runner.train) on the tiny model, on CPU: one process, and 2 ranks with FSDP2.

Tests hand the Trainer what they fake (the reward, a planted policy loss) instead of patching
module globals."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from preflight.spec import load_spec
from runner.algo import policy_loss
from runner.config import DataConfig
from runner.data import load_rows
from runner.events import validate_event
from runner.model import build_tokenizer, load_policy
from runner.train import Trainer, train

SPEC = """\
run:
  name: unit
  stage: custom
  domain: math
  run_dir: {run_dir}
hardware: {{gpu_required: false, gpus_per_node: 0, nodes: 1, min_host_memory_gb: 4, min_cpus: 2}}
storage: {{checkpoint_dir: {run_dir}/checkpoints, min_free_gb: 1, checkpoint_size_gb: 0.05}}
stack:
  packages: {{wandb: null}}
model: {{name_or_path: tiny, params_b: 0.001, dtype: fp32}}
training:
  batch_size: 8
  group_size: 2
  learning_rate: 1.0e-5
  max_steps: 3
  eval_interval: 2
  max_prompt_tokens: 256
  max_response_tokens: 8
checkpoints: {{save_interval: 10}}
early_stopping: {{patience: 1}}
distributed: {{cpu_workers: 2}}
monitoring: {{sinks: [jsonl]}}
checklist:
  severity:
    config.batch.range: "off"
    config.temperature.range: "off"
"""


def _spec(tmp_path: Path, name: str = "run.yaml"):
    path = tmp_path / name
    path.write_text(SPEC.format(run_dir=tmp_path / "run"), encoding="utf-8")
    return load_spec(path)


def _events(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def _alternating_reward(prompts: list[str], completions: list[str], rows: list[dict]) -> list[float]:
    """A reward with mixed groups, so the policy gradient is not zero for the random model."""
    return [float(i % 2) for i in range(len(completions))]


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_single_process_run_writes_valid_events_and_moves_parameters(tmp_path):
    spec = _spec(tmp_path)
    model, tok = load_policy("tiny")
    before = _snapshot(model)

    summary = Trainer(spec, spec.run_dir, policy=(model, tok), forced_reason="unit test",
                      warm_start_steps=1, val_limit=8, reward=_alternating_reward).fit()

    events = _events(spec.run_dir)
    for event in events:
        assert validate_event(event) == [], event
    types = [e["type"] for e in events]
    assert types[0] == "run_start" and types[-1] == "run_end"
    assert types.count("step") == 3 and "validation" in types
    assert [e["name"] for e in events if e["type"] == "phase"] == ["warm_start", "rl"]
    start = events[0]
    assert start["world_size"] == 1 and start["forced"] is True and start["reason"] == "unit test"
    steps = [e for e in events if e["type"] == "step"]
    assert all(e["utilization_source"] == "cpu" and e["energy_j"] is None for e in steps)
    assert all(e["loss"] is not None and e["grad_norm"] > 0 for e in steps)
    assert all(e["pass_rate"] == 0.5 and e["batch_size"] == 4 for e in steps)
    assert [e["step"] for e in events if e["type"] == "validation"] == [0, 2, 3]
    assert summary["steps"] == 3 and summary["skipped_steps"] == 0
    assert all(torch.isfinite(torch.tensor(summary["losses"])))
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_nonfinite_loss_skips_the_optimizer_step(tmp_path):
    spec = _spec(tmp_path)

    def nan_loss(*args, **kwargs):
        loss, stats = policy_loss(*args, **kwargs)
        return loss * float("nan"), stats

    model, tok = load_policy("tiny")
    before = _snapshot(model)

    summary = Trainer(spec, spec.run_dir, policy=(model, tok), max_steps=1, val_limit=4,
                      reward=_alternating_reward, loss_fn=nan_loss).fit()

    events = _events(spec.run_dir)
    for event in events:
        assert validate_event(event) == [], event
    actions = [e for e in events if e["type"] == "action"]
    assert len(actions) == 1 and actions[0]["kind"] == "skip_step"
    assert "non_finite" in actions[0]["cause"]
    step = next(e for e in events if e["type"] == "step")
    assert step["loss"] is None and "loss" in step["nonfinite"] and "skipped" in step
    assert summary["skipped_steps"] == 1
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_all_zero_variance_groups_skip_the_update(tmp_path):
    spec = _spec(tmp_path)
    spec.data["algorithm"]["zero_variance_filter"] = True
    model, tok = load_policy("tiny")
    before = _snapshot(model)

    summary = Trainer(spec, spec.run_dir, policy=(model, tok), max_steps=1, val_limit=4,
                      reward=lambda p, c, r: [0.0] * len(c)).fit()

    step = next(e for e in _events(spec.run_dir) if e["type"] == "step")
    assert validate_event(step) == []
    assert "zero variance" in step["skipped"] and step["kept_groups_frac"] == 0.0
    assert summary["skipped_steps"] == 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- two ranks, gloo, FSDP2 ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def gloo_rank(rank: int, world_size: int, port: int) -> Iterator[None]:
    """One spawned rank of a CPU process group on ``port`` (one thread), left at the end."""
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _worker(rank: int, world_size: int, port: int, spec_path: str, out: str) -> None:
    import torch.distributed as dist

    with gloo_rank(rank, world_size, port):
        spec = load_spec(spec_path)
        summary = train(spec, spec.run_dir, rank=rank, world_size=world_size, max_steps=2,
                        val_limit=8)
        Path(out, f"rank{rank}.json").write_text(json.dumps(
            {"steps": summary["steps"], "val": summary["val_pass_rate_final"]}))
        dist.barrier()


@pytest.mark.slow
def test_two_ranks_fsdp2_on_cpu(tmp_path):
    spec = _spec(tmp_path)
    torch.multiprocessing.spawn(_worker, args=(2, free_port(), str(spec.path), str(tmp_path)),
                                nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["steps"] for r in results] == [2, 2]
    assert results[0]["val"] == results[1]["val"]  # validation is all-reduced
    events = _events(spec.run_dir)
    for event in events:
        assert validate_event(event) == [], event
    start = events[0]
    assert start["type"] == "run_start" and start["world_size"] == 2
    notes = " ".join(start["notes"])
    assert "fsdp2" in notes and "bucket_size_mb" in notes and "gradient_compression" in notes
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == [1, 2]  # rank 0 only: one event per step
    assert all(e["batch_size"] == 4 for e in steps)
    assert events[-1]["type"] == "run_end"


@pytest.mark.slow
def test_warm_start_and_task_difficulty_come_from_the_spec(tmp_path):
    path = tmp_path / "run.yaml"
    text = SPEC.format(run_dir=tmp_path / "run").replace(
        "  max_steps: 3\n", "  max_steps: 1\n  warm_start_steps: 2\n  warm_start_lr: 0.003\n  task_difficulty: [easy]\n")
    path.write_text(text, encoding="utf-8")
    summary = train(load_spec(path), tmp_path / "run", val_limit=8)
    events = _events(tmp_path / "run")
    phases = [e["name"] for e in events if e["type"] == "phase"]
    assert phases == ["warm_start", "rl"]
    notes = " ".join(events[0]["notes"])
    assert "only easy rows" in notes
    assert summary["steps"] == 1


def _warm_start_spec(tmp_path: Path, extra: str) -> Any:
    path = tmp_path / "run.yaml"
    path.write_text(SPEC.format(run_dir=tmp_path / "run").replace(
        "  max_steps: 3\n", f"  max_steps: 1\n  warm_start_lr: 0.003\n  task_rows: 200\n{extra}"),
        encoding="utf-8")
    return load_spec(path)


@pytest.mark.slow
@pytest.mark.parametrize("target, done, reached", [(0.0, 25, True), (1.0, 30, False)])
def test_warm_start_stops_at_its_pass_rate_target_or_runs_to_its_cap(tmp_path, target, done, reached):
    # 0.0 is reached at the first look (step 25); a pass rate of 100 % is never reached in 30 steps
    spec = _warm_start_spec(tmp_path, f"  warm_start_steps: 30\n  warm_start_target: {target}\n")
    train(spec, tmp_path / "run", val_limit=4)
    (rl,) = [e for e in _events(tmp_path / "run") if e["type"] == "phase" and e["name"] == "rl"]
    assert (rl["warm_start_steps_done"], rl["target_reached"]) == (done, reached)
    assert rl["warm_start_target"] == target


def test_built_in_task_never_shows_a_validation_problem_in_training(tmp_path):
    spec = _warm_start_spec(tmp_path, "  task_difficulty: [easy]\n")
    train_rows, val_rows = load_rows(DataConfig.from_spec(spec), build_tokenizer(), [], 16)
    # the generator repeats small problems under different stories; the prompts the model sees are
    # the expressions, so equal expressions must stay on one side of the split
    assert val_rows and not {r["prompt"] for r in val_rows} & {r["prompt"] for r in train_rows}
    assert all(r["prompt"].endswith(" =") for r in train_rows + val_rows)


@pytest.mark.slow
@pytest.mark.parametrize("mu", [1, 3])
def test_updates_per_batch_steps_the_optimizer_mu_times_per_rollout_batch(tmp_path, mu):
    spec = _spec(tmp_path)
    spec.data["algorithm"]["updates_per_batch"] = mu
    trainer = Trainer(spec, spec.run_dir, policy=load_policy("tiny"), max_steps=2, warm_start_steps=0,
                      val_limit=2, reward=_alternating_reward)
    steps_taken: list[int] = []
    real_step = trainer.optimizer.step

    def counting_step(*args, **kwargs):
        steps_taken.append(1)
        return real_step(*args, **kwargs)

    trainer.optimizer.step = counting_step  # this run's optimizer only
    trainer.fit()
    assert len(steps_taken) == 2 * mu  # rollouts drawn twice, each used for mu updates
    assert [e["step"] for e in _events(spec.run_dir) if e["type"] == "step"] == [1, 2]
