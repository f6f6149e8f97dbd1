"""Import an OpenRLHF run: a launch script of ``openrlhf.cli.train_ppo_ray`` (run directly, through
``ray job submit ... -- python3 -m ...``, or by ``deepspeed --module``) into a run spec.

The flags are train_ppo_ray.py's argparse options, with their defaults read from the installed
OpenRLHF's source text (never imported: it imports torch, ray, deepspeed and vllm) or from the
built-in table of a published release (``openrlhf_defaults``). After parsing, the values are
adjusted as train_ppo_ray.py does before ``ray.init`` (eps_clip_low_high from eps_clip, no critic
without GAE, no vLLM sleep without full colocation, the vLLM generate batch).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import openrlhf_defaults
from .base import ImportedRun, ImportProblem, read_source
from .pysource import Expr, Option, argparse_options, package_dir
from .shell import ShellCommand, ShellSyntaxError, read_script
from .trl import local_path

NAME = "openrlhf"
MODULE = "openrlhf.cli.train_ppo_ray"
REQUIREMENTS: dict[str, dict[str, str]] = openrlhf_defaults.REQUIREMENTS


def table(version: str | None) -> tuple[dict[str, Option], str, str]:
    """(options, version, installed|builtin): the installed OpenRLHF's when it is installed (and is
    ``version`` if one is named), else a built-in table; exit 2 for a version with neither."""
    try:
        installed = importlib.metadata.version("openrlhf")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed is not None and version in (None, installed):
        root = package_dir("openrlhf")
        source = root / "cli" / "train_ppo_ray.py" if root else None
        if source is not None and source.is_file():
            options = argparse_options(source.read_text(encoding="utf-8"))
            if "pretrain" in options:
                return options, installed, "installed"
    wanted = version or openrlhf_defaults.VERSION
    if wanted not in openrlhf_defaults.OPTIONS:
        raise ImportProblem("--version", "", f"no defaults for OpenRLHF {wanted}: "
                            + (f"OpenRLHF {installed} is installed" if installed else "OpenRLHF is not installed")
                            + f", and the built-in tables are {', '.join(openrlhf_defaults.OPTIONS)}",
                            f"install openrlhf=={wanted} where you import, or pick a built-in version")
    return dict(openrlhf_defaults.OPTIONS[wanted]), wanted, "builtin"


def _is_launch(argv: list[str]) -> bool:
    return MODULE in argv or any(a.endswith("cli/train_ppo_ray.py") for a in argv)


def import_source(path: str | Path, *, version: str | None = None,
                  environ: Mapping[str, str] | None = None) -> ImportedRun:
    """Read an OpenRLHF launch script and map it into a run spec."""
    path, shown, text = read_source(path, "the launch script (.sh)")
    env = dict(os.environ if environ is None else environ)
    try:
        script = read_script(text, shown, environ=env)
    except ShellSyntaxError as exc:
        raise ImportProblem(shown, f"line {exc.line}", str(exc), "fix the quoting; bash would fail on it too") from None
    cmd = script.find(_is_launch)
    if cmd is None:
        raise ImportProblem(shown, "", f"no `{MODULE}` command found",
                            f"import the script that runs `python3 -m {MODULE} ...`")
    options, resolved_version, origin = table(version)
    user = parse_flags(_flags(cmd), options, shown, resolved_version, origin)
    config = resolve(options, user)
    notes = [f"{shown} {u}: kept as written" for u in script.unresolved]
    spec = _spec(config, path, cmd, {**script.exported, **cmd.env}, resolved_version, origin, notes)
    spec["trainer"]["launcher"] = {"kind": "ray job submit" if cmd.argv[0] == "ray" else Path(cmd.argv[0]).name,
                                   "given": sorted(user)}  # the flags the script set (the rest are defaults)
    return ImportedRun(spec=spec, notes=notes)


def _flags(cmd: ShellCommand) -> list[str]:
    argv = cmd.argv
    if MODULE in argv:
        return argv[argv.index(MODULE) + 1:]
    at = next(i for i, a in enumerate(argv) if a.endswith("cli/train_ppo_ray.py"))
    return argv[at + 1:]


def _unknown(shown: str, flag: str, options: Mapping[str, Option], version: str, origin: str) -> ImportProblem:
    close = difflib.get_close_matches(flag.lstrip("-"), list(options), n=3, cutoff=0.6)
    hint = (f"did you mean {' or '.join('--' + c for c in close)}?" if close
            else f"train_ppo_ray.py of OpenRLHF {version} has no such flag")
    return ImportProblem(shown, flag, f"unknown flag for OpenRLHF {version} ({origin} defaults)", hint)


def parse_flags(args: list[str], options: Mapping[str, Option], shown: str, version: str,
                origin: str) -> dict[str, Any]:
    """argparse's reading of the flags: store_true flags take no value, nargs options take theirs."""
    user: dict[str, Any] = {}
    i = 0
    while i < len(args):
        word = args[i]
        if not word.startswith("--"):
            raise ImportProblem(shown, word, "a value that follows no flag",
                                "each argument of train_ppo_ray is `--flag [value]`")
        name, eq, inline = word[2:].partition("=")
        dest = name.replace("-", "_")
        opt = options.get(dest)
        if opt is None:
            raise _unknown(shown, "--" + name, options, version, origin)
        i += 1
        if opt.flag:
            user[dest] = not opt.default if isinstance(opt.default, bool) else True
            continue
        if eq:
            values = [inline]
        else:
            count = _count(opt.nargs)
            values = []
            while i < len(args) and (count is None or len(values) < count) and not _is_flag(args[i]):
                values.append(args[i])
                i += 1
        user[dest] = _typed(opt, values, shown, "--" + name)
    return user


