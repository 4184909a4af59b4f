"""What a cross-check found: `CrossCheckRow`, `CrossCheckReport`, and their text.

A row is one comparison of one implementation at its worst element; the report holds the
rows the command line prints, every comparison behind them, and what was not checked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._report import Report, _json_float

__all__ = [
    "CHECKS",
    "CrossCheckReport",
    "CrossCheckRow",
    "failed_row",
    "invalid_row",
    "valid_row",
]

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
    # Elements beyond their tolerance, of how many (None where not counted: finite
    # differences judge directional derivatives, not elements).
    mismatched: int | None = None
    size: int | None = None

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
            "mismatched": self.mismatched,
            "size": self.size,
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



def invalid_row(name: str, message: str) -> CrossCheckRow:
    return failed_row(name, "valid", "the implementation contract", f"{name} {message}")


def failed_row(name: str, check: str, against: str, detail: str) -> CrossCheckRow:
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


def valid_row(name: str) -> CrossCheckRow:
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

