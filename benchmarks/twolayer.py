"""The doc-size two-layer ReLU network: cost, and a 0.1% error in one weight's gradient.

`loss(w1, w2) = sum((relu(x @ w1) @ w2 - y)^2)` with x 64x1000, w1 1000x100, w2 100x10,
y 64x10 (101,000 parameters), written as a `torch.autograd.Function` with the docs' hand
backward. The buggy version multiplies one element of `grad_w1` by 1.001. The element is
drawn with a fixed seed among those with a non-zero gradient; its size relative to the
largest gradient entry is recorded in the case description.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .cases import Case, Problem

__all__ = ["twolayer_cases", "SIZES"]

SIZES = {"n": 64, "d_in": 1000, "h": 100, "d_out": 10}
_DT = {"float64": torch.float64, "float32": torch.float32}


def _data(dtype: str) -> tuple[torch.Tensor, ...]:
    """`(x, w1, w2, y)`; only the weights require grad."""
    g = torch.Generator().manual_seed(0)
    n, d_in, h, d_out = SIZES["n"], SIZES["d_in"], SIZES["h"], SIZES["d_out"]
    shapes = [(n, d_in), (n, d_out), (d_in, h), (h, d_out)]
    x, y, w1, w2 = (torch.randn(s, generator=g, dtype=torch.float64).to(_DT[dtype]) for s in shapes)
    return x, w1.requires_grad_(), w2.requires_grad_(), y


def _network(*, bug_at: tuple[int, int] | None) -> Any:
    """`loss(x, w1, w2, y)` with the docs' hand backward (gradients for w1 and w2 only)."""

    class TwoLayer(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            h = x.mm(w1)
            h_relu = h.clamp(min=0)
            y_pred = h_relu.mm(w2)
            ctx.save_for_backward(x, w2, h, h_relu, y_pred, y)
            return (y_pred - y).pow(2).sum()

        @staticmethod
        def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
            x, w2, h, h_relu, y_pred, y = ctx.saved_tensors
            grad_y_pred = 2.0 * (y_pred - y)
            grad_w2 = h_relu.t().mm(grad_y_pred)
            grad_h = grad_y_pred.mm(w2.t()).clone()
            grad_h[h < 0] = 0
            grad_w1 = x.t().mm(grad_h)
            if bug_at is not None:
                grad_w1[bug_at] *= 1.001
            return None, g * grad_w1, g * grad_w2, None

    return TwoLayer.apply


def _reference(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((torch.relu(x @ w1) @ w2 - y) ** 2).sum()


def _closure(fn: Any, x: torch.Tensor, y: torch.Tensor) -> Any:
    """`fn` with the data closed over: `loss(w1, w2)`, as a training script would write it."""
    return lambda w1, w2: fn(x, w1, w2, y)


def _bug_element() -> tuple[tuple[int, int], float, float]:
    """The mutated element of grad_w1, its size relative to the largest entry of grad_w1,
    and relative to the largest entry of the whole gradient (w1 and w2)."""
    x, w1, w2, y = _data("float64")
    grad_w1, grad_w2 = torch.autograd.grad(_reference(x, w1, w2, y), [w1, w2])
    g = grad_w1.abs().reshape(-1)
    candidates = torch.nonzero(g > 0).reshape(-1).numpy()
    flat = int(np.random.default_rng(0).choice(candidates))
    index = (flat // grad_w1.shape[1], flat % grad_w1.shape[1])
    largest = max(float(g.max()), float(grad_w2.abs().max()))
    return index, float(g[flat] / g.max()), float(g[flat]) / largest


def twolayer_cases(*, closure: bool = False) -> list[Case]:
    """The correct network and the one with a 0.1% error in one element of `grad_w1`.

    **Arguments:**
    - `closure`: False checks `loss(x, w1, w2, y)` with x and y as inputs that do not
      require grad (the function is dtype-generic); True checks `loss(w1, w2)` with x and
      y closed over, which cannot be evaluated in another dtype.

    **Returns:** two torch `Case`s (suite "twolayer", or "twolayer/closure").

    **Example:**
    >>> [c.buggy for c in twolayer_cases()]
    [False, True]
    """
    index, relative, overall = _bug_element()
    suffix = "_closure" if closure else ""
    suite = "twolayer/closure" if closure else "twolayer"

    def build(bug_at: tuple[int, int] | None) -> Any:
        def make(dtype: str) -> Problem:
            x, w1, w2, y = _data(dtype)
            fn = _network(bug_at=bug_at)
            if closure:
                return Problem(_closure(fn, x, y), (w1, w2))
            return Problem(fn, (x, w1, w2, y))

        return make

    def reference(dtype: str) -> Problem:
        x, w1, w2, y = _data(dtype)
        if closure:
            return Problem(_closure(_reference, x, y), (w1, w2))
        return Problem(_reference, (x, w1, w2, y))

    form = "loss(w1, w2), data closed over" if closure else "loss(x, w1, w2, y)"
    return [
        Case(name=f"two_layer_correct{suffix}", suite=suite, category="control", framework="torch",
             buggy=False, build=build(None), reference=reference, description=f"{form}; hand backward as in the docs"),
        Case(name=f"two_layer_w1_0.1pct{suffix}", suite=suite, category="element/region", framework="torch",
             buggy=True, build=build(index), reference=reference, change=0.001 * overall,
             description=f"{form}; grad_w1[{index[0]}, {index[1]}] x1.001 "
                         f"(|grad| there is {relative:.3g} of the largest)"),
    ]
