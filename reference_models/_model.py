"""What a reference model is: `ReferenceModel`, its `Training` loop and its fidelity checks.

A reference model is data plus functions: an example generator, the implementations of
one loss in several styles, the doc's training loop and the doc's published claims. The
engine that compares implementations is `gradcheck_kit.crosscheck`; the claims are run by
`ReferenceModel.run_fidelity`, the same code for the tests and for the command line.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

__all__ = [
    "Arrays",
    "FidelityCheck",
    "FidelityResult",
    "Implementation",
    "ReferenceModel",
    "Training",
    "TrainingLoop",
]

Arrays = dict[str, np.ndarray]
"""Named numpy arrays: the parameters or the data of an example."""


class Implementation(Protocol):
    """The loss of an example and its gradient with respect to every parameter.

    Called as `impl(params, data, *, dtype="float64", device="cpu")`; returns
    `(loss, grads)` where `loss` is a float and `grads` maps every parameter name to a
    numpy array of that parameter's shape. Arrays are numpy at the boundary whatever runs
    inside; `device` places the computation where the framework can (numpy and jax run
    where they run).
    """

    def __call__(
        self,
        params: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        *,
        dtype: str = "float64",
        device: str = "cpu",
    ) -> tuple[float, Arrays]: ...


class TrainingLoop(Protocol):
    """A style's own training loop: `steps` steps of the doc's loop, returning the parameters.

    Called as `loop(params, data, *, steps, dtype="float64", device="cpu")`. An
    implementation without its own loop is trained by `reference_models.train`, which
    applies `ReferenceModel.training` to the implementation's gradients.
    """

    def __call__(
        self,
        params: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        *,
        steps: int,
        dtype: str = "float64",
        device: str = "cpu",
    ) -> Arrays: ...


def full_batch(data: Mapping[str, np.ndarray], step: int) -> Mapping[str, np.ndarray]:
    """The whole data set at every step (the default `Training.batch`)."""
    return data


@dataclass(frozen=True)
class Training:
    """The doc's training loop: SGD (optionally with momentum) over `batch(data, step)`.

    **Arguments:**
    - `lr`: learning rate.
    - `steps`: how many steps the doc runs.
    - `momentum`: `torch.optim.SGD`'s momentum (the first step uses the plain gradient,
      later steps `buf = momentum * buf + grad`).
    - `batch`: the data the loop feeds at step `t` (the whole data set by default; one
      sample for per-sample loops, one mini-batch for batched ones).

    **Example:** `Training(lr=1e-6, steps=500)`.
    """

    lr: float
    steps: int
    momentum: float = 0.0
    batch: Callable[[Mapping[str, np.ndarray], int], Mapping[str, np.ndarray]] = full_batch


@dataclass(frozen=True)
class FidelityResult:
    """The outcome of one doc claim checked on one implementation.

    `observed` says what was measured, in words; `figures` holds the numbers.
    """

    model: str
    check: str
    implementation: str
    dtype: str
    passed: bool
    claim: str
    observed: str
    figures: Mapping[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        verdict = "ok  " if self.passed else "FAIL"
        return (
            f"[{verdict}] {self.model}.{self.check} [{self.implementation}, {self.dtype}]: "
            f"{self.claim} -- {self.observed}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The result as plain data. Figures are floats and may be non-finite (a diverged
        loss); `gradcheck_kit verify` writes those as strings in its JSON document."""
        return {
            "model": self.model,
            "check": self.check,
            "implementation": self.implementation,
            "dtype": self.dtype,
            "passed": self.passed,
            "claim": self.claim,
            "observed": self.observed,
            "figures": {k: float(v) for k, v in self.figures.items()},
        }


FidelityFunction = Callable[..., FidelityResult]
"""`run(model, implementation, *, dtype, device) -> FidelityResult`."""


@dataclass(frozen=True)
class FidelityCheck:
    """One claim a doc makes, checked per implementation.

    **Arguments:**
    - `name`: short identifier (`"loss_falls"`).
    - `claim`: what the doc reports, in words.
    - `run`: `run(model, implementation, *, dtype, device) -> FidelityResult`.
    - `styles`: the implementations the claim is about; `None` means every implementation
      of the model, including ones users register (the check then uses only the
      implementation contract and `reference_models.train`).
    - `dtypes`: the dtypes in which the claim holds.
    """

    name: str
    claim: str
    run: FidelityFunction
    styles: tuple[str, ...] | None = None
    dtypes: tuple[str, ...] = ("float64", "float32")

    def applies_to(self, model: ReferenceModel) -> list[str]:
        """The implementations of `model` this check runs on."""
        if self.styles is None:
            return list(model.implementations)
        return [s for s in self.styles if s in model.implementations]


