"""Custom autograd Functions with a deliberately wrong backward, shared by the test files."""

from __future__ import annotations

import torch


def scaled_sin(factor: float, *, element: int | None = None):
    """sin whose backward is scaled by `factor`: at one flat element, or everywhere."""

    class Sin(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.sin()

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            out = g * x.cos()
            if element is None:
                return out * factor
            out = out.clone()
            out.view(-1)[element] *= factor
            return out

    return Sin.apply
