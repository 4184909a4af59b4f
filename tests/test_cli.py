"""`python -m gradcheck_kit`: list, check, and the errors every command shares."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import reference_models
from gradcheck_kit.__main__ import main

OPS = textwrap.dedent(
    """
    import torch


    def smooth(x, y):
        return (x.sin() * y.sum()).tanh()


    class _WrongExp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            out = x.exp()
            ctx.save_for_backward(out)
            return out

        @staticmethod
        def backward(ctx, grad):
            (out,) = ctx.saved_tensors
            return grad * out * 1.001  # 0.1% too large


    def wrong_exp(x):
        return _WrongExp.apply(x)


    def jax_smooth(x):
        import jax.numpy as jnp

        return jnp.tanh(x) * jnp.sum(x**2)


    def tanh_reference(x):
        return torch.tanh(x)


    class _WrongTanh(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = torch.tanh(x)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, grad):
            (y,) = ctx.saved_tensors
            return grad * (1 - y * y) * 1.5  # 50% too large


    def wrong_tanh(x):
        return _WrongTanh.apply(x)


    NOT_A_FUNCTION = 3
    """
)


@pytest.fixture
def ops_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "user_ops.py").write_text(OPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "user_ops", raising=False)
    return "user_ops"


def test_list_prints_models_implementations_and_sources(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in reference_models.names():
        model = reference_models.get(name)
        assert f"{name}: {model.description}" in out
        assert f"  defined in: reference_models/{name}.py" in out
        for impl in model.implementations:
            assert f"  implementation {impl}: " in out
    assert "implementation numpy_manual: reference_models.two_layer_relu:numpy_manual" in out
    # Every path it prints exists, and functions are named, never shown as reprs.
    for line in out.splitlines():
        if line.startswith(("  source: ", "  defined in: ")):
            assert Path(line.split(": ", 1)[1].split(" (", 1)[0]).exists() or line.startswith("  source: ")
    assert "<lambda>" not in out and " at 0x" not in out
    assert "a lambda in reference_models.cubic_fit, line " in out


def test_list_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--json"]) == 0
    models = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert list(models) == reference_models.names()
    relu = models["two_layer_relu"]
    assert relu["sizes"] == dict(reference_models.get("two_layer_relu").default_sizes)
    assert relu["implementations"]["numpy_manual"] == "reference_models.two_layer_relu:numpy_manual"
    assert relu["claims"] and Path(relu["file"]).is_file()
    import reference_models as package

    root = Path(package.__file__).resolve().parent
    for m in models.values():
        # A source is given only when the installed package has that file.
        assert m["source"] is None or (root / m["source"].split(" (")[0]).is_file() or (
            root.parent / m["source"].split(" (")[0]).is_file()


def test_check_passes_a_correct_function_and_writes_json(
    ops_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "check.json"
    status = main(["check", f"{ops_module}:smooth", "--input", "3,2", "--input", "2:float32",
                   "--json", str(path)])
    assert status == 0, capsys.readouterr()
    assert "gradcheck PASSED" in capsys.readouterr().out
    document = json.loads(path.read_text())
    assert document["tool"]["command"] == "check"
    (record,) = document["checks"]
    assert record["passed"] and record["id"] == f"{ops_module}:smooth"
    assert document["options"]["inputs"] == ["3,2", "2:float32"]


def test_check_a_jax_function(ops_module: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"{ops_module}:jax_smooth", "--framework", "jax", "--input", "2,3"]) == 0
    assert "gradcheck PASSED: jax function, float64" in capsys.readouterr().out


def test_check_finds_a_small_error_and_exits_1(ops_module: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", f"{ops_module}:wrong_exp", "--input", "4"]) == 1
    out = capsys.readouterr().out
    assert "gradcheck FAILED" in out and "element input[" in out


def test_check_accepts_a_file_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "ops_by_path.py"
    file.write_text(OPS)
    try:
        assert main(["check", f"{file}:smooth", "--input", "2", "--input", "scalar"]) == 0
    finally:
        sys.modules.pop("ops_by_path", None)


def test_check_compares_a_low_precision_kernel_with_a_reference(
    ops_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "compare.json"
    argv = ["check", f"{ops_module}:wrong_tanh", "--reference", f"{ops_module}:tanh_reference",
            "--input", "16:bfloat16", "--json", str(path)]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert out.startswith("compare FAILED: torch function, bfloat16") and "verdict: mismatch" in out
    record = json.loads(path.read_text())["checks"][0]
    assert record["kind"] == "compare" and not record["passed"] and record["dtype"] == "bfloat16"
    argv[1] = f"{ops_module}:tanh_reference"
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("compare PASSED")
    assert json.loads(path.read_text())["options"]["reference"] == f"{ops_module}:tanh_reference"
    assert main([*argv[:2], "--reference", f"{ops_module}:no_such_fn", *argv[4:]]) == 2
    assert "has no attribute 'no_such_fn'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "user_ops", "--input", "3"], "is not MODULE:FUNCTION"),
        (["check", "user_ops:missing", "--input", "3"], "has no attribute 'missing'"),
        (["check", "user_ops:NOT_A_FUNCTION", "--input", "3"], "is a int, not a function"),
        (["check", "user_ops:smooth", "--input", "3,a"], "'3,a' is not a shape"),
        (["check", "user_ops:smooth", "--input", "3:int8"], "'int8', which is not a floating dtype"),
        (["check", "user_ops:smooth", "--input", "3"], "missing 1 required positional argument"),
        (["check", "no_such_module_here:f", "--input", "3"], "importing module 'no_such_module_here' failed"),
    ],
)
def test_check_usage_errors_exit_2(
    ops_module: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err


def test_a_user_module_that_fails_to_import_shows_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken_registration.py").write_text("import reference_models\n1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["list", "--module", "broken_registration"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError" in err
    assert "importing module 'broken_registration' failed" in err


def test_usage_errors_from_argparse_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["verify", "--dtype", "int8"]) == 2
    assert "int8" in capsys.readouterr().err
    assert main(["--help"]) == 0


def test_python_dash_m_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gradcheck_kit", "verify", "--model", "no_such_model"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 2
    assert "'no_such_model' is not a registered model" in done.stderr


# ---------------------------------------------------------------------------------------
# verify

BROKEN_PORTS = textwrap.dedent(
    """
    import numpy as np
    import reference_models


    def raising_port(params, data, *, dtype="float64", device="cpu"):
        raise RuntimeError("this port is not finished")


    def wrong_sign_port(params, data, *, dtype="float64", device="cpu"):
        a, b = float(params["a"]), float(params["b"])
        e = (a + b) * (b + 1)
        return e, {"a": np.asarray(-(b + 1), dtype=dtype), "b": np.asarray(a + 2 * b + 1, dtype=dtype)}


    reference_models.register_implementation("graph_e", "raising_port", raising_port)
    reference_models.register_implementation("graph_e", "wrong_sign_port", wrong_sign_port)
    """
)


@pytest.fixture
def verify_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo what `verify` sets up for its own process (thread pools, jax's cache)."""
    import torch

    from gradcheck_kit._cli import _verify_environment

    for name, value in _verify_environment().items():
        monkeypatch.setenv(name, value)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def broken_ports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "broken_ports.py").write_text(BROKEN_PORTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_ports", raising=False)
    yield "broken_ports"
    for name in ("raising_port", "wrong_sign_port"):
        if name in reference_models.get("graph_e").implementations:
            reference_models.unregister_implementation("graph_e", name)


def test_verify_agrees_prints_a_table_and_writes_json_and_junit(
    verify_process: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import xml.etree.ElementTree as ET

    # In directories that do not exist yet: created as pytest's --junitxml does.
    json_path, junit_path = tmp_path / "out" / "verify.json", tmp_path / "junit" / "verify.xml"
    status = main(["verify", "--model", "graph_e", "--model", "linear_w", "--profile", "quick",
                   "--seed", "3", "--json", str(json_path), "--junit-xml", str(junit_path)])
    out, err = capsys.readouterr()
    assert status == 0, out
    implementations = {m: list(reference_models.get(m).implementations) for m in ("graph_e", "linear_w")}
    from gradcheck_kit._verify import plan

    planned = plan(models=["graph_e", "linear_w"], profile="quick", seed=3)
    total = len(planned)
    per_pair = {(c.model, c.implementation): 0 for c in planned}
    for c in planned:
        per_pair[c.model, c.implementation] += 1
    # Piped progress: one line per model, on stderr; the table on stdout, one row per pair.
    assert f"verify: {total} checks" in err and f"[{total}/{total}] linear_w: " in err
    assert len([line for line in err.splitlines() if line.startswith("[")]) == 2
    lines = out.splitlines()
    assert lines[0].split() == [
        "model", "implementation", "checks", "error", "/", "tolerance", "rel.", "error", "worst", "at", "verdict"
    ]
    assert all(len(line) <= 100 for line in lines)
    for model, impls in implementations.items():
        for impl in impls:
            row = next(line.split() for line in lines if line.split()[:2] == [model, impl])
            assert int(row[2]) == per_pair[model, impl] and row[-1] == "ok"
            # error / tolerance, the relative error, then where: check kind, quantity, dtype.
            assert float(row[3]) <= 1 and float(row[4]) < 1e-3
            assert row[5] in {"fd", "consensus", "pairwise", "jax"} and row[-2] in {"float64", "float32"}
    document = json.loads(json_path.read_text())
    assert document["schema"] == "gradcheck_kit.results" and document["schema_version"] == 1
    assert document["seed"] == 3 and document["tool"]["command"] == "verify"
    assert document["libraries"]["torch"] and document["libraries"]["jax"]
    assert document["machine"]["cpu_count"] >= 1 and document["machine"]["hostname"]
    assert "git_commit" in document
    # Wall time of the run, not the sum of the checks' times (cases of a group share work).
    assert document["summary"]["elapsed_s"] >= document["summary"]["checks_s"] * 0.5
    assert document["summary"] == {**document["summary"], "checks": total, "failed": 0}
    assert [c["id"] for c in document["checks"]] == [c.id for c in planned]
    check = document["checks"][0]
    assert check["kind"] == "crosscheck" and check["passed"]
    assert 0 <= check["margin"] <= 1 and check["details"]["rows"]
    drawn = [c for c in document["checks"] if c["example"]["label"] == "drawn1"]
    assert drawn and all(set(c["example"]["sizes"]) == set(reference_models.get(c["model"]).default_sizes) for c in drawn)
    suites = ET.parse(junit_path).getroot()
    assert suites.tag == "testsuites"
    (suite,) = suites
    cases = suite.findall("testcase")
    assert suite.get("tests") == str(total) == str(len(cases)) and suite.get("failures") == "0"
    assert suite.get("hostname") and suite.get("timestamp")[-6] in "+-"
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties["seed"] == "3" and properties["profile"] == "quick"
    assert properties["version.torch"]
    assert all(c.get("file") in (f"reference_models/{c.get('classname').split('.')[2]}.py",) for c in cases)
    assert {c.get("classname") for c in cases} == {
        f"gradcheck_kit.verify.{m}.{i}" for m, impls in implementations.items() for i in impls
    }


def test_a_broken_implementation_fails_alone_and_the_run_goes_on(
    verify_process: None, broken_ports: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / "verify.json"
    status = main(["verify", "--module", broken_ports, "--model", "graph_e", "--profile", "quick",
                   "--json", str(json_path)])
    out = capsys.readouterr().out
    assert status == 1
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("graph_e ")}
    # The quick example and a drawn one would be the same for a model without sizes:
    # planned once, so each pair has one check per dtype.
    assert rows.pop("raising_port").split()[2:] == ["2", "-", "-", "contract", "violated", "FAIL", "2", "of", "2"]
    wrong = rows.pop("wrong_sign_port").split()
    assert wrong[-4:] == ["FAIL", "2", "of", "2"] and float(wrong[3]) > 1e6 and wrong[4] == "2.00e+00"
    assert rows and all(line.split()[-1] == "ok" for line in rows.values())
    assert "inf" not in out and "0.00e+00" not in out
    assert "raising_port raised RuntimeError: this port is not finished" in out
    assert out.count("FAILED graph_e[wrong_sign_port-crosscheck-float64-cpu-quick]") == 1
    document = json.loads(json_path.read_text())
    failed = {c["implementation"] for c in document["checks"] if not c["passed"]}
    assert failed == {"raising_port", "wrong_sign_port"}
    wrong = next(c for c in document["checks"] if c["implementation"] == "wrong_sign_port")
    # Named down to the parameter: the gradient of `a` has the wrong sign, its one element.
    assert any(r["quantity"] == "a" and not r["passed"] and (r["mismatched"], r["size"]) == (1, 1)
               for r in wrong["details"]["rows"])
    assert "FAILED graph_e[raising_port-crosscheck-float64-cpu-quick]: the implementation contract is violated" in out
    assert "1 of 1 elements beyond tolerance" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "cubic_fti"], "'cubic_fti' is not a registered model. Did you mean 'cubic_fit'?"),
        (["--implementation", "torch_autgrad"], "Did you mean 'torch_autograd'"),
        (["--dtype", "bfloat16"], "dtype 'bfloat16' cannot be verified"),
        (["--device", "cuda:3"], "device 'cuda:3' is not available on this machine"),
        (["--device", "gpu"], "'gpu', which is not a device name (a GPU is 'cuda' or 'cuda:N')"),
        (["--modle", "graph_e"], "--modle: did you mean --model?"),
        (["--module", "no_such_module_here"], "importing module 'no_such_module_here' failed"),
    ],
)
def test_verify_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", *argv]) == 2
    assert message in capsys.readouterr().err


