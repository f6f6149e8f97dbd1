"""Import a TRL GRPO run: a GRPOConfig as YAML/JSON (the ``trl grpo --config`` format), a launch
script running ``trl grpo ...`` or ``accelerate launch [...] script.py ...``, into a run spec.

The options are GRPOConfig's fields (with the TrainingArguments it extends), the ``trl grpo``
script's own arguments (dataset, reward functions), ModelConfig's, and the dataset-mixture fields;
a launch through open-r1's ``src/open_r1/grpo.py`` adds open-r1's. Their defaults come from the
installed TRL and transformers, read from their source text (never imported), or else from the
built-in table of ``trl_defaults.VERSION`` (said in the spec). The process count comes from
``--num_processes``, the accelerate config file (``--config_file``, TRL's ``--accelerate_config``
profiles, or accelerate's default config location), and GPUs given to a ``trl vllm-serve`` server
in the same script are counted apart from the training processes.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import trl_defaults
from .base import ImportedRun, ImportProblem, read_source
from .pysource import REQUIRED, Expr, Option, dataclass_options, package_dir
from .shell import ShellSyntaxError, read_script
from .trl_launch import (
    LAUNCH_KEYS,
    Launch,
    accelerate_summary,
    launch_key,
    resolve_accelerate,
    split_launch,
    vllm_server,
)

NAME = "trl"
REQUIREMENTS: dict[str, dict[str, str]] = trl_defaults.REQUIREMENTS

# Where each options class lives, in the order later ones override earlier defaults.
CHAIN = (("transformers", "training_args.py", "TrainingArguments"),
         ("trl", "trainer/base_config.py", "_BaseConfig"),
         ("trl", "trainer/grpo_config.py", "GRPOConfig"),
         ("trl", "scripts/utils.py", "ScriptArguments"),
         ("trl", "scripts/grpo.py", "GRPOScriptArguments"),
         ("trl", "trainer/model_config.py", "ModelConfig"),
         ("trl", "scripts/utils.py", "DatasetMixtureConfig"))


@dataclass
class Table:
    """The options TRL knows, their defaults, and where they came from."""

    options: dict[str, Option]
    version: str
    origin: str  # installed | builtin
    rewards: tuple[str, ...]  # names the `trl grpo` script's reward registry holds
    profiles: dict[str, dict[str, Any]]  # TRL's --accelerate_config profiles


# --- the options and their defaults ----------------------------------------------------------------


def installed_table() -> Table | None:
    """TRL's options as the installed trl and transformers declare them (source text, no import)."""
    trl_dir, tf_dir = package_dir("trl"), package_dir("transformers")
    if trl_dir is None or tf_dir is None:
        return None
    return table_from(trl_dir, tf_dir, importlib.metadata.version("trl"), "installed")


def table_from(trl_dir: Path, tf_dir: Path, version: str, origin: str) -> Table | None:
    """TRL's options read from a trl package folder and a transformers one (the installed ones, or
    a release's files when the built-in tables are generated)."""
    options: dict[str, Option] = {}
    for package, rel, cls in CHAIN:
        base = trl_dir if package == "trl" else tf_dir
        path = base / rel
        if not path.is_file():
            continue
        found = dataclass_options(path.read_text(encoding="utf-8"), cls)
        options.update(found or {})
    if "num_generations" not in options:
        return None
    rewards = _registry_names(trl_dir / "scripts" / "grpo.py")
    profiles = {p.stem: accelerate_summary(yaml.safe_load(p.read_text(encoding="utf-8")) or {})
                for p in sorted((trl_dir / "accelerate_configs").glob("*.yaml"))}
    return Table(options, version, origin, rewards, profiles)


