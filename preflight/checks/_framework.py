"""Which runner a check is about. Checks about the built-in runner only skip, and say why, for a spec
whose run a framework launches (trainer:); a framework's own checks read its resolved configuration
(trainer.config) through ``framework_config``, which refuses to judge one missing its key fields."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import UnreadableValue
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


def config_number(value: Any, field: str, default: float | None, kind: type = int,
                  minimum: float | None = None) -> Any:
    """A number the framework's configuration holds at ``field`` (``kind`` int or float): ``default``
    when absent (None), the number when it is one (or text that is one, as a command line gives
    it), else UnreadableValue, which the engine reports as this check's error naming the field.
    A word where a number belongs is never read as the default: guessing could pass what fails."""
    if value is None:
        return default
    expected = ("an integer" if kind is int else "a number") + (f" >= {minimum:g}" if minimum is not None else "")
    number: Any = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or (kind is int and float(number) != int(number)):
        raise UnreadableValue(field, value, expected)
    number = kind(number)
    if minimum is not None and number < minimum:
        raise UnreadableValue(field, value, expected)
    return number
