"""The tolerance model: how far two derivative oracles may disagree, derived from the dtype.

Every tolerance in gradcheck_kit comes from this table and from the error estimates that
the finite-difference oracle returns with each value; no fixed absolute tolerance is used,
so a wrong gradient of size 1e-6 is caught as surely as one of size 1.

`Tolerances` holds the formulas of the comparisons: one method per comparison kind, each
returning the tolerance and a sentence saying how it was formed (`tolerance_source`).

**The user's `atol`/`rtol` (one rule for every comparison):** where either is given, the
derived rounding allowance of the comparison is replaced by `atol + rtol * |reference|`,
the reference being the value the other side is measured against (the finite-difference
value, the forward-mode value, the float64 gradient's norm). Finite-difference
comparisons add the oracle's own error estimate to it, since finite differences are not
exact. The determinism comparison has its own option, `nondet_tol`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._finite_differences import richardson_noise_gain

__all__ = [
    "ArrayComparison",
    "FLOAT64_RELATIVE_FLOOR",
    "INPUT_ROUNDING_GAIN",
    "MEASURED_ROUNDING_SIGMAS",
    "ToleranceModel",
    "Tolerances",
    "UserTolerance",
    "dtype_name",
    "richardson_noise_gain",
    "within",
]


@dataclass(frozen=True)
class ArrayComparison:
    """Result of `ToleranceModel.compare_arrays`."""

    error: float
    tolerance: float
    margin: float
    worst_index: tuple[int, ...]
    passed: bool
    source: str
    # How many elements exceed their tolerance, of how many (as torch.testing.assert_close
    # reports "Mismatched elements: k / N").
    mismatched: int = 0
    size: int = 0


@dataclass(frozen=True)
class ToleranceModel:
    """Tolerances for one floating-point dtype.

    **Arguments:**
    - `name`: the dtype's name (`"float64"`, `"float32"`, `"bfloat16"`, `"float16"`).
    - `eps`: its unit roundoff (half the distance from 1 to the next number).
    - `fd_safety`: factor on Richardson's truncation-error estimate. The estimate is the
      size of the last correction, which usually over-states the remaining error; the
      factor covers the cases where it does not.
    - `rounding_factor`: ulps of headroom for rounding in a computed derivative, per unit of
      the sum of the magnitudes that were added to form it (times the square root of the
      number of terms, the probabilistic growth of rounding in a sum). It is not derived
      from a formula: it stands for the rounding each term picked up on its way through
      the forward and backward passes before the final sum, about one ulp per operation.
      64 covers a chain of 64 operations per term in the worst case (errors adding up) and
      far longer chains when they add up like a random walk.
    - `precision_factor`: ulps of the reduced dtype allowed between its backward pass and
      the float64 one (normwise), before scaling by the forward's own measured error. Also
      not derived: it stands for what a backward loses beyond what its forward loses
      (measured as the forward's amplification and multiplied in): a backward runs about
      twice the forward's operations on intermediates stored in the reduced dtype, and
      256 ulps is headroom for that over a chain of up to about a hundred operations.

    **Example:** `ToleranceModel.for_dtype("float32").eps == 2.0**-24`.
    """

    name: str
    eps: float
    fd_safety: float = 8.0
    rounding_factor: float = 64.0
    precision_factor: float = 256.0

    @property
    def tiny(self) -> float:
        """The smallest positive normal number of this dtype."""
        return _TINY[self.name]

    @property
    def subnormal(self) -> float:
        """The spacing of this dtype's numbers near zero (its smallest subnormal number)."""
        return _SUBNORMAL[self.name]

    @classmethod
    def for_dtype(cls, dtype: Any) -> ToleranceModel:
        """The model for `dtype`: a name, a numpy dtype, or a torch or jax dtype."""
        name = dtype_name(dtype)
        try:
            return _TABLE[name]
        except KeyError:
            raise ValueError(
                f"dtype={dtype!r} has no tolerance model, because gradients are only checked "
                f"in floating point. Use one of {sorted(_TABLE)}."
            ) from None

    def compare_arrays(
        self, actual: Any, reference: Any, *, terms: int = 1
    ) -> ArrayComparison:
        """Compare two computations, in this dtype, of the same array.

        The tolerance of each element is `rounding_factor * eps * sqrt(terms)` times the
        element's own magnitude plus the array's root-mean-square: rounding in a sum of
        `terms` terms grows like its square root, and the RMS term covers cancellation,
        which leaves an element small while its rounding error stays at the scale of the
        terms that produced it.
        """
        a = np.asarray(actual, dtype=np.float64)
        r = np.asarray(reference, dtype=np.float64)
        if a.shape != r.shape:
            raise ValueError(f"cannot compare arrays of shapes {a.shape} and {r.shape}")
        if r.size == 0:
            return ArrayComparison(0.0, 0.0, 0.0, (), True, "empty arrays")
        rel = self.rounding_factor * self.eps * float(np.sqrt(max(terms, 1)))
        rms = float(np.sqrt(np.mean(r * r))) if np.all(np.isfinite(r)) else 0.0
        tol = rel * (np.abs(r) + np.abs(a) + rms)
        # Two exact zeros agree; give them the smallest positive tolerance so margins stay finite.
        tol = np.maximum(tol, np.finfo(np.float64).tiny)
        err = np.abs(a - r)
        err = np.where(np.isnan(err) | (np.isnan(a) != np.isnan(r)), np.inf, err)
        margins = err / tol
        flat = int(np.argmax(margins))
        idx = tuple(int(i) for i in np.unravel_index(flat, r.shape))
        margin = float(margins.flat[flat])
        return ArrayComparison(
            error=float(err.flat[flat]),
            tolerance=float(tol.flat[flat]),
            margin=margin,
            worst_index=idx,
            passed=bool(margin <= 1.0),
            source=(
                f"{self.rounding_factor:g} ulps of {self.name} x sqrt({terms} terms) "
                f"x (|values| + rms)"
            ),
            mismatched=int(np.count_nonzero(~(margins <= 1.0))),
            size=int(r.size),
        )


_SUBNORMAL = {
    "float64": 2.0**-1074, "float32": 2.0**-149, "float16": 2.0**-24, "bfloat16": 2.0**-133,
}

_TINY = {
    "float64": 2.0**-1022, "float32": 2.0**-126, "float16": 2.0**-14, "bfloat16": 2.0**-126,
}

_TABLE: dict[str, ToleranceModel] = {
    "float64": ToleranceModel("float64", 2.0**-53),
    "float32": ToleranceModel("float32", 2.0**-24),
    # Half precisions: few bits, so rounding dominates; fewer ulps of headroom are needed
    # for the same relative confidence.
    "float16": ToleranceModel("float16", 2.0**-11, rounding_factor=16.0, precision_factor=32.0),
    "bfloat16": ToleranceModel("bfloat16", 2.0**-8, rounding_factor=8.0, precision_factor=16.0),
}


# Richardson levels of the engine's finite differences (`directional_derivative(levels=)`).
FD_LEVELS = 3
# Gain of the rounding of the perturbed input x + t v (each element off by up to eps |x_k|)
# through the finite-difference formula: the larger of the central (33/20) and one-sided
# (11/2) weights' sums at FD_LEVELS, rounded up to a whole number (6). The one-sided sum
# includes the evaluation at the point itself, which has no input rounding (15/4 without
# it), so 6 is an upper bound for every scheme the oracle may pick.
INPUT_ROUNDING_GAIN = float(
    math.ceil(
        max(
            richardson_noise_gain(FD_LEVELS, one_sided=True),
            richardson_noise_gain(FD_LEVELS, one_sided=False),
        )
    )
)


# Relative accuracy, in units of the magnitudes of a float64 probe's terms, below which a
# disagreement between a gradient and finite differences is not reported as a wrong
# gradient (a special function's backward accurate to 5e-10, as torch's digamma). The
# sensitivity the check is built for, a 0.1% error in one element of 100,000, moves a
# probe by about 1e-8 of its terms: ten times this floor.
FLOAT64_RELATIVE_FLOOR = 1e-9


# Multiple of the measured rounding of the analytic side (`finite_difference_measured`):
# the spreads are differences of two roundings, each about 1/sqrt(2) of their size, so
# this is over five standard deviations of the probe's rounding.
MEASURED_ROUNDING_SIGMAS = 8.0


@dataclass(frozen=True)
class UserTolerance:
    """The user's `atol` and `rtol`; `None` for both keeps the derived tolerances."""

    atol: float | None = None
    rtol: float | None = None

    @property
    def given(self) -> bool:
        return self.atol is not None or self.rtol is not None

    def bound(self, reference: float) -> float:
        """`atol + rtol * |reference|`, a missing one counting as 0."""
        return (self.atol or 0.0) + (self.rtol or 0.0) * abs(reference)

    def source(self, reference: str, replaced: str) -> str:
        return (
            f"user atol={self.atol or 0.0:g}, rtol={self.rtol or 0.0:g} x |{reference}|, "
            f"replacing the derived {replaced}"
        )


@dataclass(frozen=True)
class Tolerances:
    """The tolerance of each comparison kind, from the dtype models and the user's atol/rtol.

    `work` is the model of the precision the derivatives are compared in (float64 when the
    function was promoted), `native` the model of the inputs' own dtype.
    """

    work: ToleranceModel
    native: ToleranceModel
    user: UserTolerance = UserTolerance()

    def rounding(self, magnitude: float, size: int) -> float:
        """Rounding allowance of a computed derivative formed from terms of total `magnitude`.

        Rounding grows with the magnitudes summed into it; the square root of the number of
        elements accounts for the length of those sums.
        """
        w = self.work
        return w.rounding_factor * w.eps * np.sqrt(max(size, 1)) * magnitude

    def analytic_share(self, size: int) -> float:
        """The share of a finite-difference probe's terms that `finite_difference` allows
        as rounding of the analytic side (0 where the user's atol/rtol replace it): an
        error in the gradient widens that allowance by this share of itself."""
        return 0.0 if self.user.given else float(self.rounding(1.0, size))

    def input_rounding(self, g: np.ndarray, x: np.ndarray, step: float) -> float:
        """Bound on the finite-difference error from rounding the perturbed input x + t v.

        The output-noise bound scales with |f|, which misses this where f is near zero
        (f(x) = x - 1 at x = 1): each perturbed element is off by up to eps |x_k|, moving
        the probe by sum_k |g_k| eps |x_k|, amplified by the Richardson weights
        (`INPUT_ROUNDING_GAIN`) and divided by the smallest step as any noise is.
        """
        if step <= 0:
            return 0.0
        return INPUT_ROUNDING_GAIN * self.work.eps * float(np.dot(np.abs(g), np.abs(x))) / step

    def underflow(self, u: np.ndarray, step: float) -> float:
        """The smallest probe change finite differences resolve at the bottom of the range.

        Below the dtype's smallest normal number values keep a fixed absolute spacing, so
        an output whose changes along the probe are that small is rounded by up to half of
        it (`tiny * eps`) in every evaluation, whatever its units: amplified by the
        Richardson weights and divided by the smallest step like any noise, weighted by
        the cotangent. Elsewhere this is hundreds of orders of magnitude below every other
        bound; it only decides whether a comparison is resolved at all, never widens a
        tolerance.
        """
        if step <= 0:
            return math.inf
        w = self.work
        return INPUT_ROUNDING_GAIN * w.tiny * w.eps * float(np.sum(np.abs(u))) / step

    def finite_difference(
        self, fd_error: float, magnitude: float, numeric: float, size: int
    ) -> tuple[float, str]:
        """An analytic value against a finite-difference one, `numeric`, of error `fd_error`."""
        w = self.work
        rounding_text = (
            f"{w.rounding_factor:g} ulps of {w.name} x sqrt(size) x (|terms| + "
            f"|u| (|f(x)| + |f''|))"
        )
        if self.user.given:
            return self.user.bound(numeric) + fd_error, (
                self.user.source("finite differences", rounding_text)
                + ", plus the finite-difference error estimate"
            )
        return fd_error + self.rounding(magnitude, size), (
            f"finite-difference error estimate ({w.fd_safety:g} x Richardson's truncation "
            f"estimate + rounding bound) + {rounding_text}"
        )

    def finite_difference_measured(
        self, fd_error: float, spread: float, terms: float
    ) -> tuple[float, str]:
        """`finite_difference` below float64, where the analytic side's rounding is measured.

        `spread` is `|| s * v ||` for `s` the per-element change of the gradient under a
        rescaled cotangent and under a move of the inputs by an ulp (the backward's own
        rounding and that of what it reads from the forward), `terms` is `|| g * v ||`.
        The probe `<g, v>` sums per-element errors of random sign (the direction `v` is
        random), so they add in quadrature: `MEASURED_ROUNDING_SIGMAS` times the measured
        norm, with `rounding_factor` ulps of `terms` for roundings neither move changes.
        """
        w = self.work
        allowance = MEASURED_ROUNDING_SIGMAS * spread + w.rounding_factor * w.eps * terms
        return fd_error + allowance, (
            f"finite-difference error estimate ({w.fd_safety:g} x Richardson's truncation "
            f"estimate + rounding bound) + {MEASURED_ROUNDING_SIGMAS:g} x the backward's "
            f"measured rounding + {w.rounding_factor:g} ulps of {w.name} x ||g v||"
        )

    def accuracy_floor(self, terms: float) -> float:
        """Disagreement not reported as a wrong gradient: `FLOAT64_RELATIVE_FLOOR` x `terms`.

        Only for finite-difference comparisons in float64 without the user's atol/rtol
        (which replace every derived allowance); zero otherwise. `terms` is the sum of the
        magnitudes of the probe's terms, `sum |g_k| |v_k|`.
        """
        if self.user.given or self.work.name != "float64":
            return 0.0
        return FLOAT64_RELATIVE_FLOOR * terms

    def forward_mode(
        self,
        reverse_terms: float,
        forward_terms: float,
        forward: float,
        *,
        sizes: tuple[int, int],
        spread: float = 0.0,
    ) -> tuple[float, str]:
        """Reverse against forward mode: both exact up to rounding, each of its own terms.

        `<J^T u, v>` sums `n_in` terms of total magnitude `reverse_terms = sum |J^T u| |v|`,
        `<u, J v>` sums `n_out` terms of total `forward_terms = sum |u| |J v|` (plus the
        output-sized intermediates `|u| (|f| + |f''|)`, see `output_scales`); each term carries
        the rounding of its chain (`rounding_factor` ulps) and the sums grow like the square
        root of their lengths, `sizes = (n_in, n_out)`. Where the derivative is
        ill-conditioned (pinv near singularity, layer norm of rows with a large offset),
        both modes are only as accurate as the forward's intermediates: `spread` is how far
        the reverse-mode probe moves when every input moves by one ulp (random signs),
        measured where the rounding terms alone do not cover the disagreement, with
        `FORWARD_SPREAD_GAIN` of headroom.
        """
        w = self.work
        n_in, n_out = (max(n, 1) for n in sizes)
        rounding_text = (
            f"{w.rounding_factor:g} ulps of {w.name} x (sqrt(n_in) |J^T u| |v| + sqrt(n_out) "
            f"(|u| |J v| + |u| (|f(x)| + |f''|)))"
        )
        if spread > 0:
            rounding_text += (
                f" + {FORWARD_SPREAD_GAIN:g} x the reverse probe's change under a 1-ulp change "
                f"of the inputs"
            )
        if self.user.given:
            return self.user.bound(forward), self.user.source("forward mode", rounding_text)
        tol = w.rounding_factor * w.eps * (
            math.sqrt(n_in) * reverse_terms + math.sqrt(n_out) * forward_terms
        ) + FORWARD_SPREAD_GAIN * spread
        return tol, rounding_text + " (both sides exact up to rounding)"

    def precision(
        self,
        amplification: float,
        norm: float,
        reference_norm: float,
        *,
        input_spread: float = 0.0,
        rounding_spread: float = 0.0,
        size: int = 1,
    ) -> tuple[float, str]:
        """The native-dtype backward against the float64 one, normwise.

        `amplification` is how many native ulps the forward itself loses (a backward through
        the same operations loses about as much); `norm` the float64 gradient's norm (its
        rounding scales with it), `reference_norm` the same norm as the user's rtol sees it.
        The backward's own rounding is measured on the float64 backward, so that it neither
        scales with |f(x)| (a large loss value hides nothing) nor misses what the forward
        does not show:

        - `input_spread`: how far the float64 gradient moves when every input element (by
          at least an ulp of its input's scale), and every tensor the forward saves for the
          backward (where the framework exposes them: torch), moves by one native ulp
          (random signs). A native backward computes
          on intermediates rounded to native ulps (std's mean of 1000 + 0.1 x, a saturated
          tanh's output, batch norm's statistics): their rounding moves it as far, however
          little it moves the forward.
        - `rounding_spread`: how far the float64 gradient moves when the cotangent is
          scaled by 3 (and the result by 1/3), which changes the rounding of every product
          in the backward: the float64 backward's own rounding, which the native one
          repeats `native eps / float64 eps` times larger (cancellation in a saturated
          softmax's backward).

        Last, `precision_factor` native subnormal spacings per element (`sqrt(size)` of
        them): the native dtype has no finer resolution near zero, and a float64 gradient
        of 1e-51 (exp(-117) terms) is 0 in float32. It is the dtype's range, not a
        tolerance: far below any gradient float32 represents to a relative accuracy.
        """
        nat, work = self.native, self.work
        derived_text = (
            f"{nat.precision_factor:g} ulps of {nat.name} x max(1, forward's own "
            f"error in ulps = {amplification:.3g}) x |float64 gradient| + "
            f"{PRECISION_INPUT_GAIN:g} x the float64 gradient's change under a 1-ulp "
            f"{nat.name} change of the inputs and saved tensors + {PRECISION_ROUNDING_GAIN:g} x "
            f"({nat.name} eps / {work.name} eps) x its change under a rescaled cotangent + "
            f"{nat.precision_factor:g} {nat.name} subnormal spacings x sqrt(size)"
        )
        if self.user.given:
            return self.user.bound(reference_norm), self.user.source(
                "float64 gradient", derived_text
            )
        tol = (
            nat.precision_factor * nat.eps * max(1.0, amplification) * norm
            + PRECISION_INPUT_GAIN * input_spread
            + PRECISION_ROUNDING_GAIN * (nat.eps / work.eps) * rounding_spread
            + nat.precision_factor * nat.subnormal * math.sqrt(max(size, 1))
        )
        return tol, derived_text


# Headroom on the measured spread of the reverse-mode probe (`Tolerances.forward_mode`):
# a single random sample of how far rounding-level changes move it, which may come out
# small; measured ratios of the disagreement to it stay below 0.15.
FORWARD_SPREAD_GAIN = 8.0


# Headroom on the measured spreads of the float64 backward (`Tolerances.precision`). Not
# derived: a native backward rounds a handful of intermediates of the inputs' size before
# they reach the gradient (a mean, a centred input, a norm), each by a few ulps, and the
# spreads are single random samples of a rounding error that may come out small; 16
# covers both.
PRECISION_INPUT_GAIN = 16.0
PRECISION_ROUNDING_GAIN = 16.0


def dtype_name(dtype: Any) -> str:
    """The canonical name of a numpy, torch or jax dtype, or of a dtype name."""
    if isinstance(dtype, str):
        name = dtype
    else:
        name = str(dtype)
        if name.startswith("torch."):
            name = name[len("torch.") :]
        else:
            try:
                name = np.dtype(dtype).name
            except TypeError:
                pass
    aliases = {"double": "float64", "float": "float32", "half": "float16"}
    return aliases.get(name, name)


def within(error: float, tolerance: float) -> bool:
    """error <= tolerance, where an infinite tolerance (no estimate) proves nothing."""
    return bool(np.isfinite(error) and np.isfinite(tolerance) and error <= tolerance)
