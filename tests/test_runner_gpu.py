"""The runner's GPU paths: the CUDA device, NVML utilization and energy, a Ray GPU worker.

Marked ``gpu``: skipped by the default run (`-m 'not gpu'`), run on a GPU machine by
bench/gpu_probe_check.sh.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from preflight.spec import load_spec  # noqa: E402
from runner.events import validate_event  # noqa: E402

pytestmark = pytest.mark.gpu

SPEC = """\
run: {{name: gpu-unit, domain: math, run_dir: {run_dir}}}
hardware: {{gpu_required: true, gpus_per_node: 1, nodes: 1, min_host_memory_gb: 4, min_cpus: 2}}
storage: {{checkpoint_dir: {run_dir}/checkpoints, min_free_gb: 1, checkpoint_size_gb: 0.05}}
stack: {{packages: {{wandb: null}}}}
model: {{name_or_path: tiny, params_b: 0.001, dtype: bf16}}
training: {{batch_size: 64, group_size: 4, learning_rate: 1.0e-4, max_steps: 4, eval_interval: 2,
           max_prompt_tokens: 16, max_response_tokens: 6, task_difficulty: [easy], task_rows: 400,
           val_prompts: 16, warm_start_steps: 5}}
checkpoints: {{save_interval: 2}}
distributed: {{max_retries: 0}}
monitoring: {{sinks: [jsonl]}}
checklist: {{severity: {{config.batch.range: "off", config.temperature.range: "off", config.lr.range: "off"}}}}
"""


def _spec(tmp_path: Path) -> Any:
    path = tmp_path / "gpu.yaml"
    path.write_text(SPEC.format(run_dir=tmp_path / "run"), encoding="utf-8")
    return load_spec(path)


def _events(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


@pytest.fixture(autouse=True)
def _needs_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.fail("a gpu-marked test needs a CUDA build of torch and a visible GPU")


def test_single_process_trains_on_cuda_with_nvml_utilization_and_energy(tmp_path):
    from runner.train import train

    spec = _spec(tmp_path)
    summary = train(spec, tmp_path / "run")
    assert summary["status"] == "completed" and summary["device"].startswith("cuda")
    events = _events(tmp_path / "run")
    assert all(validate_event(e) == [] for e in events)
    steps = [e for e in events if e["type"] == "step"]
    assert steps and all(e["utilization_source"] == "gpu" for e in steps)
    assert all(e["energy_j"] is not None and e["energy_j"] >= 0 for e in steps)
    assert all(e["memory_gib"] > 0 for e in steps)


def test_the_ray_launch_trains_on_a_gpu_worker(tmp_path):
    from runner.launch import run

    spec = _spec(tmp_path)
    summary = run(spec)
    assert summary["status"] == "completed", summary
    start = _events(tmp_path / "run")[0]
    assert start["device"].startswith("cuda")
    # one GPU is one worker (no FSDP sharding); with two or more the run_start backend is nccl
    assert start["backend"] == ("nccl" if torch.cuda.device_count() > 1 else "none")


def test_a_background_save_of_cuda_weights_holds_the_step_it_was_taken_at(tmp_path):
    """The host copy runs on a CUDA stream of its own, after the work queued before the save (the
    training stream may still be computing the weights being saved) and before the next step
    changes them; the checkpoint loads back into a CUDA model exactly."""
    import threading

    from runner import checkpoint as ck
    from runner.checkpoint_load import load_training_state

    def build(seed: int) -> tuple[Any, Any]:
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(2048, 2048), torch.nn.Linear(2048, 64)).cuda()
        return model, torch.optim.AdamW(model.parameters(), lr=1e-2)

    model, opt = build(0)

    def step() -> None:
        model(torch.randn(512, 2048, device="cuda")).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()

    for _ in range(30):  # queued on the training stream, still running when the save is asked for
        step()
    staged = ck.stage_training_state(1, model=model, optimizer=opt, rank_state={}, trainer_state={"step": 1})
    staging = ck.HostStaging(ck.HostCopy(), staged.state, torch.device("cuda", torch.cuda.current_device()))
    store = ck.CheckpointStore(tmp_path / "ck")
    done: list[Any] = []
    writer = threading.Thread(target=lambda: done.append(ck.write_training_state(
        store, staged, rank=0, device="cuda", metric=None, metric_name="m", staging=staging)))
    writer.start()
    staging.wait()  # the optimizer's step pre-hook in the runner
    expected = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    for _ in range(3):
        step()  # training goes on while the copy is written
    writer.join()
    assert done and done[0].ok
    other, other_opt = build(1)
    load_training_state(done[0].committed.path, model=other, optimizer=other_opt, rank=0)
    assert all(torch.equal(expected[k], v.cpu()) for k, v in other.state_dict().items())
