"""Jax side of `compare`: candidate, same-dtype reference and float64 golden on the same
quantised inputs, with shared cotangents (`jax.vjp`) and tangents (`jax.jvp`)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._reference import BIASED_SEED, Evaluation, Quantity
from ._base import CheckInputError
from .jax import _x64


def _is_float(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)


def _as_tuple(out: Any) -> tuple[Any, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _np(x: Any) -> np.ndarray:
    return np.asarray(jnp.asarray(x, dtype=jnp.float32) if x.dtype == jnp.bfloat16 else x).astype(np.float64)


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
    diff = [i for i, x in enumerate(inputs) if _is_float(x)]
    if not diff:
        raise CheckInputError(
            "compare found no differentiable input: inputs hold no floating-point jax array"
        )
    low = list(inputs)
    for i in diff:
        low[i] = jnp.asarray(inputs[i], dtype=dtype) if dtype is not None else inputs[i]
    names = {i: str(low[i].dtype) for i in diff}
    if all(n == "float64" for n in names.values()):
        raise CheckInputError(
            "the candidate's inputs are already float64, so there is no lower precision to "
            "compare against; use gradcheck_kit.gradcheck(fn, inputs) instead"
        )
    rng = np.random.default_rng(seed)

    def partial(f: Callable[..., Any], base: list[Any]) -> Callable[..., Any]:
        def g(*xs: Any) -> Any:
            args = list(base)
            for i, x in zip(diff, xs):
                args[i] = x
            return f(*args)

        return g

    with _x64(True):
        gold = list(low)
        for i in diff:
            gold[i] = jnp.asarray(np.asarray(low[i].astype(jnp.float32) if low[i].dtype == jnp.bfloat16 else low[i]).astype(np.float64))
        primals_c = [low[i] for i in diff]
        primals_g = [gold[i] for i in diff]
        out_c, vjp_c = jax.vjp(partial(fn, low), *primals_c)
        out_r, vjp_r = jax.vjp(partial(reference, low), *primals_c)
        out_g, vjp_g = jax.vjp(partial(reference, gold), *primals_g)
        oc, orr, og = _as_tuple(out_c), _as_tuple(out_r), _as_tuple(out_g)
        if len(oc) != len(orr) or any(a.shape != b.shape for a, b in zip(oc, orr)):
            raise CheckInputError(
                f"fn and reference return different outputs: shapes {[a.shape for a in oc]} from fn, "
                f"{[b.shape for b in orr]} from reference; they must compute the same quantities"
            )
        quantities = [
            Quantity("output", "-", f"output[{k}]", str(c.dtype), _np(g), _np(r), _np(c))
            for k, (c, r, g) in enumerate(zip(oc, orr, og))
        ]
        if grad_outputs is not None:
            cot = [jnp.asarray(v, dtype=c.dtype) for v, c in zip(_as_tuple(grad_outputs), oc)]
        else:
            cot = [jnp.asarray(rng.standard_normal(c.shape), dtype=c.dtype) for c in oc]
        sets = [("shared random cotangent", cot, True)]
        if grad_outputs is None:
            # The cotangent with a mean of one (`reference_torch.evaluate` says why), from
            # its own generator so that the tangents stay those of earlier versions.
            own = np.random.default_rng(seed + BIASED_SEED)
            sets.append(("shared cotangent of mean one",
                         [jnp.asarray(1.0 + own.standard_normal(c.shape), dtype=c.dtype) for c in oc], False))
        pack = (lambda vs: tuple(vs)) if isinstance(out_c, (tuple, list)) else (lambda vs: vs[0])
        for label, cots, elementwise in sets:
            gc = vjp_c(pack([v.astype(c.dtype) for v, c in zip(cots, oc)]))
            gr = vjp_r(pack([v.astype(r.dtype) for v, r in zip(cots, orr)]))
            gg = vjp_g(pack([jnp.asarray(_np(v)) for v in cots]))
            for i, c, r, g in zip(diff, gc, gr, gg):
                quantities.append(Quantity(f"reverse mode ({label})", f"inputs[{i}]", "outputs",
                                           names[i], _np(g), _np(r), _np(c), elementwise))
        notes: list[str] = []
        forward_evals = 0
        if forward:
            tang = [jnp.asarray(rng.standard_normal(x.shape), dtype=x.dtype) for x in primals_c]
            try:
                _, tc = jax.jvp(partial(fn, low), primals_c, tang)
            except Exception as exc:  # custom_vjp functions have no forward-mode rule
                notes.append(f"forward mode not compared: the candidate has no forward-mode rule ({type(exc).__name__})")
            else:
                _, tr = jax.jvp(partial(reference, low), primals_c, tang)
                _, tg = jax.jvp(partial(reference, gold), primals_g, [jnp.asarray(_np(t)) for t in tang])
                forward_evals = 3
                for k, (c, r, g) in enumerate(zip(_as_tuple(tc), _as_tuple(tr), _as_tuple(tg))):
                    quantities.append(Quantity("forward mode (shared random tangent)", "inputs", f"output[{k}]",
                                               str(oc[k].dtype), _np(g), _np(r), _np(c)))

    def reference64(*xs: Any) -> Any:
        return reference(*xs)

    dname = min(names.values(), key=lambda n: {"bfloat16": 0, "float16": 1, "float32": 2}.get(n, 3))
    return Evaluation(quantities=quantities, dtype=dname, device=str(jax.devices()[0].platform),
                      reference64=reference64, inputs64=tuple(jnp.asarray(x) if i in diff else x for i, x in enumerate(gold)),
                      function_evals=3, backward_evals=3 * len(sets), forward_evals=forward_evals, notes=notes,
                      reference_context=lambda: _x64(True))
