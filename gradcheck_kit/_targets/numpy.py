"""The numpy adapter: a scalar function of arrays with a hand-written gradient."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ._base import CheckInputError, Target

__all__ = ["NumpyTarget"]


class NumpyTarget(Target):
    framework = "numpy"

    def __init__(
        self, fn: Callable[..., Any], inputs: Sequence[Any], *, grad: Callable[..., Any] | None
    ) -> None:
        if grad is None:
            raise CheckInputError(
                "numpy inputs need grad=: numpy has no automatic differentiation, so pass the "
                "hand-written gradient as gradcheck(fn, inputs, grad=grad_fn), where "
                "grad_fn(*inputs) returns one gradient per input. For a jax function, pass jax "
                "arrays instead (jnp.asarray(x)); for a torch function, tensors with "
                "requires_grad=True"
            )
        super().__init__(grad)
        self._fn = fn
        arrays = []
        self._args_in = [np.asarray(x) for x in inputs]
        # Integer and bool arrays (class labels, masks) are constants passed through as
        # given, once some input is floating point.
        any_float = any(a.dtype.kind == "f" or a.dtype.name == "bfloat16" for a in self._args_in)
        self._diff: list[int] = []
        for i, a in enumerate(self._args_in):
            if a.dtype.kind in "iub":
                if any_float:
                    continue
                raise CheckInputError(
                    f"inputs[{i}] has dtype {a.dtype}; gradients are only defined for floating "
                    f"point. Pass inputs[{i}].astype(np.float64)"
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
            self.notes.append(
                "integer and bool inputs are constants: they are passed as given and not "
                "differentiated"
            )
        self._dtypes = [a.dtype for a in arrays]
        self.input_names = [f"inputs[{i}]" for i in self._diff]
        self.native_dtypes = [a.dtype.name for a in arrays]
        self.base = [a.astype(np.float64) for a in arrays]
        self.device = "cpu"
        self.output_names = ["output"]
        out = self._scalar(self._fn(*self._cast(self.base, native=True)))
        self.output_shapes = [out.shape]
        self.native_outputs = [out]
        if any(d != "float64" for d in self.native_dtypes):
            self.promoted = True
            try:
                self._scalar(self._fn(*self._cast(self.base, native=False)))
            except Exception as exc:
                self.promoted = False
                self.promotion_note = (
                    f"the function raised with float64 inputs ({type(exc).__name__}), so "
                    f"finite differences run in {self.native_dtype}"
                )
        self._probe()

    def _cast(self, xs: Sequence[np.ndarray], native: bool) -> list[np.ndarray]:
        args = [a.copy() for a in self._args_in]
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
