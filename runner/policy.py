"""The policy a rank trains: the model and tokenizer on its device, the FP32 LM head, FSDP2, and
the frozen reference for the KL term.

``build_policy`` loads the spec's model (``runner.model.load_policy``) or takes a given pair (tests,
the algo.smoke check), and records in ``notes`` every setting it could not apply as asked.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .algo import fp32_logits
from .config import TrainConfig
from .model import TINY, load_policy
from .parallel import distributed, shard


class FP32LMHead(nn.Module):
    """The LM head computing its logits in float32 (ScaleRL): ``fp32_logits(h, W)``.

    It keeps the original Linear's parameters, so a checkpoint's keys do not change meaning, and
    it is what ``generate`` calls too: sampling and training see the same fp32 logits.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias

    def forward(self, hidden: Tensor) -> Tensor:
        return fp32_logits(hidden, self.weight, self.bias)


@dataclass
class Policy:
    """The trained model (a Hugging Face causal LM, FSDP-wrapped in a world of several ranks),
    its tokenizer, and the frozen reference (None without a KL term)."""

    model: Any
    tokenizer: Any
    reference: nn.Module | None
    built_in: bool  # the random tiny model, loaded here (not a given pair)


def build_policy(config: TrainConfig, device: torch.device, world_size: int, notes: list[str],
                 given: tuple[Any, Any] | None = None) -> Policy:
    """The policy on ``device``: loaded (or ``given``), with the FP32 head, a reference copy taken
    before sharding, FSDP2 (the reference sharded the same way) when torch.distributed is
    initialized."""
    model: Any
    model, tokenizer = given if given is not None else load_policy(config.model_name)
    model.to(device)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    own_head = _fp32_head(model, config.fp32_lm_head, device, notes)
    reference = (copy.deepcopy(model).eval().requires_grad_(False) if config.loss.kl_beta > 0
                 else None)
    if config.gradient_checkpointing:  # after the copy: the frozen reference never runs a backward
        _checkpoint_layers(model, notes)
    if distributed():
        shard(model, own_head, world_size=world_size, device=device,
              compression=config.gradient_compression, bucket_size_mb=config.bucket_size_mb,
              notes=notes)
        if reference is not None:
            # sharded like the policy (a full copy per rank would cost 4 B x params on every GPU);
            # it only runs forward passes, each layer gathered while it computes
            ref_head = reference.get_output_embeddings() if own_head is not None else None
            shard(reference, ref_head, world_size=world_size, device=device,
                  compression=config.gradient_compression, bucket_size_mb=config.bucket_size_mb, notes=[])
            notes.append("kl: the frozen reference policy is sharded like the policy (FSDP2, forward only)")
    elif world_size > 1:
        notes.append(f"world_size={world_size} requested but torch.distributed is not initialized; "
                     "training this process alone")
    note = precision_note(distributed(), device)
    if note:
        notes.append(note)
    return Policy(model, tokenizer, reference,
                  built_in=given is None and config.model_name == TINY)


def precision_note(sharded: bool, device: torch.device) -> str | None:
    """What a run on one GPU without torch.distributed should know: FSDP2's bf16 mixed precision
    (runner.parallel.shard) is not there, so it computes in float32, and hw.memory.gpu's estimate,
    made for the launch through Ray (FSDP2 even with one worker), counts bf16 activations."""
    if sharded or device.type != "cuda":
        return None
    return ("one process on a GPU without torch.distributed: no FSDP2, so no bf16 mixed precision; "
            "this run computes in float32, and its activations take about twice what hw.memory.gpu "
            "counted for a bf16 model (`preflight launch` starts it through Ray with FSDP2, in bf16)")


def _fp32_head(model: Any, wanted: bool, device: torch.device, notes: list[str]) -> nn.Module | None:
    """Swap in the FP32 LM head when ``wanted``; returns it when it is a unit of its own for FSDP2
    (not tied to the input embeddings), else None."""
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is getattr(model.get_input_embeddings(), "weight", None)
    if wanted and isinstance(head, nn.Linear):
        model.set_output_embeddings(FP32LMHead(head))
        if device.type == "cpu":
            notes.append("fp32_lm_head: logits are fp32 anyway on cpu (the model runs in fp32)")
        return None if tied else model.get_output_embeddings()
    if wanted:
        notes.append(f"fp32_lm_head: the output layer is a {type(head).__name__}, not a Linear; not applied")
    return None


def _checkpoint_layers(model: Any, notes: list[str]) -> None:
    """Activation checkpointing per decoder layer (training.gradient_checkpointing): each layer
    keeps only its input for the backward pass and recomputes the rest there. Non-reentrant
    torch.utils.checkpoint, which works under FSDP2 and with inputs that need no gradient."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        notes.append(f"gradient_checkpointing: {type(model).__name__} does not support it; activations are kept")
        return
    # in eval mode (generation) and without gradients (the old log-probs) layers run as they are;
    # transformers 5 renamed the method (the old name warns), 4.x has only the old one
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    notes.append("gradient_checkpointing: each decoder layer's activations are recomputed in the backward pass")


def prompt_budget(model: Any, max_prompt: int, max_new: int, notes: list[str]) -> int:
    """max_prompt, cut so that prompt + response fit the model's positions."""
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if positions and max_prompt + max_new > positions:
        max_prompt = max(positions - max_new, 1)
        notes.append(f"max_prompt_tokens: cut to {max_prompt} so prompt + response fit the model's "
                     f"{positions} positions")
    return max_prompt
