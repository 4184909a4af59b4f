"""The tolerance formulas: derivations of the constants and the one atol/rtol rule."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck_kit import ToleranceModel
from gradcheck_kit._tolerance import (
    INPUT_ROUNDING_GAIN,
    Tolerances,
    UserTolerance,
    richardson_noise_gain,
    within,
)

F64 = ToleranceModel.for_dtype("float64")
F32 = ToleranceModel.for_dtype("float32")


def test_richardson_noise_gain_matches_the_weights_worked_by_hand():
    # levels=2, central: (4 D(h/2) - D(h)) / 3 puts 4/(3h) and 1/(6h) on each side: 3/h,
    # i.e. 1.5 / h_min. One-sided: 2 D(h/2) - D(h) puts 4/h, 1/h and 3/h (on g0): 4 / h_min.
    assert richardson_noise_gain(2, one_sided=False) == pytest.approx(1.5, rel=1e-14)
    assert richardson_noise_gain(2, one_sided=True) == pytest.approx(4.0, rel=1e-14)
    assert richardson_noise_gain(3, one_sided=False) == pytest.approx(33 / 20, rel=1e-14)
    assert richardson_noise_gain(3, one_sided=True) == pytest.approx(11 / 2, rel=1e-14)
    assert INPUT_ROUNDING_GAIN == 6.0


def test_input_rounding_bound():
    t = Tolerances(F64, F64)
    g, x = np.array([2.0, -3.0]), np.array([1.0, 4.0])
    assert t.input_rounding(g, x, 1e-3) == pytest.approx(6.0 * F64.eps * 14.0 / 1e-3, rel=1e-15)
    assert t.input_rounding(g, x, 0.0) == 0.0


def test_derived_tolerances():
    t = Tolerances(F64, F32)
    tol, source = t.finite_difference(1e-9, 10.0, 3.0, size=4)
    assert tol == pytest.approx(1e-9 + 64 * F64.eps * 2.0 * 10.0, rel=1e-15)
    assert "finite-difference error estimate" in source
    tol, _ = t.forward_mode(10.0, 2.0, 3.0, sizes=(9, 4))
    assert tol == pytest.approx(64 * F64.eps * (3.0 * 10.0 + 2.0 * 2.0), rel=1e-15)
    tol, source = t.forward_mode(10.0, 2.0, 3.0, sizes=(9, 4), spread=1e-9)
    assert tol == pytest.approx(64 * F64.eps * 34.0 + 8 * 1e-9, rel=1e-15)
    assert "1-ulp change of the inputs" in source
    tol, _ = t.precision(amplification=0.5, norm=2.0, reference_norm=1.5)
    assert tol == pytest.approx(256 * F32.eps * 1.0 * 2.0, rel=1e-15)
    tol, _ = t.precision(amplification=10.0, norm=2.0, reference_norm=1.5)
    assert tol == pytest.approx(256 * F32.eps * 10.0 * 2.0, rel=1e-15)


@pytest.mark.parametrize("atol, rtol", [(1e-3, None), (None, 0.1), (1e-3, 0.1)])
def test_one_user_rule_for_every_comparison(atol, rtol):
    t = Tolerances(F64, F32, UserTolerance(atol, rtol))
    bound = (atol or 0.0) + (rtol or 0.0) * 3.0
    assert t.finite_difference(1e-9, 10.0, -3.0, size=4)[0] == pytest.approx(bound + 1e-9, rel=1e-15)
    assert t.forward_mode(10.0, 1.0, -3.0, sizes=(4, 4))[0] == pytest.approx(bound, rel=1e-15)
    assert t.precision(5.0, 100.0, reference_norm=3.0)[0] == pytest.approx(bound, rel=1e-15)
    for _, source in (t.finite_difference(0, 1, 1, 1), t.forward_mode(1, 1, 1, sizes=(1, 1)),
                      t.precision(1, 1, 1)):
        assert source.startswith("user atol=") and "replacing the derived" in source


def test_within_treats_an_infinite_tolerance_as_unproven():
    assert within(1.0, 1.0) and not within(1.0 + 1e-16 * 4, 1.0)
    assert not within(0.0, float("inf")) and not within(float("nan"), 1.0)


def test_compare_arrays_counts_the_elements_beyond_tolerance() -> None:
    model = ToleranceModel.for_dtype("float64")
    reference = np.linspace(1.0, 2.0, 12).reshape(3, 4)
    actual = reference.copy()
    actual[0, 1] *= 1.01
    actual[2, 3] *= 0.99
    c = model.compare_arrays(actual, reference)
    assert (c.mismatched, c.size) == (2, 12) and not c.passed
    same = model.compare_arrays(reference, reference)
    assert (same.mismatched, same.size) == (0, 12) and same.passed
