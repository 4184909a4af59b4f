"""Functions that return float64 but compute in float32 inside are checked as float32 ones.

Whether the user passes float64 inputs or gradcheck_kit promotes float32 ones, such a
function resolves nothing finer than float32: its derivatives are compared with float32
tolerances, a weak check is inconclusive, and a gross bug still fails. Functions that do
compute in float64 (including ones that cancel, and ones whose backward alone rounds to
a lower precision) keep their float64 check.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gradcheck_kit as gk
from custom_functions import square_loss, unary_function
from gradcheck_kit._preflight import gradient_grid, half_grid
from gradcheck_kit._targets._base import round_to

NOTE = "computes in lower precision inside"


def _randn(*shape, dtype=torch.float64, seed=3, scale=1.0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    x = offset + scale * torch.randn(*shape, generator=g, dtype=torch.float64)
    return x.to(dtype).requires_grad_()


def _rmsnorm(x):
    h = x.float()
    return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype)


FLOAT32_INSIDE = {
    "softmax-dtype-float32": (
        lambda q: torch.softmax(q, -1, dtype=torch.float32).to(q.dtype).pow(2).sum()
    ),
    "rmsnorm": lambda x: _rmsnorm(x),
    "rmsnorm-squared-sum": lambda x: _rmsnorm(x).pow(2).sum(),
    "tanh-cast": lambda x: torch.tanh(x.float()).to(x.dtype),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(FLOAT32_INSIDE))
def test_a_function_computing_in_float32_inside_is_not_failed(name, dtype):
    report = gk.gradcheck(FLOAT32_INSIDE[name], (_randn(4, 6, dtype=dtype),), raise_exception=False)
    assert report.status in ("passed", "inconclusive"), report
    if name == "rmsnorm-squared-sum":
        # Its gradient is zero up to float32 rounding: elements of a few significant bits,
        # which float64 rounding noise has too (layer_norm(x).sum()), so the gradient's
        # grid does not tell it apart; the verdict is still no failure.
        return
    assert not report.promoted
    assert any(NOTE in n for n in report.notes), report.notes


def test_a_float64_gradient_that_is_zero_up_to_rounding_is_not_taken_for_float32():
    x = _randn(4, 3)
    report = gk.gradcheck(lambda x: torch.nn.functional.layer_norm(x, (3,)).sum(), x,
                          raise_exception=False)
    assert report.status == "passed" and not any(NOTE in n for n in report.notes)
    noise = np.array([2.0**-52, -3 * 2.0**-53, 2.0**-50, 5 * 2.0**-54])  # a few ulps each
    assert gradient_grid([[noise]]) is None
    assert gradient_grid([[np.float32(np.random.default_rng(0).standard_normal(8))
                           .astype(np.float64)]]) == "float32"


def _tanh(factor: float = 1.0) -> type[torch.autograd.Function]:
    """tanh with its backward scaled by `factor` (1.1: 10% too large)."""
    return unary_function(torch.tanh, lambda x: 1 - torch.tanh(x) ** 2, factor=factor, name="Tanh")


_TanhOff = _tanh(1.1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_a_gross_bug_inside_a_float32_computation_still_fails(dtype):
    report = gk.gradcheck(
        lambda x: _TanhOff.apply(x.float()).to(x.dtype), (_randn(12, dtype=dtype),),
        raise_exception=False,
    )
    assert report.status == "failed"
    assert any(NOTE in n for n in report.notes)


@pytest.mark.parametrize(
    "fn, x",
    [
        (lambda x: torch.log(1 + x * x).sum(), _randn(10, scale=1e-4)),
        (lambda x: 1 - torch.cos(x), _randn(10, scale=1e-3)),
        (lambda x: torch.nn.functional.layer_norm(x, (16,)), _randn(4, 16, scale=0.01, offset=50)),
        (lambda x: torch.cumsum(x, 0).sin(), _randn(50, offset=1e6)),
        (torch.exp, _randn(10)),
    ],
    ids=["log1p-small", "one-minus-cos", "layer-norm-offset", "sin-cumsum-offset", "exp"],
)
def test_float64_functions_are_not_demoted(fn, x):
    report = gk.gradcheck(fn, (x,), raise_exception=False)
    assert not any(NOTE in n for n in report.notes), report.notes


def _rounded_backward(scale, offset, rounding):
    """`scale * sum(x*x) + offset` in float64, whose backward rounds to `rounding`: a
    precision bug, not a cast. (Where the offset is so large that even float64 outputs
    cannot resolve a step below float32's resolution, 1e8 here, the probe cannot tell
    the two apart, and such a check is inconclusive rather than failed.)"""
    return square_loss(scale, offset, rounding)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(
    "scale, offset, rounding",
    [(1e6, 0.0, torch.bfloat16), (1.0, 1e6, torch.float16), (1.0, 1e6, torch.bfloat16)],
)
def test_a_backward_alone_rounding_to_half_precision_is_not_taken_for_a_cast(
    scale, offset, rounding, dtype
):
    fn = _rounded_backward(scale, offset, rounding)
    report = gk.gradcheck(fn, (_randn(20, dtype=dtype),), raise_exception=False)
    assert report.status == "failed"
    assert not any(NOTE in n for n in report.notes)


def test_the_gradient_grid_is_float32_only_for_float32_numbers():
    rng = np.random.default_rng(0)
    g = rng.standard_normal(50)
    assert gradient_grid([[g]]) is None
    assert gradient_grid([[g.astype(np.float32).astype(np.float64)]]) == "float32"
    one_off = g.astype(np.float32).astype(np.float64)
    one_off[7] = g[7]
    assert gradient_grid([[one_off]]) is None
    assert gradient_grid([[np.zeros(5)]]) is None


def test_jax_casting_to_float32_inside_is_not_failed():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    with jax.enable_x64(True) if hasattr(jax, "enable_x64") else jax.experimental.enable_x64():
        x = jnp.asarray(np.random.default_rng(1).standard_normal(7))
        report = gk.gradcheck(
            lambda x: jnp.tanh(x.astype(jnp.float32)).astype(x.dtype), (x,), raise_exception=False
        )
        assert report.status in ("passed", "inconclusive")
        assert any(NOTE in n for n in report.notes)
        assert not any(NOTE in n for n in gk.gradcheck(jnp.tanh, (x,)).notes)


HALVES = [torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("inner", HALVES, ids=["bfloat16", "float16"])
@pytest.mark.parametrize("factor", [1.0, 1.3], ids=["right", "30%-wrong"])
def test_a_function_computing_in_half_precision_inside_is_checked_in_it(inner, factor, dtype):
    # Its float64 finite differences see only half-precision outputs: compared with float64
    # tolerances, the 30% error passed (float16) and the right gradient failed (bfloat16).
    Scaled = _tanh(factor)
    fn = lambda x: (Scaled.apply(x.to(inner)) * 2).sum(-1).to(x.dtype)  # noqa: E731
    report = gk.gradcheck(fn, (_randn(8, 16, dtype=dtype, seed=1),), raise_exception=False)
    # Half-precision finite differences cannot resolve an error in one element: the
    # verdict may be inconclusive, but never a pass of the wrong gradient or a failure of
    # the right one.
    assert report.status != ("passed" if factor != 1.0 else "failed"), report
    assert any(NOTE in n and str(inner).split(".")[1] in n for n in report.notes), report.notes


def test_a_float32_function_computing_in_bfloat16_inside_is_checked_in_bfloat16():
    w = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))  # captured: not promoted
    fn = lambda x: torch.tanh(x.bfloat16() @ w.bfloat16()).float()  # noqa: E731
    report = gk.gradcheck(fn, (_randn(4, 6, dtype=torch.float32),), raise_exception=False)
    assert report.status in ("passed", "inconclusive"), report
    assert any(NOTE in n and "bfloat16" in n for n in report.notes), report.notes


def test_the_half_grid_needs_every_element_on_it():
    rng = np.random.default_rng(0)
    g = rng.standard_normal(50)
    assert half_grid([[g]]) is None
    assert half_grid([[g.astype(np.float32).astype(np.float64)]]) is None
    for dtype in (torch.bfloat16, torch.float16):
        on = torch.from_numpy(g).to(dtype).double().numpy()
        assert half_grid([[on]]) == str(dtype).split(".")[1]
        one_off = on.copy()
        one_off[7] = g[7]
        assert half_grid([[one_off]]) is None
    assert half_grid([[np.zeros(5)]]) is None


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_rounding_to_a_dtype_is_the_frameworks_cast(dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(10_000) * 10.0 ** rng.uniform(-3, 3, 10_000)
    cast = torch.from_numpy(x).to(getattr(torch, dtype)).double().numpy()
    assert np.array_equal(round_to(x, dtype), cast)


def _accumulated_in(inner: torch.dtype, factor: float) -> type[torch.autograd.Function]:
    """Rows of x @ w^T summed term by term in `inner` from float32 products, as a fused
    kernel with a half-precision accumulator does; backward scaled by `factor`."""

    def accumulate(a, b):
        acc = torch.zeros(a.shape[0], b.shape[0], dtype=inner)
        for k in range(a.shape[1]):
            acc = (acc.float() + a[:, k : k + 1] * b[:, k]).to(inner)
        return acc.float()

    class Accumulated(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w):
            ctx.save_for_backward(x, w)
            return accumulate(x.float(), w.float()).to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            g = g.float() * factor
            dx = accumulate(g, w.float().t().contiguous())
            dw = accumulate(g.t().contiguous(), x.float().t().contiguous())
            return dx.to(x.dtype), dw.to(w.dtype)

    return Accumulated


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("factor", [1.0, 1.3], ids=["right", "30%-wrong"])
def test_a_float32_computation_rounding_to_bfloat16_is_checked_in_float32(factor, dtype):
    # Its inputs are read in float32 and its gradient is bfloat16 numbers: too few bits
    # for the float32 grid test, and finer inputs than bfloat16's. Checked in float64, the
    # bfloat16 noise widened the tolerance past the whole probe and the 30% error passed.
    x, w = _randn(6, 16, dtype=dtype, seed=4), _randn(5, 16, dtype=dtype, seed=5)
    report = gk.gradcheck(_accumulated_in(torch.bfloat16, factor).apply, (x, w), raise_exception=False)
    assert report.status != ("passed" if factor != 1.0 else "failed"), report
    assert any(NOTE in n and "float32" in n for n in report.notes), report.notes
