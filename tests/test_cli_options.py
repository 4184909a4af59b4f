"""The option table: the command line and the pytest plugin parse the same options alike."""

from __future__ import annotations

import argparse

import pytest

from gradcheck_kit._options import (
    OPTIONS,
    PLUGIN_DEST_PREFIX,
    add_argparse_options,
    available_devices,
    device_available,
    plugin_values,
    to_pytest_args,
)
from test_plugin import PLUGIN

CLI_ARGS = [
    "--model", "cubic_fit,graph_e", "--model", "linear_w",
    "--implementation", "jax",
    "--dtype", "float32", "--dtype", "float64,float32",
    "--device", "cpu",
    "--examples", "3",
    "--seed", "7",
    "--profile", "thorough",
    "--json", "out.json",
    "--module", "my_impls", "--module", "other_impls",
]


def _verify_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_argparse_options(parser, "verify")
    return parser


def test_cli_values_reach_the_plugin_unchanged(pytester: pytest.Pytester) -> None:
    cli = vars(_verify_parser().parse_args(CLI_ARGS))
    assert cli["models"] == ["cubic_fit", "graph_e", "linear_w"]
    assert cli["dtypes"] == ["float32", "float64", "float32"]
    config = pytester.parseconfig(*PLUGIN, *to_pytest_args(cli))
    shared = [o for o in OPTIONS if o.cli is not None and o.plugin is not None and "verify" in o.commands]
    assert {o.dest for o in shared} >= {"models", "dtypes", "devices", "seed", "profile", "modules"}
    for option in shared:
        assert config.getoption(PLUGIN_DEST_PREFIX + option.dest) == cli[option.dest], option.dest


def test_defaults_agree_between_front_ends(pytester: pytest.Pytester) -> None:
    cli = vars(_verify_parser().parse_args([]))
    config = pytester.parseconfig(*PLUGIN)
    # An unset flag falls back to the ini option, and that to the shared default.
    values = plugin_values(config.getoption, config.getini)
    for option in OPTIONS:
        if option.cli is not None and option.plugin is not None and "verify" in option.commands:
            assert values[option.dest] == cli[option.dest], option.dest
    assert values["verify"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dtype", "float128"], "float128"),
        (["--examples", "-1"], "not a non-negative integer"),
        (["--profile", "slow"], "invalid choice"),
        (["--model", ","], "names nothing"),
        (["--device", "gpu"], "not a device name"),
        (["--profile", "standard", "--device", "cpu,cuda:0,tpu:1,mps"], None),
    ],
)
def test_malformed_values_are_usage_errors(args: list[str], message: str | None, capsys: pytest.CaptureFixture[str]) -> None:
    if message is None:  # well-formed, whether or not this machine has the devices
        values = _verify_parser().parse_args(args)
        assert values.profile == "standard" and values.devices == ["cpu", "cuda:0", "tpu:1", "mps"]
        return
    with pytest.raises(SystemExit) as exit_info:
        _verify_parser().parse_args(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_cpu_is_always_available() -> None:
    assert available_devices("torch")[0] == "cpu"
    assert available_devices("numpy") == ["cpu"]
    assert device_available("cpu")
    assert not device_available("cuda:99")


# -- one device per pytest-xdist worker ----------------------------------------------------
def test_each_xdist_worker_takes_its_own_gpu_round_robin():
    from gradcheck_kit._options import worker_device

    gpus = ["cpu", "cuda:0", "cuda:1", "cuda:2"]
    assert [worker_device("cuda", gpus, f"gw{i}") for i in range(5)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:0", "cuda:1"]
    # An indexed name, the cpu, a run without xdist and a kind without devices keep theirs.
    assert worker_device("cuda:2", gpus, "gw0") == "cuda:2"
    assert worker_device("cpu", gpus, "gw1") == "cpu"
    assert worker_device("cuda", gpus, None) == "cuda"
    assert worker_device("cuda", gpus, "master") == "cuda"
    assert worker_device("mps", gpus, "gw1") == "mps"
