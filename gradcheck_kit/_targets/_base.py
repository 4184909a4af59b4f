"""What is checked: a function with its inputs, seen through numpy float64 arrays.

A `Target` hides the framework. The engine hands it float64 numpy arrays for the
differentiable inputs and gets float64 numpy arrays back, whatever runs inside. Each
evaluation runs either in the *work* precision (float64 when the function could be
promoted, otherwise the inputs' own dtypes) or in the *native* precision (the inputs'
own dtypes). Targets never write to the caller's objects: every call builds fresh copies.
"""

from __future__ import annotations

import contextlib
import random
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterator, Sequence

import numpy as np

__all__ = ["Target", "CheckInputError", "RNG_SEED"]

# Seed given to the global generators before every evaluation, so that a forward that
# draws random numbers (dropout) draws the same ones at every perturbed input.
RNG_SEED = 20240601


class CheckInputError(ValueError):
    """The function or its inputs cannot be checked as given; the message says how to fix it."""


class Target(ABC):
    """A function and its inputs, as the engine sees them."""

    framework: str
    #: Names of the differentiable inputs, e.g. ``inputs[0]``.
    input_names: list[str]
    #: Float64 copies of the differentiable inputs, in their original shapes.
    base: list[np.ndarray]
    #: The dtype name of each differentiable input.
    native_dtypes: list[str]
    output_names: list[str]
    output_shapes: list[tuple[int, ...]]
    device: str
    #: Whether work-precision evaluations run in float64 although some input is not.
    promoted: bool = False
    #: Why promotion was not possible (None when it was, or was not needed).
    promotion_note: str | None = None
    #: Why forward mode is unavailable, once a `jvp` has failed.
    forward_mode_note: str | None = None
    notes: list[str]

    def __init__(self, grad: Callable[..., Any] | None = None) -> None:
        self.hand_written_grad = grad
        self.notes = []
        self.function_evals = 0
        self.backward_evals = 0
        self.forward_evals = 0
        self.reseed = True

    # -- framework-specific --------------------------------------------------------------
    @abstractmethod
    def _evaluate(self, xs: Sequence[np.ndarray], native: bool) -> list[np.ndarray]:
        """Outputs at `xs`, as float64 numpy arrays."""

    @abstractmethod
    def _vjps(
        self, cotangent_sets: Sequence[Sequence[np.ndarray | None]], native: bool
    ) -> list[list[np.ndarray]]:
        """Reverse-mode products at the base point, one forward pass for all sets."""

    def _jvp(self, tangents: Sequence[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def _call_grad(self, xs: Sequence[np.ndarray], native: bool) -> Sequence[Any]:
        """Call the hand-written gradient with framework objects built from `xs`."""
        raise NotImplementedError

    # -- what the engine calls --------------------------------------------------------------
    @property
    def work_eps(self) -> float:
        """Unit roundoff of work-precision evaluations."""
        from .._tolerance import ToleranceModel

        if self.promoted:
            return ToleranceModel.for_dtype("float64").eps
        return max(ToleranceModel.for_dtype(d).eps for d in self.native_dtypes)

    @property
    def native_dtype(self) -> str:
        """The lowest-precision dtype among the differentiable inputs."""
        from .._tolerance import ToleranceModel

        return max(self.native_dtypes, key=lambda d: ToleranceModel.for_dtype(d).eps)

    def evaluate(self, xs: Sequence[np.ndarray], *, native: bool = False) -> list[np.ndarray]:
        self.function_evals += 1
        self._seed_generators()
        with _user_code("the function"):
            outs = self._evaluate(xs, native)
        shapes = [o.shape for o in outs]
        if hasattr(self, "output_shapes") and shapes != self.output_shapes:
            raise CheckInputError(
                f"the function returned outputs of shapes {shapes} on one call and "
                f"{self.output_shapes} on another; a checked function must return the same "
                f"shapes for nearby inputs"
            )
        return outs

    def vjps(
        self, cotangent_sets: Sequence[Sequence[np.ndarray | None]], *, native: bool = False
    ) -> list[list[np.ndarray]]:
        """`J^T u` for each set `u` of output cotangents (None: zero for that output)."""
        self.backward_evals += len(cotangent_sets)
        self._seed_generators()
        if self.hand_written_grad is not None:
            with _user_code("the hand-written gradient (grad=)"):
                grads = self._hand_written(native)
            return [
                [g * float(np.sum(u[0])) if u[0] is not None else np.zeros_like(g) for g in grads]
                for u in cotangent_sets
            ]
        with _user_code("the backward pass"):
            return self._vjps(cotangent_sets, native)

    def jvp(self, tangents: Sequence[np.ndarray]) -> list[np.ndarray] | None:
        """`J v` in work precision, or None where forward mode is unavailable."""
        if self.hand_written_grad is not None or self.forward_mode_note is not None:
            return None
        self.forward_evals += 1
        self._seed_generators()
        try:
            return self._jvp(tangents)
        except Exception as exc:  # no forward-mode rule somewhere in fn (custom backward only)
            self.forward_mode_note = f"forward mode unavailable: {first_sentence(exc)}"
            return None

    def _hand_written(self, native: bool) -> list[np.ndarray]:
        grads = self._call_grad(self.base, native)
        if not isinstance(grads, (tuple, list)):
            grads = (grads,)
        if len(grads) != len(self.base):
            raise CheckInputError(
                f"grad returned {len(grads)} gradient(s) but the function has "
                f"{len(self.base)} differentiable input(s); return one gradient per input, "
                f"in order"
            )
        out = []
        for name, g, x in zip(self.input_names, grads, self.base):
            arr = _to_numpy(g)
            if arr.shape != x.shape:
                raise CheckInputError(
                    f"grad returned shape {arr.shape} for {name}, whose shape is {x.shape}; "
                    f"a gradient has the shape of its input"
                )
            if not np.issubdtype(arr.dtype, np.floating):
                raise CheckInputError(
                    f"grad returned dtype {arr.dtype} for {name}; gradients must be floating point"
                )
            out.append(arr.astype(np.float64))
        return out

    def _seed_generators(self) -> None:
        if not self.reseed:
            return
        import sys

        random.seed(RNG_SEED)
        np.random.seed(RNG_SEED % 2**32)
        torch = sys.modules.get("torch")
        if torch is not None:
            # torch.manual_seed would also seed (and lazily set up) every accelerator's
            # generator on each call; seed those only where they are in use.
            torch.default_generator.manual_seed(RNG_SEED)
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.manual_seed_all(RNG_SEED)


def first_sentence(exc: BaseException) -> str:
    """The first sentence of an exception's message, whole (messages run to many lines)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0].strip()
    end = line.find(". ")
    return line[: end + 1] if end >= 0 else line


@contextlib.contextmanager
def _user_code(what: str) -> Iterator[None]:
    """Turn an exception raised by the user's code into a `CheckInputError` that says where."""
    try:
        yield
    except CheckInputError:
        raise
    except Exception as exc:
        raise CheckInputError(
            f"{what} raised {type(exc).__name__}: {exc}. The check needs it to run at the "
            f"inputs and at nearby perturbed inputs; fix it (the original traceback is "
            f"chained below)"
        ) from exc


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch
        import torch

        return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(x, dtype=np.float64) if _is_float_like(x) else np.asarray(x)


def _is_float_like(x: Any) -> bool:
    try:
        return np.issubdtype(np.asarray(x).dtype, np.floating) or str(np.asarray(x).dtype) == "bfloat16"
    except Exception:
        return False
