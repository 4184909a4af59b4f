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

Comparisons of two computations use `ToleranceModel.compare_arrays`. Its scale term is the
root-mean-square of the array compared; a parameter's gradient uses the larger of its own
RMS and the RMS of the model's whole gradient, because rounding in a gradient element is
set by the terms that flow through the model, and a scalar parameter (or a gradient that
vanishes by symmetry, like `legendre_fit`'s at the tutorial's init) has no scale of its own.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._report import Report, _json_float
from ._tolerance import ArrayComparison, ToleranceModel

__all__ = ["CrossCheckReport", "CrossCheckRow", "crosscheck"]

CHECKS = ("valid", "consensus", "pairwise", "jax", "finite_differences", "trajectory")
_BLAMING = ("valid", "consensus", "finite_differences", "trajectory")


@dataclass(frozen=True)
class CrossCheckRow:
    """One comparison of one implementation, at its worst element.

    **Fields:**
    - `implementation`: the implementation checked.
    - `check`: one of `"valid"` (the contract: shapes, names, finite values, no
      exception), `"consensus"`, `"pairwise"`, `"jax"`, `"finite_differences"`,
      `"trajectory"`.
    - `against`: what it was compared with (`"consensus of 5"`, an implementation's name,
      `"finite differences"`).
    - `quantity`: `"loss"` or the parameter whose gradient (or trained value) this is;
      `None` for `valid`.
    - `index`: the worst element of that parameter; `actual` and `expected` its values.
    - `error`, `tolerance`: at the worst element; `margin` is their ratio (`passed` iff
      `margin <= 1`).
    - `source`: how the tolerance was derived; `detail`: what went wrong, in words.
    """

    implementation: str
    check: str
    against: str
    quantity: str | None
    index: tuple[int, ...] | None
    actual: float | None
    expected: float | None
    error: float
    tolerance: float
    margin: float
    passed: bool
    source: str = ""
    detail: str = ""

    def __str__(self) -> str:
        verdict = "ok  " if self.passed else "FAIL"
        if self.check == "valid":
            return f"[{verdict}] {self.detail or self.implementation + ' returned a valid (loss, grads)'}"
        what = _quantity_text(self.check, self.quantity, self.index)
        if self.actual is None or self.expected is None:
            values = f" vs {self.against}"
        elif self.check == "finite_differences":
            # The engine's values at a localised element are directional derivatives
            # (projections), not the gradient element itself.
            values = f": analytic {self.actual:.10g}, finite differences {self.expected:.10g}"
        else:
            values = f" is {self.actual:.10g} where {self.against} has {self.expected:.10g}"
        text = (
            f"[{verdict}] {self.implementation} {self.check}: {what}{values} "
            f"(error {self.error:.3e} vs tolerance {self.tolerance:.3e}, margin {self.margin:.3g})"
        )
        if self.detail:
            text += f"; {self.detail}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "implementation": self.implementation,
            "check": self.check,
            "against": self.against,
            "quantity": self.quantity,
            "index": None if self.index is None else list(self.index),
            "actual": _json_float(self.actual),
            "expected": _json_float(self.expected),
            "error": _json_float(self.error),
            "tolerance": _json_float(self.tolerance),
            "margin": _json_float(self.margin),
            "passed": self.passed,
            "source": self.source,
            "detail": self.detail,
        }


