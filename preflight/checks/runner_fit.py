"""What the built-in runner (runner/) does with the spec, so the gate and the runner agree: where
the runner would refuse a spec or quietly run something else than it says, the gate fails; where
it adjusts a value with a note in the run's events, the gate warns first. Settings the run would
not read at all are named too (config.unused)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from ..presets import ARITHMETIC_VAL_FRACTION, BUILTIN_REWARDS, TINY_POSITIONS
from ..registry import Context, Rule, check
from ..result import Outcome
from ..spec import Spec
from ._framework import launched_by_framework
from ._relations import Findings, user_set

TINY = "tiny"  # model.name_or_path of the built-in test model (runner.model.TINY)
GPUS = ("hardware.gpu_required", "hardware.gpus_per_node")


def _data_files(s: Spec, f: Findings) -> bool:
    """Whether the run reads the spec's data files (else the built-in arithmetic task)."""
    train, val = s.get("data.train"), s.get("data.val")
    if bool(train) != bool(val):
        have, missing = ("data.train", "data.val") if train else ("data.val", "data.train")
        f.fail(f"{have} is set but {missing} is not: the runner reads files only when both are given, and "
               "would train on the built-in arithmetic task instead", f"set {missing} as well, or neither")
    domain = str(s.get("run.domain"))
    if not (train and val) and domain != "math":
        f.fail(f"run.domain {domain} without data.train and data.val: the built-in task is arithmetic (math), "
               f"so a {domain} reward would score arithmetic", "set data.train and data.val to the domain's files")
    return bool(train and val)


def _reward(s: Spec, f: Findings) -> str:
    """The reward the runner would load (runner.rewards.reward_for), checked without importing it."""
    given, domain = s.get("run.reward"), str(s.get("run.domain"))
    name = str(given or domain)
    field = "run.reward" if given else "run.domain"
    if ":" not in name:
        if name not in BUILTIN_REWARDS:
            f.fail(f"{field} {name!r} has no built-in reward ({', '.join(BUILTIN_REWARDS)}): the runner refuses "
                   "to start", "set run.reward to a built-in reward or a plug-in 'module:attr'")
        return name
    module, _, attr = name.partition(":")
    if not module or not attr or ":" in attr:
        f.fail(f"run.reward {name!r} is not 'module:attr': the runner refuses to start",
               "write it as 'my_pkg.rewards:length_reward'")
        return name
    top = module.split(".")[0]
    try:
        found = importlib.util.find_spec(top) is not None  # the top-level package only: imports nothing
    except (ImportError, ValueError):
        found = False
    if not found:
        f.warn(f"run.reward plug-in module {top!r} is not importable here", "install it, or put it on "
               "PYTHONPATH where the runner starts (`--level active` loads it)")
    return name


def _lengths(s: Spec, f: Findings) -> None:
    if str(s.get("model.name_or_path")) != TINY:
        return
    prompt, response = int(s.get("training.max_prompt_tokens")), int(s.get("training.max_response_tokens"))
    if prompt + response > TINY_POSITIONS:
        cut = max(TINY_POSITIONS - response, 1)
        f.warn(f"max_prompt_tokens {prompt} + max_response_tokens {response} > the built-in tiny model's "
               f"{TINY_POSITIONS} positions: the runner cuts prompts to {cut} token{'s' if cut > 1 else ''}",
               f"keep max_prompt_tokens + max_response_tokens <= {TINY_POSITIONS} for model 'tiny' "
               "(cpu-smoke uses 16 + 6)")


def _builtin_task(s: Spec, f: Findings) -> None:
    val = s.get("training.val_prompts")
    if val is None or not (user_set(s, "training.val_prompts") or user_set(s, "training.task_rows")):
        return
    rows = int(int(s.get("training.task_rows")) * ARITHMETIC_VAL_FRACTION)
    if int(val) > rows:
        f.warn(f"val_prompts {val} > the built-in task's ~{rows} validation rows ({ARITHMETIC_VAL_FRACTION:.0%} of "
               f"task_rows {s.get('training.task_rows')}): only those are evaluated",
               "raise training.task_rows, or set val_prompts: null (the whole val split)")


