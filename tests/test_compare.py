"""`gradcheck_kit.compare`: a low-precision candidate judged against a reference."""

from __future__ import annotations


import numpy as np
import pytest
import torch

import gradcheck_kit
from gradcheck_kit import CheckInputError, GradientMismatch, ReferenceMismatch, compare

from benchmarks import kernels

DTYPES = [torch.bfloat16, torch.float16, torch.float32]


def _case(kernel, bug, dtype, seed):
    name = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}[dtype]
    return kernels.make_case(kernel, bug, name, seed)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["rmsnorm", "rope", "cross_entropy"])
def test_correct_kernel_passes(kernel, dtype):
    for seed in range(2):
        fn, ref, args = _case(kernel, "correct", dtype, seed)
        report = compare(fn, ref, args, seed=seed)
        assert report and report.kind == "passed"
        assert report.reference_ok


@pytest.mark.parametrize(
    "kernel,bug",
    [("rmsnorm", "sign"), ("rmsnorm", "missing_term"), ("rmsnorm", "stale_statistic"),
     ("rmsnorm", "weight_not_summed"), ("layernorm", "factor"), ("attention", "mask_leak")],
)
def test_formula_bug_is_a_mismatch(kernel, bug):
    fn, ref, args = _case(kernel, bug, torch.bfloat16, 0)
    with pytest.raises(GradientMismatch) as info:
        compare(fn, ref, args)
    report = info.value.report
    assert not report and report.reference_ok
    if bug in ("sign", "weight_not_summed", "mask_leak"):  # errors of order one: beyond any rounding
        assert report.kind == "mismatch"
    assert any(c.check.startswith("reverse mode") for c in report.failures)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bf16_accumulation_is_less_accurate_with_ratio(dtype):
    fn, ref, args = _case("rmsnorm", "bf16_accumulation", dtype, 0)
    report = compare(fn, ref, args, raise_exception=False)
    assert not report
    ratio = [n for n in report.notes if n.startswith("largest error ratio")]
    assert ratio and float(ratio[0].split(": ")[1].split()[0]) > gradcheck_kit._reference.FACTOR
    if dtype == torch.bfloat16:  # in float16/32 a bfloat16 accumulator exceeds sqrt(u): "mismatch"
        assert report.kind == "less accurate"
    assert "ratio normwise" in str(report)


def test_wrong_reference_is_blamed_on_the_reference():
    fn, _, args = _case("gelu_tanh", "correct", torch.bfloat16, 0)

    class WrongGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * torch.sigmoid(x)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * torch.sigmoid(x)  # missing the x s (1 - s) term

    with pytest.raises(ReferenceMismatch) as info:
        compare(fn, WrongGrad.apply, args)
    report = info.value.report
    assert report.kind == "reference wrong" and not report.reference_ok
    assert "reference fails its float64 gradcheck" in str(report)
    d = report.to_dict()
    assert d["reference_ok"] is False and d["reference_report"]["passed"] is False


def test_an_inconclusive_check_of_the_reference_does_not_blame_it():
    # gelu-tanh at this seed reaches its tail, where the reference's float64 check is
    # inconclusive (`_engine._weight_caps`); nothing says the reference is wrong, so the
    # candidate is judged, and a note says how far the golden was verified.
    fn, ref, args = _case("gelu_tanh", "correct", torch.bfloat16, 3)
    report = compare(fn, ref, args, seed=3, raise_exception=False)
    assert report.reference_report.status == "inconclusive"
    assert report.reference_ok and report.kind == "passed" and report
    assert any("reference's own float64 gradcheck is inconclusive" in n for n in report.notes)


def test_report_conventions():
    fn, ref, args = _case("swiglu", "correct", torch.float16, 0)
    report = compare(fn, ref, args, seed=3)
    d = report.to_dict()
    assert d["passed"] is True and d["check"] == "compare" and d["factor"] == 2.0
    assert {c["check"].split(",")[0] for c in d["comparisons"]} >= {"output", "reverse mode (shared random cotangent)"}
    text = str(report)
    assert text.startswith("compare PASSED") and "float16" in text
    assert any("forward mode not compared" in n for n in report.notes)  # the Function has no jvp


@pytest.mark.parametrize("seed", [3, 4])
def test_a_dropped_sum_of_the_cotangent_is_a_mismatch(seed):
    # LayerNorm's backward without mean(g w): over 512 features that term is 1/sqrt(512) of
    # the others under a zero-mean cotangent, within bfloat16's rounding at these seeds;
    # the shared cotangent of mean one makes it as large as the gradient.
    fn, ref, args = _case("layernorm", "missing_term", torch.bfloat16, seed)
    report = compare(fn, ref, args, seed=seed, raise_exception=False)
    assert not report and report.kind == "mismatch"
    failing = {c.check for c in report.failures}
    assert failing and all("mean one" in c for c in failing), failing
    # Normwise only: the elementwise comparisons are the random cotangent's.
    checks = [c.check for c in report.comparisons if "mean one" in c.check]
    assert checks and all(c.endswith("normwise") for c in checks)


