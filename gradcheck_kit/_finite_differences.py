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
(log, sqrt) where a large step left it, or below the resolution of an input check that
the function performs (`OutsideDomain`).

Evaluation noise. The model bound, `_NOISE_ULPS` ulps of the largest |g| seen, scales
with the outputs; where the outputs cancel (`log(1 + x*x)` at small x, `x - x.mean()`,
`logdet(I + X X^T)`) the rounding that reaches them is that of intermediates far larger
than the outputs. Before the first retry the noise is therefore measured from the
evaluations themselves (`measure_noise`): at four offsets far below the step, a fitted
quadratic removes the smooth part of `g`, and what remains is noise. The
larger of the two bounds holds for every step tried, and the estimate kept is the best
over all steps, so a retry never makes a noise-limited estimate worse.

Reliability. Where the estimates of successive steps disagree by more than their error
estimates allow, or the kept step's table is irregular beyond what noise explains, or
curvature dominates its smallest step, the error estimate is not trustworthy (a jump of
a higher derivative inside every step, an ill-conditioned problem that no step
resolves). `Derivative.unreliable` marks those elements, so that a comparison can tell a
wrong gradient from a derivative that finite differences cannot decide.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = [
    "Derivative",
    "NOISE_OFFSET",
    "NOISE_SIGMAS",
    "Noise",
    "OutsideDomain",
    "Scheme",
    "default_step",
    "directional_derivative",
    "measure_noise",
    "richardson_noise_gain",
    "with_noise",
]

# Evaluation noise of g, in units of eps times the largest |g| seen at any step. A few ulps
# per operation is typical; this is the headroom for a function of a handful of operations
# applied per element. Functions that cancel more are measured (`measure_noise`).
_NOISE_ULPS = 16.0

# Noise is measured at four offsets of about ±δ and ±2δ, δ = NOISE_OFFSET times the
# smallest step: far below the step, so that truncation is negligible there, and near the
# point, whose rounding is what is measured. The offsets are unevenly spaced on purpose:
# the rounding error of g is a sawtooth in t, and evenly spaced samples of a sawtooth can
# alias into a straight line, which would read as no noise at all.
NOISE_OFFSET = 2.0**-6
_OFFSETS = np.array([-1.83, -0.71, 0.0, 0.59, 1.97])
# A least-squares quadratic through the five values leaves two degrees of freedom of
# residual; its root mean square estimates the noise's standard deviation, and the bound
# is this many of them.
NOISE_SIGMAS = 4.0
_POLY = np.vander(_OFFSETS, 3)
# Rows of the residual projection I - X (X^T X)^-1 X^T, for X the quadratic's basis.
_RESIDUAL = np.eye(5) - _POLY @ np.linalg.solve(_POLY.T @ _POLY, _POLY.T)


class Scheme(enum.IntEnum):
    """The difference scheme chosen per output element (the codes of `Derivative.scheme`)."""

    CENTRAL = 0
    FORWARD = 1
    BACKWARD = 2


@dataclass(frozen=True)
class Noise:
    """Evaluation noise measured at a point, per element (`measure_noise`).

    `level`: the bound per evaluation (NaN where the offsets did not change g at all).
    `structured`: where the residual grew as the offsets shrank, which noise does not do:
    g is singular on the scale of the offsets, and no step resolves its derivative.
    """

    level: np.ndarray
    structured: np.ndarray


class OutsideDomain(Exception):
    """Raised by `g` where it has no value at a step (the function rejected the input).

    Treated as a non-finite value: the steps shrink until `g` has values on at least one
    side of the point. `str(exc)` says why, for the notes; if no step works, the exception
    is raised again to the caller.
    """


@dataclass(frozen=True)
class Derivative:
    """Derivative estimates at t=0, elementwise over the outputs of `g`.

    `value` and `error` have the shape of `g(0)`. Where `kink` is set, the one-sided
    derivatives disagree at the point itself and `lower`/`upper` bound the directional
    derivatives a subgradient may give (`bounds`).
    """

    value: np.ndarray
    error: np.ndarray
    rounding: np.ndarray  # the part of `error` due to evaluation noise
    #: `value -/+ error`, and at kinks the interval of the one-sided estimates; None where
    #: there is no kink (two output-sized arrays fewer: `bounds` forms them if asked).
    lower: np.ndarray | None
    upper: np.ndarray | None
    kink: np.ndarray
    scheme: np.ndarray  # `Scheme` codes (int8)
    step: float
    evals: int
    notes: tuple[str, ...]
    #: Evaluation noise measured at the point (`measure_noise`), per element; None where
    #: only the model bound was used.
    noise: np.ndarray | None = None
    #: Per element: whether every step tried agreed with the kept estimate within both
    #: error estimates. None where only one step gave an estimate.
    resolved: np.ndarray | None = None
    #: The smallest step of each attempt that gave an estimate, in the order tried.
    steps_tried: tuple[float, ...] = ()
    #: Per element: whether the kept step's table was regular (its differences shrink as
    #: the error series says; see `_richardson`). None when not known.
    regular: np.ndarray | None = None
    #: Per element: whether the error estimate itself is untrustworthy: the steps tried
    #: disagree beyond their estimates, or the kept table is irregular by more than the
    #: noise explains (no step reached the range where the error series holds: a jump of a
    #: higher derivative inside every step, an ill-conditioned problem). None: not known.
    unreliable: np.ndarray | None = None
    #: Per element: |forward - backward| extrapolated one-sided derivatives (0 where only
    #: one side exists). None: not known (`directional_derivative` needs it between its
    #: attempts only, and returns None).
    jump: np.ndarray | None = None
    #: Per element: whether curvature, beyond noise, dominated the change of g over the
    #: kept smallest step (`|g(h) + g(-h) - 2 g(0)| > |g(h) - g(-h)|`). None: not known.
    curved: np.ndarray | None = None
    #: Per element: how much g bends, in g's units per unit t squared: the smallest
    #: second difference over the steps, `|g(t) + g(-t) - 2 g(0)| / t^2` and, on each side
    #: at the largest steps of each attempt, `|g(2t) - 2 g(t) + g(0)| / t^2` (the smallest,
    #: since noise, a kink at the point or truncation only inflate it). None: not known.
    bend: np.ndarray | None = None
    #: Per element: whether g differed from g(0) at some step. None: not known.
    moved: np.ndarray | None = None

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """`(lower, upper)`: the interval of the directional derivative per element."""
        if self.lower is None or self.upper is None:
            return self.value - self.error, self.value + self.error
        return self.lower, self.upper

    @property
    def unresolved(self) -> np.ndarray:
        """Where the steps tried disagree beyond their error estimates (all False if one)."""
        if self.resolved is None:
            return np.zeros(self.value.shape, dtype=bool)
        return ~self.resolved


