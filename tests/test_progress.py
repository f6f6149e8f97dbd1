"""Live progress on stderr: spinners for running checks and a bar, cleared when done."""

from __future__ import annotations

import io
import time

from preflight.engine import CheckDef
from preflight.progress import Progress
from preflight.result import Result, Status, passed


def test_progress_draws_running_checks_and_a_bar_then_clears():
    stream = io.StringIO()
    d = CheckDef("storage.free_space", "t", "node", lambda _c: passed(""))
    with Progress(2, stream=stream, enabled=True) as progress:
        progress.started(d)
        time.sleep(0.3)
        progress.finished(Result("storage.free_space", "t", Status.PASS, "node", "hardware"))
        time.sleep(0.2)
    text = stream.getvalue()
    assert "storage.free_space" in text
    assert "0/2 checks" in text and "1/2 checks" in text
    assert text.endswith("\x1b[J")  # the progress region is erased at the end


def test_progress_is_silent_when_disabled():
    stream = io.StringIO()
    with Progress(1, stream=stream, enabled=False) as progress:
        progress.started(CheckDef("a", "t", "node", lambda _c: passed("")))
        time.sleep(0.15)
    assert stream.getvalue() == ""