@pytest.mark.parametrize("seed", [56, 65, 80])
def test_exact_cancellations_keep_their_terms_rounding(seed):
    # The causal attention's first query attends to one key: the golden dq is exactly 0
    # there, and a candidate summing the terms in another order keeps their rounding
    # (margins 1.0-1.4 over a floor of 4 u rms(golden), on held-out seeds).
    fn, ref, args = _case("attention", "correct", torch.float32, seed)
    assert compare(fn, ref, args, seed=seed)
    leak, ref, args = _case("attention", "mask_leak", torch.float32, seed)
    assert not compare(leak, ref, args, seed=seed, raise_exception=False)


def test_given_cotangents_are_the_only_ones():
    fn, ref, args = _case("layernorm", "correct", torch.bfloat16, 0)
    ones = torch.ones(fn(*args).shape, dtype=torch.bfloat16)
    report = compare(fn, ref, args, grad_outputs=(ones,))
    assert not any("mean one" in c.check for c in report.comparisons)
    assert report.backward_evals == 3


def test_forward_mode_compared_when_available():
    x = torch.randn(4, 32).to(torch.bfloat16).requires_grad_()

    def cand(x):
        return torch.tanh(x.float()).to(x.dtype)

    report = compare(cand, torch.tanh, (x,))
    assert any(c.check.startswith("forward mode") for c in report.comparisons)


def test_grad_outputs_are_used():
    fn, ref, args = _case("gelu_tanh", "correct", torch.float32, 0)
    zero = torch.zeros(args[0].shape)
    report = compare(fn, ref, args, grad_outputs=(zero,))
    rev = [c for c in report.comparisons if c.check.startswith("reverse mode")]
    assert rev and all(c.error == 0 for c in rev)


def test_bad_inputs_are_clear_errors():
    x = torch.randn(4, 8).to(torch.bfloat16).requires_grad_()
    with pytest.raises(CheckInputError, match="different outputs"):
        compare(lambda x: x.sum(0), lambda x: x, (x,))
    with pytest.raises(CheckInputError, match="reference must be callable"):
        compare(torch.sin, 3, (x,))
    with pytest.raises(CheckInputError, match="no differentiable input"):
        compare(torch.sin, torch.sin, (x.detach(),))
    with pytest.raises(CheckInputError, match="use gradcheck_kit.gradcheck"):
        compare(torch.sin, torch.sin, (torch.randn(3, dtype=torch.float64, requires_grad=True),))
    with pytest.raises(CheckInputError, match="unexpected keyword"):
        compare(torch.sin, torch.sin, (x,), atoll=1)


def test_dtype_quantises_the_inputs():
    x = torch.randn(16, requires_grad=True)
    report = compare(lambda t: torch.sin(t.float()).to(t.dtype), torch.sin, (x,), dtype=torch.bfloat16)
    assert report.dtype == "bfloat16"


def test_jax_custom_vjp_bf16():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    def ref(x, w):
        return x * jax.lax.rsqrt(jnp.mean(x * x, -1, keepdims=True) + 1e-6) * w

    def make(sign):
        @jax.custom_vjp
        def cand(x, w):
            return ref(x.astype(jnp.float32), w.astype(jnp.float32)).astype(x.dtype)

        def fwd(x, w):
            return cand(x, w), (x, w)

        def bwd(res, g):
            x, w = res
            x32, w32, g32 = (t.astype(jnp.float32) for t in (x, w, g))
            rstd = jax.lax.rsqrt(jnp.mean(x32 * x32, -1, keepdims=True) + 1e-6)
            xhat, gw = x32 * rstd, g32 * w32
            dx = rstd * (gw - sign * xhat * jnp.mean(gw * xhat, -1, keepdims=True))
            return dx.astype(x.dtype), (g32 * xhat).sum(0).astype(w.dtype)

        cand.defvjp(fwd, bwd)
        return cand

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((4, 64)), dtype=jnp.bfloat16)
    w = jnp.asarray(1 + 0.1 * rng.standard_normal(64), dtype=jnp.bfloat16)
    good = compare(make(1.0), ref, (x, w))
    assert good and good.framework == "jax" and good.dtype == "bfloat16" and good.reference_ok
    bad = compare(make(-1.0), ref, (x, w), raise_exception=False)
    assert not bad and bad.kind == "mismatch"
    assert any("mean one" in c.check for c in good.comparisons)


def test_import_stays_light():
    import subprocess
    import sys

    code = "import sys, gradcheck_kit; gradcheck_kit.compare; assert 'torch' not in sys.modules and 'jax' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
