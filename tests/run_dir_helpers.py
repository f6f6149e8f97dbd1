"""What a run leaves in its run dir and checkpoint dir, written as the runner writes it: events,
committed checkpoints with their manifests (runner/checkpoint.py's layout; test_run_dir_state
holds the two equal), and the finished or interrupted runs made of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from preflight.rundir import CHECKPOINT_FORMAT, CHECKPOINT_MANIFEST
from preflight.spec import Spec, canonical_sha256

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


def run_start(spec: Spec, t: float = T0) -> dict[str, Any]:
    return {"type": "run_start", "time": t, "run": spec.name, "spec_sha256": spec.sha256, "world_size": 1,
            "backend": "cpu", "device": "cpu", "config": {}, "notes": [], "spec_path": str(spec.path.resolve())}


def write_events(run_dir: Path, *events: dict[str, Any], tail: str = "") -> None:
    """Append events to RUN_DIR/events.jsonl; ``tail``: raw text after them (half a line)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "events.jsonl", "a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(e) + "\n" for e in events) + tail)


def steps(first: int, last: int) -> list[dict[str, Any]]:
    return [{"type": "step", "time": T0 + s, "step": s, "loss": 0.1} for s in range(first, last + 1)]


def end(step: int, status: str = "completed", reason: str | None = None) -> dict[str, Any]:
    return {"type": "run_end", "time": T0 + step + 1, "step": step, "status": status, "reason": reason}


def checkpoint(directory: Path, step: int) -> Path:
    """A committed step_N folder whose manifest verifies (sizes; the checksums are not read)."""
    folder = directory / f"step_{step:06d}"
    folder.mkdir(parents=True)
    files = {}
    for name, body in ((".metadata", b"meta" * step), ("__0_0.distcp", b"w" * (100 + step)),
                       ("trainer.json", b"{}")):
        (folder / name).write_bytes(body)
        files[name] = {"bytes": len(body), "sha256": "0" * 64}
    manifest = {"format": CHECKPOINT_FORMAT, "step": step, "created": T0 + step, "metric": None,
                "metric_name": "validation_accuracy", "bytes": sum(f["bytes"] for f in files.values()),
                "files": files}
    manifest["manifest_sha256"] = canonical_sha256(manifest)
    (folder / CHECKPOINT_MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def interrupted_run(spec: Spec, at: int = 13, checkpoints: tuple[int, ...] = (0, 10)) -> None:
    """A run of ``spec`` killed after step ``at``: no run_end; the given checkpoints committed."""
    write_events(spec.run_dir, run_start(spec), *steps(1, at))
    for step in checkpoints:
        checkpoint(spec.checkpoint_dir, step)


def finished_run(spec: Spec, at: int | None = None) -> None:
    """A run of ``spec`` that completed at step ``at`` (training.max_steps unless given)."""
    last = int(spec.get("training.max_steps")) if at is None else at
    write_events(spec.run_dir, run_start(spec), *steps(1, last), end(last))
    for step in (0, last // 2, last):
        checkpoint(spec.checkpoint_dir, step)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: what a move must keep whole."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
