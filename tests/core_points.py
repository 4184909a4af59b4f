"""Hand-built base points and derivatives for testing comparisons and localisation alone."""

from __future__ import annotations

import numpy as np

from gradcheck_kit._finite_differences import Derivative
from gradcheck_kit._probes import BasePoint, output_layout, output_scales


def linear_point(jacobian: np.ndarray, x: np.ndarray, u: np.ndarray, v: np.ndarray,
                 analytic_jacobian: np.ndarray | None = None) -> BasePoint:
    """f(x) = jacobian @ x with one input and one output; grads from `analytic_jacobian`."""
    analytic = jacobian if analytic_jacobian is None else analytic_jacobian
    y0 = [jacobian @ x]
    flat0, parts = output_layout(y0)
    return BasePoint(
        input_names=("x",), output_names=("y",), output_shapes=(y0[0].shape,),
        base=(x,), frozen=(np.zeros(x.shape, dtype=bool),), finite_base=(x,),
        y0=tuple(y0), flat0=flat0, parts=parts, u=(u,), v=(v,),
        out_scale=tuple(output_scales([u], y0)), grads=((analytic.T @ u,),),
        checked=(0,),
    )


def exact_derivative(value: np.ndarray, *, error: float = 1e-13, step: float = 1e-3,
                     evals: int = 6) -> Derivative:
    """A finite-difference result: `value` with a relative error estimate, no kink."""
    value = np.asarray(value, dtype=float)
    err = np.full(value.shape, error) * (np.abs(value) + 1.0)
    return Derivative(value, err, err, value - err, value + err, np.zeros(value.shape, bool),
                      np.zeros(value.shape, int), step, evals, ())