@dataclass(eq=False)
class ReferenceModel:
    """One doc example: how to build it, its implementations, its training loop, its claims.

    **Arguments:**
    - `name`, `description`, `source`: what it is and which doc (seed file) it comes from.
    - `default_sizes`: the doc's sizes, the keyword arguments of `example`.
    - `quick_sizes`: small sizes for fast checks.
    - `hyper`: the doc's hyper-parameters, for display.
    - `make_example`: `make_example(seed, dtype, sizes) -> (params, data)`.
    - `implementations`: implementation name -> `Implementation`.
    - `training`: the doc's training loop (`Training`), or `None` where the doc trains
      nothing (trajectories are then not checked).
    - `training_loops`: implementation name -> the style's own `TrainingLoop`, for styles
      whose loop differs in mechanism (optimizer objects, in-place updates under
      `no_grad`); the others are trained by applying `training` to their gradients.
      Omitted, it is derived from the styles: every implementation with a `train` method
      (`AutogradStyle`, `ModuleStyle`) is trained by it, where the model trains at all.
    - `fidelity`: check name -> `FidelityCheck`.
    - `rounding_terms`: `rounding_terms(params, data) -> int`, the number of terms summed
      along the longest chain into a gradient element; sets the rounding headroom of
      cross-implementation comparisons.

    **Example:**
    ```python
    model = reference_models.get("cubic_fit")
    params, data = model.example(seed=0)
    loss, grads = model.implementations["numpy_manual"](params, data)
    ```
    """

    name: str
    description: str
    source: str
    default_sizes: Mapping[str, int]
    hyper: Mapping[str, Any]
    make_example: Callable[[int, str, Mapping[str, int]], tuple[Arrays, Arrays]]
    implementations: dict[str, Implementation]
    training: Training | None
    rounding_terms: Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray]], int]
    training_loops: dict[str, TrainingLoop] = field(default_factory=dict)
    fidelity: dict[str, FidelityCheck] = field(default_factory=dict)
    quick_sizes: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.training is not None and not self.training_loops:
            self.training_loops = {
                name: impl.train
                for name, impl in self.implementations.items()
                if callable(getattr(impl, "train", None))
            }

    def example(
        self, *, seed: int = 0, dtype: str = "float64", **sizes: int
    ) -> tuple[Arrays, Arrays]:
        """The example's parameters and data, reproducible from `seed`.

        **Arguments:**
        - `seed`: seeds numpy's generator; every style receives the same arrays.
        - `dtype`: `"float64"` or `"float32"`; floating data is cast to it.
        - `**sizes`: overrides of `default_sizes` (each a positive integer).

        **Returns:** `(params, data)`, two dicts of numpy arrays.

        **Example:** `get("two_layer_relu").example(seed=1, n=8, d_in=20)`.
        """
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise TypeError(f"seed={seed!r} is not an integer; pass an int such as seed=0.")
        dtype = check_dtype(dtype)
        unknown = sorted(set(sizes) - set(self.default_sizes))
        if unknown:
            known = ", ".join(self.default_sizes) or "none"
            raise ValueError(
                f"{unknown[0]}={sizes[unknown[0]]!r} is not a size of {self.name!r}; "
                f"its sizes are: {known}."
            )
        merged = dict(self.default_sizes)
        for key, value in sizes.items():
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"{key}={value!r} is not a valid size of {self.name!r}, because sizes "
                    f"are positive integers. Pass e.g. {key}={self.default_sizes[key]}."
                )
            merged[key] = int(value)
        return self.make_example(int(seed), dtype, merged)

    def run_fidelity(
        self,
        checks: Sequence[str] | None = None,
        *,
        implementations: Sequence[str] | None = None,
        dtype: str = "float64",
        device: str = "cpu",
    ) -> list[FidelityResult]:
        """Run the doc's claims on the implementations they apply to.

        An implementation that raises gets a failed result naming it and the error; the
        other checks still run. Checks that do not hold in `dtype` are skipped.

        **Arguments:**
        - `checks`: names of checks to run (all by default).
        - `implementations`: restrict to these implementations (all by default).
        - `dtype`, `device`: where to run.

        **Returns:** one `FidelityResult` per (check, implementation).

        **Example:** `all(get("linear_wb").run_fidelity())`.
        """
        dtype = check_dtype(dtype)
        selected = list(self.fidelity) if checks is None else list(checks)
        for name in selected:
            if name not in self.fidelity:
                raise ValueError(
                    f"checks contains {name!r}, which is not a fidelity check of "
                    f"{self.name!r}; its checks are: {', '.join(self.fidelity) or 'none'}."
                )
        for impl in implementations or ():
            if impl not in self.implementations:
                raise ValueError(
                    f"implementations contains {impl!r}, which is not an implementation of "
                    f"{self.name!r}; its implementations are: {', '.join(self.implementations)}."
                )
        results = []
        for name in selected:
            check = self.fidelity[name]
            if dtype not in check.dtypes:
                continue
            for impl in check.applies_to(self):
                if implementations is not None and impl not in implementations:
                    continue
                try:
                    result = check.run(self, impl, dtype=dtype, device=device)
                except Exception as exc:  # a broken implementation is a verdict, not a crash
                    result = FidelityResult(
                        model=self.name,
                        check=name,
                        implementation=impl,
                        dtype=dtype,
                        passed=False,
                        claim=check.claim,
                        observed=f"raised {type(exc).__name__}: {exc}\n"
                        + "".join(traceback.format_exception(exc)[-3:]).rstrip(),
                    )
                results.append(result)
        return results


_DTYPES = ("float64", "float32")


def check_dtype(dtype: Any) -> str:
    """Validate a dtype for the reference models and return its name."""
    name = str(dtype)
    if name.startswith("torch."):
        name = name[len("torch.") :]
    if name not in _DTYPES:
        raise ValueError(
            f"dtype={dtype!r} is not supported by the reference models, because their "
            f"examples are defined in {' and '.join(_DTYPES)}. Pass dtype='float64' or "
            f"dtype='float32'."
        )
    return name

