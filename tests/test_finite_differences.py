"""The finite-difference oracle (`_finite_differences`) and the tolerance model it feeds."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck_kit import ToleranceModel
from gradcheck_kit._finite_differences import Scheme, default_step, directional_derivative

EPS64 = 2.0**-53


def fd(g, **kw):
    return directional_derivative(g, eps=EPS64, step=default_step(EPS64), **kw)


def test_richardson_reaches_near_machine_precision_and_bounds_its_error():
    d = fd(lambda t: np.array([np.sin(1 + t), np.exp(2 * t), (1 + t) ** 7]))
    truth = np.array([np.cos(1.0), 2.0, 7.0])
    actual = np.abs(d.value - truth)
    assert np.all(actual < 1e-11 * np.abs(truth))
    assert np.all(actual <= d.error)  # the estimate bounds the real error
    assert np.all(d.error < 1e-8 * np.abs(truth))


def test_near_kink_one_sided_differences_recover_the_slope():
    d = fd(lambda t: np.array([3.0 * max(1e-7 + t, 0.0)]))
    assert d.value[0] == pytest.approx(3.0, rel=1e-10)
    assert not d.kink[0]


def test_kink_at_the_point_gives_the_subgradient_interval():
    d = fd(lambda t: np.array([abs(t)]))
    assert d.kink[0]
    assert d.lower[0] <= -1.0 + 1e-9 and d.upper[0] >= 1.0 - 1e-9


def test_a_step_outside_the_domain_falls_back_to_the_finite_side_then_refines():
    with np.errstate(invalid="ignore"):
        d = fd(
            lambda t: np.array([np.log(1e-4 + t)]),
            target=lambda value, error: bool(np.all(error < 1e-8 * np.abs(value))),
        )
    assert abs(d.value[0] - 1e4) <= d.error[0] < 1e-8 * 1e4
    assert any("edge of its domain" in n for n in d.notes)


def test_at_the_edge_of_the_domain_one_sided_differences_are_used():
    with np.errstate(invalid="ignore"):
        d = fd(lambda t: np.array([np.sqrt(1.0 - (1.0 + t))]))  # finite only for t <= 0
    assert np.isfinite(d.value[0]) and d.scheme[0] == Scheme.BACKWARD  # backward differences


def test_outputs_that_change_shape_are_an_error():
    with pytest.raises(ValueError, match="shape"):
        fd(lambda t: np.zeros(2 if t == 0 else 3))


def test_tolerance_table():
    assert ToleranceModel.for_dtype("float32").eps == 2.0**-24
    assert ToleranceModel.for_dtype(np.float64).name == "float64"
    assert ToleranceModel.for_dtype("double").name == "float64"
    with pytest.raises(ValueError, match="int32"):
        ToleranceModel.for_dtype("int32")


def test_compare_arrays_is_scale_aware():
    model = ToleranceModel.for_dtype("float32")
    ref = np.array([1.0, 2.0, 3.0]) * 1e-6
    assert model.compare_arrays(ref * (1 + 1e-6), ref).passed
    result = model.compare_arrays(ref * np.array([1, 1, 2]), ref)
    assert not result.passed and result.worst_index == (2,)
    assert not model.compare_arrays(np.array([np.nan, 0, 0]), np.zeros(3)).passed


# -- the vectorised Richardson kernels: the same numbers as the plain formulas ------------
def test_scheme_choice_matches_argmin_over_stacked_errors_with_ties_nan_and_inf():
    from gradcheck_kit._finite_differences import _argmin3

    rng = np.random.default_rng(3)
    for _ in range(200):
        a, b, c = (rng.integers(0, 3, 64).astype(float) for _ in range(3))  # many ties
        for arr in (a, b, c):
            arr[rng.random(64) < 0.2] = np.nan
            arr[rng.random(64) < 0.1] = np.inf
        expected = np.argmin(np.stack([a, b, c]), axis=0)
        np.testing.assert_array_equal(_argmin3(a, b, c), expected)


def test_in_place_richardson_table_equals_the_textbook_table_bit_for_bit():
    from gradcheck_kit._finite_differences import _richardson

    rng = np.random.default_rng(4)
    for levels in (2, 3, 4):
        for ratio in (2.0, 4.0):
            # Half follow the error series (regular tables), half are noise.
            series = rng.standard_normal(100)
            estimates = [
                1.0 + np.where(np.arange(100) < 50, series * ratio**-k, rng.standard_normal(100))
                for k in range(levels)
            ]
            table, factor = [list(estimates)], ratio
            while len(table[-1]) > 1:
                prev = table[-1]
                table.append([(factor * prev[i + 1] - prev[i]) / (factor - 1) for i in range(len(prev) - 1)])
                factor *= ratio
            best, below = table[-1][0], table[-2]
            error = np.maximum(np.abs(best - below[-1]), np.abs(best - below[-2]))
            regular = np.ones(100, dtype=bool)
            for a, b, c in zip(estimates[:-2], estimates[1:-1], estimates[2:]):
                d1, d2 = np.abs(a - b), np.abs(b - c)
                regular &= ((a - b) * (b - c) > 0) & (d1 >= 0.5 * ratio * d2)
                regular &= d1 <= 2 * ratio * d2
            value, err, reg = _richardson([e.copy() for e in estimates], ratio=ratio)
            assert np.array_equal(value, best) and np.array_equal(err, error)
            assert np.array_equal(reg, regular) and (
                levels == 2 or (regular[:50].all() and not regular[50:].all()))


def test_perturbed_input_buffer_does_not_leak_into_stored_outputs():
    """Finite differences reuse one input buffer: outputs that alias the input must not move."""
    import torch

    import gradcheck_kit as gk

    x = torch.linspace(-1.0, 1.0, 50, dtype=torch.float64, requires_grad=True)
    # The identity returns its (copied) input; a wrong gradient of 1.01 must be caught and
    # the right one must pass, which fails if later steps overwrite earlier outputs.
    assert gk.gradcheck(lambda x: x, (x,), raise_exception=False)

    class Off(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return g * 1.01

    assert not gk.gradcheck(Off.apply, (x,), raise_exception=False)


def test_attempts_in_slices_give_the_estimate_of_the_whole_bit_for_bit(monkeypatch):
    """Large outputs are estimated in slices (`_attempt`): every field must be the same."""
    import dataclasses

    from gradcheck_kit import _finite_differences as fd

    rng = np.random.default_rng(5)
    x = rng.standard_normal((40, 5)) * 3
    x[0, :3] = 0.0  # kinks at the point itself
    late = x.copy()
    late[0, :3] = 1.0
    late[-3, 2] = 0.0  # a kink in a later slice only: the bounds of the slices before it
    functions = [
        lambda t: np.tanh(x + t) * 2,
        lambda t: np.maximum(x + t, 0.0),  # kinks
        lambda t: np.maximum(late + t, 0.0),
        lambda t: np.sqrt(np.where(x > 0, x, 0.0) + t),  # one side only where x <= 0
        lambda t: (x + t) * 1e8 - 1e8 * x,  # cancelling: noise is measured
    ]
    for g in functions:
        with np.errstate(all="ignore"):
            whole = fd.directional_derivative(g, eps=2.0**-52, step=2.0**-11)
            monkeypatch.setattr(fd, "_CHUNK", 7)  # 200 elements: 28 slices and a short one
            sliced = fd.directional_derivative(g, eps=2.0**-52, step=2.0**-11)
            monkeypatch.undo()
        for field in dataclasses.fields(whole):
            a, b = getattr(whole, field.name), getattr(sliced, field.name)
            if isinstance(a, np.ndarray):
                assert a.dtype == b.dtype and a.shape == b.shape, field.name
                assert np.array_equal(a, b, equal_nan=True), field.name
            else:
                assert a == b, field.name


def test_rounding_beyond_the_model_is_no_kink():
    # A linear g whose values are tiny next to the terms they are rounded with (matmul
    # outputs that cancel to near zero): the one-sided estimates differ by that rounding,
    # beyond the model's bound, but by far less than sqrt(eps) of their size.
    rng = np.random.default_rng(0)
    n = 100_000
    slope = rng.uniform(0.5, 2.0, n)
    base = rng.uniform(-1e-12, 1e-12, n)

    def g(t: float) -> np.ndarray:
        # Rounding of O(1) terms that a cancelled output keeps: 1e-16 absolute per call.
        return base + slope * t + 1e-16 * rng.standard_normal(n)

    d = directional_derivative(g, eps=2.0**-53, step=2.0**-11)
    assert not d.kink.any()
    assert np.allclose(d.value, slope, rtol=1e-8)


def test_bounds_are_formed_only_where_there_is_a_kink():
    x = np.array([0.0, 1.0, -2.0])
    smooth = directional_derivative(lambda t: np.tanh(x + t), eps=EPS64, step=2.0**-11)
    assert smooth.lower is None and smooth.upper is None
    lower, upper = smooth.bounds()
    assert np.array_equal(lower, smooth.value - smooth.error)
    assert np.array_equal(upper, smooth.value + smooth.error)
    kinked = directional_derivative(lambda t: np.abs(x + t), eps=EPS64, step=2.0**-11)
    assert kinked.kink[0] and kinked.bounds() == (kinked.lower, kinked.upper)
    assert kinked.lower[0] <= -1.0 + 1e-9 and kinked.upper[0] >= 1.0 - 1e-9


def test_release_comes_before_each_analysis():
    # `g` may free its scratch memory while the evaluations are analysed (the peak).
    calls = []

    def g(t: float) -> np.ndarray:
        calls.append("g")
        return np.exp(np.array([0.5, 1.0]) * (1.0 + t))

    directional_derivative(g, eps=EPS64, step=2.0**-11, release=lambda: calls.append("release"))
    assert calls == ["g"] * 7 + ["release"]  # g(0), three levels of two steps, then release
