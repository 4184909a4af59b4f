"""torch.autograd.gradcheck's options: each check passes a correct function and fails a
broken one, with torch's own verdict on the same inputs as the reference."""

from __future__ import annotations


import pytest
import torch
from torch.autograd.gradcheck import GradcheckError

import gradcheck_kit as gk
from gradcheck_kit import GradientMismatch
from gradcheck_kit._exceptions import mismatch_class_for
from gradcheck_kit._targets import torch_options as to
from anchors import torch_verdict, x64
from custom_functions import unary_function

GC = torch.autograd.gradcheck


def passed(comparisons) -> bool:
    return all(c.passed for c in comparisons)


# -- custom Functions: correct and broken variants ----------------------------------------


class SinCos(torch.autograd.Function):
    """Two outputs, undefined gradients handled (materialize_grads off)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        ctx.set_materialize_grads(False)
        return x.sin(), x.cos()

    @staticmethod
    def backward(ctx, g1, g2):
        (x,) = ctx.saved_tensors
        out = torch.zeros_like(x)
        if g1 is not None:
            out = out + g1 * x.cos()
        if g2 is not None:
            out = out - g2 * x.sin()
        return out


class SinCosNoneCrash(SinCos):
    """The same backward without the None tests: crashes on an undefined gradient."""

    @staticmethod
    def backward(ctx, g1, g2):
        (x,) = ctx.saved_tensors
        return g1 * x.cos() - g2 * x.sin()


class SinCosNotZero(SinCos):
    """Returns a nonzero gradient when all output gradients are undefined."""

    @staticmethod
    def backward(ctx, g1, g2):
        (x,) = ctx.saved_tensors
        if g1 is None and g2 is None:
            return torch.ones_like(x)
        g1 = torch.zeros_like(x) if g1 is None else g1
        g2 = torch.zeros_like(x) if g2 is None else g2
        return g1 * x.cos() - g2 * x.sin()


class Double(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2


class DoubleNumpyBackward(Double):
    """A correct backward that vmap cannot run (it leaves torch for numpy)."""

    @staticmethod
    def backward(ctx, g):
        return torch.from_numpy(g.detach().numpy() * 2)


class DoubleBatchMixing(Double):
    """Right for one cotangent, wrong under vmap: it sums over the batch it cannot see."""

    @staticmethod
    def backward(ctx, g):
        functorch = torch._C._functorch
        if functorch.is_batchedtensor(g) or functorch.is_legacy_batchedtensor(g):
            return g * 2 + 1.0
        return g * 2


# Computes the gradient in float32 for a float64 input (torch casts it silently).
SinFloat32Grad = unary_function(torch.sin, torch.cos, cast=torch.float32, name="SinFloat32Grad")

# sin with a forward-mode rule.
SinFwd = unary_function(torch.sin, torch.cos, jvp_factor=1.0, name="SinFwd")


class SinFwdNumpy(SinFwd):
    """The same jvp computed through numpy: right alone, impossible under vmap."""

    @staticmethod
    def jvp(ctx, t):
        (x,) = ctx.saved_tensors
        return torch.from_numpy(t.detach().numpy()) * x.cos()


# -- exceptions ---------------------------------------------------------------------------


def test_torch_mismatch_is_caught_by_every_except_clause():
    cls = mismatch_class_for("torch")
    assert cls is mismatch_class_for("torch")  # one class, so `except` matches every raise
    assert issubclass(cls, GradientMismatch) and issubclass(cls, AssertionError)
    report = gk.gradcheck(
        lambda x: x * 3, (x64(3),), raise_exception=False,
    )
    for clause in (GradcheckError, RuntimeError, AssertionError, GradientMismatch):
        with pytest.raises(clause) as info:
            raise cls(report)
        assert info.value.report is report
        assert "gradcheck" in str(info.value)


def test_other_frameworks_keep_the_plain_class():
    assert mismatch_class_for("jax") is GradientMismatch
    assert mismatch_class_for("numpy") is GradientMismatch
    with pytest.raises(ValueError, match="framework='tf'"):
        mismatch_class_for("tf")


# -- undefined output gradients -------------------------------------------------------------


@pytest.mark.parametrize(
    "function, expected",
    [(SinCos, True), (SinCosNoneCrash, False), (SinCosNotZero, False)],
)
def test_undefined_output_gradients_agree_with_torch(function, expected):
    x = x64(4)
    assert torch_verdict(GC, function.apply, (x,)) is expected
    comps = to.undefined_grad_comparisons(function.apply, (x,))
    # all outputs undefined, then each of the two alone
    assert len(comps) == 3
    assert passed(comps) is expected
    if not expected:
        failed = [c for c in comps if not c.passed]
        assert all(c.check == "undefined output gradients" for c in failed)
        assert any("None" in n for c in failed for n in c.notes)


def test_builtin_ops_cope_with_undefined_gradients():
    x = x64(3, 2)
    comps = to.undefined_grad_comparisons(lambda a: (a.exp(), a.sum(0)), (x,))
    assert comps and passed(comps)


def test_zero_cotangents_must_give_zero_gradients():
    class IgnoresGradOutput(Double):
        @staticmethod
        def backward(ctx, g):
            return torch.full_like(g, 2.0)

    x = x64(3)
    assert torch_verdict(GC, IgnoresGradOutput.apply, (x,)) is False
    assert not passed(to.zero_cotangent_comparisons(IgnoresGradOutput.apply, (x,)))
    assert passed(to.zero_cotangent_comparisons(Double.apply, (x,)))


# -- batched gradients ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "function, expected",
    [(Double, True), (DoubleNumpyBackward, False), (DoubleBatchMixing, False)],
)
def test_batched_backward_agrees_with_torch(function, expected):
    x = x64(5)
    assert torch_verdict(GC, function.apply, (x,), check_batched_grad=True) is expected
    comps = to.batched_grad_comparisons(function.apply, (x,), seed=3)
    assert comps and passed(comps) is expected
    if function is DoubleNumpyBackward:
        (c,) = comps
        assert "vmap" in c.notes[0] and "check_batched_grad=False" in c.notes[0]


def test_batched_backward_of_builtin_ops_with_two_inputs():
    a, b = x64(3, 4), x64(4, 2, seed=1)
    comps = to.batched_grad_comparisons(lambda p, q: (p @ q).tanh(), (a, b))
    assert [c.input for c in comps] == ["inputs[0]", "inputs[1]"]
    assert passed(comps)
    assert torch_verdict(GC, lambda p, q: (p @ q).tanh(), (a, b), check_batched_grad=True)


@pytest.mark.parametrize("function, expected", [(SinFwd, True), (SinFwdNumpy, False)])
def test_batched_forward_mode_agrees_with_torch(function, expected):
    x = x64(4)
    kw = dict(check_forward_ad=True, check_batched_forward_grad=True)
    assert torch_verdict(GC, function.apply, (x,), **kw) is expected
    comps = to.batched_forward_grad_comparisons(function.apply, (x,))
    assert comps and passed(comps) is expected


# -- gradient dtypes --------------------------------------------------------------------------


def test_float32_gradient_for_float64_input_is_caught_when_asked():
    x = x64(4)
    # torch casts the float32 gradient to float64 before its check sees it and passes
    assert torch_verdict(GC, SinFloat32Grad.apply, (x,), check_grad_dtypes=True)
    comps = to.grad_attribute_comparisons(SinFloat32Grad.apply, (x,), check_dtype=True)
    bad = [c for c in comps if not c.passed]
    assert len(bad) == 1 and "SinFloat32Grad.backward returns a torch.float32" in bad[0].notes[0]
    # without check_grad_dtypes only what torch always checks is checked
    assert passed(to.grad_attribute_comparisons(SinFloat32Grad.apply, (x,), check_dtype=False))
    assert passed(to.grad_attribute_comparisons(SinFwd.apply, (x,), check_dtype=True))


def test_sparse_gradient_of_the_wrong_layout_fails():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64).to_sparse_csr()
    x.requires_grad_()

    class WrongLayout(torch.autograd.Function):
        @staticmethod
        def forward(ctx, s):
            return s.to_dense() * 2

        @staticmethod
        def backward(ctx, g):
            return (g * 2).to_sparse()  # COO for a CSR input

    assert torch_verdict(GC, WrongLayout.apply, (x,), masked=True) is False
    comps = to.grad_attribute_comparisons(WrongLayout.apply, (x,), check_dtype=False)
    assert not passed(comps) and "layout torch.sparse_coo" in comps[0].notes[0]


# -- option rules and the whole set -----------------------------------------------------------


def test_option_rules_are_torchs():
    with pytest.raises(ValueError, match="check_backward_ad"):
        to.validate_torch_options(
            check_forward_ad=False, check_backward_ad=False, check_batched_grad=False,
            check_batched_forward_grad=False,
        )
    with pytest.raises(ValueError, match="check_batched_grad=True"):
        to.validate_torch_options(
            check_forward_ad=True, check_backward_ad=False, check_batched_grad=True,
            check_batched_forward_grad=False,
        )
    with pytest.raises(ValueError, match="check_batched_forward_grad=True"):
        to.validate_torch_options(
            check_forward_ad=False, check_backward_ad=True, check_batched_grad=False,
            check_batched_forward_grad=True,
        )


def test_option_comparisons_select_by_option():
    x = x64(4)
    checks = {c.check for c in to.option_comparisons(SinFwd.apply, (x,))}
    assert "undefined output gradients" in checks
    assert "batched backward (vmap) vs loop" not in checks
    every = to.option_comparisons(
        SinFwd.apply, (x,), check_batched_grad=True, check_forward_ad=True,
        check_batched_forward_grad=True, check_grad_dtypes=True,
    )
    assert passed(every)
    two = to.option_comparisons(
        lambda p, q: SinFwd.apply(p) * q, (x, x64(4, seed=1)), check_forward_ad=True,
    )
    assert "undefined input tangents" in {c.check for c in two} and passed(two)
    assert {"batched backward (vmap) vs loop", "batched forward mode (vmap) vs loop",
            "gradient dtype/device/shape/layout"} <= {c.check for c in every}
    forward_only = to.option_comparisons(
        SinFwd.apply, (x,), check_forward_ad=True, check_backward_ad=False,
        check_undefined_grad=True,
    )
    # one input: no other tangent to compare with, so torch's check compares nothing either
    assert forward_only == []
    off = to.option_comparisons(SinCosNoneCrash.apply, (x,), check_undefined_grad=False)
    assert passed(off)
    assert not passed(to.option_comparisons(SinCosNoneCrash.apply, (x,)))


def test_checks_leave_the_global_generator_alone():
    x = x64(3)
    state = torch.random.get_rng_state()
    to.option_comparisons(Double.apply, (x,), check_batched_grad=True, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())


def test_forward_jvps_match_reverse_mode():
    a, b = x64(3), x64(3, seed=1)
    fn = lambda p, q: (p * q.exp(), p.sum())  # noqa: E731
    u, w = x64(3, seed=2).detach(), x64(3, seed=3).detach()
    jvp = to.forward_jvps(fn, (a, b), (u, w))
    _, expected = torch.func.jvp(fn, (a.detach(), b.detach()), (u, w))
    assert all(torch.allclose(j, e) for j, e in zip(jvp, expected))
    with pytest.raises(ValueError, match="one tangent per input"):
        to.forward_jvps(fn, (a, b), (u,))


# -- sparse inputs ------------------------------------------------------------------------------

_S = torch.tensor([[1.0, 0, 2], [0, 3, 0], [4, 0, 0], [0, 0, 5]], dtype=torch.float64)
_D = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))

SPARSE_FUNCTIONS = {
    # torch.sparse.mm masks its COO gradient to the input's pattern (masked semantics)
    "mm": lambda s: torch.sparse.mm(s, _D) if s.layout == torch.sparse_coo else s @ _D,
    "to_dense masked grad": lambda s: s.to_dense(masked_grad=True),
    "to_dense full grad": lambda s: s.to_dense(masked_grad=False),
    "square": lambda s: s.to_dense() ** 2,
}
LAYOUTS = {
    "coo": lambda t: t.to_sparse(),
    "csr": lambda t: t.to_sparse_csr(),
    "csc": lambda t: t.to_sparse_csc(),
    "bsr": lambda t: t.to_sparse_bsr((2, 1)),
}


def kit_sparse_verdict(fn, x, masked):
    view = to.sparse_as_dense(fn, (x,), masked=masked)
    report = gk.gradcheck(view.function, view.inputs, raise_exception=False, mode="full")
    off = to.masked_off_pattern_comparisons(fn, (x,)) if masked else []
    return bool(report) and passed(off)


@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name", list(SPARSE_FUNCTIONS))
def test_sparse_verdicts_equal_torchs(name, layout, masked):
    if layout == "bsr" and name == "mm":
        pytest.skip("torch's CPU BSR matmul refuses non-square blocks")
    x = LAYOUTS[layout](_S).requires_grad_()
    fn = SPARSE_FUNCTIONS[name]
    assert kit_sparse_verdict(fn, x, masked) is torch_verdict(GC, fn, (x,), masked=masked)


def test_sparse_stand_ins_hold_specified_or_all_elements():
    x = _S.to_sparse_csr().requires_grad_()
    masked = to.sparse_as_dense(SPARSE_FUNCTIONS["square"], (x,), masked=True)
    assert masked.inputs[0].shape == (5,) and masked.inputs[0].requires_grad
    full = to.sparse_as_dense(SPARSE_FUNCTIONS["square"], (x,), masked=False)
    assert full.inputs[0].shape == (4, 3)
    assert torch.equal(full.function(*full.inputs), x.detach().to_dense() ** 2)
    # a perturbed stand-in is rebuilt fully specified, as torch's differences are
    moved = full.inputs[0].detach() + 1.0
    assert torch.equal(full.function(moved), (x.detach().to_dense() + 1.0) ** 2)


# -- complex ----------------------------------------------------------------------------------


def square_with(conjugate: bool):
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            ctx.save_for_backward(z)
            return z * z

        @staticmethod
        def backward(ctx, g):
            (z,) = ctx.saved_tensors
            # PyTorch's convention: grad_in = grad_out * conj(df/dz) for holomorphic f
            return g * (2 * z).conj() if conjugate else g * 2 * z

    return Square.apply


def z128(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.complex128).requires_grad_()


@pytest.mark.parametrize("conjugate", [True, False])
def test_wrong_conjugate_is_caught_like_torch(conjugate):
    fn, z = square_with(conjugate), z128(3)
    view = to.complex_as_real(fn, (z,))
    assert view.input_names == ["inputs[0].real", "inputs[0].imag"]
    assert view.output_names == ["output.real", "output.imag"]
    kit = bool(gk.gradcheck(view.function, view.inputs, raise_exception=False))
    assert kit is torch_verdict(GC, fn, (z,)) is conjugate


@pytest.mark.parametrize(
    "fn, make",
    [
        (lambda z: (z.abs() ** 2).sum(), lambda: (z128(4),)),  # complex -> real
        (lambda x: x * (1 + 2j), lambda: (x64(3),)),  # real -> complex
        (lambda z, w: (z * w.conj()).exp(), lambda: (z128(2), z128(2, seed=1))),
    ],
)
def test_complex_functions_pass_as_torch_says(fn, make):
    inputs = make()
    assert torch_verdict(GC, fn, inputs)
    view = to.complex_as_real(fn, inputs)
    assert gk.gradcheck(view.function, view.inputs, raise_exception=False)
