"""The implementation contract: `impl(params, data, *, dtype, device) -> (loss, grads)`.

An implementation is run on copies of the example (one that writes into its inputs cannot
change what the others see), and what it returns is validated into a float loss and one
finite numpy gradient per parameter, or a message saying how the contract was broken.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import reference_models

__all__ = [
    "Result",
    "copy_arrays",
    "evaluate_implementation",
    "raised",
    "select_implementations",
    "validate_result",
]

Result = tuple[float, dict[str, np.ndarray]]


def evaluate_implementation(
    impl: Callable[..., Any],
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str,
    device: str,
) -> tuple[float, dict[str, np.ndarray]] | str:
    """`(loss, grads)` as numpy, or a message saying why the result breaks the contract."""
    try:
        out = impl(copy_arrays(params), copy_arrays(data), dtype=dtype, device=device)
    except Exception as exc:
        return raised(exc)
    return validate_result(out, params)


def validate_result(
    out: Any, params: Mapping[str, np.ndarray]
) -> tuple[float, dict[str, np.ndarray]] | str:
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        return (
            f"returned {type(out).__name__}, not (loss, grads): an implementation returns a "
            f"float and a dict of gradients by parameter name"
        )
    loss_raw, grads_raw = out
    try:
        loss_arr = np.asarray(loss_raw, dtype=np.float64)
    except (TypeError, ValueError):
        return f"returned a loss of type {type(loss_raw).__name__}, not a number"
    if loss_arr.size != 1:
        return f"returned a loss of shape {loss_arr.shape}; the loss is a scalar"
    loss = float(loss_arr.reshape(()))
    if not math.isfinite(loss):
        return f"returned a non-finite loss ({loss})"
    if not isinstance(grads_raw, Mapping):
        return (
            f"returned gradients as {type(grads_raw).__name__}; return a dict mapping each "
            f"parameter name ({', '.join(params)}) to its gradient"
        )
    missing = [k for k in params if k not in grads_raw]
    if missing:
        return (
            f"returned no gradient for {', '.join(repr(k) for k in missing)} (it returned "
            f"{', '.join(map(repr, grads_raw)) or 'none'}); every parameter of the example "
            f"needs one: {', '.join(params)}"
        )
    extra = [k for k in grads_raw if k not in params]
    if extra:
        return (
            f"returned a gradient for {', '.join(repr(k) for k in extra)}, which is not a "
            f"parameter of the example ({', '.join(params)})"
        )
    grads = {}
    for k, p in params.items():
        try:
            g = np.asarray(grads_raw[k])
        except Exception as exc:
            return (
                f"returned a gradient for {k!r} that is not an array ({type(exc).__name__}: {exc})"
            )
        if g.shape != np.shape(p):
            return f"returned a gradient of shape {g.shape} for {k!r}, whose shape is {np.shape(p)}"
        if g.dtype.kind not in "fiu":
            return f"returned a gradient of dtype {g.dtype} for {k!r}, not a real number array"
        bad = ~np.isfinite(g.astype(np.float64))
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            return (
                f"returned non-finite values in the gradient of {k!r} ({int(bad.sum())} of "
                f"{g.size} elements, first at {list(first)}: {g[first]})"
            )
        grads[k] = g
    return loss, grads


def raised(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"raised {type(exc).__name__}: {exc}{where}"


def copy_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in arrays.items()}



def select_implementations(model: Any, implementations: Sequence[str] | None) -> list[str]:
    known = list(model.implementations)
    if implementations is None:
        if not known:
            raise ValueError(
                f"model {model.name!r} has no implementations to check; register one first."
            )
        return known
    if isinstance(implementations, str):
        raise TypeError(
            f"implementations={implementations!r} is a string; pass a list of names, e.g. "
            f"implementations=[{implementations!r}]."
        )
    selected = list(dict.fromkeys(implementations))
    if not selected:
        raise ValueError("implementations=[] selects nothing; pass None to check them all.")
    for name in selected:
        if name not in model.implementations:
            raise ValueError(
                f"implementations contains {name!r}, which is not an implementation of "
                f"{model.name!r}.{reference_models.close_matches_hint(name, list(known))} Known: "
                f"{', '.join(known)}."
            )
    return selected
