"""The verdict of a check: `Report`, its `Comparison`s and `Element`s, and `GradientMismatch`."""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ComparisonKind", "Element", "Comparison", "Report", "GradientMismatch"]


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
        return out


@dataclass
class Report:
    """The verdict of `gradcheck`: truthy if and only if every comparison passed."""

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

    @property
    def passed(self) -> bool:
        return not self.errors and all(c.passed for c in self.comparisons)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def failures(self) -> list[Comparison]:
        return [c for c in self.comparisons if not c.passed]

    @property
    def worst_margin(self) -> float:
        """The largest `error / tolerance` over all comparisons (0 when there are none)."""
        return max((c.margin for c in self.comparisons), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "framework": self.framework,
            "dtype": self.dtype,
            "device": self.device,
            "mode": self.mode,
            "promoted": self.promoted,
            "seed": self.seed,
            "function_evals": self.function_evals,
            "backward_evals": self.backward_evals,
            "forward_evals": self.forward_evals,
            "elapsed_s": self.elapsed_s,
            "worst_margin": _json_float(self.worst_margin),
            "notes": list(self.notes),
            "errors": list(self.errors),
            "comparisons": [c.to_dict() for c in self.comparisons],
        }

    def __str__(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        precision = "float64 (promoted)" if self.promoted else self.dtype
        lines = [
            f"gradcheck {verdict}: {self.framework} function, {self.dtype} on {self.device}, "
            f"mode={self.mode}, numeric side in {precision}",
            f"  cost: {self.function_evals} function, {self.backward_evals} backward, "
            f"{self.forward_evals} forward-mode evaluations; {self.elapsed_s:.3f} s",
        ]
        lines += [f"  error: {e}" for e in self.errors]
        shown = self.failures or sorted(self.comparisons, key=lambda c: -c.margin)[:3]
        if self.failures:
            lines.append(f"  {len(self.failures)} of {len(self.comparisons)} comparisons failed:")
        elif shown:
            lines.append(f"  tightest of {len(self.comparisons)} comparisons:")
        for c in shown:
            lines.append(_format_comparison(c))
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


class GradientMismatch(AssertionError):
    """Raised by a failing check; `.report` holds the full `Report`."""

    def __init__(self, report: Report) -> None:
        super().__init__(str(report))
        self.report = report


def _format_comparison(c: Comparison) -> str:
    status = "ok  " if c.passed else "FAIL"
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
    parts += [f"      note: {n}" for n in c.notes]
    return "\n".join(parts)


def _json_float(x: float | None) -> float | str | None:
    if x is None:
        return None
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
