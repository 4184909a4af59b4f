"""Devices: CPU and CUDA agree, checks pass on CUDA, reports name the device.

CUDA tests carry the `cuda` marker and skip cleanly where no CUDA device is available.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradcheck_kit as gk

no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# Functions whose CUDA kernels differ from the CPU ones (reductions, matmul, softmax,
# normalisation): agreement is about the numerics, not about running the same code.
FUNCTIONS = {
    "tanh_matmul": lambda x, w: (x @ w).tanh(),
    "softmax": lambda x, w: (x @ w).softmax(-1),
    "logsumexp": lambda x, w: (x @ w).logsumexp(0),
    "layer_norm": lambda x, w: torch.nn.functional.layer_norm(x @ w, (w.shape[1],)),
    "sum_of_squares": lambda x, w: ((x @ w) ** 2).sum(),
}


def inputs(device: str, dtype: torch.dtype, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 16, generator=g, dtype=torch.float64)
    w = torch.randn(16, 12, generator=g, dtype=torch.float64) / 4
    return tuple(t.to(device=device, dtype=dtype).requires_grad_(True) for t in (x, w))


def gradients(fn, device: str, dtype: torch.dtype) -> list[np.ndarray]:
    x, w = inputs(device, dtype)
    out = fn(x, w)
    cotangent = torch.linspace(-1.0, 1.0, out.numel(), dtype=torch.float64).reshape(out.shape)
    grads = torch.autograd.grad(out, (x, w), cotangent.to(device=device, dtype=dtype))
    return [g.detach().cpu().double().numpy() for g in grads]


def wrong_tanh():
    class Tanh(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = x.tanh()
            ctx.save_for_backward(y)
            return y

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return g * (1 - y * y) * 1.001

    return Tanh.apply


def test_cuda_marker_is_registered(pytestconfig):
    markers = pytestconfig.getini("markers")
    assert any(m.split(":")[0].strip() == "cuda" for m in markers), markers


@pytest.mark.cuda
@no_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_cpu_and_cuda_gradients_agree_within_the_dtype_tolerance(name, dtype):
    fn = FUNCTIONS[name]
    cpu = gradients(fn, "cpu", dtype)
    cuda = gradients(fn, "cuda", dtype)
    model = gk.ToleranceModel.for_dtype(dtype)
    # Each gradient element sums over a batch and a hidden dimension (8 * 12 terms, or
    # 8 * 16 for w) in both backward passes.
    for which, a, b, terms in zip(("x", "w"), cuda, cpu, (8 * 12, 8 * 16)):
        result = model.compare_arrays(a, b, terms=terms)
        assert result.passed, f"{name} d/d{which}: {result}"
    # The comparison has teeth: a 1% change in one element is outside the tolerance.
    perturbed = cpu[1].copy()
    perturbed[3, 5] *= 1.01
    assert not model.compare_arrays(perturbed, cpu[1], terms=8 * 16).passed


@pytest.mark.cuda
@no_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_gradcheck_on_cuda_tensors(dtype):
    x, w = inputs("cuda", dtype)
    report = gk.gradcheck(FUNCTIONS["tanh_matmul"], (x, w))
    assert report.passed and report.device.startswith("cuda")
    assert report.dtype == str(dtype).replace("torch.", "")
    bad = gk.gradcheck(lambda x, w: wrong_tanh()(x @ w), (x, w), raise_exception=False)
    assert not bad and bad.device.startswith("cuda")
    assert {c.input for c in bad.failures} <= {"inputs[0]", "inputs[1]"} and bad.failures


@pytest.mark.cuda
@no_cuda
def test_cuda_check_leaves_tensors_and_cuda_rng_untouched():
    x, w = inputs("cuda", torch.float64)
    values = (x.detach().clone(), w.detach().clone())
    torch.cuda.manual_seed_all(3)
    rng = torch.cuda.get_rng_state()
    report = gk.gradcheck(lambda x, w: torch.nn.functional.dropout(x @ w, 0.3).tanh(), (x, w))
    assert report.passed and any("stochastic" in n for n in report.notes)
    assert torch.equal(torch.cuda.get_rng_state(), rng)
    assert torch.equal(x, values[0]) and torch.equal(w, values[1])
    assert x.grad is None and w.grad is None and x.device.type == "cuda"


@pytest.mark.cuda
@no_cuda
def test_cpu_and_cuda_reports_agree():
    fn = FUNCTIONS["softmax"]
    cpu = gk.gradcheck(fn, inputs("cpu", torch.float64))
    cuda = gk.gradcheck(fn, inputs("cuda", torch.float64))
    assert cpu.device == "cpu" and cuda.device.startswith("cuda")
    model = gk.ToleranceModel.for_dtype("float64")
    for a, b in zip(cpu.comparisons, cuda.comparisons):
        assert (a.check, a.input, a.output) == (b.check, b.input, b.output)
        assert a.passed and b.passed
        if a.analytic is not None:
            # The same probes (same seed) projected on both devices: two computations of
            # one number, each a sum over all 8 * 16 + 16 * 12 gradient elements.
            assert model.compare_arrays(b.analytic, a.analytic, terms=320).passed


# -- reporting the device on CPU -------------------------------------------------------------


def test_torch_report_names_the_cpu_device():
    x, w = inputs("cpu", torch.float32)
    report = gk.gradcheck(FUNCTIONS["tanh_matmul"], (x, w))
    assert report.device == "cpu"
    assert report.to_dict()["device"] == "cpu" and "on cpu" in str(report)


def test_jax_report_names_the_device_the_array_lives_on():
    cpu = jax.devices("cpu")[0]
    x = jax.device_put(jnp.linspace(-1.0, 1.0, 6, dtype=jnp.float32), cpu)
    report = gk.gradcheck(lambda a: jnp.tanh(a) * jnp.sum(a), x)
    assert report.passed and report.framework == "jax"
    assert report.device == str(cpu)
    assert report.device.lower().startswith("cpu")
    assert f"on {report.device}" in str(report)


def test_numpy_report_names_the_cpu_device():
    report = gk.gradcheck(lambda a: float(np.sum(a**2)), np.ones(3), grad=lambda a: (2 * a,))
    assert report.device == "cpu"
