"""Shared pieces of the TUI tests: waiting on a running app, plain-text screen dumps, specs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

# A CPU spec whose only failure is host.cpus (no machine has 4096 cores), so a waiver opens the gate.
CPU_SPEC = """\
run: {name: tui-run, run_dir: runs/tui-run}
hardware: {gpu_required: false, min_host_memory_gb: 1, min_cpus: 4096}
storage: {min_free_gb: 0.001, checkpoint_size_gb: 0.0001}
stack: {packages: {wandb: null}}
monitoring: {sinks: [jsonl]}
training: {batch_size: 512, group_size: 16, max_steps: 2000, temperature: 0.05}
"""


async def wait_for(pilot: Any, condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> float:
    """Let the app run until ``condition()`` holds; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or condition}")
        await pilot.pause(0.05)
    return time.monotonic() - start


def screen_text(app: Any) -> str:
    """What the terminal shows now, as plain text lines (no colours)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def run(coro: Any) -> Any:
    return asyncio.run(coro)
