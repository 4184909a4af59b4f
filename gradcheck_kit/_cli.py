"""`python -m gradcheck_kit`: `verify` the cross-check matrix, `list` it, `check` one function.

Exit status: 0 when everything agrees, 1 when anything disagrees, 2 for a usage error
(an unknown name, a module that fails to import, a malformed option, a report path that
cannot be written), 3 when a report could not be written after the checks ran.

The options come from `gradcheck_kit._options.OPTIONS`, shared with the pytest plugin;
`verify` runs `gradcheck_kit._verify`, the code behind `pytest --gradcheck-verify`, and
`--jobs N` runs that pytest suite under pytest-xdist.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import types
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from ._options import add_argparse_options, to_pytest_args

__all__ = ["main"]

EXIT_OK, EXIT_DISAGREE, EXIT_USAGE, EXIT_IO = 0, 1, 2, 3
PROG = "gradcheck-kit"


class UsageError(Exception):
    """A problem with what was asked for; reported in one message, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    **Arguments:**
    - `argv`: the arguments (default: `sys.argv[1:]`).

    **Returns:** 0 if everything agrees, 1 if anything disagrees, 2 for a usage error.

    **Example:** `main(["verify", "--profile", "quick"])`.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage and 0 after --help
        return int(exc.code or 0)
    try:
        return args.command(args)
    except UsageError as exc:
        print(f"{PROG} {args.command_name}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ReportWriteError as exc:
        print(f"{PROG} {args.command_name}: error: {exc}", file=sys.stderr)
        return EXIT_IO


class ReportWriteError(Exception):
    """A report that could not be written after the checks ran (exit status 3)."""


class _Parser(argparse.ArgumentParser):
    """argparse, with close matches suggested for a misspelt option."""

    def error(self, message: str) -> NoReturn:
        import difflib

        if message.startswith("unrecognized arguments:"):
            parsers = [self] + [
                sub for action in self._actions
                if isinstance(action, argparse._SubParsersAction)
                for sub in action.choices.values()
            ]
            known = list(dict.fromkeys(
                s for p in parsers for action in p._actions for s in action.option_strings
            ))
            hints = []
            for word in message.split(":", 1)[1].split():
                flag = word.split("=", 1)[0]
                close = difflib.get_close_matches(flag, known, n=3, cutoff=0.6)
                # Two letters swapped is the likeliest slip: such a match comes first.
                close.sort(key=lambda c: sorted(c) != sorted(flag))
                if flag.startswith("-") and close:
                    hints.append(f"{flag}: did you mean {close[0]}?")
            if hints:
                message += " (" + "; ".join(hints) + ")"
        super().error(message)


def _prepare_report_paths(args: argparse.Namespace) -> None:
    """Create report directories and check the paths can be written, before any check."""
    from ._records import ReportPathError, prepare_report_path

    for attribute, option in (("report", "--json"), ("junit_xml", "--junit-xml")):
        path = getattr(args, attribute, None)
        if path:
            try:
                prepare_report_path(path, option=option)
            except ReportPathError as exc:
                raise UsageError(str(exc)) from None


def _writing(option: str, path: str, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as exc:
        raise ReportWriteError(
            f"{option} {path!r} could not be written ({exc.strerror or exc}); the checks "
            f"ran, their verdicts are above."
        ) from None


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog=PROG,
        description="Gradient checks you can trust: verify the reference models, list "
        "them, or check one function (also run as `python -m gradcheck_kit`).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(
        title="commands", required=True, metavar="COMMAND", parser_class=_Parser
    )
    verify = commands.add_parser(
        "verify",
        help="cross-check every reference model x implementation x oracle",
        description="Cross-check every reference model x implementation against the other "
        "implementations, jax and finite differences, check the docs' published results, "
        "on sizes, dtypes and devices drawn by hypothesis. Exit 0 if everything agrees, "
        "1 if anything disagrees, 2 for a usage error.",
    )
    add_argparse_options(verify, "verify")
    verify.set_defaults(command=_verify, command_name="verify")

    listing = commands.add_parser(
        "list", help="list the models, their implementations and sources"
    )
    add_argparse_options(listing, "list")
    listing.set_defaults(command=_list, command_name="list")

    check = commands.add_parser(
        "check",
        help="gradcheck one function: check MODULE:FUNCTION --input SHAPE[:DTYPE] ...",
        description="Gradcheck one function at random standard-normal inputs, e.g. "
        "`check mypkg.ops:my_fn --input 3,4 --input 4:float32`. MODULE may also be a path "
        "to a .py file.",
    )
    check.add_argument("target", metavar="MODULE:FUNCTION", help="the function to check")
    add_argparse_options(check, "check")
    check.set_defaults(command=_check, command_name="check")
    return parser


# ---------------------------------------------------------------------------------------
# verify


def _verify(args: argparse.Namespace) -> int:
    from ._records import CheckRecord, write_json
    from ._verify import VerifyError, plan, run

    _prepare_report_paths(args)
    user_modules = _import_modules(args.modules)
    selection = {
        "models": args.models,
        "implementations": args.implementations,
        "dtypes": args.dtypes,
        "devices": args.devices,
        "examples": args.examples,
        "seed": args.seed,
        "profile": args.profile,
    }
    start = time.perf_counter()
    if args.jobs == 1:
        # Before anything loads jax or torch: the settings are read when they load.
        _configure_this_process()
    try:
        cases = plan(**selection)
    except VerifyError as exc:
        raise UsageError(str(exc)) from None
    if not cases:
        raise UsageError("the selection leaves nothing to check; widen --model or --implementation.")
    if args.jobs > 1:
        records = _run_with_xdist(selection, modules=user_modules, jobs=args.jobs)
    else:
        print(f"verify: {len(cases)} checks", file=sys.stderr)
        records = [r.to_dict() for r in run(cases, progress=_progress(len(cases), sys.stderr))]
    wall_s = time.perf_counter() - start
    print(format_table([CheckRecord.from_dict(r) for r in records]))
    failed = sum(1 for r in records if not r["passed"])
    print(f"{len(records)} checks, {failed} failed, {wall_s:.1f} s")
    options = {**selection, "jobs": args.jobs, "modules": args.modules}
    if args.report:
        _writing("--json", args.report, lambda: write_json(
            args.report, records, seed=args.seed, command="verify", options=options, wall_s=wall_s
        ))
    if args.junit_xml:
        _writing("--junit-xml", args.junit_xml, lambda: write_junit(
            args.junit_xml, records, elapsed_s=wall_s, properties={
                "seed": args.seed, "profile": args.profile or "standard",
            },
        ))
    return EXIT_DISAGREE if failed else EXIT_OK


# The checks of the matrix are small: intra-op thread pools gain nothing on them and, on a
# machine with few cores or other work, their threads spin against each other and against
# xdist workers (measured here: a cross-check of softmax_classifier took 22 s with torch's
# default pool, 0.9 s with one thread).
_THREAD_VARIABLES = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def _verify_environment() -> dict[str, str]:
    """Environment variables for a verify run; those the user set are kept.

    Besides one thread per process, jax's persistent compilation cache: compiling the jax
    implementations (one program per model, dtype and example shape) was 11 of the 26 s
    of a quick run, and a warm cache removes nearly all of it.
    """
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    wanted = {
        **_THREAD_VARIABLES,
        "JAX_COMPILATION_CACHE_DIR": os.path.join(cache_home, "gradcheck_kit", "jax"),
        # Cache every program: each is small and quick to compile alone, but there are
        # about a hundred of them.
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    return {name: os.environ.get(name, value) for name, value in wanted.items()}


def _configure_this_process() -> None:
    # Read when a library loads: this reaches jax and torch's pools if they are not loaded
    # yet, not numpy's BLAS, which `import gradcheck_kit` has loaded.
    for name, value in _verify_environment().items():
        os.environ.setdefault(name, value)
    if os.environ["OMP_NUM_THREADS"] == "1":
        import torch

        torch.set_num_threads(1)


def _progress(total: int, stream: TextIO) -> Callable[[int, Any, Any], None]:
    width = len(str(total))

    def show(i: int, case: Any, record: Any) -> None:
        verdict = "ok" if record.passed else "FAIL"
        stream.write(f"[{i:>{width}}/{total}] {case.id} {verdict} ({record.elapsed_s:.2f} s)\n")
        stream.flush()

    return show


def _run_with_xdist(selection: Mapping[str, Any], *, modules: Sequence[Any], jobs: int) -> list[dict]:
    """Run the verify suite as pytest items on `jobs` xdist workers; return their records.

    `modules` are the user's modules, already imported here; the workers import them too.
    """
    with tempfile.TemporaryDirectory(prefix="gradcheck_kit-") as tmp:
        report = Path(tmp, "report.json")
        ini = Path(tmp, "pytest.ini")
        ini.write_text("[pytest]\n")
        command = [
            sys.executable, "-m", "pytest", str(tmp), "-c", str(ini), "--rootdir", str(tmp),
            "-p", "gradcheck_kit.pytest_plugin", "-p", "xdist.plugin",
            "-n", str(jobs), "--dist", "loadgroup", "-q", "-p", "no:cacheprovider",
            "--gradcheck-verify", "--gradcheck-report", str(report),
            *to_pytest_args({**selection, "modules": [m.__name__ for m in modules]}),
        ]
        env = {**os.environ, **_verify_environment()}
        # Plugins come from -p only, so an installed entry point cannot register this one
        # twice; the workers import the package and the user's modules from the same paths.
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        paths = [os.getcwd(), str(Path(__file__).resolve().parents[1])]
        paths += [_import_root(m) for m in modules]
        env["PYTHONPATH"] = os.pathsep.join(p for p in [*paths, env.get("PYTHONPATH", "")] if p)
        print(f"verify: running pytest on {jobs} workers", file=sys.stderr)
        # pytest's output is this command's progress: passed on, line by line, to stderr.
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
        ) as pytest_run:
            assert pytest_run.stdout is not None
            for line in pytest_run.stdout:
                sys.stderr.write(line)
                sys.stderr.flush()
        if pytest_run.returncode not in (0, 1) or not report.exists():
            raise UsageError(
                f"the pytest run exited with status {pytest_run.returncode} before reporting; "
                f"its output above says why (is pytest-xdist installed?)."
            )
        return json.loads(report.read_text())["checks"]


def _import_root(module: Any) -> str:
    """The `sys.path` entry `module` was imported from (empty if it has no file)."""
    file = getattr(module, "__file__", None)
    if not file:
        return ""
    root = Path(file).resolve().parent
    # A package's __init__ sits one level deeper than a plain module of the same name.
    depth = module.__name__.count(".") + (Path(file).name == "__init__.py")
    for _ in range(depth):
        root = root.parent
    return str(root)


def format_table(records: Sequence[Any]) -> str:
    """One row per (model, implementation): checks, worst error vs tolerance, verdict."""
    rows: dict[tuple[str, str], list[Any]] = {}
    for r in records:
        rows.setdefault((r.model or "-", r.implementation or "-"), []).append(r)
    header = ("model", "implementation", "checks", "worst error", "tolerance", "margin", "verdict")
    table = [header]
    for (model, impl), group in rows.items():
        compared = [r for r in group if r.margin is not None]
        worst = max(compared, key=lambda r: r.margin, default=None)
        failed = sum(1 for r in group if not r.passed)
        table.append((
            model,
            impl,
            str(len(group)),
            "-" if worst is None else f"{worst.error:.2e}",
            "-" if worst is None else f"{worst.tolerance:.2e}",
            "-" if worst is None else f"{worst.margin:.3g}",
            "ok" if not failed else f"FAIL ({failed})",
        ))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    numeric = {2, 3, 4, 5}
    lines = []
    for row in table:
        cells = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    failures = [r for r in records if not r.passed]
    if failures:
        lines.append("")
        lines += [r.message or f"{r.id}: failed" for r in failures]
    return "\n".join(lines)


def write_junit(
    path: str | os.PathLike[str],
    records: Sequence[Mapping[str, Any]],
    *,
    elapsed_s: float,
    properties: Mapping[str, Any] | None = None,
) -> None:
    """Write the records as JUnit XML: one testsuite, a testcase per check.

    The suite carries the host name, a timestamp with its time zone and `<properties>`:
    `properties` (seed, profile) and the library versions.
    """
    import datetime
    import socket

    from ._records import _library_versions

    failures = sum(1 for r in records if not r["passed"])
    suites = ET.Element("testsuites", name="gradcheck_kit", tests=str(len(records)),
                        failures=str(failures), errors="0", time=f"{elapsed_s:.3f}")
    suite = ET.SubElement(
        suites, "testsuite", name="gradcheck_kit.verify", tests=str(len(records)),
        failures=str(failures), errors="0", skipped="0", time=f"{elapsed_s:.3f}",
        timestamp=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        hostname=socket.gethostname(),
    )
    props = ET.SubElement(suite, "properties")
    values = {**(properties or {}), **{
        f"version.{name}": version for name, version in _library_versions().items() if version
    }}
    for name, value in values.items():
        ET.SubElement(props, "property", name=str(name), value=str(value))
    for r in records:
        case = ET.SubElement(
            suite, "testcase",
            classname=".".join(p for p in ("gradcheck_kit.verify", r.get("model"), r.get("implementation")) if p),
            name=r["id"], time=f"{float(r.get('elapsed_s') or 0.0):.3f}",
            file=_model_file(r.get("model")),
        )
        if r.get("margin") is not None:
            ET.SubElement(case, "system-out").text = (
                f"error {r['error']} tolerance {r['tolerance']} margin {r['margin']}"
            )
        if not r["passed"]:
            message = r.get("message") or "failed"
            failure = ET.SubElement(
                case, "failure", message=message.splitlines()[0], type=f"{r['kind']} disagreement"
            )
            failure.text = message
    Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def _model_file(model: str | None) -> str:
    """The file that defines a built-in reference model, relative to the working
    directory when under it ("" for models registered elsewhere)."""
    if not model:
        return ""
    spec = importlib.util.find_spec(f"reference_models.{model}")
    source = getattr(spec, "origin", None) if spec is not None else None
    if not source or not os.path.exists(source):
        return ""
    relative = os.path.relpath(source)
    return source if relative.startswith("..") else relative


# ---------------------------------------------------------------------------------------
# list


def _list(args: argparse.Namespace) -> int:
    import reference_models

    _import_modules(args.modules)
    for name in reference_models.names():
        model = reference_models.get(name)
        print(f"{name}: {model.description}")
        print(f"  source: {model.source}")
        sizes = ", ".join(f"{k}={v}" for k, v in model.default_sizes.items())
        print(f"  sizes: {sizes or '-'}")
        for impl_name, impl in model.implementations.items():
            print(f"  implementation {impl_name}: {_source_of(impl)}")
        for claim in model.fidelity.values():
            print(f"  claim {claim.name}: {claim.claim}")
    return EXIT_OK


def _source_of(obj: Any) -> str:
    """`module:qualname` of a function, or of the function a style object wraps."""
    if isinstance(obj, (types.FunctionType, type)):
        return f"{obj.__module__}:{obj.__qualname__}"
    wrapped = next((v for v in vars(obj).values() if isinstance(v, types.FunctionType)), None)
    if wrapped is None:
        return f"{type(obj).__module__}:{type(obj).__qualname__}"
    return f"{type(obj).__name__} of {_source_of(wrapped)}"


# ---------------------------------------------------------------------------------------
# check


def _check(args: argparse.Namespace) -> int:
    import numpy as np

    from . import gradcheck
    from ._records import CheckRecord, write_json
    from .strategies import as_framework_array

    _prepare_report_paths(args)
    fn = _load_function(args.target)
    specs = [_input_spec(text) for text in args.inputs]
    rng = np.random.default_rng(args.seed)
    inputs = [
        as_framework_array(rng.standard_normal(shape), dtype=dtype, device="cpu", framework=args.framework)
        for shape, dtype in specs
    ]
    try:
        report = gradcheck(fn, inputs, seed=args.seed, mode=args.mode, raise_exception=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print(report)
    if args.report:
        record = CheckRecord.from_report(report, id=args.target, kind="gradcheck")
        _writing("--json", args.report, lambda: write_json(
            args.report, [record.to_dict()], seed=args.seed, command="check",
            options={"target": args.target, "inputs": args.inputs, "framework": args.framework},
        ))
    return EXIT_OK if report else EXIT_DISAGREE


def _input_spec(text: str) -> tuple[tuple[int, ...], str]:
    from ._options import check_dtypes

    shape_text, _, dtype = text.partition(":")
    shape_text = shape_text.strip()
    try:
        if shape_text in ("", "()", "scalar"):
            shape: tuple[int, ...] = ()
        else:
            shape = tuple(int(n) for n in shape_text.replace("x", ",").split(",") if n.strip())
        if any(n < 0 for n in shape):
            raise ValueError
    except ValueError:
        raise UsageError(
            f"--input {text!r}: {shape_text!r} is not a shape; write sizes separated by "
            f"commas, e.g. --input 3,4 or --input 3,4:float32 (--input scalar for a scalar)."
        ) from None
    try:
        (name,) = check_dtypes([dtype or "float64"], argument=f"--input {text!r}")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return shape, name


def _load_function(target: str) -> Callable[..., Any]:
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise UsageError(
            f"{target!r} is not MODULE:FUNCTION; write e.g. mypkg.ops:my_fn or path/to/file.py:my_fn."
        )
    if module_name.endswith(".py"):
        module = _import_path(module_name)
    else:
        module = _import_modules([module_name])[0]
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{module_name!r} has no attribute {attr!r}; name a function defined in it.")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{target!r} is a {type(obj).__name__}, not a function; name a function.")
    return obj


def _import_path(path: str) -> Any:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{path!r} is not a file; give the path of a .py file or a module name.")
    spec = importlib.util.spec_from_file_location(file.stem, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[file.stem] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        traceback.print_exc()
        raise UsageError(f"importing {path!r} failed (traceback above); fix the file.") from None
    return module


def _import_modules(names: Sequence[str] | None) -> list[Any]:
    """Import user modules (to register models or implementations); a failure is exit 2."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        # `python -m` puts the working directory on the path, the console script does
        # not; users expect `--module my_impls` to find my_impls.py here either way.
        sys.path.insert(0, os.getcwd())
    modules = []
    for name in names or ():
        try:
            modules.append(importlib.import_module(name))
        except Exception:
            traceback.print_exc()
            raise UsageError(
                f"importing module {name!r} failed (traceback above), so its models and "
                f"implementations cannot join the checks; fix the module or the name."
            ) from None
    return modules
