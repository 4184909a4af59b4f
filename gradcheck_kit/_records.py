"""Check records, the versioned JSON document and the terminal summary.

Shared by the pytest plugin (its `gradcheck` fixture and `--gradcheck-verify` items),
`python -m gradcheck_kit check` and `verify`: one record type, one document, one summary.
This module imports no framework, no numpy and not the verification matrix.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from ._report import _json_float

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "CheckRecord",
    "ReportPathError",
    "prepare_report_path",
    "results_document",
    "summary_lines",
    "write_json",
]

SCHEMA = "gradcheck_kit.results"
SCHEMA_VERSION = 1


class ReportPathError(OSError):
    """A report path that cannot be written (a missing permission, a file in the way)."""


@dataclass
class CheckRecord:
    """The outcome of one check, as reported, summarised and written to JSON.

    `error`, `tolerance` and `margin` (`error / tolerance`) are those of the check's
    tightest comparison; `None` for checks that are not a comparison (doc claims).
    `message` is the readable verdict of a failure; `details` holds the full figures.
    Under pytest, `test` is the node id of the test that made the check and `outcome`
    that test's pytest outcome (`"passed"`, `"failed"`, `"skipped"`, `"xfailed"`, ...).
    """

    id: str
    kind: str
    passed: bool
    error: float | None = None
    tolerance: float | None = None
    margin: float | None = None
    elapsed_s: float = 0.0
    model: str | None = None
    implementation: str | None = None
    check: str | None = None
    dtype: str | None = None
    device: str | None = None
    example: dict[str, Any] | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    test: str | None = None
    outcome: str | None = None

    @classmethod
    def from_report(cls, report: Any, *, id: str, kind: str) -> CheckRecord:
        """The record of a `gradcheck_kit.Report`."""
        tightest = max(report.comparisons, key=lambda c: c.margin, default=None)
        return cls(
            id=id,
            kind=kind,
            passed=report.passed,
            error=None if tightest is None else tightest.error,
            tolerance=None if tightest is None else tightest.tolerance,
            margin=None if tightest is None else tightest.margin,
            elapsed_s=report.elapsed_s,
            dtype=report.dtype,
            device=report.device,
            message="" if report.passed else str(report),
            details=report.to_dict(),
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("error", "tolerance", "margin"):
            out[key] = _json_float(out[key])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckRecord:
        values = dict(data)
        for key in ("error", "tolerance", "margin"):
            if isinstance(values.get(key), str):
                values[key] = float(values[key])
        return cls(**values)


# ---------------------------------------------------------------------------------------
# The terminal summary.


def summary_lines(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Lines for a terminal: counts, the tightest margin, and each failure.

    Records that carry a pytest `outcome` are counted per test, following pytest: a test
    that asserts a check disagrees (`assert not gradcheck(buggy, raise_exception=False)`)
    passed, and a hypothesis test is one test however many examples it checked. Records
    without one (the command line's checks) are each their own line item.
    """
    if records and all(r.get("outcome") is not None for r in records):
        return _per_test_lines(records)
    total = len(records)
    failed = [r for r in records if not r["passed"]]
    lines = [f"{total} check{_s(total)}, {len(failed)} failed"]
    lines += _tightest_line(records)
    lines += [_failure_line(r["id"], [r]) for r in failed]
    return lines


def _per_test_lines(records: Sequence[Mapping[str, Any]]) -> list[str]:
    tests: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        tests.setdefault(r.get("test") or r["id"], []).append(r)
    outcomes: dict[str, int] = {}
    for group in tests.values():
        outcomes[group[0]["outcome"]] = outcomes.get(group[0]["outcome"], 0) + 1
    counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
    disagreed = sum(1 for r in records if not r["passed"])
    lines = [
        f"{len(tests)} test{_s(len(tests))} with gradient checks: {counts}",
        f"{len(records)} check{_s(len(records))} (hypothesis examples counted one by one), "
        f"{disagreed} disagreed",
    ]
    lines += _tightest_line(records)
    for test, group in tests.items():
        if group[0]["outcome"] not in ("failed", "error"):
            continue
        failing = [r for r in group if not r["passed"]]
        if failing:
            lines.append(_failure_line(test, failing, of=len(group)))
        else:
            lines.append(f"FAILED {test}: every check agreed; the test failed for another reason")
    return lines


