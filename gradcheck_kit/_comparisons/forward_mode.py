"""Reverse mode against forward mode: the dot-product test, exact up to rounding."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .._probes import BasePoint
from .._report import Comparison, ComparisonKind
from .._tolerance import Tolerances, within

__all__ = ["FORWARD_MODE_CHECK", "compare_forward_mode", "forward_rule_disagreement"]

FORWARD_MODE_CHECK = "reverse mode vs forward mode (dot-product test)"


def compare_forward_mode(
    point: BasePoint,
    i: int,
    j: int,
    forward_outputs: Sequence[np.ndarray],
    *,
    tolerances: Tolerances,
) -> Comparison:
    """`<J_j^T u_j, v_i>` (reverse, from `point.grads`) against `<u_j, J_j v_i>` (forward).

    `forward_outputs[j]` is `J_j v_i`, forward mode's derivative of output j along
    `point.v[i]`. No truncation error on either side: the tolerance is rounding only.
    """
    g = point.grads[j][i].ravel()
    v = point.v[i].ravel()
    u = point.u[j].ravel()
    jv = forward_outputs[j].ravel()
    reverse = float(np.dot(g, v))
    forward = float(np.dot(u, jv))
    magnitude = float(np.dot(np.abs(g), np.abs(v)) + np.dot(np.abs(u), np.abs(jv))) + point.out_scale[j]
    tol, source = tolerances.forward_mode(magnitude, forward, size=g.size + u.size)
    error = abs(reverse - forward)
    return Comparison(
        check=FORWARD_MODE_CHECK,
        input=point.input_names[i],
        output=point.output_names[j],
        error=error,
        tolerance=tol,
        tolerance_source=source,
        passed=within(error, tol),
        analytic=reverse,
        numeric=forward,
        backward_evals=0,
        kind=ComparisonKind.FORWARD_MODE,
    )


def forward_rule_disagreement(forward: Comparison, finite_differences: Comparison) -> str | None:
    """A note when forward mode alone is wrong: reverse mode and finite differences agree.

    Then the function's jvp rule is wrong, not its backward (torch has such rules for a few
    ops); the backward is what gradcheck checks. None when forward mode agrees with reverse
    mode, when the finite-difference comparison failed too, or when forward mode agrees
    with finite differences within their tolerance.
    """
    fd = finite_differences
    if forward.error <= forward.tolerance:  # NaN (a rule that returns NaN) is no agreement
        return None
    if not fd.passed or fd.numeric is None or forward.numeric is None:
        return None
    if abs(forward.numeric - fd.numeric) <= fd.tolerance:
        return None
    return (
        f"forward mode disagrees with both reverse mode and finite differences for "
        f"{forward.input} -> {forward.output} (forward {forward.numeric:.10g}, "
        f"finite differences {fd.numeric:.10g}): the forward-mode (jvp) rule looks wrong "
        f"while the backward agrees; pass check_forward_ad=True to fail on it"
    )
