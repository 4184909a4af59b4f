"""Markdown tables from benchmark records."""

from __future__ import annotations

from typing import Callable, Sequence

from .checkers import KIT, checker_names
from .harness import Record, summarize

__all__ = ["summary_table", "findings", "case_matrix", "category_table", "cost_table", "opinfo_false_alarm_table"]


def _rate(num: int, den: int) -> str:
    return "n/a" if den == 0 else f"{num}/{den} ({100.0 * num / den:.1f}%)"


def summary_table(records: Sequence[Record], *, group: Callable[[Record], str] | None = None,
                  anchor: str = "torch fast") -> str:
    """Detection and false alarms per checker (rows) and dtype (columns), with cost.

    "time / anchor" divides a checker's total time by the anchor's on the same checks
    (same groups and dtypes), so it is a ratio measured in the same run.
    """
    summaries = summarize(records, group=group)
    key = group or (lambda r: r.suite)
    seconds_by: dict[tuple[str, str, str, str], float] = {
        (key(r), r.checker, r.case, r.dtype): r.seconds for r in records
    }
    groups = list(dict.fromkeys(s.suite for s in summaries))
    lines = []
    for g in groups:
        rows = [s for s in summaries if s.suite == g]
        by = {(s.checker, s.dtype): s for s in rows}
        lines.append(f"**{g}**\n")
        lines.append("| checker | float64 detected | float64 false alarms | float32 detected | float32 false alarms "
                     "| checks | function evals / check | total time (s) | time / " + anchor + " |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for name in checker_names():
            cells = [by.get((name, d)) for d in ("float64", "float32")]
            present = [c for c in cells if c is not None]
            if not present:
                continue
            checks = sum(c.checks for c in present)
            evals = sum(c.function_evals for c in present)
            seconds = sum(c.seconds for c in present)
            # The ratio is taken over the (case, dtype) pairs both checkers ran.
            shared = [(k[2], k[3]) for k in seconds_by if k[0] == g and k[1] == name
                      and (g, anchor, k[2], k[3]) in seconds_by]
            mine = sum(seconds_by[(g, name, c, d)] for c, d in shared)
            theirs = sum(seconds_by[(g, anchor, c, d)] for c, d in shared)
            ratio = f"{mine / theirs:.2f}" if theirs > 0 else "n/a"
            row = [name]
            for c in cells:
                row += ["-", "-"] if c is None else [_rate(c.detected, c.buggy), _rate(c.false_alarms, c.clean)]
            row += [str(checks), f"{evals / max(checks, 1):.1f}", f"{seconds:.1f}", ratio]
            lines.append("| " + " | ".join(row) + " |")
        raised = [s for s in rows if s.raised]
        if raised:
            lines.append("")
            lines.append("Checks that raised (counted as flagged): " + ", ".join(
                f"{s.checker} {s.dtype}: {s.raised}" for s in raised))
        lines.append("")
    return "\n".join(lines)


def findings(records: Sequence[Record], *, checker: str = KIT, context: str = "torch slow") -> str:
    """Every miss and false alarm of `checker`, with what it said, and beside it the verdict
    of `context` on the same case in float64 (F flagged, . passed)."""
    wrong = [r for r in records if r.checker == checker and r.buggy is not None and r.flagged != r.buggy]
    if not wrong:
        return f"No misses and no false alarms for {checker}.\n"
    index = {(r.case, r.checker, r.dtype): r for r in records}
    lines = [f"| case | dtype | truth | {context} float64 | {checker} said |", "|---|---|---|---|---|"]
    for r in wrong:
        if r.buggy:
            truth = f"bug (change {r.change:.2g})" if r.change else "bug"
        else:
            truth = "mutant that leaves the Jacobian unchanged" if "/" in r.case else "correct"
        other = index.get((r.case, context, "float64"))
        seen = "" if other is None else ("F" if other.flagged else ".")
        said = (r.raised or r.detail).replace("|", "/").replace("\n", " ")
        lines.append(f"| {r.suite}/{r.case} | {r.dtype} | {truth} | {seen} | "
                     f"{'flagged' if r.flagged else 'passed'}: {said} |")
    return "\n".join(lines) + "\n"


def case_matrix(records: Sequence[Record]) -> str:
    """One row per case: the ground truth and each checker's verdict per dtype.

    `F` flagged, `.` passed, `E` raised; a wrong verdict is shown in bold.
    """
    names = [n for n in checker_names() if any(r.checker == n for r in records)]
    dtypes = ("float64", "float32")
    header = ["case", "category", "bug"] + [f"{n} {d[-2:]}" for n in names for d in dtypes]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    index = {(r.case, r.checker, r.dtype): r for r in records}
    for case in dict.fromkeys(r.case for r in records):
        first = next(r for r in records if r.case == case)
        row = [case, first.category, "yes" if first.buggy else ("no" if first.buggy is False else "?")]
        for n in names:
            for d in dtypes:
                r = index.get((case, n, d))
                if r is None:
                    row.append("")
                    continue
                mark = "E" if r.raised else ("F" if r.flagged else ".")
                row.append(f"**{mark}**" if r.correct is False else mark)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def opinfo_false_alarm_table(records: Sequence[Record], *, reference: str = "torch slow") -> str:
    """False alarms among correct ops whose float64 check by `reference` passes.

    Some OpInfo samples fail torch's own float64 gradcheck (PyTorch's test suite skips
    them); this table leaves those out, in both dtypes.
    """
    passing = {r.case for r in records if r.checker == reference and r.dtype == "float64"
               and r.buggy is False and "/" not in r.case and not r.flagged}
    total = {r.case for r in records if r.buggy is False and "/" not in r.case}
    rows = [f"False alarms on the {len(passing)} correct ops (of {len(total)}) whose float64 check by "
            f"{reference} passes:\n",
            "| checker | float64 | float32 |", "|---|---|---|"]
    for name in checker_names():
        cells = []
        for d in ("float64", "float32"):
            rs = [r for r in records if r.checker == name and r.dtype == d and r.case in passing]
            cells.append(_rate(sum(r.flagged for r in rs), len(rs)) if rs else "-")
        if any(c != "-" for c in cells):
            rows.append(f"| {name} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows) + "\n"


def cost_table(records: Sequence[Record], *, anchor: str = "torch fast") -> str:
    """Per (case, dtype): each checker's verdict, function evaluations, seconds and the
    ratio of its time to the anchor's on the same case and dtype."""
    lines = ["| case | dtype | checker | verdict | function evals | seconds | time / " + anchor + " |",
             "|---|---|---|---|---|---|---|"]
    index = {(r.case, r.dtype, r.checker): r for r in records}
    for r in records:
        a = index.get((r.case, r.dtype, anchor))
        ratio = f"{r.seconds / a.seconds:.2f}" if a is not None and a.seconds > 0 else "n/a"
        verdict = ("raised" if r.raised else "flagged" if r.flagged else "passed") + (
            "" if r.correct is not False else " (wrong)")
        lines.append(f"| {r.case} | {r.dtype} | {r.checker} | {verdict} | {r.function_evals} | "
                     f"{r.seconds:.2f} | {ratio} |")
    return "\n".join(lines) + "\n"


def category_table(records: Sequence[Record], *, checkers: Sequence[str]) -> str:
    """Per category: correct verdicts of each checker, per dtype."""
    cats = list(dict.fromkeys(r.category for r in records))
    header = ["category", "cases"] + [f"{c} {d[-2:]}" for c in checkers for d in ("float64", "float32")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cat in cats:
        rs = [r for r in records if r.category == cat and r.buggy is not None]
        row = [cat, str(len({r.case for r in rs}))]
        for c in checkers:
            for d in ("float64", "float32"):
                sel = [r for r in rs if r.checker == c and r.dtype == d]
                row.append(f"{sum(bool(r.correct) for r in sel)}/{len(sel)}" if sel else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
