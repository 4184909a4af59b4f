"""A check leaves the caller's world as it found it, even when `fn` raises midway.

Covered: the caller's torch tensors, numpy arrays and jax arrays (bit for bit, strides,
version counters), their `.grad`, `nn.Module` parameters and buffers, the global random
generators of torch, numpy and `random`, and functions that write to their inputs.
"""

from __future__ import annotations

import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradcheck_kit as gk
from gradcheck_kit._targets import CheckInputError
from custom_functions import scaled_sin


class BoomError(RuntimeError):
    """Raised on purpose by a checked function."""


class RaisesOnCall:
    """Wraps `fn`; the `n`-th call (counting from 1) raises `BoomError`, and with
    `persistent=True` every later call too."""

    def __init__(self, fn, n: int, *, persistent: bool = False) -> None:
        self.fn = fn
        self.n = n
        self.persistent = persistent
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        if self.calls == self.n or (self.persistent and self.calls > self.n):
            raise BoomError(f"boom on call {self.n}")
        return self.fn(*args)


def tensor_state(t: torch.Tensor) -> dict:
    """Everything about a caller's tensor that a check must not change."""
    raw = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).clone()
    grad = None if t.grad is None else (t.grad, t.grad.detach().clone())
    return {
        "bits": raw,
        "dtype": t.dtype,
        "shape": tuple(t.shape),
        "stride": t.stride(),
        "requires_grad": t.requires_grad,
        "version": t._version,
        "grad": grad,
    }


def assert_tensor_untouched(t: torch.Tensor, before: dict) -> None:
    after = tensor_state(t)
    assert torch.equal(after["bits"], before["bits"]), "the caller's tensor values changed"
    for key in ("dtype", "shape", "stride", "requires_grad", "version"):
        assert after[key] == before[key], f"the caller's tensor {key} changed"
    if before["grad"] is None:
        assert t.grad is None, "a .grad appeared on the caller's tensor"
    else:
        grad_object, grad_values = before["grad"]
        assert t.grad is grad_object, "the caller's .grad was replaced"
        assert torch.equal(t.grad, grad_values), "the caller's .grad was changed"


def rng_states() -> tuple:
    return (
        torch.random.get_rng_state().clone(),
        np.random.get_state(),
        random.getstate(),
    )


def assert_rng_untouched(before: tuple) -> None:
    torch_state, np_state, py_state = before
    assert torch.equal(torch.random.get_rng_state(), torch_state), "torch's global RNG moved"
    now = np.random.get_state()
    assert now[0] == np_state[0] and np.array_equal(now[1], np_state[1]), "numpy's RNG moved"
    assert now[2:] == np_state[2:], "numpy's RNG moved"
    assert random.getstate() == py_state, "random's global RNG moved"


def seeded_globals() -> None:
    # Arbitrary, distinct from the seed a check uses internally, so a restore-by-reseed
    # would be caught.
    torch.manual_seed(1234)
    np.random.seed(5678)
    random.seed(91011)


def torch_inputs() -> tuple[torch.Tensor, ...]:
    """Awkward caller tensors: signed zeros, an existing grad, a view, a non-diff tensor."""
    g = torch.Generator().manual_seed(7)
    a = torch.randn(3, 4, generator=g, dtype=torch.float64)
    a[0, 0] = -0.0  # bit-for-bit: a restore through float arithmetic could lose the sign
    a.requires_grad_(True)
    a.grad = torch.full_like(a, 0.25)
    b = torch.randn(4, 3, generator=g, dtype=torch.float32).t().requires_grad_(True)  # a view
    c = torch.randn(3, 4, generator=g, dtype=torch.float64)  # does not require grad
    return a, b, c


def torch_fn(a, b, c):
    return (a.sin() * b + c).tanh()


# -- torch tensors -------------------------------------------------------------------------


