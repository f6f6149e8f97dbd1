"""The preflight screen, driven like a user would: checks run and show results grouped by checklist
item, the selected check's details, a waiver with a typed reason, and a launch gated on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Button, DataTable, Static
from tui_helpers import CPU_SPEC, run, screen_text, wait_for

from preflight.cli import main as preflight
from preflight.tui.app import preflight_app
from preflight.tui.dialogs import ConfirmDialog, ReasonDialog
from preflight.tui.session import PreflightSession


def _app(spec: Path, **kw):  # type: ignore[no-untyped-def]
    session = PreflightSession(spec)
    return session, preflight_app(session, **kw)


async def shown_finished(pilot, app) -> None:  # type: ignore[no-untyped-def]
    """Wait until the screen shows the gate's verdict (the checks finished and were drawn)."""
    await wait_for(pilot, lambda: "gate: FAILED" in screen_text(app) or "gate: PASSED" in screen_text(app),
                   what="the finished checks on screen")


def _select(app, row_key: str) -> None:  # type: ignore[no-untyped-def]
    table = app.screen.query_one("#checks", DataTable)
    table.move_cursor(row=table.get_row_index(row_key))


def _status_cell(app, row_key: str) -> str:  # type: ignore[no-untyped-def]
    return str(app.screen.query_one("#checks", DataTable).get_cell(row_key, "status"))


def test_checks_run_and_show_their_results_grouped_by_checklist_item(write_spec):
    session, app = _app(write_spec(CPU_SPEC))

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await shown_finished(pilot, app)
            assert "FAIL" in _status_cell(app, "host.cpus")
            assert "PASS" in _status_cell(app, "host.memory")
            # The hardware item sums up its checks: one failure fails it.
            assert "FAIL" in _status_cell(app, "item:hardware")
            assert "PASS" in _status_cell(app, "item:software")
            text = screen_text(app)
            assert "gate: FAILED - fix or waive host.cpus" in text
            # The selected check's details: expected, found and the fix.
            _select(app, "host.cpus")
            await pilot.pause()
            details = str(app.screen.query_one("#details", Static).render())
            assert "expected: >= 4096" in details and "found: " in details and " CPUs" in details
            assert "fix: " in details and "hardware.min_cpus" in details
            assert "press w to waive" in details

    run(scenario())


def test_launch_stays_disabled_while_a_check_fails_and_opens_after_a_waiver_with_a_reason(write_spec):
    session, app = _app(write_spec(CPU_SPEC))

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await shown_finished(pilot, app)
            launch = app.screen.query_one("#launch", Button)
            assert launch.disabled
            await pilot.press("l")  # refused: no confirmation is even asked
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmDialog)

            _select(app, "host.cpus")
            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, ReasonDialog), what="the waiver dialog")
            await pilot.press(*"dev box", "enter")  # 7 characters: too short, the dialog stays
            await pilot.pause()
            assert isinstance(app.screen, ReasonDialog)
            assert "at least 8 characters" in str(app.screen.query_one("#reason-error", Static).render())
            assert session.results["host.cpus"].status.value == "fail"

            await pilot.press(*", the cluster nodes have 96 cores", "enter")
            await wait_for(pilot, lambda: not isinstance(app.screen, ReasonDialog), what="the dialog to close")
            await pilot.pause(0.2)
            result = session.results["host.cpus"]
            assert result.status.value == "waived"
            assert result.waiver == {"check": "host.cpus", "by": "preflight tui",
                                     "reason": "dev box, the cluster nodes have 96 cores"}
            assert "WAIVED" in _status_cell(app, "host.cpus")
            assert not app.screen.query_one("#launch", Button).disabled
            assert "gate: PASSED" in screen_text(app)

            await pilot.press("l")  # now it asks first; "n" declines and nothing starts
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the confirmation")
            await pilot.press("n")
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmDialog)
            assert not (Path("runs/tui-run") / "runner.log").exists()

    run(scenario())


def test_cancelling_a_waiver_changes_nothing(write_spec):
    session, app = _app(write_spec(CPU_SPEC))

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await shown_finished(pilot, app)
            _select(app, "host.cpus")
            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, ReasonDialog), what="the waiver dialog")
            await pilot.press(*"a perfectly good reason", "escape")
            await pilot.pause()
            assert session.results["host.cpus"].status.value == "fail" and session.waivers == []

    run(scenario())


