"""How `verify` runs its cases: `pytest --gradcheck-verify` in this process, `-n N` for
`--jobs N`, with our progress display fed by the reports pytest (or xdist) delivers here.

One path for every `--jobs`: `-k` and `-x` mean what they mean to pytest, the records come
back in catalogue order whatever worker ran them, pytest's own terminal output is off (no
temporary paths, each failure printed once, by `verify`), and Ctrl-C ends the run with
the records so far.
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ._cli_progress import Display
from ._options import to_pytest_args

__all__ = ["SuiteRun", "run_suite"]


@dataclass
class SuiteRun:
    """What a run of the suite gave: the records (in catalogue order), how many cases were
    selected, and whether it was interrupted (Ctrl-C)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    selected: int = 0
    interrupted: bool = False
    exit_status: int = 0


class _Listener:
    """A pytest plugin on the controlling process: counts the selected items, shows each
    finished case and keeps its record."""

    def __init__(self, display: Display, models: Mapping[str, str]) -> None:
        self.display = display
        self.models = models
        self.run = SuiteRun()

    def _start(self, ids: Sequence[str]) -> None:
        if not self.run.selected:
            names = [i.rpartition("::")[2] for i in ids]
            self.run.selected = len(names)
            self.display.start([self.models.get(n, n.partition("[")[0]) for n in names])

    def pytest_collection_finish(self, session: Any) -> None:
        if not hasattr(session.config, "workerinput") and session.items:
            self._start([item.nodeid for item in session.items])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        self._start(ids)

    def pytest_runtest_logreport(self, report: Any) -> None:
        text = getattr(report, "gradcheck_record", None)
        if text is None and isinstance(report, dict):  # pragma: no cover - older xdist
            text = report.get("gradcheck_record")
        if text is None:
            return
        record = json.loads(text)
        self.run.records.append(record)
        self.display.advance(record)

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        self.run.interrupted = True


def run_suite(
    selection: Mapping[str, Any],
    *,
    case_ids: Sequence[str],
    models: Mapping[str, str],
    modules: Sequence[Any],
    jobs: int,
    keyword: str | None,
    exitfirst: bool,
    display: Display,
    environment: Mapping[str, str],
) -> SuiteRun:
    """Run the verify suite of `selection` (the options of `verify`) under pytest here.

    `case_ids` is the plan's order, in which the records are returned; `models` maps a case
    id to its model (for the per-model progress lines).
    """
    listener = _Listener(display, models)
    with tempfile.TemporaryDirectory(prefix="gradcheck_kit-") as tmp, _environment(
        environment, modules
    ):
        ini = Path(tmp, "pytest.ini")
        # xdist gives its workers the sys.path this interpreter started with, which lacks
        # the user's modules (and this package, when run from a checkout): pytest's
        # `pythonpath` adds them in every process.
        ini.write_text("[pytest]\npythonpath = " + " ".join(shlex.quote(p) for p in _paths(modules)) + "\n")
        args = [
            tmp, "-c", str(ini), "--rootdir", tmp, "--noconftest",
            "-p", "gradcheck_kit.pytest_plugin", "-p", "no:terminal", "-p", "no:cacheprovider",
            # Its clean-up runs gc.collect five times (1.5 s with torch and jax loaded), to
            # report exceptions nobody would see here.
            "-p", "no:unraisableexception",
            # Our display writes between cases; a check's own prints stay out of it.
            "--capture=sys", "-W", "ignore",
            "--gradcheck-verify",
            *to_pytest_args({**selection, "modules": [m.__name__ for m in modules]}),
        ]
        if jobs > 1:
            args += ["-p", "xdist.plugin", "-n", str(jobs), "--dist", "loadgroup"]
        if keyword:
            args += ["-k", keyword]
        if exitfirst:
            args.append("-x")
        status = pytest.main(args, plugins=[listener])
    run = listener.run
    run.exit_status = int(status)
    if int(status) == int(pytest.ExitCode.INTERRUPTED):
        run.interrupted = True
    order = {case_id: i for i, case_id in enumerate(case_ids)}
    run.records.sort(key=lambda r: order.get(r["id"], len(order)))
    return run


def _paths(modules: Sequence[Any]) -> list[str]:
    """Where this package and the user's modules were imported from, and the working
    directory."""
    from ._cli import _import_root

    paths = [os.getcwd(), str(Path(__file__).resolve().parents[1])]
    paths += [_import_root(m) for m in modules]
    return list(dict.fromkeys(p for p in paths if p))


@contextmanager
def _environment(environment: Mapping[str, str], modules: Sequence[Any]) -> Iterator[None]:
    """The process environment of the run, restored afterwards.

    xdist's workers inherit it: one thread each, jax's cache, no plugins but ours (an
    installed entry point cannot register this plugin twice, nor a user's plugin reorder
    the cases), and the paths this package and the user's modules were imported from.
    """
    wanted = {**{k: os.environ.get(k, v) for k, v in environment.items()}}
    wanted["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    wanted["PYTHONPATH"] = os.pathsep.join(
        dict.fromkeys(p for p in [*_paths(modules), os.environ.get("PYTHONPATH", "")] if p)
    )
    # The user's PYTEST_ADDOPTS are for their own suites, not for this one.
    saved = {k: os.environ.get(k) for k in [*wanted, "PYTEST_ADDOPTS"]}
    os.environ.pop("PYTEST_ADDOPTS", None)
    os.environ.update(wanted)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
