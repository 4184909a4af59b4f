"""gradcheck_kit.gradcheck / gradgradcheck as drop-ins for torch's: the signature, the
exceptions, and each option, judged against torch's own verdict on the same function."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from torch.autograd.gradcheck import GradcheckError

import gradcheck_kit as gk
from gradcheck_kit import GradientMismatch
from anchors import torch_verdict, x64


def kit_verdict(check, fn, inputs, **kw) -> bool:
    """gradcheck_kit's verdict with raise_exception=False; a refusal counts as a failure."""
    try:
        return bool(check(fn, inputs, raise_exception=False, **kw))
    except gk.CheckInputError:
        return False


class Triple(torch.autograd.Function):
    """x -> 2x with a backward that multiplies by 3: wrong."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 3


# -- signature ----------------------------------------------------------------------------


def test_function_by_torchs_keyword_and_by_fn():
    x = x64(3)
    assert gk.gradcheck(func=torch.sin, inputs=(x,))
    assert gk.gradcheck(fn=torch.sin, inputs=x)
    assert gk.gradcheck(torch.sin, inputs=(x,))
    assert gk.gradgradcheck(func=torch.tanh, inputs=(x,))
    assert not gk.gradcheck(func=Triple.apply, inputs=(x,), raise_exception=False)
    with pytest.raises(TypeError, match="twice"):
        gk.gradcheck(torch.sin, (x,), fn=torch.sin)
    with pytest.raises(TypeError, match="'inputs'"):
        gk.gradcheck(torch.sin)
    with pytest.raises(TypeError, match="'func'"):
        gk.gradcheck(inputs=(x,))
    with pytest.raises(TypeError, match="unexpected keyword"):
        gk.gradcheck(torch.sin, (x,), check_everything=True)


def test_gradgradcheck_takes_torchs_arguments():
    x = x64(2, 3)
    v = torch.randn(2, 3, dtype=torch.float64)
    for kw in (
        {"grad_outputs": v},
        {"grad_outputs": (v,)},
        {"gen_non_contig_grad_outputs": True},
        {"check_rev_over_rev": True, "check_fwd_over_rev": True},
    ):
        assert gk.gradgradcheck(torch.tanh, (x,), **kw), kw
        assert torch_verdict(torch.autograd.gradgradcheck, torch.tanh, (x,), **kw), kw
    with pytest.raises(ValueError, match="check_rev_over_rev=False with check_fwd_over_rev"):
        gk.gradgradcheck(torch.tanh, (x,), check_rev_over_rev=False, check_fwd_over_rev=False)
    with pytest.raises(ValueError, match="check_batched_grad=True"):
        gk.gradgradcheck(
            torch.tanh, (x,), check_rev_over_rev=False, check_fwd_over_rev=True,
            check_batched_grad=True,
        )
    with pytest.raises(TypeError, match="check_fwd_over_rev"):
        gk.gradgradcheck(torch.tanh, (x,), check_forward_ad=True)


class NeedsContiguousGradient(torch.autograd.Function):
    """x -> x^2 whose backward, like a kernel written for contiguous memory, refuses a
    strided incoming gradient."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        if not g.is_contiguous():
            raise RuntimeError("the kernel needs a contiguous gradient")
        (x,) = ctx.saved_tensors
        return g * 2 * x


def test_non_contiguous_grad_outputs_reach_the_backward_as_torchs_do():
    x = x64(3, 4)
    for non_contig in (False, True):
        expected = torch_verdict(
            torch.autograd.gradgradcheck, NeedsContiguousGradient.apply, (x,),
            gen_non_contig_grad_outputs=non_contig,
        )
        assert expected is not non_contig  # the defect shows with strided gradients only
        got = kit_verdict(
            gk.gradgradcheck, NeedsContiguousGradient.apply, (x,),
            gen_non_contig_grad_outputs=non_contig,
        )
        assert got is expected


# -- verdicts and exceptions ------------------------------------------------------------------


