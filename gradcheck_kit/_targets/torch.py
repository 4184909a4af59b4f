"""The torch adapter: tensors that require grad are the differentiable inputs."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from ._base import (
    RNG_SEED, CheckInputError, ComplexOutputs, Target, call_fn, first_sentence,
    scalar_output_required,
)
from ._rng import fresh_generator, is_generator
from .torch_promotion import Promotion, parse_promote, reachable_modules

__all__ = ["TorchTarget", "module_state_keeper", "generator_copy", "vjp_function"]


class TorchTarget(Target):
    framework = "torch"

    def __init__(
        self,
        fn: Callable[..., Any],
        inputs: Sequence[Any],
        *,
        grad: Callable[..., Any] | None = None,
        grad_in_forward: bool = False,
        input_names: Sequence[str] | None = None,
        promote: Any = None,
    ) -> None:
        super().__init__(grad)
        parse_promote(promote)  # a wrong promote= is an error whatever the inputs' dtypes
        self._fn = fn
        self._promote = promote
        self._promotion: Promotion | None = None
        # Tensors inside nested tuples, lists and dicts of the inputs (a parameter dict) are
        # checked like top-level ones: the inputs are seen as their leaves, named by path.
        self._structure, leaves = _flatten_inputs(tuple(inputs), "inputs", names=input_names)
        self._names = [name for name, _ in leaves]
        self._inputs = tuple(leaf for _, leaf in leaves)
        self._diff: list[int] = []
        for i, x in enumerate(self._inputs):
            if not isinstance(x, torch.Tensor):
                continue
            if x.layout != torch.strided:
                raise CheckInputError(
                    f"{self._names[i]} has layout {x.layout}; only dense tensors are checked. "
                    f"Pass {self._names[i]}.to_dense() instead"
                )
            if x.is_complex() and x.requires_grad:
                raise CheckInputError(
                    f"{self._names[i]} is complex ({x.dtype}); complex inputs are not checked yet. "
                    f"Check torch.view_as_real({self._names[i]}) as a real input instead"
                )
            if x.requires_grad or (grad is not None and x.is_floating_point()):
                self._diff.append(i)
        if not self._diff:
            integer = [
                i for i, x in enumerate(self._inputs)
                if isinstance(x, torch.Tensor) and not (x.is_floating_point() or x.is_complex())
            ]
            if integer and not any(
                isinstance(x, torch.Tensor) and x.is_floating_point() for x in self._inputs
            ):
                i = integer[0]
                raise CheckInputError(
                    f"{self._names[i]} is an integer tensor ({self._inputs[i].dtype}), and only "
                    f"floating-point tensors have gradients. Convert it with "
                    f"{self._names[i]}.double().requires_grad_()"
                )
            raise CheckInputError(
                "no input requires grad, so there is no gradient to check. Call "
                ".requires_grad_() on the tensors whose gradients should be checked"
            )
        for i in self._diff:
            if self._inputs[i].device.type == "meta":
                raise CheckInputError(
                    f"{self._names[i]} is on the meta device, which holds no values to "
                    f"differentiate at; create it on cpu or cuda"
                )
        diff = [self._inputs[i] for i in self._diff]
        self.generator_names = tuple(n for n, x in zip(self._names, self._inputs) if is_generator(x))
        self.input_names = [self._names[i] for i in self._diff]
        self.native_dtypes = [str(x.dtype).replace("torch.", "") for x in diff]
        self.base = [x.detach().to(dtype=torch.float64).cpu().numpy().copy() for x in diff]
        self.device = str(diff[0].device)
        self._grad_in_forward = grad_in_forward
        self._native_ok = True
        # Floating-point outputs that do not require grad while others do (not checked),
        # and those of them seen to change with the inputs.
        self._unchecked: list[int] = []
        self._unchecked_ref: dict[tuple[int, bool], torch.Tensor] = {}
        self._moving: set[int] = set()
        # Whether the outputs' graph holds a derivative rule of the user's own (seen in
        # the first backward pass, `_vjps_here`); None until then.
        self._own_rules: bool | None = None

        try:
            self.function_evals += 1
            outs = self._raw_outputs(self.base, native=True, track=True)
        except CheckInputError:
            raise
        except Exception as exc:
            raise self._numpy_leaves_error(exc) or exc
        self._check_outputs(outs)
        if grad is not None and (len(outs) != 1 or outs[0].numel() != 1):
            raise scalar_output_required([tuple(o.shape) for o in outs], "torch's own backward")
        self._n_outputs = len(outs)
        self.output_names = (
            ["output"] if len(self._out_index) == 1 and self._single_output
            else [f"outputs[{k}]" for k in self._out_index]
        )
        self.output_shapes = [tuple(outs[k].shape) for k in self._out_index]
        self._decide_promotion()
        # Compared only with a promoted check's float64 outputs, in their own dtype (the
        # difference with float64 values is exact): half or a quarter of float64's memory.
        self.native_outputs = (
            [_native_numpy(outs[k]) for k in self._out_index] if self.promoted else []
        )
        if not self.promoted:  # native is work precision: one evaluation saved
            self._first_call = [self._to_numpy(outs[k]) for k in self._out_index]
        self._probe()

    def _numpy_leaves_error(self, exc: Exception) -> CheckInputError | None:
        """Where fn rejects the inputs and some are numpy arrays: name them and the fix."""
        arrays = [
            (n, x) for n, x in zip(self._names, self._inputs) if isinstance(x, np.ndarray)
        ]
        if not arrays:
            return None
        names = ", ".join(n for n, _ in arrays)
        first, x = arrays[0]
        kind = "integer " if x.dtype.kind in "iub" else ""
        error = CheckInputError(
            f"fn raised {type(exc).__name__} ({first_sentence(exc)}) and {names} "
            f"{'is a numpy array' if len(arrays) == 1 else 'are numpy arrays'}, which a torch "
            f"function may not accept: pass {kind}arrays as tensors, torch.as_tensor({first}) "
            f"(integer ones such as labels stay constants; floating-point ones whose "
            f"gradient is wanted with requires_grad=True)"
        )
        error.__cause__ = exc
        return error

    # -- building calls ---------------------------------------------------------------------
    def _args(self, xs: Sequence[np.ndarray], native: bool, requires_grad: bool = False):
        promote = self.promoted and not native
        args = list(self._inputs)
        made = []
        for i, x in zip(self._diff, xs):
            dtype = torch.float64 if promote else self._inputs[i].dtype
            # A copy (torch.as_tensor would share memory with the engine's base point, and a
            # function that writes to its input would move that point), laid out as the
            # caller's tensor: a backward that assumes contiguous memory must meet a
            # transposed input as it would for the caller.
            t = _like(self._inputs[i], dtype)
            with torch.no_grad():
                t.copy_(torch.from_numpy(np.asarray(x, dtype=np.float64)))
            if requires_grad:
                t.requires_grad_(True)
            args[i] = t
            made.append(t)
        for i, x in enumerate(self._inputs):
            if is_generator(x):
                # Each evaluation draws from a copy in the caller's state: the same numbers
                # at every perturbed input, and the caller's generator is not advanced.
                args[i] = fresh_generator(x)
                continue
            if i in self._diff or not isinstance(x, torch.Tensor):
                continue
            # A copy, so that a function that writes to its inputs cannot change the caller's.
            y = x.detach().clone()
            if promote and y.is_floating_point():
                y = y.to(torch.float64)
            args[i] = y
        return args, made

    def _raw_outputs(self, xs, native: bool, track: bool = False):
        """The function's outputs at `xs`; with `track`, the inputs require grad.

        Grad mode stays enabled as it is for the caller: under `torch.no_grad()` PyTorch
        takes other code paths (the nested-tensor fast path of `nn.TransformerEncoder`
        zeroes padded positions). Inputs that do not require grad build no graph, so this
        costs little.
        """
        with self._state(native):
            args, _ = self._args(xs, native, requires_grad=track)
            with torch.enable_grad():
                return self._flatten(self._fn(*self._rebuild(args)))

    def _state(self, native: bool) -> Any:
        """The promoted modules and tensors in float64 for a float64 evaluation."""
        if self._promotion is None or native or not self.promoted:
            return contextlib.nullcontext()
        return self._promotion.applied()

    def _rebuild(self, leaves: Sequence[Any]) -> list[Any]:
        """The positional arguments, with `leaves` put back into the inputs' containers."""
        return list(_unflatten(self._structure, iter(leaves)))

    def _flatten(self, out: Any) -> list[Any]:
        self._single_output = isinstance(out, torch.Tensor)
        outs = [out] if isinstance(out, torch.Tensor) else out
        if not isinstance(outs, (tuple, list)):
            raise CheckInputError(
                f"the function returned a {type(out).__name__}; it must return a tensor or a "
                f"tuple or list of tensors"
            )
        for k, o in enumerate(outs):
            if not isinstance(o, torch.Tensor):
                raise CheckInputError(
                    f"the function's output {k} is a {type(o).__name__}, not a tensor; return "
                    f"tensors only (wrap numbers with torch.as_tensor)"
                )
        return list(outs)

    def _check_outputs(self, outs: list[Any]) -> None:
        self._out_index = [k for k, o in enumerate(outs) if o.is_floating_point()]
        # Outputs that do not require grad while others do are non-differentiable by
        # design (batch norm's saved statistics, ctx.mark_non_differentiable), and torch
        # defines no gradient for them; only when no output requires grad are they all
        # checked, so that a function detached by mistake is still caught.
        constant = [k for k in self._out_index if not outs[k].requires_grad]
        if self.hand_written_grad is None and constant and len(constant) == len(self._out_index):
            # No output is in autograd's graph: a check of outputs that also do not change
            # with the inputs (`probe_dependence`) would be vacuous, and the engine says so.
            self.outputs_disconnected = True
        if constant and len(constant) < len(self._out_index):
            # Which of them change with the inputs is seen in the evaluations (`_evaluate`)
            # and reported once the finite differences have moved the inputs
            # (`unchecked_notes`).
            self._unchecked = constant
            self._out_index = [k for k in self._out_index if k not in constant]
        skipped = [k for k, o in enumerate(outs) if not o.is_floating_point()]
        if skipped:
            self.notes.append(
                f"outputs {skipped} are not floating point and are not differentiated"
            )
        if any(o.is_complex() for o in outs):
            raise ComplexOutputs(
                "the function returns a complex tensor; complex outputs are not checked yet. "
                "Return torch.view_as_real(output) instead"
            )
        if not self._out_index:
            raise CheckInputError(
                "the function returns no floating-point tensor, so there is nothing to "
                "differentiate"
            )

    @staticmethod
    def _to_numpy(t: torch.Tensor) -> np.ndarray:
        t = t.detach()
        if t.dtype == torch.float64 and t.device.type == "cpu":
            # The tensor's own memory: copy, since the function may return (a view of) an
            # input, a buffer or a global that changes later.
            return t.numpy().copy()
        # Any conversion already makes a fresh tensor; a second copy would add nothing.
        return t.to(device="cpu", dtype=torch.float64).numpy()

    def _decide_promotion(self) -> None:
        if all(d == "float64" for d in self.native_dtypes):
            return
        self.promoted = True
        promotion = Promotion.build(self._fn, self._inputs, self._names, self._promote)
        self.notes += [f"left in its own dtype: {r}" for r in promotion.refused]
        tried = None
        if promotion:
            # The modules and listed tensors in float64 as well: tried first, since a
            # float64 input meeting float32 weights raises or computes in float32.
            self._promotion = promotion
            tried = self._promotion_failure()
            if tried is None:
                self.promoted_objects = list(promotion.described)
                return
            self._promotion = None
        failure = self._promotion_failure()
        if failure is not None:
            self.promoted = False
            if tried is not None:
                failure += (
                    f"; with {', '.join(promotion.described)} in float64 as well, {tried}"
                )
            self.promotion_note = f"{failure}, so finite differences run in {self.native_dtype}"

    def _promotion_failure(self) -> str | None:
        """Why float64 evaluations do not give float64 outputs (None: they do)."""
        try:
            self.function_evals += 1
            outs = self._raw_outputs(self.base, native=False)
        except Exception as exc:  # the function only works in its own dtype
            message = str(exc).splitlines()[0] if str(exc) else ""
            return (
                f"the function raised when called with float64 inputs "
                f"({type(exc).__name__}: {message})"
            )
        wrong = [k for k in self._out_index if k >= len(outs) or outs[k].dtype != torch.float64]
        if len(outs) != self._n_outputs or wrong:
            return (
                "the function does not return float64 outputs for float64 inputs (it casts "
                "internally)"
            )
        return None

    def _watch_unchecked(self, outs: list[Any], native: bool) -> None:
        """Record which unchecked outputs change between evaluations (of one precision)."""
        for k in self._unchecked:
            if k in self._moving or k >= len(outs):
                continue
            ref = self._unchecked_ref.setdefault((k, native), outs[k].detach().clone())
            same = ref.shape == outs[k].shape and torch.equal(ref, outs[k].detach())
            if not same:
                self._moving.add(k)

    def unchecked_notes(self) -> list[str]:
        """What the check says about floating-point outputs that do not require grad.

        torch defines no gradient for them and its gradcheck skips them, as this one does:
        batch norm's saved statistics and outputs a Function marks non-differentiable are
        such by design. An output detached by mistake (`.detach()`, `.data`, computed under
        `torch.no_grad()`) looks the same to autograd, but its value still changes with the
        inputs: the note says which outputs do, so a missing gradient is not skipped silently.
        """
        notes = []
        moving = [k for k in self._unchecked if k in self._moving]
        still = [k for k in self._unchecked if k not in self._moving]
        if moving:
            names = ", ".join(f"outputs[{k}]" for k in moving)
            notes.append(
                f"{names} {'does' if len(moving) == 1 else 'do'} not require grad, yet "
                f"{'its value changes' if len(moving) == 1 else 'their values change'} with "
                f"the inputs: autograd does not differentiate "
                f"{'it' if len(moving) == 1 else 'them'}, so no gradient is checked there. "
                f"If detached by mistake (.detach(), .data, torch.no_grad()), the gradient "
                f"is missing: keep it in the graph. Outputs marked non-differentiable by "
                f"design (batch-norm statistics, ctx.mark_non_differentiable) are skipped, "
                f"as torch.autograd.gradcheck skips them"
            )
        if still:
            names = ", ".join(f"outputs[{k}]" for k in still)
            notes.append(
                f"{names} {'does' if len(still) == 1 else 'do'} not require grad and "
                f"did not change with the inputs: not checked"
            )
        return notes

    # -- Target interface -------------------------------------------------------------------
    def _evaluate(self, xs, native):
        outs = self._raw_outputs(xs, native)
        self._check_count(outs)
        if self._unchecked:
            self._watch_unchecked(outs, native)
        return [self._to_numpy(outs[k]) for k in self._out_index]

    def _check_count(self, outs: Sequence[Any]) -> None:
        if len(outs) != self._n_outputs:
            raise CheckInputError(
                f"the function returned {len(outs)} outputs on one call and "
                f"{self._n_outputs} on another; it must return the same outputs every time"
            )

    def _vjps(self, cotangent_sets, native, at=None, saved_noise=0.0):
        # The backward too runs with the float64 copies in place: it reads saved tensors.
        with self._state(native):
            return self._vjps_here(cotangent_sets, native, at, saved_noise)

    def _vjps_here(self, cotangent_sets, native, at=None, saved_noise=0.0):
        args, made = self._args(self.base if at is None else at, native, requires_grad=True)
        hooks = _noisy_saved_tensors(saved_noise) if saved_noise > 0 else contextlib.nullcontext()
        with torch.enable_grad(), hooks:
            outs = self._flatten(self._fn(*self._rebuild(args)))
        self._check_count(outs)
        checked = [outs[k] for k in self._out_index]
        self._check_shapes([tuple(o.shape) for o in checked])
        if self._own_rules is None:
            self._own_rules = own_rule_in_graph(o.grad_fn for o in checked)
        results = []
        for n, cots in enumerate(cotangent_sets):
            pairs = [
                (o, torch.as_tensor(c).to(device=o.device, dtype=o.dtype))
                for o, c in zip(checked, cots)
                if c is not None and o.requires_grad
            ]
            if pairs:
                grads = torch.autograd.grad(
                    [o for o, _ in pairs], made, grad_outputs=[c for _, c in pairs],
                    retain_graph=n < len(cotangent_sets) - 1, allow_unused=True,
                )
                # Outputs that require grad while no input reaches them read their
                # tensors from somewhere else (a closure): the engine says so.
                if all(g is None for g in grads):
                    self.outputs_disconnected = True
            else:
                grads = [None] * len(made)
            results.append(
                [np.zeros(x.shape) if g is None else self._to_numpy(g) for g, x in zip(grads, self.base)]
            )
        return results

    def forward_mode_adds_power(self) -> bool:
        # Forward mode through torch's own operations checks torch's forward rules against
        # its backward rules, not the function: it is run where the graph holds a rule of
        # the user's own, or before any backward pass has shown the graph.
        return self._own_rules is None or self._own_rules

    def builtin_rules_only(self) -> bool:
        return self._own_rules is False

    def _jvp(self, tangents):
        # Dual tensors (torch.autograd.forward_ad) rather than torch.func.jvp: functorch's
        # wrapped tensors crash the process when the function calls Module.to(...), and
        # importing torch.func's transforms costs a second on the first check.
        try:
            return self._dual_jvp(tangents)
        except Exception:
            if not _load_jvp_decompositions():
                raise
            # A few ops (torch.trace, backward ops run inside the function) get their
            # forward-mode rule from decompositions that torch registers on demand.
            return self._dual_jvp(tangents)

    def _dual_jvp(self, tangents):
        import torch.autograd.forward_ad as fwAD

        args, made = self._args(self.base, native=False)
        with self._state(False), fwAD.dual_level(), torch.enable_grad():
            full = list(args)
            for i, m, t in zip(self._diff, made, tangents):
                tangent = torch.empty_like(m)
                tangent.copy_(torch.from_numpy(np.asarray(t, dtype=np.float64)))
                full[i] = _make_dual(m, tangent, fwAD._current_level)
            outs = self._flatten(self._fn(*self._rebuild(full)))
            results = []
            for k in self._out_index:
                primal, tangent = fwAD.unpack_dual(outs[k])
                results.append(
                    np.zeros(tuple(primal.shape)) if tangent is None else self._to_numpy(tangent)
                )
        return results

    def _call_grad(self, xs, native):
        args, _ = self._args(xs, native)
        with self._state(native):
            return self.hand_written_grad(*self._rebuild(args))


