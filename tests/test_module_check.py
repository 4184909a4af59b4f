"""`check_module`: an nn.Module checked with respect to its inputs and its parameters."""

import pytest
import torch

import gradcheck_kit as gk


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(), torch.nn.Linear(4, 2)
    )


class _ScaledWeightGrad(torch.autograd.Function):
    """`x @ w.T` whose weight gradient is 1% off in element [1, 2]."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w.T

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gw = g.T @ x
        gw[1, 2] = gw[1, 2] * 1.01
        return g @ w, gw


class _Encoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 3)
        generator = torch.Generator().manual_seed(2)
        self.weight = torch.nn.Parameter(torch.randn(4, 3, generator=generator))

    def forward(self, x):
        return torch.tanh(_ScaledWeightGrad.apply(self.proj(x), self.weight))


class _Buggy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = _Encoder()

    def forward(self, x):
        return self.encoder(x)


def test_float32_module_is_checked_in_float64_and_left_untouched():
    net = _net()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    params = {k: p for k, p in net.named_parameters()}
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    report = gk.check_module(net, x, raise_exception=False)
    assert report.status == "passed" and report.promoted
    assert report.power is not None and report.power < 1e-6
    checked = {c.input for c in report.comparisons}
    assert {"0.weight", "0.bias", "1.weight", "3.weight"} <= checked
    after = net.state_dict()
    for k, v in state.items():
        assert after[k].dtype == v.dtype and torch.equal(after[k], v), k
    for k, p in net.named_parameters():
        assert p is params[k] and p.grad is None and p.dtype == torch.float32
    assert "training mode" in str(report)


def test_a_wrong_weight_gradient_is_named_by_its_dotted_name():
    net = _Buggy().double()
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with pytest.raises(gk.GradientMismatch) as info:
        gk.check_module(net, x)
    report = info.value.report
    failed = {c.input for c in report.comparisons if not c.passed}
    assert failed == {"encoder.weight"}
    assert "encoder.weight" in str(info.value) and "input[1, 2]" in str(info.value)
    # Checked without its parameters, the same module passes: the bug is in the weight's rule.
    assert gk.check_module(net, x.requires_grad_(), parameters=False)


def test_selected_parameters_and_misspelt_names():
    net = _Buggy().double()
    x = torch.randn(6, 3, dtype=torch.float64)
    report = gk.check_module(net, x, parameters=["encoder.proj.weight"], raise_exception=False)
    assert report.passed
    assert {c.input for c in report.comparisons} == {"encoder.proj.weight"}
    with pytest.raises(gk.CheckInputError, match="did you mean encoder.weight"):
        gk.check_module(net, x, parameters=["encoder.weigth"])
    with pytest.raises(TypeError):
        gk.check_module(net, x, parameters="encoder.weight")


def test_inputs_that_require_grad_are_checked_beside_the_parameters():
    net = _net().double().eval()
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    report = gk.check_module(net, x, raise_exception=False)
    assert report.passed
    assert "inputs[0]" in {c.input for c in report.comparisons}
    assert "eval mode" in str(report)


def test_refuses_what_is_not_a_module_or_has_nothing_to_check():
    with pytest.raises(gk.CheckInputError, match="torch.nn.Module"):
        gk.check_module(torch.tanh, torch.randn(3))
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(gk.CheckInputError, match="nothing to check"):
        gk.check_module(frozen, torch.randn(3, 2))


def test_jax_modules_are_pytrees_whose_array_leaves_are_checked_by_path():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    from typing import Any, NamedTuple

    class Layer(NamedTuple):  # as an equinox module: arrays beside a function leaf
        weight: Any
        bias: Any
        act: Any

    @jax.custom_vjp
    def wrong_tanh(z):
        return jnp.tanh(z)

    def wrong_rule(z, g):
        return (g * 1.1 * (1 - jnp.tanh(z) ** 2),)  # 10% too large

    wrong_tanh.defvjp(lambda z: (jnp.tanh(z), z), wrong_rule)
    key = jax.random.PRNGKey(0)
    weight, bias = jax.random.normal(key, (2, 3)), jnp.zeros(2)
    x = jnp.linspace(-1.0, 1.0, 3)

    def apply(layer, x):
        return layer.act(layer.weight @ x + layer.bias)

    good = gk.gradcheck(apply, (Layer(weight, bias, jnp.tanh), x), raise_exception=False)
    assert good.passed
    checked = {c.input for c in good.comparisons}
    assert checked == {"inputs[0].weight", "inputs[0].bias", "inputs[1]"}
    bad = gk.gradcheck(apply, (Layer(weight, bias, wrong_tanh), x), raise_exception=False)
    assert not bad.passed and "inputs[0].weight" in {c.input for c in bad.comparisons if not c.passed}