def test_report_reads_as_torchs_boolean():
    x = x64(3)
    good = gk.gradcheck(torch.sin, (x,), raise_exception=False)
    bad = gk.gradcheck(Triple.apply, (x,), raise_exception=False)
    assert good == True and bad == False  # noqa: E712 (torch suites compare with ==)
    assert good != False and bad != True  # noqa: E712
    assert not bad and good
    assert good == gk.gradcheck(torch.sin, (x,), raise_exception=False) or good.elapsed_s


@pytest.mark.parametrize("clause", [GradcheckError, RuntimeError, AssertionError, GradientMismatch])
def test_a_failing_torch_check_is_caught_where_torch_users_catch(clause):
    x = x64(3)
    with pytest.raises(clause) as info:
        gk.gradcheck(Triple.apply, (x,))
    assert isinstance(info.value, GradientMismatch)
    assert type(info.value).__name__ == "GradientMismatch"
    assert type(info.value).__module__ == "gradcheck_kit"
    assert "FAILED" in str(info.value) and not info.value.report
    with pytest.raises(clause):
        gk.gradgradcheck(lambda t: Triple.apply(t) * t, (x,))


def test_the_torch_mismatch_pickles_to_the_same_class():
    x = x64(3)
    with pytest.raises(GradientMismatch) as info:
        gk.gradcheck(Triple.apply, (x,))
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is type(info.value)
    assert isinstance(again, GradcheckError)
    assert again.report.comparisons == info.value.report.comparisons


def test_jax_and_numpy_failures_stay_plain_gradient_mismatches():
    import numpy as np

    w = np.array([0.5, -1.0, 2.0])
    with pytest.raises(GradientMismatch) as info:
        gk.gradcheck(lambda v: float(np.sum(v**3)), (w,), grad=lambda v: (2 * v**2,))
    assert type(info.value) is GradientMismatch
    assert not isinstance(info.value, RuntimeError)
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is GradientMismatch


# -- each torch option, against torch's verdict --------------------------------------------------

from custom_functions import unary_function  # noqa: E402
from test_torch_options import (  # noqa: E402
    Double,
    DoubleBatchMixing,
    DoubleNumpyBackward,
    SinCos,
    SinCosNoneCrash,
    SinCosNotZero,
    SinFloat32Grad,
    SinFwd,
    SinFwdNumpy,
)

GC = torch.autograd.gradcheck

# sin with a wrong forward-mode rule (its backward is right), and the other way round.
SinBadJvp = unary_function(torch.sin, torch.cos, jvp_factor=1.5, name="SinBadJvp")
SinNanJvp = unary_function(torch.sin, torch.cos, jvp_factor=math.nan, name="SinNanJvp")
SinBadBackward = unary_function(
    torch.sin, torch.cos, factor=1.5, jvp_factor=1.0, name="SinBadBackward"
)


def structural(report):
    return [c for c in report.comparisons if c.kind is gk.ComparisonKind.STRUCTURAL]


CASES = [
    # (function, options, torch's verdict); each option with a function that is right and
    # one with the defect the option targets, and the option off where torch's verdict changes
    (SinCos, {}, True),
    (SinCosNotZero, {}, False),
    (SinCosNotZero, {"check_undefined_grad": False}, True),
    (SinCosNoneCrash, {}, False),
    (Double, {"check_batched_grad": True}, True),
    (DoubleBatchMixing, {"check_batched_grad": True}, False),
    (DoubleNumpyBackward, {"check_batched_grad": True}, False),
    (DoubleBatchMixing, {}, True),
    (SinFwd, {"check_forward_ad": True, "check_batched_forward_grad": True}, True),
    (SinFwdNumpy, {"check_forward_ad": True, "check_batched_forward_grad": True}, False),
    (SinFwdNumpy, {"check_forward_ad": True}, True),
    (SinBadJvp, {"check_forward_ad": True}, False),
    (SinBadJvp, {}, True),
    (SinNanJvp, {}, True),  # a NaN forward rule is a note unless check_forward_ad=True
    (SinNanJvp, {"check_forward_ad": True}, False),
    (Double, {"check_forward_ad": True}, False),  # no forward-mode rule at all
    (SinFwd, {"check_forward_ad": True, "check_backward_ad": False}, True),
    (SinBadJvp, {"check_forward_ad": True, "check_backward_ad": False}, False),
    (SinBadBackward, {"check_forward_ad": True, "check_backward_ad": False}, True),
    (SinBadBackward, {"check_forward_ad": True}, False),
    (SinFwd, {"check_grad_dtypes": True, "check_forward_ad": True}, True),
]


