"""The memory and parameter estimates against published figures: DeepSpeed's ZeRO-3 estimator, the
models' own parameter counts, and the KV-cache formula worked by hand.

The model configs below are the published config.json values of each model's Hugging Face
repository (Qwen/Qwen2.5-1.5B, Qwen/Qwen2.5-7B, meta-llama/Meta-Llama-3-8B, meta-llama/Meta-Llama-3-70B,
mistralai/Mixtral-8x7B-v0.1, Qwen/Qwen1.5-MoE-A2.7B, Qwen/Qwen3-30B-A3B), only the keys the
estimates read. The published parameter counts are those of the model cards (Qwen2.5: "Number of
Parameters: 1.54B / 7.61B"; Qwen1.5-MoE-A2.7B: 14.3B total, 2.7B activated; Qwen3-30B-A3B: 30.5B
total, 3.3B activated; Mixtral 8x7B: 46.7B total, 12.9B active, Mistral AI's announcement) and
the safetensors totals Hugging Face shows for the Llama 3 repositories (8.03B, 70.6B).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from preflight.memory import (
    GPU_OVERHEAD,
    Workload,
    activation_bytes,
    activation_values_per_token_layer,
    checkpoint_bytes,
    fitting_sizes,
    gpu_estimate,
    host_estimate,
    kv_cache_bytes,
    model_state_bytes,
    workload,
)
from preflight.modelinfo import (
    TINY_CONFIG,
    ModelFilesError,
    generic_architecture,
    parameter_count,
    read_model_folder,
)
from preflight.spec import Spec, resolve

QWEN25_1_5B = {"model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
               "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
               "tie_word_embeddings": True, "max_position_embeddings": 131072}
QWEN25_7B = {"model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
             "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
             "tie_word_embeddings": False, "max_position_embeddings": 131072}
LLAMA3_8B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
             "tie_word_embeddings": False, "max_position_embeddings": 8192}
LLAMA3_70B = {"model_type": "llama", "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
              "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256,
              "tie_word_embeddings": False, "max_position_embeddings": 8192}
MIXTRAL_8X7B = {"model_type": "mixtral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
                "tie_word_embeddings": False, "num_local_experts": 8, "num_experts_per_tok": 2,
                "max_position_embeddings": 32768}
QWEN15_MOE_A27B = {"model_type": "qwen2_moe", "hidden_size": 2048, "intermediate_size": 5632,
                   "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16,
                   "vocab_size": 151936, "tie_word_embeddings": False, "num_experts": 60,
                   "num_experts_per_tok": 4, "moe_intermediate_size": 1408,
                   "shared_expert_intermediate_size": 5632, "decoder_sparse_step": 1, "mlp_only_layers": [],
                   "max_position_embeddings": 8192}
QWEN3_30B_A3B = {"model_type": "qwen3_moe", "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 48,
                 "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 151936,
                 "tie_word_embeddings": False, "num_experts": 128, "num_experts_per_tok": 8,
                 "moe_intermediate_size": 768, "decoder_sparse_step": 1, "mlp_only_layers": [],
                 "max_position_embeddings": 40960}

# (config, published total, published active)
PUBLISHED = {
    "Qwen2.5-1.5B": (QWEN25_1_5B, 1.54e9, None),
    "Qwen2.5-7B": (QWEN25_7B, 7.61e9, None),
    "Llama-3-8B": (LLAMA3_8B, 8.03e9, None),
    "Llama-3-70B": (LLAMA3_70B, 70.6e9, None),
    "Mixtral-8x7B": (MIXTRAL_8X7B, 46.7e9, 12.9e9),
    "Qwen1.5-MoE-A2.7B": (QWEN15_MOE_A27B, 14.3e9, 2.7e9),
    "Qwen3-30B-A3B": (QWEN3_30B_A3B, 30.5e9, 3.3e9),
}


def arch_of(config: dict, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The Architecture read_model_folder makes of a config.json."""
    import json

    folder = tmp_path / str(config["model_type"])
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    facts = read_model_folder(folder)
    assert facts.arch is not None
    return facts.arch


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_parameter_count_matches_the_published_count(name: str, tmp_path: Path) -> None:
    config, total, active = PUBLISHED[name]
    count = parameter_count(arch_of(config, tmp_path))
    # the published figures are rounded to three significant digits (0.3 % at most)
    assert count.total == pytest.approx(total, rel=0.01), f"{name}: {count.total / 1e9:.4g}B"
    if active is not None:
        assert count.active == pytest.approx(active, rel=0.02), f"{name}: {count.active / 1e9:.4g}B active"
    else:
        assert count.active == count.total


