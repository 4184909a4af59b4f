"""The numpy adapter: a scalar function of arrays with a hand-written gradient."""

from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

import numpy as np

from ._base import CheckInputError, Target
from ._rng import fresh_generator, is_generator

__all__ = ["NumpyTarget"]


class NumpyTarget(Target):
    framework = "numpy"

    def __init__(
        self, fn: Callable[..., Any], inputs: Sequence[Any], *, grad: Callable[..., Any] | None
    ) -> None:
        if grad is None:
            raise CheckInputError(_without_grad(fn, inputs))
        super().__init__(grad)
        self._fn = fn
        arrays = []
        # Generators (np.random.Generator, RandomState, random.Random) are constants that
        # every evaluation gets a fresh copy of (`_cast`).
        self._args_in = [x if is_generator(x) else np.asarray(x) for x in inputs]
        # Integer and bool arrays (class labels, masks) are constants passed through as
        # given, once some input is floating point.
        any_float = any(
            not is_generator(a) and (a.dtype.kind == "f" or a.dtype.name == "bfloat16")
            for a in self._args_in
        )
        self._diff: list[int] = []
        for i, a in enumerate(self._args_in):
            if is_generator(a):
                continue
            if a.dtype.kind in "iub":
                if any_float:
                    continue
                raise CheckInputError(
                    f"inputs[{i}] has dtype {a.dtype} and no input is floating point, so there "
                    f"is nothing to differentiate. If inputs[{i}] is a constant (labels, "
                    f"indices, a mask), keep it as it is and also pass the floating-point "
                    f"arrays to differentiate; if its gradient is wanted, pass "
                    f"inputs[{i}].astype(np.float64)"
                )
            if a.dtype.kind == "c":
                raise CheckInputError(
                    f"inputs[{i}] is complex; complex inputs are not checked yet. Split it into "
                    f"real and imaginary parts"
                )
            if a.dtype.kind != "f" and a.dtype.name not in ("bfloat16",):
                raise CheckInputError(
                    f"inputs[{i}] has dtype {a.dtype}, which is not a floating-point array"
                )
            arrays.append(a)
            self._diff.append(i)
        if len(self._diff) < len(self._args_in):
            self.grad_positions = (self._diff, len(self._args_in))
            if any(not is_generator(a) for i, a in enumerate(self._args_in) if i not in self._diff):
                self.notes.append(
                    "integer and bool inputs are constants: they are passed as given and not "
                    "differentiated"
                )
        self.generator_names = tuple(
            f"inputs[{i}]" for i, a in enumerate(self._args_in) if is_generator(a)
        )
        self._dtypes = [a.dtype for a in arrays]
        self.input_names = [f"inputs[{i}]" for i in self._diff]
        self.native_dtypes = [a.dtype.name for a in arrays]
        self.base = [a.astype(np.float64) for a in arrays]
        self.device = "cpu"
        self.output_names = ["output"]
        self.function_evals += 1
        out = self._scalar(self._fn(*self._cast(self.base, native=True)))
        self.output_shapes = [out.shape]
        self.native_outputs = [out]
        if any(d != "float64" for d in self.native_dtypes):
            self.promoted = True
            try:
                self.function_evals += 1
                self._scalar(self._fn(*self._cast(self.base, native=False)))
            except Exception as exc:
                self.promoted = False
                self.promotion_note = (
                    f"the function raised with float64 inputs ({type(exc).__name__}), so "
                    f"finite differences run in {self.native_dtype}"
                )
        self._probe()

    def _cast(self, xs: Sequence[np.ndarray], native: bool) -> list[Any]:
        args = [fresh_generator(a) if is_generator(a) else a.copy() for a in self._args_in]
        for i, x, d in zip(self._diff, xs, self._dtypes):
            dtype = d if native or not self.promoted else np.float64
            args[i] = np.array(x, dtype=dtype)
        return args

    @staticmethod
    def _scalar(out: Any) -> np.ndarray:
        try:
            a = np.asarray(out)
        except (ValueError, TypeError):
            raise CheckInputError(
                f"the function returned a {type(out).__name__} that is not a number; with a "
                f"hand-written grad= the function must return a scalar loss"
            ) from None
        if a.size != 1:
            raise CheckInputError(
                f"the function returned shape {a.shape}; with a hand-written grad= the function "
                f"must return a scalar (reduce it to a loss first)"
            )
        if a.dtype.kind not in "fiu" and a.dtype.name != "bfloat16":
            raise CheckInputError(f"the function returned a {a.dtype} value, not a number")
        return a.astype(np.float64).reshape(())

    def _evaluate(self, xs, native):
        return [self._scalar(self._fn(*self._cast(xs, native)))]

    def _vjps(self, cotangent_sets, native, at=None, saved_noise=0.0):  # pragma: no cover - grad is always given
        raise AssertionError("numpy targets always have a hand-written gradient")

    def _call_grad(self, xs, native):
        return self.hand_written_grad(*self._cast(xs, native))


