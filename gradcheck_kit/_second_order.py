"""Second order: the first derivative as a function whose own derivatives are checked."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["torch_vjp_function", "jax_vjp_function"]


def torch_vjp_function(
    fn: Callable[..., Any], inputs: Sequence[Any], grad_outputs: Any, seed: int
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(inputs..., v...) -> J(inputs)^T v` built with `create_graph=True`, and its inputs."""
    import torch

    diff = [k for k, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.requires_grad]
    from ._targets import CheckInputError

    try:
        with torch.enable_grad():
            outs = fn(*[x.detach().requires_grad_(True) if k in diff else x for k, x in enumerate(inputs)])
    except Exception as exc:
        raise CheckInputError(
            f"fn raised {type(exc).__name__} when called with the given inputs: {exc}"
        ) from exc
    outs = (outs,) if isinstance(outs, torch.Tensor) else tuple(outs)
    float_outs = [k for k, o in enumerate(outs) if isinstance(o, torch.Tensor) and o.is_floating_point()]
    if grad_outputs is None:
        rng = np.random.default_rng(seed + 1)
        grad_outputs = tuple(
            torch.as_tensor(rng.standard_normal(outs[k].shape)).to(dtype=outs[k].dtype, device=outs[k].device)
            for k in float_outs
        )
    else:
        grad_outputs = (grad_outputs,) if isinstance(grad_outputs, torch.Tensor) else tuple(grad_outputs)
        if len(grad_outputs) != len(float_outs):
            raise ValueError(
                f"grad_outputs has {len(grad_outputs)} tensor(s) but fn has {len(float_outs)} "
                f"floating-point output(s); pass one cotangent per output"
            )
    grad_outputs = tuple(g.detach().clone().requires_grad_(True) for g in grad_outputs)
    n = len(inputs)

    def vjp(*args: Any) -> tuple[Any, ...]:
        xs = list(args[:n])
        vs = args[n:]
        with torch.enable_grad():
            leaves = []
            for k in diff:
                if not xs[k].requires_grad:
                    xs[k] = xs[k].detach().requires_grad_(True)
                leaves.append(xs[k])
            out = fn(*xs)
            out = (out,) if isinstance(out, torch.Tensor) else tuple(out)
            pairs = [(out[k], v) for k, v in zip(float_outs, vs) if out[k].requires_grad]
            if not pairs:
                return tuple(torch.zeros_like(x) for x in leaves)
            grads = torch.autograd.grad(
                [o for o, _ in pairs], leaves, [v for _, v in pairs],
                create_graph=True, allow_unused=True,
            )
        return tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves))

    return vjp, tuple(inputs) + grad_outputs


def jax_vjp_function(
    fn: Callable[..., Any], inputs: Sequence[Any], grad_outputs: Any, seed: int
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(inputs..., v) -> J(inputs)^T v` through `jax.vjp`, and its inputs."""
    import jax
    import jax.numpy as jnp

    n = len(inputs)
    out = fn(*inputs)
    if grad_outputs is None:
        rng = np.random.default_rng(seed + 1)
        grad_outputs = jax.tree_util.tree_map(
            lambda o: jnp.asarray(rng.standard_normal(np.shape(o)), dtype=jnp.result_type(o)), out
        )

    def vjp(*args: Any) -> Any:
        _, pullback = jax.vjp(fn, *args[:n])
        return pullback(args[n])

    return vjp, tuple(inputs) + (grad_outputs,)
