"""The reduced-precision comparison alone: a float32 backward against the float64 one."""

from __future__ import annotations

import numpy as np
import pytest
from core_points import linear_point

from gradcheck_kit import ComparisonKind, ToleranceModel
from gradcheck_kit._comparisons import compare_precision, forward_amplification
from gradcheck_kit._tolerance import Tolerances, UserTolerance

RNG = np.random.default_rng(7)
A = RNG.standard_normal((3, 20))
X = RNG.standard_normal(20)
U = np.array([1.5, -1.2, 1.9])
V = RNG.uniform(1, 2, 20)
TOL = Tolerances(ToleranceModel.for_dtype("float64"), ToleranceModel.for_dtype("float32"))


def compare(native_grad, native_output=None, tolerances=TOL):
    point = linear_point(A, X, U, V)
    y = point.y0[0] if native_output is None else native_output
    return compare_precision(point, 0, 0, native_grad, y, tolerances=tolerances, native_dtype="float32")


def test_float32_rounding_of_the_gradient_passes():
    g = (A.T @ U).astype(np.float32).astype(np.float64)
    c = compare(g)
    assert c.passed and c.kind is ComparisonKind.PRECISION
    assert c.check == "float32 backward vs float64 backward (normwise)"


def test_one_element_off_by_one_percent_fails_and_is_named():
    g = A.T @ U
    g[13] *= 1.01
    c = compare(g)
    assert not c.passed and c.worst[0].input_index == (13,)


def test_amplification_of_the_forward_widens_the_tolerance():
    point = linear_point(A, X, U, V)
    y = point.y0[0]
    eps = TOL.native.eps
    noisy = y + 1000 * eps * np.linalg.norm(y) / np.sqrt(3)
    assert forward_amplification(noisy, y, eps) == pytest.approx(1000, rel=1e-6)
    g = (A.T @ U).astype(np.float32).astype(np.float64)
    assert compare(g, noisy).tolerance == pytest.approx(1000 * compare(g).tolerance, rel=1e-6)


def test_user_tolerance_is_relative_to_the_float64_gradient_norm():
    g = A.T @ U
    user = Tolerances(TOL.work, TOL.native, UserTolerance(atol=1e-3, rtol=0.1))
    c = compare(1.01 * g, tolerances=user)
    assert c.tolerance == pytest.approx(1e-3 + 0.1 * np.linalg.norm(g), rel=1e-12)
    assert c.passed and "replacing the derived" in c.tolerance_source


def test_the_measured_spreads_of_the_float64_backward_widen_the_tolerance():
    g = (A.T @ U).astype(np.float32).astype(np.float64)
    point = linear_point(A, X, U, V)
    base = compare(g).tolerance
    spread = np.full(20, 1e-3)
    wide = compare_precision(point, 0, 0, g, point.y0[0], tolerances=TOL, native_dtype="float32",
                             input_spread=spread)
    assert wide.tolerance == pytest.approx(base + 16 * np.linalg.norm(spread), rel=1e-12)
    rounding = compare_precision(point, 0, 0, g, point.y0[0], tolerances=TOL,
                                 native_dtype="float32", rounding_spread=spread * 1e-9)
    ratio = TOL.native.eps / TOL.work.eps
    assert rounding.tolerance == pytest.approx(
        base + 16 * ratio * np.linalg.norm(spread * 1e-9), rel=1e-12
    )


def test_a_large_output_value_does_not_widen_the_tolerance():
    import dataclasses

    g = A.T @ U
    point = linear_point(A, X, U, V)
    offset = dataclasses.replace(point, y0=(point.y0[0] + 1e8,), out_scale=(1e8 * 3,))
    c = compare_precision(offset, 0, 0, g, offset.y0[0], tolerances=TOL, native_dtype="float32")
    assert c.tolerance == pytest.approx(compare(g).tolerance, rel=1e-12)
    rounded = g.astype(np.float16).astype(np.float64)  # a backward computed in float16
    assert not compare_precision(
        offset, 0, 0, rounded, offset.y0[0], tolerances=TOL, native_dtype="float32"
    ).passed


def test_a_float64_gradient_below_float32_range_matches_a_float32_zero():
    import dataclasses

    point = linear_point(A, X, U, V)
    tiny = dataclasses.replace(point, grads=((np.full(20, 1e-51),),))
    assert compare_precision(tiny, 0, 0, np.zeros(20), point.y0[0], tolerances=TOL,
                             native_dtype="float32").passed
    # A representable float32 gradient of 1e-30 against 0 is an error like any other.
    small = dataclasses.replace(point, grads=((np.full(20, 1e-30),),))
    assert not compare_precision(small, 0, 0, np.zeros(20), point.y0[0], tolerances=TOL,
                                 native_dtype="float32").passed
