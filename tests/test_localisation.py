"""Localisation alone: full columns, Jacobian rows and bisection on a linear function."""

from __future__ import annotations

import numpy as np
from core_points import exact_derivative, linear_point

from gradcheck_kit import ToleranceModel
from gradcheck_kit._localisation import FULL_JACOBIAN_LIMIT, bisect, localise
from gradcheck_kit._tolerance import Tolerances

F64 = ToleranceModel.for_dtype("float64")
TOL = Tolerances(F64, F64)
EVALS_PER_DERIVATIVE = 6


def oracles(jacobian, analytic):
    """Finite differences of x -> jacobian @ x, and reverse mode of a possibly wrong one."""
    calls = []

    def derivative(i, direction):
        calls.append(direction)
        return exact_derivative(jacobian @ direction.ravel(), evals=EVALS_PER_DERIVATIVE)

    def vjps(sets):
        return [[analytic.T @ s[0].ravel()] for s in sets]

    return derivative, vjps, calls


def test_full_columns_name_the_wrong_element_per_output():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4))
    wrong = a.copy()
    wrong[1, 2] += 0.5
    point = linear_point(a, rng.standard_normal(4), rng.uniform(1, 2, 3), rng.uniform(1, 2, 4), wrong)
    derivative, vjps, calls = oracles(a, wrong)
    found = localise(point, 0, 0, derivative=derivative, vjps=vjps, tolerances=TOL)
    assert found.outside == 1 and found.elements == 12
    assert found.worst[0].input_index == (2,) and found.worst[0].output_index == (1,)
    assert abs(found.worst[0].error - 0.5) < 1e-9
    assert found.function_evals == len(calls) * EVALS_PER_DERIVATIVE == 4 * EVALS_PER_DERIVATIVE
    assert found.notes == (f"localised with {found.function_evals} more function evaluations",)


def test_full_mode_reports_how_many_elements_are_outside():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 3))
    point = linear_point(a, rng.standard_normal(3), rng.uniform(1, 2, 2), rng.uniform(1, 2, 3))
    derivative, vjps, _ = oracles(a, a)
    found = localise(point, 0, 0, derivative=derivative, vjps=vjps, tolerances=TOL, full=True)
    assert found.outside == 0
    assert found.notes[0] == "full Jacobian: 0 of 6 elements outside tolerance"


def test_bisection_finds_the_wrong_coordinate_of_a_large_input():
    n = 4 * FULL_JACOBIAN_LIMIT
    rng = np.random.default_rng(2)
    a = rng.standard_normal((1, n))
    wrong = a.copy()
    wrong[0, 137] *= -1.0
    v = rng.uniform(1, 2, n) * rng.choice([-1.0, 1.0], n)
    point = linear_point(a, rng.standard_normal(n), np.array([1.3]), v, wrong)
    derivative, vjps, calls = oracles(a, wrong)
    [element], evals = bisect(point, 0, 0, derivative=derivative, tolerances=TOL)
    assert element.input_index == (137,)
    assert abs(element.analytic - 1.3 * wrong[0, 137]) < 1e-9
    assert abs(element.numeric - 1.3 * a[0, 137]) < 1e-9
    assert len(calls) == 2 * int(np.log2(n)) and evals == len(calls) * EVALS_PER_DERIVATIVE
    found = localise(point, 0, 0, derivative=derivative, vjps=vjps, tolerances=TOL)
    assert found.worst == (element,) and found.outside == 1
