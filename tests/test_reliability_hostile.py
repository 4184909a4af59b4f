"""Hostile and awkward input: a clear error (argument, reason, fix) or a correct verdict.

Never an internal traceback. Each case below either asserts the verdict, with a buggy
twin where that is meaningful so a pass cannot be vacuous, or asserts the exception type
and what its message says.
"""

from __future__ import annotations

import json
import os
import re
import time
import tracemalloc

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradcheck_kit as gk
from gradcheck_kit._targets import CheckInputError
from custom_functions import product


def tensor(*shape, dtype=torch.float64, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)
    return t.requires_grad_(requires_grad)


def scaled(fn, dfn, factor: float):
    """Elementwise `fn` whose backward is `factor * dfn`: correct when factor == 1."""

    class Op(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return fn(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * dfn(x) * factor

    return Op.apply


def sin_op(factor: float = 1.0):
    return scaled(torch.sin, torch.cos, factor)


def verdict(fn, inputs, **options) -> gk.Report:
    report = gk.gradcheck(fn, inputs, raise_exception=False, **options)
    json.dumps(report.to_dict())  # always serialisable, whatever happened
    assert str(report).startswith("gradcheck")
    return report


# -- integer, bool and complex inputs ----------------------------------------------------


def test_integer_and_bool_inputs_beside_a_float_input_are_constants():
    x = tensor(5)
    idx = torch.tensor([4, 0, 2, 2, 1])
    mask = torch.tensor([True, False, True, True, False])
    fn = lambda a, i, m: a.sin()[i] * m  # noqa: E731
    report = verdict(fn, (x, idx, mask))
    assert report.passed
    assert {c.input for c in report.comparisons} == {"inputs[0]"}
    buggy = lambda a, i, m: sin_op(1.01)(a)[i] * m  # noqa: E731
    assert not verdict(buggy, (x, idx, mask))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_only_integer_or_bool_inputs_is_a_clear_error(dtype):
    # Either today's "no input requires grad" or a message about the dtype (see below).
    with pytest.raises(CheckInputError, match="requires grad|floating"):
        gk.gradcheck(lambda a: a.double().sin(), torch.ones(3, dtype=dtype))


def test_integer_only_input_error_names_the_argument_dtype_and_the_fix():
    with pytest.raises(CheckInputError) as info:
        gk.gradcheck(lambda a: a.double().sin(), torch.arange(3))
    message = str(info.value)
    assert "inputs[0]" in message and "int64" in message
    assert "float" in message


def test_integer_inputs_in_jax_and_numpy_are_clear_errors():
    with pytest.raises(CheckInputError, match="no input is a floating-point array.*integer"):
        gk.gradcheck(lambda a: a * 2.0, jnp.arange(3))
    with pytest.raises(CheckInputError, match=r"inputs\[0\] has dtype int64.*astype"):
        gk.gradcheck(lambda a: float(a.sum()), np.arange(3), grad=lambda a: (np.ones(3),))
    with pytest.raises(CheckInputError, match=r"inputs\[0\] has dtype bool"):
        gk.gradcheck(lambda a: float(a.sum()), np.ones(3, bool), grad=lambda a: (np.ones(3),))


def test_complex_inputs_and_outputs_are_checked_for_torch_and_clear_errors_elsewhere():
    # torch: checked through real and imaginary parts, as torch's gradcheck does
    z = torch.randn(3, dtype=torch.complex128, requires_grad=True)
    assert gk.gradcheck(torch.sin, z)
    assert gk.gradcheck(lambda a: a * (1 + 1j), tensor(3))
    with pytest.raises(CheckInputError, match=r"inputs\[0\] is complex.*view_as_real"):
        gk.gradcheck(lambda a: a.abs().sum(), z, grad=lambda a: (a,))
    # jax: likewise, with jax's convention inside
    assert gk.gradcheck(jnp.sin, jnp.ones(3) * (1 + 1j))
    with pytest.raises(CheckInputError, match=r"inputs\[0\] is complex"):
        gk.gradcheck(lambda a: 0.0, np.ones(3) * 1j, grad=lambda a: (a,))


def test_complex_input_that_does_not_require_grad_is_a_constant():
    c = torch.randn(4, dtype=torch.complex128)
    fn = lambda a, z: a.sin() * z.real + a * z.imag  # noqa: E731
    assert verdict(fn, (tensor(4), c)).passed
    buggy = lambda a, z: sin_op(0.99)(a) * z.real + a * z.imag  # noqa: E731
    assert not verdict(buggy, (tensor(4), c))


# -- empty tensors, zero-size dimensions, scalars -------------------------------------------


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4, 2)], ids=str)
@pytest.mark.parametrize("mode", ["auto", "full"])
def test_empty_inputs_and_zero_size_dimensions(shape, mode):
    x = tensor(*shape)
    for fn in (torch.sin, lambda a: a.sum(), lambda a: a.sum(-1) + 1.0):
        report = verdict(fn, x, mode=mode)
        assert report.passed, str(report)
    # An empty input must not mask a bug in a non-empty one beside it.
    y = tensor(4, seed=1)
    report = verdict(lambda a, b: a.sum() + sin_op(1.05)(b), (x, y), mode=mode)
    assert not report
    assert {c.input for c in report.failures} == {"inputs[1]"}


