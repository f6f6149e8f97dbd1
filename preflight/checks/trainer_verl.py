"""verl's own configuration (trainer.config, as `preflight import verl` resolved it) against the rules
verl enforces late or not at all: the batch arithmetic its workers normalise, the log-prob micro
batches, the rollout engine's memory fraction beside the training states, the parallel sizes, the
rollout's context, the data's keys and reward routing, retention, and a resume at an epoch boundary.

Every check here skips for a spec that verl does not launch. The rules were found in verl's tracker
(docs/frameworks.md lists the threads); the arithmetic follows verl's trainer (verl/utils/config.py
validate_config, ActorConfig.validate) and its FSDP workers' normalisation of the mini-batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..frameworks.verl_map import ARO, count_rows, expand_path, files_of
from ..frameworks.verl_rows import KNOWN_SOURCES, is_known_source, read_rows
from ..memory import GB, gb
from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed, skipped
from ._framework import config_number
from ._relations import Findings
from .memory import gpu_capacity
from .model import model_shape

CONFIG = "trainer.config"
GPUS = ("hardware.nodes", "hardware.gpus_per_node")


class Verl:
    """Reads of the resolved verl config (a Mapping tree) by dotted key."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def number(self, dotted: str, default: int = 0, minimum: int | None = None) -> int:
        """An integer setting; its default when absent; UnreadableValue when it is not one."""
        return int(config_number(self.get(dotted), f"trainer.config.{dotted}", default, minimum=minimum))

    @property
    def n_gpus(self) -> int:
        return self.number("trainer.nnodes", 1, minimum=1) * self.number("trainer.n_gpus_per_node", 1, minimum=1)

    @property
    def uses_reference(self) -> bool:
        return bool(self.get(f"{ARO}.actor.use_kl_loss")) or bool(self.get("algorithm.use_kl_in_reward"))


def _verl(ctx: Context) -> Verl | Outcome:
    if ctx.spec.framework != "verl":
        return skipped("the run is not launched by verl (trainer.framework)")
    config = ctx.spec.get(CONFIG)
    if not isinstance(config, Mapping):
        return failed("trainer.config is not verl's resolved configuration", "a mapping",
                      "re-import the launch script with `preflight import verl SCRIPT`")
    return Verl(config)


# --- batch arithmetic ------------------------------------------------------------------------------


# verl's advantage estimators whose baseline is the prompt's group (verl/trainer/ppo/core_algos.py)
GROUP_ESTIMATORS = frozenset({"grpo", "grpo_passk", "grpo_vectorized", "rloo", "rloo_vectorized", "opo", "gpg",
                              "reinforce_plus_plus_baseline"})


