"""The tiny demo policy and local checkpoint loading; nothing here may touch the network."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from runner.model import (  # noqa: E402
    BASE_ALPHABET,
    SPECIAL_TOKENS,
    build_tiny_model,
    build_tokenizer,
    load_policy,
)

TEXT = "12 + 7 = 19"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)


def test_tokenizer_is_deterministic_and_round_trips() -> None:
    tok = build_tokenizer()
    assert tok.get_vocab() == build_tokenizer().get_vocab()
    assert len(tok) == len(SPECIAL_TOKENS) + len(BASE_ALPHABET)
    ids = tok(TEXT)["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert len(ids) == len(TEXT) + 1  # one token a character
    assert tok.decode(ids, skip_special_tokens=True) == TEXT
    assert (tok.pad_token, tok.bos_token, tok.eos_token) == ("<pad>", "<s>", "</s>")
    assert tok.padding_side == "left"


def test_tokenizer_learns_extra_characters_from_texts_keeping_base_ids() -> None:
    base = build_tokenizer()
    tok = build_tokenizer(["ünïcode →", "x² = 4"])
    assert tok.get_vocab() == build_tokenizer(["x² = 4", "ünïcode →"]).get_vocab()
    assert all(tok.convert_tokens_to_ids(c) == base.convert_tokens_to_ids(c) for c in BASE_ALPHABET)
    assert tok.decode(tok("x² → ü")["input_ids"], skip_special_tokens=True) == "x² → ü"
    assert base("²")["input_ids"][-1] == base.unk_token_id


def test_batches_are_left_padded() -> None:
    tok = build_tokenizer()
    batch = tok(["1+1=2", TEXT], padding=True, return_tensors="pt")
    assert batch["input_ids"][0, 0].item() == tok.pad_token_id
    assert batch["attention_mask"][0, 0].item() == 0
    assert batch["input_ids"][:, -1].tolist() == tok.convert_tokens_to_ids(["2", "9"])


def test_tiny_model_is_deterministic_from_its_seed() -> None:
    tok = build_tokenizer()
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_tiny_model(tok, seed=0)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's RNG is left alone
    b = build_tiny_model(tok, seed=0)
    c = build_tiny_model(tok, seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert all(p.dtype == torch.float32 for p in a.parameters())
    head = a.get_output_embeddings().weight
    assert head.shape == (len(tok), 64)
    assert head.data_ptr() != a.get_input_embeddings().weight.data_ptr()  # untied


def test_tiny_model_generates_from_tokenized_prompts() -> None:
    tok = build_tokenizer()
    model = build_tiny_model(tok)
    batch = tok(["1+1=2", TEXT], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    width = batch["input_ids"].shape[1]
    assert out.shape[0] == 2 and width < out.shape[1] <= width + 4
    prompts = tok.batch_decode(out[:, :width], skip_special_tokens=True)
    assert prompts == ["1+1=2", TEXT]
    again = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert torch.equal(out, again)


def test_load_policy_tiny_and_a_saved_directory(tmp_path: Path) -> None:
    model, tok = load_policy("tiny", texts=["é"])
    assert tok.convert_tokens_to_ids("é") != tok.unk_token_id
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    model.save_pretrained(tmp_path / "ckpt")
    tok.save_pretrained(tmp_path / "ckpt")
    loaded, loaded_tok = load_policy(str(tmp_path / "ckpt"))
    assert loaded_tok(TEXT)["input_ids"] == tok(TEXT)["input_ids"]
    assert loaded_tok.padding_side == "left"
    ref = model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())
    half, _ = load_policy("tiny", dtype=torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("name", ["no/such/dir", "Qwen/Qwen2.5-0.5B-Instruct"])
def test_load_policy_never_downloads(name: str) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist") as info:
        load_policy(name)
    assert name in str(info.value)


def test_load_policy_on_a_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_policy(str(tmp_path))


def test_one_process_on_a_gpu_says_it_computes_in_float32():
    """Without torch.distributed there is no FSDP2 and so no bf16 mixed precision: the run's notes
    say so, since the gate's memory estimate counted bf16 activations (the Ray launch's)."""
    import torch

    from runner.policy import precision_note

    note = precision_note(False, torch.device("cuda", 0))
    assert note is not None and "float32" in note and "hw.memory.gpu" in note
    assert precision_note(True, torch.device("cuda", 0)) is None  # FSDP2: bf16, as estimated
    assert precision_note(False, torch.device("cpu")) is None  # CPU runs are fp32 either way