def test_version_and_program_name(capsys: pytest.CaptureFixture[str]) -> None:
    import gradcheck_kit

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"gradcheck-kit {gradcheck_kit.__version__}"
    assert main(["verify", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: gradcheck-kit verify")


def test_an_unwritable_report_path_fails_before_any_check(
    ops_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for argv in (
        ["check", f"{ops_module}:smooth", "--input", "3", "--input", "3", "--json", str(blocker / "r.json")],
        ["verify", "--model", "graph_e", "--junit-xml", str(blocker / "r.xml")],
    ):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert "cannot be written" in err and str(blocker) in err
        # Nothing ran: no verdict was printed.
        assert out == ""


def test_check_writes_json_into_a_new_directory(
    ops_module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "new" / "dir" / "check.json"
    assert main(["check", f"{ops_module}:smooth", "--input", "3", "--input", "3", "--json", str(path)]) == 0
    assert json.loads(path.read_text())["checks"][0]["passed"]


def test_verify_jobs_is_the_same_experience_as_one_process(
    verify_process: None, broken_ports: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gradcheck_kit._verify import plan

    argv = ["verify", "--module", broken_ports, "--model", "graph_e", "--profile", "quick",
            "--examples", "0", "--dtype", "float64"]
    outputs = {}
    for jobs in (1, 2):
        json_path = tmp_path / f"verify{jobs}.json"
        status = main([*argv, "--jobs", str(jobs), "--json", str(json_path)])
        out, err = capsys.readouterr()
        assert status == 1, out + err
        # Catalogue order, whichever worker ran a case.
        expected = [c.id for c in plan(models=["graph_e"], profile="quick", examples=0, dtypes=["float64"])]
        assert [r["id"] for r in json.loads(json_path.read_text())["checks"]] == expected
        # Our own progress (one line for the model), no pytest output, no temporary paths.
        assert f"[{len(expected)}/{len(expected)}] graph_e: {len(expected)} checks FAIL (2 of {len(expected)})" in err
        assert "gradcheck_kit-" not in out + err and "bringing up nodes" not in err
        assert "report written" not in out + err and "short test summary" not in out
        for failing in ("raising_port", "wrong_sign_port"):
            assert out.count(f"FAILED graph_e[{failing}-") == 1
        outputs[jobs] = out.rsplit("\n", 2)[0]  # all but the summary line with its time
    assert outputs[1] == outputs[2]


def test_verify_k_x_and_q_select_stop_and_quieten(
    verify_process: None, broken_ports: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["verify", "--module", broken_ports, "--model", "graph_e", "--profile", "quick",
            "--examples", "0", "--dtype", "float64"]
    assert main([*base, "-k", "jax or torch_manual", "-q"]) == 0
    out, err = capsys.readouterr()
    # -q: nothing but the summary.
    assert out.splitlines()[-1].startswith("2 checks, 0 failed") and len(out.splitlines()) == 1
    assert err == ""
    assert main([*base, "-x", "-v"]) == 1
    out, err = capsys.readouterr()
    # -v: a line per check; -x: the first failure (raising_port, fifth in the catalogue) ends it.
    assert [line.split()[1] for line in err.splitlines() if line.startswith("[")] == [
        "graph_e[numpy_manual-crosscheck-float64-cpu-quick]",
        "graph_e[torch_manual-crosscheck-float64-cpu-quick]",
        "graph_e[torch_autograd-crosscheck-float64-cpu-quick]",
        "graph_e[jax-crosscheck-float64-cpu-quick]",
        "graph_e[raising_port-crosscheck-float64-cpu-quick]",
    ]
    assert "5 checks, 1 failed, stopped at the first failure (-x) after 5 of 6" in out
    assert main([*base, "-k", "no_such_thing"]) == 2
    assert "-k 'no_such_thing' selects none of the 6 checks" in capsys.readouterr().err


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_prints_the_partial_table_and_writes_partial_reports(tmp_path: Path, jobs: int) -> None:
    import os
    import signal
    import time

    json_path, junit_path = tmp_path / "partial.json", tmp_path / "partial.xml"
    process = subprocess.Popen(
        [sys.executable, "-m", "gradcheck_kit", "verify", "--profile", "quick", "-v",
         "--jobs", str(jobs), "--json", str(json_path), "--junit-xml", str(junit_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        # xdist's workers ignore SIGINT, and an ignored signal stays ignored across exec
        # (Python then installs no KeyboardInterrupt handler): a terminal's default here.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait for a few finished checks, then Ctrl-C
        line = process.stderr.readline()
        if line.replace(" ", "").startswith("[3/"):
            break
    # The whole process group, as a terminal sends it (xdist's workers included).
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out + err
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    document = json.loads(json_path.read_text())
    done = len(document["checks"])
    assert document["options"]["interrupted"] is True and done >= 3
    assert f"{done} checks, 0 failed, interrupted after {done} of " in out
    assert out.splitlines()[0].split()[:2] == ["model", "implementation"]
    assert "interrupted" in junit_path.read_text()


def test_progress_is_a_bar_with_an_eta_on_a_terminal(tmp_path: Path) -> None:
    import os
    import pty

    leader, follower = pty.openpty()
    done = subprocess.run(
        [sys.executable, "-m", "gradcheck_kit", "verify", "--model", "graph_e", "--profile", "quick",
         "--examples", "0"],
        stdout=subprocess.PIPE, stderr=follower, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "COLUMNS": "100"},
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: everything was read
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    screen = shown.decode("utf-8", "replace")
    assert done.returncode == 0, done.stdout + screen
    # A bar redrawn in place (carriage returns), with the count and an ETA; not the lines
    # a log gets.
    assert "ETA" in screen and "\r" in screen and "8/8" in screen
    assert "graph_e: 8 checks ok" not in screen
    # The table and summary go to stdout as always.
    assert done.stdout.splitlines()[-1].startswith("8 checks, 0 failed")
