"""The pytest plugin, run on users' test files with `pytester`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import numpy  # noqa: F401
import pytest

import gradcheck_kit

# numpy is imported here, before any in-process pytester run: those runs unload the modules
# first imported during them, and numpy's extension cannot be loaded twice in a process
# (`import gradcheck_kit` itself no longer imports numpy).

PROJECT_ROOT = Path(gradcheck_kit.__file__).resolve().parents[1]


def _plugin_installed() -> bool:
    return any(ep.value == "gradcheck_kit.pytest_plugin" for ep in metadata.entry_points(group="pytest11"))


# Installed, the entry point loads the plugin; from a source tree it must be named, and
# naming it when the entry point also loads it would register it twice.
PLUGIN = [] if _plugin_installed() else ["-p", "gradcheck_kit.pytest_plugin"]


@pytest.fixture
def user_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose subprocesses import gradcheck_kit from this source tree.

    Runs that import torch or jax use `runpytest_subprocess`: in-process runs remove the
    modules first imported during them from sys.modules, and torch's and jaxlib's
    extensions abort the process when they are imported a second time.
    """
    monkeypatch.setenv("PYTHONPATH", str(PROJECT_ROOT))
    return pytester


CUSTOM_FUNCTIONS = textwrap.dedent(
    """
    import pytest
    import torch


    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**3

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 3 * x**2


    class BuggyCube(Cube):
        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 2 * x**2  # the factor should be 3


    def test_cube(gradcheck, gradcheck_dtype, gradcheck_device):
        torch.manual_seed(0)
        x = torch.randn(6, dtype=gradcheck_dtype, device=gradcheck_device,
                        requires_grad=True)
        assert gradcheck(Cube.apply, x)


    def test_buggy_cube(gradcheck, gradcheck_dtype, gradcheck_device):
        torch.manual_seed(0)
        x = torch.randn(6, dtype=gradcheck_dtype, device=gradcheck_device,
                        requires_grad=True)
        gradcheck(BuggyCube.apply, x)
    """
)


def test_loading_the_plugin_imports_neither_torch_nor_jax() -> None:
    code = (
        "import sys, gradcheck_kit.pytest_plugin\n"
        "print(sorted(m for m in ('torch', 'jax', 'hypothesis') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": ""},
    )
    assert out.stdout.strip() == "[]"


def test_correct_and_buggy_custom_functions(user_suite: pytest.Pytester, tmp_path: Path) -> None:
    user_suite.makepyfile(test_cube=CUSTOM_FUNCTIONS)
    report_path = tmp_path / "report.json"
    result = user_suite.runpytest_subprocess(*PLUGIN, "--gradcheck-report", str(report_path))
    # Defaults: every available device (the cpu here) x float64 and float32.
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*GradientMismatch: gradcheck FAILED*"])
    result.stdout.fnmatch_lines([
        "*= gradcheck_kit =*",
        "4 tests with gradient checks: 2 failed, 2 passed",
        "4 checks (hypothesis examples counted one by one), 2 disagreed",
        "tightest error / tolerance among agreeing checks: * in test_cube.py::test_cube*",
        "FAILED test_cube.py::test_buggy_cube?cpu-float64?: error * vs tolerance *",
        f"report written to {report_path}",
    ])
    document = json.loads(report_path.read_text())
    assert document["schema"] == "gradcheck_kit.results" and document["schema_version"] == 1
    assert document["summary"]["checks"] == 4 and document["summary"]["failed"] == 2
    by_id = {c["id"]: c for c in document["checks"]}
    assert set(by_id) == {
        f"test_cube.py::{name}[cpu-{dtype}]"
        for name in ("test_cube", "test_buggy_cube")
        for dtype in ("float64", "float32")
    }
    buggy = by_id["test_cube.py::test_buggy_cube[cpu-float32]"]
    assert not buggy["passed"] and buggy["margin"] > 1
    assert buggy["details"]["dtype"] == "float32"
    # The report localises the bug: against finite differences, each element it names
    # has the analytic derivative at two thirds of the true one.
    worst = [
        e for c in buggy["details"]["comparisons"] if "finite differences" in c["check"]
        for e in c["worst"]
    ]
    assert worst and all(abs(e["analytic"] - 2 / 3 * e["numeric"]) < 1e-3 * abs(e["numeric"]) + 1e-6 for e in worst)
    good = by_id["test_cube.py::test_cube[cpu-float64]"]
    assert good["passed"] and 0 <= good["margin"] < 1


