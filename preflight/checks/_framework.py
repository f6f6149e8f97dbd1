"""Checks about the built-in runner only: for a spec whose run a framework launches (trainer:), they
skip and say why, instead of judging a runner that will not run."""

from __future__ import annotations

from ..registry import Context
from ..result import Outcome, skipped


def launched_by_framework(ctx: Context, what: str) -> Outcome | None:
    """A skip naming the framework when ``trainer.framework`` is set, else None (the check runs).
    ``what`` says what the check would have judged, e.g. "the built-in runner's data and reward"."""
    framework = ctx.spec.framework
    if framework is None:
        return None
    return skipped(f"the run is launched by {framework}; {what} is the built-in runner's, which does not run "
                   f"(the trainer.{framework}.* checks judge {framework}'s own configuration)")
