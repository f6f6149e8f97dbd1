"""The Textual run console (`preflight tui`): the preflight screen and the live run console.

Textual is loaded only by `preflight tui`: the command (``preflight.tui.command``) and the screen's
model (``preflight.tui.session``) import no Textual, and ``preflight.tui.app`` (which does) is
imported only once the console is about to open, so `preflight check` never pays for it. Build apps
through the factories in ``preflight.tui.app`` (``preflight_app``, ``console_app``); tests call them
with fixed data and drive them with Textual's Pilot.
"""
