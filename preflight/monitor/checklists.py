"""The two live checklists of docs/reference.md sections 3 and 4, judged from the run's events.

during_training: loss is stable; performance trend is improving; resource utilization is
monitored; checkpoints are saved on schedule; anomalies are detected early and answered.
optimization: hyperparameters inside the ranges; dynamic batch sizing applied; data pipeline not
the bottleneck; distributed-training efficiency checked; model architecture reviewed.

Each item is pass | warn | fail | pending (not enough evidence yet) with the evidence in words.
Items are computed on demand from the RunState, never per event.

Manual sign-offs live in RUN_DIR/signoffs.json (``sign_off``; on the command line
``preflight monitor RUN_DIR --sign-off ITEM --by NAME --note TEXT``). "Model architecture
reviewed" is a sign-off and nothing else. A sign-off on another optimization item turns its
pending or warn into pass, with the evidence kept; it never hides a fail. ``ack:RULE`` answers the
open anomalies of an alert rule, for alerts a person has looked into.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PreflightError
from ..rundir import SIGNOFFS_FILE, attestation_path
from .rules import SPIKE_MIN_POINTS, RuleEngine, format_bytes
from .settings import MonitorSettings
from .state import RECENT, Anomaly, RunState

if TYPE_CHECKING:
    from collections.abc import Callable

STATUSES = ("pass", "warn", "fail", "pending")
DURING_TRAINING = {
    "loss_stable": "Loss is stable",
    "performance_improving": "Performance trend is improving",
    "utilization_watched": "Resource utilization is monitored",
    "checkpoint_on_schedule": "Checkpoints are saved on schedule",
    "anomalies_answered": "Anomalies are detected and answered",
}
OPTIMIZATION = {
    "hyperparameters_in_range": "Hyperparameters are inside the field's ranges",
    "dynamic_batch_sizing": "Dynamic batch sizing is applied",
    "data_pipeline": "Data pipeline is not the bottleneck",
    "distributed_efficiency": "Distributed-training efficiency is checked",
    "architecture_reviewed": "Model architecture is reviewed",
}
MIN_LOSS_POINTS = SPIKE_MIN_POINTS  # steps with a loss before stability can be judged
DROP = 0.05  # a validation pass rate this much below the one before is a performance drop
UTIL_TARGET = 0.70  # used when the spec has no utilization rule
DATA_WAIT_WARN, DATA_WAIT_FAIL = 0.2, 0.5  # share of a step spent waiting for data
BATCH_GROWTH = 1.2  # docs/reference.md section 4: next = min(current * 1.2, max_batch_size)


@dataclass(frozen=True)
class ChecklistItem:
    id: str
    title: str
    status: str  # pass | warn | fail | pending
    evidence: str


# --- sign-offs ------------------------------------------------------------------------------------


def sign_off(run_dir: Path | str, item_id: str, by: str, note: str = "",
             engine_rules: list[str] | None = None) -> Path:
    """Record a manual sign-off in RUN_DIR/signoffs.json (replacing an earlier one for the item).

    ``item_id`` is an optimization item (architecture_reviewed, ...) or ``ack:RULE``. Raises a
    PreflightError with the fix for an unknown item, a missing name or an unwritable directory.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PreflightError(f"{run_dir}: no such run directory; sign-offs are stored in the run's "
                             "directory (run.run_dir)")
    if item_id not in OPTIMIZATION and not item_id.startswith("ack:"):
        known = ", ".join(OPTIMIZATION)
        raise PreflightError(f"--sign-off {item_id!r}: not a sign-off item; use one of {known}, "
                             "or ack:RULE to answer an alert rule")
    if item_id.startswith("ack:") and engine_rules is not None and item_id[4:] not in engine_rules:
        raise PreflightError(f"--sign-off {item_id!r}: no alert rule {item_id[4:]!r}; rules: "
                             f"{', '.join(engine_rules)}")
    if not by.strip():
        raise PreflightError("a sign-off needs the name of who signs (--by NAME)")
    path = run_dir / SIGNOFFS_FILE
    current = SignOffs(run_dir).load()
    current[item_id] = {"by": by.strip(), "note": note.strip(),
                        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"version": 1, "signoffs": current}, indent=2) + "\n",
                       encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise PreflightError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def default_signer() -> str:
    """Who signs off when no name is given: the login name (the CLI's --by and the console)."""
    import getpass  # here, not at the top: `preflight check` loads this module

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return "unknown"