def _without_grad(fn: Callable[..., Any], inputs: Sequence[Any]) -> str:
    """Why numpy inputs without grad= cannot be checked, and the fix for this function.

    A jax or torch function given numpy arrays is recognised by what it returns (or, where
    it rejects numpy arrays, by running it on that framework's arrays): its own autodiff
    is what should be checked, so the message says how to pass that framework's arrays.
    Only frameworks already imported are tried.
    """
    floats = [
        f"inputs[{i}]" for i, x in enumerate(inputs)
        if not is_generator(x) and np.asarray(x).dtype.kind == "f"
    ]
    ints = [
        f"inputs[{i}]" for i, x in enumerate(inputs)
        if not is_generator(x) and np.asarray(x).dtype.kind in "iub"
    ]
    names = ", ".join(floats) or "the inputs"
    framework = _framework_of_function(fn, inputs)
    constants = (
        f" ({', '.join(ints)}, integer, can stay as {'it is' if len(ints) == 1 else 'they are'}: "
        f"a constant such as labels)" if ints and framework == "jax" else ""
    )
    if framework == "jax":
        return (
            f"{names} {'is a numpy array' if len(floats) == 1 else 'are numpy arrays'}, but fn "
            f"is a jax function (it returns jax arrays): pass jax arrays, "
            f"jnp.asarray({floats[0] if floats else 'x'}), so that jax's own derivatives are "
            f"checked{constants}"
        )
    if framework == "torch":
        ints_fix = (
            f", and the integer {', '.join(ints)} (labels, indices) as a plain tensor, "
            f"torch.as_tensor({ints[0]}), since only floating-point tensors can require grad"
            if ints else ""
        )
        return (
            f"{names} {'is a numpy array' if len(floats) == 1 else 'are numpy arrays'}, but fn "
            f"is a torch function: pass each floating-point input as a tensor that requires "
            f"grad, torch.tensor({floats[0] if floats else 'x'}, requires_grad=True){ints_fix}"
        )
    return (
        "numpy inputs need grad=: numpy has no automatic differentiation, so pass the "
        "hand-written gradient as gradcheck(fn, inputs, grad=grad_fn), where grad_fn(*inputs) "
        "returns the gradient of fn's scalar output with respect to each floating-point "
        f"input ({names}; integer inputs such as labels are constants and get none). For a "
        "jax function, pass jax arrays instead (jnp.asarray(x)); for a torch function, "
        "tensors with requires_grad=True"
    )


def _framework_of_function(fn: Callable[..., Any], inputs: Sequence[Any]) -> str | None:
    """"jax" or "torch" when `fn` computes with that framework, else None."""
    out = _try(fn, [fresh_generator(x) if is_generator(x) else np.array(x) for x in inputs])
    if out is not _FAILED:
        return _kind_of(out)
    # numpy functions often accept other arrays too (np.exp of a tensor is a tensor): other
    # frameworks' arrays are tried only where fn rejects numpy ones.
    jnp = sys.modules.get("jax.numpy")
    if jnp is not None:
        if _kind_of(_try(fn, [x if is_generator(x) else jnp.asarray(x) for x in inputs])):
            return "jax"
    torch = sys.modules.get("torch")
    if torch is not None:
        if _kind_of(_try(fn, [x if is_generator(x) else torch.as_tensor(np.array(x))
                              for x in inputs])):
            return "torch"
    return None


_FAILED = object()


def _try(fn: Callable[..., Any], args: Sequence[Any]) -> Any:
    try:
        return fn(*args)
    except Exception:
        return _FAILED


def _kind_of(out: Any) -> str | None:
    """The framework of the first array in `out` (a value, tuple, list or dict)."""
    items = list(out.values()) if isinstance(out, dict) else (
        list(out) if isinstance(out, (tuple, list)) else [out]
    )
    for item in items:
        module = type(item).__module__.split(".")[0]
        if module in ("jax", "jaxlib"):
            return "jax"
        if module == "torch":
            return "torch"
    return None
