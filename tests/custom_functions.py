"""Custom autograd Functions, right or deliberately wrong, shared by the test files."""

from __future__ import annotations

from collections.abc import Callable

import torch

Unary = Callable[[torch.Tensor], torch.Tensor]


def unary_function(
    forward: Unary,
    derivative: Unary,
    *,
    factor: float = 1.0,
    element: int | None = None,
    cast: torch.dtype | None = None,
    jvp_factor: float | None = None,
    name: str = "Unary",
) -> type[torch.autograd.Function]:
    """An elementwise Function `forward` whose backward is `g * derivative(x)`.

    **Arguments:**
    - `factor`: scales the backward, at one flat `element` or everywhere (a wrong backward).
    - `cast`: the dtype the backward's result is cast to (a wrong gradient dtype).
    - `jvp_factor`: give the Function a forward-mode rule, `t * derivative(x) * jvp_factor`;
      `None` leaves it without one.
    - `name`: the class name, which torch's notes quote.
    """

    def grad(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = g * derivative(x)
        if element is None:
            out = out * factor
        else:
            out = out.clone()
            out.view(-1)[element] *= factor
        return out if cast is None else out.to(cast)

    if jvp_factor is None:

        class Base(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return forward(x)

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return grad(g, x)

    else:

        class Base(torch.autograd.Function):  # type: ignore[no-redef]
            @staticmethod
            def forward(x):
                return forward(x)

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.save_for_backward(inputs[0])
                ctx.save_for_forward(inputs[0])

            @staticmethod
            def backward(ctx, g):
                (x,) = ctx.saved_tensors
                return grad(g, x)

            @staticmethod
            def jvp(ctx, t):
                (x,) = ctx.saved_tensors
                return t * derivative(x) * jvp_factor

    # A subclass of that name, so that its backward node is named after it too.
    return type(name, (Base,), {})


def scaled_sin(factor: float, *, element: int | None = None):
    """sin whose backward is scaled by `factor`: at one flat element, or everywhere."""
    return unary_function(torch.sin, torch.cos, factor=factor, element=element, name="Sin").apply


def product(*, b_factor: float = 1.0):
    """`a * b` as a Function; `b_factor` scales the gradient of `b` (a wrong backward)."""

    class Mul(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a * b

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            return g * b, g * a * b_factor

    return Mul.apply


class TanhMatmul(torch.autograd.Function):
    """`tanh(x @ w)` with a backward off by `factor`."""

    @staticmethod
    def forward(ctx, x, w, factor):
        y = torch.tanh(x @ w)
        ctx.save_for_backward(y, w)
        ctx.factor = factor
        return y

    @staticmethod
    def backward(ctx, g):
        y, w = ctx.saved_tensors
        return ctx.factor * (g * (1 - y * y)) @ w.T, None, None


def square_loss(scale: float, offset: float, rounding: torch.dtype | None, *,
                only_in: torch.dtype | None = None):
    """`scale * sum(x * x) + offset` as a Function whose backward rounds through `rounding`
    (a precision bug; `None`: exact), in every dtype or, with `only_in`, in that one."""

    class Loss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return (x * x).sum() * scale + offset

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            grad = g * 2 * scale * x
            if rounding is not None and only_in in (None, x.dtype):
                grad = grad.to(rounding).to(x.dtype)
            return grad

    return Loss.apply


class _Identity(torch.autograd.Function):
    """The identity, with a backward and a forward-mode rule of its own."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g

    @staticmethod
    def jvp(ctx, t):
        return t.view_as(t)


def with_own_rule(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """`fn` followed by an identity Function: its graph holds a rule of the user's own, so
    the check compares forward mode through `fn`'s torch operations with reverse mode."""
    return lambda *args: _Identity.apply(fn(*args))