@pytest.mark.parametrize(
    "function, options, expected", CASES,
    ids=[
        f"{f.__name__}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'defaults'}"
        for f, o, _ in CASES
    ],
)
def test_each_option_gives_torchs_verdict(function, options, expected):
    x = x64(5)
    assert torch_verdict(GC, function.apply, (x,), **options) is expected
    assert kit_verdict(gk.gradcheck, function.apply, (x,), **options) is expected


def test_a_wrong_gradient_dtype_is_caught_where_torch_casts_it_away():
    x = x64(4)
    # torch's engine casts the float32 gradient to float64 before its check sees it
    assert torch_verdict(GC, SinFloat32Grad.apply, (x,), check_grad_dtypes=True)
    report = gk.gradcheck(SinFloat32Grad.apply, (x,), check_grad_dtypes=True, raise_exception=False)
    assert not report
    [bad] = [c for c in report.failures if c.kind is gk.ComparisonKind.STRUCTURAL]
    assert bad.check == "gradient dtype/device/shape/layout"
    assert "SinFloat32Grad.backward returns a torch.float32" in str(report)
    # without the option the dtype is not checked (the finite differences still see the
    # float32 rounding in the values)
    off = gk.gradcheck(SinFloat32Grad.apply, (x,), raise_exception=False)
    assert all(c.passed for c in structural(off))


def test_failing_options_are_failed_comparisons_that_name_the_input():
    x, y = x64(3), x64(3, seed=1)
    fn = lambda a, b: DoubleBatchMixing.apply(a) * b  # noqa: E731
    report = gk.gradcheck(fn, (x, y), check_batched_grad=True, raise_exception=False)
    assert report.status == "failed"
    bad = [c for c in report.failures if c.check == "batched backward (vmap) vs loop"]
    assert [c.input for c in bad] == ["inputs[0]"]  # inputs[1]'s batched gradient is right
    text = str(report)
    assert "[FAIL] batched backward (vmap) vs loop: inputs[0]" in text
    entries = report.to_dict()["comparisons"]
    assert any(e["kind"] == "structural" and e["status"] == "failed" for e in entries)
    with pytest.raises(GradcheckError, match="batched backward"):
        gk.gradcheck(fn, (x, y), check_batched_grad=True)


TORCH_DEFAULT_CHECKS = {
    "zero output gradients give zero input gradients",
    "gradient dtype/device/shape/layout",
    "undefined output gradients",
}


def test_options_left_at_default_run_torchs_default_checks_only():
    x = x64(4)
    checks = {c.check for c in structural(gk.gradcheck(SinFwd.apply, (x,), raise_exception=False))}
    assert checks == TORCH_DEFAULT_CHECKS
    every = gk.gradcheck(
        SinFwd.apply, (x,), check_batched_grad=True, check_forward_ad=True,
        check_batched_forward_grad=True, check_grad_dtypes=True, raise_exception=False,
    )
    assert every and {
        "batched backward (vmap) vs loop", "batched forward mode (vmap) vs loop",
        "forward-mode tangent dtype",
    } <= {c.check for c in structural(every)}


def test_torchs_default_checks_of_torchs_own_rules_run_only_when_asked_for():
    # They test how a derivative rule treats undefined and zero output gradients: with
    # torch's own rules only, torch itself; a named option runs them as torch would.
    x = x64(4)
    report = gk.gradcheck(torch.sin, (x,), raise_exception=False)
    assert report and not structural(report)
    assert any("structural checks of the backward" in n for n in report.notes), report.notes
    asked = gk.gradcheck(torch.sin, (x,), check_undefined_grad=True, raise_exception=False)
    assert {c.check for c in structural(asked)} == TORCH_DEFAULT_CHECKS


