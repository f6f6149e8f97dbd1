"""verl misconfigurations reconstructed from public threads, each blocked at --level static.

Each launch script is written the way verl's own examples are (examples/grpo_trainer/*.sh) with the
values the thread reports; what a thread leaves out is a small GSM8K run so that only the reported
mistake is wrong. Data files are written in verl's format (parquet: prompt as chat messages,
data_source, reward_model.ground_truth) under the case's directory, which is $HOME for the import.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import CorpusCase

GSM8K = "openai/gsm8k"


def write_verl_parquet(path: Path, rows: int, data_source: Any = GSM8K, *, raw: bool = False, start: int = 0) -> None:
    """A verl-format parquet file of ``rows`` arithmetic prompts, as verl's gsm8k preprocessing
    writes them (examples/data_preprocess/gsm8k.py): data_source, prompt (chat messages), ability,
    reward_model {style, ground_truth}, extra_info {split, index}. ``raw``: the dataset's own
    columns (question, answer) instead, as downloaded before verl's preprocessing. ``start``: the
    first question's number, so that a test file does not repeat the train file's questions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = []
    for i in range(start, start + rows):
        question = f"Natalia sold {i + 2} clips in April and twice as many in May. How many in total?"
        answer = str(3 * (i + 2))
        if raw:
            out.append({"question": question, "answer": f"{i + 2} + {2 * (i + 2)} = {answer}\n#### {answer}"})
            continue
        out.append({
            "data_source": data_source,
            "prompt": [{"role": "user", "content": question}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": answer},
            "extra_info": {"split": "train", "index": i},
        })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(out), path)


def gsm8k_files(train_rows: int = 7473, test_rows: int = 1319, **kwargs: Any) -> Callable[[Path], None]:
    """$HOME/data/gsm8k/{train,test}.parquet as verl's gsm8k preprocessing writes them."""

    def write(root: Path) -> None:
        write_verl_parquet(root / "data/gsm8k/train.parquet", train_rows, **kwargs)
        write_verl_parquet(root / "data/gsm8k/test.parquet", test_rows, start=train_rows, **kwargs)

    return write


def model_folder(name: str, config: dict[str, Any]) -> Callable[[Path], None]:
    """A local model folder ($HOME/models/NAME) with the config.json and chat template it ships."""

    def write(root: Path) -> None:
        folder = root / "models" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}), encoding="utf-8")
        (folder / "tokenizer.json").write_text("{}", encoding="utf-8")

    return write


def both(*writers: Callable[[Path], None]) -> Callable[[Path], None]:
    def write(root: Path) -> None:
        for w in writers:
            w(root)

    return write


BASE: dict[str, str] = {  # a small GSM8K GRPO run in the shape of examples/grpo_trainer/run_qwen2-7b.sh
    "algorithm.adv_estimator": "grpo",
    "data.train_files": "$HOME/data/gsm8k/train.parquet",
    "data.val_files": "$HOME/data/gsm8k/test.parquet",
    "data.train_batch_size": "256",
    "data.max_prompt_length": "512",
    "data.max_response_length": "1024",
    "data.filter_overlong_prompts": "True",
    "data.truncation": "'error'",
    "actor_rollout_ref.model.path": "Qwen/Qwen2.5-0.5B-Instruct",
    "actor_rollout_ref.actor.optim.lr": "1e-6",
    "actor_rollout_ref.model.use_remove_padding": "True",
    "actor_rollout_ref.actor.ppo_mini_batch_size": "64",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": "8",
    "actor_rollout_ref.actor.use_kl_loss": "True",
    "actor_rollout_ref.actor.kl_loss_coef": "0.001",
    "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
    "actor_rollout_ref.model.enable_gradient_checkpointing": "True",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": "8",
    "actor_rollout_ref.rollout.tensor_model_parallel_size": "1",
    "actor_rollout_ref.rollout.name": "vllm",
    "actor_rollout_ref.rollout.gpu_memory_utilization": "0.6",
    "actor_rollout_ref.rollout.n": "5",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": "8",
    "algorithm.use_kl_in_reward": "False",
    "trainer.logger": "['console']",
    "trainer.project_name": "'verl_grpo_example_gsm8k'",
    "trainer.experiment_name": "'qwen2_5_0_5b'",
    "trainer.n_gpus_per_node": "8",
    "trainer.nnodes": "1",
    "trainer.save_freq": "20",
    "trainer.max_actor_ckpt_to_keep": "3",
    "trainer.test_freq": "5",
    "trainer.total_epochs": "2",
}


