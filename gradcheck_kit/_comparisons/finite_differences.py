"""Reverse mode (or a hand-written gradient) against finite differences along a probe."""

from __future__ import annotations

import numpy as np

from .._finite_differences import Derivative, Scheme
from .._probes import BasePoint
from .._report import Comparison, ComparisonKind
from .._tolerance import FLOAT64_RELATIVE_FLOOR, Tolerances, within

__all__ = [
    "absorbed_share", "compare_finite_differences", "finite_difference_check", "kink_interval",
    "rounding_size",
]


def finite_difference_check(*, hand_written: bool, promoted: bool, forward: bool = False) -> str:
    """The comparison's name as reports print it (`forward`: the analytic side is forward
    mode, torch's `check_backward_ad=False`)."""
    check = (
        "hand-written gradient vs finite differences"
        if hand_written
        else "forward mode vs finite differences" if forward
        else "reverse mode vs finite differences"
    )
    return check + (" (float64)" if promoted else "")


def compare_finite_differences(
    point: BasePoint,
    i: int,
    j: int,
    derivative: Derivative,
    *,
    tolerances: Tolerances,
    check: str,
    spread: np.ndarray | None = None,
) -> Comparison:
    """`<J_j^T u_j, v_i>` from `point.grads` against `<u_j, d/dt f_j(x + t v_i)>`.

    **Arguments:**
    - `point`: the base point; `point.grads[j][i]` is the analytic side.
    - `i`, `j`: the input and the output compared.
    - `derivative`: finite differences of all outputs along `point.v[i]`.
    - `tolerances`: the tolerance formulas; `check`: the comparison's name.
    - `spread`: below float64, the measured rounding of the analytic gradient per element
      (`Tolerances.finite_difference_measured`); None for the model's allowance (or the
      user's atol/rtol). The engine measures it only where no atol/rtol is given.

    Where the one-sided derivatives differ at the point itself (a kink), any analytic value
    between them is a subgradient and is accepted.
    """
    d = derivative
    direction = point.v[i].ravel()
    a, b = point.parts[j]
    u = point.u[j].ravel()
    g = point.grads[j][i]
    analytic = float(np.dot(g.ravel(), direction))
    magnitude = float(np.dot(np.abs(g.ravel()), np.abs(direction)))
    numeric = float(np.dot(u, d.value[a:b]))
    fd_error = float(np.dot(np.abs(u), d.error[a:b]))
    kink = d.kink[a:b]
    lo_hi = kink_interval(point, i, j, d)
    if lo_hi is not None:
        fd_error = float(np.dot(np.abs(u[~kink]), d.error[a:b][~kink]))
    fd_error += tolerances.input_rounding(g.ravel(), point.finite_base[i].ravel(), d.step)
    if spread is not None:
        tol, source = tolerances.finite_difference_measured(
            fd_error, float(np.linalg.norm(spread.ravel() * direction)),
            float(np.linalg.norm(g.ravel() * direction)),
        )
    else:
        tol, source = tolerances.finite_difference(
            fd_error, magnitude + point.out_scale[j], numeric, size=rounding_size(point, i, j)
        )
    if lo_hi is None:
        error = abs(analytic - numeric)
    else:
        error = max(0.0, lo_hi[0] - analytic, analytic - lo_hi[1])
    notes = list(d.notes)
    floor = tolerances.accuracy_floor(magnitude)
    if tol < error <= tol + floor:
        tol += floor
        source += f" + {FLOAT64_RELATIVE_FLOOR:g} x the probe's terms (float64 accuracy floor)"
        notes.append(
            f"the gradient agrees with finite differences to {error / magnitude:.2g} relative "
            f"to the probe's terms: beyond the rounding model, within the float64 accuracy "
            f"floor of {FLOAT64_RELATIVE_FLOOR:g} (far below any bug worth reporting; a "
            f"special function's backward is often this accurate)"
        )
    if lo_hi is not None:
        notes.append(
            f"a kink at the input itself: the one-sided derivatives along the probe differ "
            f"({lo_hi[0]:.6g} to {lo_hi[1]:.6g}); any value between them is accepted as a "
            f"subgradient"
        )
    elif np.any(d.scheme[a:b] != Scheme.CENTRAL):
        k = int(np.count_nonzero(d.scheme[a:b] != Scheme.CENTRAL))
        notes.append(
            f"one-sided differences were used at {k} of {b - a} output elements, where "
            f"their error estimate was the smaller (central ones straddle a kink there, or "
            f"rounding decided between estimates alike)"
        )
    passed = within(error, tol)
    reason = None if passed else _unresolved(point, i, j, d, error)
    return Comparison(
        check=check,
        input=point.input_names[i],
        output=point.output_names[j],
        error=error,
        tolerance=tol,
        tolerance_source=source,
        passed=passed,
        analytic=analytic,
        numeric=numeric,
        function_evals=d.evals,
        backward_evals=1,
        notes=notes,
        kind=ComparisonKind.FINITE_DIFFERENCES,
        inconclusive=reason is not None,
        inconclusive_reason=reason,
    )