def test_exact_counts_for_two_configs_worked_by_hand(tmp_path: Path) -> None:
    # Qwen2.5-1.5B, per layer: q and o 1536 x 1536, k and v 1536 x 256, q/k/v biases 1536 + 2 x 256,
    # MLP 3 x 1536 x 8960, two norms 2 x 1536; embeddings 151936 x 1536 (tied), final norm 1536.
    layer = 2 * 1536 * 1536 + 2 * 1536 * 256 + (1536 + 512) + 3 * 1536 * 8960 + 2 * 1536
    assert parameter_count(arch_of(QWEN25_1_5B, tmp_path)).total == 28 * layer + 151936 * 1536 + 1536
    # Llama-3-70B: 80 x (2 x 8192^2 + 2 x 8192 x 1024 + 3 x 8192 x 28672 + 2 x 8192) + 2 x 128256 x 8192 + 8192
    # = 70,553,706,496, the safetensors total of the repository.
    assert parameter_count(arch_of(LLAMA3_70B, tmp_path)).total == 70_553_706_496


def deepspeed_zero3_model_states(total_params: float, largest_layer_params: float, num_gpus_per_node: int,
                                 num_nodes: int, cpu_offload: bool = False,
                                 additional_buffer_factor: float = 1.5) -> tuple[float, float]:
    """DeepSpeed's estimate_zero3_model_states_mem_needs (deepspeed/runtime/zero/stage3.py), written
    out for the two cases compared here (zero_init=True): no offload, and parameters + optimizer
    offloaded to the CPU. Returns (cpu_mem per node, gpu_mem per GPU) in bytes."""
    total_gpus = num_nodes * num_gpus_per_node
    gpus_factor = 1 / num_nodes
    largest_layer_memory = 4 * largest_layer_params
    if cpu_offload:  # cpu_offload_params too
        gpu_mem = largest_layer_memory
        cpu_mem = total_params * 18 * gpus_factor * additional_buffer_factor
    else:
        gpu_mem = largest_layer_memory + int(18 * total_params / total_gpus)
        cpu_mem = largest_layer_params * 4 * num_gpus_per_node * additional_buffer_factor
    return cpu_mem, gpu_mem


# (config, published total params, GPUs per node, nodes)
ZERO3_CASES = {
    "Qwen2.5-1.5B on 8 GPUs": (QWEN25_1_5B, 1.54e9, 8, 1),
    "Qwen2.5-1.5B on 1 GPU": (QWEN25_1_5B, 1.54e9, 1, 1),
    "Qwen2.5-7B on 8 GPUs": (QWEN25_7B, 7.61e9, 8, 1),
    "Qwen2.5-7B on 32 GPUs": (QWEN25_7B, 7.61e9, 8, 4),
    "Llama-3-70B on 64 GPUs": (LLAMA3_70B, 70.6e9, 8, 8),
    "Llama-3-70B on 256 GPUs": (LLAMA3_70B, 70.6e9, 8, 32),
}


