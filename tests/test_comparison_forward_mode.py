"""The dot-product test (reverse against forward mode) alone, on hand-built inputs."""

from __future__ import annotations

import numpy as np
import pytest
from core_points import linear_point

from gradcheck_kit import ComparisonKind, ToleranceModel
from gradcheck_kit._comparisons import (
    FORWARD_MODE_CHECK,
    compare_finite_differences,
    compare_forward_mode,
    finite_difference_check,
    forward_rule_disagreement,
)
from gradcheck_kit._tolerance import Tolerances, UserTolerance
from core_points import exact_derivative

RNG = np.random.default_rng(5)
A = RNG.standard_normal((3, 4))
X = RNG.standard_normal(4)
U = np.array([1.5, -1.2, 1.9])
V = np.array([1.1, -1.7, 1.3, -1.4])
F64 = ToleranceModel.for_dtype("float64")
TOL = Tolerances(F64, F64)


def test_agreeing_modes_pass_within_rounding():
    c = compare_forward_mode(linear_point(A, X, U, V), 0, 0, [A @ V], tolerances=TOL)
    assert c.passed and c.kind is ComparisonKind.FORWARD_MODE and c.check == FORWARD_MODE_CHECK
    assert c.tolerance < 1e-12  # rounding only: no truncation error on either side


def test_forward_mode_off_by_one_percent_fails():
    c = compare_forward_mode(linear_point(A, X, U, V), 0, 0, [1.01 * (A @ V)], tolerances=TOL)
    assert not c.passed
    assert c.error == pytest.approx(0.01 * abs(U @ A @ V), rel=1e-9)


def test_user_tolerance_replaces_the_derived_one():
    user = Tolerances(F64, F64, UserTolerance(atol=0.0, rtol=0.05))
    c = compare_forward_mode(linear_point(A, X, U, V), 0, 0, [1.01 * (A @ V)], tolerances=user)
    assert c.tolerance == pytest.approx(0.05 * abs(c.numeric), rel=1e-15)
    assert c.passed and "replacing the derived" in c.tolerance_source


def test_a_wrong_jvp_rule_alone_is_named_when_reverse_and_fd_agree():
    point = linear_point(A, X, U, V)
    check = finite_difference_check(hand_written=False, promoted=False)
    fd = compare_finite_differences(point, 0, 0, exact_derivative(A @ V), tolerances=TOL, check=check)
    wrong = compare_forward_mode(point, 0, 0, [1.01 * (A @ V)], tolerances=TOL)
    note = forward_rule_disagreement(wrong, fd)
    assert note is not None and "x -> y" in note and "jvp" in note
    right = compare_forward_mode(point, 0, 0, [A @ V], tolerances=TOL)
    assert forward_rule_disagreement(right, fd) is None
    # When the backward is wrong too (finite differences failed), it is not the jvp alone.
    bad_point = linear_point(A, X, U, V, analytic_jacobian=1.01 * A)
    bad_fd = compare_finite_differences(bad_point, 0, 0, exact_derivative(A @ V), tolerances=TOL, check=check)
    assert forward_rule_disagreement(wrong, bad_fd) is None