def test_a_passing_check_cannot_be_waived(write_spec):
    session, app = _app(write_spec(CPU_SPEC))

    async def scenario() -> None:
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await shown_finished(pilot, app)
            _select(app, "host.memory")
            await pilot.press("w")
            await pilot.pause()
            assert not isinstance(app.screen, ReasonDialog)
            assert any("only a failed or warning check" in n.message for n in app._notifications)

    run(scenario())


@pytest.mark.parametrize(("argv", "message"), [
    (["tui"], "exactly one of SPEC, --attach RUN_DIR or --replay RUN_DIR"),
    (["tui", "run.yaml", "--attach", "runs/x"], "got SPEC and --attach"),
    (["tui", "--attach", "runs/x", "--speed", "2"], "--speed only applies to --replay"),
    (["tui", "--replay", "runs/x", "--speed", "0"], "must be above 0"),
    (["tui", "--attach", "nowhere"], "nowhere: no such run directory"),
    (["tui", "--attach", "runs/x", "--waive", "host.cpus=because of reasons"], "apply to the checks of a SPEC"),
    (["tui", "--replay", "runs/empty"], "no events.jsonl to replay"),
    (["tui", "missing.yaml"], "missing.yaml"),
])
def test_bad_tui_arguments_exit_2_with_a_message_and_no_screen(capsys, argv, message):
    Path("runs/x").mkdir(parents=True)
    Path("runs/empty").mkdir(parents=True)
    assert preflight(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_ascii_mode_draws_the_checks_and_the_waiver_dialog_in_ascii(write_spec):
    session, app = _app(write_spec(CPU_SPEC), ascii_only=True)

    def odd_characters() -> list[str]:
        return sorted({ch for ch in screen_text(app) if ord(ch) > 126})

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: "gate: FAILED" in screen_text(app), what="the finished checks")
            assert odd_characters() == []
            _select(app, "host.cpus")
            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, ReasonDialog), what="the waiver dialog")
            await pilot.pause(0.2)
            assert odd_characters() == []

    run(scenario())


