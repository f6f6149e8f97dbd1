"""The model's own facts against the spec: its files, context window, attention heads, parameter
count and chat template, read from a local Hugging Face folder (preflight.modelinfo; no torch, no
weights). A hub id or a folder that is not on this machine is not checkable offline: those checks
skip and say so. The memory checks take the model's shape from here too (``model_shape``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..modelinfo import (
    Architecture,
    Located,
    ModelFacts,
    ModelFilesError,
    ParamCount,
    generic_architecture,
    locate,
    not_on_disk_reason,
    parameter_count,
    read_model_folder,
    tiny_facts,
    tokenizer_files,
)
from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed, skipped, warned
from ..spec import Spec
from ._util import plural

CHAT_DATA_FORMATS = ("verl",)  # data.format presets whose prompt is always a list of chat messages
PARAMS_WARN = 1.10  # more than 10 % off warns
PARAMS_FAIL = 10.0  # an order of magnitude off fails
BROKEN = "the model's files cannot be read (see config.model.files)"


@dataclass(frozen=True)
class Loaded:
    """The model as this machine sees it: facts, or why there are none."""

    where: Located
    facts: ModelFacts | None = None
    error: ModelFilesError | None = None
    reason: str = ""  # why facts is None


def model_facts(ctx: Context) -> Loaded:
    """Read once per check run, whichever check asks first."""
    loaded: Loaded = ctx.memo("model.facts", lambda: load(ctx.spec))
    return loaded


def load(spec: Spec) -> Loaded:
    where = locate(str(spec.get("model.name_or_path")))
    if where.kind == "tiny":
        return Loaded(where, tiny_facts())
    if where.kind != "local" or where.path is None:
        return Loaded(where, reason=not_on_disk_reason(where))
    try:
        return Loaded(where, read_model_folder(where.path))
    except ModelFilesError as exc:
        return Loaded(where, error=exc, reason=BROKEN)


def prompts_are_chat(spec: Spec) -> tuple[bool | None, str]:
    """Whether the run's prompts are chat messages, from the spec alone: True for run.domain chat
    or a data.format whose prompts are always messages (verl); None when the format allows both
    (trl, openrlhf, auto: the rows decide); False otherwise."""
    if spec.get("run.domain") == "chat":
        return True, "run.domain is chat (prompts are messages)"
    fmt = spec.get("data.format")
    if fmt in CHAT_DATA_FORMATS:
        return True, f"data.format {fmt}: its prompts are lists of chat messages"
    if fmt and fmt != "plain":
        return None, f"data.format {fmt}: prompts may be text or chat messages; the rows decide"
    return False, f"run.domain {spec.get('run.domain')}: prompts are plain text"


@dataclass(frozen=True)
class Shape:
    """The model's shape and parameters as the memory and disk estimates use them."""

    arch: Architecture
    count: ParamCount
    source: str  # where they come from, in words
    counted: bool  # the parameters were counted from the model's own config (not model.params_b)


def model_shape(ctx: Context) -> Shape:
    """``shape_of`` the spec's model, its files read once per check run."""
    return shape_of(model_facts(ctx), ctx.spec)


def shape_of(loaded: Loaded, spec: Spec) -> Shape:
    """The model's config.json shape and counted parameters when it can be read, else
    model.params_b (and active_params_b) with a published shape of that size."""
    facts = loaded.facts
    stated = float(spec.get("model.params_b")) * 1e9
    if facts is not None and facts.arch is not None:
        count = parameter_count(facts.arch)
        if facts.countable and loaded.where.kind != "tiny":
            return Shape(facts.arch, count, facts.source, True)
        # the tiny model's vocabulary grows with the texts, and the formula may undercount a family
        # it does not know: keep the larger of the count and model.params_b
        if count.total < stated:
            count = ParamCount(stated, max(count.active, stated * count.active / count.total),
                               count.embeddings, count.largest_layer)
        return Shape(facts.arch, count, f"{facts.source} (parameters: the larger of the count and "
                     "model.params_b)", False)
    why = (facts.shape_note if facts is not None else loaded.reason) or "no config.json"
    active = float(spec.get("model.active_params_b") or spec.get("model.params_b")) * 1e9
    arch, how = generic_architecture(active)
    count = parameter_count(arch)
    return Shape(arch, ParamCount(stated, active, count.embeddings, count.largest_layer), f"{why}; {how}", False)


def _facts_or_skip(ctx: Context) -> ModelFacts | Outcome:
    loaded = model_facts(ctx)
    if loaded.facts is None:
        return skipped(loaded.reason)
    return loaded.facts


MODEL_FILES = "model: config.json"


