"""gradcheck_kit.gradcheck / gradgradcheck as drop-ins for torch's: the signature, the
exceptions, and each option, judged against torch's own verdict on the same function."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from torch.autograd.gradcheck import GradcheckError

import gradcheck_kit as gk
from gradcheck_kit import GradientMismatch


def torch_verdict(check, fn, inputs, **kw) -> bool:
    """torch's verdict; any exception it raises counts as a failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(check(fn, inputs, **kw))
        except Exception:
            return False


def kit_verdict(check, fn, inputs, **kw) -> bool:
    """gradcheck_kit's verdict with raise_exception=False; a refusal counts as a failure."""
    try:
        return bool(check(fn, inputs, raise_exception=False, **kw))
    except gk.CheckInputError:
        return False


def x64(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()


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
