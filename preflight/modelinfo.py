"""What a model is, read from its Hugging Face folder: no torch, no transformers, no weights.

``locate`` says what ``model.name_or_path`` names: the built-in ``tiny`` model, a local folder,
a hub id (not checkable offline), or a path that is not on this machine. ``read_model_folder``
reads config.json (and the text part of a multimodal config) and tokenizer_config.json into
``ModelFacts``: the layer shape, the context window (rope scaling included), the chat template's
presence. ``parameter_count`` computes the parameters from the shape (dense Llama / Qwen2 / Qwen3
/ Mistral / Gemma / Phi-3 layers, Mixtral and Qwen-MoE experts), and ``generic_architecture``
stands in when there is no config to read, from ``model.params_b`` and a published shape of
similar size. An unreadable or invalid file raises ``ModelFilesError`` naming the file and the fix.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

TINY = "tiny"
CONFIG = "config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
# Files any one of which makes a folder's tokenizer loadable by AutoTokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                   "tiktoken.model", TOKENIZER_CONFIG)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# The built-in tiny model: runner/model.py build_tiny_model's defaults (preflight never imports
# the runner; tests/test_memory.py builds the real model and compares the parameter count). Its
# vocabulary is 4 special tokens + 96 base characters, plus any other character the texts hold.
TINY_CONFIG: dict[str, Any] = {
    "model_type": "llama", "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 256,
    "tie_word_embeddings": False, "vocab_size": 100,
}

# model_type -> what its decoder layer has beyond the Llama layout (the parameter formula knows these).
QKV_BIAS = {"qwen2", "qwen2_moe"}
QK_NORM = {"qwen3", "qwen3_moe"}
COUNTABLE = {"llama", "mistral", "qwen2", "qwen3", "mixtral", "qwen2_moe", "qwen3_moe", "gemma", "phi3"}


class ModelFilesError(Exception):
    """A model folder's file that cannot be used: ``file`` names it, ``fix`` says what to do."""

    def __init__(self, file: Path, problem: str, fix: str) -> None:
        self.file, self.problem, self.fix = file, problem, fix
        super().__init__(f"{file}: {problem}")


@dataclass(frozen=True)
class Architecture:
    """The decoder's shape, normalized across model families."""

    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # the dense MLP's width (dense layers of a MoE too)
    vocab: int
    tied: bool
    experts: int = 0  # 0: dense
    experts_per_token: int = 0
    expert_intermediate: int = 0
    shared_intermediate: int = 0  # Qwen-MoE's shared expert
    moe_layers: int = 0  # layers whose MLP is the experts
    qkv_bias: bool = False
    attention_bias: bool = False  # q, k, v and o biases (Llama's attention_bias)
    mlp_bias: bool = False
    qk_norm: bool = False

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.experts > 0 and self.moe_layers > 0


@dataclass(frozen=True)
class ContextWindow:
    tokens: int  # the longest sequence the model takes (rope scaling applied)
    how: str  # where it comes from, e.g. "max_position_embeddings 32768 x yarn factor 4"


@dataclass(frozen=True)
class ModelFacts:
    """What was read about a model, and from where."""

    source: str  # "config.json in /models/x", "the built-in tiny model", ...
    arch: Architecture | None  # None: config.json has no decoder shape (reason in shape_note)
    context: ContextWindow | None
    chat_template: str | None = None  # where a chat template was found; None: none found
    countable: bool = True  # whether parameter_count's formula covers this model_type
    notes: tuple[str, ...] = ()  # caveats: a multimodal config's vision part, an unknown model_type
    shape_note: str = ""  # why arch is None
    files: tuple[str, ...] = field(default_factory=tuple)  # the files read


@dataclass(frozen=True)
class Located:
    kind: str  # "tiny" | "local" (a path that exists) | "hub" | "missing"
    path: Path | None
    name: str


def locate(name_or_path: str) -> Located:
    """What ``model.name_or_path`` names, without reading anything but the directory entry."""
    name = str(name_or_path)
    if name == TINY:
        return Located("tiny", None, name)
    path = Path(name).expanduser()
    if path.is_dir() or path.exists():  # a file is a local path too: read_model_folder says what is wrong
        return Located("local", path, name)
    if HUB_ID.match(name) and not name.startswith("."):
        return Located("hub", None, name)
    return Located("missing", path, name)


