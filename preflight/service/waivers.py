"""Waivers given at check time (``--waive CHECK_ID=REASON``, or typed in the console): one rule for
the reason, and a check id that must name a check that exists."""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any

from ..errors import UsageError
from ..rundir import MIN_REASON

BY_COMMAND_LINE = "command line"  # the "by" of a waiver given with --waive
WAIVE_EXAMPLE = "--waive network.link_speed='single rack, measured 25 Gbit/s'"


def reason_is_enough(reason: str) -> bool:
    """A waiver is recorded in the attestation: its reason must say something."""
    return len(reason.strip()) >= MIN_REASON


def make_waiver(check_id: str, reason: str, by: str) -> dict[str, Any]:
    """One waiver as the spec's ``waivers`` list holds it; refuses a reason too short to mean anything."""
    if not reason_is_enough(reason):
        raise UsageError(f"a waiver needs a reason of at least {MIN_REASON} characters "
                         "(it is recorded in the attestation)")
    return {"check": check_id.strip(), "reason": reason.strip(), "by": by}


def parse_waivers(items: list[str]) -> list[dict[str, Any]]:
    """``--waive CHECK_ID=REASON`` arguments as waivers (which checks they name is checked with the spec)."""
    out = []
    for item in items:
        check_id, sep, reason = item.partition("=")
        if not sep or not check_id.strip() or not reason_is_enough(reason):
            raise UsageError(f"--waive {item!r}: expected CHECK_ID=REASON with a reason of at least "
                             f"{MIN_REASON} characters, e.g. {WAIVE_EXAMPLE}")
        out.append(make_waiver(check_id, reason, BY_COMMAND_LINE))
    return out


def refuse_unknown_waivers(waivers: list[dict[str, Any]], known: list[str]) -> None:
    """A waiver naming no check would silently waive nothing: refuse it, with the closest id."""
    for w in waivers:
        if not any(fnmatch.fnmatchcase(k, w["check"]) for k in known):
            close = difflib.get_close_matches(w["check"], known, n=1)
            raise UsageError(f"--waive {w['check']}: no such check" + (f"; did you mean '{close[0]}'?" if close else ""))
