"""`gradcheck` and `gradgradcheck`: the public entry points of the engine."""

from __future__ import annotations

import time

import numpy as np
from typing import Any, Callable, Sequence

from ._dropin import _MISSING, TorchOptions, function_and_inputs, require_bool
from ._engine import Settings, run
from ._report import Report, raise_for
from ._state import preserved_global_state
from ._targets import CheckInputError, Target, framework_of, make_target
from ._targets._base import ComplexOutputs
from ._views import (
    View, jax_complex_view, jax_has_complex_inputs, needs_view, torch_view,
)

__all__ = ["gradcheck", "gradgradcheck"]

_MODES = ("auto", "fast", "full")

def gradcheck(
    func: Callable[..., Any] = _MISSING,
    inputs: Any = _MISSING,
    *,
    fn: Callable[..., Any] = _MISSING,
    grad: Callable[..., Any] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    mode: str = "auto",
    seed: int = 0,
    raise_exception: bool = True,
    promote: Any = None,
    **kw: Any,
) -> Report:
    """Check the derivatives of `fn` at `inputs` against independent oracles.

    A drop-in for `torch.autograd.gradcheck(fn, inputs)` that also works in float32,
    bfloat16 and float16, with jax functions, and with numpy functions plus a hand-written
    gradient.

    **Arguments:**
    - `func` (or `fn=`): the function. Torch: tensors in, a tensor or tuple of tensors
      out; inputs with `requires_grad=True` are checked (sparse and complex ones too).
      Jax: every floating-point input leaf is checked. Numpy: a scalar function,
      checked against `grad`.
    - `inputs`: one tensor or array, or a tuple or list of them (and of other arguments).
    - `grad`: a hand-written gradient, `grad(*inputs)` returning one gradient per
      differentiable input, for a scalar `fn`. Required for numpy inputs.
    - `atol`, `rtol`: one rule for every comparison: where either is given, the derived
      rounding allowance is replaced by `atol + rtol * |reference|`, the reference being
      the value compared against (the finite-difference value, the forward-mode value,
      the float64 gradient's norm for the reduced-precision comparison). Comparisons with
      finite differences add the finite-difference error estimate, the oracle's own
      uncertainty. Each comparison's `tolerance_source` names the derived tolerance that
      was replaced. Backward determinism is governed by `nondet_tol` alone.
    - `mode`: `"auto"` (random directional probes, O(1) evaluations in the input size;
      on a failure, the error is localised to the input element), `"fast"` (probes only),
      or `"full"` (every Jacobian element, like torch's slow mode).
    - `seed`: seeds the random probes; equal seeds give equal reports.
    - `raise_exception`: raise `GradientMismatch` on failure (for torch functions also a
      `torch.autograd.gradcheck.GradcheckError`, so a `RuntimeError`), `InconclusiveCheck`
      when the check could not decide (default), or return the report.
    - `promote`: torch only. Reduced-precision inputs are checked in float64 where the
      function allows it; by default the `nn.Module`s the function reaches (itself, a bound
      method's object, closures, globals, inputs) are then run on float64 copies of their
      floating parameters and buffers, the same values, the caller's objects untouched.
      A tensor, module, or sequence of them promotes those too (float32 weights captured
      in a closure); `False` promotes the inputs only. `report.promoted_objects` says what
      was promoted.
    - torch's options, with torch's defaults and meaning: `eps` (the first
      finite-difference step, in input units), `nondet_tol` (allowed difference between
      two identical backward passes), `fast_mode` (`True`: probes only, not localised;
      `False`, torch's full Jacobian: `mode="auto"`, whose probes find what the full
      Jacobian would and localise a failure to its elements), `check_forward_ad`
      (`True`: a missing forward-mode rule, or any disagreement between forward and
      reverse mode, fails; otherwise finite differences decide: a disagreement fails only
      where they side with forward mode, since the backward is what is checked; by
      default a torch function's forward mode is compared only where its graph holds a
      custom autograd.Function, custom op or C++ Function, `True` compares it always),
      `check_backward_ad`
      (`False`: forward mode against finite differences, the backward never called),
      `check_undefined_grad` (default `True`), `check_batched_grad`,
      `check_batched_forward_grad`, `check_grad_dtypes`, `masked`. The structural checks
      they select (and the zero-gradient check torch always runs) join the report as
      comparisons of kind `STRUCTURAL`; for jax and numpy functions the torch-only ones
      are named in a note.

    **Returns:** a `Report`, truthy if and only if every comparison passed.

    **Example:**
    ```python
    x = torch.randn(5, dtype=torch.float32, requires_grad=True)
    assert gradcheck_kit.gradcheck(torch.sin, x)
    ```
    """
    fn, inputs = function_and_inputs("gradcheck", func, fn, inputs)
    options = TorchOptions.parse(kw)
    settings = _settings(atol=atol, rtol=rtol, mode=mode, seed=seed, options=options)
    _check_flags(raise_exception)
    report = _run(
        fn, _as_tuple(inputs), grad=grad, settings=settings, options=options, promote=promote
    )
    if raise_exception:
        raise_for(report)
    return report