def _dtype(s: Spec, f: Findings) -> None:
    dtype = str(s.get("model.dtype"))
    if s.uses_gpus and dtype != "bf16":
        f.warn(f"model.dtype {dtype}: the built-in runner trains in bf16 mixed precision on GPUs, whatever this says",
               "set model.dtype: bf16 for the built-in runner")
    elif not s.uses_gpus and dtype != "fp32" and user_set(s, "model.dtype"):
        f.warn(f"model.dtype {dtype}: the built-in runner trains in fp32 on CPU", "set model.dtype: fp32 on a CPU run")


@check("config.runner", "The built-in runner runs the spec as written", "static", rules=(
    Rule("data.train", ("data.val",), "fail",
         "both or neither: with only one the runner trains on the built-in arithmetic task"),
    Rule("run.domain", ("data.train", "data.val"), "fail",
         "code and chat need the spec's data files: the built-in task is arithmetic"),
    Rule("run.reward", ("run.domain",), "fail; warn when a plug-in is not importable here",
         "a built-in reward (code, math) or 'module:attr'; a domain without one (chat) needs it"),
    Rule("training.max_response_tokens", ("training.max_prompt_tokens", "model.name_or_path"), "warn",
         "prompt + response within the built-in tiny model's 256 positions (the runner cuts the prompt)"),
    Rule("training.val_prompts", ("training.task_rows",), "warn",
         "at most the built-in task's validation split (5 % of task_rows)"),
    Rule("model.dtype", GPUS, "warn",
         "bf16 on GPUs (fp32 on CPU): the built-in runner trains in that precision whatever this says"),
))
def runner_fit(ctx: Context) -> Outcome:
    """What the built-in runner does with the spec (runner/config.py, runner/data.py,
    runner/rewards.py, runner/policy.py): it reads data files only when data.train and data.val
    are both set, else it generates the arithmetic task, so one without the other, or a code or
    chat domain without files, fails; it loads run.reward (or the domain's reward: code, math) and
    refuses an unknown name (fails); it cuts max_prompt_tokens so prompt + response fit the tiny
    model's 256 positions (warns); it evaluates at most the built-in task's validation split
    (warns when val_prompts asks for more); and it trains in bf16 mixed precision on GPUs, fp32 on
    CPU, whatever model.dtype says (warns). Skipped for a run a framework launches (trainer:)."""
    skip = launched_by_framework(ctx, "how the spec's data, reward and dtype are run")
    if skip is not None:
        return skip
    s = ctx.spec
    f = Findings()
    files = _data_files(s, f)
    reward = _reward(s, f)
    _lengths(s, f)
    if not files:
        _builtin_task(s, f)
    _dtype(s, f)
    source = f"data files {s.get('data.train')} / {s.get('data.val')}" if files else "the built-in arithmetic task"
    found = f"{source}, reward {reward!r}, model {s.get('model.name_or_path')}"
    return f.outcome(found, "a spec the runner runs as written")


@dataclass(frozen=True)
class Ignored:
    """A field the run does not read in some configuration: ``ignored(spec)`` says when, ``why``."""

    field: str
    related: tuple[str, ...]
    ignored: Callable[[Spec], bool]
    why: str


def _off(switch: str) -> Callable[[Spec], bool]:
    return lambda s: not s.get(switch)


def _files(s: Spec) -> bool:
    return bool(s.get("data.train") and s.get("data.val"))


def _always(s: Spec) -> bool:
    return True