def test_zero_dimensional_tensors():
    x = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    assert verdict(torch.sin, x, mode="full").passed
    report = verdict(sin_op(1.01), x)
    assert not report and report.failures[0].input == "inputs[0]"


# -- non-contiguous and expanded inputs -----------------------------------------------------


def noncontiguous_inputs():
    base = tensor(6, 8)
    transposed = base.detach().t().requires_grad_(True)
    strided = base.detach()[::2, 1::3].requires_grad_(True)
    expanded = tensor(1, 5, seed=3).detach().expand(4, 5).requires_grad_(True)
    assert expanded.stride()[0] == 0 and not transposed.is_contiguous()
    return {"transposed": transposed, "strided": strided, "expanded_stride0": expanded}


@pytest.mark.parametrize("kind", ["transposed", "strided", "expanded_stride0"])
def test_noncontiguous_and_stride_zero_inputs_get_correct_verdicts(kind):
    x = noncontiguous_inputs()[kind]
    stride = x.stride()

    def correct(a):
        return (a * a.cos()).cumsum(-1)

    def buggy(a):
        return (a * sin_op(1.02)(a + 1.0)).cumsum(-1)

    assert verdict(correct, x).passed
    report = verdict(buggy, x)
    assert not report
    # The report localises to an element of the input's own shape.
    worst = report.failures[0].worst
    assert worst and len(worst[0].input_index) == x.dim()
    assert all(0 <= i < n for i, n in zip(worst[0].input_index, x.shape))
    assert x.stride() == stride


# -- inputs that do not require grad --------------------------------------------------------


def product_with_wrong_b_gradient():
    return product(b_factor=1.1)  # the gradient for b is wrong


def test_only_inputs_that_require_grad_are_checked():
    a = tensor(5)
    b = tensor(5, seed=1, requires_grad=False)
    mul = product_with_wrong_b_gradient()
    report = verdict(mul, (a, b))
    assert report.passed  # b's gradient is never asked for
    assert {c.input for c in report.comparisons} == {"inputs[0]"}
    b.requires_grad_(True)
    report = verdict(mul, (a, b))
    assert not report
    assert {c.input for c in report.failures} == {"inputs[1]"}


def test_no_input_requiring_grad_is_a_clear_error():
    with pytest.raises(CheckInputError, match=r"no input requires grad.*requires_grad_\(\)"):
        gk.gradcheck(torch.mul, (tensor(3, requires_grad=False), tensor(3, requires_grad=False)))
    with pytest.raises(CheckInputError, match="no input requires grad"):
        gk.gradcheck(lambda a, s: a * s, (tensor(3, requires_grad=False), 2.0))


def test_gradgradcheck_with_no_input_requiring_grad_says_so():
    with pytest.raises(CheckInputError, match="no input requires grad"):
        gk.gradgradcheck(torch.sin, tensor(3, requires_grad=False))


# -- NaN and Inf ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs_are_named_with_their_index(bad):
    x = tensor(2, 3).detach()
    x[1, 2] = bad
    x.requires_grad_(True)
    with pytest.raises(CheckInputError, match=r"inputs\[0\] holds a non-finite.*\[1, 2\]"):
        gk.gradcheck(torch.sin, x)
    with pytest.raises(CheckInputError, match=r"inputs\[0\].*non-finite.*\[1, 2\]"):
        gk.gradcheck(jnp.sin, jnp.asarray(x.detach().numpy()))
    with pytest.raises(CheckInputError, match=r"inputs\[0\].*non-finite"):
        gk.gradcheck(
            lambda a: float(np.sum(a)), x.detach().numpy(), grad=lambda a: (np.ones_like(a),)
        )