def gradgradcheck(
    func: Callable[..., Any] = _MISSING,
    inputs: Any = _MISSING,
    grad_outputs: Any = None,
    *,
    fn: Callable[..., Any] = _MISSING,
    gen_non_contig_grad_outputs: bool = False,
    check_rev_over_rev: bool = True,
    check_fwd_over_rev: bool = False,
    atol: float | None = None,
    rtol: float | None = None,
    mode: str = "auto",
    seed: int = 0,
    raise_exception: bool = True,
    promote: Any = None,
    **kw: Any,
) -> Report:
    """Check second derivatives: `gradcheck` of the map `(inputs, v) -> J(inputs)^T v`.

    Same conventions as `gradcheck`. `grad_outputs` (the cotangents `v`) are drawn at
    random from `seed` when not given (non-contiguous with
    `gen_non_contig_grad_outputs=True`). `check_rev_over_rev` and `check_fwd_over_rev` are
    torch's: the map is checked by reverse mode (its `check_backward_ad`) and by forward
    mode over it (its `check_forward_ad`). Works for torch and jax functions; `promote` as in
    `gradcheck`.

    **Example:**
    ```python
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    assert gradcheck_kit.gradgradcheck(torch.tanh, x)
    ```
    """
    fn, inputs = function_and_inputs("gradgradcheck", func, fn, inputs)
    for name, value in (
        ("gen_non_contig_grad_outputs", gen_non_contig_grad_outputs),
        ("check_rev_over_rev", check_rev_over_rev),
        ("check_fwd_over_rev", check_fwd_over_rev),
    ):
        require_bool(name, value)
    if not (check_rev_over_rev or check_fwd_over_rev):
        raise ValueError(
            "check_rev_over_rev=False with check_fwd_over_rev=False leaves nothing to check; "
            "set at least one of them to True"
        )
    for name in ("check_forward_ad", "check_backward_ad", "check_batched_forward_grad"):
        if name in kw:
            raise TypeError(
                f"gradgradcheck got an unexpected keyword argument {name!r}; its second-order "
                f"counterparts are check_fwd_over_rev and check_rev_over_rev"
            )
    if not check_rev_over_rev:
        for name in ("check_undefined_grad", "check_batched_grad"):
            if kw.get(name):
                raise ValueError(
                    f"{name}=True checks the backward of the first derivative, which "
                    f"check_rev_over_rev=False turns off; set {name}=False"
                )
        kw.setdefault("check_undefined_grad", False)
    kw.setdefault("masked", False)
    kw["check_forward_ad"] = check_fwd_over_rev
    kw["check_backward_ad"] = check_rev_over_rev
    options = TorchOptions.parse(kw, entry="gradgradcheck")
    settings = _settings(atol=atol, rtol=rtol, mode=mode, seed=seed, options=options)
    _check_flags(raise_exception)
    if not callable(fn):
        raise CheckInputError(
            f"fn must be callable, got a {type(fn).__name__}; pass the function to check as "
            f"the first argument"
        )
    inputs = _as_tuple(inputs)
    framework = framework_of(inputs)
    if framework not in ("torch", "jax"):
        raise CheckInputError(
            "gradgradcheck needs automatic differentiation to form the first derivative; "
            "pass torch tensors or jax arrays (for numpy, check your hand-written gradient "
            "with gradcheck(grad_component, inputs, grad=hessian_row) instead)"
        )
    # Building the first derivative calls fn once: inside the preserved state too.
    with preserved_global_state():
        from . import _second_order

        if framework == "torch":
            vjp_fn, vjp_inputs = _second_order.torch_vjp_function(
                fn, inputs, grad_outputs, seed, non_contiguous=gen_non_contig_grad_outputs
            )
        else:
            vjp_fn, vjp_inputs = _second_order.jax_vjp_function(fn, inputs, grad_outputs, seed)
        report = _run(
            vjp_fn, vjp_inputs, grad=None, settings=settings, options=options,
            grad_in_forward=framework == "torch", promote=promote,
        )
    report.notes.insert(0, "second order: checked the map (inputs, v) -> J(inputs)^T v")
    if raise_exception:
        raise_for(report)
    return report


