"""The float32 backward against the float64 one: bounded by the backward's own rounding.

The tolerance neither scales with the loss value (a float32 backward computed in
bfloat16 or float16 fails however large |f(x)| is) nor with the forward's error alone
(std's forward hardly feels the rounding of the mean of 1000 + 0.1 x; its backward does).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import gradcheck_kit as gk
from custom_functions import square_loss
from gradcheck_kit import ComparisonKind


def _x(n, *, seed, offset=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (offset + scale * torch.randn(n, generator=g)).float().requires_grad_()


def _precision(report):
    return [c for c in report.comparisons if c.kind is ComparisonKind.PRECISION]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("fn", [torch.std, torch.var], ids=["std", "var"])
def test_spread_of_data_with_a_large_offset_passes_in_float32(fn, seed):
    report = gk.gradcheck(fn, (_x(50, seed=seed, offset=1000.0, scale=0.1),), seed=seed,
                          raise_exception=False)
    assert report.passed, report
    assert _precision(report) and report.promoted


def _square_loss(scale, offset, rounding):
    """`scale * sum(x*x) + offset`; the float32 backward rounds through `rounding`."""
    return square_loss(scale, offset, rounding, only_in=torch.float32)


LARGE_LOSSES = [(1e6, 0.0), (1.0, 1e8), (1e3, 1e10)]


@pytest.mark.parametrize("scale, offset", LARGE_LOSSES)
@pytest.mark.parametrize("rounding", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_a_float32_backward_computed_in_half_precision_fails_for_a_large_loss(
    scale, offset, rounding
):
    report = gk.gradcheck(_square_loss(scale, offset, rounding), (_x(20, seed=1),),
                          raise_exception=False)
    assert report.status == "failed"
    assert [c.passed for c in _precision(report)] == [False]


@pytest.mark.parametrize("scale, offset", LARGE_LOSSES)
def test_a_correct_float32_backward_passes_for_a_large_loss(scale, offset):
    assert gk.gradcheck(_square_loss(scale, offset, None), (_x(20, seed=1),)).passed


def test_a_bfloat16_backward_in_both_dtypes_fails():
    class Loss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return (x * x).sum() * 1e6

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return (g * 2e6 * x).bfloat16().float()

    report = gk.gradcheck(Loss.apply, (_x(20, seed=2),), raise_exception=False)
    assert report.status == "failed"


SAVED_INTERMEDIATES = {
    # The backward reads rounded forward values: the saturated output (1 - t*t cancels),
    # and batch norm's statistics of rows 5 +- 0.1 (the squared sum is almost constant).
    "tanh-saturated": (torch.tanh, lambda seed: _x(6, seed=seed, offset=8.0, scale=0.5)),
    "sigmoid-saturated": (torch.sigmoid, lambda seed: _x(6, seed=seed, offset=15.0, scale=2.0)),
    "batch-norm-squared-sum": (
        lambda x: torch.nn.functional.batch_norm(x, None, None, training=True).pow(2).sum(),
        lambda seed: _x(64, seed=seed, offset=5.0, scale=0.1).detach().reshape(16, 4)
        .requires_grad_(),
    ),
}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name", sorted(SAVED_INTERMEDIATES))
def test_a_backward_reading_rounded_forward_values_passes_in_float32(name, seed):
    fn, inputs = SAVED_INTERMEDIATES[name]
    report = gk.gradcheck(fn, (inputs(seed),), seed=seed, raise_exception=False)
    precision = _precision(report)
    assert precision and all(c.passed for c in precision), report


def test_a_gradient_cancelling_at_a_zero_parameter_passes_in_float32():
    # The Legendre fit y ~ b P3(c + d x) of sin over x symmetric about 0, at c = 0: dL/dc
    # is 0 by symmetry, and its float32 value is the rounding of 2000 terms of size 1.
    np = pytest.importorskip("numpy")
    x = np.linspace(-np.pi, np.pi, 2000)
    y = np.sin(x)

    def residual(b, c, d):
        t = c + d * x.astype(c.dtype)
        return b * (5 * t**3 - 3 * t) / 2 - y.astype(c.dtype), t

    def loss(b, c, d):
        r, _ = residual(b, c, d)
        return (r * r).sum()

    def grad(b, c, d):
        r, t = residual(b, c, d)
        dp = b * 1.5 * (5 * t**2 - 1)
        return (2 * r * (5 * t**3 - 3 * t) / 2).sum(), (2 * r * dp).sum(), (2 * r * dp * x).sum()

    params = tuple(np.full((), v, np.float32) for v in (-1.0, 0.0, 0.3))
    assert gk.gradcheck(loss, params, grad=grad).passed
