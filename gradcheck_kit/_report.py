"""The verdict of a check: `Report`, its `Comparison`s and `Element`s, and `GradientMismatch`."""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ComparisonKind", "Element", "Comparison", "Report", "GradientMismatch", "InconclusiveCheck",
    "raise_for",
]


class ComparisonKind(enum.Enum):
    """Which two derivative oracles a `Comparison` set against each other."""

    #: Reverse mode (or a hand-written gradient) against finite differences.
    FINITE_DIFFERENCES = "finite_differences"
    #: Reverse mode against forward mode: the dot-product test.
    FORWARD_MODE = "forward_mode"
    #: Two identical backward passes.
    DETERMINISM = "determinism"
    #: The backward in the inputs' own reduced dtype against the float64 one.
    PRECISION = "precision"
    #: A property torch's gradcheck options check: undefined or zero output gradients,
    #: batched (vmap) rules against the loop, gradient dtype/device/shape/layout, masked
    #: gradients off the specified elements.
    STRUCTURAL = "structural"


@dataclass(frozen=True)
class Element:
    """One element where two derivative oracles were compared.

    `input_index` is the element of the input; `output_index` the element of the output,
    or `None` when the value is a projection onto a random output cotangent.
    """

    input_index: tuple[int, ...]
    output_index: tuple[int, ...] | None
    analytic: float
    numeric: float
    error: float
    tolerance: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_index": list(self.input_index),
            "output_index": None if self.output_index is None else list(self.output_index),
            "analytic": _json_float(self.analytic),
            "numeric": _json_float(self.numeric),
            "error": _json_float(self.error),
            "tolerance": _json_float(self.tolerance),
        }


@dataclass
class Comparison:
    """One comparison of two oracles for one (input, output) pair.

    `error` and `tolerance` are in the same units; the comparison passes when
    `error <= tolerance`. `tolerance_source` says how the tolerance was derived; `kind`
    which oracles were compared (`check` says the same in words).
    """

    check: str
    input: str
    output: str
    error: float
    tolerance: float
    tolerance_source: str
    passed: bool
    analytic: float | None = None
    numeric: float | None = None
    worst: list[Element] = field(default_factory=list)
    function_evals: int = 0
    backward_evals: int = 0
    notes: list[str] = field(default_factory=list)
    kind: ComparisonKind | None = None
    #: Set when the oracles could not decide (finite differences that did not resolve the
    #: derivative, a check too weak to catch an error of practical size). Such a comparison
    #: has `passed=False`, yet it is no evidence of a wrong gradient; `inconclusive_reason`
    #: says why and how to get a conclusive check.
    inconclusive: bool = False
    inconclusive_reason: str | None = None

    @property
    def status(self) -> str:
        """`"passed"`, `"failed"` or `"inconclusive"`."""
        if self.passed:
            return "passed"
        return "inconclusive" if self.inconclusive else "failed"

    @property
    def margin(self) -> float:
        """`error / tolerance`: below 1 passes; the closer to 1, the tighter."""
        if math.isnan(self.error) or math.isinf(self.error):
            return math.inf
        if math.isinf(self.tolerance):
            return math.inf  # no estimate to compare with: inconclusive, reported as failing
        if self.tolerance > 0:
            return self.error / self.tolerance
        return 0.0 if self.error == 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["worst"] = [e.to_dict() for e in self.worst]
        for key in ("error", "tolerance", "analytic", "numeric"):
            out[key] = _json_float(out[key])
        out["margin"] = _json_float(self.margin)
        out["kind"] = None if self.kind is None else self.kind.value
        out["status"] = self.status
        return out


