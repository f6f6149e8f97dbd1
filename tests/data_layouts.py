"""The same rows laid out as each trainer's dataset format, and specs and check runs over them.

A row here is the canonical content ``{"id", "prompt", "answer", "difficulty"}``; ``as_layout``
writes it the way plain JSONL, verl, TRL (standard or conversational) and OpenRLHF files hold it,
so tests can compare what the data checks find in each."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from data_factory import write_jsonl, write_parquet

LEVELS = ("easy", "medium", "hard")
LAYOUTS = ("plain", "verl", "trl", "trl-chat", "openrlhf")


def prompts(n: int, seed: int = 0, words: int = 30) -> list[str]:
    """Distinct prompts of random words from a large vocabulary (no accidental near-duplicates)."""
    rng = random.Random(seed)
    return [" ".join(f"w{rng.randrange(50_000)}" for _ in range(words)) + " what is the total?" for _ in range(n)]


def canonical_rows(texts: list[str], seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"id": f"r{i}", "prompt": t, "answer": str(rng.randrange(1000)), "difficulty": LEVELS[i % 3]}
            for i, t in enumerate(texts)]


def as_layout(row: dict[str, Any], layout: str, index: int, system: str | None = None) -> dict[str, Any]:
    """One canonical row in a trainer's format; ``system``: a system turn put before chat prompts."""
    chat = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": row["prompt"]}]
    if layout == "plain":
        return dict(row)
    if layout == "verl":
        return {"data_source": "planted", "prompt": chat, "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": row["answer"]},
                "extra_info": {"index": index, "split": "train", "difficulty": row["difficulty"]}}
    if layout == "trl":
        return {"prompt": row["prompt"], "completion": " " + row["answer"], "difficulty": row["difficulty"]}
    if layout == "trl-chat":
        return {"prompt": chat, "completion": [{"role": "assistant", "content": row["answer"]}],
                "difficulty": row["difficulty"]}
    if layout == "openrlhf":
        return {"input": row["prompt"], "label": row["answer"], "difficulty": row["difficulty"]}
    raise ValueError(layout)


def write_split(path: Path, rows: list[dict[str, Any]], layout: str, system: str | None = None) -> Path:
    laid = [as_layout(r, layout, i, system) for i, r in enumerate(rows)]
    return write_parquet(path, laid) if path.suffix == ".parquet" else write_jsonl(path, laid)


def write_spec(folder: Path, paths: dict[str, Path], data_extra: str = "", top_extra: str = "") -> Path:
    spec = folder / "run.yaml"
    spec.write_text("run: {name: formats}\nhardware: {gpu_required: false}\n" + top_extra + "data:\n"
                    + "".join(f"  {k}: {p}\n" for k, p in paths.items()) + "  version_control: none\n"
                    + data_extra, encoding="utf-8")
    return spec


def data_outcomes(spec_path: Path, only: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Each data check's Outcome, its function called directly (an exception is a test failure,
    not an ERROR the engine would make of it); the context is shared, as in a check run."""
    from fakes import gpu_probes

    from preflight.engine import REGISTRY
    from preflight.registry import Context
    from preflight.spec import load_spec

    ctx = Context(spec=load_spec(spec_path), probes=gpu_probes())
    ids = only or tuple(sorted(c for c in REGISTRY if c.startswith("data.")))
    return {cid: REGISTRY[cid].fn(ctx) for cid in ids}


def leaks_of(spec_path: Path) -> list[dict[str, Any]]:
    """Every leak `preflight check --export-leaks` writes for a spec."""
    import contextlib
    import io

    from preflight.cli import main

    out = spec_path.parent / "leaks.jsonl"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(["check", str(spec_path), "--no-attest", "--format", "json", "--export-leaks", str(out)])
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
