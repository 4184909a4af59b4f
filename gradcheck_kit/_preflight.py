"""Preflight: whether a target can be checked at its inputs at all.

Inputs and outputs must be finite (infinite input elements are held fixed where the
outputs stay finite), the forward must repeat itself, if need be with the global
random generators reseeded before each evaluation, and a function evaluated in float64
must compute in float64 (`gradient_grid`), and one evaluated in float64 or float32 in
that precision (`half_grid`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ._targets import CheckInputError, Target
from ._targets._base import round_to

__all__ = [
    "base_outputs", "frozen_masks", "check_outputs_finite", "gradient_grid", "grids", "half_grid",
    "reject_infinite_inputs",
]


def frozen_masks(names: Sequence[str], base: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The masks of the infinite input elements, to be held fixed; NaN inputs are an error."""
    for name, x in zip(names, base):
        if np.isnan(x).any():
            _non_finite_input_error(name, x, np.isnan(x))
    return [np.isinf(x) for x in base]


def reject_infinite_inputs(
    names: Sequence[str], base: Sequence[np.ndarray], frozen: Sequence[np.ndarray]
) -> None:
    """Where the outputs are not finite, blame the infinite inputs if there are any."""
    for name, x, f in zip(names, base, frozen):
        if f.any():
            _non_finite_input_error(name, x, f)


def check_outputs_finite(names: Sequence[str], outputs: Sequence[np.ndarray]) -> None:
    for name, y in zip(names, outputs):
        bad = ~np.isfinite(y)
        if bad.any():
            idx = tuple(int(k) for k in np.argwhere(bad)[0]) if y.ndim else ()
            raise CheckInputError(
                f"{name} is non-finite ({y[idx]}) at index {list(idx)} for the given "
                f"inputs; a derivative cannot be checked there. Choose inputs where the "
                f"function is finite"
            )


def base_outputs(target: Target) -> tuple[list[np.ndarray], list[str]]:
    """f(x) in work precision, and notes on whether the forward repeats itself.

    The first of the two calls is the set-up's own where the target kept it
    (`Target.first_call_outputs`). A forward that differs between two calls is evaluated
    once more with the generators reseeded: if that repeats the first call, the forward
    is stochastic and reseeding makes it a function; otherwise it cannot be checked.
    """
    t = target
    notes = []
    y0 = t.outputs_at_base()
    first = t.first_call_outputs()
    if first is not None and _same(y0, first):
        # The set-up's first call drew from the caller's generators, y0 from reseeded ones:
        # two calls from different states agree, as the call below would show.
        return y0, notes
    t.reseed = False
    try:
        y1 = t.evaluate(t.base)
    finally:
        t.reseed = True
    if not _same(y0, y1):
        y2 = t.evaluate(t.base)
        if _same(y0, y2):
            notes.append(
                "the forward is stochastic (it draws from the global random generators): "
                "the generators were reseeded before every evaluation so that each call "
                "drew the same numbers, and restored afterwards"
            )
        else:
            diff = max(float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(y0, y2))
            one = len(t.generator_names) == 1
            fix = (
                f"The generator input{'' if one else 's'} {', '.join(t.generator_names)} "
                f"{'is' if one else 'are'} replayed in the same state at every evaluation, so "
                f"the randomness comes from elsewhere: draw only from {'it' if one else 'them'}, "
                f"not from a generator held in a closure or a global, or make the kernels "
                f"deterministic"
                if t.generator_names else
                "Fix its randomness (e.g. pass a generator or key as an input) or make its "
                "kernels deterministic"
            )
            raise CheckInputError(
                f"the function returns different values for the same input (by up to "
                f"{diff:.3g}) even with the random generators reseeded; finite differences "
                f"need a deterministic function. {fix}"
            )
    return y0, notes