def test_options_and_markers_select_devices_and_dtypes(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(
        test_select="""
        import pytest

        def test_default(gradcheck_device, gradcheck_dtype):
            pass

        @pytest.mark.gradcheck_dtypes("float64")
        def test_pinned_dtype(gradcheck_dtype_name):
            assert gradcheck_dtype_name == "float64"

        @pytest.mark.gradcheck_devices("cpu", "cuda:7")
        def test_pinned_devices(gradcheck_device):
            assert gradcheck_device in ("cpu", "cuda:7")

        @pytest.mark.parametrize("gradcheck_dtype_name", ["float16"])
        def test_user_parametrized(gradcheck_dtype_name):
            assert gradcheck_dtype_name == "float16"
        """
    )
    result = user_suite.runpytest_subprocess(*PLUGIN, "-v", "--gradcheck-dtypes", "float32,bfloat16")
    result.assert_outcomes(passed=5, skipped=1)
    result.stdout.fnmatch_lines_random([
        "*test_default?cpu-float32? PASSED*",
        "*test_default?cpu-bfloat16? PASSED*",
        "*test_pinned_dtype?float64? PASSED*",
        "*test_pinned_devices?cpu? PASSED*",
        "*test_pinned_devices?cuda:7? SKIPPED*",
        "*test_user_parametrized?float16? PASSED*",
    ])
    # Nothing was gradchecked, so no summary section is printed.
    assert "= gradcheck_kit =" not in result.stdout.str()


def test_a_bad_marker_is_the_error_of_its_test_alone(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.gradcheck_dtypes("int32")
        def test_bad_dtype(gradcheck_dtype):
            pass

        @pytest.mark.gradcheck_devices("gpu")
        def test_bad_device(gradcheck_device):
            pass

        def test_fine(gradcheck_dtype_name):
            pass
        """
    )
    # -rN: no short test summary, whose one-line echo of each error newer pytest versions
    # add; the count below is about the error report itself.
    result = user_suite.runpytest(*PLUGIN, "-rN")
    # The other tests of the file still run.
    result.assert_outcomes(passed=2, errors=2)
    text = result.stdout.str()
    message = "@pytest.mark.gradcheck_dtypes contains 'int32', which is not a floating dtype"
    assert text.count(message) == 1, text
    assert "ERROR collecting" not in text
    result.stdout.fnmatch_lines(["*'gpu', which is not a device name (a GPU is 'cuda' or 'cuda:N')*"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gradcheck-dtypes", "float128"], "*--gradcheck-dtypes*float128*"),
        (["--gradcheck-devices", "gpu"], "*'gpu', which is not a device name*"),
        (["--gradcheck-devices", "cpu,cdua:0"], "*'cdua:0', which is not a device name*"),
    ],
)
def test_unknown_device_or_dtype_names_are_usage_errors(
    user_suite: pytest.Pytester, args: list[str], message: str
) -> None:
    user_suite.makepyfile(test_x="def test_x(gradcheck_device):\n    pass\n")
    result = user_suite.runpytest(*PLUGIN, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_ini_options_are_read_and_checked(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(
        test_x="def test_x(gradcheck_dtype_name, gradcheck_device):\n    pass\n"
    )
    user_suite.makeini("[pytest]\ngradcheck_dtypes = float32\ngradcheck_devices = cpu\n")
    result = user_suite.runpytest(*PLUGIN, "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*test_x?cpu-float32? PASSED*"])
    # The command line wins over the ini file.
    result = user_suite.runpytest(*PLUGIN, "-v", "--gradcheck-dtypes", "float64")
    result.stdout.fnmatch_lines(["*test_x?cpu-float64? PASSED*"])
    user_suite.makeini("[pytest]\ngradcheck_devices = gpu\n")
    result = user_suite.runpytest(*PLUGIN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'gpu', which is not a device name*"])


def test_help_says_which_options_need_verify_and_names_ini_options(user_suite: pytest.Pytester) -> None:
    from gradcheck_kit._options import OPTIONS

    result = user_suite.runpytest(*PLUGIN, "--help")
    text = " ".join(result.stdout.str().split())
    for option in OPTIONS:
        if option.plugin is None:
            continue
        assert f"ini option: {option.ini}" in text, option.ini
        assert f"{option.ini} (" in text or f"{option.ini}:" in text or option.ini in text
    assert "[only with --gradcheck-verify]" in text
    models_help = text[text.index("--gradcheck-models"):text.index("--gradcheck-implementations")]
    assert "[only with --gradcheck-verify]" in models_help
    dtypes_help = text[text.index("--gradcheck-dtypes"):text.index("--gradcheck-devices")]
    assert "[only with --gradcheck-verify]" not in dtypes_help


def test_an_unavailable_device_is_reported_in_the_summary(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(test_x="def test_x(gradcheck_device):\n    pass\n")
    result = user_suite.runpytest_subprocess(*PLUGIN, "--gradcheck-devices", "cpu,cuda:7")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines([
        "*= gradcheck_kit =*",
        "devices not available on this machine, their tests were SKIPPED: cuda:7 (available: cpu*)",
    ])


def test_hypothesis_test_with_strategies_and_a_profile(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(
        test_property="""
        import torch
        from hypothesis import given, settings

        from gradcheck_kit import strategies as gst


        @given(x=gst.tensors(shape=gst.shapes(max_dims=2, max_side=3), kinks=(0.0,)))
        def test_relu(gradcheck, gradcheck_dtype, x):
            assert gradcheck(torch.relu, x.to(gradcheck_dtype).detach().requires_grad_())


        @given(x=gst.tensors(shape=gst.shapes(min_dims=1, max_dims=1, max_side=4)))
        def test_wrong_derivative_is_found_and_shrunk(gradcheck, x):
            class Sq(torch.autograd.Function):
                @staticmethod
                def forward(ctx, t):
                    ctx.save_for_backward(t)
                    return t * t

                @staticmethod
                def backward(ctx, g):
                    (t,) = ctx.saved_tensors
                    return g * t  # should be 2 * t

            gradcheck(Sq.apply, x)
        """
    )
    result = user_suite.runpytest_subprocess(
        *PLUGIN, "--gradcheck-profile", "quick", "--gradcheck-dtypes", "float32", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, failed=1)
    # Hypothesis shrank the failing input to a minimal one: a single non-zero element.
    text = result.stdout.str()
    # Hypothesis names the minimal example "Falsifying example" (older releases) or
    # "Failing test case" (newer ones).
    header = re.search(
        r"(Falsifying example|Failing test case): test_wrong_derivative_is_found_and_shrunk\(", text
    )
    assert header is not None, text
    falsifying = text[header.start():]
    shrunk = re.search(r"x=tensor\(\[([^\]]*)\], dtype=torch.float64, requires_grad=True\)", falsifying)
    assert shrunk is not None, falsifying
    (value,) = shrunk.group(1).split(",")
    assert float(value) != 0.0
    # Every example's check was recorded; the failures are listed by test.
    result.stdout.fnmatch_lines(["*= gradcheck_kit =*", "FAILED test_property.py::test_wrong_derivative_is_found_and_shrunk: *"])


HYPOTHESIS_SCOPE = """
import torch
from hypothesis import given, strategies as st

from gradcheck_kit import strategies as gst

calls = {"plain": 0, "gradient": 0}


@given(st.integers())
def test_plain(n):
    calls["plain"] += 1


@given(x=gst.tensors(shape=gst.shapes(max_dims=1, max_side=3)))
def test_gradient(gradcheck, x):
    calls["gradient"] += 1
    gradcheck(torch.sin, x)


def test_counts():
    print("COUNTS", calls["plain"], calls["gradient"])
"""


@pytest.mark.parametrize(
    "args, plain, gradient",
    [
        # Ours governs only the test that uses the gradcheck fixture.
        (["--gradcheck-profile", "quick"], 100, 10),
        # The user's profile wins everywhere, --gradcheck-profile or not.
        (["--gradcheck-profile", "quick", "--hypothesis-profile", "mine"], 7, 7),
        # Ours, registered under its name, selected as any hypothesis profile.
        (["--hypothesis-profile", "gradcheck_kit.quick"], 10, 10),
    ],
)
def test_our_hypothesis_profile_never_overrides_the_users(
    user_suite: pytest.Pytester, args: list[str], plain: int, gradient: int
) -> None:
    user_suite.makeconftest(
        "from hypothesis import settings\nsettings.register_profile('mine', max_examples=7)\n"
    )
    user_suite.makepyfile(test_scope=HYPOTHESIS_SCOPE)
    result = user_suite.runpytest_subprocess(*PLUGIN, "-s", "-p", "no:randomly", *args)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines([f"*COUNTS {plain} {gradient}*"])


README_GIVEN = """
import torch
from datetime import timedelta
from hypothesis import given, settings
from gradcheck_kit import strategies as gst

# The user's own settings (a deadline hypothesis would enforce) are kept: the first
# check's one-off set-up must not count against the first example.
@settings(deadline=timedelta(milliseconds=500), max_examples=5)
@given(x=gst.tensors(shape=gst.shapes(max_dims=1, max_side=4)))
def test_sin_with_a_deadline(gradcheck, x):
    gradcheck(torch.sin, x)

# The README's example.
@given(x=gst.tensors(shape=gst.shapes(max_dims=2), kinks=(0.0,)))
def test_relu(gradcheck, x):
    gradcheck(torch.relu, x)
"""


def test_readme_given_example_meets_deadlines_in_a_fresh_process(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(test_readme=README_GIVEN)
    # The test with a deadline runs first: it would pay the one-off set-up.
    result = user_suite.runpytest_subprocess(*PLUGIN, "-p", "no:randomly")
    assert result.ret == 0, result.stdout.str()
    assert "DeadlineExceeded" not in result.stdout.str()


def test_terminal_summary_follows_pytest_outcomes(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(
        test_outcomes="""
        import torch
        from hypothesis import given, settings
        from gradcheck_kit import strategies as gst

        def test_expects_disagreement(gradcheck):
            x = torch.randn(3, dtype=torch.float64, requires_grad=True)
            assert not gradcheck(lambda t: 2 * t.detach() * t, x, raise_exception=False)

        def test_agrees(gradcheck):
            x = torch.randn(3, dtype=torch.float64, requires_grad=True)
            gradcheck(torch.sin, x)

        @settings(max_examples=4, database=None)
        @given(x=gst.tensors(shape=gst.shapes(min_dims=1, max_dims=1, max_side=3)))
        def test_many_examples(gradcheck, x):
            gradcheck(torch.tanh, x)
        """
    )
    result = user_suite.runpytest_subprocess(*PLUGIN, "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    text = result.stdout.str()
    result.stdout.fnmatch_lines([
        "3 tests with gradient checks: 3 passed",
        "* checks (hypothesis examples counted one by one), 1 disagreed",
    ])
    # A test pytest passed is never listed as failed.
    assert "FAILED" not in text, text


def test_an_unwritable_report_path_is_a_usage_error_before_running(
    user_suite: pytest.Pytester, tmp_path: Path
) -> None:
    user_suite.makepyfile(test_x="def test_x():\n    raise AssertionError('must not run')\n")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = user_suite.runpytest(*PLUGIN, "--gradcheck-report", str(blocker / "report.json"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--gradcheck-report*cannot be written*"])
    assert "must not run" not in result.stdout.str()


PUBLIC_NAMES = textwrap.dedent(
    """
    import torch
    import gradcheck_kit

    def test_names(gradcheck, gradcheck_dtype, gradcheck_device):
        assert repr(gradcheck) == "<gradcheck fixture, seed=0>"
        assert gradcheck_dtype in (torch.float64, torch.float32)
        x = torch.randn(4, dtype=gradcheck_dtype, device=gradcheck_device)
        assert x.dtype == gradcheck_dtype
        assert gradcheck_kit.GradientMismatch.__module__ == "gradcheck_kit"
        assert gradcheck_kit.CheckInputError.__module__ == "gradcheck_kit"

    def test_failure_names_the_public_exception(gradcheck):
        x = torch.randn(3, dtype=torch.float64, requires_grad=True)
        gradcheck(lambda t: 2 * t.detach() * t, x)
    """
)


def test_numpy_modules_get_numpy_dtypes(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(
        test_np="""
        import numpy as np

        def test_np(gradcheck_dtype, gradcheck_dtype_name):
            assert np.zeros(2, dtype=gradcheck_dtype).dtype == np.dtype(gradcheck_dtype_name)
        """
    )
    result = user_suite.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(passed=2)


def test_verify_collects_the_cross_check_suite_as_items(user_suite: pytest.Pytester, tmp_path: Path) -> None:
    import reference_models

    report_path = tmp_path / "verify.json"
    result = user_suite.runpytest_subprocess(
        *PLUGIN, "-v", "--gradcheck-verify", "--gradcheck-models", "graph_e",
        "--gradcheck-examples", "0", "--gradcheck-dtypes", "float64",
        "--gradcheck-report", str(report_path),
    )
    model = reference_models.get("graph_e")
    crosschecks = [f"graph_e[{impl}-crosscheck-float64-cpu-doc]" for impl in model.implementations]
    claims = [
        f"graph_e[{impl}-fidelity:{claim.name}-float64-cpu]"
        for claim in model.fidelity.values() if "float64" in claim.dtypes
        for impl in claim.applies_to(model)
    ]
    result.assert_outcomes(passed=len(crosschecks) + len(claims))
    # "[" opens a character class in fnmatch patterns; "[[]" matches it literally.
    result.stdout.fnmatch_lines_random([
        f"gradcheck_kit-verify::{name.replace('[', '[[]')} PASSED*" for name in crosschecks + claims
    ])
    n = len(crosschecks) + len(claims)
    result.stdout.fnmatch_lines([f"{n} tests with gradient checks: {n} passed"])
    kinds = [c["kind"] for c in json.loads(report_path.read_text())["checks"]]
    assert kinds.count("crosscheck") == len(crosschecks) and kinds.count("fidelity") == len(claims)
    result = user_suite.runpytest_subprocess(*PLUGIN, "--gradcheck-verify", "--gradcheck-models", "graph")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'graph' is not a registered model. Did you mean 'graph_e'?*"])


@pytest.mark.slow
def test_under_xdist_reports_from_every_worker_are_merged(user_suite: pytest.Pytester, tmp_path: Path) -> None:
    user_suite.makepyfile(test_cube=CUSTOM_FUNCTIONS)
    report_path = tmp_path / "report.json"
    result = user_suite.runpytest_subprocess(
        *PLUGIN, "-n", "2", "--gradcheck-report", str(report_path), "-p", "no:cacheprovider",
    )
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*= gradcheck_kit =*", "4 tests with gradient checks: 2 failed, 2 passed"])
    document = json.loads(report_path.read_text())
    assert len({c["id"] for c in document["checks"]}) == 4


COMPARE_SUITE = textwrap.dedent(
    """
    import pytest
    import torch

    from gradcheck_kit import GradientMismatch


    class WrongTanh(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = torch.tanh(x)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, grad):
            (y,) = ctx.saved_tensors
            return grad * (1 - y * y) * 1.5  # 50% too large


    def x():
        return torch.linspace(-2, 2, 16, dtype=torch.bfloat16).requires_grad_()


    def test_fixture_passes_a_correct_kernel(gradcheck_compare):
        assert gradcheck_compare(torch.tanh, torch.tanh, x())


    def test_method_finds_the_bug(gradcheck):
        with pytest.raises(GradientMismatch):
            gradcheck.compare(WrongTanh.apply, torch.tanh, x())


    def test_failure_fails_the_test(gradcheck):
        gradcheck.compare(WrongTanh.apply, torch.tanh, x())
    """
)


MODULE_SUITE = textwrap.dedent(
    """
    import torch

    import gradcheck_kit


    def test_module_method_checks_the_parameters(gradcheck):
        report = gradcheck.module(torch.nn.Linear(3, 2), torch.randn(4, 3))
        # torch's structural checks pull back all inputs at once ("weight, bias")
        compared = {
            c.input for c in report.comparisons
            if c.kind is not gradcheck_kit.ComparisonKind.STRUCTURAL
        }
        assert compared == {"weight", "bias"}
    """
)


# One pytest process for several files: each run costs seconds of torch import.
def test_compare_fixture_public_names_and_a_report_in_a_new_directory(
    user_suite: pytest.Pytester, tmp_path: Path
) -> None:
    user_suite.makepyfile(
        test_kernels=COMPARE_SUITE, test_names=PUBLIC_NAMES, test_modules=MODULE_SUITE
    )
    report = tmp_path / "not" / "yet" / "report.json"
    result = user_suite.runpytest_subprocess(
        *PLUGIN, "-p", "no:randomly", "--gradcheck-report", str(report)
    )
    result.assert_outcomes(passed=5, failed=2)
    # compare: recorded like gradcheck, its failure fails the test.
    result.stdout.fnmatch_lines(["*compare FAILED: torch function, bfloat16*"])
    result.stdout.fnmatch_lines(["*FAILED test_kernels.py::test_failure_fails_the_test: error*"])
    document = json.loads(report.read_text())
    records = [r for r in document["checks"] if r["test"].startswith("test_kernels.py")]
    assert [r["kind"] for r in records] == ["compare"] * 3
    assert [(r["passed"], r["outcome"]) for r in records] == [
        (True, "passed"), (False, "passed"), (False, "failed")
    ]
    assert records[0]["dtype"] == "bfloat16" and records[0]["test"].endswith("test_fixture_passes_a_correct_kernel")
    modules = [r for r in document["checks"] if r["test"].startswith("test_modules.py")]
    assert [(r["kind"], r["passed"]) for r in modules] == [("check_module", True)]
    # Public exception names in failures, never private module paths.
    result.stdout.fnmatch_lines(["*gradcheck_kit.GradientMismatch: gradcheck FAILED*"])
    assert "gradcheck_kit._report" not in result.stdout.str()
    # The report's directory was created; the document names the machine and the options.
    assert document["machine"]["hostname"] and "elapsed_s" in document["summary"]
    assert document["options"]["report"] == str(report)


def test_gradcheck_device_under_xdist_is_the_workers_own_gpu(
    user_suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two GPUs are simulated (the device table is replaced), so no GPU is needed; the
    # worker id is the one pytest-xdist sets in each worker's environment.
    user_suite.makeconftest(
        """
        import gradcheck_kit._options as options

        options._devices = lambda framework="torch": ("cpu", "cuda:0", "cuda:1")
        """
    )
    user_suite.makepyfile(test_x="def test_x(gradcheck_device):\n    print('DEVICE', gradcheck_device)\n")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    result = user_suite.runpytest_subprocess(*PLUGIN, "--gradcheck-devices", "cuda", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*DEVICE cuda:1*"])