def not_on_disk_reason(loc: Located) -> str:
    if loc.kind == "hub":
        return (f"model '{loc.name}' is a hub id, not a folder on this machine: not checkable offline "
                f"(download it, e.g. `hf download {loc.name} --local-dir DIR`, and set model.name_or_path: DIR)")
    return (f"model folder {loc.name} is not on this machine: not checkable here (check where the "
            "folder is, or point model.name_or_path at a local copy)")


# --- reading a folder -----------------------------------------------------------------------------


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ModelFilesError(path, f"{what} is not UTF-8 text", f"restore {path.name} from the model's "
                              "original files (a download may have been cut short)") from None
    except OSError as exc:
        raise ModelFilesError(path, f"{what} cannot be read: {exc.strerror or exc}",
                              f"fix the permissions of {path}, or point model.name_or_path at a readable copy") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFilesError(path, f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                              f"{exc.msg})", f"restore {path.name} from the model's original files "
                              "(a download may have been cut short, or the file was edited by hand)") from None
    if not isinstance(data, dict):
        raise ModelFilesError(path, f"{what} holds a JSON {type(data).__name__}, not an object",
                              f"restore {path.name} from the model's original files")
    return data


def read_model_folder(folder: Path) -> ModelFacts:
    """Read config.json and the tokenizer's config. Raises ModelFilesError naming the file."""
    if not folder.is_dir():
        raise ModelFilesError(folder, "is a file, not a model folder",
                              f"point model.name_or_path at the folder that holds {CONFIG}")
    config_path = folder / CONFIG
    if not config_path.is_file():
        raise ModelFilesError(config_path, "not found: the folder is not a saved Hugging Face model",
                              "point model.name_or_path at the folder that holds config.json (the one "
                              "`save_pretrained` or `hf download --local-dir` wrote)")
    config = read_json(config_path, CONFIG)
    files = [CONFIG]
    arch, context, notes, countable, shape_note = _from_config(config, config_path)
    template = None
    tok_path = folder / TOKENIZER_CONFIG
    if tok_path.is_file():
        files.append(TOKENIZER_CONFIG)
        if _has_template(read_json(tok_path, TOKENIZER_CONFIG).get("chat_template")):
            template = f"{TOKENIZER_CONFIG} chat_template"
    if template is None:
        template = _template_file(folder)
    return ModelFacts(source=f"{CONFIG} in {folder}", arch=arch, context=context, chat_template=template,
                      countable=countable, notes=tuple(notes), shape_note=shape_note, files=tuple(files))


def tokenizer_files(folder: Path) -> list[str]:
    """The tokenizer files present (any one lets AutoTokenizer load it)."""
    found = [n for n in TOKENIZER_FILES if (folder / n).is_file()]
    return found or [p.name for p in folder.glob("*.tiktoken")]


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list):  # named templates: [{"name": "default", "template": "..."}]
        return any(isinstance(t, dict) and _has_template(t.get("template")) for t in value)
    return False


def _template_file(folder: Path) -> str | None:
    if (folder / "chat_template.jinja").is_file():
        return "chat_template.jinja"
    if (folder / "chat_template.json").is_file():
        data = read_json(folder / "chat_template.json", "chat_template.json")
        if _has_template(data.get("chat_template")):
            return "chat_template.json"
    return None


def tiny_facts() -> ModelFacts:
    arch, context, _notes, _countable, _ = _from_config(TINY_CONFIG, Path("<tiny>"))
    return ModelFacts(source="the built-in tiny model (runner/model.py)", arch=arch, context=context,
                      chat_template=None, countable=True,
                      notes=("its vocabulary grows with the characters of the task's texts",))


# --- config.json -> Architecture, ContextWindow ---------------------------------------------------


def _from_config(config: dict[str, Any], path: Path
                 ) -> tuple[Architecture | None, ContextWindow | None, list[str], bool, str]:
    notes: list[str] = []
    text = config
    if "hidden_size" not in config and isinstance(config.get("text_config"), dict):
        text = {**config, **config["text_config"]}  # a multimodal config: the language model's part
        notes.append("a multimodal config: only its language model (text_config) is read; the "
                     "vision part is not counted")
    model_type = str(text.get("model_type") or config.get("model_type") or "unknown")
    context = _context(text, path)
    missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
               if k not in text]
    if missing:
        why = f"{CONFIG} has no {', '.join(missing)}: not a decoder language model config this tool reads"
        return None, context, notes, False, why
    arch = _architecture(text, model_type, path)
    countable = model_type in COUNTABLE and not notes
    if model_type not in COUNTABLE:
        notes.append(f"model_type '{model_type}': its parameters are counted as a Llama-style decoder "
                     "would have them, so the count is not compared with model.params_b")
    return arch, context, notes, countable, ""