def _non_finite_input_error(name: str, x: np.ndarray, bad: np.ndarray) -> None:
    idx = tuple(int(k) for k in np.argwhere(bad)[0])
    raise CheckInputError(
        f"{name} holds a non-finite value ({x[idx]}) at index {list(idx)}; derivatives "
        f"are only checked at finite inputs (infinite elements are held fixed only where "
        f"the outputs stay finite). Replace NaN/Inf first"
    )


def _same(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b)
    )


def gradient_grid(grads: Sequence[Sequence[np.ndarray]]) -> str | None:
    """"float32" when every nonzero float64 reverse-mode gradient element is a float32 number.

    The cotangents have random float64 mantissas, so the gradient of a function computed
    in float64 lies on no coarser grid (each element has a chance of about 2**-29 of
    being a float32 number). A function that casts its float64 inputs to float32 inside
    returns, through the cast's backward, float32 numbers converted to float64: every
    element is exactly a float32. (Coarser grids are not told apart: float32 results of a
    cancellation have few significant bits and would look like bfloat16.) None when some
    nonzero element is not a float32 number, or when no element is nonzero.
    """
    return _rich_float32(_float32_elements(grads))


def half_grid(grads: Sequence[Sequence[np.ndarray]]) -> str | None:
    """"bfloat16" or "float16" when every nonzero gradient element is a number of that dtype.

    The backward of a cast to a half precision returns half-precision numbers, as that of
    a cast to float32 returns float32 ones (`gradient_grid`). A gradient that is zero up to
    rounding has few significant bits and lies on these grids too, and a half precision
    has too few bits to tell the two apart by counting them: the grid only says which
    precision to ask the function about (`Target.computes_in`).
    """
    return _half(_float32_elements(grads))


def grids(grads: Sequence[Sequence[np.ndarray]]) -> tuple[str | None, str | None]:
    """`(half_grid(grads), gradient_grid(grads))`, from one pass over the gradients.

    A gradient on a half-precision grid has at most 11 significant bits per element, too
    few for `gradient_grid`, which then says None."""
    flat = _float32_elements(grads)
    half = _half(flat)
    return half, (None if half is not None else _rich_float32(flat))


def _float32_elements(grads: Sequence[Sequence[np.ndarray]]) -> np.ndarray | None:
    """The finite nonzero gradient elements, flat, where every one is a float32 number
    (the test every coarser grid starts with: a cast); None where one is not, or none is
    nonzero."""
    flat = _nonzero_elements(grads)
    if not flat.size:
        return None
    with np.errstate(all="ignore"):
        return flat if bool(np.all(flat.astype(np.float32) == flat)) else None


def _half(flat: np.ndarray | None) -> str | None:
    if flat is None:
        return None
    with np.errstate(all="ignore"):
        for dtype in ("bfloat16", "float16"):
            if bool(np.all(round_to(flat, dtype) == flat)):
                return dtype
    return None


def _rich_float32(flat: np.ndarray | None) -> str | None:
    if flat is None:
        return None
    # A gradient that is zero up to rounding (`layer_norm(x).sum()`) is a few ulps of its
    # terms: numbers with few significant bits, on every grid. Most elements must carry
    # more than `_FEW_BITS` of them, as float32 results of a cast almost all do.
    mantissa, _ = np.frexp(flat)
    rich = np.count_nonzero(np.ldexp(mantissa, _FEW_BITS) % 1.0 != 0.0)
    return "float32" if 2 * rich >= flat.size else None


def _nonzero_elements(grads: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """The finite nonzero elements of every gradient, flat, as float64."""
    values = [np.asarray(g, dtype=np.float64).ravel() for gs in grads for g in gs]
    values = [g[np.isfinite(g) & (g != 0)] for g in values]
    return np.concatenate(values) if values else np.zeros(0)


# Significant bits up to which a gradient element may be rounding noise: sums of a few
# ulps have a handful; a float32 result has 24, and 12 or fewer with chance 2**-12.
_FEW_BITS = 12