@check("trainer.verl.batch", "verl's batch sizes divide into GPUs and micro-batches", "static", rules=(
    Rule(CONFIG, (*GPUS, "training.batch_size"), "fail",
         "data.train_batch_size x rollout.n divides over nnodes x n_gpus_per_node (verl chunks the batch "
         "equally over the workers)"),
    Rule("training.micro_batch_size", ("training.group_size", "distributed.sequence_parallel_size", *GPUS), "fail",
         "actor.ppo_mini_batch_size x rollout.n / (GPUs / ulysses sp) is a multiple of, and at least, "
         "ppo_micro_batch_size_per_gpu; train_batch_size >= ppo_mini_batch_size"),
    Rule("training.group_size", ("algorithm.name",), "warn",
         "a group-relative adv_estimator (grpo, rloo, ...) samples rollout.n >= 2 completions per prompt"),
))
def batch(ctx: Context) -> Outcome:
    """verl's batch arithmetic, as its trainer and FSDP workers do it (data.train_batch_size prompts,
    rollout.n completions each, G = nnodes x n_gpus_per_node GPUs, sp = ulysses_sequence_parallel_size):

    - train_batch_size x n must divide by G: the batch is split equally over the workers (verl's
      validate_config; DataProto refuses an uneven chunk, EasyR1 #44)
    - train_batch_size >= actor.ppo_mini_batch_size (ActorConfig.validate)
    - G divides by sp, and the per-GPU mini-batch, ppo_mini_batch_size x n / (G / sp), is whole
      and at least 1
    - that per-GPU mini-batch is a multiple of ppo_micro_batch_size_per_gpu and at least it:
      otherwise gradient accumulation = mini // micro is 0 and the loss is divided by 0, a silent
      NaN (verl #405)
    - exactly one of ppo_micro_batch_size and ppo_micro_batch_size_per_gpu is set
    - a group-relative algorithm.adv_estimator (grpo, rloo, opo, ...) with rollout.n < 2 warns: a
      group of one has no baseline
    With actor.use_dynamic_bsz the micro-batches are packed by tokens: only the first three apply.
    Each breach fails."""
    v = _verl(ctx)
    if isinstance(v, Outcome):
        return v
    f = Findings()
    prompts, n, gpus = v.number("data.train_batch_size"), v.number(f"{ARO}.rollout.n", 1), v.n_gpus
    sp = v.number(f"{ARO}.actor.ulysses_sequence_parallel_size", 1)
    mini = v.number(f"{ARO}.actor.ppo_mini_batch_size")
    real = prompts * n
    if gpus < 1 or real % gpus:
        f.fail(f"train_batch_size {prompts} x rollout.n {n} = {real} does not divide over {gpus} GPUs",
               f"make data.train_batch_size x rollout.n a multiple of {gpus}")
    if prompts < mini:
        f.fail(f"train_batch_size {prompts} < ppo_mini_batch_size {mini}",
               "lower actor.ppo_mini_batch_size to at most data.train_batch_size")
    estimator = str(v.get("algorithm.adv_estimator") or "")
    if estimator in GROUP_ESTIMATORS and n < 2:
        f.warn(f"adv_estimator {estimator} with rollout.n {n}: a group of one completion has no baseline (verl "
               "then uses the raw reward as the advantage)", "sample at least 2 completions per prompt: "
               "actor_rollout_ref.rollout.n 8-16 is usual for group-relative estimators")
    per_gpu = _mini_per_gpu(f, mini, n, gpus, sp)
    dynamic = bool(v.get(f"{ARO}.actor.use_dynamic_bsz"))
    if not dynamic:
        _micro(f, v, per_gpu)
    found = (f"train_batch_size {prompts} x n {n} on {gpus} GPUs (sp {sp}); mini-batch {mini} -> "
             f"{per_gpu if per_gpu is not None else '?'} per GPU; micro "
             f"{'dynamic' if dynamic else v.get(f'{ARO}.actor.ppo_micro_batch_size_per_gpu')}")
    return f.outcome(found, "every batch splits into whole, non-empty pieces per GPU")


def _mini_per_gpu(f: Findings, mini: int, n: int, gpus: int, sp: int) -> int | None:
    if sp < 1 or gpus % sp:
        f.fail(f"{gpus} GPUs do not divide by ulysses_sequence_parallel_size {sp}",
               "make actor.ulysses_sequence_parallel_size divide the GPU count")
        return None
    dp = gpus // sp
    if mini * n % dp or mini * n < dp:
        f.fail(f"ppo_mini_batch_size {mini} x n {n} = {mini * n} completions do not split over {dp} data-parallel "
               f"ranks (GPUs / sp)", f"make actor.ppo_mini_batch_size x rollout.n a multiple of {dp}")
        return None
    return mini * n // dp