def test_forward_mode_only_never_calls_the_backward():
    class NoBackward(SinFwd):
        @staticmethod
        def backward(ctx, g):
            raise NotImplementedError("no backward")

    x = x64(6)
    options = {"check_forward_ad": True, "check_backward_ad": False, "check_undefined_grad": False}
    assert torch_verdict(GC, NoBackward.apply, (x,), **options)
    report = gk.gradcheck(NoBackward.apply, (x,), raise_exception=False, **options)
    assert report and report.backward_evals == 0 and report.forward_evals >= x.numel()
    fd = [c for c in report.comparisons if c.kind is gk.ComparisonKind.FINITE_DIFFERENCES]
    assert fd and all(c.check.startswith("forward mode vs finite differences") for c in fd)
    # the wrong jvp fails, localised to the element as a backward would be
    wrong = unary_function(torch.sin, torch.cos, factor=1.0, jvp_factor=1.0, name="W")

    class OneElement(wrong):
        @staticmethod
        def jvp(ctx, t):
            (x,) = ctx.saved_tensors
            out = t * x.cos()
            return out + (torch.arange(out.numel()).reshape(out.shape) == 2) * t * 0.01

    report = gk.gradcheck(OneElement.apply, (x,), raise_exception=False, **options)
    assert not report
    assert any(e.input_index == (2,) for c in report.failures for e in c.worst)


def test_gradgradcheck_forward_over_reverse_only():
    x = x64(4)
    kw = {"check_rev_over_rev": False, "check_fwd_over_rev": True}
    # torch refuses its own default check_undefined_grad=True here; gradcheck_kit turns it off
    assert not torch_verdict(torch.autograd.gradgradcheck, torch.tanh, (x,), **kw)
    assert gk.gradgradcheck(torch.tanh, (x,), **kw)
    kw["check_undefined_grad"] = False
    assert torch_verdict(torch.autograd.gradgradcheck, torch.tanh, (x,), **kw)
    report = gk.gradgradcheck(torch.tanh, (x,), raise_exception=False, **kw)
    assert report and report.backward_evals == 0


def test_fast_mode_and_tolerances_keep_their_meaning():
    x = x64(5)
    assert gk.gradcheck(torch.sin, (x,), fast_mode=True, raise_exception=False).mode == "fast"
    # torch's full Jacobian: the probes, localised on failure (mode="full" only by name)
    slow = gk.gradcheck(torch.sin, (x,), fast_mode=False, raise_exception=False)
    assert slow.mode == "auto" and any("fast_mode=False" in n for n in slow.notes)
    wrong = gk.gradcheck(SinBadBackward.apply, (x,), fast_mode=False, raise_exception=False)
    assert not wrong and any(c.worst for c in wrong.failures)
    assert gk.gradcheck(torch.sin, (x,), raise_exception=False).mode == "auto"
    report = gk.gradcheck(torch.sin, (x,), atol=1e-5, rtol=1e-3, raise_exception=False)
    fd = [c for c in report.comparisons if c.kind is gk.ComparisonKind.FINITE_DIFFERENCES]
    assert fd and all("atol=1e-05, rtol=0.001" in c.tolerance_source for c in fd)
    assert all("replacing the derived" in c.tolerance_source for c in fd)
    eps = gk.gradcheck(torch.sin, (x,), eps=1e-4, raise_exception=False)
    assert eps and any("eps=0.0001" in n for n in eps.notes)


class NoisyBackward(torch.autograd.Function):
    """x -> 2x whose backward varies between calls by 1e-12 relative (as an atomic-add
    reduction does); drawn from a private generator, so every call differs."""

    noise = torch.Generator().manual_seed(1)

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        jitter = torch.rand(g.shape, generator=NoisyBackward.noise, dtype=g.dtype)
        return g * (2 + 1e-12 * jitter)


