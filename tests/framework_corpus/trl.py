"""TRL GRPO misconfigurations reconstructed from public TRL and open-r1 threads.

Each source is what the thread's reporter ran, as far as the thread says; values the thread does
not give are TRL's defaults or the published recipes' (said in the case). ``files`` writes what the
source refers to (a GRPOConfig YAML, an accelerate config, a local model folder, a reward module).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import CorpusCase

QWEN25_7B_CONFIG = {  # Qwen/Qwen2.5-7B-Instruct config.json (the fields the checks read)
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
    "max_position_embeddings": 32768, "rope_theta": 1000000.0, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "hidden_act": "silu", "rms_norm_eps": 1e-06,
}


def _write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _qwen_folder(root: Path) -> None:
    folder = root / "models" / "Qwen2.5-7B-Instruct"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(QWEN25_7B_CONFIG), encoding="utf-8")
    (folder / "tokenizer.json").write_text("{}", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{% for m in messages %}{{ m.content }}"
                                                                               "{% endfor %}"}), encoding="utf-8")


OPEN_R1_249_CONFIG = """model_name_or_path: Qwen/Qwen2.5-1.5B-Instruct
dataset_name: AI-MO/NuminaMath-TIR
bf16: true
use_vllm: true
vllm_mode: server
per_device_train_batch_size: 1
gradient_accumulation_steps: 1
num_generations: 8
reward_funcs:
- accuracy
- format
output_dir: data/Qwen2.5-1.5B-Open-R1-GRPO
"""

OPEN_R1_236_CONFIG = OPEN_R1_249_CONFIG

REWARD_MODULE_4939 = '''def reward_len(prompts, completions):
    """Documented signature: (prompts, completions)."""
    return [-abs(20 - len(c)) for c in completions]
'''

CASES = [
    CorpusCase(
        id="trl-2858-global-batch", framework="trl", thread="huggingface/trl#2858",
        symptom="ValueError: The global train batch size (1 x 1) must be evenly divisible by the number of "
                "generations per prompt (8)",
        source_name="grpo.yaml",
        source="model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct\ndataset_name: trl-lib/tldr\nreward_funcs:\n"
               "- accuracy_reward\nper_device_train_batch_size: 1\ngradient_accumulation_steps: 1\n"
               "num_generations: 8\nnum_processes: 1\n",
        blocked_by="trainer.trl.generation_batch"),
    CorpusCase(
        id="open-r1-249-seven-processes", framework="trl", thread="huggingface/open-r1#249",
        symptom="ValueError: The global train batch size (7 x 1) must be evenly divisible by the number of "
                "generations per prompt (8)",
        source_name="run.sh",
        source="CUDA_VISIBLE_DEVICES=7 trl vllm-serve --model Qwen/Qwen2.5-1.5B-Instruct &\n"
               "CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6 ACCELERATE_LOG_LEVEL=info accelerate launch --num_processes 7 \\\n"
               "    src/open_r1/grpo.py --config grpo.yaml\n",
        files=lambda root: _write(root, "grpo.yaml", OPEN_R1_249_CONFIG),
        blocked_by="trainer.trl.generation_batch"),
    CorpusCase(
        id="open-r1-236-gpu-for-vllm", framework="trl", thread="huggingface/open-r1#236",
        symptom="with 4 GPUs and one given to vLLM, 3 training processes x 1 is not divisible by 8 generations",
        source_name="run.sh",
        source="CUDA_VISIBLE_DEVICES=3 trl vllm-serve --model Qwen/Qwen2.5-1.5B-Instruct &\n"
               "CUDA_VISIBLE_DEVICES=0,1,2 accelerate launch --num_processes 3 src/open_r1/grpo.py --config grpo.yaml\n",
        files=lambda root: _write(root, "grpo.yaml", OPEN_R1_236_CONFIG),
        blocked_by="trainer.trl.generation_batch"),
    CorpusCase(
        id="trl-3842-auto-find-batch-size", framework="trl", thread="huggingface/trl#3842 (fixed by PR #6411)",
        symptom="shape '[-1, 4]' is invalid for input of size 2, after auto_find_batch_size halved the batch",
        source_name="grpo.yaml",
        source="model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct\ndataset_name: trl-lib/tldr\nreward_funcs:\n"
               "- accuracy_reward\nper_device_train_batch_size: 8\nnum_generations: 4\nauto_find_batch_size: true\n"
               "num_processes: 1\n",
        blocked_by="trainer.trl.auto_find_batch_size"),
    CorpusCase(
        id="trl-2688-vllm-memory", framework="trl", thread="huggingface/trl#2688 (see #2927)",
        symptom="CUDA out of memory at vLLM LLM(...) init on 8xH100: vllm_gpu_memory_utilization 0.9 on a "
                "training GPU",
        source_name="grpo.yaml",
        source="model_name_or_path: Qwen/Qwen2.5-7B-Instruct\ndataset_name: trl-lib/tldr\nreward_funcs:\n"
               "- accuracy_reward\nuse_vllm: true\nvllm_mode: colocate\nvllm_gpu_memory_utilization: 0.9\n"
               "per_device_train_batch_size: 8\nnum_generations: 8\nnum_processes: 8\n",
        blocked_by="trainer.trl.memory"),
    CorpusCase(
        id="trl-3199-one-generation", framework="trl", thread="huggingface/trl#3199",
        symptom="ValueError: The global train batch size (1 x 4) must be evenly divisible by the number of "
                "generations per prompt (1) ... valid values ... [2, 4]",
        source_name="grpo.yaml",
        source="model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct\ndataset_name: trl-lib/tldr\nreward_funcs:\n"
               "- accuracy_reward\nper_device_train_batch_size: 4\nnum_generations: 1\nnum_processes: 1\n",
        blocked_by="trainer.trl.num_generations"),
    CorpusCase(
        id="trl-3566-eval-batch-one-gpu", framework="trl", thread="huggingface/trl#3566",
        symptom="per_device_eval_batch_size can't be 1 on 1 GPU: the eval batch must be divisible by the "
                "number of generations",
        source_name="grpo.yaml",
        source="model_name_or_path: Qwen/Qwen2.5-0.5B-Instruct\ndataset_name: trl-lib/tldr\nreward_funcs:\n"
               "- accuracy_reward\nper_device_train_batch_size: 8\nnum_generations: 8\neval_strategy: steps\n"
               "eval_steps: 50\nper_device_eval_batch_size: 1\nnum_processes: 1\n",
        blocked_by="trainer.trl.eval_batch"),
    CorpusCase(
        id="trl-4939-reward-kwargs", framework="trl", thread="huggingface/trl#4939",
        symptom="TypeError: reward_len() got an unexpected keyword argument 'completion_ids'",
        source_name="run.sh",
        source="trl grpo --model_name_or_path Qwen/Qwen2.5-0.5B-Instruct --dataset_name trl-lib/tldr \\\n"
               "  --reward_funcs my_rewards.reward_len --num_processes 1\n",
        files=lambda root: _write(root, "my_rewards.py", REWARD_MODULE_4939),
        blocked_by="trainer.trl.rewards"),
    CorpusCase(
        id="open-r1-645-context", framework="trl", thread="huggingface/open-r1#645",
        symptom="Input prompt (48173 tokens) is too long and exceeds limit of 32768 (Qwen2.5-7B-Instruct)",
        source_name="grpo.yaml",
        source="model_name_or_path: models/Qwen2.5-7B-Instruct\ndataset_name: trl-lib/DeepMath-103K\n"
               "reward_funcs:\n- accuracy_reward\nuse_vllm: true\nvllm_mode: colocate\n"
               "max_completion_length: 40960\nper_device_train_batch_size: 8\nnum_generations: 8\n"
               "num_processes: 8\n",
        files=_qwen_folder,
        blocked_by="config.model.context"),
]

TRL_3180_CONFIG = """model_name_or_path: Qwen/Qwen2.5-7B-Instruct
dataset_name: trl-lib/tldr
reward_funcs:
- think_format_reward
use_vllm: true
vllm_mode: server
max_prompt_length: 4000
max_completion_length: 3500
per_device_train_batch_size: 8
num_generations: 8
"""

CASES += [
    CorpusCase(
        id="trl-3180-server-max-model-len", framework="trl", thread="huggingface/trl#3180",
        symptom="Input prompt (8128 tokens) is too long and exceeds limit of 6000, then IndexError "
                "(max_prompt_length=4000, max_completion_length=3500, trl vllm-serve --max_model_len 6000)",
        source_name="run.sh",
        source="CUDA_VISIBLE_DEVICES=0,1,2,3 trl vllm-serve --model Qwen/Qwen2.5-7B-Instruct --max_model_len 6000 &\n"
               "CUDA_VISIBLE_DEVICES=4,5,6,7 trl grpo --config grpo.yaml --num_processes 4\n",
        files=lambda root: _write(root, "grpo.yaml", TRL_3180_CONFIG),
        blocked_by="trainer.trl.lengths",
        # the thread ran TRL 0.16, whose GRPOConfig still had max_prompt_length: read against 0.19.1's
        extra={"version": "0.19.1"}),
]
