"""torch's structural checks (`check_undefined_grad`, `check_batched_grad`, ...) in a report.

The engine compares derivatives; torch's gradcheck options switch further checks on or
off that are not comparisons of two oracles (the backward copes with undefined output
gradients, the vmapped rule equals the loop, the gradient has the input's dtype). They run
here, on the caller's function and inputs as given, and join the report as `Comparison`s
of kind `STRUCTURAL`: a failing one fails the report, and `str(report)` says why. Options
that apply to torch only are named in a note for other frameworks.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from ._dropin import TorchOptions
from ._report import Report
from ._targets import CheckInputError, framework_of

__all__ = ["add_option_checks"]

# Options whose checks exist for torch functions only, with their values that ask for them.
_TORCH_ONLY = {
    "check_batched_grad": True,
    "check_batched_forward_grad": True,
    "check_grad_dtypes": True,
    "masked": True,
}


def add_option_checks(
    report: Report,
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    grad: Callable[..., Any] | None,
    options: TorchOptions,
    seed: int,
    names: dict[str, str] | None = None,
    builtin_rules_only: bool = False,
) -> None:
    """Run the structural checks `options` select on `(fn, inputs)`; add them to `report`.

    `names`: the report's names of inputs (`inputs[k]` -> a parameter's dotted name).
    `builtin_rules_only`: the engine saw only torch's own derivative rules in the graph;
    the checks that torch runs by default then test torch, not the function, and are
    skipped on dense inputs unless asked for by name (`_skipped_by_default`).
    """
    notes = _option_notes(options)
    framework = framework_of(inputs)
    if framework != "torch" or grad is not None:
        what = "a hand-written gradient" if grad is not None else f"{framework} functions"
        asked = [name for name, value in _TORCH_ONLY.items() if getattr(options, name) is value]
        if asked:
            notes.append(
                f"{', '.join(asked)}: torch's checks of torch's autograd, which do not apply "
                f"to {what}; not run"
            )
        report.notes += notes
        return
    from ._targets import torch_options

    structural = options.structural()
    if builtin_rules_only and _dense(inputs):
        skipped = _skipped_by_default(options)
        structural.update(skipped)
        if skipped:
            notes.append(
                "torch's structural checks of the backward (zero and undefined output "
                "gradients, gradient attributes) not run: every derivative rule in the graph "
                "is torch's own; pass check_undefined_grad=True to run them"
            )
    counted = _Counted(fn)
    try:
        found = torch_options.option_comparisons(
            counted, torch_options.private_inputs(inputs), **structural, seed=seed,
        )
    except CheckInputError:
        raise
    except Exception as exc:  # the function itself raised: the engine's calls succeeded
        raise CheckInputError(
            f"fn raised {type(exc).__name__} in torch's structural checks (undefined, zero or "
            f"batched output gradients): {exc}"
        ) from exc
    for c in found if names else ():
        c.input = ", ".join(names.get(part, part) for part in c.input.split(", "))
    report.comparisons += found
    report.function_evals += counted.calls
    report.notes += notes


def _skipped_by_default(options: TorchOptions) -> dict[str, bool]:
    """The structural checks torch runs by default, off, unless the caller named one.

    Zero and undefined output gradients and the gradients' dtype, device, shape and
    layout test each derivative rule's handling of what the engine passes it: for torch's
    own rules on dense tensors that is torch's test suite's concern, and the three cost a
    forward and a backward each (a third of a check of a cheap function). Masked checks,
    and callers who pass `check_undefined_grad` or `check_grad_dtypes`, keep all of them.
    """
    if options.masked or not options.check_backward_ad or (
        options.given & {"check_undefined_grad", "check_grad_dtypes"}
    ):
        return {}
    return {"check_undefined_grad": False, "check_zero_and_attributes": False}


def _dense(inputs: Sequence[Any]) -> bool:
    """Whether every tensor among `inputs` is a dense (strided), real one."""
    import torch

    tensors = [x for x in inputs if isinstance(x, torch.Tensor)]
    return all(x.layout == torch.strided and not x.is_complex() for x in tensors)


def _option_notes(options: TorchOptions) -> list[str]:
    notes = []
    if "fast_mode" in options.given:
        notes.append(
            "fast_mode=True: random probes only, not localised on failure" if options.fast_mode
            else "fast_mode=False: random probes, and a failing pair localised to its "
            "elements (mode='auto'); mode='full' compares every Jacobian element"
        )
    if "eps" in options.given and options.eps is not None:
        notes.append(
            f"eps={options.eps:g}: the first finite-difference step (Richardson extrapolation "
            f"refines from it)"
        )
    return notes


class _Counted:
    """`fn`, counting its calls (the report's cost includes the structural checks)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self.fn(*args)