# (n, persistent): only the n-th call raises, or every call from the n-th on. The first
# calls probe what the function supports (a retry with grad enabled, float64 promotion,
# forward mode) and a one-off failure there only narrows the check, so failures that
# early are made persistent.
@pytest.mark.parametrize(
    "fail_on", [None, (1, True), (3, True), (6, False), (12, False)], ids=str
)
def test_torch_inputs_grads_and_rng_untouched_even_when_fn_raises_midway(fail_on):
    inputs = torch_inputs()
    before = [tensor_state(t) for t in inputs]
    seeded_globals()
    rngs = rng_states()
    if fail_on is not None:
        fail_on, persistent = fail_on
        fn = RaisesOnCall(torch_fn, fail_on, persistent=persistent)
    else:
        fn = torch_fn
    if fail_on is None:
        assert gk.gradcheck(fn, inputs)
    elif persistent:
        # The user's own error, or a CheckInputError that carries it, must surface.
        with pytest.raises((BoomError, CheckInputError)) as info:
            gk.gradcheck(fn, inputs)
        chain = f"{info.value} {info.value.__cause__}"
        assert f"boom on call {fail_on}" in chain
        assert fn.calls >= fail_on
    else:
        # A one-off raise at a perturbed input is retried at a smaller step, as for a
        # function that validates its input: the check completes and names the error, or
        # (where the call was not a perturbed one) the error surfaces.
        try:
            report = gk.gradcheck(fn, inputs, raise_exception=False)
        except (BoomError, CheckInputError) as exc:
            assert f"boom on call {fail_on}" in f"{exc} {exc.__cause__}"
        else:
            notes = [n for c in report.comparisons for n in c.notes] + report.notes
            assert report.passed and any(f"boom on call {fail_on}" in n for n in notes)
        assert fn.calls >= fail_on
    for t, state in zip(inputs, before):
        assert_tensor_untouched(t, state)
    assert_rng_untouched(rngs)


def test_torch_inputs_untouched_when_the_check_fails():
    wrong_cos = scaled_sin(1.01)

    x = torch.linspace(-1, 1, 80, dtype=torch.float64).requires_grad_(True)
    before = tensor_state(x)
    seeded_globals()
    rngs = rng_states()
    with pytest.raises(gk.GradientMismatch):
        gk.gradcheck(wrong_cos, x)  # 80 elements: localised by bisection
    report = gk.gradcheck(wrong_cos, x, mode="full", raise_exception=False)
    assert not report
    assert_tensor_untouched(x, before)
    assert_rng_untouched(rngs)


def test_gradgradcheck_leaves_inputs_grads_and_rng_untouched():
    inputs = torch_inputs()
    before = [tensor_state(t) for t in inputs]
    seeded_globals()
    rngs = rng_states()
    assert gk.gradgradcheck(torch_fn, inputs)
    with pytest.raises((BoomError, CheckInputError)):
        gk.gradgradcheck(RaisesOnCall(torch_fn, 4, persistent=True), inputs)
    # Random cotangents are drawn for the second-order map: not from the global generators.
    assert_rng_untouched(rngs)
    for t, state in zip(inputs, before):
        assert_tensor_untouched(t, state)


def test_fn_writing_into_a_non_differentiable_input_does_not_reach_the_caller():
    a = torch.linspace(-1, 1, 6, dtype=torch.float64).requires_grad_(True)
    offset = torch.arange(6, dtype=torch.float64)
    before = tensor_state(offset)

    def fn(x, o):
        o.add_(1.0)  # in place on an argument
        return x * o

    report = gk.gradcheck(fn, (a, offset))
    # Each evaluation sees a fresh copy, so d(fn)/dx is always offset + 1.
    assert report.passed
    assert_tensor_untouched(offset, before)


def _mutates_its_differentiable_input(x):
    out = x * 3.0
    with torch.no_grad():
        x.add_(100.0)  # in place on the differentiable argument, after use
    return out


