"""Monitoring readiness: the event directory, tracker credentials, and the alert rules."""

from __future__ import annotations

import netrc

from ..registry import Context, check
from ..result import Outcome, failed, passed, skipped, warned
from ._util import writable_dir


@check("monitor.run_dir", "Run directory is writable", "node")
def run_dir(ctx: Context) -> Outcome:
    """run.run_dir (where events.jsonl and the monitor's state go) exists and is writable, or can be
    created."""
    return writable_dir(ctx, ctx.spec.run_dir, "set run.run_dir to a writable location")


def _netrc_has_wandb(ctx: Context) -> bool:
    path = ctx.probes.home / ".netrc"
    try:
        return netrc.netrc(str(path)).authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


@check("monitor.wandb", "Tracker credentials for a headless run", "node")
def wandb_credentials(ctx: Context) -> Outcome:
    """When wandb is a sink, an online run needs an API key (WANDB_API_KEY or ~/.netrc) or it hangs
    at a login prompt on a headless launch; offline or disabled mode needs none. The key is never
    printed."""
    if "wandb" not in (ctx.spec.get("monitoring.sinks") or []):
        return skipped("wandb is not among monitoring.sinks")
    env = ctx.probes.env
    mode = (env.get("WANDB_MODE") or ctx.spec.get("monitoring.wandb.mode") or "online").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return passed(f"W&B mode {mode}: no credentials needed", "an API key, or offline mode")
    if env.get("WANDB_API_KEY", "").strip():
        return passed("WANDB_API_KEY is set (not shown)", "an API key, or offline mode")
    if _netrc_has_wandb(ctx):
        return passed("an api.wandb.ai entry in ~/.netrc (not shown)", "an API key, or offline mode")
    return failed("no W&B API key (WANDB_API_KEY unset, no ~/.netrc entry)", "an API key, or offline mode",
                  "export WANDB_API_KEY (or run `wandb login`) on every node, or set monitoring.wandb.mode: "
                  "offline; a headless launch would otherwise hang at the login prompt")


@check("monitor.rules", "Alert rules read fresh metrics", "static")
def rules(ctx: Context) -> Outcome:
    """A pass-rate rule reads validation results, so its cadence (every_steps) should be a multiple
    of training.eval_interval; otherwise it judges a stale value or none."""
    rules = ctx.spec.get("monitoring.rules") or []
    if not rules:
        return warned("no alert rules", "the default dashboard rules, or your own",
                      "remove monitoring.rules to get the built-in table (pass rate, loss, utilization, length, truncation)")
    ev = int(ctx.spec.get("training.eval_interval"))
    stale = [r["id"] for r in rules if r["metric"] == "pass_rate" and r["every_steps"] % ev]
    found = f"{len(rules)} rules: " + ", ".join(r["id"] for r in rules)
    if stale:
        return warned(found, f"pass-rate rules every multiple of eval_interval ({ev})",
                      f"set every_steps of {', '.join(stale)} to a multiple of {ev}")
    return passed(found, "rules on fresh metrics")
