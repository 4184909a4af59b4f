"""The backward in the inputs' reduced dtype against the float64 one, normwise."""

from __future__ import annotations

import numpy as np

from .._probes import BasePoint
from .._report import Comparison, ComparisonKind, Element
from .._tolerance import Tolerances, within

__all__ = ["compare_precision", "forward_amplification", "precision_check"]


def precision_check(native_dtype: str) -> str:
    """The comparison's name as reports print it."""
    return f"{native_dtype} backward vs float64 backward (normwise)"


def forward_amplification(native_output: np.ndarray, work_output: np.ndarray, eps: float) -> float:
    """How much the forward loses in the native dtype, in its ulps (`eps`) of the output's norm.

    A backward through the same operations loses about as much.
    """
    scale = float(np.linalg.norm(work_output))
    return float(np.linalg.norm(native_output - work_output)) / (eps * scale) if scale > 0 else 0.0


def compare_precision(
    point: BasePoint,
    i: int,
    j: int,
    native_grad: np.ndarray,
    native_output: np.ndarray,
    *,
    tolerances: Tolerances,
    native_dtype: str,
    input_spread: np.ndarray | None = None,
    rounding_spread: np.ndarray | None = None,
) -> Comparison:
    """`native_grad` (input i's gradient from the native-dtype backward of `u_j`) against
    `point.grads[j][i]` (the float64 one), normwise; `native_output` is output j computed
    in the native dtype, which measures how much the dtype loses in the forward.

    `input_spread` and `rounding_spread` are the float64 gradient's changes (same shape)
    under a one-native-ulp change of the inputs and under a rescaled cotangent
    (`Tolerances.precision`); None for none measured.
    """
    gn, gw = native_grad, point.grads[j][i]
    amplification = forward_amplification(native_output, point.y0[j], tolerances.native.eps)
    reference_norm = float(np.linalg.norm(gw))
    error = float(np.linalg.norm(gn - gw))
    tol, source = tolerances.precision(
        amplification, reference_norm, reference_norm,
        input_spread=_norm(input_spread), rounding_spread=_norm(rounding_spread),
        size=int(gw.size),
    )
    if not np.isfinite(error):
        error = float("inf")
    worst = []
    if gn.size:
        diff = np.where(np.isfinite(gn - gw), np.abs(gn - gw), np.inf)
        k = tuple(int(q) for q in np.unravel_index(int(np.nanargmax(diff)), gn.shape))
        worst = [Element(k, None, float(gn[k]), float(gw[k]), float(abs(gn[k] - gw[k])), tol)]
    return Comparison(
        check=precision_check(native_dtype),
        input=point.input_names[i],
        output=point.output_names[j],
        error=error,
        tolerance=tol,
        tolerance_source=source,
        passed=within(error, tol),
        worst=worst,
        backward_evals=1,
        kind=ComparisonKind.PRECISION,
    )


def _norm(x: np.ndarray | None) -> float:
    if x is None:
        return 0.0
    n = float(np.linalg.norm(np.where(np.isfinite(x), x, 0.0)))
    return n