def test_non_finite_outputs_are_named_with_their_index():
    x = torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64, requires_grad=True)
    with pytest.raises(CheckInputError, match=r"output is non-finite \(-inf\) at index \[1\]"):
        gk.gradcheck(torch.log, x)
    with pytest.raises(CheckInputError, match=r"outputs\[1\] is non-finite \(nan\)"):
        gk.gradcheck(lambda a: (a.sin(), a * float("nan")), x)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("mode", ["auto", "fast", "full"])
def test_non_finite_gradient_fails_and_reports_cleanly(bad, dtype, mode):
    # A finite forward with a NaN/Inf backward must fail, never pass or crash.
    def broken(x):
        return torch.where(x == x, x * 0 + bad, x)

    op = scaled(lambda x: 2.0 * x, broken, 1.0)
    with np.errstate(all="ignore"):
        report = verdict(op, tensor(5, dtype=dtype), mode=mode)
    assert not report
    assert report.failures and all(c.input == "inputs[0]" for c in report.failures)


@pytest.mark.parametrize(
    "fn, point",
    [(torch.sqrt, 0.0), (torch.sqrt, 1e-300), (torch.acos, 1.0)],
    ids=["sqrt_at_0", "sqrt_at_1e-300", "acos_at_1"],
)
def test_input_at_the_edge_of_the_domain(fn, point):
    x = torch.tensor([point, 0.5], dtype=torch.float64, requires_grad=True)
    try:
        report = verdict(fn, x)
    except CheckInputError as exc:
        assert "inputs[0]" in str(exc)
    else:
        assert report.comparisons


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "fn", [lambda a: (a - 1.0) * 2.0, torch.log], ids=["affine", "log"]
)
def test_single_element_input_with_zero_output(fn, dtype):
    x = torch.tensor(1.0, dtype=dtype, requires_grad=True)
    for seed in range(40):
        report = verdict(fn, x, seed=seed)
        assert report.passed, f"seed={seed}:\n{report}"


def test_zero_size_input_has_nothing_to_compare():
    x = tensor(0)
    assert verdict(lambda a: a.sum().sqrt(), x).passed


# -- functions returning the wrong things ----------------------------------------------------


@pytest.mark.parametrize(
    "returned, named",
    [
        (lambda a: None, "NoneType"),
        (lambda a: 1.5, "float"),
        (lambda a: [a * 2, "label"], "str"),
        (lambda a: (a * 2, None), "NoneType"),
        (lambda a: {"y": a}, "dict"),
    ],
    ids=["None", "float", "list_with_str", "tuple_with_None", "dict"],
)
def test_functions_returning_non_tensors_are_clear_errors(returned, named):
    with pytest.raises(CheckInputError) as info:
        gk.gradcheck(returned, tensor(3))
    message = str(info.value)
    assert named in message and "tensor" in message


def test_functions_returning_nothing_differentiable_are_clear_errors():
    with pytest.raises(CheckInputError, match="no floating-point tensor"):
        gk.gradcheck(lambda a: (a > 0), tensor(3))
    with pytest.raises(CheckInputError, match="no floating-point array"):
        gk.gradcheck(lambda a: None, jnp.ones(3))
    with pytest.raises(CheckInputError, match="not a number"):
        gk.gradcheck(lambda a: "loss", np.ones(3), grad=lambda a: (a,))
    with pytest.raises(CheckInputError, match=r"returned shape \(3,\).*scalar"):
        gk.gradcheck(lambda a: a * 2, np.ones(3), grad=lambda a: (a,))


@pytest.mark.parametrize(
    "fn, inputs, named",
    [
        pytest.param(42, lambda: tensor(3), "callable", id="torch_not_callable"),
        pytest.param(42, lambda: jnp.ones(3), "callable", id="jax_not_callable"),
        pytest.param(lambda a: None, lambda: tensor(3), "NoneType", id="torch_None"),
        pytest.param(lambda a: 1.5, lambda: tensor(3), "float", id="torch_float"),
        pytest.param(lambda a: [jnp.sin(a), "label"], lambda: jnp.ones(3), "str", id="jax_str"),
        pytest.param(lambda a: (a > 0), lambda: tensor(3), "floating", id="torch_bool_output"),
    ],
)
def test_gradgradcheck_validates_fn_and_its_outputs(fn, inputs, named):
    with pytest.raises(CheckInputError) as info:
        gk.gradgradcheck(fn, inputs())
    assert named in str(info.value)


