"""``preflight data demo``: the arithmetic task (``preflight.arithmetic``) written as files.

- ``write_jsonl(rows, path)``: one JSON object a line (gzip for .gz).
- ``write_demo(out_dir, n, seed)``: ``all.jsonl``, a stratified train/val/test split and a run spec
  for a CPU smoke run on them.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..arithmetic import generate
from .split import split_rows

SPLIT_RATIOS = (0.9, 0.05, 0.05)


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    """One JSON object per line (UTF-8, gzip when the name ends in .gz); returns the rows written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="\n") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_demo(out_dir: str | Path, n: int = 2000, seed: int = 0, split: bool = True) -> dict[str, Any]:
    """Write ``all.jsonl``; with ``split``, also train/val/test.jsonl (0.9/0.05/0.05, stratified by
    difficulty, by ``split_rows``) and ``run.yaml``, a CPU smoke run spec whose data section names
    those files by absolute path (relative paths in a spec are taken from the working directory).

    Returns ``{"out_dir", "files": {name: path}, "rows": {name: count}}``.
    """
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = generate(n, seed)
    files: dict[str, Path] = {"all": out / "all.jsonl"}
    counts = {"all": write_jsonl(rows, files["all"])}
    if split:
        parts = split_rows(rows, SPLIT_RATIOS, stratify_by="difficulty", seed=seed)
        for name, indices in zip(("train", "val", "test"), parts, strict=True):
            files[name] = out / f"{name}.jsonl"
            counts[name] = write_jsonl((rows[i] for i in indices), files[name])
        files["spec"] = out / "run.yaml"
        files["spec"].write_text(demo_spec(files["train"], files["val"], files["test"], out), encoding="utf-8")
    return {"out_dir": out, "files": files, "rows": counts}


def demo_spec(train: Path, val: Path, test: Path, run_root: Path) -> str:
    """A run spec for a CPU smoke run on the demo files (paths written absolute, JSON-quoted)."""

    def q(path: Path | str) -> str:
        return json.dumps(str(path))

    return f"""\
# A CPU smoke run on the generated arithmetic dataset (written by `preflight data demo`).
# Paths are absolute: relative paths in a spec are taken from the current working directory.
run:
  name: demo-math
  stage: custom
  domain: math
  run_dir: {q(run_root / "runs" / "{name}")}
hardware:
  gpu_required: false
  gpus_per_node: 0
  nodes: 1
  min_host_memory_gb: 4
  min_cpus: 2
storage:
  checkpoint_dir: {q(run_root / "runs" / "{name}" / "checkpoints")}
  min_free_gb: 1
  checkpoint_size_gb: 0.05
stack:
  packages:
    wandb: null          # no W&B sink in this run
model:
  name_or_path: tiny
  params_b: 0.001
  dtype: fp32
training:
  batch_size: 16         # 8 prompts x group of 2 completions; divides the 2 workers
  group_size: 2
  learning_rate: 1.0e-5
  max_steps: 20
  eval_interval: 10
  max_prompt_tokens: 128
  max_response_tokens: 16
checkpoints:
  save_interval: 10
early_stopping:
  patience: 1
distributed:
  cpu_workers: 2
monitoring:
  sinks: [jsonl]
checklist:
  severity:
    config.batch.range: off          # a smoke run's batch is deliberately tiny
    config.temperature.range: off    # rollouts sample at 1.0 on purpose
data:
  train: {q(train)}
  val: {q(val)}
  test: {q(test)}
  version_control: none
"""
