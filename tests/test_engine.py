"""The engine end to end: which comparisons it builds, localisation, extreme input scales."""

from __future__ import annotations

import math

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gradcheck_kit as gk  # noqa: E402
from gradcheck_kit import ComparisonKind  # noqa: E402
from custom_functions import scaled_sin, unary_function  # noqa: E402


def x64(*values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype, requires_grad=True)


def oracle_comparisons(report):
    """The comparisons of two derivative oracles (torch's structural checks left out: they
    are exact, or torch's allclose, whatever atol/rtol say, as in torch)."""
    return [c for c in report.comparisons if c.kind is not ComparisonKind.STRUCTURAL]


# sin as a Function with a right backward and jvp: forward mode checks its own rule.
OWN_SIN = unary_function(torch.sin, torch.cos, jvp_factor=1.0, name="OwnSin").apply


def test_comparison_kinds_per_oracle():
    r64 = gk.gradcheck(OWN_SIN, x64(0.1, 0.7, -1.2))
    assert {c.kind for c in oracle_comparisons(r64)} == {
        ComparisonKind.FINITE_DIFFERENCES, ComparisonKind.FORWARD_MODE,
    }
    # torch's own sin: forward mode would check torch's rules, and is not compared.
    builtin = gk.gradcheck(torch.sin, x64(0.1, 0.7, -1.2))
    assert {c.kind for c in oracle_comparisons(builtin)} == {ComparisonKind.FINITE_DIFFERENCES}
    r32 = gk.gradcheck(torch.sin, x64(0.1, 0.7, -1.2, dtype=torch.float32))
    assert ComparisonKind.PRECISION in {c.kind for c in r32.comparisons}
    hand = gk.gradcheck(lambda x: float(np.sum(x**3)), np.array([0.5, -1.0]), grad=lambda x: 3 * x**2)
    assert [c.kind for c in hand.comparisons] == [ComparisonKind.FINITE_DIFFERENCES]
    assert hand.comparisons[0].check == "hand-written gradient vs finite differences"


def test_localisation_extends_the_failing_comparison_with_its_cost():
    x = x64(0.1, 0.7, -1.2, 0.4, 2.0)
    fast = gk.gradcheck(scaled_sin(1.5, element=3), x, mode="fast", raise_exception=False)
    auto = gk.gradcheck(scaled_sin(1.5, element=3), x, raise_exception=False)
    [f_fd] = [c for c in fast.failures if c.kind is ComparisonKind.FINITE_DIFFERENCES]
    [a_fd] = [c for c in auto.failures if c.kind is ComparisonKind.FINITE_DIFFERENCES]
    [spent] = [int(m.group(1)) for n in a_fd.notes if (m := re.match(r"localised with (\d+) more", n))]
    assert a_fd.function_evals == f_fd.function_evals + spent
    assert auto.function_evals == fast.function_evals + spent
    assert a_fd.worst[0].input_index == (3,) and not f_fd.worst
    assert (a_fd.error, a_fd.tolerance) == (f_fd.error, f_fd.tolerance)


def test_user_atol_rtol_reach_every_comparison():
    report = gk.gradcheck(OWN_SIN, x64(0.1, 0.7, -1.2, dtype=torch.float32), atol=1e-4, rtol=1e-3)
    kinds = {c.kind for c in oracle_comparisons(report)}
    assert kinds == {ComparisonKind.FINITE_DIFFERENCES, ComparisonKind.FORWARD_MODE, ComparisonKind.PRECISION}
    for c in oracle_comparisons(report):
        assert c.tolerance_source.startswith("user atol=0.0001, rtol=0.001"), c


def test_huge_inputs_do_not_overflow_the_probe_scale():
    # sqrt(mean(x * x)) overflows at 1e200; the scale must stay finite and relative.
    report = gk.gradcheck(torch.log, x64(1e200, 3e200, 2e200))
    fd = [c for c in report.comparisons if c.kind is ComparisonKind.FINITE_DIFFERENCES]
    assert fd and all(np.isfinite(c.numeric) and c.numeric != 0 for c in fd)


def test_tiny_inputs_are_perturbed_at_their_own_scale():
    report = gk.gradcheck(lambda x: x * x, x64(1e-150, 3e-150, -2e-150), raise_exception=False)
    assert report.passed
    # At 1e-170, x * x underflows to 0: the probe is unresolved (inconclusive), but the
    # input is not reported as non-differentiable.
    report = gk.gradcheck(lambda x: x * x, x64(1e-170, 3e-170, -2e-170), raise_exception=False)
    assert report.status == "inconclusive"
    assert not any("differentiable" in n for c in report.comparisons for n in c.notes)
    assert not any("differentiable" in n for n in report.notes)