@pytest.mark.parametrize("case", list(ZERO3_CASES))
def test_model_state_estimate_within_10_percent_of_deepspeed_zero3(case: str, tmp_path: Path) -> None:
    config, published, per_node, nodes = ZERO3_CASES[case]
    arch = arch_of(config, tmp_path)
    count = parameter_count(arch)
    # DeepSpeed's largest layer is the largest module's own parameters: here the embedding, vocab x hidden.
    largest = config["vocab_size"] * config["hidden_size"]
    _, ds_gpu = deepspeed_zero3_model_states(published, largest, per_node, nodes)
    sharded, gathered = model_state_bytes(count.total, count.largest_layer, per_node * nodes, "bf16")
    assert sharded + gathered == pytest.approx(ds_gpu, rel=0.10), case
    # The offloaded case: the GPU keeps the gathered layer, the host the 18 B x P states x 1.5.
    ds_cpu, ds_gpu_off = deepspeed_zero3_model_states(published, largest, per_node, nodes, cpu_offload=True)
    sharded_off, gathered_off = model_state_bytes(count.total, count.largest_layer, per_node * nodes, "bf16",
                                                  offload=True)
    assert sharded_off == 0 and gathered_off == pytest.approx(ds_gpu_off, rel=0.10)
    work = Workload(world=per_node * nodes, ranks_per_node=per_node, nodes=nodes, dtype="bf16", seq_len=1,
                    train_tokens=1, rollout_seqs=1, offload=True)
    host = host_estimate(count, work, checkpoint=0.0, checkpoint_how="none")
    assert host.parts["offloaded_states"] == pytest.approx(ds_cpu, rel=0.10), case


def test_fp32_training_keeps_16_bytes_per_parameter_and_8_per_gathered_parameter() -> None:
    sharded, gathered = model_state_bytes(1e9, 1e8, 8, "fp32")
    assert sharded == 16e9 / 8 and gathered == 8e8


def test_kv_cache_formula_worked_by_hand() -> None:
    # Llama-3-8B in bf16: 2 (K, V) x 32 layers x 8 KV heads x 128 x 2 B = 131,072 B = 128 KiB per token,
    # so one 8,192-token sequence holds exactly 1 GiB.
    assert kv_cache_bytes(32, 8, 128, 2, 8192, 1) == 2**30
    assert kv_cache_bytes(32, 8, 128, 2, 8192, 16) == 16 * 2**30


def test_activation_values_per_token_and_layer(tmp_path: Path) -> None:
    arch = arch_of(LLAMA3_8B, tmp_path)
    # 4h + 2 q_dim + 2 kv_dim + 4 i = 16384 + 8192 + 2048 + 57344
    assert activation_values_per_token_layer(arch) == 83968
    moe = arch_of(MIXTRAL_8X7B, tmp_path)
    # a token passes through 2 experts of width 14336
    assert activation_values_per_token_layer(moe) == 4 * 4096 + 2 * 4096 + 2 * 1024 + 4 * 2 * 14336


def test_peak_is_states_plus_the_larger_of_training_and_rollout(tmp_path: Path) -> None:
    arch = arch_of(QWEN25_7B, tmp_path)
    count = parameter_count(arch)
    short = Workload(world=8, ranks_per_node=8, nodes=1, dtype="bf16", seq_len=1024, train_tokens=1024,
                     rollout_seqs=256)
    est = gpu_estimate(arch, count, short)
    fixed = est.parts["model_states"] + est.parts["gathered_layer"] + GPU_OVERHEAD
    assert est.parts["kv_cache"] > est.parts["activations"] + est.parts["logits"]
    assert est.total == pytest.approx(fixed + est.parts["kv_cache"])
    assert est.parts["kv_cache"] == kv_cache_bytes(28, 4, 128, 2, 1024, 256)
    # tensor parallelism: 256 x 4 sequences per rollout engine, one KV head per GPU
    tp4 = gpu_estimate(arch, count, Workload(**{**short.__dict__, "tp": 4}))
    assert tp4.parts["kv_cache"] == kv_cache_bytes(28, 1, 128, 2, 1024, 1024)
    long = Workload(world=8, ranks_per_node=8, nodes=1, dtype="bf16", seq_len=1024, train_tokens=64 * 1024,
                    rollout_seqs=1, reference=True)
    est = gpu_estimate(arch, count, long)
    assert est.parts["reference_policy"] == 4 * count.total / 8  # fp32, sharded over the 8 ranks
    train = est.parts["activations"] + est.parts["logits"]
    # the runner's fp32 log-softmax and the entropy's two temporaries: 12 B per vocabulary entry
    assert est.parts["logits"] == 12 * 152064 * 64 * 1024
    assert est.total == pytest.approx(est.parts["model_states"] + est.parts["gathered_layer"]
                                      + est.parts["reference_policy"] + GPU_OVERHEAD + train)


