"""The run console, attached to a run directory that the test writes events into: alerts show
within a second, checklist items tick when their evidence arrives, quitting leaves the run alive,
and a launch from the preflight screen goes through the service's start_runner, as `preflight launch` does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tui_helpers import CPU_SPEC, run, screen_text, wait_for

from preflight.tui.app import console_app, preflight_app
from preflight.tui.console_screen import ConsoleScreen
from preflight.tui.dialogs import ConfirmDialog, ReasonDialog
from preflight.tui.session import PreflightSession
from preflight.tui.widgets import AlertLog, ChecklistPanel


def step_event(step: int, **over: Any) -> dict[str, Any]:
    event = {"type": "step", "time": 1_700_000_000.0 + step, "step": step, "loss": 0.5, "pass_rate": 0.4,
             "gen_len_mean": 900.0, "truncation_rate": 0.01, "utilization": 0.9}
    event.update(over)
    return event


def append(run_dir: Path, *events: dict[str, Any]) -> None:
    with open(run_dir / "events.jsonl", "a", encoding="utf-8") as fh:
        for e in events:
            fh.write(json.dumps(e) + "\n")


def item_status(app: Any, item_id: str) -> str | None:
    snap = app.screen.query_one(ChecklistPanel).snapshot
    for items in (snap.checklists.values() if snap else []):
        for item in items:
            if item.id == item_id:
                return str(item.status)
    return None


def shown_step(app: Any) -> int | None:
    snap = app.screen.follower.latest if isinstance(app.screen, ConsoleScreen) else None
    return snap.last_step if snap else None


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "runs" / "watched"
    d.mkdir(parents=True)
    return d


@pytest.fixture
def children():
    """Processes standing in for the runner; killed (whole session) at the end of the test."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


# A harmless stand-in for the runner: writes a step event every 50 ms until killed.
WRITER = """
import json, sys, time
path, step = sys.argv[1], 0
while True:
    step += 1
    with open(path, "a") as fh:
        fh.write(json.dumps({"type": "step", "time": time.time(), "step": step, "loss": 0.5,
                             "pass_rate": 0.4, "gen_len_mean": 900.0, "truncation_rate": 0.01,
                             "utilization": 0.9}) + "\\n")
    time.sleep(0.05)
"""


def test_an_alert_shows_within_a_second_of_an_event_crossing_its_threshold(run_dir):
    append(run_dir, *(step_event(s) for s in range(1, 6)))
    app = console_app(run_dir)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: shown_step(app) == 5, what="the first five steps")
            log = app.screen.query_one(AlertLog)
            assert "no alerts" in str(log.render())
            append(run_dir, step_event(6, truncation_rate=0.35))  # threshold: above 10 %
            took = await wait_for(pilot, lambda: "truncation_high" in str(log.render()), timeout=5,
                                  what="the truncation alert")
            assert took < 1.0, f"the alert took {took:.2f} s to show"
            shown = screen_text(app)
            assert "truncation_high" in shown and "review stability" in shown

    run(scenario())


def test_a_checklist_item_ticks_when_its_evidence_arrives(run_dir):
    append(run_dir, *(step_event(s) for s in range(1, 11)))
    app = console_app(run_dir)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: item_status(app, "checkpoint_on_schedule") == "pending",
                           what="the checkpoint item, pending at step 10")
            append(run_dir, {"type": "checkpoint", "time": 1_700_000_011.0, "step": 10,
                             "path": str(run_dir / "checkpoints" / "step-10")})
            await wait_for(pilot, lambda: item_status(app, "checkpoint_on_schedule") == "pass",
                           timeout=5, what="the checkpoint item to pass")
            await pilot.pause(0.3)
            assert "✔ Checkpoints are saved on schedule" in screen_text(app)
            assert "ckpt step 10" in screen_text(app)

    run(scenario())


def test_signing_off_the_architecture_review_ticks_it_and_is_stored_in_the_run_dir(run_dir):
    append(run_dir, step_event(1))
    app = console_app(run_dir)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: item_status(app, "architecture_reviewed") == "pending",
                           what="the checklists")
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, ReasonDialog), what="the sign-off dialog")
            await pilot.press(*"reviewed the tiny model's config", "enter")
            await wait_for(pilot, lambda: item_status(app, "architecture_reviewed") == "pass",
                           timeout=5, what="the sign-off to show")
    run(scenario())
    stored = json.loads((run_dir / "signoffs.json").read_text())["signoffs"]["architecture_reviewed"]
    assert stored["note"] == "reviewed the tiny model's config"


def test_quitting_the_console_leaves_the_run_process_alive(run_dir, children):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir / "events.jsonl")],
                            start_new_session=True)
    children.append(proc)
    app = console_app(run_dir)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: (shown_step(app) or 0) >= 3, what="the run's steps")
            await pilot.press("q")
            await pilot.pause()
    run(scenario())
    assert app.return_code == 0 or app.return_code is None
    size = (run_dir / "events.jsonl").stat().st_size
    time.sleep(0.3)
    assert proc.poll() is None, "quitting the console stopped the run"
    assert (run_dir / "events.jsonl").stat().st_size > size, "the run stopped writing events"


