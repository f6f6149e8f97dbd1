"""How a TRL launch starts its processes: accelerate's options and config file (or TRL's named
profiles, or accelerate's default config location), torchrun's sizes, and the GPUs and length limit
of a `trl vllm-serve` server in the same script. preflight.frameworks.trl reads the training
options; this module says how many processes train, on how many machines, sharded how.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .base import ImportProblem
from .shell import ShellCommand, ShellScript

# `accelerate launch` options that take no value; every other option takes one.
ACCELERATE_SWITCHES = {"--multi_gpu", "--use_deepspeed", "--use_fsdp", "--use_megatron_lm", "--use_xpu", "--cpu",
                       "--tpu", "--debug", "-q", "--quiet", "--no_python", "-m", "--module", "--same_network",
                       "--enable_cpu_affinity", "--dynamo_use_fullgraph", "--dynamo_use_dynamic",
                       "--downcast_bf16", "--tpu_use_cluster", "--tpu_use_sudo"}

# The accelerate options `trl grpo` also takes (it hands them to accelerate launch), and TRL's own.
LAUNCH_KEYS = {"num_processes", "num_machines", "config_file", "accelerate_config", "machine_rank",
               "main_process_ip", "main_process_port", "mixed_precision", "multi_gpu", "use_deepspeed",
               "use_fsdp", "deepspeed_config_file", "zero_stage", "gpu_ids", "rdzv_backend", "dynamo_backend",
               "num_cpu_threads_per_process", "deepspeed_multinode_launcher", "same_network", "config"}


@dataclass
class Launch:
    """What the source says about processes and machines (trainer.launcher)."""

    kind: str  # config | trl-cli | accelerate | torchrun | python
    script: str = ""
    num_processes: int | None = None
    num_processes_from: str = ""
    num_machines: int = 1
    distributed_type: str | None = None
    mixed_precision: str | None = None
    config_file: str | None = None
    offload: bool = False
    zero_stage: int | None = None
    gpus_visible: int | None = None  # CUDA_VISIBLE_DEVICES of the training command
    vllm_server_gpus: int | None = None  # GPUs of a `trl vllm-serve` in the same script
    vllm_server_devices: str | None = None
    vllm_server_max_model_len: int | None = None  # the server's --max_model_len
    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("env", "notes") and v not in (None, "")}
        return out


def accelerate_summary(config: Mapping[str, Any]) -> dict[str, Any]:
    ds = config.get("deepspeed_config") or {}
    fsdp = config.get("fsdp_config") or {}
    offload = ds.get("offload_optimizer_device") in ("cpu", "nvme") or ds.get("offload_param_device") in ("cpu", "nvme") \
        or bool(fsdp.get("fsdp_offload_params"))
    return {"num_processes": config.get("num_processes"), "num_machines": config.get("num_machines"),
            "distributed_type": config.get("distributed_type"), "mixed_precision": config.get("mixed_precision"),
            "zero_stage": ds.get("zero_stage"), "offload": offload}


def launch_key(launch: Launch, key: str, value: Any, shown: str = "") -> None:
    if key == "num_processes":
        launch.num_processes, launch.num_processes_from = _int(value, key, shown), f"{key} {value}"
    elif key == "num_machines":
        launch.num_machines = _int(value, key, shown)
    elif key in ("config_file", "accelerate_config"):
        launch.config_file = str(value)
    elif key == "mixed_precision":
        launch.mixed_precision = str(value)
    elif key == "use_deepspeed" and value not in (False, "false"):
        launch.distributed_type = "DEEPSPEED"
    elif key == "zero_stage":
        launch.zero_stage = _int(value, key, shown)


def _int(value: Any, key: str, shown: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ImportProblem(shown, key, f"must be a whole number, found {value!r}",
                            f"give {key} as a number of processes or machines") from None


def split_launch(cmd: ShellCommand, shown: str) -> tuple[Launch, list[str]]:
    """The launcher's own options and the training script's arguments."""
    argv = cmd.argv
    name = Path(argv[0]).name
    if name == "trl":
        launch = Launch(kind="trl-cli", script="trl grpo")
        return launch, argv[2:]
    if name.startswith("python"):
        return Launch(kind="python", script=argv[1], num_processes=1, num_processes_from="one python process"), argv[2:]
    if name == "torchrun":
        return _torchrun(argv, shown, cmd.line)
    launch = Launch(kind="accelerate")
    i = 2
    while i < len(argv):
        word = argv[i]
        if not word.startswith("-"):
            break
        key, _, inline = word.partition("=")
        if key in ACCELERATE_SWITCHES:
            launch_key(launch, key.lstrip("-"), True, shown)
            i += 1
            continue
        value = inline if inline else (argv[i + 1] if i + 1 < len(argv) else "")
        launch_key(launch, key.lstrip("-"), value, shown)
        i += 1 if inline else 2
    if i >= len(argv):
        raise ImportProblem(shown, f"line {cmd.line}", "`accelerate launch` names no training script",
                            "end the command with the script and its arguments")
    launch.script = argv[i]
    return launch, argv[i + 1:]


def _torchrun(argv: list[str], shown: str, line: int) -> tuple[Launch, list[str]]:
    """torchrun's --nproc_per_node x --nnodes processes, then the script and its arguments."""
    launch = Launch(kind="torchrun", distributed_type="MULTI_GPU")
    sizes = {"nproc_per_node": 1, "nnodes": 1}
    i = 1
    while i < len(argv) and argv[i].startswith("-"):
        key, eq, inline = argv[i].lstrip("-").replace("-", "_").partition("=")
        value = inline if eq else (argv[i + 1] if i + 1 < len(argv) else "")
        if key in sizes:
            sizes[key] = _int(value, "--" + key, shown)
        i += 1 if eq or key in ("standalone", "no_python", "m", "module") else 2
    if i >= len(argv):
        raise ImportProblem(shown, f"line {line}", "`torchrun` names no training script",
                            "end the command with the script and its arguments")
    launch.script, launch.num_machines = argv[i], sizes["nnodes"]
    launch.num_processes = sizes["nproc_per_node"] * sizes["nnodes"]
    launch.num_processes_from = f"torchrun --nproc_per_node {sizes['nproc_per_node']} x --nnodes {sizes['nnodes']}"
    return launch, argv[i + 1:]


