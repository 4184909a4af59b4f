"""Comparisons that cannot decide: where finite differences resolve nothing, the verdict is
inconclusive, with the reason and what would make the check conclusive.

Each function takes a finished finite-difference comparison and returns it unchanged or
made inconclusive; `outputs_independent` builds the comparison for a check in which the
outputs do not depend on the inputs at all.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._finite_differences import Derivative
from .._probes import BasePoint
from .._report import Comparison
from .._targets import Target
from .._tolerance import Tolerances

__all__ = [
    "outputs_independent",
    "resolve",
    "stuck_but_moves_far",
    "unresolved_quantised",
    "unresolved_underflow",
]


def resolve(
    t: Target,
    point: BasePoint,
    i: int,
    j: int,
    d: Derivative,
    c: Comparison,
    tolerances: Tolerances,
) -> Comparison:
    """A finite-difference comparison of input i and output j, made inconclusive where the
    differences resolved nothing: the probe underflows, or the output stayed the same at
    every step (in reduced precision always; in float64 where a far move shows that it
    depends on the input, so that only rounding hid the change)."""
    c = unresolved_underflow(point, i, j, d, c, tolerances)
    if tolerances.work.name != "float64" or stuck_but_moves_far(t, point, i, j, d, c):
        c = unresolved_quantised(point, i, j, d, c, tolerances)
    return c


def unresolved_underflow(
    point: BasePoint, i: int, j: int, d: Derivative, c: Comparison, tolerances: Tolerances
) -> Comparison:
    """The comparison, inconclusive where underflow leaves the probe unresolved.

    When the probe's changes are below the dtype's smallest normal number (sum(x^2) at
    x ~ 1e-170 in float64: x^2 underflows to 0, and so does <J^T u, v>), finite
    differences see nothing and the analytic side rounds to nothing either: an agreement
    of two zeros says nothing about the gradient. A function whose gradient along the
    probe is exactly zero, with outputs that do not move, is a constant, and passes.
    """
    floor = tolerances.underflow(point.u[j], d.step)
    if c.inconclusive or not floor > c.tolerance or not c.error <= c.tolerance + floor:
        return c
    g, v = point.grads[j][i], point.v[i]
    if not (np.any((g != 0) & (v != 0)) or c.numeric):
        return c
    work = tolerances.work
    return dataclasses.replace(c, passed=False, inconclusive=True, inconclusive_reason=(
        f"{point.output_names[j]} changes along the probe of {point.input_names[i]} by less "
        f"than {work.name}'s smallest normal number ({work.tiny:.3g}): the values "
        f"underflow, so finite differences resolve nothing (and the analytic probe rounds "
        f"to {c.analytic:.3g}). Rescale the inputs or outputs (other units) so that they "
        f"and their changes are normal numbers"
    ))


def unresolved_quantised(
    point: BasePoint, i: int, j: int, d: Derivative, c: Comparison, tolerances: Tolerances
) -> Comparison:
    """The comparison, inconclusive where a reduced-precision output never moved.

    In float32 an output can stay bit for bit the same at every step although it depends
    on the input: its changes fall below the resolution of an intermediate (log(1 + x^2)
    at x ~ 1e-4, where 1 + x^2 rounds to 1). Finite differences then read 0 whatever the
    gradient is, and this says so instead of reporting that 0 as a measurement.
    """
    a, b = point.parts[j]
    g, v = point.grads[j][i], point.v[i]
    if c.passed or c.inconclusive or d.moved is None or np.any(d.moved[a:b]):
        return c
    if not np.any((g != 0) & (v != 0)):
        return c
    fix = (
        "check it at inputs where it changes" if tolerances.work.name == "float64"
        else "check it in float64 (a dtype-generic function is promoted to it) or at "
        "inputs where it changes"
    )
    return dataclasses.replace(c, passed=False, inconclusive=True, inconclusive_reason=(
        f"{point.output_names[j]} stayed bit for bit the same at every finite-difference "
        f"step along {point.input_names[i]} while the gradient predicts a change: in "
        f"{tolerances.work.name} its changes are below the resolution of its "
        f"intermediates (or it does not depend on {point.input_names[i]} at all and the "
        f"gradient is wrong); {fix}"
    ))


def stuck_but_moves_far(
    t: Target, point: BasePoint, i: int, j: int, d: Derivative, c: Comparison
) -> bool:
    """Whether output j stayed bit for bit the same at every step along input i, under a
    failing comparison, yet moves when input i moves by a quarter of its scale."""
    a, b = point.parts[j]
    if c.passed or c.inconclusive or d.moved is None or np.any(d.moved[a:b]):
        return False
    x, v = point.base[i], point.v[i]
    xs = list(point.base)
    xs[i] = x + 0.25 * np.sign(v) * (np.abs(x) + 1.0)
    with np.errstate(all="ignore"):
        try:
            outs = t.evaluate(xs)
        except Exception:  # noqa: BLE001 - outside the domain: no evidence either way
            return False
    far = np.concatenate([np.ravel(o) for o in outs])[a:b]
    return bool(np.any(far != point.flat0[a:b]))


def outputs_independent(point: BasePoint) -> Comparison:
    """An inconclusive comparison: the outputs do not depend on the inputs as passed."""
    names = ", ".join(point.input_names)
    reason = (
        f"the outputs do not depend on {names} as passed: every gradient is exactly zero "
        f"and perturbing the inputs leaves the outputs bit for bit unchanged, so analytic "
        f"and numeric derivatives are both 0 and nothing is checked. If the function reads "
        f"the tensor through a closure, a global or a module attribute, pass it as an "
        f"argument and compute with that argument; if it detaches it (.detach(), .data, "
        f"torch.no_grad()), keep it in the graph"
    )
    return Comparison(
        check="dependence of the outputs on the inputs",
        input=names,
        output=", ".join(point.output_names),
        error=0.0,
        tolerance=0.0,
        tolerance_source="outputs independent of the inputs",
        passed=False,
        analytic=0.0,
        numeric=0.0,
        inconclusive=True,
        inconclusive_reason=reason,
    )
