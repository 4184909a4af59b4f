"""Oracles through a target: finite differences along a probe, reverse and forward mode.

The comparisons never call a target; the engine obtains each derivative here and hands
the numbers on. Finite differences are the independent oracle (`_finite_differences.py`
does the numerics); reverse and forward mode run the framework's automatic
differentiation (or the hand-written gradient) through the target.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from ._finite_differences import (
    _CHUNK,
    NOISE_OFFSET,
    Derivative,
    OutsideDomain,
    default_step,
    directional_derivative,
    measure_noise,
    with_noise,
)
from ._probes import BasePoint, without_frozen
from ._targets import CheckInputError, Target
from ._tolerance import FD_LEVELS, ToleranceModel

__all__ = ["finite_differences", "forward_mode", "reverse_mode", "with_measured_noise"]


def finite_differences(
    target: Target,
    point: BasePoint,
    i: int,
    direction: np.ndarray,
    *,
    work: ToleranceModel,
    step: float | None = None,
) -> Derivative:
    """Finite differences of every output (as `point.flat0` lays them out) along `direction`.

    **Arguments:**
    - `i`: the input that moves; `direction` has its shape.
    - `work`: the model of the precision the target evaluates in.
    - `step`: the user's initial step in input units (`eps=`), or None for the default
      relative to the direction.

    The steps shrink until every projection `<u_j, value_j>` is known to sqrt(eps) of the
    magnitudes that form it: far below any error worth reporting.
    """
    scales = [float(np.sum(np.abs(g[i]) * np.abs(direction))) for g in point.grads]
    tau = np.sqrt(work.eps)
    g, release = _along(target, point, i, direction)

    def accurate(value: np.ndarray, error: np.ndarray) -> bool:
        for (a, b), u, s in zip(point.parts, point.u, scales):
            if _abs_dot(u.ravel(), error[a:b]) > tau * (abs(np.dot(u.ravel(), value[a:b])) + s):
                return False
        return True

    h = default_step(work.eps)
    if step is not None:
        h = step / max(float(np.max(np.abs(direction), initial=0.0)), 1e-300)
    try:
        return directional_derivative(
            g, eps=work.eps, step=h, g0=point.flat0, levels=FD_LEVELS, target=accurate,
            safety=work.fd_safety, release=release,
        )
    except OutsideDomain as exc:
        # No step was small enough: the function's own complaint is the clearest message.
        refusal = exc.__cause__
        refusal.__suppress_context__ = True  # keeps its own cause: the user's traceback
        raise refusal
    except FloatingPointError as exc:
        raise CheckInputError(
            f"finite differences along {point.input_names[i]} failed: {exc}. Check the "
            f"gradient at a point inside the function's domain"
        ) from None


def _abs_dot(w: np.ndarray, x: np.ndarray) -> float:
    """`sum |w| x`, in the slices finite differences work in: it runs while every finite-difference evaluation is held, the
    memory's peak, where `np.abs(w) * x` would add two output-sized arrays."""
    return float(sum(
        np.dot(np.abs(w[k:k + _CHUNK]), x[k:k + _CHUNK]) for k in range(0, w.size, _CHUNK)
    ))


def _along(target: Target, point: BasePoint, i: int, direction: np.ndarray):
    """`t -> every output at x_i + t direction`, flat (a refused input is `OutsideDomain`),
    and a function that frees its scratch memory until the next call."""
    base = point.base
    # One buffer for every perturbed input: targets copy their inputs into the
    # framework's own arrays on each call (and copy the outputs out), so the buffer can be
    # rewritten for the next step. At 1e7 elements this saves two input-sized temporaries
    # per evaluation. Released while the evaluations are analysed, the memory's peak.
    buffer: list[np.ndarray] = []

    def release() -> None:
        buffer.clear()

    def g(t: float) -> np.ndarray:
        if not buffer:
            buffer.append(np.empty_like(base[i]))
        moved = buffer[0]
        np.multiply(direction, t, out=moved)
        np.add(moved, base[i], out=moved)
        xs = list(base)
        xs[i] = moved
        try:
            outs = target.evaluate(xs)
        except CheckInputError as exc:
            if exc.__cause__ is None:  # the check's own complaint, not the function raising
                raise
            cause = exc.__cause__
            raise OutsideDomain(
                f"the function raised {type(cause).__name__} ({cause}) at a perturbed input"
            ) from exc
        # The outputs are the target's fresh copies: one output needs no concatenation.
        return outs[0].ravel() if len(outs) == 1 else np.concatenate([y.ravel() for y in outs])

    return g, release


def with_measured_noise(
    target: Target, point: BasePoint, i: int, direction: np.ndarray, derivative: Derivative
) -> Derivative:
    """`derivative` with the evaluation noise at the point measured (4 evaluations).

    For a comparison that fails on an estimate whose noise only the model bounded: the
    model scales with the outputs, and a forward that cancels has more.
    """
    g, _ = _along(target, point, i, direction)
    try:
        noise, spent = measure_noise(g, point.flat0, NOISE_OFFSET * derivative.step)
    except OutsideDomain:
        noise, spent = None, 1
    d = derivative if noise is None else with_noise(derivative, noise, levels=FD_LEVELS)
    return dataclasses.replace(d, evals=derivative.evals + spent)


def reverse_mode(
    target: Target,
    cotangent_sets: Sequence[Sequence[np.ndarray | None]],
    frozen: Sequence[np.ndarray],
    *,
    native: bool = False,
    at: Sequence[np.ndarray] | None = None,
    saved_noise: float = 0.0,
) -> list[list[np.ndarray]]:
    """`J^T u` for each cotangent set at `at` (default: the base point), zero at the
    frozen input elements; `saved_noise` moves what the backward reads from the forward
    (`Target.vjps`)."""
    grads = target.vjps(cotangent_sets, native=native, at=at, saved_noise=saved_noise)
    return [without_frozen(g, frozen) for g in grads]


def forward_mode(target: Target, point: BasePoint, i: int) -> list[np.ndarray] | None:
    """`J v_i` for every output (input i moves along `point.v[i]`), or None if unavailable."""
    tangents = [np.zeros_like(x) for x in point.base]
    tangents[i] = point.v[i]
    return target.jvp(tangents)