def _registry_names(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        return ()
    text = path.read_text(encoding="utf-8")
    m = re.search(r"reward_funcs_registry\s*=\s*\{(.*?)\n\s*\}", text, re.S)
    return tuple(re.findall(r"\"([A-Za-z_0-9]+)\"\s*:", m.group(1))) if m else ()


def table(version: str | None) -> Table:
    """The installed TRL's options when it is installed (and is ``version``, if one is named),
    else the built-in table; a version with neither is exit 2."""
    try:
        installed_version = importlib.metadata.version("trl")
    except importlib.metadata.PackageNotFoundError:
        installed_version = None
    if installed_version is not None and version in (None, installed_version):
        found = installed_table()
        if found is not None:
            return found
    wanted = version or trl_defaults.VERSION
    if wanted not in trl_defaults.OPTIONS:
        have = f"TRL {installed_version} is installed" if installed_version else "TRL is not installed"
        raise ImportProblem("--version", "", f"no defaults for TRL {wanted}: {have}, and the built-in tables are "
                            f"TRL {', '.join(trl_defaults.OPTIONS)}",
                            f"install trl=={wanted} where you import, or import against a built-in version")
    return Table(dict(trl_defaults.OPTIONS[wanted]), wanted, "builtin", trl_defaults.REWARD_FUNCS[wanted],
                 dict(trl_defaults.ACCELERATE_PROFILES[wanted]))


# --- reading the source ----------------------------------------------------------------------------


def import_source(path: str | Path, *, version: str | None = None,
                  environ: Mapping[str, str] | None = None) -> ImportedRun:
    """Read a TRL GRPO configuration or launch script and map it into a run spec."""
    path, shown, text = read_source(path, "a TRL config (YAML/JSON) or a launch script")
    env = dict(os.environ if environ is None else environ)
    tab = table(version)
    notes: list[str] = []
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        launch = Launch(kind="config", script="trl grpo")
        user = _from_config_file(path, shown, text, tab, launch)
        command = ["trl", "grpo", "--config", str(path.resolve())]
        workdir = path.resolve().parent
    else:
        launch, user, command, workdir = _from_script(text, path, shown, tab, env)
    resolve_accelerate(launch, workdir, env, tab.profiles)
    config = resolve(tab, user, launch)
    notes += launch.notes
    spec = _spec(config, user, launch, tab, path, command, workdir, notes)
    return ImportedRun(spec=spec, notes=notes)


def _from_config_file(path: Path, shown: str, text: str, tab: Table, launch: Launch,
                      open_r1: bool = False) -> dict[str, Any]:
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise ImportProblem(shown, where, f"is not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc})",
                            "fix the syntax; TRL reads the same file with yaml.safe_load") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ImportProblem(shown, "top level", "must be a mapping of GRPOConfig fields to values",
                            "write `field: value` lines, as `trl grpo --config` reads them")
    if not open_r1 and launch.kind == "config":
        # a recipe YAML of open-r1's (its grpo.py reads GRPOConfig plus its own script arguments,
        # such as dataset_configs): read it as open-r1 reads it, and say so
        own = sorted(str(k) for k in data if str(k) not in tab.options and str(k) in trl_defaults.OPEN_R1_OPTIONS)
        if own:
            open_r1 = True
            launch.notes.append(f"read as an open-r1 recipe (src/open_r1/grpo.py): {', '.join(own)} "
                                f"{'is' if len(own) == 1 else 'are'} open-r1's own argument{'s' * (len(own) > 1)}")
    known = _known(tab, open_r1)
    user: dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        if key in LAUNCH_KEYS and launch.kind in ("config", "trl-cli"):
            launch_key(launch, key, value, shown)
            continue
        if key not in known:
            raise _unknown(shown, key, known, tab)
        user[key] = value
    return user


def _known(tab: Table, open_r1: bool) -> dict[str, Option]:
    known = dict(tab.options)
    if open_r1:
        known.update(trl_defaults.OPEN_R1_OPTIONS)
    return known


def _unknown(shown: str, key: str, known: Mapping[str, Option], tab: Table) -> ImportProblem:
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    hint = (f"did you mean {' or '.join(close)}?" if close else
            f"TRL {tab.version}'s GRPOConfig, script and model arguments have no such field")
    return ImportProblem(shown, key, f"unknown option for TRL {tab.version} ({tab.origin} defaults)", hint)


def _from_script(text: str, path: Path, shown: str, tab: Table,
                 env: dict[str, str]) -> tuple[Launch, dict[str, Any], list[str], Path]:
    try:
        script = read_script(text, shown, environ=env)
    except ShellSyntaxError as exc:
        raise ImportProblem(shown, f"line {exc.line}", str(exc),
                            "fix the quoting; bash would fail on it too") from None
    cmd = script.find(_is_training)
    if cmd is None:
        raise ImportProblem(shown, "", "no TRL training command found (`trl grpo ...`, `accelerate launch ... "
                            "script.py ...` or `python script.py ...`)",
                            "import the script that launches the training, or the GRPOConfig YAML itself")
    workdir = path.resolve().parent
    launch, args = split_launch(cmd, shown)
    launch.env = {**script.exported, **cmd.env}
    devices = launch.env.get("CUDA_VISIBLE_DEVICES")
    if devices:
        launch.gpus_visible = len([d for d in devices.split(",") if d.strip()])
    vllm_server(script, launch)
    for line in script.unresolved:
        launch.notes.append(f"{shown} {line}: kept as written")
    user = _script_args(args, workdir, shown, tab, launch)
    return launch, user, list(cmd.argv), workdir


def _is_training(argv: list[str]) -> bool:
    if len(argv) >= 2 and Path(argv[0]).name == "trl" and argv[1] == "grpo":
        return True
    if len(argv) >= 2 and Path(argv[0]).name == "accelerate" and argv[1] == "launch":
        return True
    if argv and Path(argv[0]).name == "torchrun":
        return True
    return bool(argv) and Path(argv[0]).name.startswith("python") and any(a.endswith(".py") for a in argv[1:3])


def _script_args(args: list[str], workdir: Path, shown: str, tab: Table, launch: Launch) -> dict[str, Any]:
    """HfArgumentParser's reading: `--config F` first, then `--field value` pairs over it."""
    open_r1 = "open_r1" in launch.script
    known = _known(tab, open_r1)
    user: dict[str, Any] = {}
    pairs = _pairs(args, shown, known)
    config = next((v for k, v in pairs if k == "config"), None)
    if config is not None:
        cfg = Path(str(config[0]))
        cfg = cfg if cfg.is_absolute() else workdir / cfg
        if not cfg.is_file():
            raise ImportProblem(shown, "--config", f"{cfg} does not exist",
                                "import from the directory the script runs in, or import the YAML itself")
        cfg, cfg_shown, cfg_text = read_source(cfg, "the GRPOConfig YAML that --config names")
        user.update(_from_config_file(cfg, cfg_shown, cfg_text, tab, launch, open_r1))
    for key, values in pairs:
        if key == "config":
            continue
        if key in LAUNCH_KEYS and launch.kind == "trl-cli":
            launch_key(launch, key, values[0] if values else True, shown)
            continue
        if key not in known and key.startswith("no_") and key[3:] in known and _is_bool(known[key[3:]]):
            user[key[3:]] = False
            continue
        if key not in known:
            raise _unknown(shown, "--" + key, known, tab)
        user[key] = convert(known[key], values)
    return user


def _pairs(args: list[str], shown: str, known: Mapping[str, Option]) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(args):
        word = args[i]
        if not word.startswith("--"):
            raise ImportProblem(shown, word, "a value that follows no option",
                                "every training-script argument is `--field value` (HfArgumentParser)")
        key, eq, inline = word[2:].partition("=")
        key = key.replace("-", "_")
        if eq:
            out.append((key, [inline]))
            i += 1
            continue
        values = []
        i += 1
        while i < len(args) and not args[i].startswith("--"):
            values.append(args[i])
            i += 1
        out.append((key, values))
    return out


def _is_bool(opt: Option) -> bool:
    return re.search(r"\bbool\b", opt.annotation) is not None


def convert(opt: Option, values: list[str]) -> Any:
    """A command-line value as HfArgumentParser would type it, from the field's annotation."""
    ann = opt.annotation
    if _is_bool(opt):
        if not values:
            return True
        return values[0].strip().lower() in ("true", "1", "yes", "y", "t")
    if re.search(r"\blist\b|\bList\b", ann):
        inner = float if "float" in ann else (int if re.search(r"list\[int\]", ann) else str)
        return [inner(v) for v in values]
    if not values:
        return None
    value = values[0]
    if value in ("None", "none", "null") and ("None" in ann or "Optional" in ann):
        return None
    for typ in (int, float):
        if re.search(rf"\b{typ.__name__}\b", ann):
            try:
                return typ(value)
            except ValueError:
                continue
    if "dict" in ann and value.lstrip().startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


# --- resolving -------------------------------------------------------------------------------------


def resolve(tab: Table, user: Mapping[str, Any], launch: Launch) -> dict[str, Any]:
    """Every option with its value: the user's over the defaults, then what GRPOConfig's and
    TrainingArguments' __post_init__ derive (bf16, steps_per_generation, generation_batch_size,
    do_eval, eval_steps)."""
    open_r1 = "open_r1" in launch.script
    config: dict[str, Any] = {}
    for name, opt in _known(tab, open_r1).items():
        default = opt.default
        config[name] = None if default is REQUIRED else (str(default) if isinstance(default, Expr) else default)
    config.update(user)
    if config.get("bf16") is None:
        config["bf16"] = not config.get("fp16")
    if "steps_per_generation" in config:
        procs = launch.num_processes or 1
        per_device = int(config["per_device_train_batch_size"])
        if config.get("generation_batch_size") is None:
            if config.get("steps_per_generation") is None:
                config["steps_per_generation"] = config["gradient_accumulation_steps"]
            config["generation_batch_size"] = per_device * procs * int(config["steps_per_generation"])
        elif config.get("steps_per_generation") is None and per_device * procs:
            config["steps_per_generation"] = int(config["generation_batch_size"]) // (per_device * procs)
    if config.get("eval_strategy") not in (None, "no") and not config.get("do_eval"):
        config["do_eval"] = True
    if config.get("eval_strategy") == "steps" and config.get("eval_steps") is None:
        config["eval_steps"] = config.get("logging_steps")
    return config


# --- mapping into the spec -------------------------------------------------------------------------

LOSS_AGGREGATION = {"grpo": "sequence", "bnpo": "token", "dapo": "token", "dr_grpo": "token"}
SINKS = {"wandb": "wandb", "tensorboard": "tensorboard"}


def _spec(config: dict[str, Any], user: dict[str, Any], launch: Launch, tab: Table, path: Path,
          command: list[str], workdir: Path, notes: list[str]) -> dict[str, Any]:
    procs = int(launch.num_processes or 1)
    machines = max(int(launch.num_machines or 1), 1)
    per_device = int(config["per_device_train_batch_size"])
    accum = int(config.get("gradient_accumulation_steps") or 1)
    group = int(config.get("num_generations") or 1)
    server = bool(config.get("use_vllm")) and config.get("vllm_mode") == "server"
    per_node = math.ceil(procs / machines)  # training GPUs: a vLLM server's are in trainer.launcher
    if server and launch.vllm_server_gpus:
        notes.append(f"{launch.vllm_server_gpus} GPU(s) serve vLLM apart from the {procs} training processes: "
                     "hardware.gpus_per_node counts the training GPUs only")
    batch = per_device * procs * accum
    training: dict[str, Any] = {
        "batch_size": batch, "group_size": group, "micro_batch_size": per_device,
        "learning_rate": float(config["learning_rate"]), "temperature": float(config.get("temperature", 1.0)),
        "clip_low": float(config.get("epsilon", 0.2)),
        "clip_high": float(config.get("epsilon_high") or config.get("epsilon", 0.2)),
        "gradient_checkpointing": bool(config.get("gradient_checkpointing")),
        "seed": int(config.get("seed", 42)),
    }
    if config.get("max_grad_norm") is not None:
        training["grad_clip"] = float(config["max_grad_norm"])
    gen_batch = config.get("generation_batch_size")
    if gen_batch:
        training["generation_batch_size"] = max(int(gen_batch) // procs, 1)
    if config.get("max_completion_length"):
        training["max_response_tokens"] = int(config["max_completion_length"])
    if config.get("max_prompt_length"):
        training["max_prompt_tokens"] = int(config["max_prompt_length"])
    else:
        notes.append(f"TRL {tab.version} does not cap prompt length (no max_prompt_length): "
                     "training.max_prompt_tokens keeps the spec default; data.length measures the real prompts")
    _steps(config, training, notes)
    spec: dict[str, Any] = {
        "version": 1,
        "run": {"name": _run_name(config, path), "stage": "custom"},
        "model": _model(config, notes, workdir),
        "training": training,
        "algorithm": _algorithm(config, notes),
        "hardware": {"nodes": machines, "gpus_per_node": per_node},
        "checkpoints": _checkpoints(config, training, notes),
        "storage": {"checkpoint_dir": str(workdir / str(config.get("output_dir") or "trainer_output"))},
        "distributed": _distributed(config, launch),
        "monitoring": {"sinks": _sinks(config.get("report_to"), notes)},
        "trainer": {
            "framework": NAME, "version": tab.version, "defaults": tab.origin, "source": str(path.resolve()),
            "command": command, "workdir": str(workdir),
            "env": dict(launch.env), "config": _plain(config),
            # generation_batch_size in config is TRL's derived value unless the source gave it
            "launcher": {**launch.as_dict(), "reward_registry": list(tab.rewards),
                         "generation_batch_size_given": "generation_batch_size" in user,
                         "given": sorted(user)},  # the options the source set (the rest are defaults)
        },
    }
    data = _data(config, workdir, notes)
    if data:
        spec["data"] = data
    return spec


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    """JSON/YAML-safe values (tuples as lists)."""
    return json.loads(json.dumps(config, default=str))


def _run_name(config: Mapping[str, Any], path: Path) -> str:
    name = config.get("run_name") or (Path(str(config["output_dir"])).name if config.get("output_dir") else "")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name or path.stem)).strip("-") or "trl-run"