def own_rule_in_graph(roots: Iterable[Any]) -> bool:
    """Whether the autograd graph below the nodes `roots` (None entries skipped) holds a
    derivative rule written outside torch.

    Such rules are the nodes of `autograd.Function`s (a `BackwardCFunction`, as are those
    of `torch.library` ops with `register_autograd` and of `torch.compile`), other node
    types defined in Python, and C++ `torch::autograd::Function`s (type `CppFunction`,
    named `CppNode<...>`); torch's own nodes (`MulBackward0`) are built-in types. The
    graph is walked iteratively, each node once: a deep graph meets no recursion limit.
    """
    stack = [n for n in roots if n is not None]
    seen = set(stack)  # the nodes themselves: an id could be reused once one is freed
    while stack:
        node = stack.pop()
        if _own_rule(node):
            return True
        for child, _ in node.next_functions:
            if child is not None and child not in seen:
                seen.add(child)
                stack.append(child)
    return False


def _own_rule(node: Any) -> bool:
    if type(node).__module__ == "builtins":
        return "CppNode" in node.name()
    forward_cls = getattr(node, "_forward_cls", None)
    # gradcheck_kit's own Functions (the sparse and complex views' rebuilds) are not the
    # user's code.
    return not getattr(forward_cls, "__module__", "").startswith("gradcheck_kit.")


