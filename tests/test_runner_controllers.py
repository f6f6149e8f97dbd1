"""The runner's automatic decisions (runner.controllers), driven with planted numbers: the stability
guard (skip, rollback, spike alert), early stopping, and the dynamic batch size."""

from __future__ import annotations

import math
import random

import pytest

from runner.controllers import (
    DynamicBatch,
    EarlyStopping,
    MetricWindow,
    StabilityGuard,
    ThroughputEfficiency,
    Verdict,
    next_batch_size,
    robust_z,
    scaled_lr,
)

NAN = float("nan")


def _noisy_losses(n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [1.0 + rng.gauss(0, 0.05) for _ in range(n)]


# --- stability ------------------------------------------------------------------------------------


def test_a_non_finite_step_is_skipped_and_a_streak_of_them_rolls_back():
    guard = StabilityGuard(nonfinite_limit=3)
    first = guard.check(NAN, 1.0)
    assert first.skip and not first.rollback and "non_finite" in first.cause
    assert guard.check(0.5, math.inf).skip  # an infinite gradient norm counts too
    third = guard.check(NAN, NAN)
    assert third.skip and third.rollback and "3 in a row" in third.cause


def test_a_finite_step_breaks_the_non_finite_streak():
    guard = StabilityGuard(nonfinite_limit=2)
    assert not guard.check(NAN, 1.0).rollback
    assert guard.check(0.9, 1.0) == Verdict()  # a plain "carry on"
    assert not guard.check(NAN, 1.0).rollback


def test_rollbacks_lower_the_learning_rate_by_the_factor_and_compound():
    guard = StabilityGuard(lr_factor=0.5)
    assert guard.rolled_back() == 0.5
    assert guard.rolled_back() == 0.25
    assert guard.carry() == {"lr_scale": 0.25, "rollbacks": 2}


def test_a_loss_spike_raises_an_alert_and_is_applied_by_default():
    guard = StabilityGuard(spike_threshold=6.0, window=20)
    for loss in _noisy_losses(20):
        assert guard.check(loss, 1.0).alert is False
    verdict = guard.check(5.0, 1.0)
    assert verdict.alert and not verdict.skip and not verdict.rollback
    assert verdict.z is not None and verdict.z > 6 and "loss_spike" in verdict.cause


def test_with_spike_action_rollback_a_spike_skips_the_update_and_rolls_back():
    guard = StabilityGuard(spike_threshold=6.0, window=20, spike_action="rollback")
    for loss in _noisy_losses(20):
        guard.check(loss, 1.0)
    verdict = guard.check(5.0, 1.0)
    assert verdict.alert and verdict.skip and verdict.rollback


def test_no_spike_is_judged_before_the_window_has_enough_losses():
    guard = StabilityGuard(window=50, min_history=8)
    for loss in [1.0, 1.01, 0.99]:
        guard.check(loss, 1.0)
    assert not guard.check(100.0, 1.0).alert


def test_ordinary_noise_is_not_a_spike():
    guard = StabilityGuard(spike_threshold=6.0, window=50)
    alerts = [guard.check(loss, 1.0).alert for loss in _noisy_losses(500, seed=3)]
    assert not any(alerts)


def test_robust_z_uses_the_mean_deviation_when_the_mad_is_zero():
    history = [1.0] * 9 + [2.0]  # MAD 0: more than half the values equal the median
    assert robust_z(1.0, history) == 0.0
    assert math.isfinite(robust_z(3.0, history)) and robust_z(3.0, history) > 6


def test_a_restored_guard_decides_exactly_as_the_original():
    losses = _noisy_losses(30) + [NAN, 1.0, 4.0, NAN, NAN, NAN]
    original = StabilityGuard(nonfinite_limit=3, window=10)
    for loss in losses[:15]:
        original.check(loss, 1.0)
    copy = StabilityGuard(nonfinite_limit=3, window=10)
    copy.load_state_dict(original.state_dict())
    assert [original.check(x, 1.0) for x in losses[15:]] == [copy.check(x, 1.0) for x in losses[15:]]


def test_an_unknown_spike_action_is_refused():
    with pytest.raises(ValueError, match="spike_action"):
        StabilityGuard(spike_action="ignore")


# --- early stopping ---------------------------------------------------------------------------------


def test_early_stopping_stops_after_patience_evaluations_on_a_plateau():
    stop = EarlyStopping(patience=3, min_delta=0.001)
    verdicts = [stop.update(step, value) for step, value in
                [(10, 0.40), (20, 0.50), (30, 0.5005), (40, 0.499), (50, 0.50)]]
    assert verdicts == [False, False, False, False, True]
    assert stop.best == 0.50 and stop.best_step == 20  # +0.0005 is below min_delta


def test_early_stopping_patience_restarts_on_a_real_improvement():
    stop = EarlyStopping(patience=2, min_delta=0.01)
    assert not stop.update(1, 0.1)
    assert not stop.update(2, 0.1)
    assert not stop.update(3, 0.2)  # improvement: the count starts over
    assert not stop.update(4, 0.2)
    assert stop.update(5, 0.2)
    assert stop.best_step == 3


def test_early_stopping_in_min_mode_and_with_non_finite_values():
    stop = EarlyStopping(patience=2, min_delta=0.0, mode="min")
    assert not stop.update(1, 2.0)
    assert not stop.update(2, 1.5)
    assert not stop.update(3, NAN)  # counts as no improvement
    assert stop.update(4, 1.6)
    assert stop.best == 1.5


def test_a_stopped_run_stays_stopped_after_a_restore():
    stop = EarlyStopping(patience=1)
    stop.update(1, 0.5)
    stop.update(2, 0.5)
    again = EarlyStopping(patience=1)
    again.load_state_dict(stop.state_dict())
    assert again.stopped and again.best_step == 1


# --- dynamic batch size ----------------------------------------------------------------------------


@pytest.mark.parametrize("world,group", [(1, 2), (2, 2), (2, 16), (8, 16), (3, 5)])
def test_batch_grows_under_low_efficiency_up_to_the_maximum_and_keeps_divisibility(world, group):
    unit = world * group
    start, maximum = unit * 4, unit * 40 + unit // 2  # a maximum that is not a multiple itself
    batch = DynamicBatch(start, unit=unit, maximum=maximum, target=0.8, factor=1.2, every_steps=1)
    sizes = [start]
    for _ in range(60):
        new = batch.observe(0.1)  # forced low efficiency
        if new is not None:
            assert new > sizes[-1]
            sizes.append(new)
    assert all(s % unit == 0 and s <= maximum for s in sizes)
    assert sizes[-1] == (maximum // unit) * unit  # it reached the largest allowed size
    assert len(sizes) > 3
    # each change is at most x1.2, except the one-unit minimum step
    assert all(b <= max(math.floor(a * 1.2), a + unit) for a, b in zip(sizes, sizes[1:], strict=False))


def test_batch_stays_when_efficiency_meets_the_target():
    batch = DynamicBatch(64, unit=8, maximum=512, target=0.8, every_steps=1)
    assert [batch.observe(0.9) for _ in range(10)] == [None] * 10
    assert batch.batch_size == 64


def test_batch_decides_on_the_mean_of_every_steps_observations():
    batch = DynamicBatch(100, unit=10, maximum=1000, target=0.8, every_steps=4)
    assert [batch.observe(x) for x in (0.5, 0.6, 0.7)] == [None, None, None]
    assert batch.observe(0.6) == 120  # mean 0.6 < 0.8: min(100 x 1.2, 1000)
    assert batch.last_efficiency == pytest.approx(0.6)
    assert [batch.observe(x) for x in (0.9, 0.9, 0.9, 0.9)] == [None] * 4
    assert batch.observe(None) is None and batch.observe(NAN) is None  # no reading, no vote


def test_a_small_batch_still_grows_by_one_unit_where_x1_2_rounds_back():
    assert next_batch_size(8, 1.2, 64, 4) == 12  # 9.6 rounds down to 8: one unit more
    assert next_batch_size(60, 1.2, 64, 4) == 64
    assert next_batch_size(64, 1.2, 64, 4) == 64
    assert next_batch_size(8, 1.2, 10, 4) == 8  # the next multiple (12) would pass the maximum


def test_a_batch_not_divisible_by_world_and_group_is_refused():
    with pytest.raises(ValueError, match="multiple of 4"):
        DynamicBatch(10, unit=4, maximum=100)


def test_a_restored_batch_controller_continues_the_same_window():
    batch = DynamicBatch(40, unit=4, maximum=400, every_steps=3)
    batch.observe(0.1)
    batch.observe(0.1)
    again = DynamicBatch(40, unit=4, maximum=400, every_steps=3)
    again.load_state_dict(batch.state_dict())
    assert again.observe(0.1) == batch.observe(0.1) == 48


def test_learning_rate_rules_for_a_changed_batch():
    assert scaled_lr(1e-6, 64, 128, "none") == 1e-6
    assert scaled_lr(1e-6, 64, 128, "sqrt") == pytest.approx(1e-6 * math.sqrt(2))
    assert scaled_lr(1e-6, 64, 128, "linear") == pytest.approx(2e-6)
    with pytest.raises(ValueError, match="none, sqrt or linear"):
        scaled_lr(1e-6, 64, 128, "cubic")


def test_throughput_efficiency_is_relative_to_the_best_so_far():
    eff = ThroughputEfficiency()
    assert eff(100.0) == 1.0
    assert eff(50.0) == 0.5
    assert eff(200.0) == 1.0 and eff(100.0) == 0.5
    assert eff(0.0) is None and eff(NAN) is None


# --- metrics at evaluations -------------------------------------------------------------------------


def test_metric_window_reads_validation_or_averages_step_fields():
    val = MetricWindow("validation_accuracy")
    val.add_step({"loss": 3.0})
    assert val.at_eval(0.42) == 0.42 and val.mode == "max"
    loss = MetricWindow("training_loss")
    for x in (1.0, 2.0, NAN, 3.0):
        loss.add_step({"loss": x})
    assert loss.at_eval(0.9) == 2.0 and loss.mode == "min"
    assert loss.at_eval(0.9) is None  # nothing since the last evaluation
    unknown = MetricWindow("validation_loss")
    assert not unknown.known and unknown.at_eval(0.5) is None