@check("config.model.files", "Model folder is readable", "static", rules=(
    Rule("model.name_or_path", (MODEL_FILES, "model: tokenizer files"), "fail",
         "a local model folder holds a readable config.json (a JSON object) and tokenizer files"),
))
def model_files(ctx: Context) -> Outcome:
    """When model.name_or_path is a local folder: config.json is there, readable UTF-8 JSON holding
    an object with sane integer sizes, and the folder has tokenizer files (tokenizer.json,
    tokenizer.model, vocab.json, ...), as the runner's from_pretrained needs. A hub id or a path
    that is not on this machine is not checkable offline and skips; 'tiny' is the built-in model.
    """
    loaded = model_facts(ctx)
    where = loaded.where
    if where.kind == "tiny":
        return passed("the built-in tiny model (built by the runner, no files)", "readable model files")
    if loaded.error is not None:
        err = loaded.error
        return failed(f"{err.file}: {err.problem}", "a readable config.json and tokenizer files", err.fix)
    if loaded.facts is None or where.path is None:
        return skipped(loaded.reason)
    tokenizer = tokenizer_files(where.path)
    if not tokenizer:
        return failed(f"no tokenizer files in {where.path}", "tokenizer.json, tokenizer.model or vocab.json",
                      "copy the tokenizer files into the model folder (they come with the model's "
                      "original files; `save_pretrained` on the tokenizer writes them)")
    return passed(f"{', '.join(loaded.facts.files)} read; tokenizer: {', '.join(tokenizer)}",
                  "a readable config.json and tokenizer files", source=loaded.facts.source)


@check("config.model.context", "Prompt and response fit the model's context", "static", rules=(
    Rule("training.max_prompt_tokens", ("training.max_response_tokens", "model: config.json max_position_embeddings",
                                        "model: config.json rope_scaling"), "fail",
         "the prompt and response budgets together fit the model's context window"),
))
def context(ctx: Context) -> Outcome:
    """training.max_prompt_tokens + training.max_response_tokens against the model's context
    window: config.json's max_position_embeddings, or, with yarn/linear/dynamic rope scaling
    declared there, the native length x the scaling factor. Longer fails: vLLM refuses
    (max_model_len), and positions past the window are untrained. The fix names both budgets."""
    facts = _facts_or_skip(ctx)
    if isinstance(facts, Outcome):
        return facts
    s = ctx.spec
    prompt, response = int(s.get("training.max_prompt_tokens")), int(s.get("training.max_response_tokens"))
    need = prompt + response
    found = f"max_prompt_tokens {prompt:,} + max_response_tokens {response:,} = {need:,} tokens"
    if model_facts(ctx).where.kind == "tiny":
        return skipped("the built-in tiny model is a RoPE Llama without a trained context length; the runner "
                       "cuts the prompt so that prompt + response fit its 256 positions")
    if facts.context is None:
        return skipped(f"{facts.source} declares no context length (max_position_embeddings)")
    window = facts.context
    expected = f"<= {window.tokens:,} ({window.how})"
    if need > window.tokens:
        room = max(window.tokens - prompt, 0)
        return failed(found, expected,
                      f"lower training.max_response_tokens to at most {room:,} (or max_prompt_tokens), or use a "
                      "model with a longer context (or rope scaling declared in its config.json, e.g. yarn)",
                      context_window=window.tokens, source=facts.source)
    return passed(found, expected, context_window=window.tokens, source=facts.source)


HEADS = ("model: config.json num_attention_heads", "model: config.json num_key_value_heads")


def _split_problems(name: str, size: int, heads: int, kv: int) -> list[str]:
    """heads % size == 0, and kv % size == 0 or size % kv == 0 (KV heads replicated)."""
    out = []
    if heads % size:
        out.append(f"{heads} attention heads do not split over {name} {size}")
    if kv % size and size % kv:
        out.append(f"{kv} KV heads neither split over nor replicate evenly across {name} {size}")
    return out