def _micro(f: Findings, v: Verl, per_gpu: int | None) -> None:
    micro = v.get(f"{ARO}.actor.ppo_micro_batch_size_per_gpu")
    legacy = v.get(f"{ARO}.actor.ppo_micro_batch_size")
    if micro is None and legacy is None:
        f.fail("neither actor.ppo_micro_batch_size_per_gpu nor ppo_micro_batch_size is set: verl refuses to start",
               "set actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu")
        return
    if micro is not None and legacy is not None:
        f.fail("both actor.ppo_micro_batch_size and ppo_micro_batch_size_per_gpu are set: verl refuses to start",
               "remove actor.ppo_micro_batch_size (deprecated)")
        return
    if micro is None or per_gpu is None:
        return
    micro = v.number(f"{ARO}.actor.ppo_micro_batch_size_per_gpu", minimum=1)
    if micro > per_gpu:
        f.fail(f"ppo_micro_batch_size_per_gpu {micro} > the per-GPU mini-batch {per_gpu}: gradient accumulation "
               "is 0 and the loss is divided by 0 (NaN)", f"set ppo_micro_batch_size_per_gpu <= {per_gpu}")
    elif per_gpu % micro:
        f.fail(f"the per-GPU mini-batch {per_gpu} is not a multiple of ppo_micro_batch_size_per_gpu {micro}",
               f"use a divisor of {per_gpu} for ppo_micro_batch_size_per_gpu")


@check("trainer.verl.log_prob", "verl's log-probability micro-batches are set", "static", rules=(
    Rule(CONFIG, ("algorithm.kl_beta",), "fail",
         "rollout (and, with a KL term, ref) log_prob_micro_batch_size_per_gpu: exactly one of it and the "
         "deprecated log_prob_micro_batch_size"),
))
def log_prob(ctx: Context) -> Outcome:
    """verl recomputes log-probabilities in micro-batches of rollout.log_prob_micro_batch_size_per_gpu
    (the reference model's in ref.log_prob_micro_batch_size_per_gpu, when a KL term uses it:
    actor.use_kl_loss or algorithm.use_kl_in_reward). Exactly one of the per-GPU size and the
    deprecated global size must be set, or verl's validate_config refuses the run after Ray has
    started; with log_prob_use_dynamic_bsz (or actor.use_dynamic_bsz) the sizes are packed by
    tokens instead. Fails otherwise."""
    v = _verl(ctx)
    if isinstance(v, Outcome):
        return v
    f = Findings()
    sections = ["rollout"] + (["ref"] if v.uses_reference else [])
    if not v.get(f"{ARO}.actor.use_dynamic_bsz"):
        for section in sections:
            if v.get(f"{ARO}.{section}.log_prob_use_dynamic_bsz"):
                continue
            per_gpu = v.get(f"{ARO}.{section}.log_prob_micro_batch_size_per_gpu")
            legacy = v.get(f"{ARO}.{section}.log_prob_micro_batch_size")
            if per_gpu is None and legacy is None:
                f.fail(f"{section}.log_prob_micro_batch_size_per_gpu is not set", f"set actor_rollout_ref.{section}."
                       "log_prob_micro_batch_size_per_gpu (e.g. the actor's ppo_micro_batch_size_per_gpu)")
            elif per_gpu is not None and legacy is not None:
                f.fail(f"both {section}.log_prob_micro_batch_size and _per_gpu are set",
                       f"remove actor_rollout_ref.{section}.log_prob_micro_batch_size (deprecated)")
    return f.outcome(f"log-prob micro-batches of {', '.join(sections)}", "one micro-batch size per section")


# --- memory and parallelism ------------------------------------------------------------------------


RESIDENT_PARAM_BYTES = 4  # verl's FSDP actor keeps fp32 parameters (fsdp_config.model_dtype fp32)
RESIDENT_ADAM_BYTES = 8  # Adam's two fp32 moments
REF_PARAM_BYTES = 2  # the reference model's bf16 parameters
OVERHEAD = 2 * GB  # CUDA context, NCCL buffers, fragmentation (as preflight.memory counts it)


