"""Framework adapters: the only modules that import torch or jax, and only when used."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ._base import CheckInputError, Target

__all__ = ["CheckInputError", "Target", "make_target", "framework_of"]


def framework_of(inputs: Sequence[Any]) -> str:
    """Which framework the inputs belong to: "torch", "jax" or "numpy"."""
    kinds = set()
    for x in _leaves(inputs):
        module = type(x).__module__.split(".")[0]
        if module == "torch":
            kinds.add("torch")
        elif module in ("jax", "jaxlib"):
            kinds.add("jax")
    if len(kinds) > 1:
        raise CheckInputError(
            "inputs mix torch tensors and jax arrays; a check runs in one framework, so "
            "convert them all to one"
        )
    return kinds.pop() if kinds else "numpy"


def make_target(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    grad: Callable[..., Any] | None = None,
    grad_in_forward: bool = False,
    input_names: Sequence[str] | None = None,
    promote: Any = None,
) -> Target:
    """Wrap `fn` and `inputs` in the adapter of their framework.

    `input_names` (torch only) names the top-level inputs in reports instead of `inputs[k]`.
    """
    if not callable(fn):
        raise CheckInputError(
            f"fn must be callable, got a {type(fn).__name__}; pass the function to check as "
            f"the first argument"
        )
    if grad is not None and not callable(grad):
        raise CheckInputError(f"grad must be callable, got a {type(grad).__name__}")
    framework = framework_of(inputs)
    if framework == "torch":
        from .torch import TorchTarget

        return TorchTarget(
            fn, inputs, grad=grad, grad_in_forward=grad_in_forward, input_names=input_names,
            promote=promote,
        )
    if not any(promote is v for v in (None, True, False)):
        raise CheckInputError(
            f"promote= lists torch tensors and modules to check in float64; the inputs are "
            f"{framework} arrays, whose captured arrays are not promoted: pass them as inputs"
        )
    if framework == "jax":
        from .jax import JaxTarget

        return JaxTarget(fn, inputs, grad=grad)
    from .numpy import NumpyTarget

    return NumpyTarget(fn, inputs, grad=grad)


def _leaves(x: Any):
    if isinstance(x, (tuple, list)):
        for item in x:
            yield from _leaves(item)
    elif isinstance(x, dict):
        for item in x.values():
            yield from _leaves(item)
    else:
        yield x