def _is_flag(word: str) -> bool:
    return word.startswith("--") and not re.fullmatch(r"--?\d+(\.\d+)?([eE][-+]?\d+)?", word)


def _count(nargs: str | None) -> int | None:
    if nargs is None:
        return 1
    return int(nargs) if nargs.isdigit() else None


def _typed(opt: Option, values: list[str], shown: str, flag: str) -> Any:
    cast = {"int": int, "float": float}.get(opt.annotation)
    try:
        typed = [cast(v) for v in values] if cast else list(values)
    except ValueError:
        raise ImportProblem(shown, flag, f"expects {opt.annotation} values, found {' '.join(values)!r}",
                            f"give {flag} a number") from None
    if opt.choices and any(v not in opt.choices for v in typed):
        raise ImportProblem(shown, flag, f"{' '.join(values)!r} is not one of {list(opt.choices)}", "")
    if opt.nargs is None:
        if not typed:
            raise ImportProblem(shown, flag, "needs a value", f"write {flag} VALUE")
        return typed[0]
    return typed


def resolve(options: Mapping[str, Option], user: Mapping[str, Any]) -> dict[str, Any]:
    """Every option with its value, adjusted as train_ppo_ray.py adjusts them after parsing."""
    config = {k: (str(o.default) if isinstance(o.default, Expr) else o.default) for k, o in options.items()}
    config.update(user)
    if "eps_clip_low_high" in config and config.get("eps_clip_low_high") is None:
        config["eps_clip_low_high"] = [config.get("eps_clip", 0.2)] * 2
    if config.get("advantage_estimator") not in (None, "gae"):
        config["critic_pretrain"] = None
    elif config.get("critic_pretrain") is None:
        config["critic_pretrain"] = (str(config.get("reward_pretrain") or "").split(",")[0] or None) \
            if not config.get("remote_rm_url") else config.get("pretrain")
    if config.get("vllm_enable_sleep") and not config.get("colocate_all_models"):
        config["vllm_enable_sleep"] = False
    if int(config.get("ring_attn_size") or 1) > 1 or config.get("use_dynamic_batch"):
        config["packing_samples"] = True
    if "vllm_generate_batch_size" in config and not config.get("vllm_generate_batch_size"):
        config["vllm_generate_batch_size"] = config.get("rollout_batch_size")
    return json.loads(json.dumps(config, default=str))