@pytest.mark.parametrize("fn", [lambda a: 1.5, lambda a: (jnp.sin(a), 2.0)], ids=["float", "tuple_with_float"])
def test_jax_function_returning_a_python_float(fn):
    try:
        report = gk.gradcheck(fn, jnp.linspace(0.1, 1.0, 3))
    except CheckInputError as exc:
        assert "AttributeError" not in str(exc) and "backward" not in str(exc), str(exc)
    else:
        assert report.passed


def test_numpy_function_returning_a_list_is_named():
    with pytest.raises(CheckInputError) as info:
        gk.gradcheck(lambda a: [a, "label"], np.ones(3), grad=lambda a: (a,))
    assert "list" in str(info.value) and "scalar" in str(info.value)
    assert "fn raised" not in str(info.value)


class ShapeChangesOnCall:
    def __init__(self, call: int, *, count: bool = False) -> None:
        self.call, self.count, self.calls = call, count, 0

    def __call__(self, a):
        self.calls += 1
        if self.calls < self.call:
            return a.sin() if not self.count else (a.sin(), a.cos())
        return a[:-1].sin() if not self.count else (a.sin(),)


@pytest.mark.parametrize("call", [2, 3, 7])
@pytest.mark.parametrize("count", [False, True], ids=["shape", "count"])
def test_outputs_changing_shape_or_count_between_calls_are_clear_errors(call, count):
    with pytest.raises(CheckInputError, match="on one call and .* on another"):
        gk.gradcheck(ShapeChangesOnCall(call, count=count), tensor(5))


def test_output_shape_depending_on_the_input_values_is_a_clear_error():
    x = torch.tensor([1.0, -1.0, 1e-12], dtype=torch.float64, requires_grad=True)
    with pytest.raises(CheckInputError, match="shapes"):
        gk.gradcheck(lambda a: a[a > 0] * 2, x)


# -- stochastic and nondeterministic functions --------------------------------------------


def test_stochastic_forward_is_flagged_and_still_checked():
    x = tensor(40)

    def correct(a):
        return torch.nn.functional.dropout(a.sin(), 0.5, training=True) * 2

    def buggy(a):
        return torch.nn.functional.dropout(sin_op(1.01)(a), 0.5, training=True) * 2

    report = verdict(correct, x)
    assert report.passed
    assert any("stochastic" in n for n in report.notes)
    report = verdict(buggy, x)
    assert not report
    assert any("stochastic" in n for n in report.notes)
    assert report.failures[0].input == "inputs[0]"


def test_stochastic_forward_through_numpy_and_random_is_flagged():
    import random

    x = tensor(6)
    noisy = lambda a: a * (1.0 + np.random.rand() + random.random())  # noqa: E731
    report = verdict(noisy, x)
    assert report.passed and any("stochastic" in n for n in report.notes)


@pytest.mark.parametrize(
    "source",
    [
        # Values that never repeat between two calls (a repeat would look deterministic).
        lambda: 1 + (time.perf_counter_ns() % 10**9) / 10**9,
        lambda: 1 + int.from_bytes(os.urandom(8), "little") / 2**64,
        lambda: float(torch.rand(1, generator=_PRIVATE_GENERATOR)) + 1,
    ],
    ids=["time", "urandom", "private_generator"],
)
def test_truly_nondeterministic_forward_is_a_clear_error(source):
    with pytest.raises(CheckInputError, match="different values for the same input.*deterministic"):
        gk.gradcheck(lambda a: a * float(source()), tensor(4))


_PRIVATE_GENERATOR = torch.Generator().manual_seed(0)


def test_nondeterministic_backward_fails_and_is_named():
    class Noisy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            # Nondeterministic like an atomic-add kernel: a relative change of about 1e-9,
            # different on every call (64 random bits, so never twice the same).
            return g * 2 * (1 + 1e-9 * (1 + int.from_bytes(os.urandom(8), "little") / 2**64))

    report = verdict(Noisy.apply, tensor(5))
    assert not report
    failed = [c for c in report.failures if "determinism" in c.check]
    assert failed and failed[0].input == "inputs[0]"
    assert any("nondeterministic" in n for n in failed[0].notes)
    assert "determinism" in str(report)


# -- huge inputs -------------------------------------------------------------------------------


