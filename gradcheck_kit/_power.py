"""The power of a check: the smallest error in a gradient that it would have detected.

A finite-difference comparison of input `i` and output `j` sets the probe
`<g, v> = sum_k g_k v_k` (`g = J_j^T u_j`, the analytic vector-Jacobian product; `v` the
probe direction) against finite differences, within a tolerance `tol`. Its contributions
are `c_k = |g_k v_k|`. A relative error `r` in the gradient of one element changes the
probe by `r c_k`, so the check catches it only if `r c_k > tol`. For a *typical* element
the contribution is `typical = sum(c) / n_eff`, with `n_eff = sum(c)^2 / sum(c^2)` the
effective number of elements that carry the probe (all `n` for equal contributions, 1 when
one element dominates). The comparison's power is

    power = tol / typical,

the smallest relative error in one typical element's gradient that fails it: 1e-8 means an
error of one part in 1e8 would be caught, 0.5 that an element's gradient could be off by
half and pass. A report's power is the largest (weakest) over its finite-difference
comparisons; a comparison whose gradient is zero (`sum(c) = 0`), or in a float64 check
within the comparison's tolerance of zero, has none.

Rule: a check whose numeric side ran in a reduced precision (the function could not be
promoted to float64: float32 tensors captured in a closure and not listed in `promote=`,
fixed dtypes; or it returns float64 but computes in float32 inside) and that is not
otherwise failing, in which a finite-difference comparison has a power worse than
`WEAK_POWER` (an error of 1% in one element would pass), does not pass: those comparisons
are inconclusive, with the ways to reach a float64 check. float32 finite differences over
many elements are too coarse to resolve one element. A float64 check is as strong as
finite differences get, and every remedy leads to one: its power is reported, and a weak
one (a gradient negligible next to the outputs' rounding, such as a saturated softmax) is
not held against it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from ._probes import BasePoint
from ._report import Comparison

__all__ = ["WEAK_POWER", "comparison_power", "apply_power"]

#: A check that would let an error of this relative size in one typical element pass is
#: too weak to pass.
WEAK_POWER = 1e-2

_FIX = (
    "make the function dtype-generic (no fixed dtype= arguments, no casts) so it can be "
    "checked in float64, list the float32 tensors it captures in promote=(...) or pass the "
    "captured tensors as inputs, or use gradcheck_kit.compare(fn, reference, inputs) with a "
    "float64-capable reference"
)


def comparison_power(
    point: BasePoint, i: int, j: int, tolerance: float, share: float = 0.0
) -> float | None:
    """`tolerance / typical contribution` for the probe of input `i`, output `j` (module
    docstring); `None` when the gradient along the probe is zero. `share`: the part of an
    error in the gradient by which the tolerance grows with it
    (`Tolerances.analytic_share`); an error of `r c` then fails only beyond
    `tolerance / (1 - share)`, and never where the share reaches 1 (infinite power;
    `_comparisons.finite_differences.absorbed_share`)."""
    c = _contributions(point, i, j)
    total = float(c.sum())
    if not total > 0 or not math.isfinite(total):
        return None
    # Scaled by the largest contribution: with subnormal contributions (the gradient of
    # erf far in its tails) sum(c^2) underflows to zero although sum(c) does not.
    w = c / c.max()
    n_eff = float(w.sum()) ** 2 / float(np.dot(w, w))
    if share >= 1.0:
        return math.inf
    return float(tolerance) / (total / n_eff) / (1.0 - share)


def _contributions(point: BasePoint, i: int, j: int) -> np.ndarray:
    return np.abs(np.asarray(point.grads[j][i], dtype=np.float64).ravel()
                  * np.asarray(point.v[i], dtype=np.float64).ravel())


def apply_power(
    point: BasePoint,
    comparisons: list[Comparison],
    fd: Mapping[tuple[int, int], int],
    shares: Mapping[tuple[int, int], float],
    *,
    failing: bool,
    enforce: bool,
) -> float | None:
    """The report's power (the weakest over the finite-difference comparisons `fd`, which
    maps `(input, output)` to an index in `comparisons`; `shares` holds the part of an
    error each one's tolerance absorbs, `absorbed_share`). Where `enforce` (the numeric side
    is not float64) and the check is not `failing`, passing comparisons weaker than
    `WEAK_POWER` are made inconclusive in place."""
    powers: dict[int, float] = {}
    for (i, j), k in fd.items():
        tolerance = comparisons[k].tolerance
        p = comparison_power(point, i, j, tolerance, shares.get((i, j), 0.0))
        if p is None or math.isnan(p):
            continue
        if not enforce and float(_contributions(point, i, j).sum()) <= tolerance:
            # A float64 probe whose whole gradient lies within its tolerance of zero (a bias
            # that a normalisation cancels) is checked as sharply as finite differences
            # allow; a relative power would only describe the rounding of zero.
            continue
        powers[k] = p
    if not powers:
        return None
    if enforce and not failing:
        for k, p in powers.items():
            c = comparisons[k]
            if c.passed and p > WEAK_POWER:
                comparisons[k] = dataclasses.replace(
                    c,
                    passed=False,
                    inconclusive=True,
                    inconclusive_reason=(
                        f"too weak to decide: power {p:.2g} (an error of {p:.2g} relative in "
                        f"the gradient of one typical element would pass; a conclusive check "
                        f"needs below {WEAK_POWER:g}); to fix, {_FIX}"
                    ),
                )
    return max(powers.values())