def default_step(eps: float) -> float:
    """Initial step (in units of the input's scale) for an evaluation with roundoff `eps`.

    Three central Richardson levels leave an O(h^6) truncation error against an
    O(eps/h) rounding error; eps**(1/5) keeps both small without reaching far from the
    point (which would cross more kinks), rounded down to a power of two so that steps
    halve exactly.
    """
    return float(2.0 ** np.floor(np.log2(eps ** 0.2)))


@functools.lru_cache(maxsize=None)
def richardson_noise_gain(levels: int, *, one_sided: bool) -> float:
    """Sum of the magnitudes of Richardson's weights on the evaluations `g(t)`, times `h_min`.

    Extrapolating the differences at steps `h, h/2, ..., h/2**(levels-1)` is a linear
    combination of evaluations of `g`; noise of size `delta` in each evaluation reaches the
    result as at most `gain * delta / h_min`. For `levels=3`: 33/20 for central differences,
    11/2 for one-sided ones (the evaluation at the point itself included), the value
    FiniteDifferences.jl calls `f_error_mult = sum(abs.(coefs))`.
    """
    ratio = 2.0 if one_sided else 4.0
    steps = [2.0**-k for k in range(levels)]
    # Each row maps an evaluation's key (side, level) to its weight.
    rows: list[dict[Any, float]] = []
    for k, h in enumerate(steps):
        if one_sided:
            rows.append({("+", k): 1.0 / h, "g0": -1.0 / h})
        else:
            rows.append({("+", k): 0.5 / h, ("-", k): -0.5 / h})
    factor = ratio
    while len(rows) > 1:
        rows = [
            {
                key: (factor * hi.get(key, 0.0) - lo.get(key, 0.0)) / (factor - 1.0)
                for key in set(lo) | set(hi)
            }
            for lo, hi in zip(rows[:-1], rows[1:])
        ]
        factor *= ratio
    return sum(abs(w) for w in rows[0].values()) * steps[-1]


def measure_noise(
    g: Callable[[float], np.ndarray], g0: np.ndarray, delta: float,
    *, allowed: np.ndarray | None = None,
) -> tuple[Noise | None, int]:
    """Evaluation noise of `g` near 0, per element, from evaluations at offsets ~±δ, ±2δ.

    Over so small a range `g` is a polynomial of low degree plus its rounding noise; the
    residual of a least-squares quadratic through the five values (g0 included) is the
    noise; a second sample at offsets 16 times smaller (4 evaluations) tells it from
    structure. Where an element did not change at all across the offsets, its quantum
    is larger than they reach: it is measured again at offsets 16 times larger (4 more
    evaluations), and is NaN where those do not resolve it either. Returns the `Noise`
    (`NOISE_SIGMAS` times its standard deviation; None where `g` has no finite value at an
    offset) and the evaluations spent. `allowed`: noise the caller's model already allows;
    where the first sample stays below it everywhere, it changes nothing and is returned
    as it is (4 evaluations in all).
    """
    noise, spread, spent = _noise_at(g, g0, delta)
    if noise is None or spread is None:
        return None, spent
    if allowed is not None and np.all(noise <= allowed) and not np.any(spread == 0):
        return Noise(noise, np.zeros(g0.shape, dtype=bool)), spent
    # Noise does not depend on the offsets; what a smooth function leaves in the residual
    # (a cubic term) falls 4096-fold at offsets 16 times smaller. Where it falls by more
    # than 64, the residual was structure, not noise (a problem so ill-conditioned that
    # it is far from polynomial even at these offsets); the smaller sample is the bound.
    finer, fine_spread, more = _noise_at(g, g0, delta / 16.0)
    spent += more
    structured = np.zeros(g0.shape, dtype=bool)
    if finer is not None:
        smooth = (fine_spread > 0) & (finer < noise / 64.0)
        # Growing as the offsets shrink: a function singular on this scale (1/t-like, an
        # ill-conditioned solve): neither noise nor polynomial, finite differences at
        # larger steps cannot resolve it.
        structured = (fine_spread > 0) & (finer > 4.0 * noise)
        noise = np.where(smooth, finer, noise)
    if np.any(spread == 0):
        wider, wide_spread, more = _noise_at(g, g0, 16.0 * delta)
        spent += more
        if wider is None:
            noise = np.where(spread == 0, np.nan, noise)
        else:
            noise = np.where(spread == 0, np.where(wide_spread == 0, np.nan, wider), noise)
    return Noise(noise, structured), spent