@check("config.model.heads", "Attention heads split over the parallel sizes", "static", rules=(
    Rule("distributed.tensor_parallel_size", HEADS, "fail",
         "heads % tp == 0, and KV heads % tp == 0 or tp % KV heads == 0"),
    Rule("distributed.sequence_parallel_size", HEADS, "fail",
         "Ulysses: heads % sp == 0, and KV heads % sp == 0 or sp % KV heads == 0"),
))
def heads(ctx: Context) -> Outcome:
    """Tensor parallelism splits the attention heads across distributed.tensor_parallel_size GPUs:
    num_attention_heads % tp == 0, and num_key_value_heads % tp == 0 or tp % num_key_value_heads
    == 0 (KV heads replicated). Ulysses sequence parallelism (distributed.sequence_parallel_size)
    scatters heads the same way: heads % sp == 0 and (KV heads % sp == 0 or sp % KV heads == 0);
    verl asserts it, and a mismatch hangs training. Sizes of 1 need nothing."""
    s = ctx.spec
    tp = int(s.get("distributed.tensor_parallel_size") or 1)
    sp = int(s.get("distributed.sequence_parallel_size") or 1)
    if tp == 1 and sp == 1:
        return passed("tensor_parallel_size 1, sequence_parallel_size 1: no heads to split", "heads split evenly")
    facts = _facts_or_skip(ctx)
    if isinstance(facts, Outcome):
        return facts
    if facts.arch is None:
        return skipped(facts.shape_note)
    a = facts.arch
    found = f"{a.heads} attention heads, {a.kv_heads} KV heads; tp {tp}, sp {sp}"
    expected = "heads % size == 0 and (KV heads % size == 0 or size % KV heads == 0), for tp and sp"
    problems = _split_problems("tensor_parallel_size", tp, a.heads, a.kv_heads)
    problems += _split_problems("sequence_parallel_size", sp, a.heads, a.kv_heads)
    if problems:
        fits = [n for n in range(1, 65) if not _split_problems("size", n, a.heads, a.kv_heads)]
        return failed(found + " (" + "; ".join(problems) + ")", expected,
                      f"use a size that splits {a.heads} heads and {a.kv_heads} KV heads: "
                      + ", ".join(map(str, fits[:8])), source=facts.source)
    return passed(found, expected, source=facts.source)


def _ratio(stated: float, counted: float) -> float:
    return max(stated / counted, counted / stated)


def _params_problems(s: Spec, a: Architecture, count: ParamCount) -> list[tuple[str, str]]:
    """(severity, problem) for each disagreement between the spec's model fields and the config."""
    out: list[tuple[str, str]] = []
    stated = float(s.get("model.params_b"))
    r = _ratio(stated * 1e9, count.total)
    if r > PARAMS_WARN:
        out.append(("fail" if r >= PARAMS_FAIL else "warn",
                    f"model.params_b {stated:g} vs {count.total / 1e9:.3g}B counted ({r:.2g}x)"))
    arch = s.get("model.architecture")
    if a.is_moe:
        active = s.get("model.active_params_b")
        if active is not None and _ratio(float(active) * 1e9, count.active) > PARAMS_WARN:
            r = _ratio(float(active) * 1e9, count.active)
            out.append(("fail" if r >= PARAMS_FAIL else "warn",
                        f"model.active_params_b {active:g} vs {count.active / 1e9:.3g}B active counted ({r:.2g}x)"))
        if arch != "moe":
            out.append(("warn", f"model.architecture is {arch}, but config.json declares {a.experts} experts"))
        experts = s.get("model.experts")
        if experts is not None and int(experts) != a.experts:
            out.append(("warn", f"model.experts {experts} vs {a.experts} in config.json"))
    elif arch == "moe":
        out.append(("warn", "model.architecture is moe, but config.json declares no experts"))
    return out


@check("config.model.params", "Model size matches its config", "static", rules=(
    Rule("model.params_b", ("model: config.json (parameter count)",), "warn beyond 10 %; fail beyond 10x",
         "model.params_b matches the parameters counted from config.json"),
    Rule("model.active_params_b", ("model: config.json num_experts_per_tok",), "warn beyond 10 %; fail beyond 10x",
         "a MoE's active parameters match the count from config.json"),
    Rule("model.architecture", ("model: config.json num_experts",), "warn",
         "architecture is moe exactly when config.json declares experts"),
    Rule("model.experts", ("model: config.json num_local_experts / num_experts",), "warn",
         "model.experts equals the experts config.json declares"),
))
def params(ctx: Context) -> Outcome:
    """Counts the parameters from config.json (embeddings and an untied LM head, attention with
    its GQA widths and biases, MLP or experts, norms) and compares: model.params_b more than 10 %
    off warns, 10x off fails (the stage band, the GPU-hour budget and the memory estimates all
    read it); for a MoE, model.active_params_b likewise, and architecture / experts must agree
    with the config. Families the formula does not cover, and multimodal configs, skip."""
    facts = _facts_or_skip(ctx)
    if isinstance(facts, Outcome):
        return facts
    if model_facts(ctx).where.kind == "tiny":
        return skipped("the built-in tiny model's size depends on the characters of the task's texts "
                       "(about 0.14M parameters with the arithmetic task)")
    if facts.arch is None:
        return skipped(facts.shape_note)
    if not facts.countable:
        return skipped("; ".join(facts.notes))
    count = parameter_count(facts.arch)
    problems = _params_problems(ctx.spec, facts.arch, count)
    found = f"{count.describe()} counted from {facts.source}"
    expected = "model.params_b within 10 % of the count" + (", active_params_b too" if facts.arch.is_moe else "")
    evidence = {"counted_total": int(count.total), "counted_active": int(count.active),
                "embeddings": int(count.embeddings)}
    if not problems:
        return passed(found, expected, **evidence)
    text = found + " (" + "; ".join(p for _, p in problems) + ")"
    fix = (f"set model.params_b: {count.total / 1e9:.3g}"
           + (f", model.active_params_b: {count.active / 1e9:.3g}, model.architecture: moe, model.experts: "
              f"{facts.arch.experts}" if facts.arch.is_moe else ", model.architecture: dense")
           + " (or point model.name_or_path at the model you mean)")
    if any(sev == "fail" for sev, _ in problems):
        return failed(text, expected, fix, **evidence)
    return warned(text, expected, fix, **evidence)


