"""Verdicts at the edges of finite differences: the float64 accuracy floor, inconclusive FD."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gradcheck_kit as gk
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
