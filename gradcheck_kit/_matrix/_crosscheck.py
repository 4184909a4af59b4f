"""`crosscheck`: every implementation of a reference model against the others and the oracles.

For one example of a model (`reference_models.get(name)`), each implementation's loss and
gradients are compared
- with the consensus of all implementations (the elementwise median, which one wrong
  implementation cannot move), which is what blame is assigned by;
- pairwise with every implementation that agrees with the consensus;
- with the model's `jax.grad` implementation;
- with finite differences of its own loss, through `gradcheck(..., grad=...)`
  (directional probes, O(1) loss evaluations whatever the number of parameters);
- and, where the doc trains, the parameters after `trajectory_steps` steps of the doc's
  training loop are compared with the consensus of all styles' trajectories.

The comparisons are in `_consensus`, the oracles in `_oracles`, the contract every
implementation is held to in `_contract`, and the report and its text in `_results`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import reference_models

from .._tolerance import ToleranceModel
from ._consensus import against_consensus, against_partners, against_reference
from ._contract import Result, evaluate_implementation, select_implementations
from ._oracles import check_trajectories, finite_difference_row
from ._results import CHECKS, CrossCheckReport, invalid_row, valid_row

__all__ = ["crosscheck"]


def crosscheck(
    model: Any,
    *,
    implementations: Sequence[str] | None = None,
    example: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None,
    dtype: str = "float64",
    device: str = "cpu",
    seed: int = 0,
    sizes: Mapping[str, int] | None = None,
    reference: str | None = "jax",
    finite_differences: bool = True,
    trajectory_steps: int = 3,
) -> CrossCheckReport:
    """Compare every implementation of a reference model with the others and the oracles.

    **Arguments:**
    - `model`: a model name (`reference_models.names()`) or a `ReferenceModel`.
    - `implementations`: names of the implementations to check (all by default, users'
      registered ones included).
    - `example`: `(params, data)` to check at; by default `model.example(seed=seed,
      dtype=dtype, **sizes)`.
    - `dtype`: `"float64"` or `"float32"`; `device`: where torch implementations run.
    - `seed`: the example's seed and the finite-difference probes' seed.
    - `sizes`: sizes of the default example (the doc's by default).
    - `reference`: the implementation used as the `jax.grad` oracle (also when it is not in
      `implementations`); `None` to skip.
    - `finite_differences`: check each implementation's gradient against finite
      differences of its own loss (`gradcheck_kit.gradcheck` with `grad=`).
    - `trajectory_steps`: steps of the doc's training loop to compare (0 to skip; models
      whose doc trains nothing are skipped).

    **Returns:** a `CrossCheckReport`, truthy if and only if everything agrees. A broken
    implementation (one that raises, returns NaN, wrong names or shapes) gets a failing
    `valid` row naming it; the others are still checked.

    **Example:**
    ```python
    report = gradcheck_kit.crosscheck("two_layer_relu", sizes={"n": 8, "d_in": 20, "h": 10, "d_out": 3})
    assert report, str(report)
    ```
    """
    start = time.perf_counter()
    if isinstance(model, str):
        model = reference_models.get(model)
    elif not isinstance(model, reference_models.ReferenceModel):
        raise TypeError(
            f"model={model!r} is neither a model name nor a ReferenceModel; pass one of "
            f"{', '.join(reference_models.names())}."
        )
    dtype = reference_models.check_dtype(dtype)
    names = select_implementations(model, implementations)
    if (
        not isinstance(trajectory_steps, int)
        or isinstance(trajectory_steps, bool)
        or trajectory_steps < 0
    ):
        raise ValueError(
            f"trajectory_steps={trajectory_steps!r} is not a non-negative integer; pass e.g. "
            f"trajectory_steps=3, or 0 to skip trajectories."
        )
    if reference is not None and reference not in model.implementations:
        raise ValueError(
            f"reference={reference!r} is not an implementation of {model.name!r}; pass one of "
            f"{', '.join(model.implementations)}, or reference=None to skip the jax comparison."
        )
    if example is None:
        params, data = model.example(seed=seed, dtype=dtype, **dict(sizes or {}))
    else:
        if sizes is not None:
            raise ValueError(
                "pass either example= or sizes=, not both: sizes only shape the default example."
            )
        if not (isinstance(example, (tuple, list)) and len(example) == 2):
            raise TypeError(
                f"example={type(example).__name__} is not a (params, data) pair; pass the "
                f"tuple that ReferenceModel.example returns."
            )
        params, data = reference_models.cast(example[0], dtype), reference_models.cast(example[1], dtype)

    report = CrossCheckReport(
        model=model.name,
        implementations=list(names),
        dtype=dtype,
        device=device,
        seed=seed,
        shapes={k: tuple(np.shape(v)) for k, v in params.items()},
        trajectory_steps=trajectory_steps if model.training is not None else 0,
    )
    tol = ToleranceModel.for_dtype(dtype)
    terms = max(int(model.rounding_terms(params, data)), 1)

    results = _evaluate_all(report, model, names, reference, params, data)
    valid = [n for n in names if n in results]
    consensus = against_consensus(report, results, valid, params, tol=tol, terms=terms)
    against_partners(report, results, valid, consensus, tol=tol, terms=terms)
    if reference is not None:
        against_reference(report, results, valid, reference, tol=tol, terms=terms)
    if finite_differences:
        for name in valid:
            t0 = time.perf_counter()
            row, fd_report = finite_difference_row(
                name,
                model.implementations[name],
                params,
                data,
                dtype=dtype,
                device=device,
                seed=seed,
            )
            report.timings[name]["finite_differences_s"] = time.perf_counter() - t0
            if fd_report is not None:
                report.finite_differences[name] = fd_report
            report.rows.append(row)
    if model.training is None:
        report.notes.append(f"{model.name}'s doc trains nothing: no trajectories to compare")
    elif trajectory_steps > 0 and valid:
        check_trajectories(
            report, model, valid, params, data, tol=tol, terms=terms, steps=trajectory_steps
        )

    report.rows.sort(key=lambda r: (names.index(r.implementation), CHECKS.index(r.check)))
    report.elapsed_s = time.perf_counter() - start
    return report



def _evaluate_all(
    report: CrossCheckReport,
    model: Any,
    names: Sequence[str],
    reference: str | None,
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
) -> dict[str, Result]:
    """Each implementation's `(loss, grads)`, once, on copies of the example, so that one
    that writes into its inputs cannot change what the others see; broken ones get a
    failing `valid` row."""
    results: dict[str, Result] = {}
    for name in dict.fromkeys([*names, *([reference] if reference else [])]):
        t0 = time.perf_counter()
        outcome = evaluate_implementation(
            model.implementations[name], params, data, dtype=report.dtype, device=report.device
        )
        if name in names:
            report.timings.setdefault(name, {})["evaluate_s"] = time.perf_counter() - t0
        if not isinstance(outcome, str):
            results[name] = outcome
            if name in names:
                report.losses[name] = outcome[0]
                report.rows.append(valid_row(name))
        elif name in names:
            report.rows.append(invalid_row(name, outcome))
        else:
            report.notes.append(
                f"the jax reference {name!r} is unusable ({outcome}); not compared with it"
            )
    return results