def vllm_server(script: ShellScript, launch: Launch) -> None:
    """GPUs a `trl vllm-serve` in the same script takes: its CUDA_VISIBLE_DEVICES, else tp x dp."""
    serve = script.find(lambda a: len(a) >= 2 and Path(a[0]).name == "trl" and a[1] == "vllm-serve")
    if serve is None:
        return
    for i, word in enumerate(serve.argv):
        key, _, inline = word.partition("=")
        value = inline or (serve.argv[i + 1] if i + 1 < len(serve.argv) else "")
        if key in ("--max_model_len", "--max-model-len") and value.isdigit():
            launch.vllm_server_max_model_len = int(value)
    devices = serve.env.get("CUDA_VISIBLE_DEVICES")
    if devices:
        launch.vllm_server_devices = devices
        launch.vllm_server_gpus = len([d for d in devices.split(",") if d.strip()])
        return
    sizes = {"tp": 1, "dp": 1}
    args = serve.argv
    for i, word in enumerate(args):
        key, _, inline = word.partition("=")
        value = inline or (args[i + 1] if i + 1 < len(args) else "")
        if key in ("--tensor_parallel_size", "--tensor-parallel-size") and value.isdigit():
            sizes["tp"] = int(value)
        if key in ("--data_parallel_size", "--data-parallel-size") and value.isdigit():
            sizes["dp"] = int(value)
    launch.vllm_server_gpus = sizes["tp"] * sizes["dp"]
    launch.notes.append(f"`trl vllm-serve` (line {serve.line}) sets no CUDA_VISIBLE_DEVICES: counted as "
                        f"tensor_parallel_size x data_parallel_size = {launch.vllm_server_gpus} GPU(s)")


def resolve_accelerate(launch: Launch, workdir: Path, env: Mapping[str, str],
                       profiles: Mapping[str, dict[str, Any]]) -> None:
    """The accelerate config the launch uses, and the process count it gives."""
    if launch.kind in ("python", "torchrun"):
        return
    config: dict[str, Any] | None = None
    name = launch.config_file
    if name is not None:
        candidate = Path(name) if Path(name).is_absolute() else workdir / name
        if candidate.is_file():
            config = accelerate_summary(yaml.safe_load(candidate.read_text(encoding="utf-8")) or {})
        elif name in profiles:
            config = dict(profiles[name])
            launch.notes.append(f"accelerate config: TRL's predefined profile {name!r} (trl/accelerate_configs)")
        elif launch.num_processes is None:
            raise ImportProblem(name, "", "the accelerate config file the launch names is not here, and no "
                                "--num_processes says how many training processes run",
                                f"import from the directory the launch runs in (relative paths are taken from "
                                f"{workdir}), or add --num_processes")
        else:
            launch.notes.append(f"accelerate config {name} is not here: distributed type and precision unknown")
    else:
        default = _default_accelerate_config(env)
        if default.is_file():
            config = accelerate_summary(yaml.safe_load(default.read_text(encoding="utf-8")) or {})
            launch.config_file = str(default)
            launch.notes.append(f"accelerate config: none given, so accelerate's default {default} was read")
    if config:
        launch.distributed_type = launch.distributed_type or config.get("distributed_type")
        launch.mixed_precision = launch.mixed_precision or config.get("mixed_precision")
        launch.zero_stage = launch.zero_stage or config.get("zero_stage")
        launch.offload = bool(config.get("offload"))
        if config.get("num_machines"):
            launch.num_machines = int(config["num_machines"]) if launch.num_machines == 1 else launch.num_machines
        if launch.num_processes is None and config.get("num_processes"):
            launch.num_processes = int(config["num_processes"])
            launch.num_processes_from = f"num_processes {config['num_processes']} in the accelerate config"
    if launch.num_processes is None:
        gpus = launch.gpus_visible
        launch.num_processes = gpus if gpus else 8
        launch.num_processes_from = (f"accelerate's default: one process per visible GPU ({gpus}, "
                                     "CUDA_VISIBLE_DEVICES)" if gpus else
                                     "ASSUMED 8: no accelerate config and no --num_processes, so accelerate starts "
                                     "one process per GPU of the machine")
        launch.notes.append(f"training processes: {launch.num_processes_from}")


def _default_accelerate_config(env: Mapping[str, str]) -> Path:
    """accelerate's default config file: $HF_HOME/accelerate/default_config.yaml, HF_HOME being
    $XDG_CACHE_HOME/huggingface (default ~/.cache/huggingface)."""
    home = env.get("HOME", str(Path.home()))
    cache = env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
    hf_home = env.get("HF_HOME") or os.path.join(cache, "huggingface")
    return Path(hf_home) / "accelerate" / "default_config.yaml"
