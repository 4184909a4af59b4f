"""The options of the command line and of the pytest plugin, defined once for both.

`OPTIONS` is the single table; `add_argparse_options` renders it for
`python -m gradcheck_kit` and `add_pytest_options` for pytest, and `to_pytest_args` turns
parsed command-line values back into plugin flags, so `verify --jobs N` can hand its
options to pytest-xdist workers without a second list that could drift. The meaning of
option values that both front ends share (dtype names, available devices, profiles) lives
here too.

This module imports neither torch nor jax at import time: the pytest plugin loads it.
"""

from __future__ import annotations

import argparse
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_DTYPES",
    "DTYPES",
    "OPTIONS",
    "PLUGIN_DEST_PREFIX",
    "PROFILES",
    "Option",
    "Profile",
    "add_argparse_options",
    "add_pytest_options",
    "plugin_values",
    "available_devices",
    "check_dtypes",
    "device_available",
    "check_device_names",
    "gradient_test_settings",
    "register_hypothesis_profiles",
    "profile_named",
    "to_pytest_args",
]

DTYPES = ("float64", "float32", "bfloat16", "float16")
DEFAULT_DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class Profile:
    """How much a run does: hypothesis examples per test, and the extent of `verify`.

    **Arguments:**
    - `name`: `"quick"`, `"standard"` (no `--profile` given) or `"thorough"`.
    - `max_examples`: hypothesis examples per property test in a user's suite.
    - `examples`: hypothesis-drawn examples per model in `verify` (beside the doc example),
      unless `--examples` says otherwise.
    - `doc_sizes`: cross-check each model at its doc sizes (otherwise at its quick sizes).
    - `fidelity_dtypes`: the dtypes in which the doc-fidelity checks (published training
      results, hundreds of training steps each) run; none in the quick profile.
    """

    name: str
    max_examples: int
    examples: int
    doc_sizes: bool
    fidelity_dtypes: tuple[str, ...]

    @property
    def hypothesis_profile(self) -> str:
        return f"gradcheck_kit.{self.name}"


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", max_examples=10, examples=1, doc_sizes=False, fidelity_dtypes=()),
    # The training loops behind the fidelity checks cost more than all cross-checks
    # together (about 30 s per dtype here), so the standard profile runs them once.
    "standard": Profile(
        "standard", max_examples=50, examples=2, doc_sizes=True, fidelity_dtypes=("float64",)
    ),
    "thorough": Profile(
        "thorough", max_examples=300, examples=8, doc_sizes=True,
        fidelity_dtypes=("float64", "float32"),
    ),
}


def profile_named(name: str | None) -> Profile:
    """The profile selected by `--profile` (`None` is the standard one)."""
    return PROFILES["standard" if name is None else name]


def gradient_test_settings(profile: Profile) -> dict[str, Any]:
    """Hypothesis settings of a gradient test under `profile` (keyword arguments).

    Gradient checks are slow per example, so there is no deadline and no complaint that
    data generation is slow; the thorough profile prints reproduction blobs for CI logs.
    """
    from hypothesis import HealthCheck

    return {
        "max_examples": profile.max_examples,
        "deadline": None,
        "suppress_health_check": [HealthCheck.too_slow],
        "print_blob": profile.name == "thorough",
    }


def register_hypothesis_profiles() -> None:
    """Register `gradcheck_kit.quick`, `gradcheck_kit.standard` and `gradcheck_kit.thorough`
    as hypothesis profiles, for `pytest --hypothesis-profile gradcheck_kit.quick` or
    `settings.load_profile(...)`. Registering loads none of them."""
    from hypothesis import settings

    for profile in PROFILES.values():
        settings.register_profile(profile.hypothesis_profile, **gradient_test_settings(profile))


def check_dtypes(values: Iterable[Any], *, argument: str) -> list[str]:
    """Canonical names of floating dtypes, in order, without repeats.

    Raises `ValueError` naming `argument` when a value is not a floating dtype or none is
    given.
    """
    from ._tolerance import dtype_name

    names: list[str] = []
    for value in values:
        name = dtype_name(value)
        if name not in DTYPES:
            raise ValueError(
                f"{argument} contains {value!r}, which is not a floating dtype gradients can "
                f"be checked in. Use some of {', '.join(DTYPES)}."
            )
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"{argument} is empty; give at least one of {', '.join(DTYPES)}.")
    return names


