"""PyTorch's OpInfo samples as benchmark cases: every op correct, and with injected bugs.

For each op of `torch.testing._internal.common_methods_invocations.op_db` that supports
backward in float64, a sample (or a few) is taken and turned into `fn(*tensors that
require grad)` exactly as PyTorch's own gradcheck tests do (`op.gradcheck_wrapper`,
`sample.output_process_fn_grad`). Each sample yields:

- the correct op (scored for false alarms), and
- mutants: the op wrapped in a `torch.autograd.Function` whose backward returns the true
  VJP rewritten by a `benchmarks.mutations.Mutation`.

Whether a mutant really changes the Jacobian is decided in float64, independently of any
checker, by assembling the claimed Jacobian of the mutant and of the op row by row from
their backwards. Mutants whose change is at most `CHANGE_THRESHOLD` (equivalent mutants,
e.g. a scaled element whose gradient is zero) are kept but not scored.

Skipped samples (and why) are listed in `OpInfoSuite.skipped`: stochastic forwards,
complex or non-tensor outputs, casts to a lower precision, non-finite values, samples
above the size limit.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .cases import Case, Problem
from .ground_truth import CHANGE_THRESHOLD, relative_change, torch_claimed_jacobian
from .mutations import applicable_kinds, draw_mutation, mutate_torch

__all__ = ["OpInfoSuite", "opinfo_cases"]

_DT = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class OpInfoSuite:
    """The cases drawn from op_db, and what was left out."""

    cases: list[Case]
    ops_considered: int
    ops_used: int
    skipped: dict[str, str] = field(default_factory=dict)
    unscored_mutants: int = 0


@dataclass(frozen=True)
class _Leaf:
    """A tensor of the stored sample: float64 values and whether it is differentiated."""

    value: torch.Tensor
    requires_grad: bool


def _freeze(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return _Leaf(obj.detach().clone(), bool(obj.requires_grad))
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(x, torch.Tensor) for x in obj):
        return type(obj)(_freeze(x) for x in obj)
    return obj


def _materialize(obj: Any, dtype: str, leaves: list[torch.Tensor]) -> Any:
    """Fresh tensors in `dtype` for a stored sample; differentiated leaves are appended to
    `leaves` in PyTorch's gradcheck order (input, args, kwargs)."""
    if isinstance(obj, _Leaf):
        t = obj.value.clone()
        if t.dtype == torch.float64:
            t = t.to(_DT[dtype])
        if obj.requires_grad:
            t.requires_grad_(True)
            leaves.append(t)
        return t
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(x, _Leaf) for x in obj):
        return type(obj)(_materialize(x, dtype, leaves) for x in obj)
    if obj is torch.float64:
        return _DT[dtype]
    return obj


def _substitute(obj: Any, it: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return next(it) if obj.requires_grad else obj
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(x, torch.Tensor) for x in obj):
        return type(obj)(_substitute(x, it) for x in obj)
    return obj


def _float_outputs(out: Any) -> Any:
    """The floating outputs of an op: a tensor, or a tuple when there are several."""
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    floats = [o for o in outs if isinstance(o, torch.Tensor) and o.is_floating_point()]
    if len(floats) != len(outs) and any(not isinstance(o, torch.Tensor) for o in outs):
        raise _Skip("non-tensor output")
    if not floats:
        raise _Skip("no floating output")
    return floats[0] if len(floats) == 1 else tuple(floats)


class _Skip(Exception):
    pass


@dataclass(frozen=True)
class _Sample:
    label: str
    op: Any
    input: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    process: Callable[[Any], Any] | None

    def problem(self, dtype: str) -> tuple[Callable[..., Any], tuple[torch.Tensor, ...]]:
        leaves: list[torch.Tensor] = []
        inp = _materialize(self.input, dtype, leaves)
        args = tuple(_materialize(a, dtype, leaves) for a in self.args)
        kwargs = {k: _materialize(v, dtype, leaves) for k, v in self.kwargs.items()}
        op, process = self.op, self.process
        variant = op.get_op()

        def fn(*tensors: torch.Tensor) -> Any:
            it = iter(tensors)
            new_inp = _substitute(inp, it)
            new_args = [_substitute(a, it) for a in args]
            new_kwargs = {k: _substitute(v, it) for k, v in kwargs.items()}
            out = op.gradcheck_wrapper(variant, new_inp, *new_args, **new_kwargs)
            if process is not None:
                out = process(out)
            return _float_outputs(out)

        fn.__name__ = self.label
        return fn, tuple(leaves)