def _noise_at(
    g: Callable[[float], np.ndarray], g0: np.ndarray, delta: float
) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """The noise from the offsets scaled by `delta`, the values' spread, evaluations spent."""
    ys = []
    for c in _OFFSETS:
        if c == 0.0:
            ys.append(g0)
            continue
        try:
            y = np.asarray(g(float(c) * delta), dtype=np.float64)
        except OutsideDomain:
            return None, None, len(ys)
        if y.shape != g0.shape or not np.all(np.isfinite(y)):
            return None, None, len(ys)
        ys.append(y)
    stacked = np.stack([y.ravel() for y in ys])  # (5, n)
    residual = _RESIDUAL @ (stacked - stacked[2])
    sigma = np.sqrt(np.sum(residual * residual, axis=0) / 2.0).reshape(g0.shape)
    spread = (stacked.max(axis=0) - stacked.min(axis=0)).reshape(g0.shape)
    return NOISE_SIGMAS * sigma, spread, 4


def with_noise(d: Derivative, measured: Noise, *, levels: int) -> Derivative:
    """`d` with its rounding bound raised to what measured per-element `noise` implies.

    The model bound is kept where it is larger; the kink intervals widen by the extra
    rounding of both one-sided estimates.
    """
    noise = np.nan_to_num(measured.level, nan=0.0)  # offsets too small to change g: no news
    central = d.scheme == Scheme.CENTRAL
    gain = np.where(
        central, richardson_noise_gain(levels, one_sided=False),
        richardson_noise_gain(levels, one_sided=True),
    )
    bound = gain * noise / d.step
    extra = np.maximum(bound - d.rounding, 0.0)
    one_sided = richardson_noise_gain(levels, one_sided=True)
    bounds = {}
    if d.lower is not None and d.upper is not None:
        widen = np.where(d.kink, 2.0 * one_sided * noise / d.step, extra)
        bounds = {"lower": d.lower - widen, "upper": d.upper + widen}
    return dataclasses.replace(
        d, error=d.error + extra, rounding=d.rounding + extra, **bounds, noise=noise,
        unreliable=(measured.structured & ~d.kink) if d.unreliable is None
        else d.unreliable | (measured.structured & ~d.kink),
    )


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
    measure: bool = True,
    release: Callable[[], None] | None = None,
) -> Derivative:
    """Differentiate `g` at 0 with Richardson extrapolation and an error estimate.

    **Arguments:**
    - `g`: maps a step `t` to an array (float64); it must return the same shape for
      every `t`. Non-finite values at a step, or `OutsideDomain` raised there, trigger a
      retry with smaller steps.
    - `eps`: unit roundoff of the precision `g` is evaluated in.
    - `step`: the largest step `h`.
    - `g0`: `g(0)` if already known (saves one evaluation).
    - `levels`: number of step halvings (at least 2).
    - `target(value, error) -> bool`: whether the estimate is accurate enough; if not,
      the steps are cut by `shrink` and the estimate redone, at most `retries` times.
    - `safety`: factor on Richardson's truncation estimate (the size of the last
      correction, which usually over-states the remaining error but not always). The
      rounding bound is already a bound and is not multiplied.
    - `measure`: measure the evaluation noise (4 evaluations) before the first retry.
    - `release`: called before the evaluations are analysed, when `g` may free the memory
      it keeps between calls.

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
    # What the agreement between steps needs of each attempt (not whole estimates: at
    # 1e7 outputs each array is 80 MB).
    attempts: list[_Attempt] = []
    noise: np.ndarray | None = None
    offset: float | None = None  # where the noise was measured
    structured = np.zeros(g0.shape, dtype=bool)
    bend = np.full(g0.shape, np.inf)
    moved = np.zeros(g0.shape, dtype=bool)
    rejected: OutsideDomain | None = None  # the last time g refused a step
    h = step
    for attempt in range(retries + 1):
        points = []
        refused: OutsideDomain | None = None
        for i in range(levels):
            hi = h * 2.0**-i
            plus, minus = _at(g, hi), _at(g, -hi)
            evals += 2
            for side in (plus, minus):
                if isinstance(side, OutsideDomain):
                    refused = side
                elif side.shape != g0.shape:
                    raise ValueError(
                        f"the function returned shape {side.shape} at a perturbed input but "
                        f"{g0.shape} at the point itself; outputs must not change shape"
                    )
            points.append((hi, plus, minus))
        plus_ok = all(_finite(p) for _, p, _ in points)
        minus_ok = all(_finite(m) for _, _, m in points)
        if not (plus_ok or minus_ok):
            notes.append(
                f"{_why(refused)} at step {h:.3g} (in units of the input's scale): retried "
                f"with smaller steps"
                if refused is not None else
                f"non-finite output at step {h:.3g}: the step left the function's domain; "
                f"retried with smaller steps"
            )
            rejected = refused or rejected
            h *= shrink
            continue
        if rejected is not None and not attempts:
            notes.append(f"the function accepted the perturbed inputs at step {h:.3g}")
        if not (plus_ok and minus_ok):
            side = "forward" if plus_ok else "backward"
            notes.append(
                f"{_why(refused)} on one side of the input at step {h:.3g}: {side} "
                f"differences only" if refused is not None else
                f"the function is not finite on one side of the input at step {h:.3g} (the "
                f"edge of its domain): {side} differences only"
            )
            points = [
                (hi, p if plus_ok else None, m if minus_ok else None) for hi, p, m in points
            ]
        if release is not None:
            release()
        estimate = _attempt(points, g0, eps, safety, noise, bend, moved)
        accepted = _accepted(estimate, target, safety)
        if measure and not np.any(estimate.kink) and _worth_measuring(
            estimate, accepted, noise is not None,
            offset is not None and NOISE_OFFSET * points[-1][0] < offset,
        ):
            offset = NOISE_OFFSET * points[-1][0]
            measured, spent = measure_noise(
                g, g0, offset, allowed=_NOISE_ULPS * eps * np.abs(g0)
            )
            evals += spent
            if measured is not None:
                fresh = measured.level
                structured = structured | measured.structured
                if np.any(np.isnan(fresh)):
                    fresh = np.where(np.isnan(fresh), _quantum(points, g0), fresh)
                # A sample taken at a larger offset may hold truncation (a δ³ term), which
                # falls 4096-fold per retry; noise itself does not change with the offset.
                # A zero sample is no news: g did not resolve the offsets at all (its
                # rounding quantum is larger than what they change).
                lower = (fresh > 0) & (fresh < noise / 16) if noise is not None else None
                noise = fresh if noise is None else np.where(lower, fresh, noise)
                if release is not None:
                    release()
                estimate = _attempt(points, g0, eps, safety, noise)
                accepted = _accepted(estimate, target, safety)
        attempts.append(_Attempt(estimate.step, estimate.value, estimate.error,
                                 estimate.kink, estimate.jump))
        # Prefer estimates without an apparent kink: a kink seen at one step size and not
        # at a smaller one was only near the point, and the smaller step resolves it.
        if best is None or _rank(estimate) < _rank(best):
            best = estimate
        if accepted or attempt == retries:
            break
        reason = (
            "one-sided differences disagree (a kink within the step)"
            if np.any(estimate.kink)
            else "the estimate did not reach the needed accuracy (strong curvature or a kink)"
        )
        notes.append(f"step {h:.3g}: {reason}; retried with smaller steps")
        h *= shrink
    if best is None:
        if rejected is not None:
            raise rejected
        raise FloatingPointError(
            "the function returned non-finite values at every finite-difference step down "
            f"to {h / shrink:.3g}; it is not differentiable at this input"
        )
    if noise is not None and best.noise is None:
        best = with_noise(best, Noise(noise, structured), levels=levels)
    if noise is not None and np.any(best.rounding > 0) and np.any(
        noise > _NOISE_ULPS * eps * np.abs(g0)
    ):
        notes.append(
            f"evaluation noise measured at the point (up to {float(np.max(noise)):.3g} per "
            f"evaluation) exceeds the rounding model; the error estimate includes it"
        )
    bend[~np.isfinite(bend)] = 0.0
    # The jumps served the agreement between attempts only: an output-sized array less.
    best = dataclasses.replace(
        best, evals=evals, notes=tuple(notes), bend=bend, moved=moved,
        **_agreement(attempts, best), jump=None,
    )
    unreliable = _unreliable(best, g0, eps, safety, levels) | (structured & ~best.kink)
    return dataclasses.replace(best, unreliable=unreliable)


def _unreliable(
    d: Derivative, g0: np.ndarray, eps: float, safety: float, levels: int
) -> np.ndarray:
    """Where `d`'s error estimate cannot be trusted (see `Derivative.unreliable`).

    An irregular table whose smallest step is dominated by curvature never reached the
    range where the error series holds. Otherwise it is explained by noise where
    Richardson's correction (the truncation
    estimate before the safety factor) is within twice the rounding that the measured
    noise, or the model's noise at the point itself, gives. The model bound over all
    steps does not explain it: it grows with whatever the steps reached (an ill-conditioned
    solve returns huge values there), which is no evidence of noise.
    """
    unreliable = ~d.kink & d.unresolved
    if d.regular is None:
        return unreliable
    # Only irregular tables need the noise test, and they are few where finite differences
    # work at all: it runs on those elements only (the same expressions, elementwise).
    where = np.flatnonzero(~d.regular & ~d.kink)
    if where.size == 0:
        return unreliable

    def at(a: np.ndarray) -> np.ndarray:
        return np.reshape(a, -1)[where]

    gain = np.where(
        at(d.scheme) == Scheme.CENTRAL, richardson_noise_gain(levels, one_sided=False),
        richardson_noise_gain(levels, one_sided=True),
    )
    at_point = _NOISE_ULPS * eps * np.abs(at(g0))
    if d.noise is not None:
        at_point = np.maximum(at_point, at(d.noise))
    explained = 2.0 * gain * at_point / d.step
    correction = np.maximum(at(d.error) - at(d.rounding), 0.0) / safety
    curved = correction > explained
    if d.curved is not None:
        curved |= at(d.curved)
    np.reshape(unreliable, -1)[where] |= curved
    return unreliable


# Elements per slice of the per-element work of an attempt (`_attempt`): 256 KB per float64
# array, so that the twenty-odd arrays a slice works in stay in a core's cache.
_CHUNK = 2**15


def _attempt(
    points, g0: np.ndarray, eps: float, safety: float, measured: np.ndarray | None,
    bend: np.ndarray | None = None, moved: np.ndarray | None = None,
) -> Derivative:
    """`_estimate` (after `_lower_bend` when `bend` and `moved` are given), in slices.

    Every quantity of an estimate is per element, so slices of the outputs give the same
    bits as the whole; at 1e6 outputs and more, arrays of the whole go to memory and back
    at every operation (and are paged in afresh), slices stay in cache.
    """
    if g0.size <= _CHUNK:
        buffers = _Buffers(g0.shape)
        if bend is not None:
            _lower_bend(points, g0, eps, bend, moved, buffers)
        return _estimate(points, g0, eps, safety, measured, buffers)
    n = g0.size
    fields = {name: np.empty(n, dtype) for name, dtype in _PER_ELEMENT.items()}
    # Formed only once a slice has a kink (`_bounds`); the slices before it then get
    # theirs from their value and error, as `_bounds` forms them.
    bounds: dict[str, np.ndarray] = {}
    buffers = _Buffers((_CHUNK,))
    flat = [(h, _flat(p), _flat(m)) for h, p, m in points]
    g0_flat, noise = _flat(g0), _flat(measured)
    # Views: `bend` and `moved` are contiguous (directional_derivative made them).
    bend_flat, moved_flat = _flat(bend), _flat(moved)
    for start in range(0, n, _CHUNK):
        part = slice(start, min(start + _CHUNK, n))
        if part.stop - part.start != _CHUNK:
            buffers = _Buffers((part.stop - part.start,))  # the last, shorter slice
        sliced = [(h, _cut(p, part), _cut(m, part)) for h, p, m in flat]
        if bend is not None:
            _lower_bend(sliced, g0_flat[part], eps, bend_flat[part], moved_flat[part], buffers)
        d = _estimate(sliced, g0_flat[part], eps, safety, _cut(noise, part), buffers)
        for name, out in fields.items():
            out[part] = getattr(d, name)
        if d.lower is not None and not bounds:
            value, error = fields["value"][:start], fields["error"][:start]
            bounds = {"lower": np.empty(n), "upper": np.empty(n)}
            np.subtract(value, error, out=bounds["lower"][:start])
            np.add(value, error, out=bounds["upper"][:start])
        if bounds:
            bounds["lower"][part], bounds["upper"][part] = d.bounds()
        # The slice's estimate is copied out: its float arrays are scratch again.
        buffers.give(*(getattr(d, name) for name in _SCRATCH))
        if d.lower is not None:
            buffers.give(d.lower, d.upper)
    shaped = {name: out.reshape(g0.shape) for name, out in fields.items()}
    shaped["lower"], shaped["upper"] = (
        (bounds["lower"].reshape(g0.shape), bounds["upper"].reshape(g0.shape))
        if bounds else (None, None)
    )
    return Derivative(step=points[-1][0], evals=0, notes=(), noise=measured, **shaped)


# The fields of `_estimate`'s Derivative that hold one value per output element. The jump
# serves one test between attempts, `best.jump >= 0.5 * a.jump` (`_agreement`), which
# float32 decides as float64 does but at ratios within 1e-7 of 0.5 (or jumps beyond 3e38,
# which read as infinite): half an array less.
_PER_ELEMENT = {
    "value": np.float64, "error": np.float64, "rounding": np.float64,
    "jump": np.float32, "kink": np.bool_, "scheme": np.int8,
    "regular": np.bool_, "curved": np.bool_,
}
# Those `_estimate` forms in its float64 scratch arrays (`_Buffers`).
_SCRATCH = ("value", "error", "rounding", "jump")


def _flat(a: np.ndarray | None) -> np.ndarray | None:
    """`a` as one flat array (a view where it is contiguous, as `bend` and `moved` are)."""
    return None if a is None else np.reshape(a, -1)


def _cut(a: np.ndarray | None, part: slice) -> np.ndarray | None:
    return None if a is None else a[part]


def _lower_bend(
    points, g0: np.ndarray, eps: float, bend: np.ndarray, moved: np.ndarray,
    buffers: _Buffers | None = None,
) -> None:
    """Lower `bend` in place to the second differences of one attempt (`Derivative.bend`)
    and mark in `moved` the elements that differ from g0 at one of its steps.

    A second difference within the model's rounding of its evaluations is no measurement
    (at small steps `t^2 g''` rounds away: exp(3t) at t = 1e-9), and leaves the bend as it
    was; so does NaN (a value outside the domain, inf - inf).
    """
    buffers = buffers or _Buffers(g0.shape)
    ulps = 2.0 * _NOISE_ULPS * eps  # twice the model's rounding of one evaluation
    at_point = np.abs(g0, out=buffers.take())
    at_point *= ulps
    # Three more buffers for all the differences (bit for bit the plain formulas).
    sd, rounding, term = buffers.take(), buffers.take(), buffers.take()

    def lower(h: float, *values: np.ndarray) -> None:  # reads the second difference in sd
        np.abs(sd, out=sd)
        np.copyto(rounding, at_point)
        for y in values:
            np.add(rounding, np.multiply(np.abs(y, out=term), ulps, out=term), out=rounding)
        # Where it is no measurement (or NaN) the bend stays: fmin against NaN, as written
        # plainly, without forming the NaNs.
        measured = sd > rounding
        np.divide(sd, h * h, out=sd, where=measured)
        np.fmin(bend, sd, out=bend, where=measured)

    with np.errstate(invalid="ignore", over="ignore"):
        for k, (h, p, m) in enumerate(points):
            for side in (p, m):
                if _usable(side):
                    np.logical_or(moved, side != g0, out=moved)
            if _usable(p) and _usable(m):
                np.add(p, m, out=sd)  # g(h) + g(-h) - 2 g(0)
                sd -= g0
                sd -= g0
                lower(h, p, m)
            if k == 0:  # one-sided at the largest steps only: where noise matters least
                half, p2, m2 = points[1]
                for far, near in ((p, p2), (m, m2)):
                    if _usable(far) and _usable(near):
                        np.subtract(far, near, out=sd)  # g(2t) - 2 g(t) + g(0), t = h / 2
                        sd -= near
                        sd += g0
                        lower(half, far, near)
    buffers.give(at_point, sd, rounding, term)


def _usable(y) -> bool:
    return y is not None and not isinstance(y, OutsideDomain)


def _quantum(points, g0: np.ndarray) -> np.ndarray:
    """Per element, the smallest nonzero change from g0 at the steps (0 where none).

    Where the noise offsets did not change g at all, its rounding quantum exceeds what they
    reach, and a change of at least one quantum was seen at some step; an element that
    never changed is constant, without noise.
    """
    quantum = np.full(g0.shape, np.inf)
    for _, p, m in points:
        for side in (p, m):
            if side is not None and _finite(side):
                change = np.abs(side - g0)
                np.minimum(quantum, np.where(change > 0, change, np.inf), out=quantum)
    quantum[np.isinf(quantum)] = 0.0
    return quantum


def _at(g: Callable[[float], np.ndarray], t: float) -> np.ndarray | OutsideDomain:
    try:
        return np.asarray(g(t), dtype=np.float64)
    except OutsideDomain as exc:
        return exc


def _finite(y: np.ndarray | OutsideDomain) -> bool:
    return not isinstance(y, OutsideDomain) and bool(np.all(np.isfinite(y)))


def _why(exc: OutsideDomain) -> str:
    return str(exc) or "the function refused the perturbed input"


def _accepted(
    d: Derivative, target: Callable[[np.ndarray, np.ndarray], bool] | None, safety: float
) -> bool:
    if np.any(d.kink):
        return False
    # Smaller steps only help where truncation, not noise, dominates the error. Where the
    # noise was measured and the table is irregular, Richardson's correction itself (the
    # truncation estimate before the safety factor) is noise when within twice its bound.
    # Not where curvature dominates an irregular table: the step is too large for g to be
    # nearly linear, whatever the noise, and smaller steps may reach that range.
    stuck = (
        d.curved is not None and d.regular is not None and bool(np.any(d.curved & ~d.regular))
    )
    noise_bound = not stuck and _within_noise(d, safety)
    return noise_bound or target is None or target(d.value, d.error)


def _within_noise(d: Derivative, safety: float) -> bool:
    """Whether every error is within twice its rounding (`1 + safety` times more where the
    noise was measured and the table is irregular; see `_accepted`).

    Tested in slices of `_CHUNK` elements, so that the bound is never formed for all the
    outputs at once (an exact test per element: the same answer).
    """
    error, rounding = np.reshape(d.error, -1), np.reshape(d.rounding, -1)
    regular = None
    if d.noise is not None and d.regular is not None:
        regular = np.reshape(d.regular, -1)
    for start in range(0, error.size, _CHUNK):
        part = slice(start, start + _CHUNK)
        bound = 2.0 * rounding[part]
        if regular is not None:
            bound = np.where(regular[part], bound, bound * (1.0 + safety))
        if not np.all(error[part] <= bound):
            return False
    return True


def _worth_measuring(d: Derivative, accepted: bool, measured: bool, closer: bool) -> bool:
    """Whether to measure the noise at this step (before a smaller one).

    First where the estimate falls short and its table is irregular (noise, or a step
    still too large, breaks the pattern of its differences; where it is regular,
    truncation dominates and smaller steps help). Again, at a smaller offset, where noise
    measured at a larger one dominates the estimate: that sample may have held truncation.
    """
    if not measured:
        return not accepted and not np.all(d.regular)
    return closer and bool(np.any(d.error <= 2.0 * d.rounding))


def _rank(d: Derivative) -> tuple[bool, float]:
    return bool(np.any(d.kink)), float(np.sum(d.error))


@dataclass(frozen=True)
class _Attempt:
    step: float
    value: np.ndarray
    error: np.ndarray
    kink: np.ndarray
    jump: np.ndarray | None


class _Buffers:
    """Float64 scratch arrays of one shape (a slice of the outputs, `_attempt`), handed
    out and taken back within one attempt.

    Why: freed arrays of a megabyte and more go back to the operating system, and every
    fresh one is paged in again on first touch, which costs more than the arithmetic done
    in it; an array is only allocated when none is free, so the pool holds no more arrays
    than were in use at once.
    """

    def __init__(self, shape: tuple[int, ...]):
        self._shape = shape
        self._free: list[np.ndarray] = []

    def take(self) -> np.ndarray:
        return self._free.pop() if self._free else np.empty(self._shape)

    def give(self, *arrays: np.ndarray) -> None:
        self._free.extend(arrays)


def _agreement(attempts: list[_Attempt], best: Derivative) -> dict[str, Any]:
    """Where every attempt's estimate agrees with the kept one within both error estimates."""
    steps = tuple(a.step for a in attempts)
    if len(attempts) < 2:
        return {"steps_tried": steps}
    resolved = np.ones(best.value.shape, dtype=bool)
    for a in attempts:
        if a.value is best.value:
            continue
        seen = ~(a.kink | best.kink)
        with np.errstate(invalid="ignore"):
            agree = np.abs(a.value - best.value) <= a.error + best.error
        resolved &= agree | ~seen
        # A kink seen at a larger step only was near, not at, the point, and the smaller
        # step resolved it: its one-sided derivatives came together. Where they stay as far
        # apart, hidden only by larger error estimates, the kink lies closer to the point
        # than any step tried (a C1 point, a tiny kink) and the smaller step resolved nothing.
        if a.jump is not None and best.jump is not None:
            resolved &= ~(a.kink & ~best.kink & (best.jump >= 0.5 * a.jump))
    return {"resolved": resolved, "steps_tried": steps}