def test_checkpoint_is_12_bytes_per_parameter() -> None:
    assert checkpoint_bytes(70e9) == 840e9


def test_workload_from_a_spec_takes_the_share_of_the_batch_or_a_micro_batch() -> None:
    data = resolve({"run": {"name": "w"}, "hardware": {"nodes": 2},
                    "training": {"batch_size": 512, "max_prompt_tokens": 1000, "max_response_tokens": 3000}})
    w = workload(Spec(Path("w.yaml"), {}, data))
    assert (w.world, w.rollout_seqs, w.seq_len, w.train_tokens) == (16, 32, 4000, 32 * 4000)
    assert w.logit_tokens == 32 * 3000  # log-probs of the response tokens only
    assert "whole share" in w.how["train"] and not w.checkpointing
    # the micro-batch bounds the training pass, the generation chunk the sequences in flight; the
    # built-in runner has no sequence parallelism or CPU offload, so setting them counts for nothing
    data["training"].update(micro_batch_size=4, generation_batch_size=16, gradient_checkpointing=True)
    data["distributed"].update(sequence_parallel_size=2, tensor_parallel_size=2, cpu_offload=True)
    w = workload(Spec(Path("w.yaml"), {}, data))
    assert w.train_tokens == 4 * 4000 and w.logit_tokens == 4 * 3000 and w.rollout_seqs == 16
    assert (w.sp, w.tp, w.offload) == (1, 1, False)
    assert w.checkpointing and "activation checkpointing" in w.how["train"]
    assert "generation_batch_size: 16" in w.how["rollout"]
    # a framework's run has them: sequence parallelism splits its training pass
    framework = {**data, "trainer": {"framework": "verl", "config": {}}}
    w = workload(Spec(Path("w.yaml"), {}, framework))
    assert w.train_tokens == 4 * 4000 / 2 and w.logit_tokens == 4 * 3000 / 2 and (w.tp, w.offload) == (2, True)
    data["training"].update(micro_batch_size=64, generation_batch_size=64)  # more than the share: the share
    w = workload(Spec(Path("w.yaml"), {}, data))
    assert w.train_tokens == 32 * 4000 and w.rollout_seqs == 32


def test_activation_checkpointing_keeps_each_layers_input_and_one_layer(tmp_path: Path) -> None:
    arch = arch_of(LLAMA3_8B, tmp_path)
    # without: every layer keeps its 83,968 values per token; with: 32 layer inputs of 4,096 values
    # and one layer's 83,968 recomputed
    assert activation_bytes(arch, 1000, 2) == 1000 * 32 * 83968 * 2
    assert activation_bytes(arch, 1000, 2, checkpointing=True) == 1000 * (32 * 4096 + 83968) * 2


