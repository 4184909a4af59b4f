"""Second order: the first derivative as a function whose own derivatives are checked.

The framework code (building `(inputs..., v...) -> J(inputs)^T v`) lives in the adapters;
this module only picks one.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

__all__ = ["torch_vjp_function", "jax_vjp_function"]


def torch_vjp_function(
    fn: Callable[..., Any], inputs: Sequence[Any], grad_outputs: Any, seed: int,
    *, non_contiguous: bool = False,
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(inputs..., v...) -> J(inputs)^T v` built with `create_graph=True`, and its inputs;
    drawn `v` are laid out non-contiguously with `non_contiguous`."""
    from ._targets.torch import vjp_function

    return vjp_function(fn, inputs, grad_outputs, seed, non_contiguous=non_contiguous)


def jax_vjp_function(
    fn: Callable[..., Any], inputs: Sequence[Any], grad_outputs: Any, seed: int
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(inputs..., v) -> J(inputs)^T v` through `jax.vjp`, and its inputs."""
    from ._targets.jax import vjp_function

    return vjp_function(fn, inputs, grad_outputs, seed)