# -- held-fixed (infinite) inputs and outputs independent of the inputs -----------------------


def _masked_scores():
    x = torch.tensor([[0.3, -1.2, 0.8, 0.0, 0.0], [1.1, 0.4, -0.5, 0.2, 0.0]], dtype=torch.float64)
    x[0, 3:] = float("-inf")
    x[1, 4] = float("-inf")
    return x.requires_grad_()


def _softmax_with_backward(leak):
    class Softmax(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = torch.softmax(x, -1)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, gy):
            (y,) = ctx.saved_tensors
            return leak(y * (gy - (gy * y).sum(-1, keepdim=True)), y, gy)

    weights = torch.arange(5.0, dtype=torch.float64)
    return lambda x: (Softmax.apply(x) * weights).sum()


@pytest.mark.parametrize("leak, passes", [
    (lambda gx, y, gy: gx, True),
    (lambda gx, y, gy: gx + 0.1 * (y == 0) * gy, False),
    (lambda gx, y, gy: torch.where(y == 0, torch.full_like(gx, float("nan")), gx), False),
])
def test_gradients_at_infinite_inputs_must_be_finite_and_zero(leak, passes):
    r = gk.gradcheck(_softmax_with_backward(leak), _masked_scores(), raise_exception=False)
    assert r.status == ("passed" if passes else "failed")
    [held] = [c for c in r.comparisons if c.check.startswith("gradient at held-fixed")]
    assert held.passed is passes
    if not passes:
        assert held.worst and held.worst[0].input_index in {(0, 3), (0, 4), (1, 4)}
        assert "leaks gradient" in held.notes[0]


def test_outputs_independent_of_the_inputs_are_inconclusive_with_the_fix():
    p = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    r = gk.gradcheck(lambda q: (p * p).sum(), p.detach().clone().requires_grad_(), raise_exception=False)
    assert r.status == "inconclusive" and not r
    [c] = [c for c in r.comparisons if c.inconclusive]
    assert "pass it as an argument" in c.inconclusive_reason
    with pytest.raises(gk.InconclusiveCheck):
        gk.gradcheck(lambda q: (p * p).sum(), p.detach().clone().requires_grad_())
    assert gk.gradcheck(lambda q: (q * q).sum(), p)


# -- a kink in the probe must not hide the smooth coordinates ---------------------------------


def _lasso(data_factor):
    target = torch.linspace(-1.0, 1.5, 12, dtype=torch.float64)

    class Mse(torch.autograd.Function):
        @staticmethod
        def forward(ctx, w):
            ctx.save_for_backward(w)
            return ((w - target.to(w.dtype)) ** 2).mean()

        @staticmethod
        def backward(ctx, go):
            (w,) = ctx.saved_tensors
            return go * data_factor * 2 * (w - target.to(w.dtype)) / w.numel()

    return lambda w: Mse.apply(w) + 0.5 * w.abs().sum()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("factor, passes", [(1.0, True), (2.0, False)])
def test_kinked_probe_checks_its_smooth_coordinates_sharply(dtype, factor, passes):
    w = torch.linspace(-0.9, 1.3, 12, dtype=torch.float64)
    w[[1, 6, 10]] = 0.0  # exact kinks of |w|
    r = gk.gradcheck(_lasso(factor), w.to(dtype).requires_grad_(), raise_exception=False)
    assert r.status == ("passed" if passes else "failed")
    [c] = [c for c in r.comparisons if c.kind is ComparisonKind.FINITE_DIFFERENCES]
    assert any("kinked probe split" in n for n in c.notes)
    assert c.passed is passes


def test_a_constant_function_is_not_taken_for_a_closure():
    # abs(x - x) is 0 for every x: its zero gradient is right, and the graph reaches x.
    x = x64(0.5, -1.0, 2.0)
    r = gk.gradcheck(lambda q: (q - q).abs(), x, raise_exception=False)
    assert r.status == "passed"
    assert not any(c.inconclusive for c in r.comparisons)


# -- dynamic range inside one output ------------------------------------------------------------


def _exp_off_at(element, factor):
    class Exp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = x.exp()
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, gy):
            (y,) = ctx.saved_tensors
            gx = (gy * y).clone()
            gx[element] = gx[element] * factor
            return gx

    return Exp.apply


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "top, factor, status",
    [(13.0, 1.0, "passed"), (13.0, 1.5, "failed"), (40.0, 1.0, "passed"),
     # Entry 0 is 4e-18 of the largest: beyond the decisive weight (`_weight_caps`),
     # where a disagreement cannot be told from rounding of the largest intermediates.
     (40.0, 1.5, "inconclusive")],
)
def test_small_elements_of_a_wide_ranged_output_are_checked(dtype, top, factor, status):
    x = torch.linspace(0.0, top, 21, dtype=dtype, requires_grad=True)
    r = gk.gradcheck(_exp_off_at(0, factor), x, mode="fast", raise_exception=False)
    assert r.status == status, r
    [eq] = [c for c in r.comparisons if c.check.endswith("(equalised cotangent)")]
    assert eq.status == status and eq.function_evals == 0
    [plain] = [c for c in r.comparisons if c.kind is ComparisonKind.FINITE_DIFFERENCES and c is not eq]
    if top == 40.0:
        assert plain.passed  # the random cotangent alone is dominated by exp(40)