@dataclass
class CrossCheckReport:
    """The verdict of `crosscheck`: truthy if and only if every implementation agrees.

    **Fields:**
    - `model`, `dtype`, `device`, `seed`, `shapes` (parameter shapes), `trajectory_steps`.
    - `implementations`: those checked, in order.
    - `rows`: one `CrossCheckRow` per (implementation, check), at its worst quantity and
      element; the table the command line prints.
    - `comparisons`: every comparison behind the rows (each quantity, each pair).
    - `losses`: each valid implementation's loss.
    - `finite_differences`: each implementation's `gradcheck` `Report`.
    - `timings`: seconds per implementation (evaluation, finite differences, trajectory).
    - `notes`: what was not checked, and why.
    """

    model: str
    implementations: list[str]
    dtype: str
    device: str
    seed: int
    shapes: dict[str, tuple[int, ...]]
    trajectory_steps: int
    rows: list[CrossCheckRow] = field(default_factory=list)
    comparisons: list[CrossCheckRow] = field(default_factory=list)
    losses: dict[str, float] = field(default_factory=dict)
    finite_differences: dict[str, Report] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.rows) and all(c.passed for c in self.comparisons)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def failures(self) -> list[CrossCheckRow]:
        """The failing rows."""
        return [r for r in self.rows if not r.passed]

    @property
    def disagreeing(self) -> list[str]:
        """The implementations to blame: those that are invalid, disagree with the consensus,
        with finite differences or in their trajectory; failing that, any with a failing row."""
        blamed = [
            i
            for i in self.implementations
            if any(not r.passed and r.check in _BLAMING for r in self.rows if r.implementation == i)
        ]
        if blamed:
            return blamed
        return [
            i
            for i in self.implementations
            if any(not r.passed for r in self.rows if r.implementation == i)
        ]

    @property
    def worst_margin(self) -> float:
        """The largest `error / tolerance` over all rows (0 when there are none)."""
        return max((r.margin for r in self.rows), default=0.0)

    def rows_of(self, implementation: str) -> list[CrossCheckRow]:
        """The rows of one implementation."""
        return [r for r in self.rows if r.implementation == implementation]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "model": self.model,
            "implementations": list(self.implementations),
            "dtype": self.dtype,
            "device": self.device,
            "seed": self.seed,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "trajectory_steps": self.trajectory_steps,
            "disagreeing": self.disagreeing,
            "worst_margin": _json_float(self.worst_margin),
            "elapsed_s": self.elapsed_s,
            "losses": {k: _json_float(v) for k, v in self.losses.items()},
            "timings": {k: dict(v) for k, v in self.timings.items()},
            "notes": list(self.notes),
            "rows": [r.to_dict() for r in self.rows],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "finite_differences": {k: r.to_dict() for k, r in self.finite_differences.items()},
        }

    def __str__(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"crosscheck {verdict}: {self.model}, {self.dtype} on {self.device}, seed {self.seed}, "
            f"{len(self.implementations)} implementations, {self.elapsed_s:.2f} s",
        ]
        if not self.passed:
            lines.append(f"  disagreeing: {', '.join(self.disagreeing)}")
            lines += [f"  {r}" for r in self.failures]
        lines.append(_table(self.rows))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


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
    import reference_models
    from reference_models._arrays import cast
    from reference_models._model import check_dtype

    start = time.perf_counter()
    if isinstance(model, str):
        model = reference_models.get(model)
    elif not isinstance(model, reference_models.ReferenceModel):
        raise TypeError(
            f"model={model!r} is neither a model name nor a ReferenceModel; pass one of "
            f"{', '.join(reference_models.names())}."
        )
    dtype = check_dtype(dtype)
    names = _select_implementations(model, implementations)
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
        params, data = cast(example[0], dtype), cast(example[1], dtype)

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
    consensus = _consensus(report, results, valid, params, tol=tol, terms=terms)
    _pairwise(report, results, valid, consensus, tol=tol, terms=terms)
    if reference is not None:
        _against_reference(report, results, valid, reference, tol=tol, terms=terms)
    if finite_differences:
        for name in valid:
            t0 = time.perf_counter()
            row, fd_report = _finite_difference_row(
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
        _trajectories(
            report, model, valid, params, data, tol=tol, terms=terms, steps=trajectory_steps
        )

    report.rows.sort(key=lambda r: (names.index(r.implementation), CHECKS.index(r.check)))
    report.elapsed_s = time.perf_counter() - start
    return report


# ---------------------------------------------------------------------------------------
# The comparisons of one example's results.

Result = tuple[float, dict[str, np.ndarray]]


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
        outcome = _evaluate(
            model.implementations[name], params, data, dtype=report.dtype, device=report.device
        )
        if name in names:
            report.timings.setdefault(name, {})["evaluate_s"] = time.perf_counter() - t0
        if not isinstance(outcome, str):
            results[name] = outcome
            if name in names:
                report.losses[name] = outcome[0]
                report.rows.append(_valid(name))
        elif name in names:
            report.rows.append(_invalid(name, outcome))
        else:
            report.notes.append(
                f"the jax reference {name!r} is unusable ({outcome}); not compared with it"
            )
    return results


def _consensus(
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
        rows = [_row(name, "consensus", against, q, c, results[name], median) for q, c in comps]
        report.comparisons += rows
        worst[name] = _worst(rows)
        report.rows.append(worst[name])
    return worst


def _pairwise(
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
            rows = [_row(a, "pairwise", b, q, c, results[a], results[b]) for q, c in comps]
            report.comparisons += rows
            worst = _worst(rows)
            pair_rows[a].append(worst)
            pair_rows[b].append(_mirror(worst, b, a))
    for name in valid:
        if pair_rows[name]:
            trusted = [r for r in pair_rows[name] if consensus[r.against].passed]
            report.rows.append(_worst(trusted or pair_rows[name]))


def _against_reference(
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
            _row(name, "jax", reference, q, c, results[name], results[reference]) for q, c in comps
        ]
        report.comparisons += rows
        report.rows.append(_worst(rows))


# ---------------------------------------------------------------------------------------
# Evaluating one implementation.


def _evaluate(
    impl: Callable[..., Any],
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str,
    device: str,
) -> tuple[float, dict[str, np.ndarray]] | str:
    """`(loss, grads)` as numpy, or a message saying why the result breaks the contract."""
    try:
        out = impl(_copy(params), _copy(data), dtype=dtype, device=device)
    except Exception as exc:
        return _raised(exc)
    return _validate(out, params)


def _validate(
    out: Any, params: Mapping[str, np.ndarray]
) -> tuple[float, dict[str, np.ndarray]] | str:
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        return (
            f"returned {type(out).__name__}, not (loss, grads): an implementation returns a "
            f"float and a dict of gradients by parameter name"
        )
    loss_raw, grads_raw = out
    try:
        loss_arr = np.asarray(loss_raw, dtype=np.float64)
    except (TypeError, ValueError):
        return f"returned a loss of type {type(loss_raw).__name__}, not a number"
    if loss_arr.size != 1:
        return f"returned a loss of shape {loss_arr.shape}; the loss is a scalar"
    loss = float(loss_arr.reshape(()))
    if not math.isfinite(loss):
        return f"returned a non-finite loss ({loss})"
    if not isinstance(grads_raw, Mapping):
        return (
            f"returned gradients as {type(grads_raw).__name__}; return a dict mapping each "
            f"parameter name ({', '.join(params)}) to its gradient"
        )
    missing = [k for k in params if k not in grads_raw]
    if missing:
        return (
            f"returned no gradient for {', '.join(repr(k) for k in missing)} (it returned "
            f"{', '.join(map(repr, grads_raw)) or 'none'}); every parameter of the example "
            f"needs one: {', '.join(params)}"
        )
    extra = [k for k in grads_raw if k not in params]
    if extra:
        return (
            f"returned a gradient for {', '.join(repr(k) for k in extra)}, which is not a "
            f"parameter of the example ({', '.join(params)})"
        )
    grads = {}
    for k, p in params.items():
        try:
            g = np.asarray(grads_raw[k])
        except Exception as exc:
            return (
                f"returned a gradient for {k!r} that is not an array ({type(exc).__name__}: {exc})"
            )
        if g.shape != np.shape(p):
            return f"returned a gradient of shape {g.shape} for {k!r}, whose shape is {np.shape(p)}"
        if g.dtype.kind not in "fiu":
            return f"returned a gradient of dtype {g.dtype} for {k!r}, not a real number array"
        bad = ~np.isfinite(g.astype(np.float64))
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            return (
                f"returned non-finite values in the gradient of {k!r} ({int(bad.sum())} of "
                f"{g.size} elements, first at {list(first)}: {g[first]})"
            )
        grads[k] = g
    return loss, grads


def _raised(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"raised {type(exc).__name__}: {exc}{where}"


def _copy(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in arrays.items()}


# ---------------------------------------------------------------------------------------
# Comparing.


def _compare_results(
    tol: ToleranceModel,
    actual: tuple[float, Mapping[str, np.ndarray]],
    reference: tuple[float, Mapping[str, np.ndarray]],
    *,
    terms: int,
) -> list[tuple[str, ArrayComparison]]:
    out = [("loss", tol.compare_arrays(actual[0], reference[0], terms=terms))]
    out += _compare_named(tol, actual[1], reference[1], terms=terms)
    return out


def _compare_named(
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
            )
        out.append((k, own))
        offset += ref.size
    return out


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(a * a))) if a.size and np.all(np.isfinite(a)) else 0.0


def _row(
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
    )


def _mirror(row: CrossCheckRow, name: str, against: str) -> CrossCheckRow:
    return CrossCheckRow(
        implementation=name,
        check=row.check,
        against=against,
        quantity=row.quantity,
        index=row.index,
        actual=row.expected,
        expected=row.actual,
        error=row.error,
        tolerance=row.tolerance,
        margin=row.margin,
        passed=row.passed,
        source=row.source,
    )


def _worst(rows: Sequence[CrossCheckRow]) -> CrossCheckRow:
    return max(rows, key=lambda r: r.margin)


def _invalid(name: str, message: str) -> CrossCheckRow:
    return _failed(name, "valid", "the implementation contract", f"{name} {message}")


def _failed(name: str, check: str, against: str, detail: str) -> CrossCheckRow:
    """A failed row with nothing to compare: the check could not produce a value."""
    return CrossCheckRow(
        implementation=name,
        check=check,
        against=against,
        quantity=None,
        index=None,
        actual=None,
        expected=None,
        error=math.inf,
        tolerance=0.0,
        margin=math.inf,
        passed=False,
        detail=detail,
    )


def _valid(name: str) -> CrossCheckRow:
    return CrossCheckRow(
        implementation=name,
        check="valid",
        against="the implementation contract",
        quantity=None,
        index=None,
        actual=None,
        expected=None,
        error=0.0,
        tolerance=0.0,
        margin=0.0,
        passed=True,
    )


# ---------------------------------------------------------------------------------------
# Finite differences and trajectories.


def _finite_difference_row(
    name: str,
    impl: Callable[..., Any],
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str,
    device: str,
    seed: int,
) -> tuple[CrossCheckRow, Report | None]:
    from ._check import gradcheck

    keys = list(params)

    def run(arrays: Sequence[np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
        # The engine may promote float32 arrays to float64 (the implementations are
        # dtype-generic); run in whatever precision the arrays arrive in.
        run_dtype = "float32" if arrays and np.asarray(arrays[0]).dtype == np.float32 else "float64"
        out = impl(dict(zip(keys, arrays)), _copy(data), dtype=run_dtype, device=device)
        checked = _validate(out, params)
        if isinstance(checked, str):
            raise ValueError(f"{name} {checked}")
        return checked

    def loss_fn(*arrays: np.ndarray) -> float:
        return run(arrays)[0]

    def grad_fn(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        grads = run(arrays)[1]
        return tuple(grads[k] for k in keys)

    def failed(detail: str) -> tuple[CrossCheckRow, None]:
        return _failed(name, "finite_differences", "finite differences", detail), None

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


def _trajectories(
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
    import reference_models

    finals: dict[str, dict[str, np.ndarray]] = {}
    for name in valid:
        t0 = time.perf_counter()
        try:
            out = reference_models.train(
                model,
                name,
                _copy(params),
                _copy(data),
                steps=steps,
                dtype=report.dtype,
                device=report.device,
            )
            checked = _validate((0.0, out), params)
        except Exception as exc:
            checked = _raised(exc)
        report.timings[name]["trajectory_s"] = time.perf_counter() - t0
        if isinstance(checked, str):
            detail = f"{name}'s training loop " + checked.replace("gradient", "parameter")
            report.rows.append(_failed(name, "trajectory", f"{steps} steps", detail))
        else:
            finals[name] = checked[1]
    if not finals:
        return
    consensus = {k: np.median([finals[n][k] for n in finals], axis=0) for k in params}
    against = f"consensus of {len(finals)} trajectories"
    # Every step adds one gradient's rounding (times the learning rate) to the parameters.
    step_terms = terms * (steps + 1)
    for name, final in finals.items():
        comps = _compare_named(tol, final, consensus, terms=step_terms)
        rows = [
            _row(name, "trajectory", against, q, c, (0.0, final), (0.0, consensus))
            for q, c in comps
        ]
        report.comparisons += rows
        worst = _worst(rows)
        report.rows.append(
            dataclasses.replace(worst, detail=f"parameters after {steps} training steps")
        )


# ---------------------------------------------------------------------------------------
# Text.


def _quantity_text(check: str, quantity: str | None, index: tuple[int, ...] | None) -> str:
    if quantity is None:
        return "result"
    if quantity == "loss":
        return "loss"
    where = f"[{', '.join(map(str, index))}]" if index else ""
    kind = "parameter" if check == "trajectory" else "gradient of"
    return f"{kind} {quantity!r}{where}"


def _table(rows: Sequence[CrossCheckRow]) -> str:
    header = (
        "implementation",
        "check",
        "against",
        "worst",
        "error",
        "tolerance",
        "margin",
        "verdict",
    )
    body = []
    for r in rows:
        where = (
            "-"
            if r.quantity is None
            else r.quantity + (f"[{', '.join(map(str, r.index))}]" if r.index else "")
        )
        body.append(
            (
                r.implementation,
                r.check,
                r.against,
                where,
                f"{r.error:.3e}",
                f"{r.tolerance:.3e}",
                f"{r.margin:.3g}",
                "ok" if r.passed else "FAIL",
            )
        )
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)
    ]
    fmt = "  " + "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*b) for b in body])


def _select_implementations(model: Any, implementations: Sequence[str] | None) -> list[str]:
    known = list(model.implementations)
    if implementations is None:
        if not known:
            raise ValueError(
                f"model {model.name!r} has no implementations to check; register one first."
            )
        return known
    if isinstance(implementations, str):
        raise TypeError(
            f"implementations={implementations!r} is a string; pass a list of names, e.g. "
            f"implementations=[{implementations!r}]."
        )
    selected = list(dict.fromkeys(implementations))
    if not selected:
        raise ValueError("implementations=[] selects nothing; pass None to check them all.")
    from reference_models._registry import close_matches_hint

    for name in selected:
        if name not in model.implementations:
            raise ValueError(
                f"implementations contains {name!r}, which is not an implementation of "
                f"{model.name!r}.{close_matches_hint(name, list(known))} Known: "
                f"{', '.join(known)}."
            )
    return selected
