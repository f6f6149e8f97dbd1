"""OpenRLHF misconfigurations reconstructed from public OpenRLHF threads.

Each script is the thread's command where the thread shows it; flags the thread does not give are
those of OpenRLHF's published GRPO hybrid-engine example (said in the case). Scripts are read
against the built-in OpenRLHF 0.8.11 table unless OpenRLHF is installed.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import CorpusCase

LLAMA32_1B_CONFIG = {  # meta-llama/Llama-3.2-1B config.json (the base model: no chat template)
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
    "vocab_size": 128256, "max_position_embeddings": 131072, "tie_word_embeddings": True,
    "rope_theta": 500000.0, "torch_dtype": "bfloat16", "hidden_act": "silu", "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
}


def _llama_base(root: Path) -> None:
    folder = root / "models" / "Llama-3.2-1B"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(LLAMA32_1B_CONFIG), encoding="utf-8")
    (folder / "tokenizer.json").write_text("{}", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|begin_of_text|>"}), encoding="utf-8")


def _script(flags: str) -> str:
    return ("ray job submit --address=\"http://127.0.0.1:8265\" \\\n   -- python3 -m openrlhf.cli.train_ppo_ray \\\n"
            + " \\\n".join("   " + line for line in flags.strip().splitlines()) + "\n")


COMMON = """--pretrain OpenRLHF/Llama-3-8b-sft-mixture
--remote_rm_url /openrlhf/examples/python/reward_func.py
--prompt_data OpenRLHF/prompt-collection-v0.1
--input_key context_messages
--apply_chat_template
--prompt_max_len 1024
--generate_max_len 1024
--max_samples 20000
--zero_stage 3
--bf16
--actor_learning_rate 5e-7
--gradient_checkpointing
--advantage_estimator group_norm"""

CASES = [
    CorpusCase(
        id="openrlhf-346-train-batch", framework="openrlhf", thread="OpenRLHF/OpenRLHF#346",
        symptom="AssertionError: Check batch related parameters. train_batch_size is not equal to "
                "micro_batch_per_gpu * gradient_acc_step * world_size 256 != 2 * 18 * 7",
        source_name="train.sh",
        source=_script(COMMON + """
--actor_num_nodes 1
--actor_num_gpus_per_node 7
--ref_num_nodes 1
--ref_num_gpus_per_node 7
--vllm_num_engines 7
--vllm_tensor_parallel_size 1
--colocate_all_models
--vllm_enable_sleep
--micro_train_batch_size 2
--train_batch_size 256
--micro_rollout_batch_size 16
--rollout_batch_size 32
--n_samples_per_prompt 8"""),
        blocked_by="trainer.openrlhf.train_batch"),
    CorpusCase(
        id="openrlhf-728-placement-bundles", framework="openrlhf", thread="OpenRLHF/OpenRLHF#728",
        symptom="ValueError: placement group bundle index 6 is invalid. Valid placement group indexes: 0-4",
        source_name="train.sh",
        source=_script(COMMON + """
--actor_num_nodes 1
--actor_num_gpus_per_node 5
--ref_num_nodes 1
--ref_num_gpus_per_node 5
--vllm_num_engines 7
--vllm_tensor_parallel_size 1
--colocate_all_models
--vllm_enable_sleep
--micro_train_batch_size 4
--train_batch_size 120
--micro_rollout_batch_size 16
--rollout_batch_size 120
--n_samples_per_prompt 8"""),
        blocked_by="trainer.openrlhf.colocation"),
    CorpusCase(
        id="openrlhf-523-no-chat-template", framework="openrlhf", thread="OpenRLHF/OpenRLHF#523",
        symptom="ValueError: Cannot use chat template functions because tokenizer.chat_template is not set "
                "(--apply_chat_template with Llama-3.2-1B, a base model)",
        source_name="train.sh",
        source=_script(COMMON.replace("OpenRLHF/Llama-3-8b-sft-mixture", "models/Llama-3.2-1B") + """
--actor_num_nodes 1
--actor_num_gpus_per_node 8
--ref_num_nodes 1
--ref_num_gpus_per_node 8
--vllm_num_engines 4
--vllm_tensor_parallel_size 2
--colocate_all_models
--vllm_enable_sleep
--micro_train_batch_size 8
--train_batch_size 128
--micro_rollout_batch_size 16
--rollout_batch_size 128
--n_samples_per_prompt 8"""),
        files=_llama_base,
        blocked_by="trainer.openrlhf.chat_template"),
    CorpusCase(
        id="openrlhf-792-colocated-vllm-memory", framework="openrlhf", thread="OpenRLHF/OpenRLHF#792",
        symptom="colocate_all_models 'very easily exceeds GPU memory' (32B on 8 GPUs in the thread); vLLM keeps "
                "its share while the actor trains",
        source_name="train.sh",
        source=_script(COMMON.replace("OpenRLHF/Llama-3-8b-sft-mixture", "Qwen/Qwen2.5-32B-Instruct") + """
