"""Probes: the random directions and cotangents of a check, and the base point they act at.

For each differentiable input `i` a direction `v_i` is drawn, and for each output `j` a
cotangent `u_j`, with entries of random sign and magnitude in [1, 2] (never near zero, so
no element of the Jacobian is hidden by a small weight; continuous, so errors do not
cancel exactly). Directions are scaled to the size of their input.

`BasePoint` gathers everything the comparisons read: the inputs, the outputs `f(x)`, the
probes and the reverse-mode products `J_j^T u_j` at the point, as explicit fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "BasePoint",
    "draw_cotangents",
    "draw_directions",
    "input_scale",
    "on_output",
    "output_layout",
    "output_scales",
    "signed",
    "without_frozen",
]


@dataclass(frozen=True)
class BasePoint:
    """The point of a check, its probes and the reverse-mode products there.

    **Fields:**
    - `input_names`, `output_names`, `output_shapes`: as the target names them.
    - `base`: the differentiable inputs (float64); `frozen[i]` masks the infinite elements
      of input i, held fixed; `finite_base[i]` is `base[i]` with them set to 0.
    - `y0`: the outputs at `base`; `flat0` all of them as one flat vector, of which
      `parts[j] = (a, b)` is output j's slice.
    - `u[j]`: output j's cotangent; `v[i]`: input i's direction; `out_scale[j]`: the
      natural size of a probe `<u_j, J_j v>` (see `output_scales`).
    - `grads[j][i]`: `J_j^T u_j` with respect to input i (zero at frozen elements).
    - `checked`: the inputs with elements to compare (non-empty ones).
    """

    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    output_shapes: tuple[tuple[int, ...], ...]
    base: tuple[np.ndarray, ...]
    frozen: tuple[np.ndarray, ...]
    finite_base: tuple[np.ndarray, ...]
    y0: tuple[np.ndarray, ...]
    flat0: np.ndarray
    parts: tuple[tuple[int, int], ...]
    u: tuple[np.ndarray, ...]
    v: tuple[np.ndarray, ...]
    out_scale: tuple[float, ...]
    grads: tuple[tuple[np.ndarray, ...], ...]
    checked: tuple[int, ...]

    def cotangent_sets(self) -> list[list[np.ndarray | None]]:
        """One cotangent set per output: `u_j` on output j, zero elsewhere."""
        return [on_output(j, u, len(self.u)) for j, u in enumerate(self.u)]


_SIGNS = np.array([-1.0, 1.0])


def random_signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """-1.0 or 1.0 per entry, equally likely: `rng.choice([-1.0, 1.0], shape)` to the bit
    and in the generator's state after, in about half its time (choice draws the same
    indices, then validates and copies more)."""
    return _SIGNS[rng.integers(0, 2, size=shape)]


def signed(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Entries of random sign and magnitude uniform in [1, 2]."""
    sign = random_signs(rng, shape)
    magnitude = rng.uniform(1.0, 2.0, size=shape)
    magnitude *= sign  # in place: the same product, one output-sized array fewer
    return magnitude


def input_scale(x: np.ndarray) -> float:
    """The size of a typical finite element of x (its RMS), so that steps are relative to it.

    Computed on x divided by a power of two near its largest magnitude: `x * x` itself
    overflows above about 1e154 and underflows to zero below about 1e-162. Dividing by a
    power of two is exact and commutes with every later rounding, so wherever the
    unscaled formula neither overflows nor underflows the result is the same to the bit.
    """
    x = x[np.isfinite(x)]
    if not x.size:
        return 1.0
    largest = float(np.max(np.abs(x)))
    if largest == 0.0:
        return 1.0
    exponent = int(np.frexp(largest)[1])
    scaled = np.ldexp(x, -exponent)
    rms = float(np.ldexp(np.sqrt(np.mean(scaled * scaled)), exponent))
    return rms if rms > 0 else 1.0


def draw_cotangents(
    rng: np.random.Generator, output_shapes: Sequence[tuple[int, ...]]
) -> list[np.ndarray]:
    """One random cotangent per output."""
    return [signed(rng, shape) for shape in output_shapes]


def draw_directions(
    rng: np.random.Generator, base: Sequence[np.ndarray], frozen: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """One random direction per input, of its scale, zero at its frozen elements."""
    return [_direction(signed(rng, x.shape), input_scale(x), f) for f, x in zip(frozen, base)]


def _direction(entries: np.ndarray, scale: float, frozen: np.ndarray) -> np.ndarray:
    """`np.where(frozen, 0.0, entries * scale)`, in `entries` (the same bits)."""
    entries *= scale
    np.copyto(entries, 0.0, where=frozen)
    return entries


def output_scales(
    u: Sequence[np.ndarray],
    y0: Sequence[np.ndarray],
    bend: np.ndarray | None = None,
) -> list[float]:
    """The natural size of each probe `<u_j, J_j v_i>`: `sum |u_j| (|f_j(x)| + |f_j''|)`.

    Rounding inside the derivative scales with the intermediate terms, which can be this
    large even where the derivative itself cancels to almost nothing (a saturated tanh or
    softmax). Where f(x) itself cancels to zero (var(exp(x)) at 0) the intermediates still
    show in how much the outputs bend along the probes: `bend` (laid out as the outputs
    concatenated and flattened) is `|d^2 f / dt^2|` per element over a move of one
    direction (`Derivative.bend`), summed over the inputs' probes. Both terms are in the
    outputs' units, so scaling the function or its inputs by any factor scales the
    tolerance alike: there is no absolute floor.
    """
    out = []
    start = 0
    for c, y in zip(u, y0):
        size = np.abs(y).ravel()
        if bend is not None:
            size += bend[start:start + y.size]  # in place: the same sum
        start += y.size
        out.append(float(np.dot(np.abs(c).ravel(), size)))
    return out


def output_layout(y0: Sequence[np.ndarray]) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
    """The outputs as one flat vector (as finite differences see them) and each one's slice."""
    # One output: a view of it (read only; a copy would be one more output-sized array).
    flat0 = (
        np.reshape(y0[0], -1) if len(y0) == 1
        else np.concatenate([y.ravel() for y in y0]) if y0 else np.zeros(0)
    )
    bounds = np.cumsum([0] + [y.size for y in y0])
    parts = tuple((int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:]))
    return flat0, parts


def on_output(j: int, cotangent: np.ndarray, n_outputs: int) -> list[np.ndarray | None]:
    """A cotangent set that is `cotangent` on output j and zero (None) elsewhere."""
    return [cotangent if k == j else None for k in range(n_outputs)]


def without_frozen(grads: Sequence[np.ndarray], frozen: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Gradients with the frozen (infinite, held fixed) elements set to zero."""
    return [np.where(f, 0.0, g) if f.any() else g for f, g in zip(frozen, grads)]
