"""Backward mutations: wrong gradients injected into a correct function.

A `Mutation` is linear in the cotangent, so the mutated backward still claims a Jacobian
and "does it really change the Jacobian" is a well-posed question (see
`benchmarks.ground_truth`). It rewrites

    grads = vjp(cotangent)      into      grads' = G(vjp(C(cotangent)))

where `C` acts on the cotangent of one output and `G` on the gradient of one input (or
swaps two inputs' gradients). Each map is `flat -> scale * flat[perm]` with constant
`scale` and `perm`, so the same mutation applies unchanged to torch tensors, jax arrays
and numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["FlatMap", "Mutation", "MUTATION_KINDS", "draw_mutation", "mutate_torch", "mutate_jax"]


@dataclass(frozen=True)
class FlatMap:
    """`x -> (scale * x.reshape(-1)[perm]).reshape(x.shape)`; `None` parts are identity."""

    scale: np.ndarray | None = None
    perm: np.ndarray | None = None

    def apply(self, x: Any) -> Any:
        flat = x.reshape(-1)
        if self.perm is not None:
            flat = flat[_index_like(self.perm, x)]
        if self.scale is not None:
            flat = flat * _array_like(self.scale, x)
        return flat.reshape(x.shape)


@dataclass(frozen=True)
class Mutation:
    """A wrong backward, described by what it does to cotangents and gradients.

    `grad_maps[i]` rewrites the gradient of input `i`; `cotangent_maps[j]` the cotangent
    of output `j` before the true VJP is taken; `swap` exchanges two inputs' gradients.
    """

    kind: str
    description: str
    grad_maps: tuple[tuple[int, FlatMap], ...] = ()
    cotangent_maps: tuple[tuple[int, FlatMap], ...] = ()
    swap: tuple[int, int] | None = None

    def cotangents(self, cotangents: Sequence[Any]) -> list[Any]:
        out = list(cotangents)
        for j, m in self.cotangent_maps:
            if out[j] is not None:
                out[j] = m.apply(out[j])
        return out

    def grads(self, grads: Sequence[Any]) -> list[Any]:
        out = list(grads)
        if self.swap is not None:
            a, b = self.swap
            out[a], out[b] = out[b], out[a]
        for i, m in self.grad_maps:
            if out[i] is not None:
                out[i] = m.apply(out[i])
        return out


def _index_like(perm: np.ndarray, x: Any) -> Any:
    if type(x).__module__.startswith("torch"):
        import torch

        return torch.as_tensor(perm, device=x.device)
    return perm


def _array_like(values: np.ndarray, x: Any) -> Any:
    if type(x).__module__.startswith("torch"):
        import torch

        return torch.as_tensor(values, dtype=x.dtype, device=x.device)
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return values.astype(np.asarray(x).dtype)
    import jax.numpy as jnp

    return jnp.asarray(values, dtype=x.dtype)


# Each kind is a bug people write: a wrong sign or factor, a slightly wrong formula, one
# wrong element (an off-by-one index), a dropped term (a path or input forgotten), a
# wrong region (a boundary case), a permutation (a transpose or a wrong index map), a
# cotangent taken from the wrong output element, two inputs' gradients swapped.
MUTATION_KINDS: tuple[str, ...] = (
    "sign_flip",
    "factor_two",
    "relative_1e-3",
    "one_element_x1.1",
    "one_element_x1.001",
    "one_element_zero",
    "region_x1.05",
    "drop_input",
    "permute",
    "cotangent_permute",
    "cotangent_element_x1.5",
    "swap_inputs",
)


def applicable_kinds(in_shapes: Sequence[tuple[int, ...]], out_shapes: Sequence[tuple[int, ...]]) -> list[str]:
    """The mutation kinds that make sense for these input and output shapes."""
    sizes = [int(np.prod(s)) for s in in_shapes]
    kinds = ["sign_flip", "factor_two", "relative_1e-3", "one_element_x1.1", "one_element_x1.001",
             "one_element_zero", "region_x1.05"]
    if len(in_shapes) > 1:
        kinds.append("drop_input")
    if max(sizes, default=0) > 1:
        kinds.append("permute")
    if any(int(np.prod(s)) > 1 for s in out_shapes):
        kinds += ["cotangent_permute", "cotangent_element_x1.5"]
    if any(in_shapes[a] == in_shapes[b] for a in range(len(in_shapes)) for b in range(a)):
        kinds.append("swap_inputs")
    return kinds


def draw_mutation(
    kind: str,
    in_shapes: Sequence[tuple[int, ...]],
    out_shapes: Sequence[tuple[int, ...]],
    rng: np.random.Generator,
) -> Mutation:
    """Draw a concrete mutation of `kind` for a function with these input/output shapes.

    **Arguments:**
    - `kind`: one of `applicable_kinds(in_shapes, out_shapes)`.
    - `in_shapes`, `out_shapes`: shapes of the differentiable inputs and outputs.
    - `rng`: where the mutated input, element and permutation are drawn from.

    **Returns:** a `Mutation`.

    **Example:**
    >>> draw_mutation("sign_flip", [(3,)], [(3,)], np.random.default_rng(0)).kind
    'sign_flip'
    """
    sizes = [int(np.prod(s)) for s in in_shapes]
    nonempty = [i for i, n in enumerate(sizes) if n > 0]
    if not nonempty:
        raise ValueError("in_shapes has no non-empty input; there is no gradient to mutate")
    i = int(rng.choice(nonempty))
    n = sizes[i]

    def scaled(factor: float, where: np.ndarray | slice | int | None = None) -> FlatMap:
        scale = np.ones(n)
        if where is None:
            scale[:] = factor
        else:
            scale[where] = factor
        return FlatMap(scale=scale)

    elem = int(rng.integers(n))
    name = f"input {i}"
    if kind == "sign_flip":
        return Mutation(kind, f"gradient of {name} negated", grad_maps=((i, scaled(-1.0)),))
    if kind == "factor_two":
        return Mutation(kind, f"gradient of {name} doubled", grad_maps=((i, scaled(2.0)),))
    if kind == "relative_1e-3":
        return Mutation(kind, f"gradient of {name} scaled by 1.001", grad_maps=((i, scaled(1.001)),))
    if kind == "one_element_x1.1":
        return Mutation(kind, f"element {elem} of {name}'s gradient x1.1", grad_maps=((i, scaled(1.1, elem)),))
    if kind == "one_element_x1.001":
        return Mutation(kind, f"element {elem} of {name}'s gradient x1.001",
                        grad_maps=((i, scaled(1.001, elem)),))
    if kind == "one_element_zero":
        return Mutation(kind, f"element {elem} of {name}'s gradient dropped", grad_maps=((i, scaled(0.0, elem)),))
    if kind == "region_x1.05":
        start = int(rng.integers(n))
        stop = min(n, start + max(1, n // 4))
        return Mutation(kind, f"elements {start}:{stop} of {name}'s gradient x1.05",
                        grad_maps=((i, scaled(1.05, slice(start, stop))),))
    if kind == "drop_input":
        return Mutation(kind, f"gradient of {name} dropped", grad_maps=((i, scaled(0.0)),))
    if kind == "permute":
        i = int(rng.choice([k for k, s in enumerate(sizes) if s > 1]))
        perm = rng.permutation(sizes[i])
        while np.all(perm == np.arange(sizes[i])):
            perm = rng.permutation(sizes[i])
        return Mutation(kind, f"gradient of input {i} permuted", grad_maps=((i, FlatMap(perm=perm)),))
    out_sizes = [int(np.prod(s)) for s in out_shapes]
    if kind in ("cotangent_permute", "cotangent_element_x1.5"):
        j = int(rng.choice([k for k, s in enumerate(out_sizes) if s > 1]))
        m = out_sizes[j]
        if kind == "cotangent_permute":
            perm = rng.permutation(m)
            while np.all(perm == np.arange(m)):
                perm = rng.permutation(m)
            return Mutation(kind, f"cotangent of output {j} permuted", cotangent_maps=((j, FlatMap(perm=perm)),))
        scale = np.ones(m)
        e = int(rng.integers(m))
        scale[e] = 1.5
        return Mutation(kind, f"element {e} of output {j}'s cotangent x1.5",
                        cotangent_maps=((j, FlatMap(scale=scale)),))
    if kind == "swap_inputs":
        pairs = [(a, b) for a in range(len(in_shapes)) for b in range(a) if in_shapes[a] == in_shapes[b]]
        a, b = pairs[int(rng.integers(len(pairs)))]
        return Mutation(kind, f"gradients of inputs {b} and {a} swapped", swap=(b, a))
    raise ValueError(f"kind={kind!r} is not a mutation kind; use one of {MUTATION_KINDS}")


def mutate_torch(fn: Callable[..., Any], mutation: Mutation) -> Callable[..., Any]:
    """`fn` with the same forward and a backward rewritten by `mutation`.

    `fn` takes tensors and returns a tensor or a tuple of tensors; the backward takes the
    true VJP (by autograd, recomputed from the saved inputs) and mutates it.
    """
    import torch

    class Mutated(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *xs: Any) -> Any:
            ctx.save_for_backward(*xs)
            out = fn(*xs)
            # Outputs are cloned so that an op returning (a view of) its input stays a
            # fresh output of this Function.
            if isinstance(out, (tuple, list)):
                ctx.tuple_out = True
                return tuple(o.clone() for o in out)
            ctx.tuple_out = False
            return out.clone()

        @staticmethod
        def backward(ctx: Any, *cots: Any) -> Any:
            xs = ctx.saved_tensors
            with torch.enable_grad():
                leaves = [x.detach().requires_grad_(x.is_floating_point()) for x in xs]
                out = fn(*leaves)
                outs = list(out) if ctx.tuple_out else [out]
                cots = mutation.cotangents(list(cots))
                pairs = [(o, c) for o, c in zip(outs, cots) if o.requires_grad and c is not None]
                wrt = [x for x in leaves if x.requires_grad]
                grads = (
                    torch.autograd.grad([o for o, _ in pairs], wrt, [c for _, c in pairs], allow_unused=True)
                    if pairs and wrt
                    else [None] * len(wrt)
                )
            it = iter(grads)
            full = [next(it) if x.requires_grad else None for x in leaves]
            full = [torch.zeros_like(x) if g is None and x.requires_grad else g for g, x in zip(full, leaves)]
            return tuple(mutation.grads(full))

    return Mutated.apply


def mutate_jax(fn: Callable[..., Any], mutation: Mutation) -> Callable[..., Any]:
    """`fn` (jax arrays in, one array out) as a `jax.custom_vjp` whose VJP is mutated."""
    import jax

    @jax.custom_vjp
    def mutated(*xs: Any) -> Any:
        return fn(*xs)

    def fwd(*xs: Any) -> tuple[Any, Any]:
        return fn(*xs), xs

    def bwd(xs: Any, cot: Any) -> tuple[Any, ...]:
        _, vjp = jax.vjp(fn, *xs)
        (cot,) = mutation.cotangents([cot])
        return tuple(mutation.grads(list(vjp(cot))))

    mutated.defvjp(fwd, bwd)
    return mutated
