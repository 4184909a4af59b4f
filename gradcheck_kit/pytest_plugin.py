"""The pytest plugin: `gradcheck` fixtures, device and dtype parametrisation, reports, verify.

Registered with the `pytest11` entry point, so pytest loads it in every session. Loading it
imports neither torch, jax nor hypothesis: they are imported when a test needs them.

- Fixtures: `gradcheck` (calls `gradcheck_kit.gradcheck` with the session's seed and
  records the result), `gradcheck_device` and `gradcheck_dtype` (each test runs once per
  device and dtype; defaults: every available device, float64 and float32).
- Markers: `@pytest.mark.gradcheck_devices("cpu")` and `@pytest.mark.gradcheck_dtypes(
  "float64")` pin the devices or dtypes of one test, whatever the options say.
- Options: see `gradcheck_kit._options.OPTIONS` (`--gradcheck-devices`,
  `--gradcheck-dtypes`, `--gradcheck-profile`, `--gradcheck-report PATH`,
  `--gradcheck-verify`, ...).
- Under pytest-xdist each worker sends its records to the controller when it finishes;
  the controller writes the report and prints the summary.
"""

from __future__ import annotations

import importlib
import json
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from ._options import (
    DEFAULT_DTYPES,
    PLUGIN_DEST_PREFIX,
    add_pytest_options,
    available_devices,
    check_dtypes,
    device_available,
    load_hypothesis_profile,
)

if TYPE_CHECKING:
    from ._report import Report

__all__ = ["GradcheckFixture"]