def _params_from_name(name: str) -> float | None:
    m = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])", name)
    return float(m.group(1)) if m else None


def local_path(name: str, workdir: Path) -> str:
    """A relative path that names a folder or file next to the launch, made absolute (the spec may
    be checked from anywhere); anything else (a hub id) as written."""
    if name and not Path(name).is_absolute() and (workdir / name).exists():
        return str(workdir / name)
    return name


def _model(config: Mapping[str, Any], notes: list[str], workdir: Path) -> dict[str, Any]:
    name = local_path(str(config.get("model_name_or_path") or ""), workdir)
    model: dict[str, Any] = {"name_or_path": name or "tiny"}
    if not name:
        notes.append("no model_name_or_path: the script must load its model itself; model.name_or_path is 'tiny'")
    params = _params_from_name(name)
    if params:
        model["params_b"] = params
        notes.append(f"model.params_b {params:g} read from the model's name {name!r} (config.model.params checks it "
                     "when the folder is local)")
    model["dtype"] = "bf16" if config.get("bf16") else ("fp16" if config.get("fp16") else "fp32")
    return model


def _algorithm(config: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    algo: dict[str, Any] = {"name": "grpo", "kl_beta": float(config.get("beta") or 0.0),
                            "updates_per_batch": int(config.get("num_iterations") or 1)}
    loss = str(config.get("loss_type") or "")
    if loss in LOSS_AGGREGATION:
        algo["loss_aggregation"] = LOSS_AGGREGATION[loss]
    elif loss:
        notes.append(f"loss_type {loss!r} has no counterpart in algorithm.loss_aggregation: left at its default")
    algo["advantage_std_normalize"] = config.get("scale_rewards") not in ("none", False)
    return algo


def _steps(config: Mapping[str, Any], training: dict[str, Any], notes: list[str]) -> None:
    max_steps = int(config.get("max_steps") or -1)
    if max_steps > 0:
        training["max_steps"] = max_steps
    else:
        notes.append(f"max_steps is {max_steps}: TRL trains num_train_epochs={config.get('num_train_epochs')} "
                     "epochs, whose steps depend on the dataset's size; training.max_steps keeps the spec default "
                     "(ASSUMED)")
    eval_steps = config.get("eval_steps")
    if config.get("eval_strategy") == "steps" and eval_steps and float(eval_steps) >= 1:
        training["eval_interval"] = int(float(eval_steps))
    elif config.get("eval_strategy") in (None, "no"):
        notes.append("evaluation is off (eval_strategy no): training.eval_interval keeps the spec default")


def _checkpoints(config: Mapping[str, Any], training: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"save_best_only": False}
    strategy = config.get("save_strategy")
    save_steps = config.get("save_steps")
    if strategy == "steps" and save_steps and float(save_steps) >= 1:
        out["save_interval"] = int(float(save_steps))
    elif strategy != "no":
        notes.append(f"save_strategy {strategy}: checkpoints.save_interval keeps the spec default")
    limit = config.get("save_total_limit")
    if limit:
        out["keep_last"] = int(limit)
    else:
        steps = int(training.get("max_steps") or 1000)
        interval = int(out.get("save_interval") or 100)
        out["keep_last"] = max(steps // max(interval, 1), 1)
        notes.append(f"save_total_limit is unset: TRL keeps every checkpoint; checkpoints.keep_last = "
                     f"{out['keep_last']} (every save of the run)")
    return out


def _distributed(config: Mapping[str, Any], launch: Launch) -> dict[str, Any]:
    out: dict[str, Any] = {"cpu_offload": launch.offload}
    if config.get("use_vllm") and config.get("vllm_mode") == "colocate":
        out["tensor_parallel_size"] = int(config.get("vllm_tensor_parallel_size") or 1)
    return out


def _sinks(report_to: Any, notes: list[str]) -> list[str]:
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if "all" in names:
        notes.append("report_to all: every installed integration reports; only jsonl is mapped")
    return ["jsonl"] + [SINKS[n] for n in names if n in SINKS]


def _data(config: Mapping[str, Any], workdir: Path, notes: list[str]) -> dict[str, Any]:
    """Local dataset files become data.train / data.val; a hub dataset is noted as not checkable."""
    name = config.get("dataset_name")
    out: dict[str, Any] = {}
    if not name:
        mixture = config.get("datasets") or []
        if mixture:
            notes.append(f"dataset mixture of {len(mixture)} datasets: not mapped into data.train")
        return out
    candidate = Path(str(name)) if Path(str(name)).is_absolute() else workdir / str(name)
    if candidate.is_file():
        out["train"] = str(candidate)
        out["format"] = "trl"
        column = config.get("dataset_prompt_column")
        if column and column != "prompt":
            out["fields"] = {"prompt": str(column)}
    else:
        notes.append(f"dataset {name!r} is a hub dataset or a folder the data checks do not read: not checkable "
                     "offline (data.train left out)")
    return out

