"""Evaluation noise in finite differences: derived gains, measured noise, refusing functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradcheck_kit as gk
from gradcheck_kit._finite_differences import (
    OutsideDomain,
    Scheme,
    default_step,
    directional_derivative,
    richardson_noise_gain,
)

EPS64 = 2.0**-53


def fd(g, **kw):
    return directional_derivative(g, eps=EPS64, step=default_step(EPS64), **kw)


@pytest.mark.parametrize("levels", [2, 3, 4, 5])
def test_rounding_bound_uses_the_richardson_weights_of_every_level_count(levels):
    # A linear g: no truncation, so the rounding bound is the model's alone.
    d = fd(lambda t: np.array([3.0 + 2.0 * t]), levels=levels, measure=False)
    h_min = d.step
    model = 16.0 * EPS64 * (3.0 + 2.0 * default_step(EPS64))
    expected = richardson_noise_gain(levels, one_sided=False) * model / h_min
    assert d.scheme[0] == Scheme.CENTRAL
    assert d.rounding[0] == pytest.approx(expected, rel=1e-12)


def test_scheme_codes_are_the_enum():
    d = fd(lambda t: np.array([abs(t) + t, np.sqrt(max(-t, 0.0)) * 0 + t]))
    assert {Scheme(int(s)) for s in d.scheme} <= set(Scheme)


def _cancelling(t: float) -> np.ndarray:
    # log(1 + x^2) at x ~ 1e-4: the output is 1e-8, its rounding that of 1 + x^2 (ulps of 1).
    x = 1e-4 * (1.0 + np.array([0.3, -0.7, 0.5]) * t)
    return np.log(1.0 + x * x)


def test_measured_noise_bounds_the_error_of_a_cancelling_function():
    target = lambda value, error: bool(np.all(error < 1.5e-8 * np.abs(value)))  # noqa: E731
    d = fd(_cancelling, target=target)
    x = 1e-4
    truth = 2 * x / (1 + x * x) * 1e-4 * np.array([0.3, -0.7, 0.5])
    assert np.all(np.abs(d.value - truth) <= d.error)
    assert d.noise is not None and np.all(d.noise > 16 * EPS64 * np.abs(_cancelling(0.0)))
    # The model alone claims far more than the function can give, at a smaller step.
    blind = fd(_cancelling, target=target, measure=False)
    assert np.any(np.abs(blind.value - truth) > blind.error)
    assert d.evals <= blind.evals


def test_a_retry_never_makes_a_noise_limited_estimate_worse():
    # A target no estimate reaches: every retry is taken.
    target = lambda value, error: bool(np.all(error < 1e-15 * np.abs(value)))  # noqa: E731
    first = fd(_cancelling, target=target, retries=0)
    kept = fd(_cancelling, target=target)
    assert first.noise is not None
    assert np.sum(kept.error) <= np.sum(first.error)


def test_a_kink_just_beside_the_point_is_not_taken_for_noise():
    d = fd(lambda t: np.array([3.0 * max(1e-7 + t, 0.0)]))
    assert d.value[0] == pytest.approx(3.0, rel=1e-10)
    assert d.error[0] < 1e-8


def test_a_function_that_refuses_large_steps_is_differentiated_at_smaller_ones():
    def g(t):
        if abs(t) > 1e-5:
            raise OutsideDomain("the input is off its grid")
        return np.array([np.sin(1.0 + t)])

    d = fd(g)
    assert d.value[0] == pytest.approx(np.cos(1.0), rel=1e-8)
    assert any("off its grid" in n for n in d.notes)
    assert any("accepted the perturbed inputs" in n for n in d.notes)


def test_a_function_that_refuses_every_step_raises_its_refusal():
    def g(t):
        if t != 0:
            raise OutsideDomain("never")
        return np.array([1.0])

    with pytest.raises(OutsideDomain, match="never"):
        fd(g)


# -- through gradcheck ------------------------------------------------------------------


def test_logdet_of_a_near_identity_matrix_passes():
    X = (1e-4 * torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    eye = torch.eye(4, dtype=torch.float64)
    report = gk.gradcheck(lambda X: torch.logdet(eye + X @ X.T), (X.requires_grad_(),))
    assert report.status == "passed"


def test_a_function_that_validates_its_input_is_checked_at_a_step_it_accepts():
    def on_grid(x):
        if not torch.allclose(x, x.round(decimals=2), atol=1e-4):
            raise ValueError("inputs must lie on a 0.01 grid")
        return (x**3).sum()

    x = torch.tensor([0.12, 0.35, 0.8], dtype=torch.float64, requires_grad=True)
    report = gk.gradcheck(on_grid, (x,))
    notes = [n for c in report.comparisons for n in c.notes]
    assert report.status == "passed"
    assert any("ValueError" in n and "0.01 grid" in n for n in notes)
    assert any("accepted the perturbed inputs at step" in n for n in notes)

    def wrong(x):
        on_grid(x)
        return _TimesThree.apply(x).sum()

    assert gk.gradcheck(wrong, (x,), raise_exception=False).status == "failed"


class _TimesThree(torch.autograd.Function):
    """x**3 with a backward off by a factor 2."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 6 * x**2


def test_a_function_that_refuses_every_perturbation_names_its_own_error():
    def exact(x):
        if not torch.equal(x, x.round(decimals=2)):
            raise ValueError("exactly on grid")
        return (x**3).sum()

    x = torch.tensor([0.5, 0.25], dtype=torch.float64, requires_grad=True)
    with pytest.raises(gk.CheckInputError, match="raised ValueError: exactly on grid") as info:
        gk.gradcheck(exact, (x,))
    assert isinstance(info.value.__cause__, ValueError)


def test_localisation_that_finds_no_wrong_element_says_so_under_a_failing_probe():
    from gradcheck_kit._engine import _localised
    from gradcheck_kit._localisation import Localisation
    from gradcheck_kit._report import Comparison, Element

    failing = Comparison("reverse mode vs finite differences", "x", "out", 2.0, 1.0, "t", False)
    near = (Element((0,), None, 1.0, 1.0 + 0.5, 0.5, 1.0),)
    found = _localised(failing, Localisation(near, 3, 0, 12, ()), full=False)
    assert not found.passed
    assert any("within their own tolerances" in n and "not established errors" in n
               for n in found.notes)
    wrong = _localised(failing, Localisation(near, 3, 1, 12, ()), full=False)
    assert not any("within their own tolerances" in n for n in wrong.notes)
