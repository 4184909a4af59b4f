"""Localisation: from a failing probe to the Jacobian elements that are wrong.

A small input is localised by its full Jacobian columns (one directional derivative per
element), a large one by bisection over its coordinates (about 2 log2(n) directional
derivatives instead of n). Where the output is small enough, each column is compared per
output element against analytic Jacobian rows (one backward pass each); otherwise against
the projection onto the probe's cotangent.

The functions here obtain derivatives only through the callables they are given and
return what they found (`Localisation`); the engine builds the final `Comparison`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ._finite_differences import Derivative
from ._probes import BasePoint, input_scale, on_output
from ._report import Element
from ._tolerance import Tolerances

__all__ = [
    "DerivativeAlong",
    "FULL_JACOBIAN_LIMIT",
    "Localisation",
    "ROW_LIMIT",
    "ReverseMode",
    "bisect",
    "full_columns",
    "jacobian_rows",
    "localise",
]

# Inputs with at most this many elements are localised by a full Jacobian; larger ones by
# bisection.
FULL_JACOBIAN_LIMIT = 64
# Output rows are formed (one backward pass each) for at most this many output elements.
ROW_LIMIT = 256
# Elements listed in a comparison's `worst`.
WORST_SHOWN = 5

#: `derivative(i, direction)`: finite differences of all outputs along `direction` in input i.
DerivativeAlong = Callable[[int, np.ndarray], Derivative]
#: `vjps(cotangent_sets)`: reverse-mode products `J^T u`, one list of gradients per set.
ReverseMode = Callable[[Sequence[Sequence[np.ndarray | None]]], list[list[np.ndarray]]]


@dataclass(frozen=True)
class Localisation:
    """What localising one (input, output) pair found.

    - `worst`: the elements to show, worst first (outside the tolerance where any are).
    - `elements`, `outside`: how many elements were compared and how many failed; in a
      bisection only the final element is compared.
    - `function_evals`: the function evaluations spent.
    - `notes`: what the report says about it.
    """

    worst: tuple[Element, ...]
    elements: int
    outside: int
    function_evals: int
    notes: tuple[str, ...]


def localise(
    point: BasePoint,
    i: int,
    j: int,
    *,
    derivative: DerivativeAlong,
    vjps: ReverseMode,
    tolerances: Tolerances,
    full: bool = False,
) -> Localisation | None:
    """Localise the pair (input i, output j).

    **Arguments:**
    - `derivative`, `vjps`: the oracles (finite differences along a direction of input i,
      and reverse mode for Jacobian rows).
    - `full`: every element of the Jacobian, whatever the input's size (mode="full"); its
      notes then say how many elements are outside their tolerance.

    **Returns:** the `Localisation`, or None in full mode when there was nothing to compare
    (an empty output).
    """
    x = point.base[i]
    if x.size <= FULL_JACOBIAN_LIMIT or full:
        elements, evals = full_columns(
            point, i, j, derivative=derivative, vjps=vjps, tolerances=tolerances
        )
        if full and not elements:
            return None
        elements.sort(key=lambda e: -(e.error / e.tolerance if e.tolerance > 0 else np.inf))
        outside = [e for e in elements if e.error > e.tolerance]
        notes = [f"full Jacobian: {len(outside)} of {len(elements)} elements outside tolerance"] if full else []
        worst = (outside or elements)[:WORST_SHOWN]
        count = len(elements)
    else:
        worst, evals = bisect(point, i, j, derivative=derivative, tolerances=tolerances)
        outside = [e for e in worst if e.error > e.tolerance]
        notes = []
        count = len(worst)
    notes.append(f"localised with {evals} more function evaluations")
    return Localisation(tuple(worst), count, len(outside), evals, tuple(notes))


def jacobian_rows(point: BasePoint, j: int, vjps: ReverseMode) -> list[list[np.ndarray]] | None:
    """Analytic Jacobian rows of output j (one backward pass each), or None if too many."""
    shape = point.output_shapes[j]
    m = int(np.prod(shape))
    if m > ROW_LIMIT:
        return None
    sets = []
    for flat in range(m):
        e = np.zeros(m)
        e[flat] = 1.0
        sets.append(on_output(j, e.reshape(shape), len(point.u)))
    return vjps(sets) if sets else []


def full_columns(
    point: BasePoint,
    i: int,
    j: int,
    *,
    derivative: DerivativeAlong,
    vjps: ReverseMode,
    tolerances: Tolerances,
) -> tuple[list[Element], int]:
    """Every element of input i's Jacobian columns of output j; the evaluations spent.

    Each column is a directional derivative along one coordinate, scaled to the input's
    size. Elements are per output element against analytic rows where there are rows,
    otherwise the column projected onto the cotangent `u_j` against the gradient element.
    """
    x = point.base[i]
    scale = input_scale(x)
    rows = jacobian_rows(point, j, vjps)
    a, b = point.parts[j]
    y = point.y0[j].ravel()
    u = point.u[j].ravel()
    elements = []
    evals = 0
    for flat in range(x.size):
        direction = np.zeros(x.size)
        direction[flat] = scale
        d = derivative(i, direction.reshape(x.shape))
        evals += d.evals
        idx = tuple(int(q) for q in np.unravel_index(flat, x.shape))
        column = d.value[a:b] / scale
        column_err = d.error[a:b] / scale
        xk = abs(float(point.finite_base[i].ravel()[flat]))
        if rows is not None:
            for m in range(b - a):
                analytic = float(rows[m][i].ravel()[flat])
                out_idx = tuple(int(q) for q in np.unravel_index(m, point.output_shapes[j]))
                interval = None
                if d.kink[a + m]:
                    lower, upper = d.bounds()
                    interval = tuple(sorted((lower[a + m] / scale, upper[a + m] / scale)))
                err = float(column_err[m]) + tolerances.input_rounding(
                    np.array([analytic]), np.array([xk]), d.step * scale
                )
                elements.append(_element(
                    tolerances, idx, out_idx, analytic, float(column[m]), err, abs(y[m]) / scale, interval
                ))
        else:
            analytic = float(point.grads[j][i].ravel()[flat])
            err = float(np.dot(np.abs(u), column_err)) + tolerances.input_rounding(
                np.array([analytic]), np.array([xk]), d.step * scale
            )
            natural = point.out_scale[j] / (scale * x.size)
            elements.append(_element(
                tolerances, idx, None, analytic, float(np.dot(u, column)), err, natural, None
            ))
    return elements, evals


def bisect(
    point: BasePoint,
    i: int,
    j: int,
    *,
    derivative: DerivativeAlong,
    tolerances: Tolerances,
) -> tuple[list[Element], int]:
    """Halve the set of coordinates of input i, keeping the half that fails worse.

    **Returns:** the final coordinate as one element (in gradient units; empty for a
    one-element input) and the evaluations spent.
    """
    x = point.base[i]
    v = point.v[i].ravel()
    g = point.grads[j][i].ravel()
    u = point.u[j].ravel()
    a, b = point.parts[j]
    candidates = np.arange(x.size)
    last = None
    evals = 0
    while candidates.size > 1:
        halves = np.array_split(candidates, 2)
        scored = []
        for half in halves:
            direction = np.zeros(x.size)
            direction[half] = v[half]
            d = derivative(i, direction.reshape(x.shape))
            evals += d.evals
            analytic = float(np.dot(g[half], v[half]))
            numeric = float(np.dot(u, d.value[a:b]))
            err = float(np.dot(np.abs(u), d.error[a:b]))
            err += tolerances.input_rounding(g[half], point.finite_base[i].ravel()[half], d.step)
            magnitude = float(np.dot(np.abs(g[half]), np.abs(v[half])))
            magnitude += point.out_scale[j] * half.size / x.size
            tol, _ = tolerances.finite_difference(err, magnitude, numeric, size=half.size + u.size)
            scored.append((abs(analytic - numeric) / max(tol, 1e-300), half, analytic, numeric, tol))
        scored.sort(key=lambda s: -s[0])
        _, candidates, analytic, numeric, tol = scored[0]
        last = (analytic, numeric, tol)
    if last is None:
        return [], evals
    k = int(candidates[0])
    idx = tuple(int(q) for q in np.unravel_index(k, x.shape))
    analytic, numeric, tol = last
    vk = v[k]
    # Back from the probe's units to the gradient element: divide by the direction.
    return [Element(idx, None, analytic / vk, numeric / vk, abs(analytic - numeric) / abs(vk), tol / abs(vk))], evals


def _element(
    tolerances: Tolerances,
    idx: tuple[int, ...],
    out_idx: tuple[int, ...] | None,
    analytic: float,
    numeric: float,
    fd_err: float,
    natural: float,
    interval: tuple[float, float] | None,
) -> Element:
    """One Jacobian element (or projected row element) against its tolerance."""
    tol, _ = tolerances.finite_difference(fd_err, abs(analytic) + abs(numeric) + natural, numeric, size=1)
    if interval is not None:
        error = max(0.0, interval[0] - analytic, analytic - interval[1])
    else:
        error = abs(analytic - numeric)
    # The probes' float64 accuracy floor, per element, so that elements agree with them.
    tol += tolerances.accuracy_floor(max(abs(analytic), abs(numeric)))
    return Element(idx, out_idx, analytic, numeric, error, tol)
