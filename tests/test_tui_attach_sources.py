"""`preflight tui --attach PATH` on another trainer's log: the kind is detected and shown, and the
panels (alerts, the fit chart) fill from the trainer's own keys."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from monitor_logs import write_verl
from tui_helpers import run, screen_text, wait_for

from preflight.errors import PreflightError
from preflight.tui.command import build_app


def attach_args(path: Path, source: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(spec=None, attach=str(path), replay=None, speed=None, ascii=True,
                              level="node", fail_on="fail", waive=[], cluster=None, source=source)


def test_attach_to_a_verl_log_shows_the_kind_the_alerts_and_the_chart(tmp_path: Path) -> None:
    app = build_app(attach_args(write_verl(tmp_path / "exp.jsonl")))

    async def scenario() -> str:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: "truncation_high" in screen_text(app), what="the alerts")
            await pilot.pause(0.3)
            return screen_text(app)

    text = run(scenario())
    assert "[verl file logger (JSON Lines)]" in text
    assert "pass_rate_low" in text and "loss_spike" in text
    assert "*" in text.split("Where the run is heading")[1]  # observed points in the fit chart


def test_attach_refuses_an_unknown_log_before_opening_a_screen(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(PreflightError, match="not a log the monitor knows"):
        build_app(attach_args(path))


def test_attach_to_an_events_file_follows_its_run_directory(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text("")
    app = build_app(attach_args(tmp_path / "events.jsonl"))
    assert app.run_dir == tmp_path
