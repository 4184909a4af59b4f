"""The final table of `verify` and its failure list, in at most 100 columns.

One row per (model, implementation): how many checks, the worst error / tolerance among
its comparisons, the relative error there, and which comparison that was (check kind,
quantity, dtype); a failure that is not a comparison (a broken contract, an exception)
says what happened instead of showing infinite errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_failures", "format_table"]

MAX_WIDTH = 100
_HEADER = ("model", "implementation", "checks", "error / tolerance", "rel. error", "worst at", "verdict")
_NUMERIC = {2, 3, 4}
_SHORT = {"finite_differences": "fd", "consensus": "consensus", "pairwise": "pairwise", "jax": "jax"}


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
    """The table of `records` (dicts as `CheckRecord.to_dict` makes them), in their order."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault((r.get("model") or "-", r.get("implementation") or "-"), []).append(r)
    table = [_HEADER]
    for (model, impl), group in groups.items():
        table.append((model, impl, str(len(group)), *_worst_cells(group), _verdict(group)))
    widths = [max(len(row[i]) for row in table) for i in range(len(_HEADER))]
    # Long names are cut (the failure list below names them in full) so the table fits.
    while sum(widths) + 2 * (len(widths) - 1) > MAX_WIDTH and max(widths[0], widths[1], widths[5]) > 12:
        i = max((0, 1, 5), key=lambda j: widths[j])
        widths[i] -= 1
    lines = []
    for row in table:
        cells = [_fit(c, w).rjust(w) if i in _NUMERIC else _fit(c, w).ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_failures(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each failed check once: what disagreed, by how much, or what was violated."""
    lines: list[str] = []
    for r in records:
        if r["passed"]:
            continue
        rows = (r.get("details") or {}).get("rows") or []
        failing = [row for row in rows if not row.get("passed")]
        if not failing:
            message = (r.get("message") or "failed").splitlines()
            lines.append(f"FAILED {r['id']}: {message[0].removeprefix(r['id'] + ': ')}")
            lines += [f"  {m}" for m in message[1:]]
            continue
        if all(row.get("check") == "valid" for row in failing):
            lines.append(f"FAILED {r['id']}: the implementation contract is violated")
        else:
            lines.append(f"FAILED {r['id']}: {len(failing)} of {len(rows)} comparisons disagree")
        lines += [f"  {_row_text(row)}" for row in failing]
    return lines


def _worst_cells(group: Sequence[Mapping[str, Any]]) -> tuple[str, str, str]:
    compared = [r for r in group if _finite(r.get("margin"))]
    if not compared:
        broken = next((r for r in group if not r["passed"]), None)
        return "-", "-", "-" if broken is None else _violation(broken)
    worst = max(compared, key=lambda r: float(r["margin"]))
    row = _tightest_row(worst)
    relative = "-"
    where = worst.get("check") or worst.get("kind") or ""
    if row is not None:
        relative = _relative(row)
        where = _SHORT.get(row.get("check"), row.get("check") or "")
        if row.get("quantity"):
            where += f" {row['quantity']}{_index(row.get('index'))}"
    where += f" {worst.get('dtype') or ''}".rstrip()
    return f"{float(worst['margin']):.3g}", relative, where


def _tightest_row(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
    rows = [r for r in (record.get("details") or {}).get("rows") or () if _finite(_float(r.get("margin")))]
    return max(rows, key=lambda r: _float(r["margin"]), default=None)


def _violation(record: Mapping[str, Any]) -> str:
    rows = (record.get("details") or {}).get("rows") or []
    if any(r.get("check") == "valid" and not r.get("passed") for r in rows):
        return "contract violated"
    if "raised" in (record.get("message") or "").split("\n", 1)[0]:
        return "raised an exception"
    return "not compared"


def _verdict(group: Sequence[Mapping[str, Any]]) -> str:
    failed = sum(1 for r in group if not r["passed"])
    return "ok" if not failed else f"FAIL {failed} of {len(group)}"


def _row_text(row: Mapping[str, Any]) -> str:
    check, against = row.get("check"), row.get("against")
    margin = _float(row.get("margin"))
    if check == "valid":
        return row.get("detail") or "the implementation contract is violated"
    if not _finite(margin):
        return f"{check} vs {against}: {row.get('detail') or 'could not be compared'}"
    what = f"{row.get('quantity') or ''}{_index(row.get('index'))}"
    text = f"{check} vs {against}: {what}"
    actual, expected = _float(row.get("actual")), _float(row.get("expected"))
    if actual is not None and expected is not None:
        text += f" is {actual:.6g} where {against} has {expected:.6g}"
    text += (
        f"; error {_float(row['error']):.3e}, tolerance {_float(row['tolerance']):.3e} "
        f"(error / tolerance {margin:.3g}, rel. error {_relative(row)})"
    )
    if row.get("size"):
        text += f"; {row.get('mismatched', 0)} of {row['size']} elements beyond tolerance"
    if row.get("detail"):
        text += f"; {row['detail']}"
    return text


def _relative(row: Mapping[str, Any]) -> str:
    actual, expected = _float(row.get("actual")), _float(row.get("expected"))
    if actual is None or expected is None or not (_finite(actual) and _finite(expected)):
        return "-"
    if expected == 0.0:
        return "0" if actual == 0.0 else "inf"
    return f"{abs(actual - expected) / abs(expected):.2e}"


def _index(index: Any) -> str:
    if not index:
        return ""
    return "[" + ",".join(str(i) for i in index) + "]"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _float(x: Any) -> float | None:
    if x is None:
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
