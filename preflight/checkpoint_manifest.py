"""What makes a checkpoint folder's manifest.json one to trust, read without torch: the gate's
run-dir state check and the runner's resume apply the same rules, so the checkpoint the gate says a
run will resume from is the one the runner loads.

A manifest is trusted when it parses, names this format, its own checksum matches, it has a step
and a file list with ``.metadata`` (torch.distributed.checkpoint's index), its hash algorithm is
known and every file has a digest under it; the files are *present* when each has the listed
size. The digests themselves are checked by the runner while it reads the files
(runner.checkpoint_storage).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .rundir import CHECKPOINT_FORMAT, CHECKPOINT_MANIFEST
from .spec import canonical_sha256

CHECKPOINT_HASH = "xxh3_128"  # what a save writes
LEGACY_CHECKPOINT_HASH = "sha256"  # what manifests without a "hash" field used
CHECKPOINT_HASHES = (CHECKPOINT_HASH, LEGACY_CHECKPOINT_HASH)


class ManifestProblem(ValueError):
    """Why a manifest (or a file it lists) is not to be trusted; the message names the file."""


def read_checkpoint_manifest(folder: Path) -> dict[str, Any]:
    """The folder's manifest, checked as the module says (the files' sizes are not: see
    ``check_listed_files``); ``hash`` is filled in for manifests written before it was recorded.
    Raises ManifestProblem."""
    path = folder / CHECKPOINT_MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestProblem(f"{folder}: no {CHECKPOINT_MANIFEST} (a save that never committed)") from None
    except (OSError, ValueError) as exc:
        raise ManifestProblem(f"{path}: unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != CHECKPOINT_FORMAT:
        raise ManifestProblem(f"{path}: not a {CHECKPOINT_FORMAT} manifest")
    claimed = manifest.pop("manifest_sha256", None)
    if claimed != canonical_sha256(manifest):
        raise ManifestProblem(f"{path}: the manifest's own checksum does not match (edited or damaged)")
    files = manifest.get("files")
    if not isinstance(files, dict) or not isinstance(manifest.get("step"), int):
        raise ManifestProblem(f"{path}: no step or file list")
    if ".metadata" not in files:
        raise ManifestProblem(f"{path}: lists no torch.distributed.checkpoint .metadata")
    algorithm = manifest.setdefault("hash", LEGACY_CHECKPOINT_HASH)
    if algorithm not in CHECKPOINT_HASHES:
        raise ManifestProblem(f"{path}: files hashed with {algorithm!r}, which this version does not "
                              f"know ({', '.join(CHECKPOINT_HASHES)}); load it with the version that "
                              "wrote it")
    bad = [name for name, entry in files.items() if not (isinstance(entry, dict) and algorithm in entry)]
    if bad:
        raise ManifestProblem(f"{path}: {bad[0]} has no {algorithm} digest")
    return manifest


def check_file_size(path: Path, entry: dict[str, Any]) -> None:
    """The file exists with the size its manifest entry lists; raises ManifestProblem."""
    try:
        size = path.stat().st_size
    except OSError:
        raise ManifestProblem(f"{path}: listed in the manifest but missing") from None
    if size != entry.get("bytes"):
        raise ManifestProblem(f"{path}: {size} bytes, the manifest says {entry.get('bytes')} "
                              "(truncated or rewritten)")


def check_listed_files(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    """Each listed file exists with its size (no byte is read); raises ManifestProblem."""
    for name, entry in sorted(files.items()):
        check_file_size(folder / name, entry)
