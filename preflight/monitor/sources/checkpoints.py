"""Checkpoints a trainer saved next to its log, as the monitor's checkpoint events, so the
"checkpoints are saved on schedule" item can judge TRL and verl runs too.

- TRL (transformers' Trainer): ``OUTPUT_DIR/checkpoint-N/``, counted once its ``trainer_state.json``
  is written (the Trainer writes it with the checkpoint, so a folder still being filled is not
  counted yet);
- verl: ``global_step_N/`` folders, counted once ``latest_checkpointed_iteration.txt`` next to them
  names N or a later step (verl writes it after the checkpoint).

Only the followed directory itself is looked at (verl's default_local_dir is usually elsewhere:
follow that folder's parent log, or the checklist item stays pending and says why).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

_FOLDER = re.compile(r"^(checkpoint-|global_step_)(\d+)$")
VERL_LATEST = "latest_checkpointed_iteration.txt"


class CheckpointScanner:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.seen: set[str] = set()

    def scan(self) -> list[dict[str, Any]]:
        """Checkpoint events for the complete checkpoints not reported yet, oldest first."""
        if not self.root.is_dir():
            return []
        latest = self._verl_latest()
        found = []
        try:
            children = list(self.root.iterdir())
        except OSError:
            return []
        for child in children:
            m = _FOLDER.match(child.name)
            if m is None or child.name in self.seen or not child.is_dir():
                continue
            step = int(m.group(2))
            complete = ((child / "trainer_state.json").is_file() if m.group(1) == "checkpoint-"
                        else latest is not None and latest >= step)
            if not complete:
                continue
            self.seen.add(child.name)
            try:
                when = child.stat().st_mtime
            except OSError:
                continue
            found.append({"type": "checkpoint", "step": step, "path": str(child), "time": when})
        return sorted(found, key=lambda e: e["step"])

    def _verl_latest(self) -> int | None:
        try:
            return int((self.root / VERL_LATEST).read_text().strip())
        except (OSError, ValueError):
            return None
