"""The policy: a tiny, locally built model and tokenizer for demos and tests, or a local checkpoint.

Nothing here downloads, ever. ``load_policy("tiny")`` builds a character-level tokenizer and a small
randomly initialized Llama from a seed; any other name must be a local directory written by
``save_pretrained`` and is read with ``local_files_only=True``.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from preflight.errors import PreflightError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
# The fixed alphabet every tiny tokenizer starts from, so token ids do not depend on the texts.
BASE_ALPHABET = string.digits + string.ascii_letters + string.punctuation + " \n"
TINY = "tiny"


class ModelNotFoundError(PreflightError, FileNotFoundError):
    """The spec's model is not a local model directory: something the user fixes, so the runner
    prints the message and exits 2 instead of a traceback (still a FileNotFoundError to callers)."""


def build_tokenizer(texts: Iterable[str] | None = None) -> PreTrainedTokenizerFast:
    """A character-level ``PreTrainedTokenizerFast`` built with the tokenizers library.

    Vocabulary: the special tokens <pad> <s> </s> <unk> (ids 0-3), then BASE_ALPHABET (digits, ASCII
    letters, punctuation, space, newline), then every other character found in ``texts`` in code
    point order. The same texts always give the same ids, and text without unknown characters
    round-trips exactly through encode/decode. Encoding prepends <s>; padding is on the left, as
    generation needs.
    """
    # transformers takes seconds to import: only building a tokenizer or a model pays for it
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    chars = list(BASE_ALPHABET)
    known = set(chars)
    extra: set[str] = set()
    for text in texts or ():
        extra.update(text)
    chars += sorted(extra - known - set(SPECIAL_TOKENS))
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *chars])}

    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    bos_id = vocab[BOS]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK,
        padding_side="left", model_max_length=1_000_000,
    )


def build_tiny_model(tokenizer: PreTrainedTokenizerBase, hidden: int = 64, layers: int = 2,
                     heads: int = 4, seed: int = 0, max_positions: int = 256) -> PreTrainedModel:
    """A randomly initialized float32 Llama causal LM sized for ``tokenizer``.

    The weights depend only on the arguments (``seed`` included); the caller's torch RNG state is
    left as it was. Embeddings are untied, so the LM head has a weight of its own (fp32_lm_head
    and similar settings have something to act on). Returned in eval mode, like from_pretrained.
    """
    from transformers import LlamaConfig, LlamaForCausalLM  # seconds to import: see build_tokenizer

    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be a multiple of heads ({heads})")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config).float()
    _set_generation_ids(model, tokenizer)
    return model.eval()


def model_directory(name_or_path: str | Path) -> Path:
    """The local model directory a non-tiny model name must be; ModelNotFoundError (with the fix)
    when it is not one. Cheap: the runner's driver asks it before starting any worker."""
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise ModelNotFoundError(
            f"model directory {str(path)!r} does not exist; the runner only loads local checkpoints "
            f"and never downloads (fetch it first, e.g. `hf download <repo> --local-dir {path}`), "
            f"or use model '{TINY}' for the built-in demo model")
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{path / 'config.json'} not found: {path} is not a saved model directory")
    return path


def load_policy(name_or_path: str | Path, texts: Iterable[str] | None = None,
                dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer): "tiny" builds them here; anything else is a local checkpoint directory.

    Raises ModelNotFoundError (a FileNotFoundError) naming the path when the directory does not
    exist; a Hub id is not fetched (download it first, e.g. `hf download ORG/NAME --local-dir DIR`,
    and pass DIR).
    """
    if str(name_or_path) == TINY:
        tiny_tokenizer = build_tokenizer(texts)
        tiny = build_tiny_model(tiny_tokenizer)
        torch.nn.Module.to(tiny, dtype)  # in place
        return tiny, tiny_tokenizer

    path = model_directory(name_or_path)
    # transformers takes seconds to import: see build_tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=dtype)
    _set_generation_ids(model, tokenizer)
    return model, tokenizer


def _set_generation_ids(model: Any, tokenizer: PreTrainedTokenizerBase) -> None:
    gen = getattr(model, "generation_config", None)
    if gen is None:
        return
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if getattr(gen, attr, None) is None and getattr(tokenizer, attr, None) is not None:
            setattr(gen, attr, getattr(tokenizer, attr))
