"""How much does reading a local model folder add to `preflight check --level static`?

The same run spec is checked twice per round, alternately as subprocesses: once with
model.name_or_path a local Hugging Face folder (config.json of Qwen2.5-7B, a tokenizer_config.json
the size of Llama 3's, about 50 KB with 256 added tokens and a chat template, and a tokenizer.json
placeholder: the checks read the first two and only look for the third), and once with a hub id that
is not on disk (the model checks skip, the memory estimates assume a shape): the static check as it
runs without a model folder. Both run from an empty temporary directory with a private bytecode
cache warmed by an untimed round.

    .venv/bin/python bench/bench_static_model.py [--rounds 9] [--baseline-tree ../main]

Each command is `python -m preflight` with PYTHONPATH set to the checkout it measures: this one,
and with --baseline-tree another checkout (say, the branch before this change) on the spec without a
model folder, as a third column.

Goal: the check with the local folder under 0.3 s median wall. Exit codes: 0 measured (whether or
not the goal is met), 1 a command failed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WALL_GOAL_S = 0.3
QWEN25_7B = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
             "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
             "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False,
             "max_position_embeddings": 32768, "rope_theta": 1000000.0, "torch_dtype": "bfloat16"}
SPEC = {
    "run": {"name": "bench"},
    "model": {"params_b": 7.62},
    "hardware": {"nodes": 4},
    "training": {"batch_size": 512, "group_size": 16, "max_prompt_tokens": 512, "max_response_tokens": 1024},
    "storage": {"checkpoint_dir": "ckpt"},
}


REPO = Path(__file__).resolve().parent.parent


def write_model(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(QWEN25_7B, indent=2), encoding="utf-8")
    added = {str(128000 + i): {"content": f"<|reserved_special_token_{i}|>", "lstrip": False, "normalized": False,
                               "rstrip": False, "single_word": False, "special": True} for i in range(256)}
    template = ("{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
                " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
                "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
    tok = {"added_tokens_decoder": added, "bos_token": "<|begin_of_text|>", "chat_template": template,
           "clean_up_tokenization_spaces": True, "eos_token": "<|eot_id|>", "model_max_length": 131072,
           "tokenizer_class": "PreTrainedTokenizerFast"}
    (folder / "tokenizer_config.json").write_text(json.dumps(tok, indent=2), encoding="utf-8")
    (folder / "tokenizer.json").write_text("{}", encoding="utf-8")


def write_spec(path: Path, name_or_path: str) -> None:
    spec = {**SPEC, "model": {**SPEC["model"], "name_or_path": name_or_path}}
    path.write_text(json.dumps(spec, indent=1), encoding="utf-8")


# config.model.files says whether the folder was read: it must be, or the bench times nothing.
WANT = {"local model folder": "pass", "no model folder": "skip",
        "baseline tree, no folder": "missing"}  # a checkout from before these checks has none


def files_status(stdout: str) -> str:
    try:
        results = json.loads(stdout)["results"]
    except (ValueError, KeyError):
        return "no report"
    return next((r["status"] for r in results if r["id"] == "config.model.files"), "missing")


def run_once(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          check=False)
    return time.perf_counter() - start, proc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9, help="timed runs of each (default 9)")
    ap.add_argument("--baseline-tree", type=Path, help="another checkout to time on the spec without a model folder")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-static-model-") as tmp:
        cwd = Path(tmp)
        write_model(cwd / "qwen2.5-7b")
        write_spec(cwd / "local.yaml", str(cwd / "qwen2.5-7b"))
        write_spec(cwd / "hub.yaml", "Qwen/Qwen2.5-7B")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(cwd / "pycache")
        env["NO_COLOR"] = "1"
        check = [sys.executable, "-m", "preflight", "check", "--level", "static", "--no-attest", "--format", "json"]
        commands = {"local model folder": (check + [str(cwd / "local.yaml")], REPO),
                    "no model folder": (check + [str(cwd / "hub.yaml")], REPO)}
        if args.baseline_tree:
            commands["baseline tree, no folder"] = (check + [str(cwd / "hub.yaml")], args.baseline_tree.resolve())
        times: dict[str, list[float]] = {name: [] for name in commands}
        for n in range(1 + args.rounds):
            for name, (cmd, tree) in commands.items():
                wall, proc = run_once(cmd, cwd, {**env, "PYTHONPATH": str(tree)})
                if proc.returncode not in (0, 1) or files_status(proc.stdout) != WANT[name]:
                    print(f"error: {name} exited {proc.returncode} ({files_status(proc.stdout)}): "
                          f"{' '.join(cmd)} in {tree}\n{proc.stderr.strip()}", file=sys.stderr)
                    return 1
                if n:
                    times[name].append(wall)
    print(f"{args.rounds} rounds, alternating, 1 warm-up; private bytecode cache; {os.cpu_count()} CPUs")
    if args.baseline_tree:
        print(f"baseline tree: {args.baseline_tree}")
    print(f"  {'preflight check --level static':<34} {'median':>8} {'min':>8} {'max':>8}")
    for name, ts in times.items():
        print(f"  {name:<34} {statistics.median(ts):>7.3f}s {min(ts):>7.3f}s {max(ts):>7.3f}s")
    local = statistics.median(times["local model folder"])
    ratio = local / statistics.median(times["no model folder"])
    print(f"ratio local folder / no folder (medians): {ratio:.2f}x")
    if args.baseline_tree:
        before = statistics.median(times["baseline tree, no folder"])
        print(f"ratio local folder / baseline tree (medians): {local / before:.2f}x")
    print(f"goal < {WALL_GOAL_S:g} s median with the local folder: {'met' if local < WALL_GOAL_S else 'NOT met'} "
          f"({local:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