def script(**changes: str | None) -> str:
    """A verl launch script: BASE with ``changes`` (dots written as __; None removes the key)."""
    values = dict(BASE)
    for key, value in changes.items():
        dotted = key.replace("__", ".")
        if value is None:
            values.pop(dotted, None)
        else:
            values[dotted] = value
    lines = ["set -x", "", "python3 -m verl.trainer.main_ppo \\"]
    lines += [f"    {k}={v} \\" for k, v in values.items()]
    lines[-1] = lines[-1].removesuffix(" \\") + " $@"
    return "\n".join(lines) + "\n"


def _resume_at(step: int) -> Callable[[Path], None]:
    def write(root: Path) -> None:
        folder = root / "checkpoints" / "verl_grpo_example_gsm8k" / "qwen2_5_0_5b"
        (folder / f"global_step_{step}" / "actor").mkdir(parents=True, exist_ok=True)
        (folder / "latest_checkpointed_iteration.txt").write_text(str(step), encoding="utf-8")

    return write


QWEN25_14B = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 5120,
              "intermediate_size": 13824, "num_hidden_layers": 48, "num_attention_heads": 40,
              "num_key_value_heads": 8, "vocab_size": 152064, "max_position_embeddings": 32768,
              "tie_word_embeddings": False, "torch_dtype": "bfloat16"}