def _label(op: Any) -> str:
    return op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")


def _outputs(out: Any) -> list[torch.Tensor]:
    return list(out) if isinstance(out, tuple) else [out]


def _usable(sample_fn: Callable[..., Any], leaves: Sequence[torch.Tensor], *, max_numel: int) -> None:
    """Raise `_Skip` unless the sample is deterministic, real, finite and small enough."""
    if not leaves:
        raise _Skip("no input requires grad")
    if sum(x.numel() for x in leaves) > max_numel:
        raise _Skip(f"inputs above {max_numel} elements")
    if any(x.numel() == 0 for x in leaves):
        raise _Skip("empty input")
    with torch.no_grad():
        first = _outputs(sample_fn(*leaves))
        second = _outputs(sample_fn(*leaves))
    if sum(o.numel() for o in first) > max_numel:
        raise _Skip(f"outputs above {max_numel} elements")
    if any(o.is_complex() for o in first):
        raise _Skip("complex output")
    if any(torch.finfo(o.dtype).eps > torch.finfo(x.dtype).eps for o in first for x in leaves):
        # A cast to a lower precision is piecewise constant at that precision's scale; the
        # gradient PyTorch claims for it (straight through) is a convention, not its
        # derivative, so there is no ground truth to score a checker against.
        raise _Skip("output in a lower precision than an input (a cast)")
    if not all(torch.isfinite(o).all() for o in first):
        raise _Skip("non-finite output")
    if any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(first, second)):
        raise _Skip("stochastic forward")
    with torch.enable_grad():
        if not any(o.requires_grad for o in _outputs(sample_fn(*leaves))):
            raise _Skip("no output depends on a differentiable input")


def _samples(op: Any, *, per_op: int, max_numel: int, seed: int) -> tuple[list[tuple[_Sample, Any]], str]:
    """Up to `per_op` usable samples of `op`, with the reason when there are none."""
    torch.manual_seed(seed)
    reason = "no sample"
    chosen: list[tuple[_Sample, Any]] = []
    try:
        samples = list(op.sample_inputs("cpu", torch.float64, requires_grad=True))
    except Exception as exc:  # a sample generator that fails is the op's problem, not ours
        return [], f"sample_inputs raised {type(exc).__name__}"
    for s in samples:
        sample = _Sample(_label(op), op, _freeze(s.input), tuple(_freeze(a) for a in s.args),
                         {k: _freeze(v) for k, v in s.kwargs.items()}, s.output_process_fn_grad)
        try:
            fn, leaves = sample.problem("float64")
            _usable(fn, leaves, max_numel=max_numel)
            true = torch_claimed_jacobian(fn, leaves)
            if not np.all(np.isfinite(true)):
                raise _Skip("non-finite Jacobian")
        except _Skip as skip:
            reason = str(skip)
            continue
        except Exception as exc:  # the op rejects this sample in our set-up; try the next
            reason = f"{type(exc).__name__}: {str(exc)[:120]}"
            continue
        chosen.append((sample, true))
        if len(chosen) == per_op:
            break
    return chosen, reason


def _case(sample: _Sample, index: int, *, mutation: Any = None, buggy: bool | None, change: float | None) -> Case:
    def build(dtype: str) -> Problem:
        fn, leaves = sample.problem(dtype)
        if mutation is not None:
            fn = mutate_torch(fn, mutation)
        return Problem(fn, leaves)

    def reference(dtype: str) -> Problem:
        fn, leaves = sample.problem(dtype)
        return Problem(fn, leaves)

    name = f"{sample.label}#{index}" + (f"/{mutation.kind}" if mutation is not None else "")
    return Case(
        name=name,
        suite="opinfo",
        category=mutation.kind if mutation is not None else "correct op",
        framework="torch",
        buggy=buggy,
        build=build,
        reference=reference,
        change=change,
        description=mutation.description if mutation is not None else "the op itself",
    )


