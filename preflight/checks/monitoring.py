"""Monitoring readiness: the event directory, tracker credentials, and the alert rules."""

from __future__ import annotations

import netrc

from ..presets import RATE_RULE_METRICS
from ..registry import Context, Rule, check
from ..result import Outcome, failed, passed, skipped, warned
from ..spec import Spec
from ._framework import launched_by_framework
from ._relations import Findings, user_set
from ._util import writable_dir


@check("monitor.run_dir", "Run directory is writable", "node", rules=(
    Rule("run.run_dir", ("machine: a writable directory",), "fail", "writable, or creatable"),
))
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


@check("monitor.wandb", "Tracker credentials for a headless run", "node", rules=(
    Rule("monitoring.wandb.mode", ("monitoring.sinks", "machine: WANDB_API_KEY or ~/.netrc"), "fail",
         "online mode with the wandb sink needs an API key on the node, or a headless launch hangs at login"),
))
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


def _rule_findings(spec: Spec, rules: list[dict], f: Findings) -> list[str]:
    """What is wrong with the alert rules against the run; returns notes on built-in rules."""
    ev, steps = int(spec.get("training.eval_interval")), int(spec.get("training.max_steps"))
    budget = int(spec.get("training.max_response_tokens"))
    own, notes = user_set(spec, "monitoring.rules"), []
    for r in rules:
        rid, metric, threshold, every = r["id"], r["metric"], float(r["threshold"]), int(r["every_steps"])
        if metric in RATE_RULE_METRICS and r["op"] != "spike" and not 0 <= threshold <= 1:
            f.fail(f"{rid}: threshold {threshold:g} on {metric}, a rate in [0, 1]: the rule never fires, or always",
                   f"give {rid}'s threshold as a fraction (0.6, not 60)")
        if metric == "pass_rate" and every % ev:
            f.warn(f"{rid} every {every} steps reads validation results made every {ev}",
                   f"set every_steps of {rid} to a multiple of {ev}")
        if every > steps:
            f.warn(f"{rid} every {every} steps > max_steps {steps}: it is never evaluated",
                   f"set every_steps of {rid} at most {steps}")
        if metric == "gen_len_mean" and r["op"] in (">", ">=") and threshold >= budget:
            text = (f"{rid}: mean length > {threshold:,.0f} tokens can never happen under max_response_tokens "
                    f"{budget:,}")
            if own:
                f.warn(text, f"set {rid}'s threshold under {budget:,} (e.g. {int(budget * 0.9):,}); "
                       "truncation_rate watches the budget itself")
            else:
                notes.append(text + " (built-in rule; truncation_high watches the budget)")
    return notes


@check("monitor.rules", "Alert rules read fresh metrics", "static", rules=(
    Rule("monitoring.rules", ("training.eval_interval",), "warn",
         "pass-rate rules every multiple of eval_interval: they read validation results"),
    Rule("monitoring.rules", ("training.max_steps",), "warn", "every_steps at most max_steps, or never evaluated"),
    Rule("monitoring.rules", ("training.max_response_tokens",), "warn",
         "a gen_len_mean threshold under the response budget, or the rule never fires"),
    Rule("monitoring.rules", (), "fail", "thresholds on rates (pass_rate, utilization, truncation_rate) in [0, 1]"),
))
def rules(ctx: Context) -> Outcome:
    """The alert rules against the run: a pass-rate rule reads validation results, so its cadence
    (every_steps) should be a multiple of training.eval_interval, else it judges a stale value or
    none (warns); a rule evaluated less often than max_steps never runs (warns); a threshold on a
    rate outside [0, 1] (60 for 60 %) never fires or always fires (fails); a mean-length threshold
    at or above max_response_tokens never fires (warns for rules the spec writes; a note for the
    built-in table, whose truncation_high rule watches the budget). Skipped for a run a framework
    launches (trainer:): the rules read the built-in runner's events.jsonl, which it does not write."""
    skip = launched_by_framework(ctx, "the alert rules' cadence (they read events.jsonl)")
    if skip is not None:
        return skip
    rules = ctx.spec.get("monitoring.rules") or []
    if not rules:
        return warned("no alert rules", "the default dashboard rules, or your own",
                      "remove monitoring.rules to get the built-in table (pass rate, loss, utilization, length, truncation)")
    f = Findings()
    notes = _rule_findings(ctx.spec, rules, f)
    found = f"{len(rules)} rules: " + ", ".join(r["id"] for r in rules)
    if notes:
        found += "; " + "; ".join(notes)
    return f.outcome(found, "rules on fresh metrics, with thresholds they can reach")
