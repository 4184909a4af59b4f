"""The checkers being compared: gradcheck_kit and the anchors, behind one interface.

Each checker takes a `Case` and a freshly built `Problem` and returns an `Outcome`:
whether it flagged the function, how many times it called the function and how long it
took. Function calls are counted by wrapping `fn`, the same way for every checker.

Anchors (measured in the same run, on the same problems):
- `torch.autograd.gradcheck` / `gradgradcheck`, slow and fast mode, default settings;
- the same in float32 with hand-tuned `eps=1e-3, atol=rtol=1e-2`;
- `jax.test_util.check_grads` with `modes=("rev",)`, and with `("fwd", "rev")` where
  the function supports forward mode (a `custom_vjp` function does not).
numpy problems (hand-written gradients) reach the torch anchors through a
`torch.autograd.Function` that calls `fn` in its forward and `grad` in its backward.
"""

from __future__ import annotations

import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .cases import Case, Problem

__all__ = ["Outcome", "Checker", "CHECKERS", "KIT", "checker_names"]

KIT = "gradcheck_kit"


@dataclass
class Outcome:
    """What one checker said about one problem.

    `flagged` is True when the check did not pass, including when the checker raised
    (`raised` then holds the exception); `detail` is the checker's own account.
    """

    flagged: bool
    function_evals: int
    seconds: float
    raised: str | None = None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class _Counted:
    """`fn` with a call counter."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.fn(*args, **kwargs)


@dataclass(frozen=True)
class Checker:
    """A named way of checking a problem.

    **Arguments:**
    - `name`: shown in tables.
    - `frameworks`: the problem frameworks it can check.
    - `dtypes`: the dtypes it is run in (`None`: all).
    - `check`: `check(case, problem, counted_fn) -> (flagged, detail, extra)`; raising
      counts as flagged.
    - `applies`: `applies(case, problem)`; False skips the problem (no record), e.g. forward
      mode on a `custom_vjp` function.

    **Example:**
    >>> outcome = CHECKERS[1].run(case, case.build("float64"))
    """

    name: str
    frameworks: tuple[str, ...]
    check: Callable[[Case, Problem, Callable[..., Any]], tuple[bool, str, dict[str, Any]]]
    dtypes: tuple[str, ...] | None = None
    applies: Callable[[Case, Problem], bool] | None = None

    def supports(self, case: Case, dtype: str) -> bool:
        return case.framework in self.frameworks and (self.dtypes is None or dtype in self.dtypes)

    def run(self, case: Case, problem: Problem) -> Outcome | None:
        """Run the check, or return None when it does not apply to this problem."""
        if self.applies is not None and not self.applies(case, problem):
            return None
        counted = _Counted(problem.fn)
        _seed_everything()
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                flagged, detail, extra = self.check(case, problem, counted)
            raised = None
        except Exception as exc:  # a checker that raises has not passed the function
            flagged, detail, extra = True, "", {}
            raised = f"{type(exc).__name__}: {_first_lines(str(exc), 6)}"
            extra["traceback_tail"] = _first_lines("".join(traceback.format_exc().splitlines(True)[-6:]), 6)
        seconds = time.perf_counter() - start
        return Outcome(flagged=bool(flagged), function_evals=counted.calls, seconds=seconds, raised=raised,
                       detail=detail, extra=extra)


def _first_lines(text: str, n: int) -> str:
    lines = text.strip().splitlines()
    return "\n".join(lines[:n]) + ("\n..." if len(lines) > n else "")


def _seed_everything() -> None:
    # torch's fast mode and gradgradcheck draw their probes from the global RNG; a fixed
    # seed per check makes every run repeatable.
    import torch

    torch.manual_seed(0)
    np.random.seed(0)


# ---- gradcheck_kit ----------------------------------------------------------------------


def _kit_check(case: Case, problem: Problem, fn: Callable[..., Any]) -> tuple[bool, str, dict[str, Any]]:
    import gradcheck_kit

    inputs = problem.inputs
    if case.order == 2:
        report = gradcheck_kit.gradgradcheck(fn, inputs, raise_exception=False)
    elif problem.grad is not None:
        report = gradcheck_kit.gradcheck(fn, inputs, grad=problem.grad, raise_exception=False)
    else:
        report = gradcheck_kit.gradcheck(fn, inputs, raise_exception=False)
    extra = {
        "worst_margin": _finite(report.worst_margin),
        "kit_function_evals": report.function_evals,
        "kit_backward_evals": report.backward_evals,
        "kit_forward_evals": report.forward_evals,
        "promoted": report.promoted,
        "report": str(report)[:4000],
    }
    return (not report.passed), _kit_summary(report), extra


def _finite(x: float) -> float | str:
    return x if np.isfinite(x) else str(x)


def _kit_summary(report: Any) -> str:
    if report.errors:
        return "error: " + report.errors[0][:300]
    shown = report.failures or sorted(report.comparisons, key=lambda c: -c.margin)[:1]
    if not shown:
        return "no comparisons"
    c = shown[0]
    return (f"{c.check} {c.input}->{c.output}: error {c.error:.3g} vs tol {c.tolerance:.3g} "
            f"(margin {c.margin:.3g})")


# ---- torch anchors ----------------------------------------------------------------------


def numpy_as_torch(problem: Problem, fn: Callable[..., Any]) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """A torch function and inputs that compute numpy `fn` with backward `problem.grad`."""
    import torch

    class HandWritten(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *ts: Any) -> Any:
            arrays = [t.detach().numpy().copy() for t in ts]
            ctx.arrays = arrays
            return torch.as_tensor(np.asarray(fn(*arrays)), dtype=ts[0].dtype)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            grads = problem.grad(*ctx.arrays)
            return tuple(g * torch.as_tensor(np.asarray(gr), dtype=g.dtype) for gr in grads)

    inputs = tuple(torch.from_numpy(np.array(x, copy=True)).requires_grad_(True) for x in problem.inputs)
    return HandWritten.apply, inputs


def _torch_check(*, fast: bool, tuned: bool) -> Callable[..., tuple[bool, str, dict[str, Any]]]:
    def check(case: Case, problem: Problem, fn: Callable[..., Any]) -> tuple[bool, str, dict[str, Any]]:
        import sys

        import torch

        gradcheck_error = sys.modules["torch.autograd.gradcheck"].GradcheckError
        if case.framework == "numpy":
            fn, inputs = numpy_as_torch(problem, fn)
        else:
            inputs = problem.inputs
        kw: dict[str, Any] = {"fast_mode": fast, "raise_exception": True}
        if tuned:
            kw.update(eps=1e-3, atol=1e-2, rtol=1e-2)
        runner = torch.autograd.gradgradcheck if case.order == 2 else torch.autograd.gradcheck
        try:
            runner(fn, inputs, **kw)
        except gradcheck_error as exc:
            return True, _first_lines(str(exc), 3), {}
        return False, "", {}

    return check


# ---- jax anchors ------------------------------------------------------------------------


def _supports_forward_mode(case: Case, problem: Problem) -> bool:
    import jax

    try:
        jax.jvp(problem.fn, tuple(problem.inputs), tuple(problem.inputs))
    except Exception:  # a custom_vjp function refuses forward mode
        return False
    return True


def _jax_check(modes: tuple[str, ...]) -> Callable[..., tuple[bool, str, dict[str, Any]]]:
    def check(case: Case, problem: Problem, fn: Callable[..., Any]) -> tuple[bool, str, dict[str, Any]]:
        from jax.test_util import check_grads

        try:
            check_grads(fn, tuple(problem.inputs), order=case.order, modes=modes)
        except AssertionError as exc:
            return True, _first_lines(str(exc), 3), {}
        return False, "", {}

    return check


CHECKERS: tuple[Checker, ...] = (
    Checker(KIT, ("torch", "jax", "numpy"), _kit_check),
    Checker("torch slow", ("torch", "numpy"), _torch_check(fast=False, tuned=False)),
    Checker("torch fast", ("torch", "numpy"), _torch_check(fast=True, tuned=False)),
    Checker("torch slow tuned", ("torch", "numpy"), _torch_check(fast=False, tuned=True), dtypes=("float32",)),
    Checker("torch fast tuned", ("torch", "numpy"), _torch_check(fast=True, tuned=True), dtypes=("float32",)),
    Checker("jax rev", ("jax",), _jax_check(("rev",))),
    Checker("jax fwd+rev", ("jax",), _jax_check(("fwd", "rev")), applies=_supports_forward_mode),
)


def checker_names() -> list[str]:
    """Names of all checkers, in table order."""
    return [c.name for c in CHECKERS]
