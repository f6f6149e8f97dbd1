"""The ScaleRL curve fit: known parameters are recovered, noisy curves stay within stated
tolerances with honest bands, and predictions invert correctly."""

from __future__ import annotations

import numpy as np
import pytest

from preflight.monitor.core import RunMonitor
from preflight.monitor.curvefit import MIN_POINTS, fit_run

R0, A, B, C_MID = 0.2, 0.61, 1.5, 2000.0  # an 8B-dense-like asymptote (docs/reference.md section 8)


def curve(c: np.ndarray) -> np.ndarray:
    return R0 + (A - R0) / (1 + (C_MID / np.maximum(c, 1e-12)) ** B)


def validations(noise: float = 0.0, seed: int = 0, hours_max: float = 20_000.0,
                points: int = 81) -> list[tuple[int, float, float]]:
    hours = np.linspace(0.0, hours_max, points)
    rates = curve(hours) + np.random.default_rng(seed).normal(0.0, noise, points)
    rates[0] = R0  # the first validation is the starting pass rate
    return [(100 * i, float(h), float(r)) for i, (h, r) in enumerate(zip(hours, rates, strict=True))]


def test_exact_curve_parameters_are_recovered_to_a_tenth_of_a_percent() -> None:
    fit, note = fit_run(validations(), exclude_hours=1500)
    assert fit is not None, note
    assert abs(fit.A / A - 1) < 1e-3
    assert abs(fit.B / B - 1) < 1e-3
    assert abs(fit.C_mid / C_MID - 1) < 1e-3
    assert fit.R0 == R0
    assert fit.rmse < 1e-6


def test_noisy_curves_stay_within_tolerance_and_the_bands_cover_the_truth() -> None:
    # Noise of 1 point of pass rate (sd 0.01) on 80 validations: A within 0.02 every time,
    # B within 25 %, C_mid within 15 %; the 95 % band holds the true A in at least 80 % of runs.
    covered = 0
    seeds = range(25)
    for seed in seeds:
        fit, note = fit_run(validations(noise=0.01, seed=seed), exclude_hours=1500)
        assert fit is not None, note
        assert abs(fit.A - A) < 0.02
        assert abs(fit.B / B - 1) < 0.25
        assert abs(fit.C_mid / C_MID - 1) < 0.15
        assert fit.A_band[0] < fit.A < fit.A_band[1]
        covered += fit.A_band[0] <= A <= fit.A_band[1]
    assert covered >= 0.8 * len(seeds)


def test_more_noise_gives_a_wider_band() -> None:
    quiet, _ = fit_run(validations(noise=0.005, seed=1), exclude_hours=1500)
    loud, _ = fit_run(validations(noise=0.03, seed=1), exclude_hours=1500)
    assert quiet is not None and loud is not None
    assert (loud.A_band[1] - loud.A_band[0]) > 2 * (quiet.A_band[1] - quiet.A_band[0])


def test_the_early_part_is_left_out_and_not_enough_points_is_said_plainly() -> None:
    fit, note = fit_run(validations(hours_max=1900, points=20), exclude_hours=1500)
    assert fit is None
    assert note == (f"not enough points yet: 4 of {MIN_POINTS} validation results past the excluded "
                    "first 1,500 device hours")
    fit, _ = fit_run(validations(), exclude_hours=1500)
    assert fit is not None and fit.n_excluded == 6 and fit.n_points == 74


def test_by_default_the_first_tenth_of_the_budget_is_excluded() -> None:
    fit, _ = fit_run(validations(), budget_hours=40_000)
    assert fit is not None and fit.exclude_before_hours == 4000
    fit, _ = fit_run(validations())  # no budget: a tenth of the compute used so far
    assert fit is not None and fit.exclude_before_hours == 2000


def test_no_validation_yet() -> None:
    assert fit_run([]) == (None, "not enough points yet: no validation results")


def test_prediction_at_the_budget_and_compute_to_a_target() -> None:
    fit, note = fit_run(validations(noise=0.005, seed=2), budget_hours=40_000, target=0.55,
                        exclude_hours=1500)
    assert fit is not None
    truth_at_budget = float(curve(np.array([40_000.0]))[0])
    assert fit.predicted_at_budget == pytest.approx(truth_at_budget, abs=0.01)
    assert fit.predicted_band is not None
    assert fit.predicted_band[0] <= fit.predicted_at_budget <= fit.predicted_band[1]
    # the compute to the target lands on the target, and near the true curve's answer
    true_hours = C_MID / ((A - R0) / (0.55 - R0) - 1) ** (1 / B)
    assert fit.hours_to_target is not None and fit.hours_to_target_band is not None
    assert fit.predict(fit.hours_to_target) == pytest.approx(0.55, abs=1e-6)
    assert fit.hours_to_target == pytest.approx(true_hours, rel=0.1)
    assert fit.hours_to_target_band[0] < fit.hours_to_target < fit.hours_to_target_band[1]
    assert "at the 40,000 device hours budget" in note and "55% after" in note


def test_a_target_above_the_asymptote_is_not_reachable() -> None:
    fit, note = fit_run(validations(), target=0.7, exclude_hours=1500)
    assert fit is not None and fit.hours_to_target is None
    assert "not reachable on this curve: the asymptote A = 0.610" in fit.target_note
    assert "70%: not reachable" in note


def test_the_monitor_fits_validation_events_and_refits_only_on_new_points(tmp_path: object) -> None:
    m = RunMonitor("unused", exclude_hours=1500)
    events = [{"type": "validation", "time": 0.0, "step": s, "pass_rate": r, "n": 1000,
               "device_hours": h} for s, h, r in validations()]
    m.feed(events[:10])
    snap = m.snapshot()
    assert snap.fit is None and snap.fit_note.startswith("not enough points yet: 3 of 5")
    m.feed(events[10:])
    fit = m.snapshot().fit
    assert fit is not None and abs(fit.A / A - 1) < 1e-3
    assert m.snapshot().fit is fit  # cached until a new validation arrives


def test_a_run_that_starts_above_the_target_needs_no_compute() -> None:
    flat = [(100 * i, 0.1 * i, 0.9) for i in range(12)]
    fit, _ = fit_run(flat, target=0.6)
    assert fit is not None and fit.hours_to_target == 0.0
    assert fit.target_note == "at or above the target from the start"


@pytest.mark.parametrize("rates", [[0.0] * 12, [1.0] * 12, [0.9 - 0.05 * i for i in range(12)],
                                   [0.3 if i % 2 else 0.4 for i in range(12)]])
def test_degenerate_curves_give_finite_numbers(rates: list[float]) -> None:
    fit, note = fit_run([(100 * i, 0.1 * i + 0.01, r) for i, r in enumerate(rates)],
                        budget_hours=5, target=0.6)
    assert fit is not None, note
    values = [v for v in fit.__dict__.values() if isinstance(v, float)]
    values += [x for v in fit.__dict__.values() if isinstance(v, tuple) for x in v]
    assert all(np.isfinite(values)) and 0 <= fit.A <= 1
