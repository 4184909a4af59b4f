"""The checks behind `torch.autograd.gradcheck`'s options, as `Comparison`s.

Torch's gradcheck runs, besides the finite-difference comparison, structural checks that
its options switch on or off. Each is reproduced here as a function of `(fn, inputs)`
that returns `Comparison`s (never raises for a wrong backward), so that the entry point
can add them to a `Report`:

- `undefined_grad_comparisons`: the backward copes with undefined (None) output
  gradients and maps them to zero (`check_undefined_grad`); its forward-mode twin
  `undefined_tangent_comparisons`.
- `zero_cotangent_comparisons`: zero output gradients give zero input gradients of the
  input's dtype, device, shape and layout (torch runs this always).
- `grad_attribute_comparisons`: the gradient's dtype, device, shape and layout match the
  input's (`check_grad_dtypes`), including what a custom `autograd.Function` returns
  before torch's engine silently casts it.
- `batched_grad_comparisons` / `batched_forward_grad_comparisons`: the backward /
  forward-mode rule under vmap equals the loop over the batch.
- `option_comparisons`: all of the above as the options select them.

Also here: `validate_torch_options` (torch's own consistency rules), `forward_jvps`
(forward-mode products with dual tensors), `sparse_as_dense` (sparse inputs as dense
value inputs, masked or not), `complex_as_real` (complex functions as real ones, the way
torch checks Wirtinger derivatives), and `torch_gradient_mismatch` (the exception class
torch users catch).
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from .._dropin import validate_option_rules
from .._report import Comparison, ComparisonKind, GradientMismatch

__all__ = [
    "BATCH_SIZE",
    "SparseView",
    "ComplexView",
    "batched_forward_grad_comparisons",
    "batched_grad_comparisons",
    "complex_as_real",
    "forward_jvps",
    "grad_attribute_comparisons",
    "masked_off_pattern_comparisons",
    "option_comparisons",
    "private_inputs",
    "sparse_as_dense",
    "torch_gradient_mismatch",
    "undefined_grad_comparisons",
    "undefined_tangent_comparisons",
    "validate_torch_options",
    "zero_cotangent_comparisons",
]

#: Number of random cotangents (tangents) stacked into one vmap batch, as torch uses.
BATCH_SIZE = 2

_BATCHED_FIX = (
    "Every operation in the {what} must have a vmap batching rule: no .item(), .tolist(), "
    ".numpy(), .detach() or in-place writes on the incoming {grad}, no data-dependent "
    "Python control flow on it (see torch's NOTE [How to write vmap-compatible backward "
    "formulas]). If batched {grad}s are not needed, pass {option}=False."
)
_UNDEFINED_FIX = (
    "A backward must accept undefined (None) output gradients and treat them as zeros: "
    "with ctx.set_materialize_grads(False), test `if grad is None` before using it; "
    "otherwise leave materialize_grads on so that torch passes zeros (see 'Notes about "
    "undefined output gradients' in torch's tools/autograd/derivatives.yaml). To skip "
    "this check, pass check_undefined_grad=False."
)


# -- the exception class -----------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def torch_gradient_mismatch() -> type[GradientMismatch]:
    """`GradientMismatch` that is also torch's `GradcheckError` (and so a `RuntimeError`).

    Built once: `except` compares classes by identity, so every raise must use the same one.
    """
    from torch.autograd.gradcheck import GradcheckError

    # Named as its public base, so that tracebacks read `gradcheck_kit.GradientMismatch`
    # whichever framework raised it (`GradientMismatch.__reduce__` keeps it picklable).
    return type(
        "GradientMismatch",
        (GradientMismatch, GradcheckError),
        {
            "__doc__": "A failing gradcheck of a torch function: a `GradientMismatch` that "
            "`except torch.autograd.gradcheck.GradcheckError` and `except RuntimeError` "
            "also catch.",
            "__module__": "gradcheck_kit",
            "__qualname__": "GradientMismatch",
        },
    )


# -- option rules --------------------------------------------------------------------------


def validate_torch_options(
    *,
    check_forward_ad: bool,
    check_backward_ad: bool,
    check_batched_grad: bool,
    check_batched_forward_grad: bool,
) -> None:
    """Refuse the option combinations torch refuses, naming the argument and the fix."""
    validate_option_rules(
        check_forward_ad=check_forward_ad, check_backward_ad=check_backward_ad,
        check_batched_grad=check_batched_grad,
        check_batched_forward_grad=check_batched_forward_grad,
    )


# -- the whole set -----------------------------------------------------------------------


def option_comparisons(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    check_undefined_grad: bool = True,
    check_batched_grad: bool = False,
    check_batched_forward_grad: bool = False,
    check_grad_dtypes: bool = False,
    check_forward_ad: bool = False,
    check_backward_ad: bool = True,
    masked: bool | None = None,
    nondet_tol: float = 0.0,
    seed: int = 0,
    check_zero_and_attributes: bool = True,
) -> list[Comparison]:
    """The structural checks `torch.autograd.gradcheck` runs for these options.

    **Arguments:** `fn` and `inputs` as given to `gradcheck` (inputs with
    `requires_grad=True` are checked); the options with torch's meaning. `nondet_tol`
    loosens the exact comparisons where a nondeterministic backward is declared; `seed`
    seeds the random cotangents (the caller's generators are not touched).
    `check_zero_and_attributes=False` leaves out the two checks torch always runs with
    the backward (zero output gradients, gradient attributes).

    **Returns:** a list of `Comparison`s; a `passed=False` one says what was violated.
    The finite-difference comparisons are not among them: they are the engine's.
    """
    validate_torch_options(
        check_forward_ad=check_forward_ad, check_backward_ad=check_backward_ad,
        check_batched_grad=check_batched_grad,
        check_batched_forward_grad=check_batched_forward_grad,
    )
    inputs = tuple(inputs)
    out: list[Comparison] = []
    if check_backward_ad:
        if check_zero_and_attributes:
            out += zero_cotangent_comparisons(fn, inputs, masked=bool(masked), nondet_tol=nondet_tol)
            out += grad_attribute_comparisons(fn, inputs, check_dtype=check_grad_dtypes)
        if check_batched_grad:
            out += batched_grad_comparisons(fn, inputs, seed=seed)
        if check_undefined_grad:
            out += undefined_grad_comparisons(fn, inputs)
    if check_forward_ad:
        if check_grad_dtypes:
            out += forward_tangent_dtype_comparisons(fn, inputs, seed=seed)
        if check_undefined_grad:
            out += undefined_tangent_comparisons(fn, inputs, seed=seed)
        if check_batched_forward_grad:
            out += batched_forward_grad_comparisons(fn, inputs, seed=seed)
    if masked and check_backward_ad:
        out += masked_off_pattern_comparisons(fn, inputs, seed=seed)
    for c in out:
        c.kind = ComparisonKind.STRUCTURAL
    return out


def private_inputs(inputs: Sequence[Any]) -> tuple[Any, ...]:
    """Copies of the inputs for the structural checks, so that they cannot reach the caller.

    Tensors keep dtype, device, strides (a backward that assumes contiguous memory meets a
    transposed input as the caller's would), layout and `requires_grad`; generators are
    copies in their current state (the caller's is not advanced); containers are copied
    through; anything else is passed as it is.
    """
    from ._rng import fresh_generator, is_generator
    from .torch import _like

    def copy(x: Any) -> Any:
        if is_generator(x):  # torch, numpy and random generators alike
            return fresh_generator(x)
        if isinstance(x, torch.Tensor):
            if x.layout == torch.strided:
                y = _like(x, x.dtype)
                with torch.no_grad():
                    y.copy_(x.detach())
            else:
                y = x.detach().clone()
            differentiable = x.is_floating_point() or x.is_complex()
            return y.requires_grad_(x.requires_grad) if differentiable else y
        if type(x) in (tuple, list):
            return type(x)(copy(v) for v in x)
        if type(x) is dict:
            return {k: copy(v) for k, v in x.items()}
        return x

    return tuple(copy(x) for x in inputs)


# -- shared pieces -------------------------------------------------------------------------


def _as_tuple(x: Any) -> tuple[Any, ...]:
    if isinstance(x, tuple):
        return x
    if isinstance(x, list):
        return tuple(x)
    return (x,)


def _diff_indices(inputs: Sequence[Any]) -> list[int]:
    return [
        i for i, x in enumerate(inputs)
        if isinstance(x, torch.Tensor) and x.requires_grad
        and (x.is_floating_point() or x.is_complex())
    ]


def _names(indices: Sequence[int]) -> str:
    return ", ".join(f"inputs[{i}]" for i in indices) or "no input"


def _fresh_call(fn: Callable[..., Any], inputs: Sequence[Any]) -> tuple[list[int], list[Any], tuple]:
    """Call `fn` with grad enabled on the caller's inputs; return (diff idx, diff, outputs).

    The caller's tensors are used as they are (not copies): torch's checks do the same,
    and a copy would lose a sparse tensor's or a view's exact structure.
    """
    diff_idx = _diff_indices(inputs)
    with torch.enable_grad():
        outs = _as_tuple(fn(*inputs))
    return diff_idx, [inputs[i] for i in diff_idx], outs


def _differentiable(outs: Sequence[Any]) -> list[tuple[int, torch.Tensor]]:
    return [
        (k, o) for k, o in enumerate(outs) if isinstance(o, torch.Tensor) and o.requires_grad
    ]


def _out_name(k: int, n_outputs: int) -> str:
    return "output" if n_outputs == 1 else f"outputs[{k}]"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _random_like(t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A standard normal tensor shaped like `t`, drawn on the cpu from `gen`, then moved."""
    r = torch.randn(tuple(t.shape), generator=gen, dtype=_cotangent_dtype(t), device="cpu")
    return r.to(device=t.device)


def _ones_like(t: torch.Tensor) -> torch.Tensor:
    """A dense tensor of ones shaped like `t`, of its dtype (float64 if not floating)."""
    return torch.ones(tuple(t.shape), dtype=_cotangent_dtype(t), device=t.device)


def _cotangent_dtype(t: torch.Tensor) -> torch.dtype:
    return t.dtype if (t.is_floating_point() or t.is_complex()) else torch.float64


def _generator(seed: int) -> torch.Generator:
    # A private generator: the caller's global torch stream is left as it was.
    return torch.Generator(device="cpu").manual_seed(int(seed) + 0x5EED)


def _failure(check: str, input: str, output: str, message: str, *, source: str) -> Comparison:
    return Comparison(
        check=check, input=input, output=output, error=math.inf, tolerance=0.0,
        tolerance_source=source, passed=False, notes=[message],
    )


def _allclose_error(result: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> float:
    """`max |r - e| / (atol + rtol |e|)`: at most 1 exactly where `torch.allclose` holds."""
    r = result.detach().to_dense() if result.layout != torch.strided else result.detach()
    e = expected.detach().to_dense() if expected.layout != torch.strided else expected.detach()
    if r.numel() == 0:
        return 0.0
    if r.is_complex() or e.is_complex():
        r, e = r.to(torch.complex128), e.to(torch.complex128)
    else:
        r, e = r.to(torch.float64), e.to(torch.float64)
    diff = (r - e).abs()
    allowed = atol + rtol * e.abs()
    if not bool(torch.isfinite(diff).all()):
        return math.inf
    ratio = torch.where(allowed > 0, diff / allowed.clamp_min(1e-300), diff * math.inf)
    ratio = torch.where(diff == 0, torch.zeros_like(ratio), ratio)
    return float(ratio.max())


def _consistency_tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """(rtol, atol) for comparing two evaluations of the same derivative in `dtype`.

    Torch compares them with `allclose`'s defaults (rtol 1e-5, atol 1e-8), made for
    float64. A vmapped rule may sum in another order than the loop; the difference is a
    few units of rounding per term, so for low-precision dtypes the tolerance grows to 32
    units of roundoff instead of failing on reordering alone.
    """
    real = dtype.to_real() if dtype.is_complex else dtype
    eps = torch.finfo(real).eps if real.is_floating_point else 0.0
    return max(1e-5, 32 * eps), max(1e-8, 32 * eps * 1e-3)


def _zero_fill(grads: Sequence[Any], like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [
        g if g is not None else torch.zeros((), dtype=x.dtype, device=x.device).expand(x.shape)
        for g, x in zip(grads, like)
    ]


# -- undefined output gradients ------------------------------------------------------------


def undefined_grad_comparisons(fn: Callable[..., Any], inputs: Sequence[Any]) -> list[Comparison]:
    """The backward copes with undefined output gradients (torch's `check_undefined_grad`).

    As torch: once with every differentiable output's gradient undefined, and, for several
    outputs, once with each single output's gradient undefined (the others zero). The
    backward must not raise, and the input gradients must be undefined or zero.
    """
    check = "undefined output gradients"
    source = "exact: undefined output gradients are zeros, so the input gradients are zero"
    diff_idx, diff, outs = _fresh_call(fn, inputs)
    douts = _differentiable(outs)
    if not douts or not diff:
        return []
    undefine = torch._C._functions.UndefinedGrad()
    cases: list[tuple[str, list[int]]] = [("all outputs", [k for k, _ in douts])]
    if len(douts) > 1:
        cases += [(_out_name(k, len(outs)), [k]) for k, _ in douts]
    comparisons = []
    for label, undefined in cases:
        if len(cases) > 1 and label != "all outputs":
            _, _, outs = _fresh_call(fn, inputs)
            douts = _differentiable(outs)
        elif label == "all outputs" and comparisons:
            _, _, outs = _fresh_call(fn, inputs)
            douts = _differentiable(outs)
        wrapped = [undefine(o) if k in undefined else o for k, o in douts]
        cots = [torch.zeros_like(o, memory_format=torch.legacy_contiguous_format) for o in wrapped]
        try:
            grads = torch.autograd.grad(wrapped, diff, cots, allow_unused=True)
        except Exception as exc:  # TypeError on `None * x` as well as torch's RuntimeErrors
            comparisons.append(_failure(
                check, _names(diff_idx), label,
                f"the backward raised {_first_line(exc)} when the gradient of {label} was "
                f"undefined. {_UNDEFINED_FIX}",
                source=source,
            ))
            continue
        worst = 0.0
        where = []
        for i, g in zip(diff_idx, grads):
            if g is None:
                continue
            dense = g.to_dense() if g.layout != torch.strided else g
            m = float(dense.abs().max()) if dense.numel() else 0.0
            if not m == 0.0:
                where.append(f"inputs[{i}]")
                worst = max(worst, m if math.isfinite(m) else math.inf)
        notes = []
        if where:
            notes.append(
                f"with the gradient of {label} undefined, the gradients of {', '.join(where)} "
                f"are not zero (largest |value| {worst:.3e}). {_UNDEFINED_FIX}"
            )
        comparisons.append(Comparison(
            check=check, input=_names(diff_idx), output=label, error=worst, tolerance=0.0,
            tolerance_source=source, passed=not where, notes=notes,
        ))
    return comparisons


def zero_cotangent_comparisons(
    fn: Callable[..., Any], inputs: Sequence[Any], *, masked: bool = False, nondet_tol: float = 0.0,
) -> list[Comparison]:
    """Zero output gradients give zero input gradients (torch's `backward not multiplied
    by grad_output` check, which it always runs): exactly zero, or `allclose` to zero when
    `masked`, as torch."""
    check = "zero output gradients give zero input gradients"
    diff_idx, diff, outs = _fresh_call(fn, inputs)
    douts = [o for _, o in _differentiable(outs)]
    if not douts or not diff:
        return []
    cots = [torch.zeros_like(o, memory_format=torch.legacy_contiguous_format) for o in douts]
    try:
        grads = torch.autograd.grad(douts, diff, cots, allow_unused=True)
    except Exception as exc:
        return [_failure(
            check, _names(diff_idx), "all outputs",
            f"the backward raised {_first_line(exc)} for zero output gradients; a backward "
            f"must accept any output gradient",
            source="exact",
        )]
    # masked: torch allows allclose(g, 0), i.e. |g| <= 1e-8 (allclose's default atol).
    tol = max(1e-8 if masked else 0.0, float(nondet_tol))
    comparisons = []
    for i, g in zip(diff_idx, grads):
        if g is None:
            continue
        dense = g.to_dense() if g.layout != torch.strided else g
        m = float(dense.abs().max()) if dense.numel() else 0.0
        if math.isnan(m):
            m = math.inf
        notes = [] if m <= tol else [
            "the backward returns a nonzero gradient for zero output gradients: it does not "
            "multiply by the output gradient (a term that ignores grad_output, or an "
            "accumulation into a captured tensor)"
        ]
        comparisons.append(Comparison(
            check=check, input=f"inputs[{i}]", output="all outputs", error=m, tolerance=tol,
            tolerance_source="exact" if tol == 0 else ("nondet_tol" if tol == nondet_tol else
                                                        "allclose atol 1e-8 (masked)"),
            passed=m <= tol, notes=notes,
        ))
    return comparisons


# -- gradient attributes -------------------------------------------------------------------


def _attribute_mismatches(g: torch.Tensor, x: torch.Tensor, *, check_dtype: bool) -> list[str]:
    found = []
    if check_dtype and g.dtype != x.dtype:
        found.append(f"dtype {g.dtype} (the input's is {x.dtype})")
    if g.device != x.device:
        found.append(f"device {g.device} (the input's is {x.device})")
    if tuple(g.shape) != tuple(x.shape):
        found.append(f"shape {tuple(g.shape)} (the input's is {tuple(x.shape)})")
    if g.layout != torch.strided and g.layout != x.layout:
        # A dense gradient for a sparse input is what torch's own sparse backwards return
        # for non-masked semantics; only a sparse gradient of another layout is wrong.
        found.append(f"layout {g.layout} (the input's is {x.layout})")
    elif g.layout != torch.strided and g.layout == torch.sparse_coo:
        if g.sparse_dim() != x.sparse_dim() or g.dense_dim() != x.dense_dim():
            found.append(
                f"sparse_dim/dense_dim {g.sparse_dim()}/{g.dense_dim()} (the input's are "
                f"{x.sparse_dim()}/{x.dense_dim()})"
            )
    return found


def grad_attribute_comparisons(
    fn: Callable[..., Any], inputs: Sequence[Any], *, check_dtype: bool,
) -> list[Comparison]:
    """Each input gradient has the input's dtype, device, shape and layout.

    Shape, device and layout are always checked (torch always checks them). With
    `check_dtype` (torch's `check_grad_dtypes`) also the dtype, and also what each custom
    `autograd.Function` in the graph returns itself: torch's engine casts a gradient to
    the dtype its input expects before anyone sees it, so a backward that computes in
    float32 for a float64 input would otherwise pass unseen.
    """
    check = "gradient dtype/device/shape/layout"
    diff_idx, diff, outs = _fresh_call(fn, inputs)
    douts = [o for _, o in _differentiable(outs)]
    if not douts or not diff:
        return []
    # Only the gradients' attributes are compared, never their values: a cotangent of
    # ones does (a normal draw of every output element cost 15 ms per check at 1e6).
    cots = [_ones_like(o) for o in douts]
    comparisons = []
    raw = _custom_function_mismatches(douts, cots) if check_dtype else []
    try:
        grads = torch.autograd.grad(douts, diff, cots, allow_unused=True, retain_graph=True)
    except Exception as exc:
        return [_failure(
            check, _names(diff_idx), "all outputs",
            f"the backward raised {_first_line(exc)}; fix the backward so that it returns one "
            f"gradient per input, shaped like that input",
            source="exact: the gradient must look like its input",
        )]
    for i, g, x in zip(diff_idx, grads, diff):
        found = [] if g is None else _attribute_mismatches(g, x, check_dtype=check_dtype)
        notes = [f"the gradient of inputs[{i}] has {', '.join(found)}"] if found else []
        comparisons.append(Comparison(
            check=check, input=f"inputs[{i}]", output="all outputs", error=float(len(found)),
            tolerance=0.0, tolerance_source="exact: the gradient must look like its input",
            passed=not found, notes=notes,
        ))
    if raw:
        comparisons.append(Comparison(
            check=check, input=_names(diff_idx), output="custom autograd.Function backward",
            error=float(len(raw)), tolerance=0.0,
            tolerance_source="exact: a backward returns gradients of its inputs' dtypes",
            passed=False,
            notes=raw + [
                "torch casts such a gradient silently, so it is computed in the lower "
                "precision; return gradients of each forward input's dtype (or pass "
                "check_grad_dtypes=False)"
            ],
        ))
    return comparisons


def _custom_function_mismatches(outputs: Sequence[torch.Tensor], cots: Sequence[torch.Tensor]) -> list[str]:
    """Call each custom Function's backward directly and compare its raw results' dtypes
    with the dtypes the next nodes expect (read from torch's input metadata)."""
    found: list[str] = []
    seen: set[int] = set()
    stack = [o.grad_fn for o in outputs if o.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        stack += [n for n, _ in node.next_functions if n is not None]
        forward_cls = getattr(node, "_forward_cls", None)
        meta = getattr(node, "_input_metadata", None)
        if forward_cls is None or meta is None:
            continue
        grads_in = [
            torch.ones(tuple(m.shape), dtype=m.dtype, device=m.device) for m in meta
        ]
        try:
            with torch.no_grad():
                raw = _as_tuple(node.apply(*grads_in))
        except Exception:
            continue  # the regular backward reports a raising backward
        for j, ((nxt, slot), g) in enumerate(zip(node.next_functions, raw)):
            if nxt is None or not isinstance(g, torch.Tensor):
                continue
            expected = getattr(nxt, "_input_metadata", None)
            if expected is None or slot >= len(expected):
                continue
            want = expected[slot].dtype
            if g.dtype != want:
                found.append(
                    f"{forward_cls.__name__}.backward returns a {g.dtype} gradient for its "
                    f"input {j}, which is {want}"
                )
    return found


def forward_tangent_dtype_comparisons(
    fn: Callable[..., Any], inputs: Sequence[Any], *, seed: int = 0,
) -> list[Comparison]:
    """Forward mode: each output tangent is complex exactly where its output is (torch's
    `Forward AD gradient has dtype mismatch`), and of the output's dtype."""
    check = "forward-mode tangent dtype"
    diff_idx = _diff_indices(inputs)
    gen = _generator(seed)
    tangents = [_random_like(inputs[i], gen) for i in diff_idx]
    try:
        primals, tans = _dual_call(fn, inputs, diff_idx, tangents)
    except Exception as exc:
        return [_forward_unavailable(check, diff_idx, exc)]
    comparisons = []
    for k, (p, t) in enumerate(zip(primals, tans)):
        if t is None:
            continue
        found = [] if t.dtype == p.dtype else [f"tangent dtype {t.dtype}, output dtype {p.dtype}"]
        comparisons.append(Comparison(
            check=check, input=_names(diff_idx), output=_out_name(k, len(primals)),
            error=float(len(found)), tolerance=0.0, tolerance_source="exact",
            passed=not found, notes=found,
        ))
    return comparisons


# -- forward mode --------------------------------------------------------------------------


def _dual_call(
    fn: Callable[..., Any], inputs: Sequence[Any], indices: Sequence[int],
    tangents: Sequence[torch.Tensor | None],
) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """Call `fn` with dual tensors at `indices` (tangent None: a plain detached tensor)."""
    fwAD = torch.autograd.forward_ad
    with fwAD.dual_level():
        args = [x.detach() if isinstance(x, torch.Tensor) else x for x in inputs]
        for i, t in zip(indices, tangents):
            if t is not None:
                args[i] = fwAD.make_dual(inputs[i].detach(), t)
        outs = _as_tuple(fn(*args))
        primals, tans = [], []
        for o in outs:
            if not isinstance(o, torch.Tensor) or not (o.is_floating_point() or o.is_complex()):
                continue
            p, t = fwAD.unpack_dual(o)
            primals.append(p.detach().clone())
            tans.append(None if t is None else t.detach().clone())
    return primals, tans


def forward_jvps(
    fn: Callable[..., Any], inputs: Sequence[Any], tangents: Sequence[torch.Tensor],
) -> list[torch.Tensor]:
    """`J u` by forward mode: the output tangents of `fn` for input tangents `tangents`.

    `tangents` holds one tensor per input with `requires_grad=True`, in order; all are
    pushed through in one call (a directional derivative along all inputs at once, as the
    engine's probes are). An output without a tangent (independent of the inputs) gets a
    zero tangent. Floating-point and complex outputs only, in order. Raises what torch
    raises where a forward-mode rule is missing (a custom Function without `jvp`).
    """
    diff_idx = _diff_indices(inputs)
    if len(tangents) != len(diff_idx):
        raise ValueError(
            f"tangents has {len(tangents)} tensors but {len(diff_idx)} inputs require grad; "
            f"pass one tangent per input with requires_grad=True"
        )
    primals, tans = _dual_call(fn, inputs, diff_idx, list(tangents))
    return [torch.zeros_like(p) if t is None else t for p, t in zip(primals, tans)]


def _forward_unavailable(check: str, diff_idx: Sequence[int], exc: BaseException) -> Comparison:
    return _failure(
        check, _names(diff_idx), "all outputs",
        f"forward mode failed: {_first_line(exc)}. check_forward_ad=True needs a forward-mode "
        f"rule for every operation (a custom autograd.Function needs a jvp staticmethod); "
        f"pass check_forward_ad=False to check the backward only",
        source="forward mode must run",
    )


def undefined_tangent_comparisons(
    fn: Callable[..., Any], inputs: Sequence[Any], *, seed: int = 0,
) -> list[Comparison]:
    """Forward mode treats a missing tangent as zero (torch's `_test_undefined_forward_mode`).

    For each checked input, with random tangents on the others: the output tangents with
    a materialized zero tangent on that input equal those with a plain tensor there.
    """
    check = "undefined input tangents"
    diff_idx = _diff_indices(inputs)
    gen = _generator(seed)
    tangents = [_random_like(inputs[i], gen) for i in diff_idx]
    comparisons = []
    for pos, i in enumerate(diff_idx):
        zero = list(tangents)
        zero[pos] = torch.zeros_like(inputs[i])
        absent = list(tangents)
        absent[pos] = None
        try:
            _, with_zero = _dual_call(fn, inputs, diff_idx, zero)
            _, without = _dual_call(fn, inputs, diff_idx, absent)
        except Exception as exc:
            comparisons.append(_failure(
                check, f"inputs[{i}]", "all outputs",
                f"forward mode raised {_first_line(exc)} with the tangent of inputs[{i}] "
                f"zero or undefined; a jvp must accept undefined tangents (None) and treat "
                f"them as zeros",
                source="torch.allclose defaults",
            ))
            continue
        for k, (a, b) in enumerate(zip(with_zero, without)):
            if a is None or b is None:
                continue
            err = _allclose_error(a, b, 1e-5, 1e-8)
            comparisons.append(Comparison(
                check=check, input=f"inputs[{i}]", output=_out_name(k, len(with_zero)),
                error=err, tolerance=1.0,
                tolerance_source="torch.allclose defaults (rtol 1e-5, atol 1e-8), as torch",
                passed=err <= 1.0,
                notes=[] if err <= 1.0 else [
                    f"a zero tangent on inputs[{i}] gives other output tangents than no "
                    f"tangent there: the jvp treats an undefined tangent differently from zero"
                ],
            ))
    return comparisons


# -- batched (vmap) rules ------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_vmap_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        # The legacy batching fallback warns on every op without a rule; expected here.
        warnings.filterwarnings("ignore", message="There is a performance drop")
        warnings.filterwarnings("ignore", message="Please use `torch.vmap`")
        yield


def batched_grad_comparisons(
    fn: Callable[..., Any], inputs: Sequence[Any], *, seed: int = 0,
) -> list[Comparison]:
    """The backward under vmap equals the loop over the batch (`check_batched_grad`).

    For each differentiable output, `BATCH_SIZE` random cotangents are pulled back one by
    one and then all at once with `torch.autograd.grad(..., is_grads_batched=True)`, the
    batching torch's own check uses. A backward that vmap cannot run fails with the
    error and the fix.
    """
    check = "batched backward (vmap) vs loop"
    diff_idx, diff, outs = _fresh_call(fn, inputs)
    if not diff:
        return []
    gen = _generator(seed)
    comparisons = []
    for k, o in _differentiable(outs):
        out_name = _out_name(k, len(outs))
        cots = [_random_like(o, gen) for _ in range(BATCH_SIZE)]
        try:
            loop = [
                _zero_fill(torch.autograd.grad(o, diff, c, retain_graph=True, allow_unused=True), diff)
                for c in cots
            ]
        except Exception as exc:
            comparisons.append(_failure(
                check, _names(diff_idx), out_name,
                f"the backward raised {_first_line(exc)} (unbatched)", source="backward must run",
            ))
            continue
        expected = [torch.stack(shards) for shards in zip(*loop)]
        try:
            with _quiet_vmap_warnings():
                batched = torch.autograd.grad(
                    o, diff, torch.stack(cots), retain_graph=True, allow_unused=True,
                    is_grads_batched=True,
                )
        except Exception as exc:
            comparisons.append(_failure(
                check, _names(diff_idx), out_name,
                f"the backward cannot run under vmap: {_first_line(exc)}. "
                + _BATCHED_FIX.format(what="backward", grad="gradient", option="check_batched_grad"),
                source="the batched backward must run",
            ))
            continue
        batched = _zero_fill(
            batched,
            [torch.zeros((BATCH_SIZE, *x.shape), dtype=x.dtype, device=x.device) for x in diff],
        )
        comparisons += _batch_agreement(check, diff_idx, out_name, batched, expected, by="input")
    return comparisons


def _batch_agreement(
    check: str, diff_idx: Sequence[int], name: str, results: Sequence[torch.Tensor],
    expected: Sequence[torch.Tensor], *, by: str,
) -> list[Comparison]:
    comparisons = []
    for j, (res, exp) in enumerate(zip(results, expected)):
        if by == "input":
            inp, out = f"inputs[{diff_idx[j]}]", name
        else:
            inp, out = name, (f"outputs[{j}]" if len(expected) > 1 else "output")
        if tuple(res.shape) != tuple(exp.shape):
            comparisons.append(_failure(
                check, inp, out,
                f"the batched result has shape {tuple(res.shape)}, the stacked loop "
                f"{tuple(exp.shape)}: the rule does not keep the batch dimension separate",
                source="shapes must agree",
            ))
            continue
        rtol, atol = _consistency_tolerances(exp.dtype)
        err = _allclose_error(res, exp, rtol, atol)
        notes = [] if err <= 1.0 else [
            "the batched rule disagrees with the loop over the batch: it mixes batch "
            "elements (a reduction or broadcast over the wrong dimension, a captured "
            "per-example tensor) or differs under vmap"
        ]
        comparisons.append(Comparison(
            check=check, input=inp, output=out, error=err, tolerance=1.0,
            tolerance_source=f"allclose(rtol={rtol:.3g}, atol={atol:.3g}) in units of the allowance",
            passed=err <= 1.0, notes=notes,
        ))
    return comparisons


def batched_forward_grad_comparisons(
    fn: Callable[..., Any], inputs: Sequence[Any], *, seed: int = 0,
) -> list[Comparison]:
    """Forward mode under vmap equals the loop over the batch (`check_batched_forward_grad`).

    For each checked input, `BATCH_SIZE` random tangents are pushed forward one by one and
    then as one vmapped batch, with torch's own batching (`torch._vmap_internals._vmap`,
    which its gradcheck uses; `torch.vmap` where that is gone).
    """
    check = "batched forward mode (vmap) vs loop"
    fwAD = torch.autograd.forward_ad
    diff_idx = _diff_indices(inputs)
    gen = _generator(seed)
    try:
        from torch._vmap_internals import _vmap as vmap
    except ImportError:  # pragma: no cover - older or newer torch
        vmap = torch.vmap
    comparisons = []
    for i in diff_idx:
        x = inputs[i]

        def jvp(tangent: torch.Tensor, i: int = i, x: torch.Tensor = x) -> tuple[torch.Tensor, ...]:
            with fwAD.dual_level():
                args = [a.detach() if isinstance(a, torch.Tensor) else a for a in inputs]
                args[i] = fwAD.make_dual(x.detach(), tangent)
                outs = _as_tuple(fn(*args))
                ret = []
                for o in outs:
                    if not isinstance(o, torch.Tensor):
                        continue
                    p, t = fwAD.unpack_dual(o)
                    ret.append(t if t is not None else
                               torch.zeros([], dtype=p.dtype, device=p.device).expand(p.shape))
                return tuple(ret)

        tangents = [_random_like(x, gen) for _ in range(BATCH_SIZE)]
        try:
            loop = [jvp(t) for t in tangents]
        except Exception as exc:
            comparisons.append(_forward_unavailable(check, [i], exc))
            continue
        expected = [torch.stack(shards) for shards in zip(*loop)]
        try:
            with _quiet_vmap_warnings():
                batched = _as_tuple(vmap(jvp)(torch.stack(tangents)))
        except Exception as exc:
            comparisons.append(_failure(
                check, f"inputs[{i}]", "all outputs",
                f"forward mode cannot run under vmap: {_first_line(exc)}. "
                + _BATCHED_FIX.format(what="jvp", grad="tangent", option="check_batched_forward_grad"),
                source="the batched forward mode must run",
            ))
            continue
        comparisons += _batch_agreement(check, [i], f"inputs[{i}]", batched, expected, by="output")
    return comparisons


# -- sparse inputs -------------------------------------------------------------------------

_SPARSE_LAYOUTS = (
    torch.sparse_coo, torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc,
)


class _Pattern:
    """The specified elements of a sparse tensor: rebuild it from its values, and gather
    a dense gradient back onto them."""

    def __init__(self, template: torch.Tensor) -> None:
        self.layout = template.layout
        self.shape = tuple(template.shape)
        self.template = template
        values = template._values() if self.layout == torch.sparse_coo else template.values()
        self.values_shape = tuple(values.shape)
        # Position map: element -> 1 + its flat index among the values (0: unspecified).
        # Built with the layout's own to_dense, so every layout (hybrid and blocked too)
        # is placed exactly as torch places it; float64 holds the integers exactly.
        n = values.numel()
        numbered = torch.arange(1, n + 1, dtype=torch.float64, device=values.device)
        self.position = self.build(numbered.reshape(self.values_shape)).to_dense().to(torch.long)
        self.specified = self.position > 0

    def build(self, values: torch.Tensor) -> torch.Tensor:
        t = self.template
        if self.layout == torch.sparse_coo:
            return torch.sparse_coo_tensor(
                t._indices(), values, self.shape, is_coalesced=t.is_coalesced(),
            )
        if self.layout in (torch.sparse_csr, torch.sparse_bsr):
            compressed, plain = t.crow_indices(), t.col_indices()
        else:
            compressed, plain = t.ccol_indices(), t.row_indices()
        return torch.sparse_compressed_tensor(
            compressed, plain, values, self.shape, layout=self.layout,
        )

    def gather(self, dense: torch.Tensor) -> torch.Tensor:
        flat = dense.new_zeros(int(math.prod(self.values_shape)))
        flat[self.position[self.specified] - 1] = dense[self.specified]
        return flat.reshape(self.values_shape)


class _Rebuild(torch.autograd.Function):
    """values -> sparse tensor; the backward densifies the incoming gradient and, for
    masked semantics, keeps only the specified elements."""

    @staticmethod
    def forward(ctx, values, pattern, masked, original, original_values):
        ctx.pattern, ctx.masked = pattern, masked
        # An undefined gradient stays undefined: torch cannot materialize zeros of every
        # sparse layout (blocked ones), and none are needed.
        ctx.set_materialize_grads(False)
        if original is not None and torch.equal(values, original_values):
            # Non-masked: at the caller's own point the caller's tensor itself, so that
            # the backward runs at the caller's sparsity pattern (torch evaluates its
            # analytical Jacobian there) while differences run fully specified.
            return original.clone()
        return pattern.build(values if masked else pattern.gather(values))

    @staticmethod
    def backward(ctx, grad):
        if grad is None:
            return None, None, None, None, None
        dense = grad.to_dense() if grad.layout != torch.strided else grad
        return (ctx.pattern.gather(dense) if ctx.masked else dense), None, None, None, None


@dataclass
class SparseView:
    """A function of sparse inputs seen as a function of dense ones.

    `function(*inputs)` rebuilds each sparse input from its dense stand-in and calls the
    original function. `masked=True`: the stand-in holds the specified values only (shape
    of `values()`: `(nnz, *block, *dense_dims)`); unspecified elements are not variables.
    `masked=False`: the stand-in is the whole dense tensor, and every element is a variable,
    as torch's non-masked gradcheck perturbs every element. Gradients through `function`
    are torch's gradients of the original function at the original sparse inputs, mapped
    onto the stand-ins; so a dense check of `(function, inputs)` is torch's sparse check,
    except, for `masked=True`, that the gradient must also vanish off the specified
    elements: `masked_off_pattern_comparisons` checks that.
    """

    function: Callable[..., Any]
    inputs: tuple[Any, ...]
    names: dict[int, str] = field(default_factory=dict)
    masked: bool = False


def sparse_as_dense(fn: Callable[..., Any], inputs: Sequence[Any], *, masked: bool) -> SparseView:
    """Replace each sparse input (COO, CSR, CSC, BSR, BSC) by a dense stand-in.

    **Arguments:** `fn`, `inputs` as for `gradcheck`; `masked` with torch's meaning.
    **Returns:** a `SparseView`; inputs that are not sparse are passed through unchanged.
    """
    from torch.autograd.gradcheck import _densify

    inputs = tuple(inputs)
    patterns: dict[int, tuple[_Pattern, torch.Tensor | None, torch.Tensor | None]] = {}
    stand_ins = list(inputs)
    names: dict[int, str] = {}
    for i, x in enumerate(inputs):
        if not (isinstance(x, torch.Tensor) and x.layout in _SPARSE_LAYOUTS):
            continue
        if x.is_complex():
            raise ValueError(
                f"inputs[{i}] is a complex sparse tensor; check its real and imaginary parts "
                f"as two real sparse inputs"
            )
        base = x.detach()
        if base.layout == torch.sparse_coo:
            base = base.coalesce()
        kind = str(x.layout).replace("torch.", "")
        if masked:
            pattern = _Pattern(base)
            values = base._values() if base.layout == torch.sparse_coo else base.values()
            stand_ins[i] = values.detach().clone().requires_grad_(x.requires_grad)
            patterns[i] = (pattern, None, None)
            names[i] = f"inputs[{i}] ({kind}, {values.numel()} specified values)"
        else:
            pattern = _Pattern(_densify(base))
            dense = base.to_dense()
            stand_ins[i] = dense.clone().requires_grad_(x.requires_grad)
            patterns[i] = (pattern, base, dense)
            names[i] = f"inputs[{i}] ({kind}, all {dense.numel()} elements)"

    def function(*args: Any) -> Any:
        args = list(args)
        for i, (pattern, original, original_values) in patterns.items():
            args[i] = _Rebuild.apply(args[i], pattern, masked, original, original_values)
        return fn(*args)

    return SparseView(function=function, inputs=tuple(stand_ins), names=names, masked=masked)


def masked_off_pattern_comparisons(
    fn: Callable[..., Any], inputs: Sequence[Any], *, seed: int = 0,
) -> list[Comparison]:
    """Masked semantics: the gradient of a sparse input is zero off its specified elements.

    Torch's masked gradcheck perturbs only specified elements, so its numerical Jacobian
    is zero elsewhere and the analytical one must be too (a backward that returns a dense
    gradient, as `to_dense(masked_grad=False)` does, fails). Checked on a random
    cotangent projection, at the caller's sparse inputs.
    """
    check = "masked gradient off the specified elements"
    sparse = [
        i for i in _diff_indices(inputs) if inputs[i].layout in _SPARSE_LAYOUTS
    ]
    if not sparse:
        return []
    _, diff, outs = _fresh_call(fn, inputs)
    douts = [o for _, o in _differentiable(outs)]
    if not douts:
        return []
    gen = _generator(seed)
    cots = [_random_like(o, gen) for o in douts]
    targets = [inputs[i] for i in sparse]
    try:
        grads = torch.autograd.grad(douts, targets, cots, allow_unused=True)
    except Exception as exc:
        return [_failure(
            check, _names(sparse), "all outputs", f"the backward raised {_first_line(exc)}",
            source="exact",
        )]
    comparisons = []
    for i, g in zip(sparse, grads):
        if g is None:
            continue
        base = inputs[i].detach()
        pattern = _Pattern(base.coalesce() if base.layout == torch.sparse_coo else base)
        dense = g.to_dense() if g.layout != torch.strided else g
        off = dense[~pattern.specified]
        err = float(off.abs().max()) if off.numel() else 0.0
        if math.isnan(err):
            err = math.inf
        comparisons.append(Comparison(
            check=check, input=f"inputs[{i}]", output="all outputs", error=err, tolerance=0.0,
            tolerance_source="exact: unspecified elements are not variables under masked=True",
            passed=err == 0.0,
            notes=[] if err == 0.0 else [
                f"the gradient of inputs[{i}] is nonzero at unspecified elements (largest "
                f"|value| {err:.3e}): under masked semantics only specified elements have a "
                f"gradient; mask it to the input's pattern (grad.sparse_mask(input), "
                f"to_dense(masked_grad=True)), or check with masked=False"
            ],
        ))
    return comparisons


# -- complex inputs and outputs ------------------------------------------------------------


class _Resolved(torch.autograd.Function):
    """Identity whose backward resolves negative and conjugate views: the gradient of an
    imaginary part is often a lazily negated view, which numpy conversion refuses."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.resolve_conj().resolve_neg()

    @staticmethod
    def jvp(ctx, tangent):
        # Forward mode through the view: the (real) tangent as it is, as a view, since the
        # forward returns one.
        return tangent.view_as(tangent)


@dataclass
class ComplexView:
    """A function of complex tensors as a function of real ones.

    Each complex input with `requires_grad=True` becomes two real inputs (its real and
    imaginary parts); each complex output becomes two real outputs. With PyTorch's
    convention (the gradient of a real loss `L` w.r.t. `z = x + iy` is
    `dL/dx + i dL/dy`, the conjugate Wirtinger derivative times 2), reverse mode through
    `function` is exactly the real chain rule of the real map, so a real check of
    `(function, inputs)` checks the complex rule: a wrong conjugate shows as a wrong
    Jacobian. Torch's gradcheck makes the same split (`_real_and_imag_input/_output`).
    """

    function: Callable[..., Any]
    inputs: tuple[Any, ...]
    input_names: list[str]
    output_names: list[str]


def complex_as_real(fn: Callable[..., Any], inputs: Sequence[Any]) -> ComplexView:
    """Split the complex inputs and outputs of `fn` into real and imaginary parts."""
    inputs = tuple(inputs)
    layout: list[tuple[int, bool]] = []  # (original index, is split)
    real_inputs: list[Any] = []
    input_names: list[str] = []
    for i, x in enumerate(inputs):
        if isinstance(x, torch.Tensor) and x.is_complex() and x.requires_grad:
            if x.layout != torch.strided:
                raise ValueError(
                    f"inputs[{i}] is a complex {x.layout} tensor; convert it with to_dense() "
                    f"or check its parts as real sparse inputs"
                )
            layout.append((i, True))
            for part, name in ((x.real, "real"), (x.imag, "imag")):
                real_inputs.append(part.detach().clone().requires_grad_(True))
                input_names.append(f"inputs[{i}].{name}")
        else:
            layout.append((i, False))
            real_inputs.append(x)
            if isinstance(x, torch.Tensor) and x.requires_grad:
                input_names.append(f"inputs[{i}]")

    def function(*args: Any) -> tuple[Any, ...]:
        rebuilt, pos = [], 0
        for _, split in layout:
            if split:
                rebuilt.append(torch.complex(_Resolved.apply(args[pos]), _Resolved.apply(args[pos + 1])))
                pos += 2
            else:
                rebuilt.append(args[pos])
                pos += 1
        outs = _as_tuple(fn(*rebuilt))
        flat: list[Any] = []
        for o in outs:
            if isinstance(o, torch.Tensor) and o.is_complex():
                # Conjugate and negative views resolved: their bits would follow the parts.
                o = o.resolve_conj()
                flat += [torch.real(o).resolve_neg(), torch.imag(o).resolve_neg()]
            else:
                flat.append(o)
        return tuple(flat)

    with torch.enable_grad():
        sample = _as_tuple(fn(*inputs))
    output_names: list[str] = []
    for k, o in enumerate(sample):
        name = _out_name(k, len(sample))
        if isinstance(o, torch.Tensor) and o.is_complex():
            output_names += [f"{name}.real", f"{name}.imag"]
        else:
            output_names.append(name)
    return ComplexView(function=function, inputs=tuple(real_inputs),
                       input_names=input_names, output_names=output_names)