def _params_from_name(name: str) -> float | None:
    m = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])", name)
    return float(m.group(1)) if m else None


def gpus(config: Mapping[str, Any]) -> tuple[int, int, str]:
    """(nodes, the actor's GPUs per node, how): the actor's GPUs are the training ranks; colocated
    runs share them, otherwise every model group and the vLLM engines take their own (said in how)."""
    actor_nodes = int(config.get("actor_num_nodes") or 1)
    actor = actor_nodes * int(config.get("actor_num_gpus_per_node") or 1)
    engines = int(config.get("vllm_num_engines") or 0) * int(config.get("vllm_tensor_parallel_size") or 1)
    per_node = math.ceil(actor / actor_nodes)  # the training ranks: the other groups are not DeepSpeed actor ranks
    if config.get("colocate_all_models"):
        return actor_nodes, per_node, f"colocate_all_models: the actor's {actor} GPUs"
    parts = {"actor": actor, "vLLM": engines}
    if float(config.get("init_kl_coef") or 0) > 0 and not config.get("colocate_actor_ref"):
        parts["reference"] = int(config.get("ref_num_nodes") or 1) * int(config.get("ref_num_gpus_per_node") or 1)
    if config.get("reward_pretrain") and not config.get("remote_rm_url"):
        parts["reward"] = int(config.get("reward_num_nodes") or 1) * int(config.get("reward_num_gpus_per_node") or 1)
    if config.get("critic_pretrain") and not config.get("colocate_critic_reward"):
        parts["critic"] = int(config.get("critic_num_nodes") or 1) * int(config.get("critic_num_gpus_per_node") or 1)
    total = sum(parts.values())
    how = " + ".join(f"{k} {v}" for k, v in parts.items() if v)
    return actor_nodes, per_node, (f"separate GPUs: {how} = {total} in all; hardware.gpus_per_node counts the "
                                   f"actor's {per_node} per node (the training ranks)")


def _spec(config: dict[str, Any], path: Path, cmd: ShellCommand, env: dict[str, str], version: str,
          origin: str, notes: list[str]) -> dict[str, Any]:
    workdir = path.resolve().parent
    nodes, per_node, how = gpus(config)
    notes.append(f"GPUs: {how}, over {nodes} node(s)")
    clip = config.get("eps_clip_low_high") or [config.get("eps_clip", 0.2)] * 2
    training: dict[str, Any] = {
        "batch_size": int(config["train_batch_size"]), "group_size": int(config.get("n_samples_per_prompt") or 1),
        "micro_batch_size": int(config["micro_train_batch_size"]),
        "generation_batch_size": int(config.get("micro_rollout_batch_size") or 1),
        "gradient_checkpointing": bool(config.get("gradient_checkpointing")),
        "max_prompt_tokens": int(config["prompt_max_len"]), "max_response_tokens": int(config["generate_max_len"]),
        "learning_rate": float(config["actor_learning_rate"]), "temperature": float(config.get("temperature", 1.0)),
        "clip_low": float(clip[0]), "clip_high": float(clip[1]), "seed": int(config.get("seed", 42)),
        "grad_clip": float(config.get("max_norm") or 0.0),
    }
    steps = _max_steps(config, notes)
    if steps:
        training["max_steps"] = steps
    if int(config.get("eval_steps") or -1) > 0:
        training["eval_interval"] = int(config["eval_steps"])
    pretrain = local_path(str(config.get("pretrain") or ""), workdir)
    model: dict[str, Any] = {"name_or_path": pretrain, "dtype": "bf16" if config.get("bf16") else "fp32"}
    if config.get("param_dtype"):
        model["dtype"] = {"bf16": "bf16", "fp16": "fp16"}.get(str(config["param_dtype"]), "fp32")
    params = _params_from_name(pretrain)
    if params:
        model["params_b"] = params
        notes.append(f"model.params_b {params:g} read from the model's name {pretrain!r}")
    spec: dict[str, Any] = {
        "version": 1,
        "run": {"name": re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem).strip("-") or "openrlhf-run", "stage": "custom"},
        "model": model, "training": training,
        "algorithm": {"name": "grpo",
                      "kl_beta": float(config.get("init_kl_coef") or 0.0),
                      "loss_aggregation": "token", "updates_per_batch": int(config.get("max_epochs") or 1)},
        "hardware": {"nodes": nodes, "gpus_per_node": per_node},
        "checkpoints": _checkpoints(config, steps),
        "storage": {"checkpoint_dir": _abs(workdir, str(config.get("ckpt_path") or "./ckpt/checkpoints_ppo_ray"))},
        # adam_offload moves only Adam's states to the host (trainer.openrlhf.host_memory counts them);
        # distributed.cpu_offload means parameters and gradients too
        "distributed": {"cpu_offload": False,
                        "tensor_parallel_size": int(config.get("vllm_tensor_parallel_size") or 1)},
        "monitoring": {"sinks": ["jsonl"] + (["wandb"] if config.get("use_wandb") else [])
                       + (["tensorboard"] if config.get("use_tensorboard") else [])},
        "trainer": {"framework": NAME, "version": version, "defaults": origin, "source": str(path.resolve()),
                    "command": list(cmd.argv), "workdir": str(workdir), "env": dict(env), "config": config},
    }
    data = _data(config, workdir, notes)
    if data:
        spec["data"] = data
    return spec