@check("trainer.verl.rollout_memory", "The rollout's memory fraction leaves room for the training states",
       "static", rules=(
    Rule(CONFIG, ("hardware.min_vram_gb", "model.params_b", "distributed.cpu_offload", *GPUS,
                  "machine: GPU memory (NVML)"), "fail",
         "rollout.gpu_memory_utilization x GPU memory + the FSDP states that stay on the GPU during the "
         "rollout (fp32 params, Adam moments, the reference's params, unless offloaded) fit the GPU"),
))
def rollout_memory(ctx: Context) -> Outcome:
    """verl's hybrid engine runs vLLM (or SGLang) on the training GPUs: the engine takes
    rollout.gpu_memory_utilization x the GPU's memory for its weights and KV cache, while the FSDP
    actor's shards stay resident: fp32 parameters (4 B x P / GPUs, 0 with fsdp_config.param_offload),
    Adam's moments (8 B x P / GPUs, 0 with optimizer_offload), the reference's bf16 parameters
    (2 B x P / GPUs, with a KL term and without ref.fsdp_config.param_offload), plus 2 GB of CUDA
    context and buffers. The sum over the GPU's memory (NVML at --level node, else
    hardware.min_vram_gb) fails: vLLM refuses to start when the free memory is below its fraction,
    or the first steps run out of memory (EasyR1 PR #1, TRL #2688). P comes from the model's
    config.json when local, else model.params_b."""
    v = _verl(ctx)
    if isinstance(v, Outcome):
        return v
    util = v.get(f"{ARO}.rollout.gpu_memory_utilization")
    if not isinstance(util, int | float) or not 0 < float(util) <= 1:
        return failed(f"rollout.gpu_memory_utilization {util!r} is not a fraction in (0, 1]", "a fraction",
                      "set actor_rollout_ref.rollout.gpu_memory_utilization (0.5 is verl's default)")
    capacity, where = gpu_capacity(ctx)
    params = model_shape(ctx).count.total
    gpus = max(v.n_gpus, 1)
    parts = {
        "fp32 parameters": 0.0 if v.get(f"{ARO}.actor.fsdp_config.param_offload") else
        RESIDENT_PARAM_BYTES * params / gpus,
        "Adam moments": 0.0 if v.get(f"{ARO}.actor.fsdp_config.optimizer_offload") else
        RESIDENT_ADAM_BYTES * params / gpus,
        "reference parameters": REF_PARAM_BYTES * params / gpus if v.uses_reference and not v.get(
            f"{ARO}.ref.fsdp_config.param_offload") else 0.0,
        "overhead": OVERHEAD,
    }
    resident = sum(parts.values())
    engine = float(util) * capacity
    found = (f"rollout {float(util):g} x {gb(capacity)} = {gb(engine)} + training states {gb(resident)} "
             f"({', '.join(f'{k} {gb(x)}' for k, x in parts.items() if x)}) = {gb(engine + resident)}")
    expected = f"<= {gb(capacity)} ({where})"
    evidence = {"utilization": float(util), "capacity": gb(capacity), "resident": gb(resident)}
    if engine + resident > capacity:
        room = max(0.0, (capacity - resident) / capacity)
        return failed(found, expected, f"lower actor_rollout_ref.rollout.gpu_memory_utilization to at most "
                      f"{room:.2f}, or offload the actor (fsdp_config.param_offload / optimizer_offload)", **evidence)
    return passed(found, expected, **evidence)


@check("trainer.verl.parallel", "verl's rollout and sequence-parallel sizes fit the nodes", "static", rules=(
    Rule("distributed.tensor_parallel_size", GPUS, "fail",
         "rollout.tensor_model_parallel_size divides n_gpus_per_node (an engine lives on one node)"),
    Rule("distributed.sequence_parallel_size", (CONFIG,), "fail",
         "ulysses_sequence_parallel_size > 1 needs actor_rollout_ref.model.use_remove_padding"),
))
def parallel(ctx: Context) -> Outcome:
    """The rollout engine is split over rollout.tensor_model_parallel_size GPUs of one node, so it
    must divide trainer.n_gpus_per_node; Ulysses sequence parallelism (actor.
    ulysses_sequence_parallel_size > 1) works only with model.use_remove_padding (verl's FSDP
    actor refuses it otherwise). The heads' split over both sizes is config.model.heads'. Fails."""
    v = _verl(ctx)
    if isinstance(v, Outcome):
        return v
    f = Findings()
    tp = v.number(f"{ARO}.rollout.tensor_model_parallel_size", 1)
    per_node = v.number("trainer.n_gpus_per_node", 1)
    if tp < 1 or per_node % tp:
        f.fail(f"rollout.tensor_model_parallel_size {tp} does not divide n_gpus_per_node {per_node}",
               f"use a divisor of {per_node} for actor_rollout_ref.rollout.tensor_model_parallel_size")
    sp = v.number(f"{ARO}.actor.ulysses_sequence_parallel_size", 1)
    if sp > 1 and not v.get(f"{ARO}.model.use_remove_padding"):
        f.fail(f"ulysses_sequence_parallel_size {sp} without model.use_remove_padding",
               "set actor_rollout_ref.model.use_remove_padding=True")
    return f.outcome(f"rollout tp {tp} on {per_node} GPUs per node, ulysses sp {sp}",
                     "engines within a node; sequence parallelism with remove_padding")