def test_preflight_check_never_imports_textual(tmp_path, write_spec):
    import subprocess
    import sys

    spec = write_spec(CPU_SPEC)
    script = ("import contextlib, io, sys\nfrom preflight.cli import main\n"
              "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
              f"    main(['check', {str(spec)!r}, '--no-attest'])\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'preflight.tui')"
              " or m.startswith('preflight.tui')))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["spec", "attach"])
def test_preflight_tui_runs_in_a_terminal_and_quits_on_q(write_spec, tmp_path, how):
    """The real command on an 80x24 pseudo-terminal: it draws, `q` quits it with exit code 0."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios
    import threading
    import time

    spec = write_spec(CPU_SPEC)
    run_dir = tmp_path / "runs" / "tui-run"
    run_dir.mkdir(parents=True)
    target = [str(spec)] if how == "spec" else ["--attach", str(run_dir)]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "preflight", "tui", *target], stdin=slave, stdout=slave,
                            stderr=slave, env={**os.environ, "TERM": "xterm-256color"}, cwd=tmp_path)
    os.close(slave)
    drawn = bytearray()

    def drain() -> None:
        try:
            while chunk := os.read(master, 65536):
                drawn.extend(chunk)
        except OSError:
            pass

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        expected = b"gate:" if how == "spec" else b"Metrics"
        deadline = time.monotonic() + 60
        while expected not in drawn and time.monotonic() < deadline:
            time.sleep(0.1)
        assert expected in drawn, drawn[-2000:].decode("utf-8", "replace")
        os.write(master, b"q")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        reader.join(timeout=2)
    assert b"Traceback" not in drawn


def test_a_static_level_pass_does_not_open_the_launch(write_spec):
    spec = write_spec(CPU_SPEC.replace("min_cpus: 4096", "min_cpus: 1"))
    session = PreflightSession(spec, level="static")
    app = preflight_app(session)

    async def scenario() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await shown_finished(pilot, app)
            assert "launching needs --level node" in screen_text(app)
            assert app.screen.query_one("#launch", Button).disabled
            await pilot.press("l")
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmDialog)

    run(scenario())


# The run dir holds a run: the launch asks what to do with it ----------------------------------------

PASSING_SPEC = CPU_SPEC.replace("min_cpus: 4096", "min_cpus: 1")


def _stand_in_launcher(calls: list):  # type: ignore[no-untyped-def]
    """Start a harmless process through the service's start_runner; record the spec it was given."""
    import sys

    from preflight.service.launch import start_runner

    def launcher(spec_obj, report):  # type: ignore[no-untyped-def]
        calls.append(spec_obj)
        return start_runner(spec_obj, report, command=[sys.executable, "-c", "pass"])

    return launcher


def _dialog_body(app) -> str:  # type: ignore[no-untyped-def]
    return str(app.screen.query_one(".dialog-body", Static).render())


def test_a_finished_run_offers_only_a_fresh_start_which_moves_it_aside(write_spec):
    from run_dir_helpers import finished_run, tree

    from preflight.spec import load_spec
    from preflight.tui.dialogs import ChoiceDialog

    spec = write_spec(PASSING_SPEC)
    finished_run(load_spec(spec))
    before = tree(Path("runs/tui-run"))
    calls: list = []
    session, app = _app(spec, launcher=_stand_in_launcher(calls))

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await shown_finished(pilot, app)
            assert "gate: FAILED - the run dir holds a run: press l to choose" in screen_text(app)
            assert "FAIL" in _status_cell(app, "storage.run_dir")
            assert not app.screen.query_one("#launch", Button).disabled
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="the run dir choice")
            body = _dialog_body(app)
            assert "holds a finished run of this spec: completed at step 2000" in body
            assert "Resume is refused: " in body and "nothing left to train: max_steps reached" in body
            assert not app.screen.query("#choice-resume") and app.screen.query("#choice-fresh")
            await pilot.press("r")  # no resume on offer: the key does nothing
            await pilot.pause()
            assert isinstance(app.screen, ChoiceDialog) and calls == []
            await pilot.click("#choice-fresh")
            await wait_for(pilot, lambda: bool(calls), what="the launch")
            assert calls[0].run_dir_choice == "fresh" and session.run_dir_choice == "fresh"
            assert session.results["storage.run_dir"].status.value == "pass"
            [aside] = Path("runs").glob("tui-run.prev-*")
            assert tree(aside) == before  # moved whole, nothing deleted
            assert not Path("runs/tui-run/events.jsonl").exists()

    run(scenario())


def test_an_interrupted_run_offers_resume_or_fresh_and_resume_moves_nothing(write_spec):
    from run_dir_helpers import interrupted_run, tree

    from preflight.spec import load_spec
    from preflight.tui.dialogs import ChoiceDialog

    spec = write_spec(PASSING_SPEC)
    interrupted_run(load_spec(spec), at=130, checkpoints=(0, 100))
    before = tree(Path("runs/tui-run"))
    calls: list = []
    session, app = _app(spec, launcher=_stand_in_launcher(calls))

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await shown_finished(pilot, app)
            assert "gate: PASSED" in screen_text(app)  # an interrupted run of this spec resumes by default
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="the run dir choice")
            body = _dialog_body(app)
            assert "holds an interrupted run of this spec" in body
            assert "r  Resume: will resume from step 100 (1900 steps left to training.max_steps 2000)" in body
            assert "f  Start fresh: it will be moved aside to runs/tui-run.prev-<time>" in body
            await pilot.click("#choice-resume")
            await wait_for(pilot, lambda: bool(calls), what="the launch")
            assert calls[0].run_dir_choice == "resume"
            assert not list(Path("runs").glob("tui-run.prev-*"))
            assert {k: v for k, v in tree(Path("runs/tui-run")).items() if k != "runner.log"} == before

    run(scenario())


def test_cancelling_the_run_dir_choice_launches_nothing(write_spec):
    from run_dir_helpers import finished_run

    from preflight.spec import load_spec
    from preflight.tui.dialogs import ChoiceDialog

    spec = write_spec(PASSING_SPEC)
    finished_run(load_spec(spec))
    calls: list = []
    session, app = _app(spec, launcher=_stand_in_launcher(calls))

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await shown_finished(pilot, app)
            await pilot.press("l")
            await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), what="the run dir choice")
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, ChoiceDialog)
            assert calls == [] and session.run_dir_choice is None
            assert session.results["storage.run_dir"].status.value == "fail"
            assert not list(Path("runs").glob("tui-run.prev-*"))

    run(scenario())
