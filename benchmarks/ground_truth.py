"""Independent ground truth: the Jacobian a function claims, compared with the true one.

A checker's verdict is scored against whether the claimed derivatives really differ from
the true ones. That is decided here without any checker: the claimed Jacobian is assembled
row by row from the function's own backward (basis cotangents, reverse mode, float64) and
compared with the Jacobian of a trusted reference (plain autograd / `jax.jacrev`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .cases import Case, Problem

__all__ = [
    "Truth",
    "case_truth",
    "relative_change",
    "torch_claimed_jacobian",
    "jax_claimed_jacobian",
    "CHANGE_THRESHOLD",
]

# A claimed Jacobian "really differs" when some entry is off by more than this fraction of
# the largest true entry. Float64 rounding in the Jacobians compared here is ~1e-15
# relative; every deliberate mutation changes an entry by at least 1e-3 of that entry.
# Changes below this threshold (a mutation that hits a structurally tiny entry) are
# reported as "negligible" and scored neither as bugs nor as clean cases.
CHANGE_THRESHOLD = 1e-6


@dataclass(frozen=True)
class Truth:
    """Claimed vs true Jacobian for one case, in float64."""

    change: float
    nondeterminism: float

    @property
    def buggy(self) -> bool:
        return self.change > CHANGE_THRESHOLD or self.nondeterminism > 0.0


def relative_change(claimed: np.ndarray, true: np.ndarray) -> float:
    """`max |claimed - true| / max |true|` (absolute when the true Jacobian is zero)."""
    if claimed.shape != true.shape:
        return float("inf")
    diff = np.abs(claimed - true)
    if not np.all(np.isfinite(diff)):
        same_nonfinite = np.array_equal(np.isnan(claimed), np.isnan(true)) and np.all(
            (claimed == true) | ~np.isfinite(true)
        )
        return 0.0 if same_nonfinite else float("inf")
    scale = float(np.max(np.abs(true), initial=0.0))
    worst = float(np.max(diff, initial=0.0))
    return worst / scale if scale > 0 else worst


def _torch_outputs(out: Any, *, differentiable_only: bool = True) -> list[Any]:
    import torch

    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return [
        o
        for o in outs
        if torch.is_tensor(o) and o.is_floating_point() and (o.requires_grad or not differentiable_only)
    ]


def torch_claimed_jacobian(
    fn: Callable[..., Any], inputs: Sequence[Any], *, order: int = 1
) -> np.ndarray:
    """The Jacobian `fn` claims through its backward, one reverse pass per output element.

    Rows are the output elements (all outputs, flattened, concatenated), columns the
    elements of the inputs that require grad. With `order=2` the function differentiated
    is `(inputs, cotangents) -> vjp`, built with `create_graph=True`, so the backward of
    the backward is what is measured.
    """
    import torch

    diff = [x for x in inputs if torch.is_tensor(x) and x.requires_grad]
    if order == 2:
        fn, inputs, diff = _vjp_map(fn, list(inputs), diff)
    outs = _torch_outputs(fn(*inputs), differentiable_only=False)
    live = [o for o in outs if o.requires_grad]
    n_cols = sum(x.numel() for x in diff)
    rows = []
    for o in outs:
        for j in range(o.numel()):
            if not o.requires_grad or not diff:
                rows.append(np.zeros(n_cols))
                continue
            cot = torch.zeros(o.numel(), dtype=o.dtype)
            cot[j] = 1
            grads = torch.autograd.grad(
                live,
                diff,
                [cot.reshape(o.shape) if p is o else torch.zeros_like(p) for p in live],
                retain_graph=True,
                allow_unused=True,
            )
            rows.append(
                np.concatenate(
                    [
                        g.detach().double().reshape(-1).numpy() if g is not None else np.zeros(x.numel())
                        for g, x in zip(grads, diff)
                    ]
                )
            )
    return np.stack(rows) if rows else np.zeros((0, n_cols))


def _vjp_map(
    first: Callable[..., Any], inputs: list[Any], diff: list[Any]
) -> tuple[Callable[..., Any], list[Any], list[Any]]:
    """`(x, v) -> vjp of first at x with cotangent v`, built with `create_graph=True`."""
    import torch

    n = len(diff)

    def vjp(*xv: Any) -> tuple[Any, ...]:
        xs, vs = xv[:n], xv[n:]
        outs = _torch_outputs(first(*_substitute(inputs, diff, xs)))
        grads = torch.autograd.grad(outs, xs, vs, create_graph=True, allow_unused=True)
        return tuple(g if g is not None else torch.zeros_like(x) for g, x in zip(grads, xs))

    gen = torch.Generator().manual_seed(1234)
    cotangents = [
        torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype).requires_grad_()
        for o in _torch_outputs(first(*inputs))
    ]
    args = list(diff) + cotangents
    return vjp, args, args


def _substitute(inputs: Sequence[Any], diff: Sequence[Any], new: Sequence[Any]) -> list[Any]:
    ids = {id(d): n for d, n in zip(diff, new)}
    return [ids.get(id(x), x) for x in inputs]


def jax_claimed_jacobian(fn: Callable[..., Any], inputs: Sequence[Any], *, order: int = 1) -> np.ndarray:
    """The Jacobian `fn` claims through reverse mode (its custom VJP, if any), via `jax.jacrev`.

    With `order=2` the function is `(inputs, cotangent) -> vjp(cotangent)`.
    """
    import jax
    import jax.numpy as jnp

    args = tuple(inputs)
    if order == 2:
        first = fn
        out0 = first(*args)
        cot = jnp.asarray(np.random.default_rng(1234).standard_normal(np.shape(out0)), dtype=out0.dtype)

        def fn(*xv: Any) -> tuple[Any, ...]:  # noqa: F811
            xs, v = xv[:-1], xv[-1]
            _, vjp = jax.vjp(first, *xs)
            return tuple(vjp(v))

        args = args + (cot,)
    out = fn(*args)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    jac = jax.jacrev(lambda *a: tuple(fn(*a)) if isinstance(out, (tuple, list)) else (fn(*a),),
                     argnums=tuple(range(len(args))))(*args)
    blocks = []
    for o, row in zip(outs, jac):
        blocks.append(
            np.concatenate(
                [np.asarray(b, dtype=np.float64).reshape(np.size(o), np.size(a)) for b, a in zip(row, args)],
                axis=1,
            )
        )
    return np.concatenate(blocks, axis=0)


def _numpy_claimed(problem: Problem) -> np.ndarray:
    grads = problem.grad(*problem.inputs)
    return np.concatenate([np.asarray(g, dtype=np.float64).reshape(-1) for g in grads])[None, :]


def _torch_reference_gradient(problem: Problem) -> np.ndarray:
    return torch_claimed_jacobian(problem.fn, problem.inputs)


def case_truth(case: Case) -> Truth:
    """Measure, in float64, how far `case`'s claimed Jacobian is from its reference's.

    The claimed Jacobian is computed twice; any difference between the two is reported as
    `nondeterminism`.
    """
    if case.reference is None:
        raise ValueError(f"case {case.name!r} has no reference; cannot measure its ground truth")
    problem, ref = case.build("float64"), case.reference("float64")
    if case.framework == "torch":
        first = torch_claimed_jacobian(problem.fn, problem.inputs, order=case.order)
        second = torch_claimed_jacobian(problem.fn, problem.inputs, order=case.order)
        true = torch_claimed_jacobian(ref.fn, ref.inputs, order=case.order)
    elif case.framework == "jax":
        first = jax_claimed_jacobian(problem.fn, problem.inputs, order=case.order)
        second = jax_claimed_jacobian(problem.fn, problem.inputs, order=case.order)
        true = jax_claimed_jacobian(ref.fn, ref.inputs, order=case.order)
    else:
        first = _numpy_claimed(problem)
        second = _numpy_claimed(problem)
        true = _torch_reference_gradient(ref)
    return Truth(change=relative_change(first, true), nondeterminism=relative_change(second, first))
