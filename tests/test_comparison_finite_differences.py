"""The finite-difference comparison alone, on hand-built inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from core_points import exact_derivative, linear_point

from gradcheck_kit import ComparisonKind, ToleranceModel
from gradcheck_kit._comparisons import compare_finite_differences, finite_difference_check
from gradcheck_kit._tolerance import Tolerances, UserTolerance

RNG = np.random.default_rng(3)
A = RNG.standard_normal((3, 4))
X = RNG.standard_normal(4)
U = np.array([1.5, -1.2, 1.9])
V = np.array([1.1, -1.7, 1.3, -1.4])
F64 = ToleranceModel.for_dtype("float64")
TOL = Tolerances(F64, F64)
CHECK = finite_difference_check(hand_written=False, promoted=False)


def compare(point, derivative, tolerances=TOL):
    return compare_finite_differences(point, 0, 0, derivative, tolerances=tolerances, check=CHECK)


def test_exact_gradient_passes_with_its_kind_and_name():
    c = compare(linear_point(A, X, U, V), exact_derivative(A @ V))
    assert c.passed and c.kind is ComparisonKind.FINITE_DIFFERENCES
    assert c.check == "reverse mode vs finite differences"
    assert c.analytic == pytest.approx(U @ A @ V, rel=1e-14)
    assert c.function_evals == 6 and c.backward_evals == 1


def test_gradient_off_by_one_percent_fails():
    c = compare(linear_point(A, X, U, V, analytic_jacobian=1.01 * A), exact_derivative(A @ V))
    assert not c.passed
    assert c.error == pytest.approx(0.01 * abs(U @ A @ V), rel=1e-9)


def test_difference_within_the_error_estimate_passes_beyond_it_fails():
    # The finite-difference value is off by 1e-8 relative; an estimate that covers it passes.
    off = exact_derivative((1 + 1e-8) * (A @ V), error=1e-7)
    assert compare(linear_point(A, X, U, V), off).passed
    tight = exact_derivative((1 + 1e-8) * (A @ V), error=1e-13)
    assert not compare(linear_point(A, X, U, V), tight).passed


def test_a_kink_accepts_any_value_between_the_one_sided_derivatives():
    point = linear_point(A, X, U, V)
    d = exact_derivative(A @ V)
    analytic = U @ A @ V
    kinked = dataclasses.replace(
        d, kink=np.array([True, False, False]),
        lower=np.array([(A @ V)[0] - 1.0, *(d.lower[1:])]),
        upper=np.array([(A @ V)[0] + 1.0, *(d.upper[1:])]),
    )
    c = compare(point, kinked)
    assert c.passed and c.error == 0.0 and "kink at the input itself" in c.notes[-1]
    wrong = linear_point(A, X, U, V, analytic_jacobian=A + 2.0 * np.outer([1, 0, 0], np.sign(V)) * np.sign(U[0]))
    assert not compare(wrong, kinked).passed
    assert analytic == pytest.approx(c.analytic)


def test_user_atol_rtol_replace_the_rounding_allowance_and_keep_the_fd_estimate():
    point = linear_point(A, X, U, V)
    d = exact_derivative(A @ V, error=1e-10)
    user = Tolerances(F64, F64, UserTolerance(atol=1e-3, rtol=1e-2))
    c = compare(point, d, user)
    fd_error = float(np.dot(np.abs(U), d.error)) + user.input_rounding(
        point.grads[0][0], X, d.step
    )
    assert c.tolerance == pytest.approx(1e-3 + 1e-2 * abs(c.numeric) + fd_error, rel=1e-12)
    assert "user atol=0.001, rtol=0.01" in c.tolerance_source
    assert "replacing the derived" in c.tolerance_source
    # A 1% error that the derived tolerance rejects passes the user's looser one.
    wrong = linear_point(A, X, U, V, analytic_jacobian=1.001 * A)
    assert not compare(wrong, d).passed and compare(wrong, d, user).passed