# Device kinds of torch and jax; an index may follow (`cuda:1`). Anything else is a
# misspelling, which must stop the run rather than skip every test.
DEVICE_KINDS = ("cpu", "cuda", "mps", "xpu", "tpu")
_DEVICE_PATTERN = re.compile(rf"^({'|'.join(DEVICE_KINDS)})(:\d+)?$")


def check_device_names(values: Iterable[Any], *, argument: str) -> list[str]:
    """The device names in `values`, in order, without repeats; checked for spelling only.

    Raises `ValueError` naming `argument` when a value is not a device name (`"gpu"`);
    a well-formed name of a device this machine lacks (`"cuda:3"`) is accepted.
    """
    names: list[str] = []
    for value in values:
        if not isinstance(value, str) or not _DEVICE_PATTERN.match(value):
            hint = " (a GPU is 'cuda' or 'cuda:N')" if str(value).lower().startswith("gpu") else ""
            raise ValueError(
                f"{argument} contains {value!r}, which is not a device name{hint}. Use "
                f"{', '.join(DEVICE_KINDS)}, optionally with an index such as cuda:1."
            )
        if value not in names:
            names.append(value)
    if not names:
        raise ValueError(f"{argument} is empty; name one or more devices, such as cpu.")
    return names


@functools.lru_cache(maxsize=None)
def _devices(framework: str) -> tuple[str, ...]:
    from ._targets.imports import installed

    if framework == "torch":
        if not installed("torch"):
            # Without torch, the devices are those of jax (or the cpu alone).
            return _devices("jax")
        import torch

        found = ["cpu"]
        if torch.cuda.is_available():
            found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            found.append("mps")
        return tuple(found)
    if framework == "jax":
        if not installed("jax"):
            return ("cpu",)
        import jax

        found = ["cpu"]
        for platform, prefix in (("gpu", "cuda"), ("tpu", "tpu")):
            try:
                found += [f"{prefix}:{i}" for i in range(len(jax.devices(platform)))]
            except RuntimeError:  # that backend is not installed or has no device
                pass
        return tuple(found)
    return ("cpu",)


def available_devices(framework: str = "torch") -> list[str]:
    """The devices `framework` can use on this machine: `"cpu"` first, then accelerators.

    **Example:** `available_devices("torch") == ["cpu"]` on a machine without a GPU.
    """
    return list(_devices(framework))


def device_available(device: str, framework: str = "torch") -> bool:
    """Whether `device` (`"cpu"`, `"cuda"`, `"cuda:1"`, `"mps"`) exists here."""
    found = _devices(framework)
    if ":" not in device:
        return any(d == device or d.startswith(device + ":") for d in found)
    return device in found


def worker_device(device: str, available: Sequence[str], worker: str | None) -> str:
    """The device a pytest-xdist worker uses for the bare device kind `device` (`"cuda"`).

    Worker `gwN` takes `cuda:{N % count}` among the `count` indexed devices of that kind in
    `available`, so `pytest -n N --gradcheck-devices cuda` spreads a suite over every GPU.
    An indexed name (`"cuda:1"`), a kind with no indexed devices, and a run without xdist
    (`worker` None or not `gwN`) keep `device` as given.

    **Example:** `worker_device("cuda", ["cpu", "cuda:0", "cuda:1"], "gw3") == "cuda:1"`.
    """
    if ":" in device or not worker or not worker.startswith("gw") or not worker[2:].isdigit():
        return device
    indexed = [d for d in available if d.startswith(device + ":")]
    if not indexed:
        return device
    return indexed[int(worker[2:]) % len(indexed)]


# ---------------------------------------------------------------------------------------
# The option table.