@check("trainer.verl.lengths", "Prompt and response fit the rollout's context", "static", rules=(
    Rule("training.max_response_tokens", ("training.max_prompt_tokens", CONFIG), "fail",
         "data.max_prompt_length + max_response_length <= rollout.max_model_len when it is set"),
))
def lengths(ctx: Context) -> Outcome:
    """The rollout engine takes sequences of at most rollout.max_model_len tokens (when set; else it
    sizes itself from the prompt and response budgets). data.max_prompt_length +
    data.max_response_length above it fails: vLLM refuses the long prompts mid-rollout (verl #673).
    The model's own context window is config.model.context's."""
    v = _verl(ctx)
    if isinstance(v, Outcome):
        return v
    prompt, response = v.number("data.max_prompt_length"), v.number("data.max_response_length")
    limit = config_number(v.get(f"{ARO}.rollout.max_model_len"), f"{CONFIG}.{ARO}.rollout.max_model_len", None,
                          minimum=1)
    found = f"max_prompt_length {prompt} + max_response_length {response} = {prompt + response}"
    if limit is None:
        return passed(found + "; rollout.max_model_len unset (the engine sizes itself)", "within max_model_len")
    if prompt + response > limit:
        return failed(f"{found} > rollout.max_model_len {limit}", f"<= {limit}",
                      "raise actor_rollout_ref.rollout.max_model_len, or shorten the budgets")
    return passed(f"{found} <= rollout.max_model_len {limit}", f"<= {limit}")


# --- data and reward routing -----------------------------------------------------------------------


def _custom_reward(v: Verl) -> str | None:
    for key in ("custom_reward_function.path", "reward.custom_reward_function.path"):
        if v.get(key):
            return str(v.get(key))
    if v.get("reward.reward_model.enable") or v.get("reward_model.enable"):
        return "a reward model"
    return None


@check("trainer.verl.data", "verl's data has chat prompts, ground truths and a known data_source", "static",
       timeout_s=120, rules=(
    Rule("data.train", (CONFIG, "data: prompt, data_source, reward_model.ground_truth"), "fail",
         "every file exists; every row has data.prompt_key as chat messages, reward_model.ground_truth, and a "
         "data_source verl's default_compute_score knows, unless a custom reward function is set"),
    Rule("data.val", (CONFIG,), "fail", "the validation files meet the same rules (verl scores them first)"),
))
def data(ctx: Context) -> Outcome:
    """Reads every file of data.train_files and data.val_files (parquet or JSON lines) as verl's
    RLHFDataset and reward manager would: each row's data.prompt_key (default prompt) is a list of
    chat messages ({role, content}); reward_model.ground_truth is present (verl's reward managers
    read it whatever scores, unless a reward model does: verl #758); and data_source is one
    verl's default_compute_score routes (openai/gsm8k, lighteval/MATH, math_dapo, aime*, numina_*,
    codecontests, apps, ...), unless custom_reward_function.path (or a reward model) scores
    instead. An empty or unknown data_source raises NotImplementedError at the first reward, often
    in the validation before step 1 (verl #3450, #5558). Relative paths are taken from
    trainer.workdir, where verl runs. A file that is missing or unreadable here fails: the check
    cannot vouch for it."""
    v = _verl(ctx)
    if isinstance(v, Outcome):
        return v
    home, base = _data_base(ctx)
    files = [expand_path(p, home, base) for key in ("data.train_files", "data.val_files")
             for p in files_of(v.get(key))]
    if not files:
        return failed("no data.train_files are set", "verl's data files", "set data.train_files and data.val_files")
    prompt_key = str(v.get("data.prompt_key") or "prompt")
    custom = _custom_reward(v)
    f = Findings()
    rows_read = 0
    for name in files:
        rows, problem = read_rows(Path(name), prompt_key)
        if problem:
            f.fail(f"{name}: {problem}", "point data.train_files / val_files at files verl can read here")
            continue
        rows_read += len(rows)
        _judge_rows(f, name, rows, prompt_key, custom)
    found = f"{len(files)} file(s), {rows_read} rows; reward: {custom or 'verl default_compute_score by data_source'}"
    return f.outcome(found, "chat prompts, ground truths, and data_sources the reward knows")