@dataclass
class Report:
    """The verdict of `gradcheck`: truthy if and only if every comparison passed.

    `status` is `"failed"` when some comparison found a wrong derivative (or the check
    could not run), `"inconclusive"` when none did but some comparison could not decide,
    and `"passed"` otherwise.
    """

    comparisons: list[Comparison]
    framework: str
    dtype: str
    device: str
    mode: str
    promoted: bool
    seed: int
    function_evals: int = 0
    backward_evals: int = 0
    forward_evals: int = 0
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: The smallest relative error in one typical element's gradient that the check would
    #: have detected (the weakest of its finite-difference comparisons; see `_power.py`);
    #: `None` when no comparison defines one.
    power: float | None = None
    #: Besides the inputs, what a promoted check ran on as float64 copies: the modules the
    #: function reaches and the tensors listed in `promote=`, one description each.
    promoted_objects: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.errors and all(c.passed for c in self.comparisons)

    def __bool__(self) -> bool:
        return self.passed

    def __eq__(self, other: object) -> bool:
        # `gradcheck(...) == True` and `assertEqual(gradcheck(...), True)` read as they do
        # with torch's boolean verdict.
        if isinstance(other, bool):
            return self.passed is other
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(
            getattr(self, f.name) == getattr(other, f.name) for f in dataclasses.fields(self)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, as every non-frozen dataclass

    @property
    def status(self) -> str:
        """`"passed"`, `"failed"` or `"inconclusive"` (see the class docstring)."""
        if self.passed:
            return "passed"
        if self.errors or any(c.status == "failed" for c in self.comparisons):
            return "failed"
        return "inconclusive"

    @property
    def failures(self) -> list[Comparison]:
        """Comparisons that did not pass: failed or inconclusive."""
        return [c for c in self.comparisons if not c.passed]

    @property
    def worst_margin(self) -> float:
        """The largest `error / tolerance` over all comparisons (0 when there are none)."""
        return max((c.margin for c in self.comparisons), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "status": self.status,
            "framework": self.framework,
            "dtype": self.dtype,
            "device": self.device,
            "mode": self.mode,
            "promoted": self.promoted,
            "promoted_objects": list(self.promoted_objects),
            "seed": self.seed,
            "function_evals": self.function_evals,
            "backward_evals": self.backward_evals,
            "forward_evals": self.forward_evals,
            "elapsed_s": self.elapsed_s,
            "worst_margin": _json_float(self.worst_margin),
            "power": _json_float(self.power),
            "notes": list(self.notes),
            "errors": list(self.errors),
            "comparisons": [c.to_dict() for c in self.comparisons],
        }

    def __str__(self) -> str:
        verdict = self.status.upper()
        precision = "float64 (promoted)" if self.promoted else self.dtype
        lines = [
            f"gradcheck {verdict}: {self.framework} function, {self.dtype} on {self.device}, "
            f"mode={self.mode}, numeric side in {precision}",
            f"  cost: {self.function_evals} function, {self.backward_evals} backward, "
            f"{self.forward_evals} forward-mode evaluations; {self.elapsed_s:.3f} s",
        ]
        if self.power is not None:
            lines.append(
                f"  power: {self.power:.2g} (smallest relative error in one typical element's "
                f"gradient that this check detects)"
            )
        lines += [f"  error: {e}" for e in self.errors]
        shown = self.failures or sorted(self.comparisons, key=lambda c: -c.margin)[:3]
        if self.failures:
            failed = sum(c.status == "failed" for c in self.failures)
            undecided = len(self.failures) - failed
            counts = [f"{failed} failed"] if failed else []
            counts += [f"{undecided} inconclusive"] if undecided else []
            lines.append(f"  {' and '.join(counts)} of {len(self.comparisons)} comparisons:")
        elif shown:
            lines.append(f"  tightest of {len(self.comparisons)} comparisons:")
        for c in shown:
            lines.append(_format_comparison(c))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


class GradientMismatch(AssertionError):
    """Raised by a failing check; `.report` holds the full `Report`.

    A failing check of a torch function raises a subclass that is also torch's
    `GradcheckError` (a `RuntimeError`), so that `except GradcheckError` and
    `except RuntimeError` catch it as they catch torch's own failures.
    """

    def __init__(self, report: Report) -> None:
        super().__init__(str(report))
        self.report = report

    def __reduce__(self) -> tuple[Any, ...]:
        # The torch subclass is built at run time: rebuild it by framework, not by name.
        return (_mismatch, (self.report.framework, self.report))


class InconclusiveCheck(AssertionError):
    """Raised when a check could not decide: no evidence of a wrong gradient, and none of a
    right one. The message says why and how to get a conclusive check; `.report` holds the
    full `Report` (`report.status == "inconclusive"`)."""

    def __init__(self, report: Report) -> None:
        super().__init__(str(report))
        self.report = report


def raise_for(report: Report) -> None:
    """Raise the exception that matches a report that did not pass."""
    if report.status == "inconclusive":
        raise InconclusiveCheck(report)
    if not report.passed:
        raise _mismatch(report.framework, report)


def _mismatch(framework: str, report: Report) -> GradientMismatch:
    """The `GradientMismatch` (subclass) a failing check of a `framework` function raises."""
    from ._exceptions import mismatch_class_for

    try:
        cls = mismatch_class_for(framework)
    except ValueError:  # a report built by hand for another framework
        cls = GradientMismatch
    return cls(report)


def _format_comparison(c: Comparison) -> str:
    status = {"passed": "ok  ", "failed": "FAIL", "inconclusive": "????"}[c.status]
    head = (
        f"  [{status}] {c.check}: {c.input} -> {c.output}: error {c.error:.3e} vs tolerance "
        f"{c.tolerance:.3e} (margin {c.margin:.3g}; {c.tolerance_source})"
    )
    parts = [head]
    if c.analytic is not None and c.numeric is not None:
        parts.append(f"      analytic {c.analytic:.10g}, numeric {c.numeric:.10g}")
    for e in c.worst:
        where = f"input{list(e.input_index)}"
        if e.output_index is not None:
            where += f", output{list(e.output_index)}"
        parts.append(
            f"      element {where}: analytic {e.analytic:.10g}, numeric {e.numeric:.10g}, "
            f"error {e.error:.3e} (tolerance {e.tolerance:.3e})"
        )
    if c.inconclusive_reason:
        parts.append(f"      inconclusive: {c.inconclusive_reason}")
    parts += [f"      note: {n}" for n in c.notes]
    return "\n".join(parts)


def _json_float(x: float | None) -> float | str | None:
    if x is None:
        return None
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