CASES: list[CorpusCase] = [
    CorpusCase(
        "verl-405-micro-above-mini", "verl", "verl-project/verl#405 (fixed by PRs #382, #833)",
        "NaN loss: ppo_mini_batch_size < ppo_micro_batch_size_per_gpu made gradient accumulation 0",
        "run.sh", script(actor_rollout_ref__actor__ppo_mini_batch_size="16",
                         actor_rollout_ref__actor__ppo_micro_batch_size_per_gpu="32"),
        "trainer.verl.batch", gsm8k_files(),
        extra={"surfaces": "silent NaN loss from the first update (thread)"}),
    CorpusCase(
        "easyr1-44-uneven-chunk", "verl", "hiyouga/EasyR1#44",
        "AssertionError: only support equal chunk. Got size of DataProto 512 and chunk 6",
        "run.sh", script(data__train_batch_size="512", actor_rollout_ref__actor__ppo_mini_batch_size="128",
                         trainer__n_gpus_per_node="6"),
        "trainer.verl.batch", gsm8k_files(),
        extra={"surfaces": "AssertionError after a few steps (thread)"}),
    CorpusCase(
        "verl-1524-mini-above-train", "verl", "verl-project/verl#1524 (and PR #559)",
        "confusion over batch sizes: a mini-batch larger than the batch it is cut from",
        "run.sh", script(data__train_batch_size="32", actor_rollout_ref__actor__ppo_mini_batch_size="64"),
        "trainer.verl.batch", gsm8k_files(),
        extra={"surfaces": "ActorConfig.validate in validate_config, after ray.init"}),
    CorpusCase(
        "verl-1226-ulysses-heads", "verl", "verl-project/verl#1226 (rule from PR #674)",
        "Qwen2.5-14B (40 heads, 8 KV heads) with a sequence-parallel size its heads do not split over hangs",
        "run.sh", script(actor_rollout_ref__model__path="$HOME/models/Qwen2.5-14B-Instruct",
                         actor_rollout_ref__actor__ulysses_sequence_parallel_size="16",
                         trainer__nnodes="2", trainer__n_gpus_per_node="8",
                         data__train_batch_size="512", actor_rollout_ref__actor__ppo_mini_batch_size="256",
                         actor_rollout_ref__actor__ppo_micro_batch_size_per_gpu="4",
                         actor_rollout_ref__rollout__tensor_model_parallel_size="4"),
        "config.model.heads", both(gsm8k_files(), model_folder("Qwen2.5-14B-Instruct", QWEN25_14B)),
        extra={"surfaces": "hang during training (PR #674)"}),
    CorpusCase(
        "verl-153-sp-without-remove-padding", "verl", "verl-project/verl PR #153",
        "OOM: ulysses sequence parallelism is silently off without use_remove_padding",
        "run.sh", script(actor_rollout_ref__actor__ulysses_sequence_parallel_size="2",
                         actor_rollout_ref__model__use_remove_padding="False"),
        "trainer.verl.parallel", gsm8k_files(),
        extra={"surfaces": "OOM during training: sequence parallelism silently off (PR #153)"}),
    CorpusCase(
        "verl-673-prompt-over-max-model-len", "verl", "verl-project/verl#673 (same in hiyouga/EasyR1#207)",
        "vLLM: Input prompt (6768 tokens) is too long and exceeds limit of 4096",
        "run.sh", script(data__max_prompt_length="6144", data__max_response_length="1024",
                         actor_rollout_ref__rollout__max_model_len="4096"),
        "trainer.verl.lengths", gsm8k_files(),
        extra={"surfaces": "vLLM error during rollout, when a long prompt is sampled (thread)"}),
    CorpusCase(
        "verl-3450-empty-data-source", "verl", "verl-project/verl#3450 (also areal-project/AReaL#105)",
        "NotImplementedError: Reward function is not implemented for data_source=",
        "run.sh", script(), "trainer.verl.data", gsm8k_files(data_source=""),
        extra={"surfaces": "NotImplementedError at the first reward call, after the first rollout (thread)"}),
    CorpusCase(
        "verl-5558-data-source-is-a-path", "verl", "verl-project/verl#5558 (fix PR #6156)",
        "NotImplementedError for a data_source overwritten with the local dataset path, in the first validation",
        "run.sh", script(), "trainer.verl.data", gsm8k_files(data_source="/data/gsm8k/main"),
        extra={"surfaces": "NotImplementedError in the validation before step 1, after model load and rollout (thread)"}),
    CorpusCase(
        "verl-758-raw-gsm8k-parquet", "verl", "verl-project/verl#758",
        "KeyError: 'reward_model' on the raw GSM8K parquet with data.prompt_key=question",
        "run.sh", script(data__prompt_key="question", trainer__n_gpus_per_node="1",
                         custom_reward_function__path="$HOME/gsm8k_reward.py"),
        "trainer.verl.data", gsm8k_files(raw=True),
        extra={"surfaces": "KeyError at the first reward call, after the first rollout (thread)"}),
    CorpusCase(
        "trl-2688-vllm-fraction-on-training-gpus", "verl",
        "huggingface/trl#2688 (the same vLLM fraction on verl's hybrid engine; hiyouga/EasyR1 PR #1)",
        "CUDA OOM at vLLM init: the engine reserved 0.9 of a GPU that also holds the training states",
        "run.sh", script(actor_rollout_ref__model__path="Qwen/Qwen2.5-7B-Instruct",
                         actor_rollout_ref__rollout__gpu_memory_utilization="0.9",
                         actor_rollout_ref__rollout__tensor_model_parallel_size="2"),
        "trainer.verl.rollout_memory", gsm8k_files(),
        extra={"surfaces": "CUDA OOM at vLLM init on the GPUs (thread)"}),
    CorpusCase(
        "verl-5725-resume-at-epoch-boundary", "verl", "verl-project/verl PR #5725",
        "the resumed job exits 0 after 0 new steps; progress stays at 60/120",
        "run.sh", script(data__train_batch_size="128", actor_rollout_ref__actor__ppo_mini_batch_size="32",
                         actor_rollout_ref__actor__ppo_micro_batch_size_per_gpu="4", trainer__save_freq="30"),
        "trainer.verl.resume", both(gsm8k_files(train_rows=7680), _resume_at(60)),
        extra={"surfaces": "exit 0 after 0 new steps, silently, at resume (PR #5725)"}),
]