def _int(config: dict[str, Any], key: str, path: Path, minimum: int = 1) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelFilesError(path, f"{key} is {json.dumps(value)}, not an integer >= {minimum}",
                              f"restore {path.name} from the model's original files")
    return value


def _opt(config: dict[str, Any], key: str, path: Path, default: int = 0) -> int:
    """An optional size: absent or null is ``default``; anything but an integer >= 0 is an error."""
    return default if config.get(key) is None else _int(config, key, path, minimum=0)


def _architecture(c: dict[str, Any], model_type: str, path: Path) -> Architecture:
    hidden = _int(c, "hidden_size", path)
    heads = _int(c, "num_attention_heads", path)
    kv_heads = _opt(c, "num_key_value_heads", path) or heads
    head_dim = _opt(c, "head_dim", path) or hidden // heads
    layers = _int(c, "num_hidden_layers", path)
    experts = next((_opt(c, k, path) for k in ("num_local_experts", "num_experts", "n_routed_experts")
                    if c.get(k) is not None), 0)
    dense_width = _opt(c, "intermediate_size", path)
    expert_width = _opt(c, "moe_intermediate_size", path) or dense_width  # Mixtral: intermediate_size
    moe_layers = _moe_layers(c, layers, path) if experts else 0
    if moe_layers < layers and dense_width <= 0:
        raise ModelFilesError(path, "intermediate_size is missing: the MLP's width is unknown",
                              f"restore {path.name} from the model's original files")
    return Architecture(
        model_type=model_type, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads,
        head_dim=head_dim, intermediate=dense_width, vocab=_int(c, "vocab_size", path),
        tied=bool(c.get("tie_word_embeddings", model_type == "gemma")),
        experts=experts, experts_per_token=_opt(c, "num_experts_per_tok", path) if experts else 0,
        expert_intermediate=expert_width if experts else 0,
        shared_intermediate=_opt(c, "shared_expert_intermediate_size", path) if experts else 0,
        moe_layers=moe_layers, qkv_bias=model_type in QKV_BIAS, attention_bias=bool(c.get("attention_bias")),
        mlp_bias=bool(c.get("mlp_bias")), qk_norm=model_type in QK_NORM,
    )


def _moe_layers(c: dict[str, Any], layers: int, path: Path) -> int:
    """Layers whose MLP is the experts (Qwen-MoE: every decoder_sparse_step-th, minus mlp_only_layers)."""
    step = _opt(c, "decoder_sparse_step", path) or 1
    dense_only = c.get("mlp_only_layers") or []
    if not isinstance(dense_only, list) or not all(isinstance(i, int) for i in dense_only):
        raise ModelFilesError(path, f"mlp_only_layers is {json.dumps(dense_only)}, not a list of layer numbers",
                              f"restore {path.name} from the model's original files")
    first_dense = _opt(c, "first_k_dense_replace", path)
    return sum(1 for i in range(layers) if i not in dense_only and i >= first_dense and (i + 1) % step == 0)


def _context(c: dict[str, Any], path: Path) -> ContextWindow | None:
    key = next((k for k in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
                if isinstance(c.get(k), int) and not isinstance(c.get(k), bool)), None)
    if key is None:
        return None
    base = _int(c, key, path)
    scaling = c.get("rope_scaling") or c.get("rope_parameters")
    if not isinstance(scaling, dict):
        return ContextWindow(base, f"{key} {base}")
    kind = str(scaling.get("rope_type") or scaling.get("type") or "default")
    factor = scaling.get("factor")
    if kind in ("yarn", "linear", "dynamic") and isinstance(factor, (int, float)) and factor > 1:
        original = scaling.get("original_max_position_embeddings")
        native = original if isinstance(original, int) and original > 0 else base
        scaled = int(native * factor)
        if scaled > base:
            return ContextWindow(scaled, f"{native} native positions x {kind} rope scaling factor {factor:g}")
    return ContextWindow(base, f"{key} {base}" + (f" ({kind} rope scaling included)" if kind != "default" else ""))


