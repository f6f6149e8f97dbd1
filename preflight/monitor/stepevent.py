"""How the monitor holds a step event: only the fields it reads, as attributes.

Step events are nearly every line of events.jsonl, and decoding all of their ~20 fields into a
dict is most of the cost of reading a run. With msgspec a typed decoder builds ``StepEvent``
objects straight from the bytes and skips the fields the monitor never reads (about 2.5x faster
than decoding to dicts); the rare other event types still become dicts. Without msgspec, and for
step events handed to ``RunMonitor.feed`` as dicts, ``step_from_dict`` builds the same object.

Values are not validated here: a wrong type surfaces as a TypeError where the value is used, and
the monitor counts that event as bad.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

from ..rundir import EVENT_TYPES

# Every step-event field the monitor reads (rules, series, checklists). A field not listed here
# is not decoded: add it before reading it anywhere.
STEP_FIELDS = (
    "step", "time", "loss", "pass_rate", "gen_len_mean", "truncation_rate", "utilization",
    "grad_norm", "utilization_source", "lr", "batch_size", "device_hours", "nonfinite",
    "data_wait_frac",
)
OTHER_TYPES = tuple(t for t in EVENT_TYPES if t != "step")

decode_typed_lines: Callable[[bytes], list[Any]] | None
StepEvent: Any

try:
    import msgspec

    StepEvent = msgspec.defstruct(
        "StepEvent", [("step", Any), *((f, Any, None) for f in STEP_FIELDS if f != "step")],
        tag_field="type", tag="step", kw_only=True)
    # The other types decode to empty markers; their lines are then decoded again as dicts.
    MARKERS: tuple[type, ...] = tuple(
        msgspec.defstruct(f"Marker_{t}", [], tag_field="type", tag=t) for t in OTHER_TYPES)
    decode_typed_lines = msgspec.json.Decoder(Union[(StepEvent, *MARKERS)]).decode_lines  # noqa: UP007
except ImportError:  # pragma: no cover - exercised only where msgspec is missing
    MARKERS = ()
    decode_typed_lines = None

    class StepEvent:  # type: ignore[no-redef]
        __slots__ = STEP_FIELDS

        def __init__(self, **fields: Any) -> None:
            for name in STEP_FIELDS:
                setattr(self, name, fields.get(name))


def step_from_dict(event: dict[str, Any]) -> Any:
    """The StepEvent of a step event given as a dict (KeyError without a step)."""
    return StepEvent(**{name: event[name] if name == "step" else event.get(name) for name in STEP_FIELDS})