def _judge_rows(f: Findings, name: str, rows: list[dict[str, Any]], prompt_key: str, custom: str | None) -> None:
    bad_prompt = [i for i, r in enumerate(rows) if not _is_chat(r.get(prompt_key))]
    if bad_prompt:
        f.fail(f"{name}: {len(bad_prompt)} row(s) whose {prompt_key!r} is not a list of chat messages "
               f"(first: row {bad_prompt[0]})", f"write {prompt_key} as [{{'role': 'user', 'content': ...}}] "
               "(verl applies the chat template to it), or set data.prompt_key")
    if custom == "a reward model":
        return
    no_truth = [i for i, r in enumerate(rows) if not isinstance(r.get("reward_model"), Mapping)
                or r["reward_model"].get("ground_truth") is None]
    if no_truth:
        f.fail(f"{name}: {len(no_truth)} row(s) without reward_model.ground_truth (first: row {no_truth[0]})",
               "add reward_model: {style: rule, ground_truth: ...} to every row")
    if custom is not None:
        return
    unknown: dict[str, int] = {}
    for r in rows:
        source = r.get("data_source")
        if not is_known_source(source):
            unknown[repr(source)] = unknown.get(repr(source), 0) + 1
    if unknown:
        shown = ", ".join(f"{k} ({n} rows)" for k, n in list(unknown.items())[:3])
        f.fail(f"{name}: data_source {shown} has no scorer in verl's default_compute_score: the first reward "
               "raises NotImplementedError", f"set data_source to a key verl routes ({', '.join(KNOWN_SOURCES[:4])}, "
               "...) or set custom_reward_function.path to your scorer")


def _is_chat(value: Any) -> bool:
    if hasattr(value, "tolist"):
        value = value.tolist()
    return (isinstance(value, list | tuple) and len(value) > 0
            and all(isinstance(m, Mapping) and "role" in m and "content" in m for m in value))


# --- checkpoints -----------------------------------------------------------------------------------


@check("trainer.verl.retention", "verl's checkpoint retention is bounded", "static", rules=(
    Rule("checkpoints.keep_last", (CONFIG, "checkpoints.save_interval", "training.max_steps"), "warn",
         "trainer.max_actor_ckpt_to_keep null keeps every checkpoint; 1 leaves none while the next is written"),
))
def retention(ctx: Context) -> Outcome:
    """verl keeps trainer.max_actor_ckpt_to_keep checkpoints; null (its default) keeps every one the
    run saves (save_freq > 0), which fills the disk over a long run (prime-rl #791: ~300 GB per 32B
    checkpoint). 1 keeps a single checkpoint, removed around the next save: a save that fails (a
    full disk) can leave none (verl PR #4873). Both warn, with the count; the space itself is
    storage.free_space's, which counts keep_last (the import sets it to every save when null) + 1."""
    v = _verl(ctx)
    if isinstance(v, Outcome):
        return v
    save = v.number("trainer.save_freq", -1)
    if save <= 0:
        return skipped("trainer.save_freq <= 0: verl saves no checkpoint during the run")
    keep = v.get("trainer.max_actor_ckpt_to_keep")
    saves = int(ctx.spec.get("training.max_steps")) // save
    f = Findings()
    if keep is None or (isinstance(keep, int) and keep <= 0):
        f.warn(f"max_actor_ckpt_to_keep {keep}: verl keeps every checkpoint, {saves} in this run",
               "set trainer.max_actor_ckpt_to_keep (and max_critic_ckpt_to_keep) to a bound, e.g. 3")
    elif keep == 1:
        f.warn("max_actor_ckpt_to_keep 1: while the next checkpoint is written the only other one is at risk, "
               "and a failed save can leave none", "keep at least 2 checkpoints")
    return f.outcome(f"save every {save} steps ({saves} saves), keep {keep}", "a bounded retention of 2 or more")