--actor_num_nodes 1
--actor_num_gpus_per_node 8
--ref_num_nodes 1
--ref_num_gpus_per_node 8
--vllm_num_engines 2
--vllm_tensor_parallel_size 4
--colocate_all_models
--vllm_gpu_memory_utilization 0.6
--micro_train_batch_size 2
--train_batch_size 128
--micro_rollout_batch_size 16
--rollout_batch_size 128
--n_samples_per_prompt 8"""),
        blocked_by="trainer.openrlhf.memory"),
    CorpusCase(
        id="openrlhf-449-packing-without-vllm", framework="openrlhf", thread="OpenRLHF/OpenRLHF#449",
        symptom="packing_samples for PPO with Ray does not support running without vLLM "
                "(AssertionError: Only support `--packing_samples` with vLLM)",
        source_name="train.sh",
        source=_script(COMMON + """
--actor_num_nodes 1
--actor_num_gpus_per_node 8
--ref_num_nodes 1
--ref_num_gpus_per_node 8
--colocate_actor_ref
--packing_samples
--micro_train_batch_size 8
--train_batch_size 128
--micro_rollout_batch_size 16
--rollout_batch_size 128
--n_samples_per_prompt 8"""),
        blocked_by="trainer.openrlhf.colocation"),
    CorpusCase(
        id="openrlhf-example-group-norm-one-sample", framework="openrlhf",
        thread="OpenRLHF/OpenRLHF examples/scripts/train_grpo_ray_hybrid_engine.sh @ 00ef17c9 (fixed by dda5a145)",
        symptom="AssertionError: group_norm requires n_samples_per_prompt > 1 (train_ppo_ray.py, after parsing)",
        source_name="train.sh",
        source=_script(COMMON + """
--actor_num_nodes 1
--actor_num_gpus_per_node 8
--ref_num_nodes 1
--ref_num_gpus_per_node 8
--vllm_num_engines 2
--vllm_tensor_parallel_size 4
--colocate_all_models
--vllm_enable_sleep
--micro_train_batch_size 8
--train_batch_size 128
--micro_rollout_batch_size 16
--rollout_batch_size 1024
--n_samples_per_prompt 1"""),
        blocked_by="trainer.openrlhf.rollout_batch"),
]

# Written for OpenRLHF 0.6.0, whose train_ppo_ray.py still made these asserts (the case's version).
OLD = {"version": "0.6.0"}

CASES += [
    CorpusCase(
        id="openrlhf-441-zero3-without-vllm", framework="openrlhf", thread="OpenRLHF/OpenRLHF#441",
        symptom="AssertionError: ZeRO-3 is only supported when vLLM enabled (train_ppo_ray.py _validate_args)",
        source_name="train.sh",
        source=_script(COMMON.replace("--apply_chat_template\n", "") + """
--actor_num_nodes 1
--actor_num_gpus_per_node 8
--ref_num_nodes 1
--ref_num_gpus_per_node 8
--colocate_actor_ref
--micro_train_batch_size 8
--train_batch_size 128
--micro_rollout_batch_size 16
--rollout_batch_size 128
--n_samples_per_prompt 8"""),
        blocked_by="trainer.openrlhf.colocation", extra=OLD),
    CorpusCase(
        id="openrlhf-760-engines-divide-actor", framework="openrlhf", thread="OpenRLHF/OpenRLHF#760",
        symptom="assert actor_world_size % args.vllm_num_engines == 0 (train_ppo_ray.py)",
        source_name="train.sh",
        source=_script(COMMON + """
--actor_num_nodes 1
--actor_num_gpus_per_node 8
--ref_num_nodes 1
--ref_num_gpus_per_node 8
--colocate_actor_ref
--vllm_num_engines 3
--vllm_tensor_parallel_size 1
--micro_train_batch_size 8
--train_batch_size 128
--micro_rollout_batch_size 16
--rollout_batch_size 128
--n_samples_per_prompt 8"""),
        blocked_by="trainer.openrlhf.colocation", extra=OLD),
]