def _run(
    fn,
    inputs,
    *,
    grad,
    settings: Settings,
    options: TorchOptions,
    grad_in_forward: bool = False,
    input_names: Sequence[str] | None = None,
    promote: Any = None,
) -> Report:
    start = time.perf_counter()
    with preserved_global_state():
        restore_modules = _keep_module_state(fn, inputs)
        try:
            target, _ = _target(
                fn, inputs, grad=grad, grad_in_forward=grad_in_forward, options=options,
                input_names=input_names, promote=promote,
            )
            if options.forward_only:
                target.use_forward_mode_only()
            # NaN and Inf in a broken backward are reported as failures, not warnings.
            with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
                report = run(target, settings)
            from ._option_checks import add_option_checks

            # On the caller's function and inputs: torch runs these checks on the sparse and
            # complex tensors themselves. Named as the report names the inputs.
            names = dict(zip((f"inputs[{k}]" for k in range(len(inputs))), input_names or ()))
            add_option_checks(
                report, fn, inputs, grad=grad, options=options, seed=settings.seed,
                names=names or None, builtin_rules_only=target.builtin_rules_only(),
            )
        finally:
            restore_modules()
    report.elapsed_s = time.perf_counter() - start
    return report


def _target(
    fn, inputs, *, grad, grad_in_forward: bool, options: TorchOptions,
    input_names: Sequence[str] | None = None, promote: Any = None,
) -> tuple[Target, View | None]:
    """The engine's target: the function itself, or for sparse and complex functions their
    dense real view (`_views.py`), named after the caller's inputs and outputs; and that
    view."""
    view = None
    viewable = grad is None and framework_of(inputs) == "torch"
    masked = bool(options.masked)

    def real_view(complex_outputs: bool) -> View | None:
        if not (complex_outputs or needs_view(inputs)):
            return None
        return torch_view(fn, inputs, masked=masked, complex_outputs=complex_outputs)

    jax_viewable = grad is None and not viewable and framework_of(inputs) == "jax"
    if viewable:
        view = real_view(False)
    elif jax_viewable and jax_has_complex_inputs(inputs):
        view = jax_complex_view(fn, inputs)
    try:
        try:
            target = _make(view, fn, inputs, grad=grad, grad_in_forward=grad_in_forward,
                           input_names=input_names, promote=promote)
        except ComplexOutputs:
            if not (viewable or jax_viewable):
                raise
            view = real_view(True) if viewable else jax_complex_view(fn, inputs)
            target = _make(view, fn, inputs, grad=grad, grad_in_forward=grad_in_forward,
                           input_names=input_names, promote=promote)
    except CheckInputError:
        raise
    except Exception as exc:
        raise CheckInputError(
            f"fn raised {type(exc).__name__} when called with the given inputs: {exc}. "
            f"gradcheck needs a function that evaluates at its inputs; fix the function "
            f"or the inputs"
        ) from exc
    if view is not None:
        view.rename(target)
    return target, view


def _make(
    view: View | None, fn, inputs, *, grad, grad_in_forward: bool,
    input_names: Sequence[str] | None, promote: Any,
) -> Target:
    if view is not None:
        # The view names its own inputs after the caller's (View.rename).
        fn, inputs, input_names = view.function, view.inputs, None
    return make_target(
        fn, inputs, grad=grad, grad_in_forward=grad_in_forward, input_names=input_names,
        promote=promote,
    )


def _keep_module_state(fn: Callable[..., Any], inputs: tuple[Any, ...]) -> Callable[[], None]:
    if framework_of(inputs) != "torch":
        return lambda: None
    from ._targets.torch import module_state_keeper

    return module_state_keeper(fn, inputs)


def _settings(*, atol, rtol, mode, seed, options: TorchOptions) -> Settings:
    if options.fast_mode is True and mode == "auto":
        mode = "fast"
    # fast_mode=False (torch's full Jacobian) stays "auto": the probes find what the full
    # Jacobian would, and a failing pair is localised element by element. mode="full"
    # costs O(n) Richardson evaluations per input (47 s against torch's 0.12 s on a
    # 64-64-10 MLP with its parameters), so it is only run where asked for by name.
    if mode not in _MODES:
        raise ValueError(f"mode={mode!r} is not a mode; use one of {list(_MODES)}")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and not (isinstance(value, (int, float)) and value >= 0):
            raise ValueError(
                f"{name}={value!r} is invalid: it must be a non-negative number, or None to "
                f"use the derived tolerance"
            )
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed={seed!r} must be an int")
    if seed < 0:
        raise ValueError(f"seed={seed} is invalid: seeds are non-negative integers")
    return Settings(
        mode=mode, seed=seed, atol=atol, rtol=rtol, step=options.eps,
        nondet_tol=options.nondet_tol, check_forward_ad=options.check_forward_ad,
        check_backward_ad=options.check_backward_ad,
    )


def _as_tuple(inputs: Any) -> tuple[Any, ...]:
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    if not inputs:
        raise CheckInputError(
            "inputs is empty, so there is nothing to check; pass the tensors or arrays to "
            "differentiate, e.g. gradcheck(fn, (x,))"
        )
    return inputs


def _check_flags(raise_exception: Any) -> None:
    require_bool("raise_exception", raise_exception)
