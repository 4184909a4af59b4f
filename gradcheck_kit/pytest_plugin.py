"""The pytest plugin: `gradcheck` fixtures, device and dtype parametrisation, reports, verify.

Registered with the `pytest11` entry point, so pytest loads it in every session. Loading it
imports neither torch, jax nor hypothesis: they are imported when a test needs them.

- Fixtures: `gradcheck` (calls `gradcheck_kit.gradcheck` with the session's seed and
  records the result; `.gradgradcheck` and `.compare` likewise), `gradcheck_compare`
  (`gradcheck.compare`), `gradcheck_device` and `gradcheck_dtype` (each test runs once per
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
    add_pytest_options,
    available_devices,
    check_device_names,
    check_dtypes,
    device_available,
    gradient_test_settings,
    plugin_values,
    profile_named,
    register_hypothesis_profiles,
    worker_device,
)

if TYPE_CHECKING:
    from ._report import Report

__all__ = ["GradcheckFixture"]

_RECORDS = pytest.StashKey[list]()
_CURRENT = pytest.StashKey[str]()
_VALUES = pytest.StashKey[dict]()
_OUTCOMES = pytest.StashKey[dict]()
_WORKER_OUTPUT = "gradcheck_kit_records"
_SUITE = "gradcheck_kit-verify"
_MARKERS = {
    "gradcheck_devices": "gradcheck_devices(*devices): run this test's gradcheck_device "
    "parameter on exactly these devices (unavailable ones are skipped)",
    "gradcheck_dtypes": "gradcheck_dtypes(*dtypes): run this test's gradcheck_dtype "
    "parameter in exactly these dtypes",
}
_FIXTURES = ("gradcheck", "gradcheck_compare", "gradcheck_device", "gradcheck_dtype", "gradcheck_dtype_name")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser)


# tryfirst: our hypothesis profiles must be registered before hypothesis's own plugin
# loads the one `--hypothesis-profile` names.
@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for line in _MARKERS.values():
        config.addinivalue_line("markers", line)
    config.stash[_RECORDS] = []
    config.stash[_OUTCOMES] = {}
    if not _is_worker(config):
        config.pluginmanager.register(
            _OutcomeTracker(config.stash[_OUTCOMES]), "gradcheck_kit-outcomes"
        )
    try:
        values = plugin_values(config.getoption, config.getini)
        for key, check in (("dtypes", check_dtypes), ("devices", check_device_names)):
            if values[key] is not None:
                values[key] = check(values[key], argument=f"--gradcheck-{key}")
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_VALUES] = values
    if values["verify"]:
        _use_groups_under_xdist(config)
    for path_key in ("report",):
        if values[path_key] and not _is_worker(config):
            from ._records import ReportPathError, prepare_report_path

            try:
                prepare_report_path(values[path_key], option="--gradcheck-report")
            except ReportPathError as exc:
                raise pytest.UsageError(str(exc)) from None
    hypothesis_profile = _hypothesis_profile(config)
    if hypothesis_profile and hypothesis_profile.startswith("gradcheck_kit."):
        register_hypothesis_profiles()
    for module in values["modules"] or ():
        _import_user_module(module)


def _option(config: pytest.Config, dest: str) -> Any:
    return config.stash[_VALUES][dest]


def _hypothesis_profile(config: pytest.Config) -> str | None:
    try:
        return config.getoption("hypothesis_profile")
    except ValueError:  # hypothesis's plugin is not loaded
        return None


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

    Calls take the arguments of `gradcheck_kit.gradcheck` (`.gradgradcheck`, `.module`
    (`check_module`) and `.compare` those of theirs); `seed` defaults to the session's `--gradcheck-seed`. A failure raises
    what the library raises (`GradientMismatch`, `InconclusiveCheck`, `ReferenceMismatch`)
    with the readable report, unless `raise_exception=False`; every result is recorded,
    under the running test's id, for the summary and `--gradcheck-report`.
    """

    def __init__(self, config: pytest.Config) -> None:
        self._config = config

    def __repr__(self) -> str:
        return f"<gradcheck fixture, seed={_option(self._config, 'seed')}>"

    def __call__(self, fn: Callable[..., Any], inputs: Any, **kwargs: Any) -> Report:
        """`gradcheck_kit.gradcheck(fn, inputs, **kwargs)`, recorded."""
        __tracebackhide__ = True
        from . import gradcheck

        return self._checked(gradcheck, "gradcheck", (fn, inputs), kwargs)

    def gradgradcheck(self, fn: Callable[..., Any], inputs: Any, **kwargs: Any) -> Report:
        """`gradcheck_kit.gradgradcheck(fn, inputs, **kwargs)`, recorded."""
        __tracebackhide__ = True
        from . import gradgradcheck

        return self._checked(gradgradcheck, "gradgradcheck", (fn, inputs), kwargs)

    def module(self, module: Any, inputs: Any = (), **kwargs: Any) -> Report:
        """`gradcheck_kit.check_module(module, inputs, **kwargs)`, recorded: a module checked
        with respect to its parameters and inputs."""
        __tracebackhide__ = True
        from . import check_module

        return self._checked(check_module, "check_module", (module, inputs), kwargs)

    def compare(
        self, fn: Callable[..., Any], reference: Callable[..., Any], inputs: Any, **kwargs: Any
    ) -> Report:
        """`gradcheck_kit.compare(fn, reference, inputs, **kwargs)`, recorded: a
        low-precision candidate against a dtype-generic reference."""
        __tracebackhide__ = True
        from . import compare

        return self._checked(compare, "compare", (fn, reference, inputs), kwargs)

    def _checked(
        self, check: Callable[..., Report], kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Report:
        __tracebackhide__ = True
        from ._records import CheckRecord

        raise_exception = kwargs.pop("raise_exception", True)
        kwargs.setdefault("seed", _option(self._config, "seed"))
        report = check(*args, raise_exception=False, **kwargs)
        nodeid = self._config.stash.get(_CURRENT, "")
        record = CheckRecord.from_report(report, id=nodeid, kind=kind)
        record.test = nodeid
        record.details["options"] = {
            k: v for k, v in kwargs.items() if isinstance(v, (str, int, float, bool, type(None)))
        }
        self._config.stash[_RECORDS].append(record.to_dict())
        if raise_exception and not report:
            _raise_for(report)
        return report


def _raise_for(report: Report) -> None:
    """Raise what `gradcheck_kit` itself raises for this failed report."""
    __tracebackhide__ = True
    if getattr(report, "reference_ok", True) is False:
        from ._reference import ReferenceMismatch

        raise ReferenceMismatch(report)
    from ._report import GradientMismatch, raise_for

    raise_for(report)
    raise GradientMismatch(report)


# The fixtures are session-scoped so that hypothesis tests may use them (hypothesis
# rejects function-scoped fixtures, which would not be reset between its examples);
# records are filed under the test that is running, tracked below.


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> None:
    item.config.stash[_CURRENT] = item.nodeid


@pytest.fixture(scope="session")
def gradcheck(pytestconfig: pytest.Config) -> GradcheckFixture:
    """`gradcheck_kit.gradcheck` with the session's options; results go to the summary."""
    # Set up before the first test that uses it runs, so outside hypothesis's timing.
    from ._targets.session import warm_up

    warm_up()
    return GradcheckFixture(pytestconfig)


@pytest.fixture(scope="session")
def gradcheck_compare(gradcheck: GradcheckFixture) -> Callable[..., Report]:
    """`gradcheck_kit.compare` with the session's seed, recorded like `gradcheck` (the same
    as `gradcheck.compare`)."""
    return gradcheck.compare


@pytest.fixture(scope="session")
def gradcheck_device(request: pytest.FixtureRequest) -> str:
    """A device name (`"cpu"`, `"cuda:0"`, ...); the test runs once per selected device.

    Torch and jax both take the name as `device=`.
    """
    device = getattr(request, "param", "cpu")
    if isinstance(device, _BadMarker):
        pytest.fail(device.message, pytrace=False)
    if not device_available(device):
        pytest.skip(f"device {device!r} is not available on this machine")
    # Under pytest-xdist a bare kind ("cuda") is this worker's own device, so that `-n N`
    # spreads the suite over the GPUs; every worker still collects the same tests.
    import os

    return worker_device(device, available_devices("torch"), os.environ.get("PYTEST_XDIST_WORKER"))


class _DtypeParam:
    """A dtype parameter: its name and the framework of the test's module."""

    def __init__(self, name: str, framework: str) -> None:
        self.name = name
        self.framework = framework

    def __str__(self) -> str:
        return self.name


@pytest.fixture(scope="session")
def _gradcheck_dtype_param(request: pytest.FixtureRequest) -> _DtypeParam:
    param = getattr(request, "param", None)
    if isinstance(param, _BadMarker):
        pytest.fail(param.message, pytrace=False)
    return param if param is not None else _DtypeParam("float64", "numpy")


@pytest.fixture(scope="session")
def gradcheck_dtype_name(_gradcheck_dtype_param: _DtypeParam) -> str:
    """The name of the test's dtype (`"float64"`, ...); the test runs once per dtype."""
    return _gradcheck_dtype_param.name


@pytest.fixture(scope="session")
def gradcheck_dtype(_gradcheck_dtype_param: _DtypeParam) -> Any:
    """The test's dtype as an object its framework takes as `dtype=`.

    `torch.float64` in a test module that imports torch; otherwise a `numpy.dtype`,
    which numpy and jax take. The name alone is the `gradcheck_dtype_name` fixture.
    """
    from ._targets.session import framework_dtype

    return framework_dtype(_gradcheck_dtype_param.name, _gradcheck_dtype_param.framework)


class _BadMarker:
    """A marker value that cannot be used: the error of the one test that carries it."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __str__(self) -> str:
        return "bad-marker"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for fixture, marker, values in (
        ("gradcheck_device", "gradcheck_devices", _devices),
        ("_gradcheck_dtype_param", "gradcheck_dtypes", _dtypes),
    ):
        if fixture not in metafunc.fixturenames or _parametrized_by_user(metafunc, fixture):
            continue
        if fixture == "_gradcheck_dtype_param" and (
            _parametrized_by_user(metafunc, "gradcheck_dtype")
            or _parametrized_by_user(metafunc, "gradcheck_dtype_name")
        ):
            continue
        pinned = metafunc.definition.get_closest_marker(marker)
        try:
            selected: list[Any] = values(
                metafunc.config, pinned.args if pinned is not None else None
            )
            if fixture == "_gradcheck_dtype_param":
                from ._targets.session import framework_of_module

                framework = framework_of_module(metafunc.module)
                selected = [_DtypeParam(name, framework) for name in selected]
        except ValueError as exc:
            # The error of this test alone (at its set-up), not of its whole module.
            selected = [_BadMarker(str(exc))]
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
        return check_device_names(pinned, argument=f"@pytest.mark.gradcheck_devices{pinned!r}")
    # Detecting accelerators imports torch, so it happens only when a test asks for devices.
    return list(_option(config, "devices") or available_devices("torch"))


def _dtypes(config: pytest.Config, pinned: tuple[Any, ...] | None) -> list[str]:
    if pinned is not None:
        return check_dtypes(pinned, argument="@pytest.mark.gradcheck_dtypes")
    return list(_option(config, "dtypes") or DEFAULT_DTYPES)


# ---------------------------------------------------------------------------------------
# Hypothesis settings of gradient tests.


def _scope_hypothesis_settings(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give hypothesis tests that use the `gradcheck` fixture the gradient-test settings.

    Only those tests, and only where the user has not chosen: a test with its own
    `@settings`, or a run with `--hypothesis-profile`, keeps the user's settings. Other
    `@given` tests are never touched.
    """
    if _hypothesis_profile(config):
        return
    profile = profile_named(_option(config, "profile"))
    for item in items:
        if "gradcheck" not in getattr(item, "fixturenames", ()):
            continue
        test = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))
        if not getattr(test, "is_hypothesis_test", False):
            continue
        if getattr(test, "_hypothesis_internal_settings_applied", False):
            continue
        if getattr(test, "_gradcheck_kit_settings", False):
            continue
        from hypothesis import settings

        test._hypothesis_internal_use_settings = settings(
            test._hypothesis_internal_use_settings, **gradient_test_settings(profile)
        )
        test._gradcheck_kit_settings = True


