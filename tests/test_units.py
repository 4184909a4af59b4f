"""No absolute floor: functions in any units, and the bottom of the floating-point range."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradcheck_kit as gk
from benchmarks.zoo import custom_function, zoo_cases


def _sq(factor: float):
    return custom_function("SumSquares", lambda x: (x * x).sum(), lambda g, x: factor * g * x)


@pytest.mark.parametrize("scale", [1e-8, 1e-30, 1e-100, 1e40])
def test_a_factor_two_bug_is_found_at_any_scale(scale):
    x = (torch.rand(8, dtype=torch.float64) + 0.5) * scale
    assert not gk.gradcheck(_sq(4.0), (x.requires_grad_(),), raise_exception=False)
    assert gk.gradcheck(_sq(2.0), (x.detach().requires_grad_(),))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lennard_jones_in_si_units(dtype):
    cases = {c.name: c for c in zoo_cases()}
    bug = cases["lennard_jones_si_force_x2"].build(dtype)
    assert not gk.gradcheck(bug.fn, bug.inputs, raise_exception=False)
    ok = cases["lennard_jones_si_correct"].build(dtype)
    assert gk.gradcheck(ok.fn, ok.inputs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("units", [2.0**-60, 1.0, 2.0**60])
def test_vanishing_value_and_gradient_pass_in_any_units(dtype, units):
    # var(exp(x)) at 0: value and gradient vanish while the intermediates are 1; their
    # rounding shows in the finite differences whatever the outputs' units.
    for n in (2, 5):
        x = torch.zeros(n, dtype=dtype, requires_grad=True)
        for seed in range(8):
            assert gk.gradcheck(lambda a: a.exp().var() * units, x, seed=seed)


def test_underflowing_outputs_are_inconclusive_not_passed():
    x = ((torch.rand(10, dtype=torch.float64) + 0.5) * 1e-170).requires_grad_()
    for fn in (lambda a: (a * a).sum(), _sq(4.0)):  # x^2 underflows to 0
        report = gk.gradcheck(fn, (x,), raise_exception=False)
        assert report.status == "inconclusive"
        [c] = [c for c in report.comparisons if c.inconclusive]
        assert "underflow" in c.inconclusive_reason and "Rescale" in c.inconclusive_reason
        assert not c.worst  # nothing localised from oracles that could not decide
    # A constant has a zero gradient however small its inputs are.
    assert gk.gradcheck(lambda a: (a * 0.0).sum(), (x,))


def test_a_float32_output_that_never_moves_is_inconclusive_not_compared_with_zero():
    # A float32-only function (not promotable) where 1 + x^2 rounds to 1: the output is
    # bit for bit the same at every step although it depends on x.
    def fn(a):
        if a.dtype != torch.float32:
            raise TypeError("float32 only")
        return torch.log(1 + a * a).sum()

    x = ((torch.rand(10) + 0.5) * 1e-4).requires_grad_()
    report = gk.gradcheck(fn, (x,), raise_exception=False)
    assert not report.promoted and report.status == "inconclusive"
    [c] = [c for c in report.comparisons
           if c.inconclusive and "bit for bit" in c.inconclusive_reason]
    assert "float64" in c.inconclusive_reason
    # In float64 an output that does not move under a nonzero gradient is a wrong gradient.
    wrong = custom_function(
        "UnusedSecond", lambda a, b: (a * a).sum(),
        lambda g, a, b: (2 * g * a, g * torch.ones_like(b)),
    )
    y = torch.rand(3, dtype=torch.float64, requires_grad=True)
    report = gk.gradcheck(wrong, (torch.rand(4, dtype=torch.float64, requires_grad=True), y),
                          raise_exception=False)
    assert report.status == "failed" and report.failures[0].input == "inputs[1]"


def test_the_bend_along_the_probe_is_measured_in_the_outputs_units():
    # The second derivative along t, from the finite-difference evaluations themselves,
    # scaled with the outputs' units; zero for a linear or constant output. Retries at
    # tiny steps (the kink of |t| forces them) do not erase it: there t^2 g'' rounds away,
    # which is no measurement.
    from gradcheck_kit._finite_differences import directional_derivative

    def bend(units: float):
        g = lambda t: units * np.array([np.exp(3 * t), 2.0 + 5.0 * t, abs(t), 0.0])
        d = directional_derivative(g, eps=2.0**-53, step=2.0**-11)
        assert len(d.steps_tried) > 1
        return d.bend, d.moved

    base, moved = bend(1.0)
    assert abs(base[0] - 9.0) < 1e-2
    assert base[1] == 0.0 and base[3] == 0.0
    assert moved.tolist() == [True, True, True, False]
    for units in (2.0**-70, 2.0**60):
        scaled, _ = bend(units)
        assert np.array_equal(scaled, base * units)