def kink_interval(point: BasePoint, i: int, j: int, d: Derivative) -> tuple[float, float] | None:
    """The interval of the one-sided derivatives of probe (i, j) (`d` along input i's
    direction), where it has a kink; None where it has none."""
    a, b = point.parts[j]
    if not d.kink[a:b].any():
        return None
    u = point.u[j].ravel()
    lower, upper = d.bounds()
    lo = float(np.sum(np.minimum(u * lower[a:b], u * upper[a:b])))
    hi = float(np.sum(np.maximum(u * lower[a:b], u * upper[a:b])))
    return lo, hi


def rounding_size(point: BasePoint, i: int, j: int) -> int:
    """The length of the sums a probe of input `i` and output `j` is formed from, as its
    rounding allowance counts it (`Tolerances.rounding`)."""
    return int(np.size(point.grads[j][i])) + int(np.size(point.u[j]))


def absorbed_share(
    point: BasePoint, i: int, j: int, step: float, *, tolerances: Tolerances,
    measured: bool = False,
) -> float:
    """How much of an error in the gradient this comparison's tolerance grows by, for
    finite differences at `step` (`Derivative.step`).

    Two allowances are formed from the analytic gradient itself: the rounding of the
    analytic side (`Tolerances.analytic_share` of the probe's terms) and the rounding of
    the perturbed inputs (`Tolerances.input_rounding`, `sum |g_k| eps |x_k|`). An element
    whose gradient is off by `r c_k` (`c_k = |g_k v_k|`) widens them by this share of
    `r c_k`, the second one weighted over the elements as the probe weighs them. In
    float64 it is about 1e-12; in bfloat16 it can reach 1, where no error is detected.
    With the analytic rounding `measured` (`finite_difference_measured`) the first grows
    by at most its `rounding_factor` ulps of the error.
    """
    g = np.abs(point.grads[j][i].ravel())
    magnitude = float(np.dot(g, np.abs(point.v[i].ravel())))
    if measured:
        share = tolerances.work.rounding_factor * tolerances.work.eps
    else:
        share = tolerances.analytic_share(rounding_size(point, i, j))
    if magnitude > 0:
        moved = tolerances.input_rounding(g, point.finite_base[i].ravel(), step)
        share += moved / magnitude
    return share


# A failing comparison is inconclusive when the elements whose finite-difference error
# estimate is unreliable (`Derivative.unreliable`) would explain the disagreement had
# their estimates been this many times too small. A wrong gradient of practical size on a
# function finite differences resolve stays a failure: its disagreement dwarfs the
# estimates of any element even at this factor.
UNRELIABLE_FACTOR = 1000.0


def _unresolved(point: BasePoint, i: int, j: int, d: Derivative, error: float) -> str | None:
    """Why a failing comparison proves nothing, or None where its failure stands."""
    if d.unreliable is None:
        return None
    a, b = point.parts[j]
    bad = d.unreliable[a:b]
    if not bad.any():
        return None
    u = np.abs(point.u[j].ravel())
    slack = float(np.dot(u[bad], d.error[a:b][bad]))
    if not UNRELIABLE_FACTOR * slack >= error:
        return None
    steps = ", ".join(f"{h:.3g}" for h in d.steps_tried) or f"{d.step:.3g}"
    return (
        f"finite differences did not resolve the derivative along {point.input_names[i]}: "
        f"at {int(bad.sum())} of {bad.size} output elements the estimates at the steps tried "
        f"(smallest steps {steps}, in units of the input's scale) do not converge as the "
        f"error series says they must, so their error estimate "
        f"({slack:.3g}) is unreliable and the disagreement ({error:.3g}) is no evidence of a "
        f"wrong gradient. Typical causes: a jump in a higher derivative within every step "
        f"(a C1 point such as smooth_l1_loss at |x| = beta), a tiny kink at the point, or an "
        f"ill-conditioned problem (no step resolves its smallest singular value). To decide: "
        f"check at a point away from the kink or at a better-conditioned input, or pass a "
        f"step of your own (eps=, in input units) small enough for the function to be "
        f"nearly linear over it; where forward mode ran, the dot-product test still compares "
        f"the two AD modes"
    )