def test_launch_goes_through_start_runner_then_the_console_follows_the_run(write_spec, children):
    from preflight.service.launch import start_runner

    spec = write_spec(CPU_SPEC)
    session = PreflightSession(spec, waivers=[{"check": "host.cpus", "reason": "the cluster has 96 cores",
                                               "by": "command line"}])

    def launcher(spec_obj: Any, report: Any) -> Any:
        # The CLI's own launch path, with a harmless runner that only writes step events.
        events = spec_obj.run_dir.absolute() / "events.jsonl"
        launched = start_runner(spec_obj, report, command=[sys.executable, "-c", WRITER, str(events)])
        children.append(_adopt(launched.pid))
        return launched

    app = preflight_app(session, launcher=launcher)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await launch_confirmed(pilot, app, session)
            await wait_for(pilot, lambda: isinstance(app.screen, ConsoleScreen), what="the console")
            await wait_for(pilot, lambda: (shown_step(app) or 0) >= 2, what="the launched run's steps")
            assert "launched pid" in screen_text(app)
            await pilot.press("q")
    run(scenario())
    attestation = json.loads(Path(f"{spec}.attestation.json").read_text())
    assert attestation["report"]["status"] == "pass"
    assert attestation["waivers"][0]["check"] == "host.cpus"
    assert (Path("runs/tui-run") / "runner.log").is_file()
    assert all(p.poll() is None for p in children), "quitting the console stopped the launched run"


async def launch_confirmed(pilot: Any, app: Any, session: PreflightSession) -> None:
    """What a user does to launch: wait for the gate, press l, confirm with y."""
    await wait_for(pilot, lambda: session.gate_open, what="the gate to open")
    await pilot.press("l")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the confirmation")
    await pilot.press("y")


class _adopt:
    """A pid started elsewhere (start_runner), with the bits of Popen the fixture uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int | None:
        try:
            done, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return 0
        return None if done == 0 else status

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)


def test_ascii_mode_draws_only_ascii_in_the_panels(run_dir):
    append(run_dir, *(step_event(s, loss=0.5 + 0.01 * s) for s in range(1, 30)),
           step_event(30, truncation_rate=0.3))
    app = console_app(run_dir, ascii_only=True)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: shown_step(app) == 30, what="thirty steps")
            await pilot.pause(0.3)
            body = screen_text(app).splitlines()
            odd = sorted({ch for line in body for ch in line if ord(ch) > 126})
            assert odd == [], f"non-ASCII characters under --ascii: {odd}"
            assert "truncation_high" in "\n".join(body)

    run(scenario())


def test_a_launched_runner_that_exits_before_any_event_says_why(write_spec):
    from preflight.service.launch import start_runner

    spec = write_spec(CPU_SPEC)
    session = PreflightSession(spec, waivers=[{"check": "host.cpus", "reason": "the cluster has 96 cores",
                                               "by": "command line"}])
    refuse = "print('runner: refusing to start: no GPU here'); raise SystemExit(1)"

    def launcher(spec_obj: Any, report: Any) -> Any:
        return start_runner(spec_obj, report, command=[sys.executable, "-c", refuse])

    app = preflight_app(session, launcher=launcher)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await launch_confirmed(pilot, app, session)
            await wait_for(pilot, lambda: "exited (code 1)" in screen_text(app), timeout=5,
                           what="the runner's exit to show")
            assert "exited (code 1): runner: refusing to start: no GPU here" in screen_text(app)

    run(scenario())


def test_details_show_in_full_what_the_panels_cut_short(run_dir):
    append(run_dir, *(step_event(s) for s in range(1, 6)), step_event(6, truncation_rate=0.35))
    app = console_app(run_dir)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: shown_step(app) == 6, what="six steps")
            assert "at step 6" not in screen_text(app)  # the alert line is cut at 80 columns
            await pilot.press("d")
            await pilot.pause(0.2)
            text = screen_text(app)
            assert "truncation_high (critical): truncation rate 35.0% > 10.0% at step 6" in text
            assert "action: review stability" in text
            await pilot.press("escape")
            await pilot.pause(0.1)
            assert isinstance(app.screen, ConsoleScreen)

    run(scenario())


def test_the_runner_accepts_the_attestation_of_a_launch_with_a_tui_waiver(write_spec, children):
    from preflight.service.launch import start_runner
    from preflight.spec import load_spec
    from runner.authorize import authorize

    spec = write_spec(CPU_SPEC)
    session = PreflightSession(spec)
    session.run()
    session.waive("host.cpus", "the cluster nodes have 96 cores")
    launched = session.launch(lambda s, r: start_runner(s, r, command=[sys.executable, "-c", "pass"]))
    children.append(_adopt(launched.pid))
    verdict = authorize(load_spec(spec))  # what `python -m runner SPEC` asks first
    assert verdict.ok, verdict.message
