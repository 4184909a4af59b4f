"""The oracles beside the implementations: finite differences and training trajectories.

Finite differences check each implementation against its own loss, through
`gradcheck(..., grad=...)` (directional probes, O(1) loss evaluations whatever the number
of parameters). Trajectories compare the parameters after a few steps of the doc's
training loop with the consensus of all styles' trajectories.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import reference_models

from .._report import Report
from .._tolerance import ToleranceModel
from ._consensus import compare_named, comparison_row, worst_row
from ._contract import copy_arrays, raised, validate_result
from ._results import CrossCheckReport, CrossCheckRow, failed_row

__all__ = ["check_trajectories", "finite_difference_row"]

def finite_difference_row(
    name: str,
    impl: Callable[..., Any],
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str,
    device: str,
    seed: int,
) -> tuple[CrossCheckRow, Report | None]:
    from .._check import gradcheck

    keys = list(params)

    def run(arrays: Sequence[np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
        # The engine may promote float32 arrays to float64 (the implementations are
        # dtype-generic); run in whatever precision the arrays arrive in.
        run_dtype = "float32" if arrays and np.asarray(arrays[0]).dtype == np.float32 else "float64"
        out = impl(dict(zip(keys, arrays)), copy_arrays(data), dtype=run_dtype, device=device)
        checked = validate_result(out, params)
        if isinstance(checked, str):
            raise ValueError(f"{name} {checked}")
        return checked

    def loss_fn(*arrays: np.ndarray) -> float:
        return run(arrays)[0]

    def grad_fn(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        grads = run(arrays)[1]
        return tuple(grads[k] for k in keys)

    def failed(detail: str) -> tuple[CrossCheckRow, None]:
        return failed_row(name, "finite_differences", "finite differences", detail), None

    if not keys:
        return failed("the example has no parameters to differentiate")
    try:
        fd = gradcheck(
            loss_fn,
            [np.array(params[k]) for k in keys],
            grad=grad_fn,
            seed=seed,
            raise_exception=False,
        )
    except Exception as exc:
        return failed(f"gradcheck could not run: {type(exc).__name__}: {exc}")
    worst = max(fd.comparisons, key=lambda c: c.margin, default=None)
    if worst is None:
        return failed("; ".join(fd.errors) or "gradcheck made no comparison")
    element = worst.worst[0] if worst.worst else None
    quantity, index = _locate(keys, worst.input, None if element is None else element.input_index)
    row = CrossCheckRow(
        implementation=name,
        check="finite_differences",
        against="finite differences",
        quantity=quantity,
        index=index,
        actual=element.analytic if element is not None else worst.analytic,
        expected=element.numeric if element is not None else worst.numeric,
        error=worst.error,
        tolerance=worst.tolerance,
        margin=worst.margin,
        passed=fd.passed,
        source=worst.tolerance_source,
        detail="; ".join([*fd.errors, *([worst.check] if not fd.passed else [])]),
    )
    return row, fd


def _locate(
    keys: Sequence[str], label: str, index: Sequence[int] | None
) -> tuple[str, tuple[int, ...] | None]:
    """The parameter behind the engine's `inputs[i]` label, and the element index."""
    element = None if index is None else tuple(int(i) for i in index)
    if label.startswith("inputs[") and label.endswith("]"):
        try:
            return keys[int(label[len("inputs[") : -1])], element
        except (ValueError, IndexError):
            pass
    return label, element


def check_trajectories(
    report: CrossCheckReport,
    model: Any,
    valid: Sequence[str],
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    tol: ToleranceModel,
    terms: int,
    steps: int,
) -> None:
    finals: dict[str, dict[str, np.ndarray]] = {}
    for name in valid:
        t0 = time.perf_counter()
        try:
            out = reference_models.train(
                model,
                name,
                copy_arrays(params),
                copy_arrays(data),
                steps=steps,
                dtype=report.dtype,
                device=report.device,
            )
            checked = validate_result((0.0, out), params)
        except Exception as exc:
            checked = raised(exc)
        report.timings[name]["trajectory_s"] = time.perf_counter() - t0
        if isinstance(checked, str):
            detail = f"{name}'s training loop " + checked.replace("gradient", "parameter")
            report.rows.append(failed_row(name, "trajectory", f"{steps} steps", detail))
        else:
            finals[name] = checked[1]
    if not finals:
        return
    consensus = {k: np.median([finals[n][k] for n in finals], axis=0) for k in params}
    against = f"consensus of {len(finals)} trajectories"
    # Every step adds one gradient's rounding (times the learning rate) to the parameters.
    step_terms = terms * (steps + 1)
    for name, final in finals.items():
        comps = compare_named(tol, final, consensus, terms=step_terms)
        rows = [
            comparison_row(name, "trajectory", against, q, c, (0.0, final), (0.0, consensus))
            for q, c in comps
        ]
        report.comparisons += rows
        worst = worst_row(rows)
        report.rows.append(
            dataclasses.replace(worst, detail=f"parameters after {steps} training steps")
        )

