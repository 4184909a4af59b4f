"""Two identical backward passes against each other (nondeterministic backward)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .._report import Comparison, ComparisonKind, Element

__all__ = ["DETERMINISM_CHECK", "compare_determinism"]

DETERMINISM_CHECK = "backward determinism (two identical backward passes)"


def compare_determinism(
    first: Sequence[np.ndarray],
    second: Sequence[np.ndarray],
    *,
    input_names: Sequence[str],
    output_name: str,
    nondet_tol: float,
) -> Comparison:
    """Gradients of two backward passes with the same cotangents, one per input.

    Fails where they differ by more than `nondet_tol` anywhere; `worst` names the
    element of the largest difference.
    """
    worst = 0.0
    where = (0, ())
    for i, (a, b) in enumerate(zip(first, second)):
        d = np.abs(a - b)
        if d.size and float(d.max()) > worst:
            worst = float(d.max())
            where = (i, tuple(int(k) for k in np.unravel_index(int(d.argmax()), d.shape)))
    failed = worst > nondet_tol or not np.all(np.isfinite(worst))
    i, idx = where
    elements = []
    if failed:
        elements = [Element(idx, None, float(first[i][idx]), float(second[i][idx]), worst, nondet_tol)]
    return Comparison(
        check=DETERMINISM_CHECK,
        input=input_names[i],
        output=output_name,
        error=worst,
        tolerance=nondet_tol,
        tolerance_source="nondet_tol",
        passed=not failed,
        worst=elements,
        backward_evals=2,
        notes=(
            ["the backward is nondeterministic: it returned different gradients for "
             "the same input and cotangent; pass nondet_tol= if that is expected"]
            if failed else []
        ),
        kind=ComparisonKind.DETERMINISM,
    )
