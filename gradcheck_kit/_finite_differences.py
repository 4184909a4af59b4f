"""The finite-difference oracle: directional derivatives with an error estimate for each value.

`directional_derivative(g, ...)` differentiates a vector-valued function of one real
variable at 0. It evaluates `g` at `±h, ±h/2, ..., ±h/2**(levels-1)` and at 0 and builds
three Richardson tables from the same points: central differences (error series in h²),
and forward and backward one-sided differences (series in h). Each table's last two
extrapolations give a truncation-error estimate; evaluation noise amplified by 1/h gives a
rounding-error estimate. Per element, the scheme with the smallest total estimate wins.

Why three schemes: near a kink (ReLU, abs, max), central differences that straddle it
converge to the wrong value while the one-sided scheme on the smooth side stays exact;
where the kink sits exactly at the point, the two one-sided derivatives differ and their
interval is what a subgradient may lie in. If no scheme reaches the requested accuracy the
step is cut by `shrink` and the process repeats, which also steps back inside a domain
(log, sqrt) where a large step left it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Derivative", "directional_derivative", "default_step"]

# Evaluation noise of g, in units of eps times the largest |g| seen at any step. A few ulps
# per operation is typical; this is the headroom for a function of a handful of operations
# applied per element. Functions that cancel more show it in Richardson's differences.
_NOISE_ULPS = 16.0


@dataclass(frozen=True)
class Derivative:
    """Derivative estimates at t=0, elementwise over the outputs of `g`.

    `value` and `error` have the shape of `g(0)`. Where `kink` is set, the one-sided
    derivatives disagree at the point itself and `lower`/`upper` bound the directional
    derivatives a subgradient may give.
    """

    value: np.ndarray
    error: np.ndarray
    rounding: np.ndarray  # the part of `error` due to evaluation noise
    lower: np.ndarray
    upper: np.ndarray
    kink: np.ndarray
    scheme: np.ndarray  # 0 central, 1 forward, 2 backward
    step: float
    evals: int
    notes: tuple[str, ...]


def default_step(eps: float) -> float:
    """Initial step (in units of the input's scale) for an evaluation with roundoff `eps`.

    Three central Richardson levels leave an O(h^6) truncation error against an
    O(eps/h) rounding error; eps**(1/5) keeps both small without reaching far from the
    point (which would cross more kinks), rounded down to a power of two so that steps
    halve exactly.
    """
    return float(2.0 ** np.floor(np.log2(eps ** 0.2)))


def directional_derivative(
    g: Callable[[float], np.ndarray],
    *,
    eps: float,
    step: float,
    g0: np.ndarray | None = None,
    levels: int = 3,
    target: Callable[[np.ndarray, np.ndarray], bool] | None = None,
    shrink: float = 2.0**-4,
    retries: int = 4,
    safety: float = 8.0,
) -> Derivative:
    """Differentiate `g` at 0 with Richardson extrapolation and an error estimate.

    **Arguments:**
    - `g`: maps a step `t` to an array (float64); it must return the same shape for
      every `t`. Non-finite values at a step trigger a retry with smaller steps.
    - `eps`: unit roundoff of the precision `g` is evaluated in.
    - `step`: the largest step `h`.
    - `g0`: `g(0)` if already known (saves one evaluation).
    - `levels`: number of step halvings (at least 2).
    - `target(value, error) -> bool`: whether the estimate is accurate enough; if not,
      the steps are cut by `shrink` and the estimate redone, at most `retries` times.
    - `safety`: factor on Richardson's truncation estimate (the size of the last
      correction, which usually over-states the remaining error but not always). The
      rounding bound is already a bound and is not multiplied.

    **Returns:** a `Derivative`; `evals` counts the calls to `g`.
    """
    if levels < 2:
        raise ValueError(f"levels={levels} is too few: Richardson extrapolation needs at least 2")
    evals = 0
    if g0 is None:
        g0 = np.asarray(g(0.0), dtype=np.float64)
        evals += 1
    notes: list[str] = []
    best: Derivative | None = None
    h = step
    for attempt in range(retries + 1):
        points = []
        for i in range(levels):
            hi = h * 2.0**-i
            plus = np.asarray(g(hi), dtype=np.float64)
            minus = np.asarray(g(-hi), dtype=np.float64)
            evals += 2
            if plus.shape != g0.shape or minus.shape != g0.shape:
                raise ValueError(
                    f"the function returned shape {plus.shape} at a perturbed input but "
                    f"{g0.shape} at the point itself; outputs must not change shape"
                )
            points.append((hi, plus, minus))
        plus_ok = all(np.all(np.isfinite(p)) for _, p, _ in points)
        minus_ok = all(np.all(np.isfinite(m)) for _, _, m in points)
        if not (plus_ok or minus_ok):
            notes.append(
                f"non-finite output at step {h:.3g}: the step left the function's domain; "
                f"retried with smaller steps"
            )
            h *= shrink
            continue
        if not (plus_ok and minus_ok):
            side = "forward" if plus_ok else "backward"
            notes.append(
                f"the function is not finite on one side of the input at step {h:.3g} (the "
                f"edge of its domain): {side} differences only"
            )
            points = [(hi, p if plus_ok else None, m if minus_ok else None) for hi, p, m in points]
        estimate = _estimate(points, g0, eps, safety)
        # Prefer estimates without an apparent kink: a kink seen at one step size and not
        # at a smaller one was only near the point, and the smaller step resolves it.
        if best is None or _rank(estimate) < _rank(best):
            best = estimate
        kinked = bool(np.any(estimate.kink))
        # Smaller steps only help where truncation, not noise, dominates the error.
        noise_bound = bool(np.all(estimate.error <= 2.0 * estimate.rounding))
        if not kinked and (noise_bound or target is None or target(estimate.value, estimate.error)):
            break
        if attempt == retries:
            break
        reason = (
            "one-sided differences disagree (a kink within the step)"
            if kinked
            else "the estimate did not reach the needed accuracy (strong curvature or a kink)"
        )
        notes.append(f"step {h:.3g}: {reason}; retried with smaller steps")
        h *= shrink
    if best is None:
        raise FloatingPointError(
            "the function returned non-finite values at every finite-difference step down "
            f"to {h / shrink:.3g}; it is not differentiable at this input"
        )
    return dataclasses.replace(best, evals=evals, notes=tuple(notes))


def _rank(d: Derivative) -> tuple[bool, float]:
    return bool(np.any(d.kink)), float(np.sum(d.error))


def _estimate(points, g0: np.ndarray, eps: float, safety: float) -> Derivative:
    """The Richardson estimate from one set of steps; `evals` and `notes` are the caller's."""
    hs = [p[0] for p in points]
    has_plus = points[0][1] is not None
    has_minus = points[0][2] is not None
    inf = np.full(g0.shape, np.inf)

    # In-place arithmetic throughout (bit for bit the expressions it replaces): at 1e6
    # outputs and more, allocating fresh output-sized arrays costs as much as the maths.
    magnitude = np.abs(g0)
    for _, p, m in points:
        for side in (p, m):
            if side is not None:
                np.maximum(magnitude, np.abs(side), out=magnitude)
    noise = magnitude
    noise *= _NOISE_ULPS * eps
    noise /= hs[-1]
    noise6 = 6.0 * noise

    # Richardson amplifies noise by the sum of its weights' magnitudes: about 2 for the
    # central table and 6 for the one-sided ones with these ratios.
    c_val = f_val = b_val = np.zeros(g0.shape)
    c_err = f_err = b_err = inf
    if has_plus and has_minus:
        c_val, c_err = _richardson([_quotient(p, m, 2 * hi) for hi, p, m in points], ratio=4.0)
        c_err *= safety
        c_err += 2.0 * noise
    if has_plus:
        f_val, f_err = _richardson([_quotient(p, g0, hi) for hi, p, m in points], ratio=2.0)
        f_err *= safety
        f_err += noise6
    if has_minus:
        b_val, b_err = _richardson([_quotient(g0, m, hi) for hi, p, m in points], ratio=2.0)
        b_err *= safety
        b_err += noise6

    scheme = _argmin3(c_err, f_err, b_err)
    # Selected with masks rather than stacked tables: the same values, without three
    # output-sized copies per table (this runs on every output element).
    central, forward = scheme == 0, scheme == 1
    value = np.where(central, c_val, np.where(forward, f_val, b_val))
    error = np.where(central, c_err, np.where(forward, f_err, b_err))
    rounding = noise * np.where(central, 2.0, 6.0)

    # A kink at the point itself: both one-sided tables converge, to different values.
    if has_plus and has_minus:
        kink = np.abs(f_val - b_val) > f_err + b_err
    else:
        kink = np.zeros(g0.shape, dtype=bool)
    lower = np.where(kink, np.minimum(f_val, b_val) - f_err - b_err, value - error)
    upper = np.where(kink, np.maximum(f_val, b_val) + f_err + b_err, value + error)
    return Derivative(value, error, rounding, lower, upper, kink, scheme, hs[-1], 0, ())


