"""Verdicts at the edges of finite differences: the float64 accuracy floor, inconclusive FD."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradcheck_kit as gk
from custom_functions import unary_function
from gradcheck_kit._tolerance import FLOAT64_RELATIVE_FLOOR


def _scaled_backward(fn, factor: float):
    """`fn` (elementwise) with its autograd gradient multiplied by `factor`."""

    class Scaled(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return fn(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            with torch.enable_grad():
                y = x.detach().requires_grad_()
                (grad,) = torch.autograd.grad(fn(y).sum(), y)
            return g * grad * factor

    return Scaled.apply


def _points() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return (0.5 + 3 * torch.rand(20, generator=g, dtype=torch.float64)).requires_grad_()


def test_digamma_backward_accurate_to_about_1e_10_passes_with_a_note():
    report = gk.gradcheck(lambda x: torch.digamma(x).sum(), (_points(),))
    assert report.status == "passed"
    notes = [n for c in report.comparisons for n in c.notes]
    assert any("float64 accuracy floor" in n for n in notes)


@pytest.mark.parametrize("relative", [3e-10, 1e-7])
def test_the_floor_hides_errors_below_it_and_only_those(relative):
    fn = _scaled_backward(torch.sin, 1.0 + relative)
    report = gk.gradcheck(lambda x: fn(x).sum(), (_points(),), raise_exception=False)
    # Every element off by `relative`: the probe moves by that fraction of its terms.
    assert report.status == ("passed" if relative < FLOAT64_RELATIVE_FLOOR else "failed")
    if relative < FLOAT64_RELATIVE_FLOOR:  # passed by the floor, not by the rounding model
        assert any("float64 accuracy floor" in n for c in report.comparisons for n in c.notes)


def test_the_users_tolerance_replaces_the_floor():
    fn = _scaled_backward(torch.sin, 1.0 + 3e-10)
    x = _points()
    report = gk.gradcheck(lambda x: fn(x).sum(), (x,), atol=1e-14, rtol=0.0, raise_exception=False)
    assert report.status == "failed"


# -- finite differences that cannot resolve the derivative: inconclusive, not failed ------


def _ill_conditioned(cond: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -np.log10(cond), 6, dtype=torch.float64)
    b = torch.randn(6, 2, generator=g, dtype=torch.float64)
    return (u @ torch.diag(s) @ v.T).requires_grad_(), b


def test_a_solve_no_step_resolves_is_inconclusive_with_the_reason():
    a, b = _ill_conditioned(1e8)
    report = gk.gradcheck(lambda a: torch.linalg.solve(a, b), (a,), raise_exception=False)
    assert report.status == "inconclusive"
    undecided = [c for c in report.comparisons if c.inconclusive]
    assert undecided and all(not c.worst for c in undecided)  # nothing localised
    reason = undecided[0].inconclusive_reason
    assert "did not resolve the derivative" in reason and "To decide" in reason
    with pytest.raises(gk.InconclusiveCheck):
        gk.gradcheck(lambda a: torch.linalg.solve(a, b), (a,))


class _WrongSolve(torch.autograd.Function):
    """`solve(a, b)` whose gradient in `a` is twice the true one."""

    @staticmethod
    def forward(ctx, a, b):
        x = torch.linalg.solve(a, b)
        ctx.save_for_backward(a, x)
        return x

    @staticmethod
    def backward(ctx, g):
        a, x = ctx.saved_tensors
        gb = torch.linalg.solve(a.T, g)
        return -2.0 * gb @ x.T, None


def test_a_wrong_gradient_of_a_well_conditioned_solve_still_fails():
    a, b = _ill_conditioned(10.0)
    report = gk.gradcheck(lambda a: _WrongSolve.apply(a, b), (a,), raise_exception=False)
    assert report.status == "failed"


def _smooth_l1(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.smooth_l1_loss(x, torch.zeros_like(x), beta=1.0, reduction="sum")


def _near_beta(offset: float) -> torch.Tensor:
    base = np.random.default_rng(8).uniform(0.2, 2.0, 6)
    base[0], base[1] = 1.0 - offset, -(1.0 + 0.5 * offset)
    return torch.tensor(base, dtype=torch.float64, requires_grad=True)


def test_smooth_l1_next_to_beta_is_never_a_confident_failure():
    # |x| = beta is a C1 point: the second derivative jumps inside every step tried.
    for offset in (1e-10, 1e-8, 1e-6, 1e-4):
        report = gk.gradcheck(_smooth_l1, (_near_beta(offset),), raise_exception=False)
        assert report.status in ("passed", "inconclusive"), (offset, report)


# smooth_l1 (sum) with the gradient of the quadratic part 10% too large.
_WrongSmoothL1 = unary_function(
    _smooth_l1, lambda x: torch.where(x.abs() < 1, 1.1 * x, x.sign()), name="WrongSmoothL1"
)


@pytest.mark.parametrize("offset", [1e-10, 1e-8, 1e-6])
def test_a_wrong_smooth_l1_gradient_next_to_beta_still_fails(offset):
    report = gk.gradcheck(_WrongSmoothL1.apply, (_near_beta(offset),), raise_exception=False)
    assert report.status == "failed"


class _IgnoresItsInput(torch.autograd.Function):
    """Returns a constant but claims the gradient of sum(x^2)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.ones((), dtype=x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * 2 * x


def test_a_float64_output_that_misses_every_step_is_inconclusive_not_failed():
    # log(1 + x^6) at x ~ 2e-3: 1 + x^6 rounds to 1 at every finite-difference step, yet
    # the output moves when x moves far: the derivative cannot be resolved there.
    x = (2e-3 * torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    report = gk.gradcheck(lambda x: torch.log(1 + (x**3) ** 2), x.requires_grad_(),
                          raise_exception=False)
    assert report.status == "inconclusive"
    assert any("stayed bit for bit the same" in (c.inconclusive_reason or "")
               for c in report.comparisons)
    # An output that does not move even far away really ignores its input: still failed.
    y = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert gk.gradcheck(_IgnoresItsInput.apply, y, raise_exception=False).status == "failed"
