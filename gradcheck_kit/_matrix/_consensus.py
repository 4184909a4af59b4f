"""Comparisons of the implementations' results: consensus, pairwise, against jax.

Comparisons of two computations use `ToleranceModel.compare_arrays`. Its scale term is the
root-mean-square of the array compared; a parameter's gradient uses the larger of its own
RMS and the RMS of the model's whole gradient, because rounding in a gradient element is
set by the terms that flow through the model, and a scalar parameter (or a gradient that
vanishes by symmetry, like `legendre_fit`'s at the tutorial's init) has no scale of its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from .._tolerance import ArrayComparison, ToleranceModel
from ._contract import Result
from ._results import CrossCheckReport, CrossCheckRow

__all__ = [
    "against_consensus",
    "against_partners",
    "against_reference",
    "compare_named",
    "comparison_row",
    "worst_row",
]

def against_consensus(
    report: CrossCheckReport,
    results: Mapping[str, Result],
    valid: Sequence[str],
    params: Mapping[str, np.ndarray],
    *,
    tol: ToleranceModel,
    terms: int,
) -> dict[str, CrossCheckRow]:
    """Each implementation against the elementwise median of all of them, which one wrong
    implementation cannot move; returns each one's worst row."""
    if not valid:
        return {}
    if len(valid) == 1:
        report.notes.append("one implementation: the consensus is that implementation itself")
    elif len(valid) == 2:
        report.notes.append("two implementations: a disagreement cannot be attributed to either")
    median: Result = (
        float(np.median([results[n][0] for n in valid])),
        {k: np.median([results[n][1][k] for n in valid], axis=0) for k in params},
    )
    against = f"consensus of {len(valid)}"
    worst = {}
    for name in valid:
        comps = _compare_results(tol, results[name], median, terms=terms)
        rows = [comparison_row(name, "consensus", against, q, c, results[name], median) for q, c in comps]
        report.comparisons += rows
        worst[name] = worst_row(rows)
        report.rows.append(worst[name])
    return worst


def against_partners(
    report: CrossCheckReport,
    results: Mapping[str, Result],
    valid: Sequence[str],
    consensus: Mapping[str, CrossCheckRow],
    *,
    tol: ToleranceModel,
    terms: int,
) -> None:
    """Every pair; an implementation's row is its worst disagreement with a partner that
    agrees with the consensus, so that a wrong partner does not mark a right one."""
    pair_rows: dict[str, list[CrossCheckRow]] = {n: [] for n in valid}
    for i, a in enumerate(valid):
        for b in valid[i + 1 :]:
            comps = _compare_results(tol, results[a], results[b], terms=terms)
            rows = [comparison_row(a, "pairwise", b, q, c, results[a], results[b]) for q, c in comps]
            report.comparisons += rows
            worst = worst_row(rows)
            pair_rows[a].append(worst)
            pair_rows[b].append(_mirror(worst, b, a))
    for name in valid:
        if pair_rows[name]:
            trusted = [r for r in pair_rows[name] if consensus[r.against].passed]
            report.rows.append(worst_row(trusted or pair_rows[name]))


def against_reference(
    report: CrossCheckReport,
    results: Mapping[str, Result],
    valid: Sequence[str],
    reference: str,
    *,
    tol: ToleranceModel,
    terms: int,
) -> None:
    """Each implementation against the model's `jax.grad` implementation."""
    if reference not in results:
        if reference in report.implementations:
            report.notes.append(
                f"the jax reference {reference!r} is invalid (see its row); not compared with it"
            )
        return
    for name in valid:
        if name == reference:
            continue
        comps = _compare_results(tol, results[name], results[reference], terms=terms)
        rows = [
            comparison_row(name, "jax", reference, q, c, results[name], results[reference]) for q, c in comps
        ]
        report.comparisons += rows
        report.rows.append(worst_row(rows))



def _compare_results(
    tol: ToleranceModel,
    actual: tuple[float, Mapping[str, np.ndarray]],
    reference: tuple[float, Mapping[str, np.ndarray]],
    *,
    terms: int,
) -> list[tuple[str, ArrayComparison]]:
    out = [("loss", tol.compare_arrays(actual[0], reference[0], terms=terms))]
    out += compare_named(tol, actual[1], reference[1], terms=terms)
    return out


def compare_named(
    tol: ToleranceModel,
    actual: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    *,
    terms: int,
) -> list[tuple[str, ArrayComparison]]:
    """Per-name comparisons whose scale is the larger of the name's RMS and the joint RMS.

    `compare_arrays`' tolerance grows with the RMS of the reference; an array compared
    inside the concatenation of all of them, where every other element is identical,
    gets the joint RMS while only its own elements can differ.
    """
    keys = list(reference)
    flat_ref = [np.asarray(reference[k], dtype=np.float64).ravel() for k in keys]
    joint = np.concatenate(flat_ref) if flat_ref else np.zeros(0)
    joint_rms = _rms(joint)
    out = []
    offset = 0
    for k, ref in zip(keys, flat_ref):
        act = np.asarray(actual[k], dtype=np.float64)
        own = tol.compare_arrays(act, reference[k], terms=terms)
        if ref.size and joint_rms > _rms(ref):
            embedded = joint.copy()
            embedded[offset : offset + ref.size] = act.ravel()
            c = tol.compare_arrays(embedded, joint, terms=terms)
            local = int(c.worst_index[0]) - offset if c.worst_index else 0
            if 0 <= local < ref.size:
                index = tuple(int(i) for i in np.unravel_index(local, np.shape(reference[k])))
            else:  # every element of this array is identical: no worst element inside it
                index = own.worst_index
            own = ArrayComparison(
                error=c.error,
                tolerance=c.tolerance,
                margin=c.margin,
                worst_index=index,
                passed=c.passed,
                source=c.source + " (rms over all parameters)",
                # Elements outside this array are the joint reference itself: never mismatched.
                mismatched=c.mismatched,
                size=int(ref.size),
            )
        out.append((k, own))
        offset += ref.size
    return out


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(a * a))) if a.size and np.all(np.isfinite(a)) else 0.0


def comparison_row(
    name: str,
    check: str,
    against: str,
    quantity: str,
    c: ArrayComparison,
    actual: tuple[float, Mapping[str, np.ndarray]],
    expected: tuple[float, Mapping[str, np.ndarray]],
) -> CrossCheckRow:
    if quantity == "loss":
        a, e, index = float(actual[0]), float(expected[0]), ()
    else:
        index = tuple(c.worst_index)
        a = float(np.asarray(actual[1][quantity])[index])
        e = float(np.asarray(expected[1][quantity])[index])
    return CrossCheckRow(
        implementation=name,
        check=check,
        against=against,
        quantity=quantity,
        index=index,
        actual=a,
        expected=e,
        error=c.error,
        tolerance=c.tolerance,
        margin=c.margin,
        passed=c.passed,
        source=c.source,
        mismatched=c.mismatched if c.size else None,
        size=c.size or None,
    )


def _mirror(row: CrossCheckRow, name: str, against: str) -> CrossCheckRow:
    # The same comparison seen from the other implementation: actual and expected swap.
    return dataclasses.replace(
        row, implementation=name, against=against, actual=row.expected, expected=row.actual
    )


def worst_row(rows: Sequence[CrossCheckRow]) -> CrossCheckRow:
    return max(rows, key=lambda r: r.margin)