def _comma_list(text: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing; give one or more names")
    return items


def _dtype_list(text: str) -> list[str]:
    try:
        return check_dtypes(_comma_list(text), argument="the dtype list")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _device_list(text: str) -> list[str]:
    try:
        return check_device_names(_comma_list(text), argument="the device list")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


@dataclass(frozen=True)
class Option:
    """One option, as the command line and the pytest plugin both spell it.

    **Arguments:**
    - `dest`: the attribute it is parsed into (the plugin prefixes `gradcheck_`).
    - `help`: one line for `--help`.
    - `cli`: the command-line flag, or `None` for a plugin-only option.
    - `plugin`: the pytest flag, or `None` for a command-line-only option.
    - `commands`: the subcommands of `python -m gradcheck_kit` that take it.
    - `arguments`: keyword arguments of `argparse`'s `add_argument`, shared by both.
    - `verify_only`: the plugin's flag matters only with `--gradcheck-verify`.
    """

    dest: str
    help: str
    cli: str | None
    plugin: str | None
    commands: tuple[str, ...] = ("verify",)
    arguments: Mapping[str, Any] = field(default_factory=dict)
    verify_only: bool = False

    @property
    def ini(self) -> str:
        """The name of the plugin's ini-file option (`gradcheck_devices`, ...)."""
        return PLUGIN_DEST_PREFIX + self.dest

    @property
    def plugin_help(self) -> str:
        note = " [only with --gradcheck-verify]" if self.verify_only else ""
        return f"{self.help}{note}; ini option: {self.ini}"

    @property
    def is_list(self) -> bool:
        return self.arguments.get("action") in ("extend", "append")

    def parse_ini(self, value: Any) -> Any:
        """The value of the ini option's raw `value`, as the flag would give it.

        Raises `ValueError` naming the ini option when the value is malformed.
        """
        convert = self.arguments.get("type", lambda text: text)
        choices = self.arguments.get("choices")
        try:
            if self.arguments.get("action") == "store_true":
                return bool(value)
            if self.is_list:
                items: list[Any] = []
                for text in value:
                    converted = convert(text)
                    items += converted if self.arguments.get("action") == "extend" else [converted]
                return items or None
            converted = convert(value)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise ValueError(f"ini option {self.ini} = {value!r}: {exc}") from None
        if choices is not None and converted not in choices:
            raise ValueError(
                f"ini option {self.ini} = {value!r}: use one of {', '.join(map(str, choices))}"
            )
        return converted


_LIST = {"action": "extend", "type": _comma_list, "default": None}

OPTIONS: tuple[Option, ...] = (
    Option(
        "models", "reference models to verify, repeatable or comma-separated (default: all)",
        "--model", "--gradcheck-models", arguments={**_LIST, "metavar": "NAME"},
        verify_only=True,
    ),
    Option(
        "implementations",
        "implementations to verify, repeatable or comma-separated (default: all)",
        "--implementation", "--gradcheck-implementations",
        arguments={**_LIST, "metavar": "NAME"}, verify_only=True,
    ),
    Option(
        "dtypes", "dtypes to check, repeatable or comma-separated (default: float64,float32)",
        "--dtype", "--gradcheck-dtypes",
        arguments={**_LIST, "type": _dtype_list, "metavar": "DTYPE"},
    ),
    Option(
        "devices", "devices to check, repeatable or comma-separated (default: every "
        "available device)", "--device", "--gradcheck-devices",
        arguments={**_LIST, "type": _device_list, "metavar": "DEVICE"},
    ),
    Option(
        "examples", "hypothesis-drawn examples per model, beside the doc example "
        "(default: set by the profile)", "--examples", "--gradcheck-examples",
        arguments={"type": _non_negative_int, "default": None, "metavar": "N"},
        verify_only=True,
    ),
    Option(
        "seed", "seed of the drawn examples and of the random probes (default: 0)",
        "--seed", "--gradcheck-seed", commands=("verify", "check"),
        arguments={"type": int, "default": 0, "metavar": "SEED"},
    ),
    Option(
        "profile", "quick for development, thorough for CI (default: standard, in between); "
        "sets the extent of verify and the examples of hypothesis tests that use the "
        "gradcheck fixture",
        "--profile", "--gradcheck-profile",
        arguments={"choices": tuple(PROFILES), "default": None},
    ),
    Option(
        "report", "write every check with its figures as JSON to PATH",
        "--json", "--gradcheck-report", commands=("verify", "check"),
        arguments={"default": None, "metavar": "PATH"},
    ),
    Option(
        "modules", "import MOD first, to register models or implementations (repeatable)",
        "--module", "--gradcheck-modules", commands=("verify", "list"),
        arguments={"action": "append", "default": None, "metavar": "MOD"},
    ),
    Option(
        "junit_xml", "write the checks as JUnit XML to PATH", "--junit-xml", None,
        arguments={"default": None, "metavar": "PATH"},
    ),
    Option(
        "jobs", "run on N processes through pytest-xdist (default: 1, in this process)",
        "--jobs", None, arguments={"type": _positive_int, "default": 1, "metavar": "N"},
    ),
    Option(
        "inputs", "an input of the function: its shape and dtype, e.g. 3,4 or 3,4:float32 "
        "(repeat for each input)", "--input", None, commands=("check",),
        arguments={"action": "append", "required": True, "metavar": "SHAPE[:DTYPE]"},
    ),
    Option(
        "reference", "compare the function, in its inputs' own (low-precision) dtype, "
        "against this dtype-generic reference MODULE:FUNCTION (gradcheck_kit.compare) "
        "instead of gradchecking it", "--reference", None, commands=("check",),
        arguments={"default": None, "metavar": "MODULE:FUNCTION"},
    ),
    Option(
        "framework", "the framework of the function's inputs (default: torch)",
        "--framework", None, commands=("check",),
        arguments={"choices": ("torch", "jax"), "default": "torch"},
    ),
    Option(
        "mode", "gradcheck mode: auto (probes, then localise), fast or full (default: auto)",
        "--mode", None, commands=("check",),
        arguments={"choices": ("auto", "fast", "full"), "default": "auto"},
    ),
    Option(
        "verify", "collect the cross-check suite of every reference model as test items",
        None, "--gradcheck-verify", arguments={"action": "store_true", "default": False},
    ),
)

PLUGIN_DEST_PREFIX = "gradcheck_"


def add_argparse_options(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the options of subcommand `command` to `parser`."""
    for option in OPTIONS:
        if option.cli is not None and command in option.commands:
            parser.add_argument(option.cli, dest=option.dest, help=option.help, **option.arguments)


def add_pytest_options(parser: Any) -> None:
    """Add the plugin's options to pytest's `parser` (in `pytest_addoption`)."""
    group = parser.getgroup("gradcheck_kit", "gradient checks (gradcheck_kit)")
    for option in OPTIONS:
        if option.plugin is None:
            continue
        # The flag's own default is None (or False), so that an unset flag falls back to
        # the ini option, and that to the option's default (`plugin_values`).
        arguments = dict(option.arguments)
        if arguments.get("action") != "store_true":
            arguments["default"] = None
        group.addoption(
            option.plugin, dest=PLUGIN_DEST_PREFIX + option.dest, help=option.plugin_help,
            **arguments,
        )
        ini_type = "bool" if arguments.get("action") == "store_true" else (
            "args" if option.is_list else "string"
        )
        parser.addini(option.ini, option.plugin_help, type=ini_type, default=None)


def plugin_values(getoption: Any, getini: Any) -> dict[str, Any]:
    """Every plugin option's value (by `dest`): the flag, else the ini option, else the
    default. `getoption` and `getini` are pytest's `config.getoption` and `config.getini`.

    Raises `ValueError` for a malformed ini value.
    """
    values: dict[str, Any] = {}
    for option in OPTIONS:
        if option.plugin is None:
            continue
        value = getoption(PLUGIN_DEST_PREFIX + option.dest)
        if value is None or value is False:
            raw = getini(option.ini)
            if raw not in (None, "", []):
                value = option.parse_ini(raw)
        if value is None:
            value = option.arguments.get("default")
        values[option.dest] = value
    return values


def to_pytest_args(values: Mapping[str, Any]) -> list[str]:
    """Plugin flags that carry the given option values (by `dest`) to a pytest run.

    Options without a plugin flag, and values left at `None` or `False`, are skipped.

    **Example:** `to_pytest_args({"dtypes": ["float32", "float64"], "seed": 3})` is
    `["--gradcheck-dtypes", "float32", "--gradcheck-dtypes", "float64", "--gradcheck-seed", "3"]`.
    """
    args: list[str] = []
    for option in OPTIONS:
        if option.plugin is None or option.dest not in values:
            continue
        value = values[option.dest]
        if value is None or value is False:
            continue
        if value is True:
            args.append(option.plugin)
        elif isinstance(value, Sequence) and not isinstance(value, str):
            # One flag per item: list options append or extend, so this reproduces the
            # list exactly.
            for item in value:
                args += [option.plugin, str(item)]
        else:
            args += [option.plugin, str(value)]
    return args
