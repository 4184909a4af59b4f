"""Reverse mode (or a hand-written gradient) against finite differences along a probe."""

from __future__ import annotations

import numpy as np

from .._finite_differences import Derivative
from .._probes import BasePoint
from .._report import Comparison, ComparisonKind
from .._tolerance import Tolerances, within

__all__ = ["compare_finite_differences", "finite_difference_check"]


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
) -> Comparison:
    """`<J_j^T u_j, v_i>` from `point.grads` against `<u_j, d/dt f_j(x + t v_i)>`.

    **Arguments:**
    - `point`: the base point; `point.grads[j][i]` is the analytic side.
    - `i`, `j`: the input and the output compared.
    - `derivative`: finite differences of all outputs along `point.v[i]`.
    - `tolerances`: the tolerance formulas; `check`: the comparison's name.

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
    lo_hi = None
    if kink.any():
        lo = float(np.sum(np.minimum(u * d.lower[a:b], u * d.upper[a:b])))
        hi = float(np.sum(np.maximum(u * d.lower[a:b], u * d.upper[a:b])))
        lo_hi = (lo, hi)
        fd_error = float(np.dot(np.abs(u[~kink]), d.error[a:b][~kink]))
    fd_error += tolerances.input_rounding(g.ravel(), point.finite_base[i].ravel(), d.step)
    tol, source = tolerances.finite_difference(
        fd_error, magnitude + point.out_scale[j], numeric, size=g.size + u.size
    )
    if lo_hi is None:
        error = abs(analytic - numeric)
    else:
        error = max(0.0, lo_hi[0] - analytic, analytic - lo_hi[1])
    notes = list(d.notes)
    if lo_hi is not None:
        notes.append(
            f"a kink at the input itself: the one-sided derivatives along the probe differ "
            f"({lo_hi[0]:.6g} to {lo_hi[1]:.6g}); any value between them is accepted as a "
            f"subgradient"
        )
    elif np.any(d.scheme[a:b] != _CENTRAL):
        notes.append("one-sided differences were used: central ones straddled a kink")
    return Comparison(
        check=check,
        input=point.input_names[i],
        output=point.output_names[j],
        error=error,
        tolerance=tol,
        tolerance_source=source,
        passed=within(error, tol),
        analytic=analytic,
        numeric=numeric,
        function_evals=d.evals,
        backward_evals=1,
        notes=notes,
        kind=ComparisonKind.FINITE_DIFFERENCES,
    )


# `Derivative.scheme` codes central differences as 0 (forward 1, backward 2).
_CENTRAL = 0
