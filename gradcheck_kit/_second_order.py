"""Second order: the first derivative as a function whose own derivatives are checked."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ._targets import CheckInputError

__all__ = ["torch_vjp_function", "jax_vjp_function"]


def torch_vjp_function(
    fn: Callable[..., Any], inputs: Sequence[Any], grad_outputs: Any, seed: int
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(inputs..., v...) -> J(inputs)^T v` built with `create_graph=True`, and its inputs."""
    import torch

    diff = [k for k, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.requires_grad]
    if not diff:
        raise CheckInputError(
            "no input requires grad, so there is no gradient to check. Call "
            ".requires_grad_() on the tensors whose gradients should be checked"
        )
    from ._targets.torch import generator_copy, module_state_keeper

    first = [
        x.detach().requires_grad_(True) if k in diff
        else generator_copy(x) if isinstance(x, torch.Generator) else x
        for k, x in enumerate(inputs)
    ]
    # This call is outside the check proper: it too must leave buffers and generators as
    # they were.
    restore = module_state_keeper(fn, inputs)
    try:
        with torch.enable_grad():
            outs = _call(fn, first)
    finally:
        restore()
    outs = _torch_outputs(outs)
    float_outs = [k for k, o in enumerate(outs) if o.is_floating_point()]
    if not float_outs:
        raise CheckInputError(
            "fn returns no floating-point tensor, so it has no derivative to differentiate again"
        )
    if grad_outputs is None:
        rng = np.random.default_rng(seed + 1)
        grad_outputs = tuple(
            torch.as_tensor(rng.standard_normal(outs[k].shape)).to(dtype=outs[k].dtype, device=outs[k].device)
            for k in float_outs
        )
    else:
        grad_outputs = (grad_outputs,) if isinstance(grad_outputs, torch.Tensor) else tuple(grad_outputs)
        if len(grad_outputs) != len(float_outs) or not all(
            isinstance(g, torch.Tensor) and g.shape == outs[k].shape
            for g, k in zip(grad_outputs, float_outs)
        ):
            raise CheckInputError(
                f"grad_outputs must hold one tensor per floating-point output of fn, of that "
                f"output's shape: {[tuple(outs[k].shape) for k in float_outs]}"
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
            out = _torch_outputs(fn(*xs))
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
    out = _call(fn, inputs)
    for leaf in jax.tree_util.tree_leaves(out):
        try:
            floating = jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
        except TypeError:
            floating = False
        if not floating:
            raise CheckInputError(
                f"fn returned a {type(leaf).__name__} output; gradgradcheck needs "
                f"floating-point arrays only"
            )
    if grad_outputs is None:
        rng = np.random.default_rng(seed + 1)
        grad_outputs = jax.tree_util.tree_map(
            lambda o: jnp.asarray(rng.standard_normal(np.shape(o)), dtype=jnp.result_type(o)), out
        )

    def vjp(*args: Any) -> Any:
        _, pullback = jax.vjp(fn, *args[:n])
        return pullback(args[n])

    return vjp, tuple(inputs) + (grad_outputs,)


def _call(fn: Callable[..., Any], args: Sequence[Any]) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        raise CheckInputError(
            f"fn raised {type(exc).__name__} when called with the given inputs: {exc}"
        ) from exc


def _torch_outputs(outs: Any) -> tuple[Any, ...]:
    import torch

    outs = (outs,) if isinstance(outs, torch.Tensor) else outs
    if not isinstance(outs, (tuple, list)) or not all(isinstance(o, torch.Tensor) for o in outs):
        raise CheckInputError(
            f"fn returned {type(outs).__name__}; gradgradcheck needs a tensor or a tuple or "
            f"list of tensors"
        )
    return tuple(outs)
