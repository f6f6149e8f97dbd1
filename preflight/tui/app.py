"""The app and the factories that build it: for a spec (preflight screen, then the console after a
launch) or for a run directory (the console, following it live or replaying it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding
from textual.scrollbar import ScrollBar, ScrollBarRender

from ..service.launch import Launched, Launcher
from .console_screen import ConsoleScreen
from .glyphs import Glyphs, glyphs_for
from .preflight_screen import PreflightScreen
from .session import PreflightSession


class AsciiScrollBarRender(ScrollBarRender):
    VERTICAL_BARS: ClassVar[list[str]] = [" "] * 8
    HORIZONTAL_BARS: ClassVar[list[str]] = [" "] * 8


class RunConsoleApp(App[None]):
    CSS_PATH = "console.tcss"
    TITLE = "RL Preflight"
    ENABLE_COMMAND_PALETTE = False  # every action has its key in the footer; keep the footer short
    BINDINGS = [Binding("q", "quit", "Quit"), Binding("ctrl+c", "quit", "Quit", show=False)]

    def __init__(self, *, session: PreflightSession | None = None, run_dir: Path | None = None,
                 launcher: Launcher | None = None, ascii_only: bool = False,
                 replay_speed: float | None = None, monitor_factory: Any = None) -> None:
        super().__init__()
        if (session is None) == (run_dir is None):
            raise ValueError("give a session (preflight screen) or a run_dir (console), not both")
        self.session, self.run_dir, self.launcher = session, run_dir, launcher
        self.glyphs: Glyphs = glyphs_for(ascii_only)
        self.ascii_only = ascii_only
        self.replay_speed = replay_speed
        self.monitor_factory = monitor_factory

    def on_mount(self) -> None:
        if self.ascii_only:
            self.add_class("-ascii")  # the stylesheet swaps every border for ASCII under this class
            # Scrollbar thumbs end in partial-block characters; under --ascii they are plain cells.
            self._scrollbar_renderer = ScrollBar.renderer
            ScrollBar.renderer = AsciiScrollBarRender
        if self.session is not None:
            self.push_screen(PreflightScreen(self.session, self.glyphs, self.launcher))
        else:
            assert self.run_dir is not None
            self.show_console(self.run_dir)

    def on_unmount(self) -> None:
        if self.ascii_only:
            ScrollBar.renderer = self._scrollbar_renderer  # a class attribute: leave it as found

    def show_console(self, run_dir: Path, spec: Any = None, launched: Launched | None = None) -> None:
        """Switch to (or open) the console following ``run_dir`` (judged against ``spec`` if given;
        ``launched`` is the run this app started, preflight.service.launch.Launched)."""
        screen = ConsoleScreen(Path(run_dir), self.glyphs, replay_speed=self.replay_speed,
                               monitor_factory=self.monitor_factory, spec=spec, launched=launched)
        if len(self.screen_stack) > 1:
            self.switch_screen(screen)
        else:
            self.push_screen(screen)


def preflight_app(session: PreflightSession, *, launcher: Launcher | None = None, ascii_only: bool = False,
                  monitor_factory: Any = None) -> RunConsoleApp:
    """The app for `preflight tui SPEC`: checks, waivers, the gated launch, then the console."""
    return RunConsoleApp(session=session, launcher=launcher, ascii_only=ascii_only,
                         monitor_factory=monitor_factory)


def console_app(run_dir: str | Path, *, ascii_only: bool = False, replay_speed: float | None = None,
                monitor_factory: Any = None) -> RunConsoleApp:
    """The app for `preflight tui --attach RUN_DIR` (live) or `--replay RUN_DIR --speed N`."""
    return RunConsoleApp(run_dir=Path(run_dir), ascii_only=ascii_only, replay_speed=replay_speed,
                         monitor_factory=monitor_factory)
