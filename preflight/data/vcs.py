"""Is a data file under version control fit for large files: Git LFS or DVC?"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path


def tracking(path: Path) -> str | None:
    """'git-lfs', 'dvc', 'git' (plain git: fine for small files), or None when untracked."""
    if (path.parent / (path.name + ".dvc")).is_file() or _in_dvc_lock(path):
        return "dvc"
    try:
        attr = subprocess.run(["git", "check-attr", "filter", "--", path.name], cwd=path.parent,
                              capture_output=True, text=True, timeout=10)
        if attr.returncode == 0 and attr.stdout.strip().endswith(": lfs"):
            return "git-lfs"
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "--", path.name], cwd=path.parent,
                                 capture_output=True, text=True, timeout=10)
        if tracked.returncode == 0:
            return "git"
    except (OSError, subprocess.TimeoutExpired):
        return None
    return None


def _in_dvc_lock(path: Path) -> bool:
    for folder in [path.parent, *path.parent.parents]:
        lock = folder / "dvc.lock"
        if lock.is_file():
            try:
                rel = path.resolve().relative_to(folder.resolve())
            except ValueError:
                return False
            return f"path: {rel}" in lock.read_text(encoding="utf-8", errors="replace")
        if (folder / ".git").exists():
            break
    return False


def file_digest(path: Path) -> dict[str, object]:
    """Size and SHA-256 of a file, or of every file in a dataset folder (for the attestation)."""
    h = hashlib.sha256()
    size = 0
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    return {"path": str(path), "bytes": size, "sha256": h.hexdigest()}
