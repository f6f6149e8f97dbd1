"""Which runner a check is about. Checks about the built-in runner only skip, and say why, for a spec
whose run a framework launches (trainer:); a framework's own checks read its resolved configuration
(trainer.config) through ``framework_config``, which refuses to judge one missing its key fields."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..registry import Context
from ..result import Outcome, errored, skipped


def launched_by_framework(ctx: Context, what: str) -> Outcome | None:
    """A skip naming the framework when ``trainer.framework`` is set, else None (the check runs).
    ``what`` says what the check would have judged, e.g. "the built-in runner's data and reward"."""
    framework = ctx.spec.framework
    if framework is None:
        return None
    return skipped(f"the run is launched by {framework}; {what} is the built-in runner's, which does not run "
                   f"(the trainer.{framework}.* checks judge {framework}'s own configuration)")


def framework_config(ctx: Context, framework: str, label: str, required: Iterable[str],
                     defaults_from: str) -> dict[str, Any] | Outcome:
    """trainer.config of a ``framework`` run; a skip for any other spec, and an error when one of
    the ``required`` keys is missing (a hand-edited config judged with guessed values could pass
    what fails). ``defaults_from`` names where `preflight import` takes the defaults."""
    if ctx.spec.get("trainer.framework") != framework:
        return skipped(f"not a{'n' if label[0] in 'AEIOU' else ''} {label} run (trainer.framework is not "
                       f"{framework})")
    config = dict(ctx.spec.get("trainer.config") or {})
    missing = [k for k in required if config.get(k) is None]
    if missing:
        return errored(f"trainer.config has no {', '.join(missing)}",
                       f"write the spec with `preflight import {framework}` (it fills in every {defaults_from} "
                       "default)")
    return config
