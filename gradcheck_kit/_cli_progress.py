"""The progress display of `verify`, on stderr.

- On a terminal: a progress bar with the count, elapsed time and ETA (rich).
- Piped (a CI log): one line per model, when its last case has finished.
- `-v`: one line per case; `-q`: nothing (only the summary, printed by the command).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["Display", "make_display"]


class Display:
    """The quiet display, and the interface of the others: `start` with each selected
    case's model, `advance` with each finished case's record, `close` at the end."""

    def start(self, models: Sequence[str]) -> None:
        pass

    def advance(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class _Lines(Display):
    """One line per case (`verbose`) or per model."""

    def __init__(self, stream: TextIO, *, per_case: bool) -> None:
        self.stream = stream
        self.per_case = per_case
        self.total = 0
        self.done = 0
        self.left: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.count: Counter[str] = Counter()
        self.began = time.perf_counter()
        self.model_began: dict[str, float] = {}

    def start(self, models: Sequence[str]) -> None:
        self.total = len(models)
        self.left = Counter(models)
        self.count = Counter(models)
        self.began = time.perf_counter()
        self._write(f"verify: {self.total} checks")

    def advance(self, record: dict[str, Any]) -> None:
        self.done += 1
        model = record.get("model") or "-"
        self.model_began.setdefault(model, time.perf_counter())
        self.failed[model] += not record["passed"]
        if self.per_case:
            verdict = "ok" if record["passed"] else "FAIL"
            width = len(str(self.total))
            self._write(
                f"[{self.done:>{width}}/{self.total}] {record['id']} {verdict} "
                f"({float(record.get('elapsed_s') or 0.0):.2f} s)"
            )
            return
        self.left[model] -= 1
        if self.left[model] == 0:
            failed = self.failed[model]
            verdict = "ok" if not failed else f"FAIL ({failed} of {self.count[model]})"
            elapsed = time.perf_counter() - self.began
            self._write(
                f"[{self.done}/{self.total}] {model}: {self.count[model]} checks {verdict} "
                f"({elapsed:.1f} s elapsed)"
            )

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


class _Bar(Display):
    """A rich progress bar, redrawn when a case finishes (never from a thread, so nothing
    is drawn while pytest captures a case's output)."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("verify"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[model]}"),
            console=Console(file=stream),
            auto_refresh=False,
            transient=True,
        )
        self.task: Any = None
        self.failed = 0

    def start(self, models: Sequence[str]) -> None:
        self.progress.start()
        self.task = self.progress.add_task("verify", total=len(models), failed="", model="")
        self.progress.refresh()

    def advance(self, record: dict[str, Any]) -> None:
        if self.task is None:
            return
        self.failed += not record["passed"]
        self.progress.update(
            self.task, advance=1, model=record.get("model") or "",
            failed=f"{self.failed} failed" if self.failed else "",
        )
        self.progress.refresh()

    def close(self) -> None:
        self.progress.stop()


def make_display(stream: TextIO, *, verbosity: int) -> Display:
    """The display for `stream`: quiet below 0, per case above 0, else a bar on a
    terminal and one line per model elsewhere."""
    if verbosity < 0:
        return Display()
    if verbosity > 0:
        return _Lines(stream, per_case=True)
    if _is_terminal(stream):
        try:
            return _Bar(stream)
        except ImportError:  # rich is a dependency; a trimmed environment still gets lines
            pass
    return _Lines(stream, per_case=False)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
