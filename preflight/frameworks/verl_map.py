"""verl's resolved configuration in run-spec terms: what maps to which spec field, and what had to
be assumed (returned as notes, written as comments into the spec). docs/frameworks.md has the table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import ImportProblem
from .hydra import lookup

ARO = "actor_rollout_ref"
SINKS = {"wandb": "wandb", "tensorboard": "tensorboard", "console": "stdout"}
AGGREGATION = {"token-mean": "token", "seq-mean-token-mean": "sequence", "seq-mean-token-sum": "sequence",
               "seq-mean-token-sum-norm": "sequence"}
_SIZE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)[bB](?![a-zA-Z])")


class _Reader:
    """Typed reads of the resolved config that name the key and the fix when a value is wrong."""

    def __init__(self, config: Mapping[str, Any], source: str) -> None:
        self.config, self.source = config, source

    def get(self, key: str, default: Any = None) -> Any:
        return lookup(self.config, key, default)

    def integer(self, key: str, allow_none: bool = False) -> int | None:
        value = self.get(key)
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or (isinstance(value, float)
                                                                               and not value.is_integer()):
            raise self.problem(key, value, "a whole number")
        return int(value)

    def number(self, key: str) -> float:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.problem(key, value, "a number")
        return float(value)

    def problem(self, key: str, value: Any, wanted: str) -> ImportProblem:
        hint = "set it in the launch script"
        if isinstance(value, str) and "$" in value:
            hint = f"{value} is a shell variable the script does not set: export it before importing, or set the value"
        return ImportProblem(self.source, key, f"{value!r} is not {wanted}", hint)


def files_of(value: Any) -> list[str]:
    """verl's data.train_files / val_files: one path or a list of them."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def expand_path(path: str, env: Mapping[str, str], workdir: Path | None = None) -> str:
    """``~`` from HOME, and a relative path from ``workdir`` (where verl runs and opens it)."""
    if path.startswith("~") and env.get("HOME"):
        path = env["HOME"] + path[1:]
    if workdir is not None and "://" not in path and not Path(path).is_absolute():
        path = str(workdir / path)
    return path


