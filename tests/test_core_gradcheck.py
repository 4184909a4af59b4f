"""gradcheck on torch functions: verdicts, localisation, reduced precision, cost."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import gradcheck_kit as gk
from custom_functions import product, scaled_sin, unary_function
from gradcheck_kit import GradientMismatch, Report

FLOATS = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


def rand(*shape, dtype=torch.float64, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_(requires_grad)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize(
    "fn",
    [
        torch.tanh,
        lambda x: torch.softmax(x, dim=-1),
        lambda x: (x @ x.T).logsumexp(0),
        lambda x: torch.nn.functional.layer_norm(x, x.shape[-1:]),
        lambda x: x.pow(2).sum(),
    ],
    ids=["tanh", "softmax", "matmul_logsumexp", "layer_norm", "sum_squares"],
)
def test_correct_functions_pass_in_every_dtype(fn, dtype):
    x = rand(4, 6, dtype=dtype)
    report = gk.gradcheck(fn, x)
    assert report.passed and bool(report)
    assert report.dtype == str(dtype).replace("torch.", "")
    if dtype != torch.float64:
        assert report.promoted
        assert any("backward vs float64 backward" in c.check for c in report.comparisons)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_one_wrong_element_is_found_and_named(dtype):
    fn = scaled_sin(1.5, element=13)
    x = rand(4, 6, dtype=dtype)
    report = gk.gradcheck(fn, x, raise_exception=False)
    assert not report
    failure = report.failures[0]
    assert failure.input == "inputs[0]"
    assert failure.worst[0].input_index == (2, 1)  # flat 13 in a 4x6 tensor
    assert failure.worst[0].error > failure.worst[0].tolerance


def test_a_tenth_of_a_percent_error_is_found_in_float32():
    fn = scaled_sin(1.001, element=7)
    x = rand(50, dtype=torch.float32)
    assert not gk.gradcheck(fn, x, raise_exception=False)


def test_small_gradients_are_not_hidden_by_an_absolute_tolerance():
    class Tiny(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return 1e-6 * x.sin()

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return 2e-6 * x.cos() * g  # a factor of 2 too large

    for dtype in (torch.float64, torch.float32):
        assert not gk.gradcheck(Tiny.apply, rand(5, dtype=dtype), raise_exception=False)


@pytest.mark.parametrize("offset", [1e-7, -1e-7, 0.0])
def test_relu_at_or_near_its_kink_is_not_a_false_alarm(offset):
    x = torch.tensor([offset, 0.5, -0.3, 2.0], dtype=torch.float64, requires_grad=True)
    report = gk.gradcheck(torch.relu, x)
    assert report.passed
    fd = [c for c in report.comparisons if "finite differences" in c.check][0]
    assert fd.notes, "the report says how the kink was handled"


def test_a_wrong_relu_backward_at_a_kink_region_is_still_caught():
    class BadRelu(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * (x >= -0.5)  # passes gradient for inputs in [-0.5, 0)

    x = torch.tensor([1e-7, 0.5, -0.3, 2.0], dtype=torch.float64, requires_grad=True)
    report = gk.gradcheck(BadRelu.apply, x, raise_exception=False)
    assert not report
    assert report.failures[0].worst[0].input_index == (2,)


def test_failure_raises_gradient_mismatch_with_the_report():
    with pytest.raises(GradientMismatch) as info:
        gk.gradcheck(scaled_sin(-1.0, element=0), rand(3))
    assert isinstance(info.value, AssertionError)
    assert isinstance(info.value.report, Report)
    assert "FAILED" in str(info.value) and "inputs[0]" in str(info.value)


def test_report_is_json_serialisable_and_readable():
    report = gk.gradcheck(scaled_sin(2.0, element=1), rand(3, 2), raise_exception=False)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["passed"] is False
    assert data["function_evals"] == report.function_evals > 0
    failing = [c for c in data["comparisons"] if not c["passed"]]
    assert failing and failing[0]["worst"][0]["input_index"] == [0, 1]
    text = str(report)
    assert "FAIL" in text and "element input[0, 1]" in text


def test_several_inputs_and_outputs_and_inputs_without_grad():
    a = rand(3, seed=1)
    b = rand(3, seed=2)
    c = rand(3, seed=3, requires_grad=False)
    report = gk.gradcheck(lambda a, b, c: (a * b + c, (a - c).exp().sum()), (a, b, c))
    assert report.passed
    pairs = {(cmp.input, cmp.output) for cmp in report.comparisons if "finite" in cmp.check}
    assert pairs == {(i, o) for i in ("inputs[0]", "inputs[1]") for o in ("outputs[0]", "outputs[1]")}


def test_wrong_gradient_for_a_reused_input_is_caught():
    mul = product()
    good = lambda x: mul(x, x)  # noqa: E731 - autograd accumulates both paths
    assert gk.gradcheck(good, rand(4))

    # The backward forgot the second path: g * x where it should be 2x.
    square = unary_function(lambda x: x * x, lambda x: x, name="Square").apply
    assert not gk.gradcheck(square, rand(4), raise_exception=False)


def test_nondeterministic_backward_fails_with_a_named_check():
    class Noisy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * 2 + torch.rand_like(g) * 1e-3

    report = gk.gradcheck(Noisy.apply, rand(5), raise_exception=False)
    assert not report
    assert any("determinism" in c.check for c in report.failures)
    tolerant = gk.gradcheck(Noisy.apply, rand(5), nondet_tol=1e-2, raise_exception=False)
    assert not any("determinism" in c.check for c in tolerant.failures)


def test_default_mode_cost_does_not_grow_with_input_size():
    evals = []
    for n in (10, 1000, 100_000):
        report = gk.gradcheck(lambda x: (x.sin() * x).sum(), rand(n))
        evals.append((report.function_evals, report.backward_evals))
    assert evals[0] == evals[1] == evals[2]
    assert evals[0][0] <= 40


def test_full_mode_checks_every_element():
    report = gk.gradcheck(lambda x: x.cumsum(0), rand(6), mode="full")
    assert report.passed
    assert report.mode == "full"
    fd = [c for c in report.comparisons if "finite" in c.check][0]
    assert any("full Jacobian: 0 of 36 elements" in n for n in fd.notes)


def test_drop_in_for_torch_gradcheck_positional_use_and_options():
    x = rand(3)
    report = gk.gradcheck(torch.sin, (x,), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)
    assert report.passed and report.mode == "fast"
    fd = [c for c in report.comparisons if c.kind is gk.ComparisonKind.FINITE_DIFFERENCES]
    assert fd and fd[0].tolerance_source.startswith("user atol=1e-05, rtol=0.001")
    # eps= is the initial step in input units: a 1e-6 step leaves a rounding error far above
    # the default step's, which the finite-difference error estimate must cover.
    default = gk.gradcheck(torch.sin, (x,), atol=1e-5, rtol=1e-3, fast_mode=True)
    default_fd = [c for c in default.comparisons if c.kind is gk.ComparisonKind.FINITE_DIFFERENCES]
    assert fd[0].tolerance > default_fd[0].tolerance
    report = gk.gradcheck(torch.sin, (x,), fast_mode=True)
    assert report.mode == "fast"
    with pytest.raises(TypeError, match="unexpected keyword"):
        gk.gradcheck(torch.sin, (x,), not_an_option=1)


def test_float32_function_that_cannot_be_promoted_falls_back_and_says_so():
    w = torch.randn(4, 3, dtype=torch.float32)  # captured float32 weight: no float64 path
    x = rand(2, 4, dtype=torch.float32)
    report = gk.gradcheck(lambda x: (x @ w).tanh(), x)
    assert report.passed and not report.promoted
    assert any("finite differences run in float32" in n for n in report.notes)


def test_stochastic_forward_is_flagged_and_still_checked():
    x = rand(50)
    report = gk.gradcheck(lambda x: torch.nn.functional.dropout(x, 0.5, training=True) * 3, x)
    assert report.passed
    assert any("stochastic" in n for n in report.notes)


def test_the_set_up_call_is_the_second_call_of_the_determinism_test():
    from gradcheck_kit._preflight import base_outputs
    from gradcheck_kit._targets import make_target

    calls = []

    def deterministic(x):
        calls.append(1)
        return x.sin()

    target = make_target(deterministic, (rand(5),))
    before = len(calls)
    _, notes = base_outputs(target)
    assert len(calls) == before and not notes  # the first call, unseeded, agreed already
    torch.manual_seed(1)  # a caller's state (the check restores it; internals alone do not)
    stochastic = make_target(lambda x: x * torch.rand(x.shape, dtype=x.dtype), (rand(5),))
    _, notes = base_outputs(stochastic)
    assert any("stochastic" in n for n in notes)


def test_forward_mode_dot_product_test_runs_for_builtin_ops_where_asked_for():
    report = gk.gradcheck(lambda x: x.exp().cumsum(0), rand(5), check_forward_ad=True)
    assert report.forward_evals >= 1
    assert any("dot-product" in c.check for c in report.comparisons)


def test_second_order_bug_is_caught_by_gradgradcheck_only():
    class DetachedBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.pow(3)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x.detach() ** 2  # right first derivative, no second one

    x = rand(4)
    assert gk.gradcheck(DetachedBackward.apply, x)
    assert gk.gradgradcheck(torch.tanh, x)
    report = gk.gradgradcheck(DetachedBackward.apply, x, raise_exception=False)
    assert not report
    assert any("second order" in n for n in report.notes)


def test_two_layer_network_tenth_of_a_percent_weight_error():
    # The doc's network at reduced width; benchmarks/ runs the full 64x1000x100x10 size.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 200, generator=g, dtype=torch.float64)
    y = torch.randn(16, 10, generator=g, dtype=torch.float64)
    w1 = torch.randn(200, 50, generator=g, dtype=torch.float64)
    w2 = torch.randn(50, 10, generator=g, dtype=torch.float64)

    class Mm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a.mm(b)

        @staticmethod
        def backward(ctx, go):
            a, b = ctx.saved_tensors
            gb = a.t().mm(go)
            gb[3, 7] *= 1.001
            return go.mm(b.t()), gb

    def loss(x, y, w1, w2, mm=torch.mm):
        return (mm(mm(x, w1).clamp(min=0), w2) - y).pow(2).sum()

    for dtype in (torch.float64, torch.float32):
        args = [t.to(dtype) for t in (x, y, w1, w2)]
        args[2].requires_grad_(True)
        args[3].requires_grad_(True)
        assert gk.gradcheck(loss, tuple(args))
        report = gk.gradcheck(lambda *a: loss(*a, mm=Mm.apply), tuple(args), raise_exception=False)
        assert not report
        assert report.failures[0].input == "inputs[2]"
        assert report.failures[0].worst[0].input_index == (3, 7)


def _sin_with_jvp(jvp_factor: float) -> type[torch.autograd.Function]:
    """sin with a correct backward and a jvp scaled by `jvp_factor`."""
    return unary_function(torch.sin, torch.cos, jvp_factor=jvp_factor, name="SinWithJvp")


def test_a_wrong_forward_mode_rule_is_a_note_unless_forward_ad_is_checked():
    x = rand(5)
    report = gk.gradcheck(_sin_with_jvp(1.0).apply, x)
    assert any("dot-product" in c.check for c in report.comparisons)  # the jvp ran
    wrong_jvp = _sin_with_jvp(1.5).apply
    report = gk.gradcheck(wrong_jvp, x)
    assert report.passed
    assert any("forward-mode (jvp) rule looks wrong" in n for n in report.notes)
    strict = gk.gradcheck(wrong_jvp, x, check_forward_ad=True, raise_exception=False)
    assert not strict and "dot-product" in strict.failures[0].check


def test_outputs_marked_non_differentiable_are_not_checked():
    x = rand(4, 3)
    report = gk.gradcheck(lambda x: torch.native_layer_norm(x, (3,), None, None, 1e-5), x)
    assert report.passed
    # torch's structural checks (kind STRUCTURAL) pull back every output at once
    compared = {c.output for c in report.comparisons if c.kind is not gk.ComparisonKind.STRUCTURAL}
    assert compared == {"outputs[0]"}
    assert not gk.gradcheck(lambda x: x.detach() * 2, x, raise_exception=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_zero_function_and_gradient_with_unit_intermediates_is_not_a_false_alarm(dtype):
    # var(exp(x)) at x = 0: f and its gradient vanish while the intermediates are 1, so
    # rounding is set by those, not by f or its gradient.
    x = torch.zeros(2, dtype=dtype, requires_grad=True)
    for seed in range(5):
        assert gk.gradcheck(lambda a: a.exp().var(), x, seed=seed)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_masked_minus_infinity_inputs_are_held_fixed(dtype):
    x = rand(2, 5, dtype=dtype, requires_grad=False)
    x[0, 2] = x[1, 0] = -float("inf")  # masked attention scores
    x.requires_grad_(True)
    report = gk.gradcheck(lambda a: torch.softmax(a, -1), x)
    assert any("2 infinite element(s): held fixed" in n for n in report.notes)

    class MissingTerm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            y = torch.softmax(a, -1)
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return y * g  # the - y * sum(y * g) term is missing

    assert not gk.gradcheck(MissingTerm.apply, x, raise_exception=False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_one_wrong_gradient_element_among_1e5_is_found(dtype):
    """Cost is constant in size, and so must be power: one bad element of 1e5 is caught."""
    n, bad = 100_000, 73_421

    class OneWrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.tanh(x) * 2

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            grad = g * 2 * (1 - torch.tanh(x) ** 2)
            grad[bad] = grad[bad] * 1.5  # a plausible slip: one element 50% off
            return grad

    x = torch.randn(n, dtype=dtype, generator=torch.Generator().manual_seed(0)).requires_grad_()
    assert not gk.gradcheck(OneWrong.apply, (x,), raise_exception=False)
    assert gk.gradcheck(lambda x: torch.tanh(x) * 2, (x,), raise_exception=False)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_reported_cost_counts_every_call_of_the_function(dtype):
    # The set-up probes (the first call, promotion, precision and dependence probes) are
    # calls too; a hand-written gradient makes every call of fn a forward evaluation.
    calls = []

    def f(x):
        calls.append(1)
        return np.sum(np.tanh(x) ** 2)

    def grad(x):
        t = np.tanh(x)
        return 2 * t * (1 - t**2)

    x = np.random.default_rng(0).standard_normal(7).astype(dtype)
    report = gk.gradcheck(f, (x,), grad=grad)
    assert report.function_evals == len(calls) > 0