@pytest.mark.parametrize("nondet_tol, expected", [(0.0, False), (1e-6, True)])
def test_nondet_tol_keeps_torchs_meaning(nondet_tol, expected):
    x = x64(4)
    assert torch_verdict(GC, NoisyBackward.apply, (x,), nondet_tol=nondet_tol) is expected
    assert kit_verdict(gk.gradcheck, NoisyBackward.apply, (x,), nondet_tol=nondet_tol) is expected


def test_torch_only_options_are_named_for_other_frameworks():
    import numpy as np

    w = np.array([0.5, -1.0, 2.0])
    report = gk.gradcheck(
        lambda v: float(np.sum(v**3)), (w,), grad=lambda v: (3 * v**2,),
        check_batched_grad=True, raise_exception=False,
    )
    assert report and any("check_batched_grad" in n and "not run" in n for n in report.notes)


# -- sparse and complex inputs ----------------------------------------------------------------

from test_torch_options import LAYOUTS, SPARSE_FUNCTIONS, _S, square_with, z128  # noqa: E402


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name", list(SPARSE_FUNCTIONS))
def test_sparse_inputs_get_torchs_verdict(name, layout, masked):
    if layout == "bsr" and name == "mm":
        pytest.skip("torch's CPU BSR matmul refuses non-square blocks")
    x = LAYOUTS[layout](_S).requires_grad_()
    fn = SPARSE_FUNCTIONS[name]
    expected = torch_verdict(GC, fn, (x,), masked=masked)
    assert kit_verdict(gk.gradcheck, fn, (x,), masked=masked) is expected


def test_sparse_reports_name_the_specified_values():
    x = _S.to_sparse_csr().requires_grad_()
    report = gk.gradcheck(lambda s: s.to_dense() ** 2, (x,), masked=True, raise_exception=False)
    assert report
    assert any(c.input == "inputs[0] (sparse_csr, 5 specified values)" for c in report.comparisons)
    bad = gk.gradcheck(
        lambda s: s.to_dense(masked_grad=False), (x,), masked=True, raise_exception=False,
    )
    [off] = bad.failures
    assert off.check == "masked gradient off the specified elements" and off.input == "inputs[0]"


@pytest.mark.parametrize("conjugate", [True, False])
def test_a_wrong_conjugate_fails_as_in_torch(conjugate):
    fn, z = square_with(conjugate), z128(3)
    expected = torch_verdict(GC, fn, (z,))
    assert expected is conjugate
    report = gk.gradcheck(fn, (z,), raise_exception=False)
    assert bool(report) is expected
    if not conjugate:
        assert {c.input for c in report.failures} <= {"inputs[0].real", "inputs[0].imag"}
        assert {c.output for c in report.failures} <= {"output.real", "output.imag"}
        assert report.failures[0].worst  # localised to the element


@pytest.mark.parametrize(
    "fn, make",
    [
        (lambda z: (z.abs() ** 2).sum(), lambda: (z128(4),)),  # complex -> real
        (lambda x: x * (1 + 2j), lambda: (x64(3),)),  # real -> complex
        (lambda z, w: (z * w.conj()).exp(), lambda: (z128(2), z128(2, seed=1))),
        (lambda z, x: torch.sin(z) * x, lambda: (z128(3), x64(3))),  # mixed
    ],
    ids=["C->R", "R->C", "C->C", "mixed"],
)
@pytest.mark.parametrize("options", [{}, {"check_forward_ad": True}, {"check_batched_grad": True}])
def test_complex_functions_pass_as_in_torch(fn, make, options):
    inputs = make()
    assert torch_verdict(GC, fn, inputs, **options)
    assert gk.gradcheck(fn, inputs, raise_exception=False, **options)