@check("config.model.chat_template", "Chat prompts have a chat template", "static", rules=(
    Rule("run.domain", ("model: tokenizer_config.json chat_template", "model: chat_template.jinja"), "fail",
         "prompts given as chat messages need the tokenizer's chat template"),
    Rule("data.format", ("model: tokenizer_config.json chat_template", "model: chat_template.jinja"), "fail",
         "a data format whose prompts are chat messages (verl) needs the tokenizer's chat template"),
))
def chat_template(ctx: Context) -> Outcome:
    """When the prompts are chat messages (run.domain chat; a data.format whose prompts are
    messages), the tokenizer must carry a chat template (tokenizer_config.json chat_template, or a
    chat_template.jinja / chat_template.json file): apply_chat_template raises without one, and a
    base model's tokenizer often has none. Plain-text prompts need none."""
    chat, why = prompts_are_chat(ctx.spec)
    if chat is None:
        return skipped(why)
    if not chat:
        return skipped(f"{why}: no chat template needed")
    facts = _facts_or_skip(ctx)
    if isinstance(facts, Outcome):
        return facts
    if model_facts(ctx).where.kind == "tiny":
        return skipped("the built-in tiny model has no chat template; the runner gives it the user turns' text")
    if facts.chat_template is None:
        return failed(f"no chat template in {facts.source.split(' in ', 1)[-1]} ({why})",
                      "a chat template (tokenizer_config.json chat_template, or chat_template.jinja)",
                      "use the model's instruct/chat variant, or add a chat template to its "
                      "tokenizer_config.json (the base model's family usually publishes one)")
    return passed(f"{facts.chat_template} ({why})", "a chat template")


@check("config.parallel", "Parallel sizes divide the GPUs", "static", rules=(
    Rule("distributed.tensor_parallel_size", ("hardware.gpus_per_node", "hardware.nodes"),
         "fail; warn when it spans nodes", "tp divides the world size, within one node"),
    Rule("distributed.sequence_parallel_size", ("hardware.gpus_per_node", "hardware.nodes",
                                                "distributed.cpu_workers"), "fail",
         "sp divides the world size"),
))
def parallel(ctx: Context) -> Outcome:
    """distributed.tensor_parallel_size and sequence_parallel_size must each divide the world size
    (GPUs per node x nodes, or the CPU workers), so that the GPUs form whole groups. A tensor-
    parallel group larger than a node warns: its all-reduces then cross the network every layer."""
    s = ctx.spec
    tp = int(s.get("distributed.tensor_parallel_size") or 1)
    sp = int(s.get("distributed.sequence_parallel_size") or 1)
    world = s.world_size
    found = f"tp {tp}, sp {sp}, world size {world}"
    expected = "tp and sp divide the world size; tp <= GPUs per node"
    bad = [f"{name} {n} does not divide {world}" for name, n in (("tp", tp), ("sp", sp)) if world % n]
    if bad:
        return failed(found + " (" + "; ".join(bad) + ")", expected,
                      "use sizes that divide the world size: " + ", ".join(
                          str(n) for n in range(1, world + 1) if world % n == 0 and n <= 64))
    per_node = int(s.get("hardware.gpus_per_node")) if s.uses_gpus else world
    if tp > per_node:
        return warned(found, expected, f"tensor parallelism over {tp} GPUs spans nodes of {plural(per_node, 'GPU')}: "
                      f"keep distributed.tensor_parallel_size <= {per_node}")
    return passed(found, expected)