def test_the_fitting_sizes_are_the_largest_that_fit(tmp_path: Path) -> None:
    arch = arch_of(QWEN25_7B, tmp_path)
    count = parameter_count(arch)
    work = Workload(world=8, ranks_per_node=8, nodes=1, dtype="bf16", seq_len=4096, train_tokens=64 * 4096,
                    rollout_seqs=64, share=64, group=8, response=3072, logit_tokens=64 * 3072)
    budget = 72e9
    fit = fitting_sizes(arch, count, work, budget)
    assert fit.micro is not None and fit.generation is not None and fit.generation % 8 == 0
    assert 64 % fit.micro == 0 and 64 % fit.generation == 0

    def peak(micro: int, checkpointing: bool, generation: int) -> float:
        return gpu_estimate(arch, count, Workload(**{**work.__dict__, "train_tokens": micro * 4096,
                                                     "logit_tokens": micro * 3072, "checkpointing": checkpointing,
                                                     "rollout_seqs": generation})).total

    assert peak(fit.micro, fit.checkpointing, fit.generation) <= budget
    # without recomputation first (it costs a forward pass): the largest divisor of the share that fits
    assert not fit.checkpointing
    bigger = [d for d in (1, 2, 4, 8, 16, 32, 64) if d > fit.micro]
    assert bigger and all(peak(d, False, 8) > budget for d in bigger)
    assert peak(8, False, 2 * fit.generation) > budget or 2 * fit.generation > 64
    # longer sequences: not even one fits without recomputation; the largest that fits with it
    long = Workload(**{**work.__dict__, "seq_len": 16384, "response": 14000})
    fit = fitting_sizes(arch, count, long, budget)
    assert fit.checkpointing and fit.micro is not None
    # with no room left at all, nothing fits
    none = fitting_sizes(arch, count, work, 10e9)
    assert none.micro is None and none.generation is None


def test_generic_shape_matches_the_stated_size() -> None:
    for params in (0.5e9, 1e9, 8e9, 32e9, 70e9, 405e9):
        arch, how = generic_architecture(params)
        assert parameter_count(arch).total == pytest.approx(params, rel=0.08), how
        assert "assumed" in how


def test_tiny_facts_match_the_runner_tiny_model() -> None:
    pytest.importorskip("transformers")
    from preflight.modelinfo import tiny_facts
    from runner.model import build_tiny_model, build_tokenizer

    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer)
    assert len(tokenizer) == TINY_CONFIG["vocab_size"]
    facts = tiny_facts()
    assert facts.arch is not None
    assert parameter_count(facts.arch).total == sum(p.numel() for p in model.parameters())
    assert model.config.max_position_embeddings == TINY_CONFIG["max_position_embeddings"]


def test_context_window_with_rope_scaling(tmp_path: Path) -> None:
    import json

    def window(extra: dict) -> int:
        folder = tmp_path / f"m{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({**QWEN25_7B, **extra}), encoding="utf-8")
        facts = read_model_folder(folder)
        assert facts.context is not None
        return facts.context.tokens

    assert window({"max_position_embeddings": 32768}) == 32768
    # Qwen2.5's documented YaRN setting: factor 4 over 32,768 native positions
    yarn = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    assert window({"max_position_embeddings": 32768, "rope_scaling": yarn}) == 131072
    # Llama 3.1's llama3 scaling is already in max_position_embeddings
    llama3 = {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}
    assert window({"max_position_embeddings": 131072, "rope_scaling": llama3}) == 131072


@pytest.mark.parametrize("text, says", [
    ("{not json", "not valid JSON (line 1"),
    ("[1, 2]", "a JSON list, not an object"),
    ('{"hidden_size": "4096", "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10}',
     'hidden_size is "4096", not an integer'),
    ('{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, '
     '"intermediate_size": 128, "num_experts": "8"}', 'num_experts is "8", not an integer'),
    ('{"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, '
     '"intermediate_size": 128, "num_experts": 8, "mlp_only_layers": "0,1"}', "mlp_only_layers is"),
])
def test_a_broken_config_names_the_file_and_the_fix(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / "config.json").write_text(text, encoding="utf-8")
    with pytest.raises(ModelFilesError) as err:
        read_model_folder(tmp_path)
    assert err.value.file == tmp_path / "config.json"
    assert says in err.value.problem
    assert "restore config.json" in err.value.fix