def _estimate(
    points, g0: np.ndarray, eps: float, safety: float, measured: np.ndarray | None,
    buffers: _Buffers | None = None,
) -> Derivative:
    """The Richardson estimate from one set of steps; `evals` and `notes` are the caller's.

    `measured` is the evaluation noise measured at the point, if any: the rounding bound
    is the larger of it and the model's. `buffers`: scratch arrays to draw on and return.
    """
    buffers = buffers or _Buffers(g0.shape)
    hs = [p[0] for p in points]
    levels = len(hs)
    has_plus = points[0][1] is not None
    has_minus = points[0][2] is not None

    # In-place arithmetic throughout (bit for bit the expressions it replaces): at 1e6
    # outputs and more, allocating fresh output-sized arrays costs as much as the maths.
    scratch = buffers.take()
    model = np.abs(g0, out=buffers.take())  # the largest |g| seen, then its noise model
    for _, p, m in points:
        for side in (p, m):
            if side is not None:
                np.maximum(model, np.abs(side, out=scratch), out=model)
    model *= _NOISE_ULPS * eps
    h_min = hs[-1]
    # Richardson amplifies noise by the sum of its weights' magnitudes. The noise bound is
    # the same for every scheme, so each scheme's rounding is formed once.
    central_gain = richardson_noise_gain(levels, one_sided=False)
    one_sided_gain = richardson_noise_gain(levels, one_sided=True)
    level = model if measured is None else np.maximum(model, measured, out=scratch)
    central_rounding = _scaled(level, central_gain, h_min, out=buffers.take())
    one_sided_rounding = _scaled(level, one_sided_gain, h_min, out=buffers.take())

    def table(quotients, ratio, rounding):
        return _table([q(buffers.take()) for q in quotients], ratio, safety, rounding, buffers)

    if not (has_plus and has_minus):
        # A scheme without evaluations on its side never wins: an infinite error.
        missing = (np.zeros(g0.shape), np.full(g0.shape, np.inf), np.ones(g0.shape, dtype=bool))
        c_val, c_err, c_reg = f_val, f_err, f_reg = b_val, b_err, b_reg = missing
    if has_plus and has_minus:
        c_val, c_err, c_reg = table(
            [_quotient(p, m, 2 * hi) for hi, p, m in points], 4.0, central_rounding
        )
    if has_plus:
        f_val, f_err, f_reg = table(
            [_quotient(p, g0, hi) for hi, p, m in points], 2.0, one_sided_rounding
        )
    if has_minus:
        b_val, b_err, b_reg = table(
            [_quotient(g0, m, hi) for hi, p, m in points], 2.0, one_sided_rounding
        )

    scheme = _argmin3(c_err, f_err, b_err, scratch)
    central, forward = scheme == Scheme.CENTRAL, scheme == Scheme.FORWARD
    if has_plus and has_minus and central.all():
        # The common case (a smooth function): the central table is the estimate.
        value, error, regular, rounding = c_val, c_err, c_reg, central_rounding
        buffers.give(one_sided_rounding)
    else:
        # Selected with masks rather than stacked tables: the same values, without three
        # output-sized copies per table.
        value = _select(central, c_val, forward, f_val, b_val, out=buffers.take())
        error = _select(central, c_err, forward, f_err, b_err, out=buffers.take())
        regular = _select(central, c_reg, forward, f_reg, b_reg, out=np.empty(g0.shape, bool))
        rounding = one_sided_rounding
        np.copyto(rounding, central_rounding, where=central)
        buffers.give(central_rounding)
        if has_plus and has_minus:
            buffers.give(c_val, c_err)

    # A kink at the point itself: both one-sided tables converge, to different values, by
    # more than sqrt(eps) of their size. Below that, a "jump" is rounding the model did not
    # bound (an output of a matmul that cancels to near zero rounds like its terms): at 1e6
    # outputs some always exceed their bound, and treating them as kinks cost a matmul 133
    # evaluations instead of 17. A kink that small moves the probe by less than the float64
    # accuracy floor (`_tolerance.FLOAT64_RELATIVE_FLOOR`) as well.
    if has_plus and has_minus:
        jump = buffers.take()
        np.abs(np.subtract(f_val, b_val, out=jump), out=jump)
        kink = jump > np.add(f_err, b_err, out=scratch)
        np.maximum(np.abs(f_val, out=scratch), np.abs(b_val), out=scratch)
        kink &= jump > np.sqrt(eps) * scratch
    else:
        jump = np.zeros(g0.shape)
        kink = np.zeros(g0.shape, dtype=bool)
    lower, upper = _bounds(value, error, kink, f_val, f_err, b_val, b_err, buffers)
    buffers.give(*(a for a, side in ((f_val, has_plus), (f_err, has_plus), (b_val, has_minus),
                                     (b_err, has_minus)) if side))
    # Curvature beyond noise dominates the change over the smallest step: the step is not
    # in the range where g is nearly linear (1/t-like behaviour, an ill-conditioned solve).
    curved = np.zeros(g0.shape, dtype=bool)
    if has_plus and has_minus:
        _, p, m = points[-1]
        # Against the model's noise only: a measured level may itself be such curvature,
        # read at offsets where g is not polynomial either.
        curved = _curved(p, m, g0, model, buffers)
    buffers.give(scratch, model)
    return Derivative(
        value, error, rounding, lower, upper, kink, scheme, hs[-1], 0, (), noise=measured,
        regular=regular, curved=curved, jump=jump,
    )


