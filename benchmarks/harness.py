"""Run every checker on every case and dtype, and summarise detection and false alarms."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

from .cases import Case
from .checkers import CHECKERS, Checker

__all__ = ["Record", "Summary", "run_cases", "summarize"]


@dataclass
class Record:
    """One checker's verdict on one case in one dtype, with the ground truth beside it."""

    suite: str
    case: str
    category: str
    framework: str
    order: int
    dtype: str
    buggy: bool | None
    change: float | None
    checker: str
    flagged: bool
    function_evals: int
    seconds: float
    raised: str | None
    detail: str
    extra: dict[str, Any]

    @property
    def correct(self) -> bool | None:
        return None if self.buggy is None else self.flagged == self.buggy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_cases(
    cases: Iterable[Case],
    *,
    checkers: Sequence[Checker] = CHECKERS,
    dtypes: Sequence[str] = ("float64", "float32"),
    progress: Callable[[str], None] | None = None,
    repeats: int = 1,
) -> list[Record]:
    """Run each checker on each case in each dtype; a fresh problem is built per run.

    **Arguments:**
    - `cases`: the cases; a case with `buggy=None` (undecided ground truth) is run but not scored.
    - `checkers`: which checkers (default: all).
    - `dtypes`: which dtypes to run (each case also limits its own).
    - `progress`: called with one line per case, for a progress display.
    - `repeats`: time a check up to this many times (fresh problem each time) while one
      run takes under a second, and keep the fastest; the verdict and evaluation count are
      the first run's, and `extra["verdicts_differ"]` says if a repeat disagreed.

    **Returns:** one `Record` per (case, dtype, applicable checker).

    **Example:**
    >>> records = run_cases(zoo_cases()[:2], dtypes=["float64"])
    """
    records: list[Record] = []
    for case in cases:
        for dtype in dtypes:
            if dtype not in case.dtypes:
                continue
            start = time.perf_counter()
            for checker in checkers:
                if not checker.supports(case, dtype):
                    continue
                outcome = checker.run(case, case.build(dtype))
                if outcome is None:
                    continue
                for _ in range(repeats - 1):
                    if outcome.seconds >= 1.0:
                        break
                    again = checker.run(case, case.build(dtype))
                    if again is None:
                        break
                    outcome.seconds = min(outcome.seconds, again.seconds)
                    outcome.extra["repeats"] = outcome.extra.get("repeats", 1) + 1
                    if again.flagged != outcome.flagged:
                        outcome.extra["verdicts_differ"] = True
                extra = dict(outcome.extra)
                if outcome.flagged == case.buggy:
                    # Full reports are kept only for wrong verdicts, to keep the results small.
                    extra.pop("report", None)
                records.append(
                    Record(
                        suite=case.suite, case=case.name, category=case.category, framework=case.framework,
                        order=case.order, dtype=dtype, buggy=case.buggy, change=case.change,
                        checker=checker.name, flagged=outcome.flagged, function_evals=outcome.function_evals,
                        seconds=outcome.seconds, raised=outcome.raised, detail=outcome.detail,
                        extra=extra,
                    )
                )
            if progress is not None:
                flags = " ".join(
                    f"{r.checker}={'F' if r.flagged else '.'}"
                    for r in records
                    if r.case == case.name and r.dtype == dtype and r.suite == case.suite
                )
                progress(f"{case.suite}/{case.name} [{dtype}] buggy={case.buggy} "
                         f"({time.perf_counter() - start:.2f}s) {flags}")
    return records


@dataclass
class Summary:
    """Detection and false alarms of one checker on one suite in one dtype."""

    suite: str
    checker: str
    dtype: str
    buggy: int
    detected: int
    clean: int
    false_alarms: int
    raised: int
    checks: int
    function_evals: int
    seconds: float

    @property
    def detection_rate(self) -> float | None:
        return self.detected / self.buggy if self.buggy else None

    @property
    def false_alarm_rate(self) -> float | None:
        return self.false_alarms / self.clean if self.clean else None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["detection_rate"] = self.detection_rate
        out["false_alarm_rate"] = self.false_alarm_rate
        return out


def summarize(records: Sequence[Record], *, group: Callable[[Record], str] | None = None) -> list[Summary]:
    """Aggregate records per (suite or `group(record)`, checker, dtype), in first-seen order."""
    keyed: dict[tuple[str, str, str], list[Record]] = {}
    for r in records:
        keyed.setdefault((group(r) if group else r.suite, r.checker, r.dtype), []).append(r)
    out = []
    for (suite, checker, dtype), rs in keyed.items():
        scored = [r for r in rs if r.buggy is not None]
        out.append(
            Summary(
                suite=suite, checker=checker, dtype=dtype,
                buggy=sum(r.buggy for r in scored),
                detected=sum(r.buggy and r.flagged for r in scored),
                clean=sum(not r.buggy for r in scored),
                false_alarms=sum((not r.buggy) and r.flagged for r in scored),
                raised=sum(r.raised is not None for r in rs),
                checks=len(rs),
                function_evals=sum(r.function_evals for r in rs),
                seconds=sum(r.seconds for r in rs),
            )
        )
    return out
