"""The pytest plugin, run on users' test files with `pytester`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

import gradcheck_kit

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
        x = torch.randn(6, dtype=getattr(torch, gradcheck_dtype), device=gradcheck_device,
                        requires_grad=True)
        assert gradcheck(Cube.apply, x)


    def test_buggy_cube(gradcheck, gradcheck_dtype, gradcheck_device):
        torch.manual_seed(0)
        x = torch.randn(6, dtype=getattr(torch, gradcheck_dtype), device=gradcheck_device,
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
        "4 checks, 2 failed",
        "tightest margin among passing checks: * in test_cube.py::test_cube*",
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
        def test_pinned_dtype(gradcheck_dtype):
            assert gradcheck_dtype == "float64"

        @pytest.mark.gradcheck_devices("cpu", "cuda:7")
        def test_pinned_devices(gradcheck_device):
            assert gradcheck_device in ("cpu", "cuda:7")

        @pytest.mark.parametrize("gradcheck_dtype", ["float16"])
        def test_user_parametrized(gradcheck_dtype):
            assert gradcheck_dtype == "float16"
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


def test_bad_options_and_markers_are_usage_errors(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.gradcheck_dtypes("int32")
        def test_x(gradcheck_dtype):
            pass
        """
    )
    result = user_suite.runpytest(*PLUGIN)
    result.stdout.fnmatch_lines([
        "*ERROR collecting test_bad.py*",
        "@pytest.mark.gradcheck_dtypes contains 'int32', which is not a floating dtype*",
    ])
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result = user_suite.runpytest(*PLUGIN, "--gradcheck-dtypes", "float128")
    result.stderr.fnmatch_lines(["*--gradcheck-dtypes*float128*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_hypothesis_test_with_strategies_and_a_profile(user_suite: pytest.Pytester) -> None:
    user_suite.makepyfile(
        test_property="""
        import torch
        from hypothesis import given, settings

        from gradcheck_kit import strategies as gst


        def test_profile_is_loaded():
            assert settings().max_examples == 10 and settings().deadline is None


        @given(x=gst.tensors(shape=gst.shapes(max_dims=2, max_side=3), kinks=(0.0,)))
        def test_relu(gradcheck, gradcheck_dtype, x):
            assert gradcheck(torch.relu, x.to(getattr(torch, gradcheck_dtype)).detach().requires_grad_())


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
    result.assert_outcomes(passed=2, failed=1)
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
    result.stdout.fnmatch_lines([f"{len(crosschecks) + len(claims)} checks, 0 failed"])
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
    result.stdout.fnmatch_lines(["*= gradcheck_kit =*", "4 checks, 2 failed"])
    document = json.loads(report_path.read_text())
    assert len({c["id"] for c in document["checks"]}) == 4