IGNORED: tuple[Ignored, ...] = (
    Ignored("algorithm.positive_resampling_threshold", ("algorithm.no_positive_resampling",),
            _off("algorithm.no_positive_resampling"), "no_positive_resampling is off"),
    Ignored("algorithm.overlong_buffer_tokens", ("algorithm.overlong_shaping",), _off("algorithm.overlong_shaping"),
            "overlong_shaping is off"),
    Ignored("algorithm.overlong_penalty_factor", ("algorithm.overlong_shaping",),
            _off("algorithm.overlong_shaping"), "overlong_shaping is off"),
    Ignored("training.warm_start_lr", ("training.warm_start_steps",), _off("training.warm_start_steps"),
            "warm_start_steps is 0"),
    Ignored("training.warm_start_target", ("training.warm_start_steps",), _off("training.warm_start_steps"),
            "warm_start_steps is 0"),
    Ignored("training.task_difficulty", ("data.train", "data.val"), _files,
            "the run reads data.train and data.val, not the built-in task"),
    Ignored("training.task_rows", ("data.train", "data.val"), _files,
            "the run reads data.train and data.val, not the built-in task"),
    *(Ignored(f"data.split.{k}", ("data.train", "data.val"), lambda s: not _files(s),
              "without data files the built-in task is split 90/5/5") for k in ("train_ratio", "val_ratio",
                                                                                "test_ratio")),
    Ignored("checkpoints.keep_last", ("checkpoints.save_best_only",), lambda s: bool(s.get("checkpoints.save_best_only")),
            "save_best_only keeps the best and the latest checkpoint"),
    Ignored("checkpoints.metrics", (), _always,
            "the built-in runner records checkpoints.metric with each checkpoint and does not read this list"),
    *(Ignored(f"early_stopping.{k}", ("early_stopping.enabled",), _off("early_stopping.enabled"),
              "early stopping is off") for k in ("metric", "mode", "patience", "min_delta")),
    *(Ignored(f"dynamic_batch.{k}", ("dynamic_batch.enabled",), _off("dynamic_batch.enabled"),
              "dynamic_batch is off") for k in ("target_efficiency", "efficiency", "max_batch_size", "factor",
                                                 "every_steps", "lr_scaling")),
    Ignored("algorithm.fp32_lm_head", GPUS, lambda s: not s.uses_gpus,
            "on CPU the model runs in fp32, so its logits are fp32 anyway"),
    Ignored("distributed.cpu_workers", GPUS, lambda s: s.uses_gpus,
            "the run trains on its GPUs, one worker each"),
    Ignored("distributed.bucket_size_mb", (), _always,
            "FSDP2 all-gathers and reduce-scatters per sharded unit: there are no DDP buckets"),
    Ignored("distributed.gradient_compression", GPUS, lambda s: not s.uses_gpus,
            "on CPU (gloo) gradients are reduced in fp32"),
    *(Ignored(f"monitoring.wandb.{k}", ("monitoring.sinks",),
              lambda s: "wandb" not in (s.get("monitoring.sinks") or []), "wandb is not among monitoring.sinks")
      for k in ("project", "entity", "mode")),
    Ignored("monitoring.gpu_sample_interval_s", (), _always,
            "nothing reads it: the runner samples the GPUs once per step"),
    # the built-in runner shards with FSDP2 over all ranks and has none of these; hw.memory.gpu does
    # not count them either (a framework's run, which has them, skips config.unused)
    Ignored("distributed.cpu_offload", (), lambda s: bool(s.get("distributed.cpu_offload")),
            "the built-in runner keeps the model states on the GPUs (no CPU offload)"),
    Ignored("distributed.tensor_parallel_size", (), lambda s: int(s.get("distributed.tensor_parallel_size") or 1) > 1,
            "the built-in runner has no tensor parallelism"),
    Ignored("distributed.sequence_parallel_size", (),
            lambda s: int(s.get("distributed.sequence_parallel_size") or 1) > 1,
            "the built-in runner has no sequence parallelism"),
    Ignored("network.interfaces", ("hardware.nodes",), lambda s: int(s.get("hardware.nodes")) < 2,
            "a single-node run has no link between nodes to check"),
)


@check("config.unused", "No setting is silently ignored", "static", rules=tuple(
    Rule(i.field, i.related, "warn", f"set only where the run reads it: ignored when {i.why}") for i in IGNORED
))
def unused(ctx: Context) -> Outcome:
    """Settings written in the spec that the run would not read, so a change to them changes
    nothing: a piece's parameters while the piece is off (overlong shaping, no-positive-resampling,
    the warm start, early stopping, the dynamic batch, the wandb sink), the built-in task's
    settings when the spec names data files, keep_last with save_best_only, the CPU workers of a
    GPU run, and fields the built-in runner never reads (checkpoints.metrics,
    distributed.bucket_size_mb, monitoring.gpu_sample_interval_s). Only what the spec's file sets is
    judged, never a default. Each warns. Skipped for a run a framework launches (trainer:), whose
    own configuration the trainer.<framework>.* checks judge."""
    skip = launched_by_framework(ctx, "which spec settings are read")
    if skip is not None:
        return skip
    s = ctx.spec
    f = Findings()
    for i in IGNORED:
        if user_set(s, i.field) and i.ignored(s):
            f.warn(f"{i.field} is set but ignored: {i.why}", f"remove {i.field}, or switch on what reads it")
    return f.outcome("every setting the spec writes is read", "no setting the run ignores")
