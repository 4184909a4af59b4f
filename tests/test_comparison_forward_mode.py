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
    subgradient_disagreement,
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


CHECK = finite_difference_check(hand_written=False, promoted=False)


def _fd(point, value=None):
    value = A @ V if value is None else value
    d = exact_derivative(value)
    return compare_finite_differences(point, 0, 0, d, tolerances=TOL, check=CHECK)


def test_a_wrong_jvp_rule_alone_is_a_note_when_reverse_and_fd_agree():
    point = linear_point(A, X, U, V)
    wrong = compare_forward_mode(point, 0, 0, [1.01 * (A @ V)], tolerances=TOL)
    note = forward_rule_disagreement(wrong, _fd(point), fd_error=1e-12)
    assert note is not None and "x -> y" in note and "jvp" in note
    right = compare_forward_mode(point, 0, 0, [A @ V], tolerances=TOL)
    assert forward_rule_disagreement(right, _fd(point), fd_error=1e-12) is None


@pytest.mark.parametrize("size", [1e-9, 1e-3, 0.5])
def test_one_rule_whatever_the_size_a_wrong_backward_fails_a_wrong_jvp_is_a_note(size):
    # A backward off by `size`: finite differences side with forward mode.
    bad_point = linear_point(A, X, U, V, analytic_jacobian=(1 + size) * A)
    c = compare_forward_mode(bad_point, 0, 0, [A @ V], tolerances=TOL)
    assert not c.passed
    assert forward_rule_disagreement(c, _fd(bad_point), fd_error=1e-14) is None
    # A jvp off by the same amount: finite differences side with reverse mode.
    point = linear_point(A, X, U, V)
    c = compare_forward_mode(point, 0, 0, [(1 + size) * (A @ V)], tolerances=TOL)
    assert not c.passed
    assert "jvp" in forward_rule_disagreement(c, _fd(point), fd_error=1e-14)


def test_a_disagreement_finite_differences_cannot_resolve_points_at_nothing():
    point = linear_point(A, X, U, V)
    c = compare_forward_mode(point, 0, 0, [(1 + 1e-9) * (A @ V)], tolerances=TOL)
    assert not c.passed
    note = forward_rule_disagreement(c, _fd(point), fd_error=1e-3)
    assert note is not None and "less than finite differences" in note


def test_modes_choosing_different_subgradients_at_a_kink_are_not_wrong():
    point = linear_point(A, X, U, V)
    exact = float(U @ A @ V)
    c = compare_forward_mode(point, 0, 0, [1.01 * (A @ V)], tolerances=TOL)
    fd = _fd(point)
    wide = (exact - 1.0, exact + 1.0)
    assert "subgradients" in subgradient_disagreement(c, fd, wide)
    assert subgradient_disagreement(c, fd, None) is None
    # Forward mode outside the interval, reverse mode at its edge: not a subgradient choice.
    narrow = (exact - 1.0, exact) if c.numeric > exact else (exact, exact + 1.0)
    assert subgradient_disagreement(c, fd, narrow) is None