def _quotient(a: np.ndarray, b: np.ndarray, h: float) -> np.ndarray:
    """`(a - b) / h` in one fresh array."""
    d = a - b
    d /= h
    return d


def _argmin3(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """`np.argmin(np.stack([a, b, c]), axis=0)`, ties and NaNs alike, without the stack.

    An argmin across a stacked axis walks memory with a stride and copies three arrays;
    these comparisons run contiguously.
    """
    scheme = (b < a).astype(np.intp)
    scheme[c < np.where(scheme == 1, b, a)] = 2
    na, nb, nc = np.isnan(a), np.isnan(b), np.isnan(c)
    if na.any() or nb.any() or nc.any():  # argmin takes the first NaN as the minimum
        scheme[nc & ~na & ~nb] = 2
        scheme[nb & ~na] = 1
        scheme[na] = 0
    return scheme


def _richardson(estimates: list[np.ndarray], *, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Extrapolate estimates at steps h, h/2, ... whose errors go as h^p, h^2p, ...

    `ratio` is 2**p. Returns the most extrapolated value and, as its error estimate, the
    larger of its distances to the two best values one level below.
    """
    prev = list(estimates)
    factor = ratio
    below = prev
    while len(prev) > 1:
        below = prev
        level = []
        for i in range(len(prev) - 1):
            # (factor * prev[i + 1] - prev[i]) / (factor - 1), without temporaries.
            t = prev[i + 1] * factor
            t -= prev[i]
            t /= factor - 1
            level.append(t)
        prev = level
        factor *= ratio
    best = prev[0]
    error = np.abs(best - below[-1])
    np.maximum(error, np.abs(best - below[-2]), out=error)
    return best, error