def _scaled(level: np.ndarray, gain: float, h_min: float, *, out: np.ndarray) -> np.ndarray:
    """`gain * level / h_min` into `out`: the rounding bound of a scheme."""
    np.multiply(level, gain, out=out)
    out /= h_min
    return out


def _table(
    quotients: list[np.ndarray], ratio: float, safety: float, rounding: np.ndarray,
    buffers: _Buffers,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scheme's value, error (`safety` x truncation + `rounding`) and regularity."""
    value, error, regular = _richardson(quotients, ratio=ratio, buffers=buffers)
    error *= safety
    error += rounding
    return value, error, regular


def _select(
    central: np.ndarray, c: np.ndarray, forward: np.ndarray, f: np.ndarray, b: np.ndarray,
    *, out: np.ndarray,
) -> np.ndarray:
    """`np.where(central, c, np.where(forward, f, b))` into `out`."""
    np.copyto(out, b)
    np.copyto(out, f, where=forward)
    np.copyto(out, c, where=central)
    return out


def _bounds(
    value: np.ndarray, error: np.ndarray, kink: np.ndarray,
    f_val: np.ndarray, f_err: np.ndarray, b_val: np.ndarray, b_err: np.ndarray,
    buffers: _Buffers,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """`value -/+ error`, and at kinks the interval the one-sided estimates span; None,
    None without a kink (`Derivative.lower`).

    The kink interval is formed at the kinks only (they are rare; the same expressions,
    elementwise, so the same bits as forming it everywhere and selecting).
    """
    if not kink.any():
        return None, None
    lower = np.subtract(value, error, out=buffers.take())
    upper = np.add(value, error, out=buffers.take())
    fv, fe, bv, be = f_val[kink], f_err[kink], b_val[kink], b_err[kink]
    lower[kink] = np.minimum(fv, bv) - fe - be
    upper[kink] = np.maximum(fv, bv) + fe + be
    return lower, upper


def _curved(
    p: np.ndarray, m: np.ndarray, g0: np.ndarray, model: np.ndarray, buffers: _Buffers
) -> np.ndarray:
    """`|p + m - 2 g0| > |p - m| + 4 model` (`Derivative.curved`)."""
    bend, threshold, scratch = buffers.take(), buffers.take(), buffers.take()
    np.add(p, m, out=bend)
    bend -= np.multiply(g0, 2.0, out=scratch)
    np.abs(bend, out=bend)
    np.multiply(model, 4.0, out=threshold)
    threshold += np.abs(np.subtract(p, m, out=scratch), out=scratch)
    curved = bend > threshold
    buffers.give(bend, threshold, scratch)
    return curved


def _quotient(a: np.ndarray, b: np.ndarray, h: float) -> Callable[[np.ndarray], np.ndarray]:
    """`(a - b) / h`, written into the array it is given (when a table has one free)."""

    def into(out: np.ndarray) -> np.ndarray:
        np.subtract(a, b, out=out)
        out /= h
        return out

    return into


def _argmin3(
    a: np.ndarray, b: np.ndarray, c: np.ndarray, scratch: np.ndarray | None = None
) -> np.ndarray:
    """`np.argmin(np.stack([a, b, c]), axis=0)`, ties and NaNs alike, without the stack.

    An argmin across a stacked axis walks memory with a stride and copies three arrays;
    these comparisons run contiguously. `scratch`: an array of a's shape to overwrite.
    """
    b_less = b < a
    scheme = b_less.astype(np.int8)  # three codes: one byte each
    smaller = a.copy() if scratch is None else scratch  # min(a, b), first one on ties
    np.copyto(smaller, a)
    np.copyto(smaller, b, where=b_less)
    scheme[c < smaller] = 2
    na, nb, nc = np.isnan(a), np.isnan(b), np.isnan(c)
    if na.any() or nb.any() or nc.any():  # argmin takes the first NaN as the minimum
        scheme[nc & ~na & ~nb] = 2
        scheme[nb & ~na] = 1
        scheme[na] = 0
    return scheme


def _richardson(
    estimates: list[np.ndarray], *, ratio: float, buffers: _Buffers | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Extrapolate estimates at steps h, h/2, ... whose errors go as h^p, h^2p, ...

    `ratio` is 2**p. Returns the most extrapolated value, as its error estimate the larger
    of its distances to the two best values one level below, and where the estimates are
    regular: their successive differences have one sign and shrink by `ratio` (within a
    factor of 2), as the error series says they do once the steps are small enough. Noise,
    or a feature of the function within the steps, breaks that pattern.

    The estimates are overwritten: the table is built in their buffers (the same
    operations, in the same order, as the textbook formulas, so the same bits; at 1e6
    outputs and more, fresh output-sized arrays cost as much as the arithmetic). Those
    not returned go to `buffers`, which also lends the scratch arrays.
    """
    buffers = buffers or _Buffers(estimates[0].shape)
    regular = _regular(estimates, ratio, buffers)
    prev = list(estimates)
    factor = ratio
    scratch = buffers.take()
    # Every level but the last in place: level[i] = (factor * prev[i + 1] - prev[i]) /
    # (factor - 1) overwrites prev[i], which no later entry of the level reads.
    while len(prev) > 2:
        for i in range(len(prev) - 1):
            _extrapolate(prev[i], prev[i + 1], factor, out=prev[i], scratch=scratch)
        buffers.give(prev[-1])
        prev = prev[:-1]
        factor *= ratio
    # The last level keeps the one below, which the error estimate reads.
    best = _extrapolate(prev[0], prev[1], factor, out=scratch, scratch=scratch)
    near, far = prev[-1], prev[-2]
    np.subtract(best, near, out=near)
    np.abs(near, out=near)
    np.subtract(best, far, out=far)
    np.abs(far, out=far)
    np.maximum(near, far, out=near)
    buffers.give(far)
    return best, near, regular


def _extrapolate(
    lo: np.ndarray, hi: np.ndarray, factor: float, *, out: np.ndarray, scratch: np.ndarray
) -> np.ndarray:
    """`(factor * hi - lo) / (factor - 1)` into `out` (which may be `lo` or `scratch`)."""
    np.multiply(hi, factor, out=scratch)
    np.subtract(scratch, lo, out=out)
    out /= factor - 1
    return out


def _regular(estimates: list[np.ndarray], ratio: float, buffers: _Buffers) -> np.ndarray:
    """Where successive differences of `estimates` have one sign and shrink by `ratio`
    (within a factor of 2); see `_richardson`. Three scratch arrays, whatever the levels."""
    regular = np.ones(estimates[0].shape, dtype=bool)
    if len(estimates) < 3:
        return regular
    d1, d2, bound = buffers.take(), buffers.take(), buffers.take()
    with np.errstate(invalid="ignore"):
        for a, b, c in zip(estimates[:-2], estimates[1:-1], estimates[2:]):
            np.subtract(a, b, out=d1)
            np.subtract(b, c, out=d2)
            np.multiply(d1, d2, out=bound)
            regular &= bound > 0
            np.abs(d1, out=d1)
            np.abs(d2, out=d2)
            np.multiply(d2, 0.5 * ratio, out=bound)
            regular &= d1 >= bound
            np.multiply(d2, 2 * ratio, out=bound)
            regular &= d1 <= bound
    buffers.give(d1, d2, bound)
    return regular