class SignOffs:
    """RUN_DIR/signoffs.json, re-read only when it changes. A broken file reads as no sign-offs
    (and ``problem`` says why), never as an exception."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / SIGNOFFS_FILE
        self.problem: str | None = None
        self._stamp: tuple[int, int] | None = None
        self._cached: dict[str, dict[str, str]] = {}

    def load(self) -> dict[str, dict[str, str]]:
        try:
            st = self.path.stat()
        except OSError:
            self._stamp, self._cached, self.problem = None, {}, None
            return {}
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return dict(self._cached)
        self._stamp = stamp
        try:
            body = json.loads(self.path.read_text(encoding="utf-8"))
            entries = body["signoffs"]
            if not isinstance(entries, dict):
                raise TypeError("'signoffs' is not an object")
            self._cached = {str(k): {"by": str(v.get("by", "")), "note": str(v.get("note", "")),
                                     "time": str(v.get("time", ""))}
                            for k, v in entries.items() if isinstance(v, dict)}
            self.problem = None
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            self._cached = {}
            self.problem = (f"{self.path} is unreadable ({type(exc).__name__}: {exc}); sign-offs "
                            "ignored until it is fixed or written again with --sign-off")
        return dict(self._cached)


def _signed(entry: dict[str, str]) -> str:
    note = f": {entry['note']}" if entry.get("note") else ""
    return f"signed off by {entry['by']} at {entry['time']}{note}"


# --- evaluation -----------------------------------------------------------------------------------


def evaluate_checklists(state: RunState, settings: MonitorSettings, engine: RuleEngine,
                        signoffs: dict[str, dict[str, str]]) -> dict[str, list[ChecklistItem]]:
    ctx = _Context(state, settings, engine, signoffs)
    during = [_item(i, DURING_TRAINING, fn(ctx)) for i, fn in _DURING.items()]
    optimization = []
    for item_id, fn in _OPTIMIZATION.items():
        status, evidence = fn(ctx)
        entry = signoffs.get(item_id)
        if entry is not None and status in ("pending", "warn") and item_id != "architecture_reviewed":
            status, evidence = "pass", f"{evidence}; {_signed(entry)}"
        optimization.append(_item(item_id, OPTIMIZATION, (status, evidence)))
    return {"during_training": during, "optimization": optimization}


def _item(item_id: str, titles: dict[str, str], result: tuple[str, str]) -> ChecklistItem:
    return ChecklistItem(item_id, titles[item_id], result[0], result[1])


@dataclass
class _Context:
    state: RunState
    settings: MonitorSettings
    engine: RuleEngine
    signoffs: dict[str, dict[str, str]]

    @property
    def last(self) -> int:
        return self.state.last_step if self.state.last_step is not None else 0

    def util_target(self) -> float:
        for rule in self.engine.rules:
            if rule.field == "utilization" and rule.op in ("<", "<="):
                return rule.threshold
        return UTIL_TARGET

    def recent_util(self) -> list[float]:
        return self.state.recent("utilization")


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _pct(x: float, against: float | None = None) -> str:
    """x as a whole percentage; with one decimal when it would read the same as ``against``
    ("79.6 %, below the 80 % target", never "80 %, below the 80 % target")."""
    whole = f"{x * 100:.0f}%"
    if against is not None and x != against and whole == f"{against * 100:.0f}%":
        return f"{x * 100:.1f}%"
    return whole


# during training -----------------------------------------------------------------------------------


def _loss_stable(ctx: _Context) -> tuple[str, str]:
    state = ctx.state
    losses = state.recent("loss")
    spikes = [r for r in ctx.engine.step_rules if r.field == "loss" and r.spike]
    bad = state.last_nonfinite("loss")
    if bad is not None:
        return "fail", (f"the loss was not finite (NaN or infinity) at step {bad}; "
                        "check numerical stability and roll back to the last good checkpoint")
    recent_spikes = [r for r in spikes if r.last_fired is not None and ctx.last - r.last_fired < RECENT]
    if recent_spikes:
        where = ", ".join(f"{r.id} at step {r.last_fired}" for r in recent_spikes)
        open_ = [r for r in recent_spikes if r.id in state.open_anomalies]
        if open_:
            return "fail", f"loss spike ({where}) not answered yet; adjust the learning rate"
        return "warn", f"loss spike in the last {RECENT} steps ({where}), answered"
    if len(losses) < MIN_LOSS_POINTS:
        return "pending", f"{len(losses)} of {MIN_LOSS_POINTS} steps with a loss so far"
    ordered = sorted(losses)
    median = ordered[len(ordered) // 2]
    watched = f"watched by {', '.join(r.id for r in spikes)}" if spikes else "no spike rule in the spec"
    return "pass", (f"no spike or non-finite loss in the last {len(losses)} steps; median "
                    f"{median:.4g}, range {ordered[0]:.4g} .. {ordered[-1]:.4g} ({watched})")


def _performance_improving(ctx: _Context) -> tuple[str, str]:
    vals = ctx.state.validations
    if len(vals) < 2:
        return "pending", (f"{len(vals)} validation result{'s' if len(vals) != 1 else ''} so far; "
                           f"the trend needs 2 (validation every {ctx.settings.eval_interval} steps)")
    k = max(1, min(3, len(vals) // 2))
    recent = _mean([v[2] for v in vals[-k:]])
    before = _mean([v[2] for v in vals[-2 * k:-k]])
    delta = recent - before
    best = max(vals, key=lambda v: v[2])
    span = (f"validation pass rate {before * 100:.1f}% -> {recent * 100:.1f}% "
            f"(mean of {k} result{'s' if k > 1 else ''} each, up to step {vals[-1][0]}; best "
            f"{best[2] * 100:.1f}% at step {best[0]})")
    if delta > ctx.settings.min_delta:
        return "pass", f"improving: {span}"
    if delta <= -DROP:
        return "fail", f"performance dropped: {span}; look for instability (loss, truncation)"
    if delta < -ctx.settings.min_delta:
        return "warn", f"slipping: {span}"
    return "warn", f"flat (within {ctx.settings.min_delta:g}): {span}"


def _utilization_watched(ctx: _Context) -> tuple[str, str]:
    state = ctx.state
    seen = len(state.recent_steps)
    if seen == 0:
        return "pending", "no step events yet"
    measured = ctx.recent_util()
    if not measured:
        if seen < 10:
            return "pending", f"utilization not reported in the first {seen} steps"
        if state.external:
            return "fail", (f"utilization not reported in the last {seen} steps: this trainer does "
                            "not log it; follow with `preflight monitor PATH --sample-gpus` on the "
                            "training node")
        return "fail", (f"utilization not reported in the last {seen} steps: nothing watches the "
                        "devices (NVML unavailable?)")
    target = ctx.util_target()
    mean = _mean(measured)
    util_source = state.latest("utilization_source")
    source = f" ({util_source})" if isinstance(util_source, str) else ""
    over = f"mean {_pct(mean, target)}{source} over the last {len(measured)} measured steps"
    if mean < target:
        return "warn", f"{over}, below the {_pct(target)} target: adjust the batch size"
    return "pass", f"{over}; target {_pct(target)}"


def _checkpoint_on_schedule(ctx: _Context) -> tuple[str, str]:
    interval = ctx.settings.save_interval
    state = ctx.state
    if state.last_step is None:
        return "pending", "no step events yet"
    ckpt = state.latest_checkpoint
    at = ckpt.get("step") if ckpt else None
    at = at if isinstance(at, int) else None
    gap = ctx.last - (at if at is not None else 0)
    if at is None and state.checkpoint_note:
        return "pending", state.checkpoint_note
    if at is None and ctx.last < interval:
        return "pending", f"first checkpoint due at step {interval} (now at step {ctx.last})"
    if at is None:
        what = f"no checkpoint in {gap} steps"
    else:
        size = ckpt.get("bytes") if ckpt else None
        secs = ckpt.get("seconds") if ckpt else None
        extra = []
        if isinstance(size, (int, float)):
            extra.append(format_bytes(size))
        if isinstance(secs, (int, float)):
            extra.append(f"written in {secs:.1f} s")
        what = (f"last checkpoint at step {at}, {gap} steps ago"
                + (f" ({', '.join(extra)})" if extra else ""))
    expected = f"save interval {interval} steps"
    if gap <= interval:
        return "pass", f"{what}; {expected}"
    if gap <= 2 * interval:
        return "warn", f"overdue: {what}; {expected}"
    return "fail", f"{what}; {expected}: check the disk and the checkpoint writer"


def _anomalies_answered(ctx: _Context) -> tuple[str, str]:
    state = ctx.state
    if state.last_step is None and not state.open_anomalies:
        return "pending", "no step events yet"
    acked: list[tuple[Anomaly, dict[str, str]]] = []
    open_: list[tuple[Anomaly, None]] = []
    for key, anomaly in state.open_anomalies.items():
        entry = ctx.signoffs.get(f"ack:{key}")
        if entry is not None:
            acked.append((anomaly, entry))
        else:
            open_.append((anomaly, None))
    answered = state.anomalies_answered + len(acked)
    if not open_:
        if state.anomalies_total == 0:
            return "pass", f"no anomalies in {state.steps_seen} steps"
        acks = "; ".join(f"{a.key} acknowledged, {_signed(e)}" for a, e in acked)
        return "pass", f"{answered} of {state.anomalies_total} anomalies answered" + (
            f" ({acks})" if acks else "")
    # An anomaly gets the rule's cooldown (at least a validation interval) to be answered.
    def window(key: str) -> int:
        rule = next((r for r in ctx.engine.rules if r.id == key), None)
        return max(rule.cooldown if rule else 0, ctx.settings.eval_interval, 1)

    described = "; ".join(f"{a.key} ({a.source}) since step {a.step}" for a, _ in open_)
    hint = ("answer with an action event, or acknowledge with "
            "`preflight monitor RUN_DIR --sign-off ack:RULE --by NAME --note WHY`")
    late = [a for a, _ in open_ if ctx.last - a.step > window(a.key)]
    if late:
        return "fail", f"unanswered: {described}; {hint}"
    return "warn", f"open: {described}; {hint}"


_DURING: dict[str, Callable[[_Context], tuple[str, str]]] = {
    "loss_stable": _loss_stable,
    "performance_improving": _performance_improving,
    "utilization_watched": _utilization_watched,
    "checkpoint_on_schedule": _checkpoint_on_schedule,
    "anomalies_answered": _anomalies_answered,
}


# optimization -------------------------------------------------------------------------------------


def _hyperparameters(ctx: _Context) -> tuple[str, str]:
    params = ctx.settings.hyperparameters
    if not params:
        return "pending", f"no hyperparameters to judge in {ctx.settings.source}"
    outside = [p for p in params if not p.band.contains(p.value)]
    lr = ctx.state.latest("lr")
    live = f"; lr now {lr:.3g}" if isinstance(lr, (int, float)) else ""
    if outside:
        listed = "; ".join(f"{p.name} {p.value:g} outside {p.band.describe()}"
                           + (f" ({p.why})" if p.why else "") for p in outside)
        return "warn", f"{listed} (from {ctx.settings.source}){live}"
    listed = ", ".join(f"{p.name} {p.value:g}" for p in params)
    return "pass", f"{listed} inside the ranges (from {ctx.settings.source}){live}"


def _dynamic_batch_sizing(ctx: _Context) -> tuple[str, str]:
    state, settings = ctx.state, ctx.settings
    if state.batch_changes_total:
        changes = list(state.batch_changes)
        last = changes[-1]
        latest = (f"latest {last['old']} -> {last['new']} at step {last['step']}"
                  + (f" ({last['reason']})" if last["reason"] else ""))
        cap = settings.max_batch_size
        over = [c for c in changes if cap is not None and c["unit"] == "completions" and c["new"] > cap]
        if over:
            c = over[-1]
            return "warn", (f"{c['old']} -> {c['new']} at step {c['step']} went past the maximum "
                            f"batch size {cap}; {latest}")
        return "pass", f"{state.batch_changes_total} batch-size change(s), {latest}"
    measured = ctx.recent_util()
    if len(measured) < 10:
        return "pending", f"{len(measured)} steps with a utilization so far; the rule needs 10"
    target = settings.dynamic_batch_target
    mean = _mean(measured)
    size = state.latest("batch_size")
    batch = f"batch size {size} (prompts)" if isinstance(size, int) else "the batch size"
    low = mean < target and len(measured) >= RECENT // 2
    rule = f"min(current x {BATCH_GROWTH}, max batch size)"
    if not settings.dynamic_batch:
        if low:
            return "warn", (f"dynamic_batch.enabled is off and utilization is {_pct(mean, target)}, below "
                            f"the {_pct(target)} target over {len(measured)} steps: turn it on to grow "
                            f"the batch by {rule}")
        return "pass", f"not needed so far: utilization {_pct(mean, target)}, {batch} (dynamic_batch off)"
    if low:
        return "warn", (f"on, but {batch} never changed while utilization was {_pct(mean, target)} < "
                        f"{_pct(target)} (already at the maximum, or efficiency measured as throughput)")
    return "pass", f"on; not triggered: utilization {_pct(mean, target)} >= {_pct(target)}, {batch}"


def _data_pipeline(ctx: _Context) -> tuple[str, str]:
    waits = ctx.state.recent("data_wait_frac")  # optional field: share of a step spent on data
    if waits:
        wait = _mean(waits)
        over = f"waiting for data {_pct(wait)} of each step over the last {len(waits)} steps"
        if wait >= DATA_WAIT_FAIL:
            return "fail", f"{over}: parallelize loading and make preprocessing cheaper"
        if wait >= DATA_WAIT_WARN:
            return "warn", f"{over}: more loader workers or prefetching would help"
        return "pass", over
    measured = ctx.recent_util()
    if not measured:
        return "pending", "no data-wait or utilization figures yet"
    target = ctx.util_target()
    mean = _mean(measured)
    if mean >= target:
        return "pass", (f"devices busy {_pct(mean)} of each step (>= {_pct(target)}): data loading is "
                        "not holding them back")
    return "warn", (f"devices busy only {_pct(mean)} of each step: data loading may be the cause; "
                    "step events with data_wait_frac would tell")


def _distributed_efficiency(ctx: _Context) -> tuple[str, str]:
    world = ctx.state.world_size or ctx.settings.world_size
    if world is None:
        return "pending", "world size unknown until the run starts"
    if world == 1:
        return "pass", "one rank: no collectives to check"
    network = _network_results(ctx.settings.spec_path)
    if network:
        rank = {"warn": 1, "fail": 2, "error": 2}
        worst = max(network, key=lambda r: rank.get(r[1], 0))
        listed = ", ".join(f"{i} {s}" for i, s in network)
        status = {"fail": "fail", "error": "fail", "warn": "warn"}.get(worst[1], "pass")
        return status, f"{world} ranks; preflight network checks: {listed}"
    measured = ctx.recent_util()
    if not measured:
        return "pending", f"{world} ranks; no utilization figures yet"
    mean = _mean(measured)
    target = ctx.util_target()
    if mean >= target:
        return "pass", f"{world} ranks at {_pct(mean)} mean utilization (>= {_pct(target)})"
    return "warn", (f"{world} ranks at only {_pct(mean)} mean utilization: look for needless "
                    "synchronization and network bandwidth (preflight check --level active)")


def _network_results(spec_path: str | None) -> list[tuple[str, str]]:
    """network.* results of the spec's attestation, when the spec and attestation are known."""
    if not spec_path:
        return []
    path = attestation_path(spec_path)
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        results = body["report"]["results"]
        return [(str(r["id"]), str(r["status"])) for r in results
                if isinstance(r, dict) and str(r.get("id", "")).startswith("network.")]
    except (OSError, ValueError, TypeError, KeyError):
        return []


def _architecture_reviewed(ctx: _Context) -> tuple[str, str]:
    entry = ctx.signoffs.get("architecture_reviewed")
    if entry is None:
        return "pending", ("a manual sign-off: `preflight monitor RUN_DIR --sign-off "
                           "architecture_reviewed --by NAME --note WHAT-WAS-REVIEWED`")
    return "pass", _signed(entry)


_OPTIMIZATION: dict[str, Callable[[_Context], tuple[str, str]]] = {
    "hyperparameters_in_range": _hyperparameters,
    "dynamic_batch_sizing": _dynamic_batch_sizing,
    "data_pipeline": _data_pipeline,
    "distributed_efficiency": _distributed_efficiency,
    "architecture_reviewed": _architecture_reviewed,
}