# ---------------------------------------------------------------------------------------
# The verify suite as test items.


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    # tryfirst: the items must exist before `-k` and `-m` deselect among them.
    _scope_hypothesis_settings(config, items)
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


def _use_groups_under_xdist(config: pytest.Config) -> None:
    """Under `-n N`, `--gradcheck-verify` distributes by group, as `verify --jobs N` does,
    unless `--dist` was given."""
    explicit = any(
        arg == "-d" or arg.startswith("--dist") for arg in config.invocation_params.args
    )
    if not explicit and getattr(config.option, "dist", "no") == "load":
        config.option.dist = "loadgroup"


class VerifySuite(pytest.Collector):
    """The parent of the verify items (they are made from the plan, not collected)."""

    def collect(self) -> list[pytest.Item]:
        return []


class VerifyItem(pytest.Item):
    """One case of the verification matrix: a model, an implementation, a check, a place."""

    def __init__(self, *, case: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.record: dict[str, Any] | None = None
        # Cases that share a model, dtype, device and example share their oracles; under
        # `--dist loadgroup` they run on one worker, which computes the oracles once.
        if self.config.pluginmanager.hasplugin("xdist"):
            self.add_marker(pytest.mark.xdist_group(case.group))

    def runtest(self) -> None:
        from ._verify import run_case

        if not device_available(self.case.device):
            pytest.skip(f"device {self.case.device!r} is not available on this machine")
        record = run_case(self.case)
        record.test = self.nodeid
        self.record = record.to_dict()
        self.config.stash[_RECORDS].append(self.record)
        if not record.passed:
            raise VerifyFailure(record.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, VerifyFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[str, int | None, str]:
        return _SUITE, None, self.name


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    record = getattr(item, "record", None)
    if call.when == "call" and record is not None:
        # On the report, as JSON text: xdist carries a report's plain attributes from the
        # worker to the controller, where `verify` shows its progress from them.
        outcome.get_result().gradcheck_record = json.dumps(record)


class VerifyFailure(AssertionError):
    """A verify case that disagreed; its message is the case's readable verdict."""


# ---------------------------------------------------------------------------------------
# Outcomes, merging under xdist, the report file and the terminal summary.


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


class _OutcomeTracker:
    """Each test's pytest outcome, from its reports (workers' reports arrive on the
    controller under xdist): the outcome of its worst phase, as pytest counts it."""

    _RANK = {"passed": 0, "xpassed": 1, "skipped": 2, "xfailed": 3, "failed": 4, "error": 5}

    def __init__(self, outcomes: dict[str, str]) -> None:
        self.outcomes = outcomes

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        elif report.failed:
            outcome = "failed" if report.when == "call" else "error"
        else:
            outcome = report.outcome
        previous = self.outcomes.get(report.nodeid)
        if previous is None or self._RANK[outcome] > self._RANK[previous]:
            self.outcomes[report.nodeid] = outcome


def _with_outcomes(config: pytest.Config, records: list[dict]) -> list[dict]:
    outcomes = config.stash.get(_OUTCOMES, {})
    for record in records:
        test = record.get("test")
        if test is not None:
            record["outcome"] = outcomes.get(test, record.get("outcome"))
    return records


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
        from ._records import write_json

        options = {
            k: v for k, v in config.stash[_VALUES].items() if v is not None and v is not False
        }
        try:
            write_json(
                path, _with_outcomes(config, records), seed=_option(config, "seed"),
                command="pytest", options=options,
            )
        except OSError as exc:
            # Checked writable at the start; if that changed, pytest's own verdict stands
            # and the report's loss is said plainly, not turned into a gradient failure.
            config.stash[_VALUES]["report_error"] = f"{exc.strerror or exc}"


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    text = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT)
    if text:
        node.config.stash[_RECORDS].extend(json.loads(text))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if _is_worker(config):
        return
    records = _with_outcomes(config, config.stash.get(_RECORDS, []))
    missing = _unavailable_devices(config)
    if not records and not _option(config, "report") and not missing:
        return
    from ._records import summary_lines

    terminalreporter.section("gradcheck_kit")
    if missing:
        terminalreporter.write_line(
            f"devices not available on this machine, their tests were SKIPPED: "
            f"{', '.join(missing)} (available: {', '.join(available_devices('torch'))})",
            yellow=True, bold=True,
        )
    if records:
        for line in summary_lines(records):
            terminalreporter.write_line(line)
    path = _option(config, "report")
    error = config.stash[_VALUES].get("report_error")
    if path and error:
        terminalreporter.write_line(f"report NOT written to {path}: {error}", red=True)
    elif path:
        terminalreporter.write_line(f"report written to {path}")


def _unavailable_devices(config: pytest.Config) -> list[str]:
    devices = _option(config, "devices")
    if not devices:
        return []
    return [d for d in devices if not device_available(d)]