ITERATION_FILE = "latest_checkpointed_iteration.txt"


@check("trainer.verl.resume", "A resume has steps left and is not at an epoch boundary", "static", rules=(
    Rule(CONFIG, ("storage.checkpoint_dir", "training.max_steps",
                  "run dir: latest_checkpointed_iteration.txt"), "fail",
         "with resume_mode auto/resume_path, the checkpoint verl resumes from leaves steps to train and is not "
         "at an epoch boundary"),
))
def resume(ctx: Context) -> Outcome:
    """verl resumes (trainer.resume_mode auto, the default) from the step in
    default_local_dir/latest_checkpointed_iteration.txt. When that step is the run's last, the
    launch trains nothing and exits 0; when it is a multiple of the steps per epoch (training rows //
    train_batch_size, counted from data.train_files), verl versions before PR #5725 restore an exhausted dataloader and also exit
    0 after no step. Both fail. A new run (no such file) or resume_mode disable passes."""
    v = _verl(ctx)
    if isinstance(v, Outcome):
        return v
    mode = str(v.get("trainer.resume_mode") or "auto")
    if mode == "disable":
        return passed("resume_mode disable: verl starts from step 0", "a resume with steps left")
    marker = ctx.spec.checkpoint_dir / ITERATION_FILE  # {name} filled in, as every checkpoint check reads it
    if not marker.is_file():
        return passed(f"no {ITERATION_FILE} under {marker.parent}: a new run", "a resume with steps left")
    try:
        step = int(marker.read_text(encoding="utf-8").strip())
    except (OSError, ValueError) as exc:
        return failed(f"{marker} cannot be read as a step: {exc}", "a step number",
                      "fix or remove the file, or set trainer.resume_mode=disable")
    total = int(ctx.spec.get("training.max_steps"))
    per_epoch = _steps_per_epoch(ctx, v) or total // max(v.number("trainer.total_epochs", 1), 1)
    found = f"resume from step {step} of {total} ({per_epoch} steps per epoch)"
    if step >= total:
        return failed(found + ": nothing left to train; the launch would exit 0 at once", "steps left",
                      "raise trainer.total_epochs / total_training_steps, or start fresh in a new default_local_dir")
    if per_epoch and step % per_epoch == 0:
        return failed(found + ": at an epoch boundary, where verl before PR #5725 resumes an exhausted "
                      "dataloader and exits 0 after no step", "a step inside an epoch",
                      "use a verl with PR #5725, or resume from another checkpoint (trainer.resume_from_path)")
    return passed(found, "a resume with steps left")


def _data_base(ctx: Context) -> tuple[dict[str, str], Path]:
    """What verl's data paths are expanded with: $HOME, and the folder verl runs in (trainer.workdir,
    relative to the spec's folder)."""
    base = ctx.spec.path.resolve().parent
    workdir = ctx.spec.get("trainer.workdir")
    return {"HOME": str(Path.home())}, (base / str(workdir) if workdir else base)


def _steps_per_epoch(ctx: Context, v: Verl) -> int | None:
    """Training rows // train_batch_size (verl drops the last partial batch), or None uncounted."""
    home, base = _data_base(ctx)
    counts = [count_rows(Path(expand_path(f, home, base))) for f in files_of(v.get("data.train_files"))]
    prompts = v.number("data.train_batch_size")
    if not counts or any(c is None for c in counts) or prompts < 1:
        return None
    return sum(c or 0 for c in counts) // prompts
