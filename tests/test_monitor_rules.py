"""The alert rules: the dashboard of docs/reference.md section 3 as the default, cadence, cooldown, spikes."""

from __future__ import annotations

import random
from typing import Any

import pytest

from preflight.monitor.core import RunMonitor
from preflight.monitor.rules import RuleEngine
from preflight.monitor.stepevent import step_from_dict
from preflight.presets import DEFAULT_RULES


def step(n: int, **metrics: Any) -> dict[str, Any]:
    base = {"type": "step", "time": float(n), "step": n, "loss": 0.5, "pass_rate": 0.5,
            "gen_len_mean": 800.0, "truncation_rate": 0.01, "utilization": 0.9, "grad_norm": 1.0}
    base.update(metrics)
    return base


def validation(n: int, rate: float, hours: float | None = None) -> dict[str, Any]:
    return {"type": "validation", "time": float(n), "step": n, "pass_rate": rate, "n": 100,
            "device_hours": n / 100 if hours is None else hours}


def rule(**over: Any) -> dict[str, Any]:
    base = {"id": "util", "metric": "utilization", "op": "<", "threshold": 0.7, "every_steps": 1,
            "cooldown_steps": 100, "severity": "warn", "action": "adjust the batch size"}
    base.update(over)
    return base


def fired(engine: RuleEngine, events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    out = []
    for e in events:
        alerts = (engine.on_step(e["step"], step_from_dict(e)) if e["type"] == "step"
                  else engine.on_validation(e["step"], e))
        out += [(a.rule, a.step) for a in alerts or []]
    return out


@pytest.mark.parametrize(("metrics", "rule_id", "action"), [
    ({"utilization": 0.5}, "utilization_low", "adjust the batch size"),
    ({"gen_len_mean": 16_000.0}, "gen_len_high", "apply length control"),
    ({"truncation_rate": 0.12}, "truncation_high", "review stability"),
])
def test_the_default_dashboard_alerts_with_the_recommended_action(metrics: dict[str, Any], rule_id: str,
                                                                   action: str) -> None:
    m = RunMonitor("unused", spec=None)
    m.feed([step(1), step(2, **metrics)])
    snap = m.snapshot()
    [alert] = snap.alerts
    assert (alert.rule, alert.step, alert.action, alert.source) == (rule_id, 2, action, "monitor")
    assert rule_id in snap.in_alert
    m.feed([step(3)])  # back to normal: no longer in alert, the alert stays in the log
    assert rule_id not in m.snapshot().in_alert and len(m.snapshot().alerts) == 1


def test_the_pass_rate_rule_reads_validation_not_the_training_pass_rate() -> None:
    m = RunMonitor("unused")
    m.feed([step(n, pass_rate=0.1) for n in range(1, 100)])
    assert m.snapshot().alerts == []
    m.feed([validation(100, 0.55)])
    [alert] = m.snapshot().alerts
    assert alert.rule == "pass_rate_low" and alert.severity == "critical"
    assert alert.message == "validation pass rate 55.0% < 60.0% at step 100"
    assert alert.action == "change the algorithm / recipe"


def test_cooldown_keeps_a_lasting_condition_to_one_alert_per_window() -> None:
    engine = RuleEngine([rule(cooldown_steps=100)])
    events = [step(n, utilization=0.5) for n in range(1, 251)]
    assert fired(engine, events) == [("util", 1), ("util", 101), ("util", 201)]


def test_cooldown_zero_alerts_every_evaluation() -> None:
    engine = RuleEngine([rule(cooldown_steps=0)])
    assert fired(engine, [step(n, utilization=0.5) for n in range(1, 4)]) == [
        ("util", 1), ("util", 2), ("util", 3)]


def test_cadence_evaluates_at_each_multiple_only() -> None:
    engine = RuleEngine([rule(every_steps=10, cooldown_steps=0)])
    events = [step(n, utilization=0.5 if n in (5, 10, 13, 20) else 0.9) for n in range(1, 25)]
    assert fired(engine, events) == [("util", 10), ("util", 20)]


def test_cadence_never_skips_an_evaluation_when_steps_have_gaps() -> None:
    engine = RuleEngine([rule(every_steps=10, cooldown_steps=0)])
    events = [step(n, utilization=0.5) for n in (3, 9, 15, 17, 31, 32, 33, 40)]
    assert fired(engine, events) == [("util", 15), ("util", 31), ("util", 40)]


def test_a_validation_rule_every_100_steps_leaves_the_step_0_baseline_alone() -> None:
    engine = RuleEngine([r for r in DEFAULT_RULES if r["id"] == "pass_rate_low"])
    events = [validation(n, 0.3) for n in (0, 50, 100, 150, 200)]
    assert fired(engine, events) == [("pass_rate_low", 100), ("pass_rate_low", 200)]


def test_a_step_that_goes_back_re_arms_the_cooldown() -> None:
    engine = RuleEngine([rule(cooldown_steps=100)])
    events = [step(n, utilization=0.5) for n in (50, 51)] + [step(n, utilization=0.5) for n in (40, 41)]
    assert fired(engine, events) == [("util", 50), ("util", 40)]


def noisy_losses(n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [1.0 + rng.gauss(0, 0.02) for _ in range(n)]


def test_a_loss_spike_alerts_once_and_a_drop_or_a_slow_drift_does_not() -> None:
    spike = next(r for r in DEFAULT_RULES if r["id"] == "loss_spike")
    engine = RuleEngine([spike])
    losses = noisy_losses(200)
    losses[120] = 3.0  # sudden increase
    losses[150] = -2.0  # sudden decrease: not a spike
    got = fired(engine, [step(i, loss=x) for i, x in enumerate(losses)])
    assert got == [("loss_spike", 120)]
    drift = RuleEngine([spike])
    assert fired(drift, [step(i, loss=1.0 + i * 0.002 + x - 1.0)
                         for i, x in enumerate(noisy_losses(300, seed=1))]) == []


def test_a_spike_message_gives_the_robust_z_score() -> None:
    m = RunMonitor("unused")
    losses = noisy_losses(60)
    losses[59] = 2.0
    m.feed([step(i, loss=x) for i, x in enumerate(losses)])
    [alert] = m.snapshot().alerts
    assert alert.rule == "loss_spike" and alert.value is not None and alert.value > 6
    assert alert.message.startswith("loss spiked at step 59: robust z-score")
    assert alert.action == "adjust the learning rate"
    assert "loss_spike" in m.snapshot().in_alert  # a spike stays in alert for its cooldown


def test_no_spike_is_judged_before_enough_history() -> None:
    engine = RuleEngine([r for r in DEFAULT_RULES if r["id"] == "loss_spike"])
    assert fired(engine, [step(i, loss=x) for i, x in enumerate([1.0, 1.01, 50.0])]) == []


def test_a_non_finite_loss_is_a_spike_at_once() -> None:
    m = RunMonitor("unused")
    m.feed([step(1), step(2, loss=None, nonfinite=["loss"])])
    [alert] = m.snapshot().alerts
    assert alert.rule == "loss_spike" and alert.value is None
    assert "not finite" in alert.message


def test_an_unmeasured_value_gives_no_verdict() -> None:
    m = RunMonitor("unused")
    m.feed([step(1, utilization=None), step(2, utilization=None, nonfinite=["utilization"])])
    assert m.snapshot().alerts == []


def test_spec_rules_replace_the_defaults() -> None:
    engine = RuleEngine([rule(id="grad", metric="grad_norm", op=">=", threshold=5.0,
                              action="check clipping")])
    assert fired(engine, [step(1, grad_norm=4.9, utilization=0.1), step(2, grad_norm=5.0)]) == [
        ("grad", 2)]


def test_metric_loss_spike_compares_the_z_score_with_its_own_op() -> None:
    engine = RuleEngine([rule(id="z", metric="loss_spike", op=">", threshold=4.0, cooldown_steps=0)])
    losses = noisy_losses(80)
    losses[70] = 1.2  # about 10 robust z above
    assert fired(engine, [step(i, loss=x) for i, x in enumerate(losses)]) == [("z", 70)]


def test_an_unknown_metric_or_op_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown metric 'reward'.*known: loss"):
        RuleEngine([rule(metric="reward")])
    with pytest.raises(ValueError, match="unknown op '=='"):
        RuleEngine([rule(op="==")])


def test_a_field_of_the_wrong_type_is_a_bad_event_and_monitoring_goes_on() -> None:
    m = RunMonitor("unused")
    m.feed([step(1, utilization="busy"), {**step(2), "step": "two"}, step(3, loss=[1]),
            step(4, utilization=0.2)])
    snap = m.snapshot()
    assert snap.malformed_lines == 3
    assert [a.rule for a in snap.alerts] == ["utilization_low"] and snap.last_step == 4
    assert any("step must be an integer" in msg for _, msg in snap.malformed_samples)


def test_alerts_written_by_the_run_are_shown_with_their_source() -> None:
    m = RunMonitor("unused")
    m.feed([step(1), {"type": "alert", "time": 2.0, "step": 1, "rule": "loss_spike",
                      "message": "loss 9.1 is 12 robust z over the median", "severity": "critical",
                      "action": "rolling back"}])
    [alert] = m.snapshot().alerts
    assert (alert.source, alert.metric, alert.action) == ("run", "loss", "rolling back")


def test_a_spike_the_run_already_reported_is_listed_once() -> None:
    m = RunMonitor("unused")
    losses = noisy_losses(60)
    events = [step(i, loss=x) for i, x in enumerate(losses)]
    run_alert = {"type": "alert", "time": 59.0, "step": 59, "rule": "loss_spike", "severity": "warn",
                 "message": "loss_spike: loss 3 has robust z-score 99", "action": "update applied"}
    events[59:] = [run_alert, step(59, loss=3.0)]  # the runner writes its alert before the step
    m.feed(events)
    [alert] = m.snapshot().alerts
    assert alert.source == "run" and alert.action == "update applied"
    assert "loss_spike" in m.snapshot().in_alert  # the monitor's own rule saw it too
