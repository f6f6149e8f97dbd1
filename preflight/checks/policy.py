"""The spec's own policy on its checks: waivers, severity overrides and extra checklist items.

A reference to a check that does not exist is refused when the spec loads (exit 2, naming the
place: preflight.checklist.unknown_references), since a typo would silently do nothing; this
check says what still applies of the rest.
"""

from __future__ import annotations

import datetime as dt

from ..registry import Context, Rule, check
from ..result import Outcome, passed, skipped, warned

AT_LOAD = "error: exit 2 when the spec loads"


@check("config.waivers", "Waivers still apply", "static", rules=(
    Rule("waivers", ("machine: today's date",), "warn",
         "an expired waiver no longer applies: the check it waived counts again"),
    Rule("waivers", (), AT_LOAD, "each waiver names a check that exists"),
    Rule("checklist.severity", (), AT_LOAD, "each severity override names a check that exists"),
    Rule("checklist.items", (), AT_LOAD, "each extra checklist item names checks that exist"),
))
def waivers(ctx: Context) -> Outcome:
    """Waivers whose expiry date has passed no longer apply, so the check they waived counts again
    (warns, naming them). Waivers, checklist.severity keys and checklist.items that name no check
    are refused before any check runs (exit 2, naming the place), since a typo would do nothing."""
    given = ctx.spec.get("waivers") or []
    if not given:
        return skipped("no waivers")
    expired = [f"{w['check']} (expired {w['expires']})" for w in given
               if w.get("expires") and dt.date.fromisoformat(w["expires"]) < ctx.today]
    found = f"{len(given)} waiver(s): " + ", ".join(w["check"] for w in given)
    if expired:
        return warned(f"expired: {', '.join(expired)}", "waivers that have not expired",
                      "fix what the check found, or renew the waiver with a new expires date and reason")
    return passed(found, "waivers that have not expired")
