"""Where the run is heading: the ScaleRL compute-performance curve (docs/reference.md section 8).

    R(C) = R0 + (A - R0) / (1 + (C_mid / C) ** B)

R is the validation pass rate after C device hours, R0 the pass rate at the start (the first
validation), A the asymptote, B the compute efficiency and C_mid the compute at half the gain.
Written in x = ln C it is a logistic, R0 + (A - R0) * sigmoid(B * (x - ln C_mid)), which is what is
fitted: least squares by Levenberg-Marquardt in numpy (from a grid of starting points; no scipy),
over the parameters (A, ln B, ln C_mid), with A kept in [0, 1].

As in the paper, the earliest part of the run is left out of the fit: by default the first 10 %
of the compute budget (the paper's 1.5K of about 16K GPU hours), or of the compute used so far when
the spec has no budget. Before MIN_POINTS validation results lie past that, there is no fit and
the note says how many there are.

Uncertainty comes from the fit's covariance (s^2 (J^T J)^-1): 95 % intervals for A, B and C_mid,
and, by the delta method, for the pass rate predicted at the budget and for the compute needed to
reach a target pass rate.

numpy is imported inside the functions: the monitor's modules load with `preflight`'s commands,
and only a fit needs it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

MIN_POINTS = 5
EXCLUDE_FRACTION = 0.1
Z95 = 1.959964
_MAX_ITER = 200
_STARTS = 4  # LM runs, from the best of the grid of starting points


@dataclass(frozen=True)
class CurveFit:
    A: float
    B: float
    C_mid: float
    R0: float
    A_band: tuple[float, float]  # 95 % intervals
    B_band: tuple[float, float]
    C_mid_band: tuple[float, float]
    n_points: int  # validation results in the fit
    n_excluded: int  # left out as the early part of the run
    exclude_before_hours: float
    rmse: float
    latest_hours: float
    budget_hours: float | None = None
    predicted_at_budget: float | None = None
    predicted_band: tuple[float, float] | None = None
    target: float | None = None
    hours_to_target: float | None = None
    hours_to_target_band: tuple[float, float] | None = None
    target_note: str = ""

    def predict(self, hours: float) -> float:
        """The fitted pass rate after ``hours`` device hours."""
        import numpy as np

        return _curve(np.array([hours], dtype=float), self.R0, self.A, self.B, self.C_mid)[0]


class NotEnoughPoints(ValueError):
    pass


def _curve(c: np.ndarray, r0: float, a: float, b: float, c_mid: float) -> np.ndarray:
    import numpy as np

    x = np.log(np.maximum(c, 1e-300))
    return r0 + (a - r0) * _sigmoid(b * (x - math.log(c_mid)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    import numpy as np

    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for large |z|
    return out


def _residuals_and_jacobian(theta: np.ndarray, x: np.ndarray, y: np.ndarray,
                            r0: float) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    a, log_b, m = theta
    b = math.exp(log_b)
    s = _sigmoid(b * (x - m))
    ds = s * (1.0 - s)
    gain = a - r0
    r = r0 + gain * s - y
    jac = np.empty((x.size, 3))
    jac[:, 0] = s
    jac[:, 1] = gain * ds * (x - m) * b
    jac[:, 2] = -gain * ds * b
    return r, jac


def _levenberg_marquardt(theta: np.ndarray, x: np.ndarray, y: np.ndarray,
                         r0: float) -> tuple[np.ndarray, float]:
    import numpy as np

    lam = 1e-3
    r, jac = _residuals_and_jacobian(theta, x, y, r0)
    cost = float(r @ r)
    for _ in range(_MAX_ITER):
        jtj = jac.T @ jac
        g = jac.T @ r
        step = None
        while lam < 1e12:
            try:
                step = np.linalg.solve(jtj + lam * np.diag(np.diag(jtj) + 1e-12), -g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            trial = theta + step
            trial[0] = min(max(trial[0], 0.0), 1.0)  # a pass rate's asymptote
            trial[1] = min(max(trial[1], -6.0), 4.0)  # B in [0.0025, 55]
            r_new, jac_new = _residuals_and_jacobian(trial, x, y, r0)
            new_cost = float(r_new @ r_new)
            if new_cost < cost:
                improvement = cost - new_cost
                theta, r, jac, cost = trial, r_new, jac_new, new_cost
                lam = max(lam / 10, 1e-12)
                break
            lam *= 10
        else:
            break
        if step is None or improvement <= 1e-15 * max(cost, 1e-30) or float(np.abs(step).max()) < 1e-10:
            break
    return theta, cost


def fit_curve(hours: Sequence[float], rates: Sequence[float], r0: float,
              exclude_before: float = 0.0) -> tuple[CurveFit, np.ndarray, np.ndarray]:
    """Fit A, B, C_mid to the points past ``exclude_before`` hours; returns the fit, the
    parameter vector (A, ln B, ln C_mid) and its covariance. Raises NotEnoughPoints."""
    import numpy as np

    c = np.asarray(hours, dtype=float)
    y = np.asarray(rates, dtype=float)
    keep = (c > exclude_before) & (c > 0) & np.isfinite(c) & np.isfinite(y)
    n_excluded = int(c.size - keep.sum())
    c, y = c[keep], y[keep]
    if c.size < MIN_POINTS:
        raise NotEnoughPoints(f"{c.size} of {MIN_POINTS} validation results past the excluded "
                              f"first {_hours(exclude_before)}")
    x = np.log(c)
    # Starting points on a grid; Levenberg-Marquardt runs from the few that fit best already.
    span = max(float(x.max() - x.min()), 1.0)
    top = float(y.max())
    starts = [np.array([a0, math.log(b0), m0])
              for m0 in np.linspace(float(x.min()) - 0.5 * span, float(x.max()) + 1.5 * span, 9)
              for b0 in (0.5, 1.0, 2.0, 4.0)
              for a0 in (top, top + 0.5 * (1.0 - top), 1.0)]
    costs = [float(np.square(_residuals_and_jacobian(t, x, y, r0)[0]).sum()) for t in starts]
    best: tuple[float, np.ndarray] | None = None
    for i in np.argsort(costs)[:_STARTS]:
        theta, cost = _levenberg_marquardt(starts[i], x, y, r0)
        if best is None or cost < best[0]:
            best = (cost, theta)
    assert best is not None
    cost, theta = best
    r, jac = _residuals_and_jacobian(theta, x, y, r0)
    dof = max(c.size - 3, 1)
    s2 = cost / dof
    try:
        cov = s2 * np.linalg.pinv(jac.T @ jac)
    except np.linalg.LinAlgError:  # pragma: no cover - pinv converges for finite input
        cov = np.full((3, 3), np.inf)
    sd = [float(v) for v in np.sqrt(np.clip(np.diag(cov), 0.0, None))]
    a, log_b, m = (float(v) for v in theta)
    fit = CurveFit(
        A=a, B=math.exp(log_b), C_mid=math.exp(m), R0=r0,
        A_band=(max(a - Z95 * sd[0], 0.0), min(a + Z95 * sd[0], 1.0)),
        B_band=_exp_band(log_b, sd[1]),
        C_mid_band=_exp_band(m, sd[2]),
        n_points=int(c.size), n_excluded=n_excluded, exclude_before_hours=exclude_before,
        rmse=math.sqrt(cost / c.size), latest_hours=float(c.max()),
    )
    return fit, theta, cov


def _exp_band(center: float, sd: float) -> tuple[float, float]:
    lo, hi = center - Z95 * sd, center + Z95 * sd
    return (math.exp(min(lo, 700.0)), math.exp(min(hi, 700.0)))


def _hours(h: float) -> str:
    return f"{h:,.0f} device hours" if h >= 10 else f"{h:.3g} device hours"


def _gradient(fn: object, theta: np.ndarray) -> np.ndarray:
    """Numerical gradient of a scalar function of the parameters (central differences)."""
    import numpy as np

    assert callable(fn)
    grad = np.zeros(3)
    for i in range(3):
        h = 1e-6 * max(1.0, abs(float(theta[i])))
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (fn(up) - fn(down)) / (2 * h)
    return grad


def _band(fn: object, theta: np.ndarray, cov: np.ndarray) -> float:
    g = _gradient(fn, theta)
    return float(math.sqrt(max(float(g @ cov @ g), 0.0)))


def fit_run(validations: Sequence[tuple[int, float, float]], budget_hours: float | None = None,
            target: float | None = None,
            exclude_hours: float | None = None) -> tuple[CurveFit | None, str]:
    """The fit for a run's (step, device_hours, pass_rate) validation results, and a note.

    Returns (None, "not enough points yet: ...") until enough results lie past the excluded
    early part; the note otherwise sums the fit up in a line.
    """
    import numpy as np

    if not validations:
        return None, "not enough points yet: no validation results"
    ordered = sorted(validations, key=lambda v: v[1])
    hours = [v[1] for v in ordered]
    rates = [v[2] for v in ordered]
    r0 = rates[0]
    latest = hours[-1]
    if exclude_hours is None:
        base = budget_hours if budget_hours else latest
        exclude_hours = EXCLUDE_FRACTION * base
    try:
        fit, theta, cov = fit_curve(hours[1:], rates[1:], r0, exclude_hours)
    except NotEnoughPoints as exc:
        return None, f"not enough points yet: {exc}"
    updates: dict[str, object] = {}
    if budget_hours:
        def at_budget(t: np.ndarray) -> float:
            return float(_curve(np.array([budget_hours]), r0, float(t[0]), math.exp(t[1]),
                                math.exp(t[2]))[0])

        pred = at_budget(theta)
        sd = _band(at_budget, theta, cov)
        updates.update(budget_hours=budget_hours, predicted_at_budget=pred,
                       predicted_band=(max(pred - Z95 * sd, 0.0), min(pred + Z95 * sd, 1.0)))
    if target is not None:
        updates.update(target=target, **_to_target(target, fit, theta, cov))
    fit = CurveFit(**{**fit.__dict__, **updates})
    return fit, summary(fit)


def _to_target(target: float, fit: CurveFit, theta: np.ndarray, cov: np.ndarray) -> dict[str, object]:
    if target <= fit.R0:
        return {"hours_to_target": 0.0, "target_note": "at or above the target from the start"}
    gain = fit.A - fit.R0
    q = (target - fit.R0) / gain if gain else math.inf
    if not 0 < q < 1:
        return {"target_note": (f"not reachable on this curve: the asymptote A = {fit.A:.3f} "
                                f"(95% {fit.A_band[0]:.3f}-{fit.A_band[1]:.3f}) is below the target "
                                f"{target:.3f}")}

    def log_hours(t: np.ndarray) -> float:
        qq = (target - fit.R0) / (float(t[0]) - fit.R0)
        qq = min(max(qq, 1e-12), 1 - 1e-12)
        return float(t[2] + math.log(qq / (1 - qq)) / math.exp(t[1]))

    center = log_hours(theta)
    sd = _band(log_hours, theta, cov)
    lo, hi = center - Z95 * sd, center + Z95 * sd
    return {"hours_to_target": math.exp(min(center, 700.0)),
            "hours_to_target_band": (math.exp(min(lo, 700.0)), math.exp(min(hi, 700.0)))}


def summary(fit: CurveFit) -> str:
    parts = [f"A = {fit.A:.3f} ({fit.A_band[0]:.3f}-{fit.A_band[1]:.3f}), B = {fit.B:.2f}, "
             f"C_mid = {_hours(fit.C_mid)}; {fit.n_points} points past the first "
             f"{_hours(fit.exclude_before_hours)}"]
    if fit.predicted_at_budget is not None and fit.predicted_band is not None:
        parts.append(f"{fit.predicted_at_budget * 100:.1f}% "
                     f"({fit.predicted_band[0] * 100:.1f}-{fit.predicted_band[1] * 100:.1f}%) "
                     f"at the {_hours(fit.budget_hours or 0)} budget")
    if fit.target is not None:
        if fit.hours_to_target is not None:
            band = (f" ({_hours(fit.hours_to_target_band[0])} - {_hours(fit.hours_to_target_band[1])})"
                    if fit.hours_to_target_band else "")
            parts.append(f"{fit.target * 100:.0f}% after {_hours(fit.hours_to_target)}{band}")
        else:
            parts.append(f"{fit.target * 100:.0f}%: {fit.target_note}")
    return "; ".join(parts)