def _tightest_line(records: Sequence[Mapping[str, Any]]) -> list[str]:
    passing = [r for r in records if r["passed"] and _finite(r.get("margin"))]
    if not passing:
        return []
    tight = max(passing, key=lambda r: float(r["margin"]))
    return [
        f"tightest error / tolerance among agreeing checks: {float(tight['margin']):.3g} "
        f"(error {float(tight['error']):.3e} vs tolerance {float(tight['tolerance']):.3e}) "
        f"in {tight['id']}"
    ]


def _failure_line(test: str, failing: Sequence[Mapping[str, Any]], *, of: int = 1) -> str:
    compared = [r for r in failing if _finite(r.get("margin"))]
    if compared:
        worst = max(compared, key=lambda r: float(r["margin"]))
        figures = (
            f"error {float(worst['error']):.3e} vs tolerance {float(worst['tolerance']):.3e} "
            f"(error / tolerance {float(worst['margin']):.3g})"
        )
    else:
        message = failing[0].get("message") or "failed"
        figures = message.splitlines()[0]
    more = f" [{len(failing)} of {of} checks disagreed]" if of > 1 else ""
    return f"FAILED {test}: {figures}{more}"


def _s(n: int) -> str:
    return "" if n == 1 else "s"


# ---------------------------------------------------------------------------------------
# The JSON document.


def results_document(
    records: Sequence[Mapping[str, Any]],
    *,
    seed: int,
    command: str,
    options: Mapping[str, Any] | None = None,
    wall_s: float | None = None,
) -> dict[str, Any]:
    """The versioned JSON document of a run: tool and library versions, machine, commit,
    seed, options, a summary and every check with its figures.

    `summary.elapsed_s` is the run's wall time when `wall_s` is given (otherwise the sum
    of the checks' times); `summary.checks_s` is always that sum.
    """
    failed = sum(1 for r in records if not r["passed"])
    margins = [float(r["margin"]) for r in records if _finite(r.get("margin"))]
    checks_s = sum(float(r.get("elapsed_s") or 0.0) for r in records)
    from . import __version__

    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tool": {"name": "gradcheck_kit", "version": __version__, "command": command},
        "libraries": _library_versions(),
        "machine": {
            "hostname": socket.gethostname(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            # platform.processor() is empty on many Linux systems; the CPU model is in
            # /proc/cpuinfo there.
            "processor": platform.processor() or _cpu_model(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_implementation() + " " + platform.python_version(),
        },
        "git_commit": git_commit(),
        "seed": seed,
        "options": dict(options or {}),
        "summary": {
            "checks": len(records),
            "passed": len(records) - failed,
            "failed": failed,
            "worst_margin": max(margins, default=None),
            "elapsed_s": checks_s if wall_s is None else wall_s,
            "checks_s": checks_s,
        },
        "checks": list(records),
    }


def prepare_report_path(path: str | os.PathLike[str], *, option: str) -> Path:
    """Create the parent directories of a report `path` and check it can be written.

    Called before a run, so that a path that cannot be written fails at once instead of
    after the checks. Raises `ReportPathError` naming `option` and the reason.
    """
    target = Path(path).expanduser()
    try:
        if target.is_dir():
            raise ReportPathError(f"{option} {str(path)!r} is a directory; give a file path.")
        target.parent.mkdir(parents=True, exist_ok=True)
        existed = target.exists()
        with open(target, "a", encoding="utf-8"):
            pass
        if not existed:
            target.unlink()
    except ReportPathError:
        raise
    except OSError as exc:
        raise ReportPathError(
            f"{option} {str(path)!r} cannot be written ({exc.strerror or exc}); give a "
            f"path in a writable directory."
        ) from None
    return target


def write_json(
    path: str | os.PathLike[str],
    records: Sequence[Mapping[str, Any]],
    *,
    seed: int,
    command: str,
    options: Mapping[str, Any] | None = None,
    wall_s: float | None = None,
) -> None:
    """Write `results_document(...)` to `path`, creating its parent directories."""
    document = results_document(records, seed=seed, command=command, options=options, wall_s=wall_s)
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1, allow_nan=False)
        f.write("\n")


def _library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    # Installed versions from package metadata: reading them imports no framework.
    for dist in ("numpy", "torch", "jax", "jaxlib", "hypothesis", "pytest", "pytest-xdist"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def git_commit(directory: str | os.PathLike[str] | None = None) -> str | None:
    """The commit checked out in `directory` (default: the working directory), if any."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True,
            timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
