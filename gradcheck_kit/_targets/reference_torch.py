"""Torch side of `compare`: candidate, same-dtype reference and float64 golden evaluated on
the same quantised inputs, with shared cotangents and tangents."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from .._reference import BIASED_SEED, Evaluation, Quantity
from ._base import CheckInputError

_NAMES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32", torch.float64: "float64"}


def _as_tuple(out: Any, who: str) -> tuple[torch.Tensor, ...]:
    outs = out if isinstance(out, (tuple, list)) else (out,)
    for o in outs:
        if not isinstance(o, torch.Tensor):
            raise CheckInputError(f"{who} must return a tensor or a tuple of tensors, got a {type(o).__name__}")
    return tuple(outs)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def evaluate(
    fn: Callable[..., Any],
    reference: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    dtype: Any,
    grad_outputs: Any,
    seed: int,
    forward: bool,
) -> Evaluation:
    floats = [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.is_floating_point()]
    diff = [i for i in floats if inputs[i].requires_grad]
    if not diff:
        raise CheckInputError(
            "compare found no differentiable input: no floating-point tensor in inputs has "
            "requires_grad=True; set it on the inputs whose gradients the candidate computes"
        )
    low = list(inputs)
    for i in floats:
        x = inputs[i].detach()
        low[i] = x.to(dtype) if dtype is not None else x
    if all(low[i].dtype == torch.float64 for i in floats):
        raise CheckInputError(
            "the candidate's inputs are already float64, so there is no lower precision to "
            "compare against; use gradcheck_kit.gradcheck(fn, inputs) instead"
        )
    gen = torch.Generator().manual_seed(seed)

    def leaves(dt: torch.dtype | None) -> list[Any]:
        args = list(low)
        for i in floats:
            x = low[i].to(dt) if dt is not None else low[i].clone()
            args[i] = x.requires_grad_(i in diff)
        return args

    def run(f: Callable[..., Any], args: list[Any], who: str) -> tuple[torch.Tensor, ...]:
        return _as_tuple(f(*args), who)

    args_c, args_r, args_g = leaves(None), leaves(None), leaves(torch.float64)
    out_c = run(fn, args_c, "fn")
    out_r = run(reference, args_r, "reference")
    out_g = run(reference, args_g, "reference")
    if len(out_c) != len(out_r) or any(a.shape != b.shape for a, b in zip(out_c, out_r)):
        raise CheckInputError(
            f"fn and reference return different outputs: shapes {[tuple(o.shape) for o in out_c]} "
            f"from fn, {[tuple(o.shape) for o in out_r]} from reference; they must compute the same "
            f"quantities in the same layout"
        )
    quantities: list[Quantity] = []
    notes: list[str] = []
    dname = _NAMES.get(min((low[i].dtype for i in floats), key=lambda d: torch.finfo(d).bits), "float32")
    for k, (c, r, g) in enumerate(zip(out_c, out_r, out_g)):
        if c.is_floating_point():
            quantities.append(Quantity("output", "-", f"output[{k}]", _NAMES.get(c.dtype, dname), _np(g), _np(r), _np(c)))

    # Reverse mode: one shared cotangent per output, quantised to the output's dtype so all
    # three evaluations receive exactly the same values.
    diff_out = [k for k, c in enumerate(out_c) if c.is_floating_point() and (c.requires_grad or out_g[k].requires_grad)]
    if grad_outputs is not None:
        given = _as_tuple(grad_outputs, "grad_outputs")
        if len(given) != len(out_c):
            raise CheckInputError(f"grad_outputs has {len(given)} entries, but fn returns {len(out_c)} outputs")
        cot = {k: given[k].detach().to(out_c[k].dtype) for k in diff_out}
    else:
        cot = {k: torch.randn(out_c[k].shape, generator=gen, dtype=torch.float64).to(out_c[k].dtype) for k in diff_out}

    # A zero-mean cotangent barely excites the terms of a backward that sum the cotangent
    # over a reduced axis (LayerNorm's mean(g w), softmax's (g y).sum()): over n elements
    # they are 1/sqrt(n) of the others, and a dropped one can hide under bfloat16 rounding.
    # Unless the caller gave the cotangents, a second set with a mean of one excites them
    # fully.
    sets = [("shared random cotangent", cot, True)]
    if grad_outputs is None:
        # Its own generator: the other draws stay those of earlier versions.
        own = torch.Generator().manual_seed(seed + BIASED_SEED)
        biased = {k: (1.0 + torch.randn(out_c[k].shape, generator=own, dtype=torch.float64)).to(out_c[k].dtype)
                  for k in diff_out}
        sets.append(("shared cotangent of mean one", biased, False))

    def vjp(outs, args, cots, last):
        pairs = [(outs[k], cots[k].to(outs[k].dtype)) for k in diff_out if outs[k].requires_grad]
        if not pairs:
            return [torch.zeros_like(args[i]) for i in diff]
        grads = torch.autograd.grad([p[0] for p in pairs], [args[i] for i in diff], [p[1] for p in pairs],
                                    allow_unused=True, retain_graph=not last)
        return [torch.zeros_like(args[i]) if gr is None else gr for i, gr in zip(diff, grads)]

    for n, (label, cots, elementwise) in enumerate(sets):
        last = n == len(sets) - 1
        gc, gr, gg = (vjp(o, a, cots, last) for o, a in ((out_c, args_c), (out_r, args_r), (out_g, args_g)))
        for i, c, r, g in zip(diff, gc, gr, gg):
            if c.shape != g.shape:
                raise CheckInputError(f"fn's gradient for inputs[{i}] has shape {tuple(c.shape)}, expected {tuple(g.shape)}")
            quantities.append(Quantity(f"reverse mode ({label})", f"inputs[{i}]", "outputs",
                                       _NAMES.get(low[i].dtype, dname), _np(g), _np(r), _np(c), elementwise))

    forward_evals = 0
    if forward:
        tangents = {i: torch.randn(low[i].shape, generator=gen, dtype=torch.float64).to(low[i].dtype) for i in diff}

        def jvp(f, dt):
            import torch.autograd.forward_ad as fwAD

            with fwAD.dual_level():
                args = list(low)
                for i in floats:
                    x = low[i].to(dt) if dt is not None else low[i]
                    args[i] = fwAD.make_dual(x, tangents[i].to(x.dtype)) if i in diff else x
                outs = _as_tuple(f(*args), "fn")
                return [fwAD.unpack_dual(o).tangent for o in outs]

        try:
            tc = jvp(fn, None)
        except Exception as exc:  # a custom Function without a jvp rule
            tc = None
            notes.append(f"forward mode not compared: the candidate has no forward-mode rule ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
        if tc is not None:
            try:
                tr, tg = jvp(reference, None), jvp(reference, torch.float64)
            except Exception as exc:
                notes.append(f"forward mode not compared: the reference has no forward-mode rule ({type(exc).__name__})")
            else:
                forward_evals = 3
                for k, (c, r, g) in enumerate(zip(tc, tr, tg)):
                    if not out_c[k].is_floating_point():
                        continue
                    zeros = lambda t, like: torch.zeros_like(like) if t is None else t  # noqa: E731
                    c, r, g = zeros(c, out_c[k]), zeros(r, out_r[k]), zeros(g, out_g[k])
                    quantities.append(Quantity("forward mode (shared random tangent)", "inputs", f"output[{k}]",
                                               _NAMES.get(out_c[k].dtype, dname), _np(g), _np(r), _np(c)))

    inputs64 = tuple(leaves(torch.float64))
    device = str(next(low[i].device for i in floats))
    return Evaluation(quantities=quantities, dtype=dname, device=device, reference64=reference,
                      inputs64=inputs64, function_evals=3, backward_evals=3 * len(sets), forward_evals=forward_evals, notes=notes)