def test_no_equalised_probe_where_the_output_has_no_dynamic_range():
    r = gk.gradcheck(torch.sin, x64(0.1, 0.7, 1.2))
    assert not any(c.check.endswith("(equalised cotangent)") for c in r.comparisons)


@pytest.mark.parametrize("seed", range(6))
def test_gelu_far_in_its_tail_passes(seed):
    # Inputs of scale 3 reach x = -7, where 1 + tanh(z) cancels: the computed forward's
    # derivative and the backward differ by up to 100% there, at 1e-15 of the largest
    # derivative. Equalised without a cap, 32 of 40 seeds were not passed.
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    r = gk.gradcheck(
        lambda x: torch.nn.functional.gelu(x, approximate="tanh"), (3 * x).requires_grad_(),
        raise_exception=False,
    )
    assert r.status == "passed", r
    assert any(c.check.endswith("(equalised cotangent)") for c in r.comparisons)


_K = math.sqrt(2 / math.pi)


def _gelu_formula(x):
    return 0.5 * x * (1 + torch.tanh(_K * (x + 0.044715 * x.pow(3))))


def _gelu_off_near(x0: torch.Tensor, value: float):
    """The gelu formula with the gradient of the element of `x0` nearest `value` 1.5x."""
    k = int((x0.flatten() - value).abs().argmin())

    class Off(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            with torch.enable_grad():
                xx = x.detach().requires_grad_()
                (g,) = torch.autograd.grad(_gelu_formula(xx).sum(), xx)
            ctx.save_for_backward(g)
            return _gelu_formula(x)

        @staticmethod
        def backward(ctx, gy):
            (g,) = ctx.saved_tensors
            gx = (gy * g).flatten().clone()
            gx[k] *= 1.5
            return gx.view_as(g)

    return Off.apply


def test_a_weighted_probe_within_magnified_rounding_is_inconclusive_not_failed():
    # gelu written out, at x = -6.57 and -6.68: 1 + tanh(z) is 3e-13 made from terms of
    # size 1, and finite differences converge, smoothly, to a derivative 2-8% off there.
    # Weighted by 9.5e7 (the decisive cap), those two elements failed the check of a
    # correct function (margin 1.9; `compare`'s reference check on gelu kernels).
    x = (2 * torch.randn(8, 64, generator=torch.Generator().manual_seed(1054))).float().double()
    r = gk.gradcheck(_gelu_formula, x.clone().requires_grad_(), seed=54, raise_exception=False)
    assert r.status == "inconclusive", r
    [eq] = [c for c in r.comparisons if c.inconclusive]
    assert eq.check.endswith("(equalised cotangent)") and "intermediates" in eq.inconclusive_reason
    # Elements of the tail whose weights are below the cap still decide.
    for value in (-5.0965, -4.767, -3.006):
        wrong = gk.gradcheck(_gelu_off_near(x, value), x.clone().requires_grad_(), seed=54,
                             raise_exception=False)
        assert wrong.status == "failed", (value, wrong)


class _FlatTail(torch.autograd.Function):
    """`exp(4 x)` on the first half and a constant on the second, whose backward passes
    1e-9 of the cotangent to the constant half: far below what a float64 check reports
    (its accuracy floor is 1e-9 of the probe's terms), as a floor or a clamp may leave."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.cat([torch.exp(4 * x[:6]), torch.full_like(x[6:], 1e-5)])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return torch.cat([4 * torch.exp(4 * x[:6]) * g[:6], 1e-9 * g[6:]])


def test_outputs_that_never_move_are_not_magnified_by_the_equalised_probe():
    # Finite differences measured no derivative where the outputs stayed bit for bit the
    # same at every step; weighting those by the inverse of their error bound magnified
    # that 1e-9 into a failure (kornia's SIFT descriptors failed 4 of 6 seeds so).
    x = torch.linspace(0.5, 3.0, 12, dtype=torch.float64, requires_grad=True)
    r = gk.gradcheck(_FlatTail.apply, x, raise_exception=False)
    assert r.status == "passed", r
    assert any(c.check.endswith("(equalised cotangent)") for c in r.comparisons)
