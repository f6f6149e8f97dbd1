"""OpenRLHF's own rules on a spec `preflight import openrlhf` wrote: DeepSpeed's batch arithmetic,
the rollout against the train batch, the hybrid engine's colocation, vLLM's memory share, the chat
template --apply_chat_template needs, host RAM for offloaded state, and the lengths against
--max_len and the model's context. They read ``trainer.config`` (train_ppo_ray's argument
destinations) and skip any other spec.
"""

from __future__ import annotations

from typing import Any

from packaging.version import InvalidVersion, Version

from ..memory import GB, gb
from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed, skipped, warned
from ._framework import config_number, framework_config
from .model import model_facts, model_shape
from .trainer_trl import memory_share

CONFIG = "trainer.config"
GROUP_ESTIMATORS = ("rloo", "reinforce_baseline", "group_norm")


REQUIRED_KEYS = ("train_batch_size", "micro_train_batch_size", "rollout_batch_size", "micro_rollout_batch_size",
                 "n_samples_per_prompt", "actor_num_nodes", "actor_num_gpus_per_node", "prompt_max_len",
                 "generate_max_len")


def _config(ctx: Context) -> dict[str, Any] | Outcome:
    return framework_config(ctx, "openrlhf", "OpenRLHF", REQUIRED_KEYS, "train_ppo_ray")


def _dp(config: dict[str, Any]) -> int:
    """The actor's data-parallel size: its GPUs over ring attention and DeepSpeed tensor parallelism."""
    return _actor_gpus(config) // max(_int(config, "ring_attn_size"), 1) // max(_int(config, "ds_tensor_parallel_size"), 1)


def _int(config: dict[str, Any], key: str, default: int = 1) -> int:
    return int(config_number(config.get(key), f"trainer.config.{key}", default))


def _actor_gpus(config: dict[str, Any]) -> int:
    return _int(config, "actor_num_nodes") * _int(config, "actor_num_gpus_per_node")


