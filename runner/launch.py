"""Start the training run: Ray Train workers (a local Ray, or the cluster at
distributed.ray_address), each running runner.train.train() under FSDP2.

The spec's distributed settings are applied here: one worker per GPU of every node (or
distributed.cpu_workers without GPUs), Ray's FailureConfig(max_failures) from
distributed.max_retries, and the collective backend (NCCL with GPUs, gloo without).

Recovery: when a worker dies, Ray restarts the whole worker group (up to max_retries times) and
every new attempt of ``train`` resumes from the latest checkpoint that verifies in
storage.checkpoint_dir (runner.checkpoint); the attempt is recorded as a recovery event.

Ray and the training loop (torch) are imported only when a run starts, so ``python -m runner
--help`` and the gate's refusals stay fast.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from preflight.entrypoint import ray_paths_from_this_install
from preflight.monitor.tailer import read_events
from preflight.rundir import SUMMARY_FILE, WORKERS_DIR
from preflight.spec import Spec, load_spec

from .events import EventWriter


def run(spec: Spec, forced_reason: str | None = None, local: bool = False) -> dict[str, Any]:
    """Train; returns the summary of rank 0 (status, steps, events path, ...)."""
    from .train import train  # torch: imported when a run starts, not by the CLI

    run_dir = spec.run_dir.absolute()
    run_dir.mkdir(parents=True, exist_ok=True)
    if local:
        return dict(train(spec, run_dir, forced_reason=forced_reason))
    return _run_on_ray(spec, run_dir, forced_reason)


def backend_for(spec: Spec) -> str:
    chosen = str(spec.get("distributed.backend"))
    if chosen != "auto":
        return chosen
    return "nccl" if spec.uses_gpus else "gloo"


def _run_on_ray(spec: Spec, run_dir: Path, forced_reason: str | None) -> dict[str, Any]:
    # Ray takes seconds to import: only a Ray launch pays for it
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    address = spec.get("distributed.ray_address") or None
    started_here = not ray.is_initialized()
    if started_here:
        # A local Ray's session files go to a short private temp dir (its sockets must fit the
        # 107-byte AF_UNIX limit), never to ~/.ray.
        temp = None if address else tempfile.mkdtemp(prefix="rlpf-ray-")
        local: dict[str, Any] = {"_temp_dir": temp} if temp else {}
        # Ray puts the working directory first on its workers' paths: a runner/ package there
        # would stand in for ours (preflight.entrypoint)
        with ray_paths_from_this_install() as paths:
            ray.init(address=address, include_dashboard=False, log_to_driver=True, **local, **paths)
    summary_file = run_dir / SUMMARY_FILE
    summary_file.unlink(missing_ok=True)  # a summary from an earlier run must not pass for this one
    try:
        use_gpu = backend_for(spec) == "nccl"
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"spec": str(spec.path.absolute()), "cwd": os.getcwd(), "run_dir": str(run_dir),
                               "forced_reason": forced_reason},
            torch_config=TorchConfig(backend=backend_for(spec)),
            scaling_config=ScalingConfig(num_workers=spec.world_size, use_gpu=use_gpu),
            run_config=RunConfig(name=spec.name, storage_path=str(run_dir / "ray"),
                                 failure_config=FailureConfig(max_failures=int(spec.get("distributed.max_retries")))),
        )
        trainer.fit()
    finally:
        if started_here:
            ray.shutdown()
            if temp:
                shutil.rmtree(temp, ignore_errors=True)
    summary: dict[str, Any] = json.loads(summary_file.read_text()) if summary_file.is_file() else {"status": "failed"}
    return summary


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the process group is already up; train and, on rank 0, keep the summary."""
    # a Ray worker process: Ray, torch and the training loop are what it is for
    import ray.train
    import torch.distributed as dist

    from .train import train  # torch: a Ray worker trains

    os.chdir(config["cwd"])  # relative paths in the spec mean the launcher's directory
    ctx = ray.train.get_context()
    spec = load_spec(config["spec"])
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    run_dir = Path(config["run_dir"])
    # RUN_DIR/workers/rankN.pid: which process is which rank now (an operator's kill -9, a fault test)
    workers = run_dir / WORKERS_DIR
    workers.mkdir(parents=True, exist_ok=True)
    (workers / f"rank{rank}.pid").write_text(f"{os.getpid()}\n")
    summary = train(spec, run_dir, rank=rank, world_size=world, forced_reason=config.get("forced_reason"))
    if rank == 0:
        (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, default=str))
    if dist.is_initialized():
        dist.barrier()


def record_failure(spec: Spec, exc: BaseException) -> None:
    """A run that dies still ends its event stream: an error event and run_end status failed."""
    run_dir = spec.run_dir.absolute()
    last_step = 0
    for event in read_events(run_dir):
        try:
            last_step = max(last_step, int(event.get("step") or 0))
        except (ValueError, TypeError):
            continue
    message = f"{type(exc).__name__}: {exc}"
    with EventWriter(run_dir) as writer:
        writer.emit("error", message=message, step=last_step)
        writer.emit("run_end", step=last_step, status="failed", reason=message)
