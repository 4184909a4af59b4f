"""Reverse mode against forward mode: the dot-product test, exact up to rounding."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .._probes import BasePoint
from .._report import Comparison, ComparisonKind
from .._tolerance import Tolerances, within

__all__ = [
    "FORWARD_MODE_CHECK", "compare_forward_mode", "forward_rule_disagreement",
    "subgradient_disagreement",
]

FORWARD_MODE_CHECK = "reverse mode vs forward mode (dot-product test)"


def compare_forward_mode(
    point: BasePoint,
    i: int,
    j: int,
    forward_outputs: Sequence[np.ndarray],
    *,
    tolerances: Tolerances,
    spread: np.ndarray | None = None,
) -> Comparison:
    """`<J_j^T u_j, v_i>` (reverse, from `point.grads`) against `<u_j, J_j v_i>` (forward).

    `forward_outputs[j]` is `J_j v_i`, forward mode's derivative of output j along
    `point.v[i]`. No truncation error on either side: the tolerance is rounding only, of
    each side's own terms (`Tolerances.forward_mode`). `spread`, where measured, is how
    far `J_j^T u_j` moves when the inputs move by one ulp.
    """
    g = point.grads[j][i].ravel()
    v = point.v[i].ravel()
    u = point.u[j].ravel()
    jv = forward_outputs[j].ravel()
    reverse = float(np.dot(g, v))
    forward = float(np.dot(u, jv))
    reverse_terms = float(np.dot(np.abs(g), np.abs(v)))
    forward_terms = float(np.dot(np.abs(u), np.abs(jv))) + point.out_scale[j]
    moved = 0.0
    if spread is not None:
        d = np.where(np.isfinite(spread), np.abs(spread), 0.0).ravel()
        moved = float(np.dot(d, np.abs(v)))
    tol, source = tolerances.forward_mode(
        reverse_terms, forward_terms, forward, sizes=(g.size, u.size), spread=moved
    )
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


def forward_rule_disagreement(
    forward: Comparison,
    finite_differences: Comparison,
    *,
    fd_error: float,
    kink: tuple[float, float] | None = None,
) -> str | None:
    """Who is wrong where reverse and forward mode disagree: finite differences decide.

    One rule, whatever the size of the disagreement: it counts against the backward (the
    comparison stands and fails; returns None) only where the finite-difference value
    sides with forward mode, i.e. reverse mode is farther from it than forward mode by
    more than its own error estimate `fd_error`. Otherwise a note is returned and the
    engine reports the disagreement as that note (unless `check_forward_ad=True`):
    forward mode is the farther (its jvp rule is wrong, or inaccurate, as torch's
    `logcumsumexp` rule is to 1e-8), or the two are closer together than finite
    differences resolve, so nothing points at the backward. At a kink of the probe
    (`kink`: the interval of the one-sided derivatives) distances are to that interval
    (see `subgradient_disagreement` for modes that both lie in it). None also when the
    modes agree or when the finite differences gave no value (an inconclusive comparison
    says so itself).
    """
    fd = finite_differences
    if forward.error <= forward.tolerance:  # NaN (a rule that returns NaN) is no agreement
        return None
    if fd.numeric is None or forward.numeric is None or forward.analytic is None:
        return None
    pair = f"{forward.input} -> {forward.output}"
    if not np.isfinite(fd.numeric):
        return None
    if not np.isfinite(forward.numeric):
        if not fd.passed:
            return None  # the backward fails against finite differences on its own
        return (
            f"forward mode returned {forward.numeric} for {pair} where reverse mode "
            f"({forward.analytic:.10g}) agrees with finite differences: the forward-mode "
            f"(jvp) rule is wrong, not the backward (pass check_forward_ad=True to fail it)"
        )
    values = f"(reverse {forward.analytic:.10g}, forward {forward.numeric:.10g})"

    def distance(value: float) -> float:
        if kink is None:
            return abs(value - fd.numeric)
        return max(0.0, kink[0] - value, value - kink[1])

    to_forward, to_reverse = distance(forward.numeric), distance(forward.analytic)
    if to_reverse - to_forward > fd_error:
        return None  # finite differences side with forward mode: the backward is wrong
    if to_forward - to_reverse > fd_error:
        return (
            f"forward mode disagrees with reverse mode for {pair} {values} and is the "
            f"farther from finite differences ({fd.numeric:.10g}): the forward-mode (jvp) "
            f"rule looks wrong while the backward agrees; pass check_forward_ad=True to "
            f"fail on it"
        )
    return (
        f"forward and reverse mode differ for {pair} {values} by {forward.error:.3g}, "
        f"beyond their rounding ({forward.tolerance:.3g}), but by less than finite "
        f"differences ({fd.numeric:.10g}, error {fd_error:.3g}) resolve: nothing points at "
        f"the backward; pass check_forward_ad=True to fail on it"
    )


def subgradient_disagreement(
    forward: Comparison, finite_differences: Comparison, kink: tuple[float, float] | None
) -> str | None:
    """A note where the modes disagree at a kink of the probe but both lie between its
    one-sided derivatives (`kink`), within the finite differences' tolerance: they chose
    different subgradients, and neither is wrong. None otherwise."""
    fd = finite_differences
    if kink is None or not forward.error > forward.tolerance:
        return None
    if forward.numeric is None or forward.analytic is None:
        return None
    lo, hi = kink
    if max(lo - v for v in (forward.numeric, forward.analytic)) > fd.tolerance:
        return None
    if max(v - hi for v in (forward.numeric, forward.analytic)) > fd.tolerance:
        return None
    return (
        f"forward and reverse mode differ for {forward.input} -> {forward.output} (reverse "
        f"{forward.analytic:.10g}, forward {forward.numeric:.10g}) at a kink of the probe, "
        f"and both lie between its one-sided derivatives ({lo:.10g} to {hi:.10g}): they "
        f"chose different subgradients"
    )
