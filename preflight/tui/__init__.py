"""The Textual run console (`preflight tui`): the preflight screen and the live run console.

Only `preflight tui` imports this package (textual is never loaded by `preflight check`). Build
apps through the factories in ``preflight.tui.app`` (``preflight_app``, ``console_app``); tests
call them with fixed data and drive them with Textual's Pilot.
"""
