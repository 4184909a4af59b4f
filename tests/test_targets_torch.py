"""The torch adapter evaluates the function as the caller would, and says when it cannot."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gradcheck_kit as gk
from gradcheck_kit._targets import make_target


def _randn(*shape, dtype=torch.float64):
    g = torch.Generator().manual_seed(7)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_()


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: torch.softmax(x, -1, dtype=torch.float32).to(x.dtype),
        lambda x: (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype),
    ],
    ids=["softmax-float32-inside", "rmsnorm-float32-inside"],
)
def test_a_function_computing_in_float32_inside_is_not_promoted(fn):
    x = _randn(3, 5, dtype=torch.float32)
    target = make_target(fn, (x,))
    assert not target.promoted
    assert "computes in lower precision" in target.promotion_note
    assert gk.gradcheck(fn, (x,)).passed


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: torch.softmax(x, -1),
        lambda x: torch.ones(3, dtype=x.dtype) + 0 * x.sum(),  # constant: no change either way
        lambda x: torch.cat([x.sum(-1), torch.zeros(2, dtype=x.dtype)]),  # a part independent of x
        # The output cancels: its changes lie below the resolution of 1 + x*x, not of float64.
        lambda x: torch.log(1 + (1e-4 * x) ** 2).sum(),
    ],
    ids=["generic", "constant", "partly-constant", "cancelling"],
)
def test_dtype_generic_functions_stay_promoted(fn):
    target = make_target(fn, (_randn(3, 5, dtype=torch.float32),))
    assert target.promoted and target.promotion_note is None


def test_a_parameter_read_through_a_closure_is_flagged_as_vacuous():
    w = _randn(4)
    report = gk.gradcheck(lambda x: (w * 2.0).sum(), (w,), raise_exception=False)
    assert any("do not change with inputs[0]" in n and "closure" in n for n in report.notes)
    for fn, independent in ((lambda x: (w * 2.0).sum(), True), (lambda x: (x * 2.0).sum(), False)):
        target = make_target(fn, (w,))
        assert not target.outputs_independent  # asked by the engine, where it matters
        [y0] = target.outputs_at_base()
        target.probe_dependence(y0.ravel())
        assert target.outputs_independent is independent
        assert target.probe_dependence(y0.ravel()) == []  # asked once


class _ContiguousOnly(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * 2.0

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        if not x.is_contiguous():
            raise RuntimeError("expects contiguous memory")
        return g * 2.0


def test_inputs_keep_the_callers_strides():
    x = _randn(3, 4).detach().t().requires_grad_()
    seen = []
    make_target(lambda y: seen.append(y.stride()) or y.sin(), (x,)).evaluate([np.ones((4, 3))])
    assert seen and all(s == x.stride() for s in seen)
    # A backward that assumes contiguous memory fails for a transposed input, as for the caller.
    with pytest.raises(gk.CheckInputError, match="contiguous"):
        gk.gradcheck(_ContiguousOnly.apply, (x,))
    assert gk.gradcheck(_ContiguousOnly.apply, (x.detach().contiguous().requires_grad_(),))


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors")
def test_evaluations_run_with_grad_enabled_as_for_the_caller():
    # Under no_grad an eval-mode TransformerEncoder with a padding mask takes the
    # nested-tensor fast path, which zeroes the padded positions.
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    encoder = torch.nn.TransformerEncoder(layer, 1, enable_nested_tensor=True).eval()
    mask = torch.tensor([[False, False, True, True], [False, False, False, True]])
    x = torch.randn(2, 4, 8, requires_grad=True)
    fn = lambda x: encoder(x, src_key_padding_mask=mask)
    with torch.no_grad():
        fast = fn(x)
    expected = fn(x).detach()
    assert not torch.equal(fast, expected)  # the case exercises the other code path
    target = make_target(fn, (x,))
    np.testing.assert_array_equal(target.evaluate(target.base, native=True)[0], expected.double().numpy())


class _Holder:
    def __init__(self, module):
        self.m = module

    def method(self, x):
        return self.m(x)


def _bn():
    return torch.nn.BatchNorm1d(3).double().train()


def _reached_through(kind):
    bn = _bn()
    if kind == "dict":
        held = {"bn": bn}
        return bn, (lambda x: held["bn"](x)), ()
    if kind == "list":
        held = [bn]
        return bn, (lambda x: held[0](x)), ()
    if kind == "method":
        return bn, _Holder(bn).method, ()
    if kind == "input":
        return bn, (lambda x, m: m(x)), (bn,)
    return bn, (lambda x: bn(x)), ()


@pytest.mark.parametrize("kind", ["dict", "list", "method", "input", "closure"])
@pytest.mark.parametrize("check", [gk.gradcheck, gk.gradgradcheck], ids=["first", "second"])
def test_batchnorm_statistics_are_left_bit_for_bit(kind, check):
    bn, fn, extra = _reached_through(kind)
    before = {k: (v.clone(), v._version) for k, v in bn.state_dict().items()}
    check(fn, (_randn(5, 3), *extra), raise_exception=False)
    after = bn.state_dict()
    for name, (value, version) in before.items():
        assert torch.equal(after[name], value), name
        assert after[name]._version == version, name


@pytest.mark.parametrize("check", [gk.gradcheck, gk.gradgradcheck], ids=["first", "second"])
def test_a_generator_passed_as_an_input_is_not_advanced(check):
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    report = check(lambda x, g: x.sin() * torch.rand(x.shape, generator=g, dtype=x.dtype), (_randn(4), g))
    assert report.passed
    assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize(
    "fn", [lambda x: x * 2.0, lambda x: (x.sum(), x.prod())], ids=["vector", "two-outputs"]
)
def test_a_hand_written_grad_needs_a_scalar_function(fn):
    x = _randn(3)
    with pytest.raises(gk.CheckInputError, match="grad= the function must return one scalar"):
        gk.gradcheck(fn, (x,), grad=lambda x: (2.0 * torch.ones_like(x),))


def test_numpy_integer_labels_are_constants_beside_float_inputs():
    w = np.random.default_rng(0).standard_normal((3, 4))
    labels = np.array([0, 2, 1])

    def loss(w, y):
        z = w - w.max(1, keepdims=True)
        return float(-(z[np.arange(3), y] - np.log(np.exp(z).sum(1))).sum())

    def grad(w, y):
        z = w - w.max(1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        p[np.arange(3), y] -= 1.0
        return p

    assert gk.gradcheck(loss, (w, labels), grad=grad)
    assert gk.gradcheck(loss, (w, labels), grad=lambda w, y: (grad(w, y), None))
    wrong = lambda w, y: grad(w, y) * 1.01
    assert not gk.gradcheck(loss, (w, labels), grad=wrong, raise_exception=False)


def test_parameters_inside_nested_containers_are_checked_and_named():
    x = torch.randn(3, 4, dtype=torch.float64)
    params = {"w": _randn(4, 2), "b": [_randn(2)]}
    fn = lambda x, p: (x @ p["w"] + p["b"][0]).tanh()
    report = gk.gradcheck(fn, (x, params))
    assert {c.input for c in report.comparisons} == {"inputs[1]['w']", "inputs[1]['b'][0]"}
    wrong = lambda x, p: (x @ p["w"] + p["b"][0].detach()).tanh()  # b's gradient lost
    assert not gk.gradcheck(wrong, (x, params), raise_exception=False)