def _noisy_saved_tensors(relative: float):
    """Saved-tensor hooks that hand the backward its floating-point saved tensors moved by
    `relative` of their size, with random signs: how far the backward moves when what it
    reads from the forward is rounded (a saturated tanh's output, batch norm's statistics).
    """
    gen = torch.Generator().manual_seed(RNG_SEED)

    def unpack(t: torch.Tensor) -> torch.Tensor:
        if not t.is_floating_point() or t.numel() == 0:
            return t
        sign = torch.randint(0, 2, t.shape, generator=gen).to(dtype=t.dtype) * 2 - 1
        return t + relative * t.abs() * sign.to(t.device)

    return torch.autograd.graph.saved_tensors_hooks(lambda t: t, unpack)


def _flatten_inputs(
    x: Any, name: str, depth: int = 0, names: Sequence[str] | None = None
) -> tuple[Any, list[tuple[str, Any]]]:
    """(structure, [(name, leaf)]): tuples, lists and dicts opened, everything else a leaf.

    `names`, for the top-level tuple only, replaces the `inputs[k]` names of its items.
    """
    if depth < 8 and type(x) in (tuple, list):
        labels = names if names is not None else [f"{name}[{k}]" for k in range(len(x))]
        parts = [_flatten_inputs(v, label, depth + 1) for label, v in zip(labels, x)]
        return (type(x), [p for p, _ in parts]), [leaf for _, ls in parts for leaf in ls]
    if depth < 8 and type(x) is dict:
        keys = list(x)
        parts = [_flatten_inputs(x[k], f"{name}[{k!r}]", depth + 1) for k in keys]
        return (dict, keys, [p for p, _ in parts]), [leaf for _, ls in parts for leaf in ls]
    return None, [(name, x)]