def opinfo_cases(
    *,
    limit: int | None = 100,
    samples_per_op: int = 1,
    mutants_per_sample: int = 4,
    max_numel: int = 512,
    seed: int = 0,
    ops: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> OpInfoSuite:
    """Build OpInfo cases: the correct op and `mutants_per_sample` mutants per sample.

    **Arguments:**
    - `limit`: how many ops to draw (a fixed-seed random subset of the eligible ops, in
      name order); `None` for all.
    - `samples_per_op`: usable samples taken per op.
    - `mutants_per_sample`: mutation kinds drawn (without repetition) per sample.
    - `max_numel`: largest total number of input (and of output) elements of a sample.
    - `seed`: for the op subset, the samples and the mutations.
    - `ops`: take exactly these ops (labels such as "sin" or "softmax.with_dtype") instead
      of a random subset.
    - `progress`: called with a line per op.

    **Returns:** an `OpInfoSuite`.

    **Example:**
    >>> suite = opinfo_cases(limit=3, mutants_per_sample=1)
    >>> len(suite.cases) <= 6
    True
    """
    from torch.testing._internal.common_methods_invocations import op_db

    eligible = sorted(
        (op for op in op_db if op.supports_autograd and torch.float64 in op.supported_backward_dtypes("cpu")),
        key=_label,
    )
    if ops is not None:
        unknown = sorted(set(ops) - {_label(op) for op in eligible})
        if unknown:
            raise ValueError(f"ops={unknown} are not ops of op_db with float64 backward; "
                             "use labels such as 'sin' or 'softmax.with_dtype'")
        eligible = [op for op in eligible if _label(op) in set(ops)]
    elif limit is not None and limit < len(eligible):
        pick = np.sort(np.random.default_rng(seed).choice(len(eligible), size=limit, replace=False))
        eligible = [eligible[i] for i in pick]
    suite = OpInfoSuite(cases=[], ops_considered=len(eligible), ops_used=0)
    for op in eligible:
        label = _label(op)
        op_seed = zlib.crc32(label.encode()) ^ seed
        chosen, reason = _samples(op, per_op=samples_per_op, max_numel=max_numel, seed=op_seed)
        if not chosen:
            suite.skipped[label] = reason
            continue
        suite.ops_used += 1
        rng = np.random.default_rng(op_seed)
        for index, (sample, true) in enumerate(chosen):
            suite.cases.append(_case(sample, index, buggy=False, change=0.0))
            fn, leaves = sample.problem("float64")
            with torch.no_grad():
                outs = _outputs(fn(*leaves))
            in_shapes = [tuple(x.shape) for x in leaves]
            out_shapes = [tuple(o.shape) for o in outs]
            kinds = applicable_kinds(in_shapes, out_shapes)
            for kind in rng.choice(kinds, size=min(mutants_per_sample, len(kinds)), replace=False):
                mutation = draw_mutation(str(kind), in_shapes, out_shapes, rng)
                try:
                    claimed = torch_claimed_jacobian(mutate_torch(fn, mutation), leaves)
                except Exception as exc:  # the mutant cannot be differentiated here
                    suite.skipped[f"{label}/{kind}"] = f"{type(exc).__name__}: {str(exc)[:120]}"
                    continue
                change = relative_change(claimed, true)
                # A mutant that leaves the Jacobian (almost) unchanged is an equivalent
                # mutant: neither a bug to find nor a correct op; it is kept unscored.
                buggy: bool | None = True if change > CHANGE_THRESHOLD else None
                suite.unscored_mutants += buggy is None
                suite.cases.append(_case(sample, index, mutation=mutation, buggy=buggy, change=change))
        if progress is not None:
            progress(f"opinfo: {label}: {len(chosen)} sample(s)")
    return suite
