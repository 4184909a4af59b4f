"""`python -m gradcheck_kit`: `verify` the cross-check matrix, `list` it, `check` one function.

Exit status: 0 when everything agrees, 1 when anything disagrees, 2 for a usage error
(an unknown name, a module that fails to import, a malformed option, a report path that
cannot be written), 3 when a report could not be written after the checks ran, 130 when
interrupted (Ctrl-C).

The options come from `gradcheck_kit._options.OPTIONS`, shared with the pytest plugin;
`verify` runs `pytest --gradcheck-verify` in this process (`gradcheck_kit._cli_run`), under
pytest-xdist for `--jobs N`, with its own display (`_cli_progress`) and table
(`_cli_table`). Ctrl-C during `verify` prints the checks so far, writes the reports and
exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import time
import traceback
import types
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ._options import add_argparse_options

__all__ = ["main"]

EXIT_OK, EXIT_DISAGREE, EXIT_USAGE, EXIT_IO = 0, 1, 2, 3
# 128 + SIGINT, as shells report a command ended by Ctrl-C.
EXIT_INTERRUPTED = 130
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
    except BrokenPipeError:
        # The reader went away (`list | head`): stop quietly, as other tools do.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more is written
        return EXIT_DISAGREE
    except KeyboardInterrupt:
        # Outside the checks (while planning or writing): nothing partial to show.
        print(f"{PROG} {args.command_name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
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
    verify.add_argument("-k", dest="keyword", metavar="EXPR", default=None,
                        help="only the checks whose names match EXPR, as pytest's -k "
                        "(e.g. -k 'graph_e and not jax'; names are as `list` and the table show)")
    verify.add_argument("-x", "--exitfirst", action="store_true",
                        help="stop at the first check that disagrees")
    verify.add_argument("-q", "--quiet", action="count", default=0,
                        help="no progress and no table: only the failures and the summary")
    verify.add_argument("-v", "--verbose", action="count", default=0,
                        help="one progress line per check")
    verify.set_defaults(command=_verify, command_name="verify")

    listing = commands.add_parser(
        "list", help="list the models, their implementations and sources"
    )
    add_argparse_options(listing, "list")
    listing.add_argument("--json", action="store_true",
                         help="print the models as JSON (name, file, sizes, implementations, claims)")
    listing.set_defaults(command=_list, command_name="list")

    check = commands.add_parser(
        "check",
        help="gradcheck one function: check MODULE:FUNCTION --input SHAPE[:DTYPE] ...",
        description="Gradcheck one function at random standard-normal inputs, e.g. "
        "`check mypkg.ops:my_fn --input 3,4 --input 4:float32`, or, with --reference, "
        "compare a low-precision kernel with a reference: `check mypkg.ops:fused_rms "
        "--reference mypkg.ref:rms --input 8,64:bfloat16`. MODULE may also be a path to a "
        ".py file.",
    )
    check.add_argument("target", metavar="MODULE:FUNCTION", help="the function to check")
    add_argparse_options(check, "check")
    check.set_defaults(command=_check, command_name="check")
    return parser


# ---------------------------------------------------------------------------------------
# verify


def _verify(args: argparse.Namespace) -> int:
    from ._cli_progress import make_display
    from ._cli_run import run_suite
    from ._verify import VerifyError, plan

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
    # Before anything loads jax or torch: the settings are read when they load.
    _configure_this_process()
    try:
        cases = plan(**selection)
    except VerifyError as exc:
        raise UsageError(str(exc)) from None
    if not cases:
        raise UsageError("the selection leaves nothing to check; widen --model or --implementation.")
    display = make_display(sys.stderr, verbosity=args.verbose - args.quiet)
    try:
        run = run_suite(
            selection, case_ids=[c.id for c in cases], models={c.id: c.model for c in cases},
            modules=user_modules, jobs=args.jobs, keyword=args.keyword, exitfirst=args.exitfirst,
            display=display, environment=_verify_environment(),
        )
    finally:
        display.close()
    if not run.records and not run.interrupted:
        if args.keyword and run.selected == 0:
            raise UsageError(f"-k {args.keyword!r} selects none of the {len(cases)} checks; "
                             f"`list` names the models and implementations.")
        raise UsageError(
            f"the pytest run of the checks ended with status {run.exit_status} before any "
            f"check ran (is pytest-xdist installed?)."
        )
    return _verify_results(args, run, selection, wall_s=time.perf_counter() - start)


def _verify_results(args: argparse.Namespace, run: Any, selection: Mapping[str, Any], *, wall_s: float) -> int:
    """Print the table and the summary, write the reports; the exit status."""
    from ._cli_table import format_failures, format_table
    from ._records import write_json

    records = run.records
    failed = sum(1 for r in records if not r["passed"])
    if args.quiet == 0:
        print(format_table(records))
        print()
    if failures := format_failures(records):
        print("\n".join(failures))
    ended = ""
    if run.interrupted:
        ended = f", interrupted after {len(records)} of {run.selected or '?'}"
    elif args.exitfirst and failed and len(records) < run.selected:
        ended = f", stopped at the first failure (-x) after {len(records)} of {run.selected}"
    print(f"{len(records)} checks, {failed} failed{ended}, {wall_s:.1f} s")
    options = {**selection, "jobs": args.jobs, "modules": args.modules, "keyword": args.keyword,
               "exitfirst": args.exitfirst, "interrupted": run.interrupted}
    if args.report:
        _writing("--json", args.report, lambda: write_json(
            args.report, records, seed=args.seed, command="verify", options=options, wall_s=wall_s
        ))
    if args.junit_xml:
        _writing("--junit-xml", args.junit_xml, lambda: write_junit(
            args.junit_xml, records, elapsed_s=wall_s, properties={
                "seed": args.seed, "profile": args.profile or "standard",
                **({"interrupted": True} if run.interrupted else {}),
            },
        ))
    if run.interrupted:
        return EXIT_INTERRUPTED
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
    if os.environ["OMP_NUM_THREADS"] == "1" and importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)


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
    models = [_model_entry(reference_models.get(name)) for name in reference_models.names()]
    if args.json:
        print(json.dumps({"models": models}, indent=1))
        return EXIT_OK
    for m in models:
        print(f"{m['name']}: {m['description']}")
        if m["file"]:
            print(f"  defined in: {m['file']}")
        if m["source"]:
            print(f"  source: {m['source']}")
        sizes = ", ".join(f"{k}={v}" for k, v in m["sizes"].items())
        print(f"  sizes: {sizes or '-'}")
        for impl_name, where in m["implementations"].items():
            print(f"  implementation {impl_name}: {where}")
        for claim, text in m["claims"].items():
            print(f"  claim {claim}: {text}")
    return EXIT_OK


def _model_entry(model: Any) -> dict[str, Any]:
    """What `list` says about one model (also its `--json` form)."""
    return {
        "name": model.name,
        "description": model.description,
        "file": _model_file(model.name) or None,
        # The text a built-in model was ported from, when the installed package has it;
        # a path into the development tree would name a file users do not have.
        "source": _existing_source(model.source),
        "sizes": dict(model.default_sizes),
        "quick_sizes": dict(model.quick_sizes),
        "implementations": {n: _source_of(i) for n, i in model.implementations.items()},
        "claims": {c.name: c.claim for c in model.fidelity.values()},
    }


def _existing_source(source: str | None) -> str | None:
    if not source:
        return None
    path = source.split(" (", 1)[0]
    import reference_models

    package = Path(reference_models.__file__).resolve().parent
    for base in (package, package.parent):
        if (base / path).is_file():
            return source
    # Not a path (a citation, a URL) unless it has a file's shape.
    looks_like_a_path = "/" in path and not path.startswith(("http://", "https://"))
    return None if looks_like_a_path else source


def _source_of(obj: Any) -> str:
    """`module:qualname` of a function, or of the function a style object wraps; a lambda
    is named by its module and line."""
    if isinstance(obj, (types.FunctionType, type)):
        if obj.__name__ == "<lambda>":
            line = getattr(getattr(obj, "__code__", None), "co_firstlineno", None)
            return f"a lambda in {obj.__module__}" + (f", line {line}" if line else "")
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
    reference = _load_function(args.reference) if args.reference else None
    try:
        if reference is None:
            report = gradcheck(fn, inputs, seed=args.seed, mode=args.mode, raise_exception=False)
        else:
            from . import compare

            report = compare(fn, reference, inputs, seed=args.seed, raise_exception=False)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    print(report)
    if args.report:
        kind = "gradcheck" if reference is None else "compare"
        record = CheckRecord.from_report(report, id=args.target, kind=kind)
        _writing("--json", args.report, lambda: write_json(
            args.report, [record.to_dict()], seed=args.seed, command="check",
            options={"target": args.target, "inputs": args.inputs, "framework": args.framework,
                     "reference": args.reference},
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