# --- parameters -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamCount:
    total: float
    active: float  # per token: the experts a token is routed to instead of all of them
    embeddings: float  # input embeddings + an untied LM head
    largest_layer: float  # the largest single module (DeepSpeed's largest_layer_params)

    def describe(self) -> str:
        text = f"{self.total / 1e9:.3g}B"
        if self.active < self.total:
            text += f" total, {self.active / 1e9:.3g}B active"
        return text


def parameter_count(a: Architecture) -> ParamCount:
    """Parameters from the shape: embeddings (V x h, and again for an untied head), per layer the
    attention (q, k, v, o with GQA widths, biases where the family has them, Qwen3's q/k norms),
    the MLP (gate, up, down: 3 x h x i) or the experts (E x 3 x h x i_e, the router h x E, a shared
    expert and its gate), two RMSNorms, and the final norm."""
    h = a.hidden
    attn = 2 * h * a.q_dim + 2 * h * a.kv_dim
    if a.qkv_bias or a.attention_bias:
        attn += a.q_dim + 2 * a.kv_dim
    if a.attention_bias:
        attn += h
    if a.qk_norm:
        attn += 2 * a.head_dim
    norms = 2 * h
    dense = 3 * h * a.intermediate + ((2 * a.intermediate + h) if a.mlp_bias else 0)
    expert = 3 * h * a.expert_intermediate
    shared = (3 * h * a.shared_intermediate + h) if a.shared_intermediate else 0
    router = h * a.experts
    embeddings = a.vocab * h * (1 if a.tied else 2)
    dense_layers = a.layers - a.moe_layers
    common = embeddings + h + a.layers * (attn + norms) + dense_layers * dense
    total = common + a.moe_layers * (a.experts * expert + router + shared)
    active = common + a.moe_layers * (a.experts_per_token * expert + router + shared)
    largest = max(a.vocab * h, h * a.q_dim, h * max(a.intermediate, a.expert_intermediate))
    return ParamCount(float(total), float(active), float(embeddings), float(largest))


# --- a generic shape when there is no config --------------------------------------------------------

# Published config.json shapes (hidden, layers, heads, kv heads, intermediate, vocab, tied), from the
# models' Hugging Face repositories: Qwen2.5-0.5B/1.5B/3B/14B/32B, Llama-3.1-8B/70B/405B.
REFERENCE_SHAPES: dict[str, tuple[int, int, int, int, int, int, bool]] = {
    "Qwen2.5-0.5B": (896, 24, 14, 2, 4864, 151936, True),
    "Qwen2.5-1.5B": (1536, 28, 12, 2, 8960, 151936, True),
    "Qwen2.5-3B": (2048, 36, 16, 2, 11008, 151936, True),
    "Llama-3.1-8B": (4096, 32, 32, 8, 14336, 128256, False),
    "Qwen2.5-14B": (5120, 48, 40, 8, 13824, 152064, False),
    "Qwen2.5-32B": (5120, 64, 40, 8, 27648, 152064, False),
    "Llama-3.1-70B": (8192, 80, 64, 8, 28672, 128256, False),
    "Llama-3.1-405B": (16384, 126, 128, 8, 53248, 128256, False),
}


def generic_architecture(params: float) -> tuple[Architecture, str]:
    """A dense decoder of about ``params`` parameters: the published shape nearest in size, with
    its layer count scaled to match. Returns the shape and a sentence saying so."""
    def size(shape: tuple[int, int, int, int, int, int, bool]) -> float:
        return parameter_count(_shape(*shape)).total

    name, ref = min(REFERENCE_SHAPES.items(), key=lambda kv: abs(math.log(size(kv[1]) / params)))
    base = _shape(*ref)
    rest = parameter_count(replace(base, layers=0)).total  # embeddings, head, final norm
    one_layer = parameter_count(replace(base, layers=1)).total - rest
    layers = max(1, round((params - rest) / one_layer))
    arch = replace(base, layers=layers)
    return arch, (f"no config.json to read: assumed {name}'s layer shape (hidden {ref[0]}, {ref[2]} heads, "
                  f"{ref[3]} KV heads, vocabulary {ref[5]}) with {layers} layers to make "
                  f"{params / 1e9:.3g}B parameters")


def _shape(hidden: int, layers: int, heads: int, kv: int, inter: int, vocab: int, tied: bool) -> Architecture:
    return Architecture("generic", hidden, layers, heads, kv, hidden // heads, inter, vocab, tied)