def test_complex64_is_checked_in_complex128_when_generic():
    z = torch.randn(4, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    z.requires_grad_()
    report = gk.gradcheck(lambda a: a.exp() * a.conj(), (z,), raise_exception=False)
    assert report and report.promoted
    bad = gk.gradcheck(square_with(False), (z,), raise_exception=False)
    assert not bad


# -- modules: inputs and parameters (check_module) ---------------------------------------------


class ScaleWrongWeightGrad(torch.autograd.Function):
    """y = x * w with the right input gradient and a weight gradient off by 10%."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g * w, 1.1 * (g * x).sum(0)


class Scaled(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.linspace(0.5, 1.5, n, dtype=torch.float64))

    def forward(self, x):
        return ScaleWrongWeightGrad.apply(x, self.weight)


def test_check_module_finds_a_parameter_gradient_torch_cannot_see_and_runs_the_options():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4).double(), torch.nn.Tanh())
    net.add_module("encoder", torch.nn.Sequential(Scaled(4)))
    x = x64(5, 3)
    # torch checks the input only, where the gradient is right; so does gradcheck(net, x)
    assert torch_verdict(GC, net, (x,))
    assert gk.gradcheck(net, (x,))
    report = gk.check_module(net, (x,), check_batched_grad=True, raise_exception=False)
    assert not report
    assert {c.input for c in report.failures} == {"encoder.0.weight"}
    batched = [c for c in structural(report) if c.check == "batched backward (vmap) vs loop"]
    assert {"inputs[0]", "0.weight", "encoder.0.weight"} <= {c.input for c in batched}
    assert net.encoder[0].weight.grad is None


# -- jax complex functions, against jax's own check ---------------------------------------------


def jax_square(conjugate: bool):
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def square(z):
        return z * z

    def fwd(z):
        return z * z, z

    def bwd(z, g):
        # jax's convention: vjp of a holomorphic f is c -> c f'(z), with no conjugate
        return (g * jnp.conj(2 * z) if conjugate else g * 2 * z,)

    square.defvjp(fwd, bwd)
    return square


def jax_verdict(fn, inputs) -> bool:
    from jax.test_util import check_grads

    try:
        check_grads(fn, inputs, order=1, modes=["rev"])
        return True
    except AssertionError:
        return False


@pytest.mark.parametrize("conjugate", [False, True])
def test_jax_complex_functions_follow_jaxs_convention(conjugate):
    jnp = pytest.importorskip("jax.numpy")
    import jax

    with jax.enable_x64(True) if hasattr(jax, "enable_x64") else jax.experimental.enable_x64():
        z = jnp.array([1 + 2j, -0.5 + 0.3j, 0.7 - 1.1j])
        fn = jax_square(conjugate)
        expected = jax_verdict(fn, (z,))
        assert expected is not conjugate
        report = gk.gradcheck(fn, (z,), raise_exception=False)
        assert bool(report) is expected
        if conjugate:
            assert {c.input for c in report.failures} <= {"inputs[0].real", "inputs[0].imag"}
        for f, args in (
            (lambda a: jnp.abs(a) ** 2, (z,)),  # complex -> real
            (lambda x: x * (1 + 2j), (jnp.array([0.3, 1.0]),)),  # real -> complex
            (lambda a, b: jnp.exp(a * jnp.conj(b)), (z, z[::-1])),
        ):
            assert jax_verdict(f, args)
            assert gk.gradcheck(f, args, raise_exception=False)


def complex_cube(detach: bool):
    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return z**3

        @staticmethod
        def backward(ctx, g):
            (z,) = ctx.saved_tensors
            w = z.detach() if detach else z  # detached: first order right, second lost
            return g * (3 * w**2).conj()

    return Cube.apply


@pytest.mark.parametrize("detach", [False, True])
def test_gradgradcheck_of_complex_functions_agrees_with_torch(detach):
    z = z128(3)
    fn = complex_cube(detach)
    assert gk.gradcheck(fn, (z,))
    expected = torch_verdict(torch.autograd.gradgradcheck, fn, (z,))
    assert expected is not detach
    assert kit_verdict(gk.gradgradcheck, fn, (z,)) is expected
    x = x64(3)
    real_to_complex = lambda a: a * (1 + 2j) * a  # noqa: E731
    assert torch_verdict(torch.autograd.gradgradcheck, real_to_complex, (x,))
    assert gk.gradgradcheck(real_to_complex, (x,))