def _unflatten(structure: Any, leaves: Any) -> Any:
    if structure is None:
        return next(leaves)
    if structure[0] is dict:
        _, keys, parts = structure
        return {k: _unflatten(p, leaves) for k, p in zip(keys, parts)}
    kind, parts = structure
    return kind(_unflatten(p, leaves) for p in parts)


def generator_copy(g: torch.Generator) -> torch.Generator:
    """A new generator on `g`'s device, in `g`'s current state."""
    return fresh_generator(g)


def _native_numpy(t: torch.Tensor) -> np.ndarray:
    """A copy of `t` on the host in its own precision (bfloat16, which numpy lacks, as
    float32: exact)."""
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        return t.to(torch.float32).numpy()
    if t.dtype in (torch.float16, torch.float32, torch.float64):
        return t.numpy().copy()
    return t.to(torch.float64).numpy()


def _like(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised tensor with `x`'s shape, device and strides, in `dtype`."""
    if x.is_contiguous() or any(st == 0 for sz, st in zip(x.shape, x.stride()) if sz > 1):
        # Contiguous, or expanded (stride 0): an expanded input's elements share memory, so
        # they could not be perturbed one at a time; those get fresh contiguous memory.
        return torch.empty(x.shape, dtype=dtype, device=x.device)
    return torch.empty_strided(tuple(x.shape), tuple(x.stride()), dtype=dtype, device=x.device)


def _make_dual(primal: torch.Tensor, tangent: torch.Tensor, level: int) -> torch.Tensor:
    # torch.autograd.forward_ad.make_dual first imports decompositions compiled with
    # torch.jit.script (deprecation warnings, a quarter second); they are loaded only
    # where a forward-mode rule is missing (see `_load_jvp_decompositions`).
    try:
        from torch._functorch.predispatch import _make_dual as make
    except ImportError:  # older torch
        return torch._VF._make_dual(primal, tangent, level=level)
    return make(primal, tangent, level=level)


def _load_jvp_decompositions() -> bool:
    """Register torch's forward-mode decompositions; False when they already were."""
    import sys
    import warnings

    name = "torch._decomp.decompositions_for_jvp"
    if name in sys.modules:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import torch._decomp.decompositions_for_jvp  # noqa: F401
    return True


def module_state_keeper(fn: Callable[..., Any], inputs: Sequence[Any] = ()) -> Callable[[], None]:
    """Give the modules `fn` reaches private copies of their buffers; return a restorer.

    Running a module in training mode updates buffers (BatchNorm's running statistics)
    on every forward; a check calls the forward many times. Swapping in copies for the
    duration leaves the caller's buffer tensors untouched, their version counters too.
    Modules are found where functions hold them: `fn` itself, the inputs, a bound
    method's object and its attributes, closure cells, default arguments,
    `functools.partial` arguments, the globals the function's code names, and, within
    those, lists, tuples, dicts and plain objects' attributes, a few levels deep.
    """
    swapped = []
    for module in _reachable_modules(fn, inputs):
        for sub in module.modules():
            for name, buf in list(sub._buffers.items()):
                if buf is not None:
                    sub._buffers[name] = buf.detach().clone()
                    swapped.append((sub, name, buf))

    def restore() -> None:
        for sub, name, buf in swapped:
            sub._buffers[name] = buf

    return restore


def _reachable_modules(fn: Any, inputs: Sequence[Any] = ()) -> list[torch.nn.Module]:
    return [module for module, _ in reachable_modules(fn, inputs)]


# -- second order ----------------------------------------------------------------------
def vjp_function(
    fn: Callable[..., Any], inputs: Sequence[Any], grad_outputs: Any, seed: int,
    *, non_contiguous: bool = False,
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(inputs..., v...) -> J(inputs)^T v` built with `create_graph=True`, and its inputs.

    Drawn cotangents `v` are laid out non-contiguously with `non_contiguous` (torch's
    `gen_non_contig_grad_outputs`): every other element of a buffer twice as long, so a
    backward that assumes contiguous memory meets strided gradients.
    """
    diff = [k for k, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.requires_grad]
    if not diff:
        raise CheckInputError(
            "no input requires grad, so there is no gradient to check. Call "
            ".requires_grad_() on the tensors whose gradients should be checked"
        )
    first = [
        x.detach().requires_grad_(True) if k in diff
        else fresh_generator(x) if is_generator(x) else x
        for k, x in enumerate(inputs)
    ]
    # This call is outside the check proper: it too must leave buffers and generators as
    # they were.
    restore = module_state_keeper(fn, inputs)
    try:
        with torch.enable_grad():
            outs = call_fn(fn, first)
    finally:
        restore()
    outs = _torch_outputs(outs)
    # Complex outputs are differentiable too (their cotangents complex): gradcheck then
    # checks the map through real and imaginary parts.
    float_outs = [k for k, o in enumerate(outs) if o.is_floating_point() or o.is_complex()]
    if not float_outs:
        raise CheckInputError(
            "fn returns no floating-point tensor, so it has no derivative to differentiate again"
        )
    if grad_outputs is None:
        rng = np.random.default_rng(seed + 1)
        grad_outputs = tuple(
            _laid_out(
                _random_cotangent(rng, outs[k]),
                non_contiguous,
            )
            for k in float_outs
        )
    else:
        grad_outputs = (grad_outputs,) if isinstance(grad_outputs, torch.Tensor) else tuple(grad_outputs)
        if len(grad_outputs) != len(float_outs) or not all(
            isinstance(g, torch.Tensor) and g.shape == outs[k].shape
            for g, k in zip(grad_outputs, float_outs)
        ):
            raise CheckInputError(
                f"grad_outputs must hold one tensor per floating-point output of fn, of that "
                f"output's shape: {[tuple(outs[k].shape) for k in float_outs]}"
            )
    grad_outputs = tuple(
        (g.detach() if non_contiguous and not g.is_contiguous() else g.detach().clone())
        .requires_grad_(True)
        for g in grad_outputs
    )
    n = len(inputs)

    def vjp(*args: Any) -> tuple[Any, ...]:
        xs = list(args[:n])
        vs = args[n:]
        with torch.enable_grad():
            leaves = []
            for k in diff:
                if not xs[k].requires_grad:
                    xs[k] = _requiring_grad(xs[k])
                leaves.append(xs[k])
            out = _torch_outputs(fn(*xs))
            pairs = [(out[k], v) for k, v in zip(float_outs, vs) if out[k].requires_grad]
            if not pairs:
                return tuple(torch.zeros_like(x) for x in leaves)
            grads = torch.autograd.grad(
                [o for o, _ in pairs], leaves, [v for _, v in pairs],
                create_graph=True, allow_unused=True,
            )
        return tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves))

    return vjp, tuple(inputs) + grad_outputs


def _random_cotangent(rng: np.random.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal entries shaped like `like` (complex: real and imaginary parts)."""
    values = rng.standard_normal(like.shape)
    if like.is_complex():
        values = values + 1j * rng.standard_normal(like.shape)
    return torch.as_tensor(values).to(dtype=like.dtype, device=like.device)


def _requiring_grad(x: torch.Tensor) -> torch.Tensor:
    """`x` requiring grad, its forward-mode tangent kept (forward over reverse).

    The arguments are the check's own copies, so flagging them in place is safe; `detach`
    would drop a dual tensor's tangent and make forward mode over the map read zero.
    """
    try:
        return x.requires_grad_(True)
    except RuntimeError:  # not a leaf: a view or the result of an operation
        return x.view_as(x).detach().requires_grad_(True)


def _laid_out(t: torch.Tensor, non_contiguous: bool) -> torch.Tensor:
    if not non_contiguous or t.numel() <= 1:
        return t
    wide = torch.empty((*t.shape[:-1], 2 * t.shape[-1]), dtype=t.dtype, device=t.device)
    view = wide[..., ::2]
    view.copy_(t)
    return view


def _torch_outputs(outs: Any) -> tuple[Any, ...]:
    outs = (outs,) if isinstance(outs, torch.Tensor) else outs
    if not isinstance(outs, (tuple, list)) or not all(isinstance(o, torch.Tensor) for o in outs):
        raise CheckInputError(
            f"fn returned {type(outs).__name__}; gradgradcheck needs a tensor or a tuple or "
            f"list of tensors"
        )
    return tuple(outs)