def _abs(workdir: Path, value: str) -> str:
    p = Path(value)
    return str(p if p.is_absolute() else workdir / p)


def _max_steps(config: Mapping[str, Any], notes: list[str]) -> int | None:
    """Optimizer steps: episodes x rollouts per episode x (rollout samples / train batch) x epochs,
    with rollouts per episode from max_samples (an upper bound: the dataset may be smaller)."""
    rollout, n = int(config.get("rollout_batch_size") or 1), int(config.get("n_samples_per_prompt") or 1)
    train = int(config.get("train_batch_size") or 1)
    samples = int(config.get("max_samples") or 0)
    per_rollout = (rollout * n) // train * int(config.get("max_epochs") or 1)
    if samples <= 0 or samples >= 10**7:
        notes.append("max_samples does not bound the dataset: training.max_steps keeps the spec default (ASSUMED)")
        return None
    steps = int(config.get("num_episodes") or 1) * (samples // rollout) * per_rollout
    notes.append(f"training.max_steps {steps} ASSUMES the dataset has at least max_samples={samples} prompts "
                 f"(num_episodes x max_samples / rollout_batch_size x rollout samples / train_batch_size x max_epochs)")
    return steps if steps >= 1 else None


def _checkpoints(config: Mapping[str, Any], steps: int | None) -> dict[str, Any]:
    save = int(config.get("save_steps") or -1)
    keep = int(config.get("max_ckpt_num") or 1)
    out: dict[str, Any] = {"save_best_only": False, "keep_last": max(keep, 1)}
    if save > 0:
        out["save_interval"] = save
    elif steps:
        out["save_interval"] = steps
    return out


def _data(config: Mapping[str, Any], workdir: Path, notes: list[str]) -> dict[str, Any]:
    prompt_data = str(config.get("prompt_data") or "")
    first = prompt_data.split(",")[0]
    candidate = Path(first) if Path(first).is_absolute() else workdir / first
    if not first:
        return {}
    if not candidate.is_file():
        notes.append(f"prompt_data {prompt_data!r} is a hub dataset or a folder the data checks do not read: "
                     "not checkable offline (data.train left out)")
        return {}
    fields: dict[str, str] = {}
    if config.get("input_key"):
        fields["prompt"] = str(config["input_key"])
    if config.get("label_key"):
        fields["answer"] = str(config["label_key"])
    return {"train": str(candidate), "format": "openrlhf", **({"fields": fields} if fields else {})}
