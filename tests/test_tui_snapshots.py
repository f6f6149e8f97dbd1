"""How the screens look at 80x24 (pytest-textual-snapshot). After an intended change of looks:
`pytest tests/test_tui_snapshots.py --snapshot-update`, then review the SVGs in __snapshots__/."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeSystemProbe, gpu_probes
from tui_helpers import CPU_SPEC, screen_text, wait_for

from preflight.tui.app import console_app, preflight_app
from preflight.tui.session import PreflightSession

T0 = 1_700_000_000.0


def finished_run(run_dir: Path) -> Path:
    """A 400-step run: a rising pass rate, validations on an exact ScaleRL curve, checkpoints, and
    one truncation spike that alerts."""
    run_dir.mkdir(parents=True)
    lines: list[dict[str, Any]] = [{"type": "run_start", "time": T0, "run": "snapshot-run",
                                    "spec_sha256": "0" * 64, "world_size": 8, "backend": "cuda",
                                    "device": "cuda:0", "config": {}, "notes": []}]
    for s in range(1, 401):
        hours = 0.1 * s
        lines.append({"type": "step", "time": T0 + s, "step": s, "loss": 0.5 + 0.05 * math.sin(s / 15),
                      "pass_rate": 0.3 + 0.35 * (1 - math.exp(-s / 150)), "gen_len_mean": 800.0 + s,
                      "truncation_rate": 0.25 if s == 300 else 0.02, "utilization": 0.85,
                      "device_hours": hours})
        if s % 25 == 0:
            rate = 0.3 + (0.7 - 0.3) / (1 + (12.0 / hours) ** 1.6)
            lines.append({"type": "validation", "time": T0 + s, "step": s, "pass_rate": rate, "n": 500,
                          "device_hours": hours})
        if s % 100 == 0:
            lines.append({"type": "checkpoint", "time": T0 + s, "step": s, "path": f"checkpoints/step-{s}"})
    lines.append({"type": "run_end", "time": T0 + 401, "step": 400, "status": "completed"})
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
    return run_dir


def _replayed(app: Any):  # type: ignore[no-untyped-def]
    async def run_before(pilot: Any) -> None:
        await wait_for(pilot, lambda: app.screen.follower.replay_done and app.screen.follower.latest
                       and app.screen.follower.latest.status == "completed", what="the replay to finish")
        await pilot.pause(0.5)  # the redraw timer

    return run_before


def test_preflight_screen_after_the_checks(snap_compare, write_spec):
    write_spec(CPU_SPEC)
    probes = gpu_probes(system=FakeSystemProbe(cpus=96))
    session = PreflightSession("run.yaml", probes=probes)
    app = preflight_app(session)

    async def run_before(pilot: Any) -> None:
        await wait_for(pilot, lambda: "gate: FAILED" in screen_text(app), what="the finished checks")

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("ascii_only", [False, True], ids=["unicode", "ascii"])
def test_console_replaying_a_finished_run(snap_compare, tmp_path, ascii_only):
    app = console_app(finished_run(tmp_path / "snapshot-run"), replay_speed=100_000, ascii_only=ascii_only)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_replayed(app))
