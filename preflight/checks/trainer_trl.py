"""TRL's own rules on a spec `preflight import trl` wrote: GRPOConfig's batch arithmetic counted
over the training processes only (GPUs given to a `trl vllm-serve` server excluded), the eval
batch, vLLM's GPUs and memory share, lengths against vLLM's max_model_len and the model's context,
auto_find_batch_size, and the reward functions. They read ``trainer.config`` (GRPOConfig's fields)
and ``trainer.launcher`` (processes, machines, the vLLM server's GPUs) and skip any other spec.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from ..frameworks import trl_defaults
from ..memory import GB, gb, gpu_estimate, workload
from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed, skipped
from ._framework import config_number, framework_config
from .memory import gpu_capacity
from .model import model_facts, model_shape

CONFIG, LAUNCHER = "trainer.config", "trainer.launcher"
TRAINING_PARTS = ("model_states", "gathered_layer", "reference_policy", "activations", "logits", "overhead")


REQUIRED_KEYS = ("per_device_train_batch_size", "num_generations", "gradient_accumulation_steps")


def _trl(ctx: Context) -> tuple[dict[str, Any], dict[str, Any]] | Outcome:
    config = framework_config(ctx, "trl", "TRL", REQUIRED_KEYS, "GRPOConfig")
    if isinstance(config, Outcome):
        return config
    return config, dict(ctx.spec.get(LAUNCHER) or {})


def _int(config: dict[str, Any], key: str, default: int, minimum: int | None = None) -> int:
    return int(config_number(config.get(key), f"trainer.config.{key}", default, minimum=minimum))


def _procs(launcher: dict[str, Any]) -> int:
    return int(config_number(launcher.get("num_processes"), "trainer.launcher.num_processes", 1, minimum=1))


def _divisors_hint(total_per_unit: int, group: int, what: str) -> str:
    fits = [n for n in range(1, 65) if (n * total_per_unit) % group == 0][:6]
    return f"{what} that make it divisible: " + ", ".join(map(str, fits))


@check("trainer.trl.generation_batch", "TRL: generation batch holds whole prompt groups", "static", rules=(
    Rule(CONFIG, (LAUNCHER, "hardware.gpus_per_node"), "fail",
         "TRL: processes (vLLM-server GPUs excluded) x per_device_train_batch_size x steps_per_generation "
         "% num_generations == 0"),
))
def generation_batch(ctx: Context) -> Outcome:
    """GRPOConfig's generation batch is per_device_train_batch_size x training processes x
    steps_per_generation (gradient_accumulation_steps when steps_per_generation is unset), or
    generation_batch_size when given, which must then be a multiple of per_device x processes. It
    must hold whole groups: generation batch % num_generations == 0, else TRL raises at start
    ("must be evenly divisible by the number of generations per prompt"). The processes are
    accelerate's num_processes: GPUs given to a separate `trl vllm-serve` do not train, so 4 GPUs
    with one serving vLLM leave 3 processes, and 3 x 1 is not divisible by 8 (TRL issue #2858,
    open-r1 #236; docs/reference.md section 8)."""
    got = _trl(ctx)
    if isinstance(got, Outcome):
        return got
    config, launcher = got
    procs, per_device = _procs(launcher), _int(config, "per_device_train_batch_size", 1, minimum=1)
    group = _int(config, "num_generations", 1, minimum=1)
    steps = (_int(config, "steps_per_generation", 0) or _int(config, "gradient_accumulation_steps", 1, minimum=1)) \
        if "steps_per_generation" in config else 1
    explicit = config_number(config.get("generation_batch_size"), f"{CONFIG}.generation_batch_size", None) \
        if launcher.get("generation_batch_size_given") else None
    gen = per_device * procs * steps
    where = (f"{procs} training process(es) ({launcher.get('num_processes_from', 'num_processes')}"
             + (f"; {launcher['vllm_server_gpus']} GPU(s) serve vLLM apart" if launcher.get("vllm_server_gpus") else "")
             + ")")
    if explicit is not None and explicit != gen and explicit % (per_device * procs):
        return failed(f"generation_batch_size {explicit} is not a multiple of per_device_train_batch_size "
                      f"{per_device} x {where}", "a multiple of the global batch",
                      f"set generation_batch_size to a multiple of {per_device * procs}, or drop it")
    if explicit is not None:
        gen = explicit
    found = (f"generation batch {gen} = per_device_train_batch_size {per_device} x {where} x "
             f"steps_per_generation {steps}; num_generations {group}")
    if gen % group:
        return failed(found, f"generation batch % num_generations ({group}) == 0",
                      _divisors_hint(procs * steps, group, "per_device_train_batch_size values")
                      + f"; or change num_generations to a divisor of {gen}, or the number of training processes",
                      generation_batch=gen, num_generations=group)
    return passed(found, f"% {group} == 0", generation_batch=gen)


@check("trainer.trl.num_generations", "TRL: at least two generations per prompt", "static", rules=(
    Rule(CONFIG, ("training.group_size",), "fail", "TRL: num_generations >= 2 (a group of one has no advantage)"),
))
def num_generations(ctx: Context) -> Outcome:
    """GRPO's advantage compares completions of the same prompt: num_generations below 2 leaves
    nothing to compare, and TRL raises at start (TRL PR #3199)."""
    got = _trl(ctx)
    if isinstance(got, Outcome):
        return got
    group = _int(got[0], "num_generations", 0)
    if group < 2:
        return failed(f"num_generations {group}", ">= 2", "set num_generations to 2 or more (8 or 16 are usual)")
    return passed(f"num_generations {group}", ">= 2")


@check("trainer.trl.eval_batch", "TRL: eval batch holds whole prompt groups", "static", rules=(
    Rule(CONFIG, (LAUNCHER,), "fail",
         "TRL: with evaluation on, per_device_eval_batch_size x processes % (num_generations_eval or "
         "num_generations) == 0"),
))
def eval_batch(ctx: Context) -> Outcome:
    """With evaluation on (do_eval, eval_strategy not "no"), TRL generates num_generations_eval
    (else num_generations) completions per eval prompt, and the global eval batch
    (per_device_eval_batch_size x processes) must hold whole groups; TRL raises at start otherwise."""
    got = _trl(ctx)
    if isinstance(got, Outcome):
        return got
    config, launcher = got
    if not config.get("do_eval") or config.get("eval_strategy") in (None, "no"):
        return skipped("evaluation is off (eval_strategy no)")
    procs = _procs(launcher)
    per_device = _int(config, "per_device_eval_batch_size", 1, minimum=1)
    group = _int(config, "num_generations_eval", 0) or _int(config, "num_generations", 1, minimum=1)
    found = f"eval batch {per_device * procs} = per_device_eval_batch_size {per_device} x {procs} processes; group {group}"
    if (per_device * procs) % group:
        return failed(found, f"% {group} == 0", _divisors_hint(procs, group, "per_device_eval_batch_size values"))
    return passed(found, f"% {group} == 0")


def _devices(value: Any) -> set[str]:
    return {d.strip() for d in str(value or "").split(",") if d.strip()}


@check("trainer.trl.vllm_gpus", "TRL: vLLM's GPUs are not training GPUs", "static", rules=(
    Rule(LAUNCHER, ("trainer.env", "trainer.config", "distributed.tensor_parallel_size"), "fail",
         "TRL: a vLLM server's GPUs are apart from the training processes' (server mode); tensor parallel "
         "size divides the processes (colocate mode)"),
))
def vllm_gpus(ctx: Context) -> Outcome:
    """Server mode (use_vllm, vllm_mode server): the GPUs a `trl vllm-serve` in the same script
    takes must not be training GPUs: its CUDA_VISIBLE_DEVICES and the training command's (without
    one, accelerate puts process i on GPU i) must not overlap, and the training processes must not
    outnumber the GPUs they see. Colocate mode: vLLM runs inside
    each training process, and vllm_tensor_parallel_size must divide the processes."""
    got = _trl(ctx)
    if isinstance(got, Outcome):
        return got
    config, launcher = got
    if not config.get("use_vllm"):
        return skipped("use_vllm is off: TRL generates with transformers in the training processes")
    procs = _procs(launcher)
    if config.get("vllm_mode") == "colocate":
        tp = _int(config, "vllm_tensor_parallel_size", 1, minimum=1)
        if procs % tp:
            return failed(f"vllm_tensor_parallel_size {tp} does not divide {procs} training processes",
                          "processes % vllm_tensor_parallel_size == 0", "use a tensor parallel size that divides "
                          f"{procs}")
        return passed(f"colocate: vLLM in each of {procs} processes, tp {tp}", "processes % tp == 0")
    server = launcher.get("vllm_server_gpus")
    if not server:
        return skipped("server mode with no `trl vllm-serve` in the imported source: its GPUs are elsewhere")
    visible = _devices((ctx.spec.get("trainer.env") or {}).get("CUDA_VISIBLE_DEVICES"))
    # without CUDA_VISIBLE_DEVICES, accelerate puts process i on GPU i
    train_devices = visible or {str(i) for i in range(procs)}
    server_devices = _devices(launcher.get("vllm_server_devices"))
    found = (f"{procs} training process(es) on GPU(s) {','.join(sorted(train_devices))}"
             + ("" if visible else " (no CUDA_VISIBLE_DEVICES: process i on GPU i)")
             + f"; vLLM server on {','.join(sorted(server_devices)) or f'{server} GPU(s)'}")
    fix = "give the training command a CUDA_VISIBLE_DEVICES without the server's GPUs, and --num_processes equal to its count"
    if train_devices & server_devices:
        return failed(found + f" (both use GPU {','.join(sorted(train_devices & server_devices))})",
                      "disjoint GPU sets", fix)
    if visible and procs > len(visible):
        return failed(found, f"<= {len(visible)} processes (the GPUs training sees)", fix)
    return passed(found, "disjoint GPU sets")


def training_footprint(ctx: Context, reference_bytes: float | None = None,
                       states: tuple[float, str] | None = None) -> tuple[float, str]:
    """One training GPU's memory without the rollout's KV cache (which the rollout engine's own
    share holds): preflight.memory's estimate of states, gathered layer, reference, activations,
    logits and overhead. ``reference_bytes`` replaces the estimate's reference policy (a full fp32
    copy per GPU) where the framework shards its reference model; ``states`` (bytes, how) replaces
    the model states (sharded over every rank in the estimate) where the launch shards less."""
    shape = model_shape(ctx)
    est = gpu_estimate(shape.arch, shape.count, workload(ctx.spec))
    parts = {k: v for k, v in est.parts.items() if k in TRAINING_PARTS}
    if reference_bytes is not None and "reference_policy" in parts:
        parts["reference_policy"] = reference_bytes
    if states is not None and "model_states" in parts:
        parts["model_states"] = states[0]
    biggest = max(parts, key=lambda k: parts[k])
    return sum(parts.values()), f"{gb(sum(parts.values()))} (largest part {biggest} {gb(parts[biggest])}; {shape.source})"


def memory_share(ctx: Context, util: float, what: str, reference_bytes: float | None = None,
                 states: tuple[float, str] | None = None) -> Outcome:
    """The rollout engine's share (util x GPU) and the training footprint on the same GPU."""
    capacity, where = gpu_capacity(ctx)
    need, how = training_footprint(ctx, reference_bytes, states)
    if states is not None:
        how += f"; model states {states[1]}"
    left = (1 - util) * capacity
    if not util:  # no rollout engine on the training GPUs: training has the whole GPU
        found, expected = f"training needs ~{how} of {gb(capacity)} ({where})", f"training footprint <= {gb(capacity)}"
        if need > capacity:
            return failed(found, expected, "shrink the training footprint (smaller micro batch, gradient "
                          "checkpointing, ZeRO-3 or FSDP sharding instead of DDP, offload) or use GPUs with more "
                          "memory", training_gb=round(need / GB, 1))
        return passed(found, expected)
    found = f"{what} {util:g} reserves {gb(util * capacity)} of {gb(capacity)} ({where}); training needs ~{how}"
    expected = f"training footprint <= (1 - {util:g}) x GPU = {gb(left)}"
    if need > left:
        most = max(0.0, 1 - need / capacity)
        return failed(found, expected, f"lower {what} to at most {most:.2f} (if the KV cache still fits), shrink the "
                      "training footprint (micro batch, gradient checkpointing, offload), or use GPUs with more memory",
                      training_gb=round(need / GB, 1), reserved_gb=round(util * capacity / GB, 1))
    return passed(found, expected)


@check("trainer.trl.memory", "TRL: training (and a colocated vLLM) fits each GPU", "static", rules=(
    Rule(CONFIG, ("hardware.min_vram_gb", "model.params_b", "training.micro_batch_size", "trainer.launcher",
                  "machine: GPU memory (NVML)"),
         "fail", "the training footprint, as the launch shards the model states, fits each training GPU; in "
                 "colocate mode beside vllm_gpu_memory_utilization x GPU"),
))
def memory(ctx: Context) -> Outcome:
    """The training footprint on each training GPU (model states, gathered layer, reference policy,
    activations, logits, overhead: hw.memory.gpu's estimate without the KV cache, which the
    generation holds in vLLM's share or between updates) must fit the GPU. The model states count
    as the launch shards them: all of them on every GPU under DDP (accelerate's MULTI_GPU, the
    default without an accelerate config), by stage under DeepSpeed ZeRO, fully sharded under
    ZeRO-3 and FSDP. In colocate mode vLLM first reserves vllm_gpu_memory_utilization of each
    training GPU: the training footprint must fit in the rest. TRL issue #2688: 0.9 on a training
    GPU ran out of memory at vLLM's start; the default became 0.3 (docs/reference.md section 8)."""
    got = _trl(ctx)
    if isinstance(got, Outcome):
        return got
    config = got[0]
    colocated = bool(config.get("use_vllm") and config.get("vllm_mode") == "colocate")
    util = float(config_number(config.get("vllm_gpu_memory_utilization"), "trainer.config.vllm_gpu_memory_utilization", 0.3,
                               float)) if colocated else 0.0
    return memory_share(ctx, util, "vllm_gpu_memory_utilization", states=trl_states(ctx, got[1]))


def trl_states(ctx: Context, launcher: dict[str, Any]) -> tuple[float, str]:
    """Model states per GPU as the launch shards them (P parameters, N processes; 18 B per
    parameter in mixed precision, as preflight.memory counts): DDP (accelerate's MULTI_GPU, or no
    accelerate config with several processes) keeps all 18 B x P on every GPU; ZeRO-1 shards the
    optimizer (4 P + 14 P / N); ZeRO-2 also the gradients (2 P + 16 P / N); ZeRO-3 and FSDP all
    (18 P / N)."""
    params = model_shape(ctx).count.total
    procs = max(_procs(launcher), 1)
    kind = str(launcher.get("distributed_type") or ("MULTI_GPU" if procs > 1 else "NO")).upper()
    stage = int(config_number(launcher.get("zero_stage"), "trainer.launcher.zero_stage", 0))
    if launcher.get("offload"):
        return 0.0, "offloaded to host memory (accelerate config)"
    if kind == "FSDP" or (kind == "DEEPSPEED" and stage == 3):
        return 18 * params / procs, f"18 B x P / {procs} ({kind.lower()}, fully sharded)"
    if kind == "DEEPSPEED" and stage == 2:
        return 2 * params + 16 * params / procs, f"2 B x P + 16 B x P / {procs} (ZeRO-2)"
    if kind == "DEEPSPEED" and stage == 1:
        return 4 * params + 14 * params / procs, f"4 B x P + 14 B x P / {procs} (ZeRO-1)"
    return 18 * params, f"18 B x P on every GPU ({'DDP' if procs > 1 else 'one process'}: {kind})"


@check("trainer.trl.lengths", "TRL: prompt and completion fit vLLM's max_model_len", "static", rules=(
    Rule(CONFIG, ("training.max_prompt_tokens", "training.max_response_tokens", LAUNCHER,
                  "model: config.json max_position_embeddings"), "fail",
         "TRL: max_prompt_length + max_completion_length <= vllm_max_model_length (or the vLLM server's "
         "--max_model_len) <= the model's context"),
))
def lengths(ctx: Context) -> Outcome:
    """With vLLM and a length limit set (vllm_max_model_length in colocate mode, the `trl vllm-serve`
    command's --max_model_len in server mode), the prompt budget (max_prompt_length, where this TRL
    version has it) plus max_completion_length must fit it (TRL issue #3180), and it must not exceed the model's
    context window (config.json max_position_embeddings, when the model folder is local): vLLM
    refuses longer inputs mid-run. Without vllm_max_model_length vLLM takes the model's context,
    which config.model.context compares with the budgets."""
    got = _trl(ctx)
    if isinstance(got, Outcome):
        return got
    config, launcher = got
    server = config.get("vllm_mode") == "server"
    field = f"{LAUNCHER}.vllm_server_max_model_len" if server else f"{CONFIG}.vllm_max_model_length"
    raw = launcher.get("vllm_server_max_model_len") if server else config.get("vllm_max_model_length")
    what = "the vLLM server's --max_model_len" if server else "vllm_max_model_length"
    if not config.get("use_vllm") or not raw:
        return skipped(f"no {what}: vLLM uses the model's context (see config.model.context)")
    limit = int(config_number(raw, field, None))
    prompt = _int(config, "max_prompt_length", 0)
    completion = _int(config, "max_completion_length", 0)
    need = prompt + completion
    found = (f"max_prompt_length {prompt} + " if prompt else "") + f"max_completion_length {completion} = {need}; " \
        f"{what} {limit}"
    if need > limit or (not prompt and completion >= limit):
        return failed(found, f"<= {limit}, with room for the prompt", f"raise {what} to at least "
                      f"{need + (0 if prompt else 512)} or lower max_completion_length")
    facts = model_facts(ctx).facts
    if facts is not None and facts.context is not None and limit > facts.context.tokens:
        return failed(found + f"; the model's context {facts.context.tokens}", f"{what} <= "
                      f"{facts.context.tokens}", f"lower {what} to {facts.context.tokens}")
    return passed(found, f"<= {limit}")


@check("trainer.trl.auto_find_batch_size", "TRL: no automatic batch-size halving", "static", rules=(
    Rule(CONFIG, ("training.batch_size",), "fail",
         "TRL: auto_find_batch_size is off (halving the batch after an OOM breaks the prompt groups)"),
))
def auto_find_batch_size(ctx: Context) -> Outcome:
    """auto_find_batch_size halves the batch after an out-of-memory error, and the halved
    generation batch no longer holds whole groups of num_generations: the run crashes mid-way with
    a reshape error (TRL issue #3842, fixed by rejecting it in PR #6411). It must be off."""
    got = _trl(ctx)
    if isinstance(got, Outcome):
        return got
    if got[0].get("auto_find_batch_size"):
        return failed("auto_find_batch_size is on", "off", "set auto_find_batch_size: false and size "
                      "per_device_train_batch_size yourself (hw.memory.gpu estimates it)")
    return passed("auto_find_batch_size is off", "off")


@check("trainer.trl.rewards", "TRL: reward functions are given and known", "static", rules=(
    Rule(CONFIG, ("trainer.workdir", LAUNCHER), "fail",
         "TRL: trl grpo / open-r1 get reward_funcs (or a reward model) whose names their registry knows"),
))
def rewards(ctx: Context) -> Outcome:
    """`trl grpo` and open-r1's grpo.py build their reward functions from reward_funcs (names from
    their registry, or a dotted import path for `trl grpo`) and reward_model_name_or_path: none
    given leaves GRPO with no reward, and a name the registry does not have raises only once the
    trainer is built. A dotted reward function next to the launch is read (not imported): TRL calls
    it with completion_ids and the dataset's columns as keyword arguments, so it must take
    **kwargs (TRL issue #4939). A custom training script passes its own functions: not checkable
    here."""
    got = _trl(ctx)
    if isinstance(got, Outcome):
        return got
    config, launcher = got
    script = str(launcher.get("script") or "")
    open_r1 = "open_r1" in script
    if script != "trl grpo" and not open_r1 and not script.endswith("trl/scripts/grpo.py"):
        return skipped(f"{script or 'the training script'} passes its own reward functions to GRPOTrainer")
    names = list(config.get("reward_funcs") or [])
    if not names and not config.get("reward_model_name_or_path"):
        return failed("no reward_funcs and no reward_model_name_or_path", "at least one reward",
                      "add reward_funcs (e.g. accuracy_reward) or reward_model_name_or_path")
    known = trl_defaults.OPEN_R1_REWARD_FUNCS if open_r1 else \
        tuple(launcher.get("reward_registry") or trl_defaults.REWARD_FUNCS[trl_defaults.VERSION])
    bad = [n for n in names if n not in known and (open_r1 or "." not in n)]
    if bad:
        return failed(f"reward_funcs {names}: {', '.join(bad)} unknown", "names from " + ", ".join(known)
                      + ("" if open_r1 else " or a dotted import path"),
                      f"use one of {', '.join(known)}")
    workdir = Path(str(ctx.spec.get("trainer.workdir") or "."))
    signatures = [problem for n in names if "." in n and not open_r1 for problem in [_signature(workdir, n)] if problem]
    if signatures:
        return failed("; ".join(signatures), "reward functions that accept **kwargs",
                      "add **kwargs to the reward function's parameters: TRL passes completion_ids, trainer_state "
                      "and every dataset column as keyword arguments")
    return passed(f"reward_funcs {names}" + (f", reward model {config['reward_model_name_or_path']}"
                                             if config.get("reward_model_name_or_path") else ""), "known rewards")


def _signature(workdir: Path, dotted: str) -> str:
    """A problem with a dotted reward function's signature, read from its source (not imported):
    TRL calls it with keyword arguments beyond prompts and completions, so it needs **kwargs."""
    module, _, name = dotted.rpartition(".")
    path = workdir / (module.replace(".", "/") + ".py")
    if not path.is_file():
        return ""  # not next to the launch: the trainer imports it from its own path; not read here
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError) as exc:
        return f"{path} cannot be parsed ({exc})"
    fn = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name), None)
    if fn is None:
        return f"{path} defines no function {name}"
    if fn.args.kwarg is None:
        params = ", ".join(a.arg for a in fn.args.args)
        return f"{dotted}({params}) in {path} takes no **kwargs"
    return ""