def _cost(fn, n: int, dtype=torch.float64) -> tuple[tuple[int, int, int], int]:
    x = torch.linspace(-2.0, 2.0, n, dtype=dtype).requires_grad_(True)
    tracemalloc.start()
    try:
        report = gk.gradcheck(fn, x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.passed
    return (report.function_evals, report.backward_evals, report.forward_evals), peak


@pytest.mark.parametrize(
    "fn", [torch.sin, lambda a: (a * a.tanh()).sum()], ids=["elementwise", "reduction"]
)
def test_default_mode_cost_is_constant_in_size_and_memory_is_linear(fn):
    small, _ = _cost(fn, 10)
    mid, mid_peak = _cost(fn, 50_000)
    big, big_peak = _cost(fn, 500_000)
    assert small == mid == big, "evaluations must not grow with the input size"
    assert big[0] <= 40
    # Memory traced through numpy (the engine's own arrays). The finite-difference oracle
    # keeps its Richardson tables (3 schemes x 3 levels of output-sized arrays) plus
    # the base point, probes and gradients: a few dozen copies of input plus output at
    # most. A dense Jacobian or per-element evaluations would be n times that.
    copies = big_peak / (8 * 2 * 500_000)
    assert copies < 64, f"peak memory is {copies:.1f} copies of input and output"
    assert big_peak < 12 * mid_peak, "memory must grow linearly with the input size"


@pytest.mark.slow
def test_ten_million_elements_stay_constant_cost():
    # A scalar loss keeps the outputs small, so this measures the input side at 10^7.
    small, _ = _cost(lambda a: (a * a.sin()).sum(), 10, dtype=torch.float32)
    big, peak = _cost(lambda a: (a * a.sin()).sum(), 10_000_000, dtype=torch.float32)
    assert small == big
    assert peak < 32 * 8 * 10_000_000  # a bounded number of float64 copies of the input


# -- arguments ---------------------------------------------------------------------------------


BAD_OPTIONS = [
    ({"not_an_option": 1}, TypeError, r"unexpected keyword argument\(s\) \['not_an_option'\]. Accepted"),
    ({"mode": "slow"}, ValueError, r"mode='slow' is not a mode; use one of \['auto', 'fast', 'full'\]"),
    ({"mode": None}, ValueError, "mode=None is not a mode"),
    ({"atol": -1}, ValueError, "atol=-1 is invalid: it must be a non-negative number"),
    ({"rtol": float("nan")}, ValueError, "rtol=nan is invalid"),
    ({"atol": "1e-3"}, ValueError, "atol='1e-3' is invalid"),
    ({"seed": 1.5}, TypeError, "seed=1.5 must be an int"),
    ({"seed": True}, TypeError, "seed=True must be an int"),
    ({"raise_exception": "yes"}, TypeError, "raise_exception='yes' must be True or False"),
    ({"eps": 0}, ValueError, "eps=0 is invalid: a finite-difference step must be positive"),
    ({"eps": -1e-6}, ValueError, "eps=-1e-06 is invalid"),
    ({"seed": -1}, (TypeError, ValueError), "seed=-1"),
]


def _bad_option_cases():
    for check in (gk.gradcheck, gk.gradgradcheck):
        for options, error, pattern in BAD_OPTIONS:
            yield pytest.param(check, options, error, pattern, id=f"{check.__name__}-{options}")


@pytest.mark.parametrize("check, options, error, pattern", list(_bad_option_cases()))
def test_bad_options_name_the_argument_reason_and_fix(check, options, error, pattern):
    try:
        check(torch.sin, tensor(3), **options)
    except error as exc:
        assert re.search(pattern, str(exc)), f"{type(exc).__name__}: {exc}"
    else:
        raise AssertionError(f"{check.__name__} accepted {options}")


def test_torch_gradcheck_options_are_accepted():
    options = dict(
        eps=1e-6, atol=1e-5, rtol=1e-3, nondet_tol=0.0, check_undefined_grad=True,
        check_grad_dtypes=False, check_batched_grad=False, check_batched_forward_grad=False,
        check_forward_ad=False, check_backward_ad=True, fast_mode=False, masked=None,
    )
    assert gk.gradcheck(torch.sin, (tensor(3),), **options)
    assert not gk.gradcheck(sin_op(1.1), (tensor(3),), raise_exception=False, **options)


@pytest.mark.parametrize("fn", [3, None, "torch.sin", torch.ones(2)], ids=["int", "None", "str", "tensor"])
def test_non_callable_fn_is_a_clear_error(fn):
    with pytest.raises(CheckInputError, match="fn must be callable.*first argument"):
        gk.gradcheck(fn, tensor(3))


def test_non_callable_grad_is_a_clear_error():
    with pytest.raises(CheckInputError, match="grad must be callable"):
        gk.gradcheck(lambda a: float(a.sum()), np.ones(3), grad=np.ones(3))


def test_numpy_without_grad_explains_the_fix():
    with pytest.raises(CheckInputError, match=r"numpy inputs need grad=.*grad=grad_fn"):
        gk.gradcheck(lambda a: float(np.sum(a**2)), np.ones(3))


def test_mixed_frameworks_are_a_clear_error():
    with pytest.raises(CheckInputError, match="mix torch tensors and jax arrays"):
        gk.gradcheck(lambda a, b: a, (tensor(3), jnp.ones(3)))


@pytest.mark.parametrize(
    "grad, pattern",
    [
        (lambda a, b: (2 * a[:2], b), r"grad returned shape \(2,\) for inputs\[0\], whose shape is \(3,\)"),
        (lambda a, b: (2 * a,), r"grad returned 1 gradient\(s\) but the function has 2"),
        (lambda a, b: (2 * a, b, b), r"grad returned 3 gradient\(s\)"),
        (lambda a, b: ((2 * a).astype(int), b), r"grad returned dtype int64 for inputs\[0\].*floating point"),
        (lambda a, b: (2 * a > 0, b), r"grad returned dtype bool for inputs\[0\]"),
        (lambda a, b: (2 * a, b.reshape(1, 3)), r"grad returned shape \(1, 3\) for inputs\[1\]"),
        (lambda a, b: None, r"grad returned 1 gradient\(s\)|grad returned shape \(\)"),
    ],
    ids=["shape", "too_few", "too_many", "int_dtype", "bool_dtype", "second_shape", "None"],
)
def test_wrong_hand_written_gradients_are_clear_errors(grad, pattern):
    a, b = np.linspace(0.5, 1.5, 3), np.linspace(-1.0, 1.0, 3)
    loss = lambda a, b: float(np.sum(a**2) + np.sum(a * b))  # noqa: E731
    assert gk.gradcheck(loss, (a, b), grad=lambda a, b: (2 * a + b, a))
    with pytest.raises(CheckInputError, match=pattern):
        gk.gradcheck(loss, (a, b), grad=grad)


def test_wrong_hand_written_gradient_in_torch_style_is_a_clear_error():
    x = tensor(3)
    loss = lambda a: (a**2).sum()  # noqa: E731
    assert gk.gradcheck(loss, x, grad=lambda a: (2 * a,))
    with pytest.raises(CheckInputError, match=r"grad returned shape \(2,\)"):
        gk.gradcheck(loss, x, grad=lambda a: (2 * a[:2],))


@pytest.mark.parametrize("grad", [None, lambda: ()], ids=["no_grad", "grad"])
@pytest.mark.parametrize("inputs", [(), []], ids=["tuple", "list"])
def test_no_inputs_at_all_is_a_clear_error(inputs, grad):
    with pytest.raises(CheckInputError) as info:
        gk.gradcheck(lambda: 1.0, inputs, grad=grad)
    message = str(info.value)
    assert "inputs" in message and ("empty" in message or "no input" in message)


def test_meta_device_input_is_named():
    x = torch.empty(3, device="meta", dtype=torch.float64, requires_grad=True)
    with pytest.raises(CheckInputError) as info:
        gk.gradcheck(torch.sin, x)
    assert "inputs[0]" in str(info.value) and "meta" in str(info.value)
    assert not str(info.value).startswith("fn raised")


def test_sparse_input_is_checked_and_a_clear_error_with_a_hand_written_grad():
    x = torch.eye(3, dtype=torch.float64).to_sparse().requires_grad_(True)
    # checked as torch checks it: COO's to_dense masks its gradient to the pattern, right
    # under masked semantics and wrong where every element is a variable (torch agrees)
    assert gk.gradcheck(lambda a: a.to_dense().sin(), x, masked=True)
    assert not gk.gradcheck(lambda a: a.to_dense().sin(), x, raise_exception=False)
    with pytest.raises(CheckInputError, match=r"inputs\[0\] has layout torch.sparse_coo.*to_dense"):
        gk.gradcheck(lambda a: a.to_dense().sin().sum(), x, grad=lambda a: (a,))


def test_fn_raising_on_the_given_inputs_is_a_clear_error():
    def needs_two(a, b):
        return a * b

    with pytest.raises(CheckInputError, match="fn raised TypeError.*fix the function or the inputs"):
        gk.gradcheck(needs_two, tensor(3))