def test_fn_writing_into_its_differentiable_input_does_not_reach_the_caller():
    x = torch.linspace(-1, 1, 5, dtype=torch.float64).requires_grad_(True)
    before = tensor_state(x)
    try:
        gk.gradcheck(_mutates_its_differentiable_input, x)
    except CheckInputError:
        pass  # the verdict is covered by the next test; this one is about the caller's tensor
    assert_tensor_untouched(x, before)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fn_writing_into_its_differentiable_input_gets_a_correct_verdict(dtype):
    x = torch.linspace(-1, 1, 5, dtype=dtype).requires_grad_(True)
    assert gk.gradcheck(_mutates_its_differentiable_input, x)


def test_in_place_on_a_leaf_that_requires_grad_leaves_the_caller_untouched():
    x = torch.linspace(-1, 1, 5, dtype=torch.float64).requires_grad_(True)
    before = tensor_state(x)
    # torch itself refuses this under autograd; gradcheck may say so or refuse earlier.
    with pytest.raises((CheckInputError, RuntimeError)):
        gk.gradcheck(lambda a: a.mul_(2.0), x)
    assert_tensor_untouched(x, before)


# -- nn.Module parameters and buffers ------------------------------------------------------


def module_state(module: torch.nn.Module) -> dict:
    state = {name: tensor_state(p) for name, p in module.named_parameters()}
    state.update({f"buffer {name}": tensor_state(b) for name, b in module.named_buffers()})
    return state


def assert_module_untouched(module: torch.nn.Module, before: dict) -> None:
    tensors = dict(module.named_parameters())
    tensors.update({f"buffer {name}": b for name, b in module.named_buffers()})
    assert tensors.keys() == before.keys()
    for name, t in tensors.items():
        try:
            assert_tensor_untouched(t, before[name])
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


@pytest.mark.parametrize("fail_on", [None, 4])
def test_module_parameters_and_their_grads_untouched(fail_on):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)).double()
    net[0].weight.grad = torch.ones_like(net[0].weight)  # an existing grad; others are None
    before = module_state(net)
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    fn = (lambda a: net(a)) if fail_on is None else RaisesOnCall(lambda a: net(a), fail_on)
    if fail_on is None:
        assert gk.gradcheck(fn, x)
        assert gk.gradcheck(net, x)  # the module itself as fn
        # A parameter (with an existing grad) as the checked input itself.
        assert gk.gradcheck(lambda w: torch.nn.functional.linear(x, w).tanh(), net[0].weight)
    else:
        with pytest.raises((BoomError, CheckInputError)):
            gk.gradcheck(fn, x)
    assert_module_untouched(net, before)
    assert net.training  # the train/eval flag is part of the module's state too


_BUFFERS_REASON = (
    "a BatchNorm in training mode updates running_mean, running_var and "
    "num_batches_tracked on every forward; gradcheck calls the forward about 10 times and "
    "restores none of them (num_batches_tracked goes from 0 to 10). The caller's module "
    "buffers should be snapshotted and restored (for fn an nn.Module, and for modules "
    "reachable from fn: closure cells, bound __self__, referenced globals)"
)


@pytest.mark.parametrize("as_closure", [False, True], ids=["module_as_fn", "module_in_closure"])
def test_batchnorm_running_stats_untouched(as_closure):
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm1d(3).double()
    before = module_state(bn)
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    fn = (lambda a: bn(a).sin()) if as_closure else bn
    assert gk.gradcheck(fn, x)
    assert_module_untouched(bn, before)


def test_dropout_module_leaves_parameters_and_every_rng_untouched():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Dropout(0.4)).double().train()
    before = module_state(net)
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    seeded_globals()
    rngs = rng_states()
    expected_next = (torch.rand(3), np.random.rand(3), random.random())
    seeded_globals()
    report = gk.gradcheck(net, x)
    assert report.passed
    assert any("stochastic" in n for n in report.notes)
    assert_module_untouched(net, before)
    assert_rng_untouched(rngs)
    # Untouched means the caller's next draws are the ones they would have been.
    assert torch.equal(torch.rand(3), expected_next[0])
    assert np.array_equal(np.random.rand(3), expected_next[1])
    assert random.random() == expected_next[2]