def count_rows(path: Path) -> int | None:
    """Rows of a parquet (its footer) or a JSON-lines file; None when it cannot be read."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq  # only when the run names parquet files

            return int(pq.ParquetFile(path).metadata.num_rows)
        if path.suffix in (".jsonl", ".json"):
            with path.open("rb") as fh:
                return sum(1 for line in fh if line.strip())
    except (OSError, ValueError, ImportError):
        return None
    return None


def params_from_name(name: str) -> float | None:
    """'Qwen/Qwen2-7B-Instruct' -> 7.0: the size most model names carry."""
    found = _SIZE.findall(name.rsplit("/", 1)[-1])
    return float(found[-1]) if found else None


def to_spec(config: Mapping[str, Any], source: str, env: Mapping[str, str],
            workdir: Path) -> tuple[dict[str, Any], list[str]]:
    """The run-spec document (without ``trainer``) and the notes on what was assumed. Relative paths
    are taken from ``workdir``, where the command runs."""
    r = _Reader(config, source)
    notes: list[str] = []
    spec: dict[str, Any] = {"run": _run(r), "model": _model(r, notes), "hardware": _hardware(r),
                            "algorithm": _algorithm(r, notes)}
    training, steps = _training(r, env, workdir, notes)
    spec["training"] = training
    spec["checkpoints"] = _checkpoints(r, steps, notes)
    spec["storage"] = {"checkpoint_dir": expand_path(str(r.get("trainer.default_local_dir")), env, workdir)}
    spec["early_stopping"] = {"enabled": False}  # verl has no early stopping
    spec["distributed"] = _distributed(r, notes)
    spec["monitoring"] = _monitoring(r)
    data = _data(r, env, workdir, notes)
    if data:
        spec["data"] = data
    return spec, notes


def _run(r: _Reader) -> dict[str, Any]:
    raw = f"{r.get('trainer.project_name') or 'verl'}-{r.get('trainer.experiment_name') or 'run'}"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-.") or "verl-run"
    if not name[0].isalnum():
        name = "v" + name
    return {"name": name, "domain": "math"}


def _model(r: _Reader, notes: list[str]) -> dict[str, Any]:
    path = r.get(f"{ARO}.model.path")
    if not isinstance(path, str) or not path:
        raise ImportProblem(r.source, f"{ARO}.model.path", "no model is named",
                            f"set {ARO}.model.path=<hub name or local folder>")
    model: dict[str, Any] = {"name_or_path": path, "dtype": "bf16"}
    size = params_from_name(path)
    if size is not None:
        model["params_b"] = size
        notes.append(f"model.params_b {size:g}: read from the model's name; the model checks count its "
                     "config.json when the folder is local")
    else:
        notes.append("model.params_b: not in the model's name; set it (billions of parameters) for the memory "
                     "and checkpoint estimates")
    return model


def _hardware(r: _Reader) -> dict[str, Any]:
    return {"nodes": r.integer("trainer.nnodes"), "gpus_per_node": r.integer("trainer.n_gpus_per_node")}


def _algorithm(r: _Reader, notes: list[str]) -> dict[str, Any]:
    estimator = str(r.get("algorithm.adv_estimator"))
    if estimator != "grpo":
        notes.append(f"algorithm.adv_estimator {estimator}: the spec's algorithm fields describe GRPO-style "
                     "group advantages; the framework rules read verl's own keys")
    use_kl_loss = bool(r.get(f"{ARO}.actor.use_kl_loss"))
    kl = r.number(f"{ARO}.actor.kl_loss_coef") if use_kl_loss else 0.0
    if not use_kl_loss and r.get("algorithm.use_kl_in_reward"):
        kl = float(r.get("algorithm.kl_ctrl.kl_coef") or 0.0)
        notes.append(f"algorithm.kl_beta {kl:g}: verl's KL in the reward (algorithm.kl_ctrl.kl_coef)")
    agg = str(r.get(f"{ARO}.actor.loss_agg_mode"))
    mode = AGGREGATION.get(agg, "token")
    if agg not in AGGREGATION:
        notes.append(f"loss_agg_mode {agg}: no spec equivalent, written as token")
    epochs = r.integer(f"{ARO}.actor.ppo_epochs") or 1
    mini = r.integer(f"{ARO}.actor.ppo_mini_batch_size") or 1
    prompts = r.integer("data.train_batch_size") or 1
    updates = max(1, epochs * max(1, prompts // max(mini, 1)))
    return {"name": "grpo", "kl_beta": kl, "loss_aggregation": mode,
            "advantage_std_normalize": bool(r.get("algorithm.norm_adv_by_std_in_grpo", True)),
            "updates_per_batch": updates}


def _clip(r: _Reader, side: str) -> float:
    value = r.get(f"{ARO}.actor.clip_ratio_{side}")
    return float(value) if isinstance(value, int | float) else r.number(f"{ARO}.actor.clip_ratio")


def _training(r: _Reader, env: Mapping[str, str], workdir: Path, notes: list[str]) -> tuple[dict[str, Any], int]:
    n = r.integer(f"{ARO}.rollout.n") or 1
    prompts = r.integer("data.train_batch_size") or 1
    micro = r.integer(f"{ARO}.actor.ppo_micro_batch_size_per_gpu", allow_none=True)
    if r.get(f"{ARO}.actor.use_dynamic_bsz"):
        notes.append("actor.use_dynamic_bsz: micro-batches are packed by ppo_max_token_len_per_gpu, so "
                     "training.micro_batch_size is left unset")
        micro = None
    steps = _max_steps(r, prompts, env, workdir, notes)
    training: dict[str, Any] = {
        "batch_size": prompts * n, "group_size": n, "micro_batch_size": micro,
        "learning_rate": r.number(f"{ARO}.actor.optim.lr"),
        "temperature": r.number(f"{ARO}.rollout.temperature"),
        "clip_low": _clip(r, "low"), "clip_high": _clip(r, "high"),
        "grad_clip": r.number(f"{ARO}.actor.grad_clip"),
        "max_prompt_tokens": r.integer("data.max_prompt_length"),
        "max_response_tokens": r.integer("data.max_response_length"),
        "max_steps": steps,
        "gradient_checkpointing": bool(r.get(f"{ARO}.model.enable_gradient_checkpointing")),
        "seed": r.get("data.seed") if isinstance(r.get("data.seed"), int) else 0,
    }
    test_freq = r.integer("trainer.test_freq") or -1
    if test_freq > 0:
        training["eval_interval"] = test_freq
    else:
        training["eval_interval"] = steps
        notes.append("trainer.test_freq <= 0: verl validates only before training and at the end; "
                     "training.eval_interval is the run's length")
    return training, steps


def _max_steps(r: _Reader, prompts: int, env: Mapping[str, str], workdir: Path, notes: list[str]) -> int:
    total = r.integer("trainer.total_training_steps", allow_none=True)
    if total is not None and total > 0:
        return total
    epochs = r.integer("trainer.total_epochs") or 1
    files = [Path(expand_path(f, env, workdir)) for f in files_of(r.get("data.train_files"))]
    counts = [count_rows(f) for f in files]
    if files and all(c is not None for c in counts):
        rows = sum(c for c in counts if c is not None)
        per_epoch = rows // prompts  # verl's train dataloader drops the last partial batch
        if per_epoch < 1:
            raise ImportProblem(r.source, "data.train_batch_size",
                                f"{prompts} prompts per step but the training files hold {rows} rows: verl's "
                                "dataloader (drop_last) yields no step", "lower data.train_batch_size or add data")
        notes.append(f"training.max_steps {per_epoch * epochs}: {rows} training rows // {prompts} prompts per step "
                     f"x {epochs} epochs (rows that filter_overlong_prompts drops are not subtracted)")
        return per_epoch * epochs
    notes.append(f"training.max_steps {epochs}: the training files could not be counted here, so one step per "
                 f"epoch x total_epochs {epochs} is assumed; set trainer.total_training_steps, or import where "
                 "the data files are")
    return epochs


def _checkpoints(r: _Reader, steps: int, notes: list[str]) -> dict[str, Any]:
    save = r.integer("trainer.save_freq") or -1
    out: dict[str, Any] = {"save_best_only": False}
    if save > 0:
        out["save_interval"] = save
    else:
        out["save_interval"] = steps
        notes.append("trainer.save_freq <= 0: verl saves no checkpoint during the run; "
                     "checkpoints.save_interval is the run's length")
    keep = r.integer("trainer.max_actor_ckpt_to_keep", allow_none=True)
    saves = max(1, steps // max(int(out["save_interval"]), 1))
    if keep is None or keep <= 0:
        out["keep_last"] = saves
        notes.append(f"trainer.max_actor_ckpt_to_keep null: verl keeps every checkpoint, {saves} in this run "
                     "(checkpoints.keep_last)")
    else:
        out["keep_last"] = keep
    return out


def _distributed(r: _Reader, notes: list[str]) -> dict[str, Any]:
    fsdp = r.get(f"{ARO}.actor.fsdp_config") or {}
    out: dict[str, Any] = {
        "tensor_parallel_size": r.integer(f"{ARO}.rollout.tensor_model_parallel_size") or 1,
        "sequence_parallel_size": r.integer(f"{ARO}.actor.ulysses_sequence_parallel_size") or 1,
        "cpu_offload": bool(fsdp.get("param_offload")) and bool(fsdp.get("optimizer_offload")),
    }
    if (r.integer("trainer.nnodes") or 1) > 1:
        out["ray_address"] = "auto"
        notes.append("distributed.ray_address auto: a multi-node verl run joins the Ray cluster started on its nodes")
    return out


def _monitoring(r: _Reader) -> dict[str, Any]:
    loggers = r.get("trainer.logger") or []
    if isinstance(loggers, str):
        loggers = [loggers]
    sinks = ["jsonl"] + [SINKS[str(x)] for x in loggers if str(x) in SINKS]
    out: dict[str, Any] = {"sinks": list(dict.fromkeys(sinks))}
    if "wandb" in out["sinks"] and r.get("trainer.project_name"):
        out["wandb"] = {"project": str(r.get("trainer.project_name"))}
    return out


def _data(r: _Reader, env: Mapping[str, str], workdir: Path, notes: list[str]) -> dict[str, Any]:
    train = [expand_path(f, env, workdir) for f in files_of(r.get("data.train_files"))]
    val = [expand_path(f, env, workdir) for f in files_of(r.get("data.val_files"))]
    data: dict[str, Any] = {"format": "verl"}
    if train:
        data["train"] = train[0]
    if val:
        data["val"] = val[0]
    for name, files in (("train", train), ("val", val)):
        if len(files) > 1:
            notes.append(f"data.{name}: verl reads {len(files)} files; the spec's data checks read the first "
                         f"({files[0]}); trainer.verl.data reads every one")
    split = _split(train[:1], val[:1])
    if split is not None:
        data["split"] = split
        notes.append(f"data.split: train {split['train_ratio']:g} / val {split['val_ratio']:g} / no test split, as "
                     "the files the data checks read hold them (verl has no test split)")
    prompt_key = str(r.get("data.prompt_key") or "prompt")
    if prompt_key != "prompt":
        data["fields"] = {"messages": prompt_key, "prompt": prompt_key}
    return data


def _split(train: list[str], val: list[str]) -> dict[str, float] | None:
    """The split ratios the data files have (verl's runs come split already), or None uncounted."""
    counts = [count_rows(Path(f)) for f in train + val]
    if len(counts) != 2 or any(c is None for c in counts) or not sum(c or 0 for c in counts):
        return None
    ratio = round((counts[0] or 0) / sum(c or 0 for c in counts), 4)
    return {"train_ratio": ratio, "val_ratio": round(1 - ratio, 4), "test_ratio": 0.0}