@check("trainer.openrlhf.train_batch", "OpenRLHF: train batch splits into micro-batches per GPU", "static", rules=(
    Rule(CONFIG, ("training.batch_size", "training.micro_batch_size", "hardware.gpus_per_node"), "fail",
         "OpenRLHF: train_batch_size % (micro_train_batch_size x actor data-parallel GPUs) == 0"),
))
def train_batch(ctx: Context) -> Outcome:
    """DeepSpeed requires train_batch_size = micro_train_batch_size x gradient accumulation x
    data-parallel size, the data-parallel size being the actor's GPUs (actor_num_nodes x
    actor_num_gpus_per_node) / ring_attn_size / ds_tensor_parallel_size. A train batch that does
    not divide fails at engine start: "Check batch related parameters ... 256 != 2 * 18 * 7"
    (OpenRLHF issue #346)."""
    config = _config(ctx)
    if isinstance(config, Outcome):
        return config
    dp = _dp(config)
    train, micro = _int(config, "train_batch_size"), _int(config, "micro_train_batch_size")
    found = f"train_batch_size {train}, micro_train_batch_size {micro}, {dp} data-parallel actor GPU(s)"
    unit = micro * max(dp, 1)
    if train % unit:
        fits = [n * unit for n in range(max(train // unit, 1), train // unit + 3)]
        return failed(found, f"train_batch_size % {unit} == 0", f"use train_batch_size {fits[0]} or {fits[1]}, or a "
                      f"micro_train_batch_size that divides {train // max(dp, 1)}" if train % max(dp, 1) == 0 else
                      f"use train_batch_size {fits[0]} or {fits[1]}")
    return passed(found, f"% {unit} == 0", gradient_accumulation=train // unit)


@check("trainer.openrlhf.rollout_batch", "OpenRLHF: each rollout fills whole train batches", "static", rules=(
    Rule(CONFIG, ("training.group_size", "training.batch_size"), "fail; warn when not a multiple",
         "OpenRLHF: rollout_batch_size x n_samples_per_prompt >= train_batch_size (a multiple of it), "
         "n_samples_per_prompt > 1 for group estimators"),
))
def rollout_batch(ctx: Context) -> Outcome:
    """Each rollout makes rollout_batch_size x n_samples_per_prompt samples, trained in batches of
    train_batch_size: fewer samples than one train batch means no optimizer step at all (the run
    does nothing), a remainder is dropped each rollout (warns). Group estimators (group_norm,
    rloo, reinforce_baseline) need n_samples_per_prompt > 1, and the sample micro-batches must
    cover the actor processes (train_ppo_ray.py asserts both after parsing)."""
    config = _config(ctx)
    if isinstance(config, Outcome):
        return config
    rollout, n = _int(config, "rollout_batch_size"), _int(config, "n_samples_per_prompt")
    train, micro_rollout = _int(config, "train_batch_size"), _int(config, "micro_rollout_batch_size")
    samples = rollout * n
    found = f"rollout {rollout} prompts x {n} samples = {samples}; train_batch_size {train}"
    if config.get("advantage_estimator") in GROUP_ESTIMATORS and n < 2:
        return failed(found, f"n_samples_per_prompt > 1 for {config['advantage_estimator']}",
                      "set --n_samples_per_prompt to 2 or more (8 is usual for GRPO)")
    if samples < train:
        return failed(found, f">= {train}", f"raise rollout_batch_size to at least {-(-train // n)} or lower "
                      "train_batch_size")
    procs = _dp(config)
    if samples // max(micro_rollout, 1) < procs:
        return failed(found + f"; {samples // max(micro_rollout, 1)} micro-batches of {micro_rollout}",
                      f">= {procs} actor processes", "lower micro_rollout_batch_size or raise rollout_batch_size")
    if samples % train:
        return warned(found, f"a multiple of {train}", f"{samples % train} samples of each rollout are not "
                      f"trained on: make rollout_batch_size x n_samples_per_prompt a multiple of {train}")
    return passed(found, f"a multiple of {train}", steps_per_rollout=samples // train)


@check("trainer.openrlhf.colocation", "OpenRLHF: colocated models share the same GPUs", "static", rules=(
    Rule(CONFIG, ("distributed.tensor_parallel_size", "hardware.gpus_per_node", "hardware.nodes", "trainer.version"),
         "fail",
         "OpenRLHF colocate_all_models: vllm_num_engines x vllm_tensor_parallel_size == actor GPUs; colocated "
         "reference nodes/GPUs == the actor's"),
))
def colocation(ctx: Context) -> Outcome:
    """With --colocate_all_models (the hybrid engine) the vLLM engines live on the actor's GPUs: the
    placement group has actor_num_nodes x actor_num_gpus_per_node bundles and vllm_num_engines x
    vllm_tensor_parallel_size must equal it, or engine creation fails ("placement group bundle index
    6 is invalid", OpenRLHF PR #728). A colocated reference model (init_kl_coef > 0) must have the
    actor's nodes and GPUs per node; --packing_samples needs vLLM engines. Up to OpenRLHF 0.6.x
    (trainer.version) train_ppo_ray.py also asserted that ZeRO-3 runs only with vLLM engines
    (issue #441) and that the actor's GPUs and vllm_num_engines divide one another (issue #760)."""
    config = _config(ctx)
    if isinstance(config, Outcome):
        return config
    actor = _actor_gpus(config)
    engines, tp = _int(config, "vllm_num_engines", 0), _int(config, "vllm_tensor_parallel_size")
    fixes = {  # each problem with its fix
        "engines": f"set --vllm_num_engines {max(actor // tp, 1)} for tp {tp} (engines x tp = the actor's GPUs)",
        "reference": "give the reference model the actor's --ref_num_nodes / --ref_num_gpus_per_node",
        "packing": "add vLLM engines (--vllm_num_engines) or drop --packing_samples",
        "old": "use vLLM engines whose count divides the actor's GPUs (or upgrade OpenRLHF)",
    }
    problems: list[tuple[str, str]] = []
    if config.get("colocate_all_models") and engines and engines * tp != actor and not config.get("async_train"):
        problems.append(("engines", f"vllm_num_engines {engines} x vllm_tensor_parallel_size {tp} = {engines * tp} "
                         f"!= actor GPUs {actor}"))
    if (config.get("colocate_all_models") or config.get("colocate_actor_ref")) and \
            config_number(config.get("init_kl_coef"), "trainer.config.init_kl_coef", 0.0, float) > 0 and \
            (_int(config, "ref_num_nodes"), _int(config, "ref_num_gpus_per_node")) != \
            (_int(config, "actor_num_nodes"), _int(config, "actor_num_gpus_per_node")):
        problems.append(("reference", "the colocated reference model's nodes x GPUs differ from the actor's"))
    if config.get("packing_samples") and not engines:
        problems.append(("packing", "--packing_samples needs vLLM engines (vllm_num_engines > 0)"))
    problems += [("old", p) for p in _before_07(ctx, config, actor, engines)]
    found = f"actor {actor} GPU(s), vLLM {engines} x tp {tp}" + (", colocate_all_models" if
                                                                  config.get("colocate_all_models") else "")
    if problems:
        return failed(found + " (" + "; ".join(p for _, p in problems) + ")", "colocated groups of equal size",
                      "; ".join(dict.fromkeys(fixes[k] for k, _ in problems)))
    return passed(found, "colocated groups of equal size")


def _before_07(ctx: Context, config: dict[str, Any], actor: int, engines: int) -> list[str]:
    """What train_ppo_ray.py's _validate_args asserted up to OpenRLHF 0.6.x (dropped in 0.7)."""
    try:
        old = Version(str(ctx.spec.get("trainer.version") or "0.8")) < Version("0.7")
    except InvalidVersion:
        return []
    if not old:
        return []
    problems = []
    if _int(config, "zero_stage", 2) == 3 and engines == 0:
        problems.append("OpenRLHF < 0.7 supports ZeRO-3 only with vLLM engines")
    if engines and actor % engines and engines % actor:
        problems.append(f"OpenRLHF < 0.7 needs actor GPUs {actor} and vllm_num_engines {engines} to divide one another")
    return problems


@check("trainer.openrlhf.memory", "OpenRLHF: training (and a colocated vLLM) fits each actor GPU", "static", rules=(
    Rule(CONFIG, ("hardware.min_vram_gb", "model.params_b", "training.micro_batch_size", "machine: GPU memory (NVML)"),
         "fail", "the actor's training footprint, as its ZeRO stage shards the states, fits each actor GPU; "
                 "colocated without vLLM sleep, beside vllm_gpu_memory_utilization x GPU"),
))
def memory(ctx: Context) -> Outcome:
    """The actor's training footprint on each actor GPU (hw.memory.gpu's estimate without the KV
    cache) must fit it. The model states count as DeepSpeed shards them over the N actor GPUs (P
    parameters, 18 B each in mixed precision): ZeRO-3 all of them (18 P / N), ZeRO-2 the gradients
    and optimizer (2 P + 16 P / N, --zero_stage 2 is OpenRLHF's default), ZeRO-1 the optimizer
    (4 P + 14 P / N); with --adam_offload the fp32 master weights and Adam's moments live in host
    memory (ZeRO-3: 4 P / N, else 2 P + 2 P / N on the GPU). The reference model (init_kl_coef > 0)
    counts as DeepSpeed holds it: 16-bit weights, sharded over the actor GPUs under ZeRO-3. With
    --colocate_all_models and without --vllm_enable_sleep, vLLM keeps vllm_gpu_memory_utilization
    of every actor GPU for the whole run: the footprint must fit in the rest; with sleep mode (or
    vLLM on its own GPUs) training has the whole GPU."""
    config = _config(ctx)
    if isinstance(config, Outcome):
        return config
    colocated = bool(config.get("colocate_all_models") and _int(config, "vllm_num_engines", 0)
                     and not config.get("vllm_enable_sleep"))
    util = config_number(config.get("vllm_gpu_memory_utilization"), "trainer.config.vllm_gpu_memory_utilization", 0.9,
                         float) if colocated else 0.0
    params = model_shape(ctx).count.total
    gpus, stage = max(_actor_gpus(config), 1), _int(config, "zero_stage", 2)
    shards = gpus if stage == 3 else 1  # the reference model is a DeepSpeed model of its own
    return memory_share(ctx, util, "vllm_gpu_memory_utilization", reference_bytes=2 * params / shards,
                        states=_zero_states(params, gpus, stage, bool(config.get("adam_offload"))))


def _zero_states(params: float, gpus: int, stage: int, offload: bool) -> tuple[float, str]:
    """Model states per actor GPU under DeepSpeed ZeRO ``stage`` over ``gpus`` (see ``memory``)."""
    if offload:
        if stage == 3:
            return 4 * params / gpus, f"4 B x P / {gpus} (ZeRO-3, Adam offloaded)"
        return 2 * params + 2 * params / gpus, f"2 B x P + 2 B x P / {gpus} (ZeRO-{stage}, Adam offloaded)"
    if stage == 3:
        return 18 * params / gpus, f"18 B x P / {gpus} (ZeRO-3)"
    if stage == 2:
        return 2 * params + 16 * params / gpus, f"2 B x P + 16 B x P / {gpus} (ZeRO-2)"
    if stage == 1:
        return 4 * params + 14 * params / gpus, f"4 B x P + 14 B x P / {gpus} (ZeRO-1)"
    return 18 * params, "18 B x P on every GPU (ZeRO-0)"


@check("trainer.openrlhf.chat_template", "OpenRLHF: --apply_chat_template has a template", "static", rules=(
    Rule(CONFIG, ("model.name_or_path", "model: tokenizer_config.json chat_template"), "fail",
         "OpenRLHF: --apply_chat_template needs a chat template in the model's tokenizer"),
))
def chat_template(ctx: Context) -> Outcome:
    """--apply_chat_template formats every prompt with the tokenizer's chat template; a base model
    without one (phi-1, Llama-3.2-1B) raises "Cannot use chat template functions because
    tokenizer.chat_template is not set" during data preparation (OpenRLHF issue #523). Checked when
    the model folder is local; a hub id is not checkable offline."""
    config = _config(ctx)
    if isinstance(config, Outcome):
        return config
    if not config.get("apply_chat_template"):
        return skipped("--apply_chat_template is off")
    loaded = model_facts(ctx)
    if loaded.facts is None:
        return skipped(loaded.reason)
    if loaded.facts.chat_template is None:
        return failed(f"--apply_chat_template, but {config.get('pretrain')} has no chat template",
                      "tokenizer_config.json chat_template or chat_template.jinja",
                      "use the model's instruct/chat variant, add a chat template, or drop --apply_chat_template "
                      "and give --input_template")
    return passed(f"{loaded.facts.chat_template}", "a chat template")


def host_parts(config: dict[str, Any], params: float) -> dict[str, float]:
    """Bytes one node's host RAM holds for offloaded state."""
    nodes = max(_int(config, "actor_num_nodes"), 1)
    per_node_gpus = _int(config, "actor_num_gpus_per_node")
    parts: dict[str, float] = {}
    if config.get("adam_offload"):
        parts["adam_offload"] = 12 * params / nodes * 1.5  # fp32 master + two moments, DeepSpeed's buffer factor
    if config.get("vllm_enable_sleep"):
        engines_here = max(per_node_gpus // max(_int(config, "vllm_tensor_parallel_size"), 1), 1)
        parts["vllm_sleep"] = 2 * params * engines_here  # each engine's 16-bit weights move to the host
    if config.get("deepspeed_enable_sleep"):
        parts["deepspeed_sleep"] = 18 * params / nodes  # the actor's sharded model states move to the host
    return parts


@check("trainer.openrlhf.host_memory", "OpenRLHF: host RAM for offloaded state", "static", rules=(
    Rule(CONFIG, ("hardware.min_host_memory_gb", "model.params_b", "machine: host RAM"), "fail",
         "OpenRLHF: per node, host RAM >= Adam offload + vLLM sleep weights + DeepSpeed sleep states"),
))
def host_memory(ctx: Context) -> Outcome:
    """Per node, what the flags move to host memory must fit it (with 10 % to spare): --adam_offload
    keeps fp32 master weights and Adam's moments there (12 B x P / nodes, x 1.5 DeepSpeed's
    buffer factor), --vllm_enable_sleep each engine's 16-bit weights while it sleeps (2 B x P per
    engine on the node), --deepspeed_enable_sleep the actor's model states (18 B x P / nodes).
    OpenRLHF issue #1013: a run with vLLM sleep mode was killed by Ray's out-of-memory monitor."""
    config = _config(ctx)
    if isinstance(config, Outcome):
        return config
    params = model_shape(ctx).count.total
    parts = host_parts(config, params)
    if not parts:
        return skipped("no --adam_offload, --vllm_enable_sleep or --deepspeed_enable_sleep: nothing offloaded")
    if ctx.level == "static":
        capacity, where = float(ctx.spec.get("hardware.min_host_memory_gb")) * GB, "hardware.min_host_memory_gb"
    else:
        host = ctx.memo("host", ctx.probes.system.host)
        capacity, where = float(host.memory_total_bytes), f"this host's RAM ({host.hostname})"
    need = sum(parts.values())
    found = f"~{gb(need)} per node (" + ", ".join(f"{k} {gb(v)}" for k, v in parts.items()) + f"); {gb(capacity)} ({where})"
    if need > 0.9 * capacity:
        return failed(found, f"<= 90 % of {gb(capacity)}", "use nodes with more RAM (and say so in "
                      "hardware.min_host_memory_gb), more actor nodes, or drop one of the offload flags")
    return passed(found, f"<= 90 % of {gb(capacity)}")


@check("trainer.openrlhf.lengths", "OpenRLHF: prompt and generation fit max_len and the model", "static", rules=(
    Rule(CONFIG, ("training.max_prompt_tokens", "training.max_response_tokens",
                  "model: config.json max_position_embeddings"), "fail",
         "OpenRLHF: prompt_max_len + generate_max_len <= max_len (when set) <= the model's context"),
))
def lengths(ctx: Context) -> Outcome:
    """vLLM's max_model_len is --max_len when given, else prompt_max_len + generate_max_len: a
    --max_len below the two budgets cuts generations, and a length over the model's context window
    (config.json, when the folder is local) is refused by vLLM."""
    config = _config(ctx)
    if isinstance(config, Outcome):
        return config
    need = _int(config, "prompt_max_len", 0) + _int(config, "generate_max_len", 0)
    limit = _int(config, "max_len", 0)  # 0: unset
    found = f"prompt_max_len + generate_max_len = {need}" + (f"; max_len {limit}" if limit else "")
    if limit and limit < need:
        return failed(found, f"max_len >= {need}", f"raise --max_len to {need} or lower the budgets")
    facts = model_facts(ctx).facts
    window = facts.context.tokens if facts is not None and facts.context is not None else None
    if window is not None and (limit or need) > window:
        return failed(found + f"; the model's context {window}", f"<= {window}",
                      f"lower --generate_max_len to {max(window - _int(config, 'prompt_max_len', 0), 0)}")
    return passed(found, f"<= {window}" if window else "fits max_len")