_RECORDS = pytest.StashKey[list]()
_CURRENT = pytest.StashKey[str]()
_WORKER_OUTPUT = "gradcheck_kit_records"
_SUITE = "gradcheck_kit-verify"
_MARKERS = {
    "gradcheck_devices": "gradcheck_devices(*devices): run this test's gradcheck_device "
    "parameter on exactly these devices (unavailable ones are skipped)",
    "gradcheck_dtypes": "gradcheck_dtypes(*dtypes): run this test's gradcheck_dtype "
    "parameter in exactly these dtypes",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for line in _MARKERS.values():
        config.addinivalue_line("markers", line)
    config.stash[_RECORDS] = []
    profile = _option(config, "profile")
    if profile is not None:
        load_hypothesis_profile(profile)
    for module in _option(config, "modules") or ():
        _import_user_module(module)


def _option(config: pytest.Config, dest: str) -> Any:
    return config.getoption(PLUGIN_DEST_PREFIX + dest)


def _import_user_module(name: str) -> None:
    try:
        importlib.import_module(name)
    except Exception:
        raise pytest.UsageError(
            f"--gradcheck-modules: importing {name!r} failed, so its models and "
            f"implementations cannot join the checks. Fix the module or the name:\n"
            f"{traceback.format_exc()}"
        ) from None


# ---------------------------------------------------------------------------------------
# Fixtures and parametrisation.


class GradcheckFixture:
    """What the `gradcheck` fixture returns: `gradcheck_kit.gradcheck`, recorded.

    Calls take the arguments of `gradcheck_kit.gradcheck`; `seed` defaults to the
    session's `--gradcheck-seed`. A failure raises `GradientMismatch` with the readable
    report (unless `raise_exception=False`); every result is recorded, under the running
    test's id, for the summary and `--gradcheck-report`.
    """

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    def __call__(self, fn: Callable[..., Any], inputs: Any, **kwargs: Any) -> Report:
        """`gradcheck_kit.gradcheck(fn, inputs, **kwargs)`, recorded."""
        __tracebackhide__ = True
        from . import gradcheck

        return self._checked(gradcheck, "gradcheck", fn, inputs, kwargs)

    def gradgradcheck(self, fn: Callable[..., Any], inputs: Any, **kwargs: Any) -> Report:
        """`gradcheck_kit.gradgradcheck(fn, inputs, **kwargs)`, recorded."""
        __tracebackhide__ = True
        from . import gradgradcheck

        return self._checked(gradgradcheck, "gradgradcheck", fn, inputs, kwargs)

    def _checked(
        self, check: Callable[..., Report], kind: str, fn: Any, inputs: Any, kwargs: dict[str, Any]
    ) -> Report:
        __tracebackhide__ = True
        from ._report import GradientMismatch
        from ._verify import CheckRecord

        raise_exception = kwargs.pop("raise_exception", True)
        kwargs.setdefault("seed", _option(self._config, "seed"))
        report = check(fn, inputs, raise_exception=False, **kwargs)
        nodeid = self._config.stash.get(_CURRENT, "")
        self._config.stash[_RECORDS].append(
            CheckRecord.from_report(report, id=nodeid, kind=kind).to_dict()
        )
        if raise_exception and not report:
            raise GradientMismatch(report)
        return report


# The fixtures are session-scoped so that hypothesis tests may use them (hypothesis
# rejects function-scoped fixtures, which would not be reset between its examples);
# records are filed under the test that is running, tracked below.


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> None:
    item.config.stash[_CURRENT] = item.nodeid


@pytest.fixture(scope="session")
def gradcheck(pytestconfig: pytest.Config) -> GradcheckFixture:
    """`gradcheck_kit.gradcheck` with the session's options; results go to the summary."""
    return GradcheckFixture(pytestconfig)


@pytest.fixture(scope="session")
def gradcheck_device(request: pytest.FixtureRequest) -> str:
    """A device name (`"cpu"`, `"cuda:0"`, ...); the test runs once per selected device."""
    device = getattr(request, "param", "cpu")
    if not device_available(device):
        pytest.skip(f"device {device!r} is not available on this machine")
    return device


@pytest.fixture(scope="session")
def gradcheck_dtype(request: pytest.FixtureRequest) -> str:
    """A dtype name (`"float64"`, ...); the test runs once per selected dtype.

    Torch wants a dtype object: `getattr(torch, gradcheck_dtype)`.
    """
    return getattr(request, "param", "float64")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, marker, values in (
        ("gradcheck_device", "gradcheck_devices", _devices),
        ("gradcheck_dtype", "gradcheck_dtypes", _dtypes),
    ):
        if fixture not in metafunc.fixturenames or _parametrized_by_user(metafunc, fixture):
            continue
        pinned = metafunc.definition.get_closest_marker(marker)
        selected = values(metafunc.config, pinned.args if pinned is not None else None)
        # Function scope for the parameters keeps the tests in file order instead of
        # regrouping the whole session by device and dtype.
        metafunc.parametrize(fixture, selected, indirect=True, ids=str, scope="function")


def _parametrized_by_user(metafunc: pytest.Metafunc, name: str) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if name in names:
            return True
    return False


def _devices(config: pytest.Config, pinned: tuple[Any, ...] | None) -> list[str]:
    if pinned is not None:
        if not pinned or not all(isinstance(d, str) and d for d in pinned):
            pytest.fail(
                f"@pytest.mark.gradcheck_devices{pinned!r} must name one or more devices, "
                f"such as @pytest.mark.gradcheck_devices('cpu', 'cuda').",
                pytrace=False,
            )
        return list(dict.fromkeys(pinned))
    # Detecting accelerators imports torch, so it happens only when a test asks for devices.
    return list(_option(config, "devices") or available_devices("torch"))


def _dtypes(config: pytest.Config, pinned: tuple[Any, ...] | None) -> list[str]:
    if pinned is not None:
        try:
            return check_dtypes(pinned, argument="@pytest.mark.gradcheck_dtypes")
        except ValueError as exc:
            # A collection error of this test, shown as the message alone.
            pytest.fail(str(exc), pytrace=False)
    return list(_option(config, "dtypes") or DEFAULT_DTYPES)


# ---------------------------------------------------------------------------------------
# The verify suite as test items.


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # tryfirst: the items must exist before `-k` and `-m` deselect among them.
    if not _option(config, "verify"):
        return
    from ._verify import VerifyError, plan

    try:
        cases = plan(
            models=_option(config, "models"),
            implementations=_option(config, "implementations"),
            dtypes=_option(config, "dtypes"),
            devices=_option(config, "devices"),
            examples=_option(config, "examples"),
            seed=_option(config, "seed"),
            profile=_option(config, "profile"),
        )
    except VerifyError as exc:
        raise pytest.UsageError(f"--gradcheck-verify: {exc}") from None
    suite = VerifySuite.from_parent(session, name=_SUITE, nodeid=_SUITE)
    made = [VerifyItem.from_parent(suite, name=case.id, case=case) for case in cases]
    items.extend(made)
    # Reported like any collected node, so the terminal counts the items.
    config.hook.pytest_collectreport(
        report=pytest.CollectReport(suite.nodeid, "passed", None, list(made))
    )


class VerifySuite(pytest.Collector):
    """The parent of the verify items (they are made from the plan, not collected)."""

    def collect(self) -> list[pytest.Item]:
        return []


class VerifyItem(pytest.Item):
    """One case of the verification matrix: a model, an implementation, a check, a place."""

    def __init__(self, *, case: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        # Cases that share a model, dtype, device and example share their oracles; under
        # `--dist loadgroup` they run on one worker, which computes the oracles once.
        if self.config.pluginmanager.hasplugin("xdist"):
            self.add_marker(pytest.mark.xdist_group(case.group))

    def runtest(self) -> None:
        from ._verify import run_case

        if not device_available(self.case.device):
            pytest.skip(f"device {self.case.device!r} is not available on this machine")
        record = run_case(self.case)
        self.config.stash[_RECORDS].append(record.to_dict())
        if not record.passed:
            raise VerifyFailure(record.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, VerifyFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[str, int | None, str]:
        return _SUITE, None, self.name


class VerifyFailure(AssertionError):
    """A verify case that disagreed; its message is the case's readable verdict."""


# ---------------------------------------------------------------------------------------
# Merging under xdist, the report file and the terminal summary.


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    records = config.stash.get(_RECORDS, [])
    if _is_worker(config):
        # Sent to the controller with the worker's "finished" event (as text: execnet
        # carries only plain types, and the text survives any float).
        config.workeroutput[_WORKER_OUTPUT] = json.dumps(records)
        return
    path = _option(config, "report")
    if path:
        from ._verify import write_json

        write_json(path, records, seed=_option(config, "seed"), command="pytest")


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    text = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT)
    if text:
        node.config.stash[_RECORDS].extend(json.loads(text))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _is_worker(config):
        return
    records = config.stash.get(_RECORDS, [])
    if not records and not _option(config, "report"):
        return
    from ._verify import summary_lines

    terminalreporter.section("gradcheck_kit")
    for line in summary_lines(records):
        terminalreporter.write_line(line)
    path = _option(config, "report")
    if path:
        terminalreporter.write_line(f"report written to {path}")