def test_stochastic_fn_raising_midway_still_restores_every_rng():
    def noisy(a):
        return a * (1.0 + torch.rand(a.shape, dtype=a.dtype) + np.random.rand() + random.random())

    x = torch.linspace(-1, 1, 4, dtype=torch.float64).requires_grad_(True)
    seeded_globals()
    rngs = rng_states()
    with pytest.raises((BoomError, CheckInputError)):
        gk.gradcheck(RaisesOnCall(noisy, 5, persistent=True), x)
    assert_rng_untouched(rngs)


# -- numpy arrays --------------------------------------------------------------------------


def numpy_loss(a, b):
    return float(np.sum(np.sin(a) * b))


def numpy_grad(a, b):
    return np.cos(a) * b, np.sin(a)


@pytest.mark.parametrize("where", ["none", "fn", "grad"])
def test_numpy_arrays_untouched_even_when_fn_or_grad_raises(where):
    a = np.linspace(-1, 1, 6).reshape(2, 3)
    a[0, 0] = -0.0
    b = np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3))  # non-C-contiguous
    before = [(x.copy(), x.dtype, x.strides, x.flags.writeable) for x in (a, b)]
    seeded_globals()
    rngs = rng_states()
    fn, grad = numpy_loss, numpy_grad
    if where == "fn":
        fn = RaisesOnCall(numpy_loss, 4)
    elif where == "grad":
        grad = RaisesOnCall(numpy_grad, 1)
    if where == "none":
        assert gk.gradcheck(fn, (a, b), grad=grad)
    elif where == "grad":
        with pytest.raises((BoomError, CheckInputError)):
            gk.gradcheck(fn, (a, b), grad=grad)
    else:
        # A one-off raise at a perturbed input is retried at a smaller step: the check
        # completes and names the error, or the error surfaces.
        try:
            report = gk.gradcheck(fn, (a, b), grad=grad, raise_exception=False)
        except (BoomError, CheckInputError) as exc:
            assert "boom on call 4" in f"{exc} {exc.__cause__}"
        else:
            notes = [n for c in report.comparisons for n in c.notes] + report.notes
            assert report.passed and any("boom on call 4" in n for n in notes)
    for x, (values, dtype, strides, writeable) in zip((a, b), before):
        assert x.tobytes() == values.tobytes() and x.dtype == dtype
        assert x.strides == strides and x.flags.writeable == writeable
    assert_rng_untouched(rngs)


def test_numpy_fn_and_grad_writing_into_their_inputs():
    a = np.linspace(0.5, 1.5, 5)
    before = a.copy()

    def loss(x):
        value = float(np.sum(x**3))
        x[:] = 0.0  # clobber the argument after use
        return value

    def grad(x):
        g = 3 * x**2
        x *= -1.0
        return (g,)

    assert gk.gradcheck(loss, a, grad=grad)
    assert np.array_equal(a, before)


# -- jax arrays ------------------------------------------------------------------------------


@pytest.mark.parametrize("fail_on", [None, 3])
def test_jax_arrays_and_x64_flag_untouched_even_when_fn_raises(fail_on):
    x = jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32)
    params = {"w": jnp.ones((6, 2), dtype=jnp.float32), "k": jnp.arange(2)}
    values = (np.asarray(x).copy(), np.asarray(params["w"]).copy(), np.asarray(params["k"]).copy())
    x64 = jax.config.read("jax_enable_x64")
    seeded_globals()
    rngs = rng_states()

    def fn(p, v):
        return jnp.tanh(v @ p["w"]) * p["k"]

    if fail_on is None:
        assert gk.gradcheck(fn, (params, x))
    else:
        with pytest.raises((BoomError, CheckInputError)):
            gk.gradcheck(RaisesOnCall(fn, fail_on, persistent=True), (params, x))
    assert x.dtype == jnp.float32 and params["w"].dtype == jnp.float32
    assert params["k"].dtype == jnp.arange(2).dtype
    for arr, old in zip((x, params["w"], params["k"]), values):
        assert np.asarray(arr).tobytes() == old.tobytes()
    assert sorted(params) == ["k", "w"]
    assert jax.config.read("jax_enable_x64") == x64
    assert_rng_untouched(rngs)
