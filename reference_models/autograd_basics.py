"""The autograd notebook: `z = sum(x + y)`, then `z = x**2 + y**3` backpropagated with ones.

Source: seed `002_59442d3e7251b636.txt` (a Jupyter notebook, "PyTorch 基础 : 自动求导").
`x, y = torch.rand(5, 5, requires_grad=True)`; `z = torch.sum(x + y); z.backward()` gives
`x.grad == y.grad == ones(5, 5)`; `z = x**2 + y**3` is not a scalar, so
`z.backward(torch.ones_like(x))` backpropagates the vector `v = ones`, giving
`x.grad == 2 x` and `y.grad == 3 y^2`; inside `torch.no_grad()`, `(x + y * 2).requires_grad`
is `False`.

The model is the second example as a scalar loss, `sum(v * (x**2 + y**3))` with data
`v = ones(rows, cols)` (what `z.backward(v)` computes); params `x`, `y ~ U[0, 1)`. The
first example and the `no_grad` claim are fidelity checks. The notebook trains nothing,
so the model has no training loop.

What was fixed: nothing; the notebook's `ThAddBackward` is today's `AddBackward0`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._arrays import cast, numpy_arrays
from ._claims import agree, claim_result, claims
from ._jax_style import JaxStyle
from ._model import Arrays, FidelityCheck, FidelityResult, ReferenceModel
from ._torch_style import AutogradStyle, grad_or_zeros, to_numpy, torch_tensors

__all__ = ["MODEL", "jax", "numpy_manual", "sum_grads", "torch_autograd", "torch_manual"]

SUM_CLAIM = "z = sum(x + y): x.grad and y.grad are all ones"
POWER_CLAIM = "z = x**2 + y**3, z.backward(ones): x.grad == 2x and y.grad == 3y^2"
NO_GRAD_CLAIM = "inside torch.no_grad(), (x + y*2).requires_grad is False"


def make_example(seed: int, dtype: str, sizes: Mapping[str, int]) -> tuple[Arrays, Arrays]:
    """`x, y ~ rand(rows, cols)`, `v = ones`."""
    rng = np.random.default_rng(seed)
    shape = (sizes["rows"], sizes["cols"])
    params = {"x": rng.random(shape).astype(dtype), "y": rng.random(shape).astype(dtype)}
    return params, {"v": np.ones(shape, dtype=dtype)}


def numpy_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """`v . (x**2 + y**3)` with its gradient by hand: `2 x v` and `3 y^2 v`."""
    p, d = numpy_arrays(params, data, dtype)
    x, y, v = p["x"], p["y"], d["v"]
    loss = (v * (x**2 + y**3)).sum()
    return float(loss), {"x": 2 * x * v, "y": 3 * y**2 * v}


def torch_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """The same on torch tensors, gradient by hand."""
    p = torch_tensors(params, dtype=dtype, device=device)
    v = torch_tensors(data, dtype=dtype, device=device)["v"]
    x, y = p["x"], p["y"]
    loss = (v * (x**2 + y**3)).sum().item()
    return float(loss), {"x": to_numpy(2 * x * v), "y": to_numpy(3 * y**2 * v)}


class _VectorBackward(AutogradStyle):
    # The notebook's mechanism: a non-scalar z and z.backward(v); the reported loss is
    # v . z, the scalar whose gradient that is.
    def __call__(
        self,
        params: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        *,
        dtype: str = "float64",
        device: str = "cpu",
    ) -> tuple[float, Arrays]:
        p = torch_tensors(params, dtype=dtype, device=device, requires_grad=True)
        v = torch_tensors(data, dtype=dtype, device=device)["v"]
        z = p["x"] ** 2 + p["y"] ** 3
        z.backward(v)
        return float((v * z).sum().item()), {k: grad_or_zeros(t) for k, t in p.items()}


def _torch_loss(p: dict[str, Any], d: dict[str, Any]) -> Any:
    return (d["v"] * (p["x"] ** 2 + p["y"] ** 3)).sum()


torch_autograd = _VectorBackward(_torch_loss)


def jax_loss(p: dict[str, Any], d: dict[str, Any], static: dict[str, int]) -> Any:
    """`v . (x**2 + y**3)` in `jax.numpy`; its gradient comes from `jax.grad`."""
    import jax.numpy as jnp

    return jnp.sum(d["v"] * (p["x"] ** 2 + p["y"] ** 3))


jax = JaxStyle(jax_loss)


def sum_grads(
    style: str, x: np.ndarray, y: np.ndarray, *, dtype: str = "float64", device: str = "cpu"
) -> Arrays:
    """The notebook's first example, `z = sum(x + y)`: the gradients of `z` in one style.

    **Arguments:**
    - `style`: `"numpy_manual"`, `"torch_manual"`, `"torch_autograd"` or `"jax"`.
    - `x`, `y`: arrays of one shape.

    **Returns:** `{"x": dz/dx, "y": dz/dy}` (both all ones).

    **Example:** `sum_grads("torch_autograd", np.zeros((5, 5)), np.zeros((5, 5)))["x"]`.
    """
    arrays = cast({"x": x, "y": y}, dtype)
    if style in ("numpy_manual", "torch_manual"):
        # d sum(x + y) / dx is one per element, whichever framework holds the ones.
        if style == "numpy_manual":
            return {k: np.ones_like(v) for k, v in arrays.items()}
        import torch

        t = torch_tensors(arrays, dtype=dtype, device=device)
        return {k: to_numpy(torch.ones_like(v)) for k, v in t.items()}
    if style == "torch_autograd":
        import torch

        t = torch_tensors(arrays, dtype=dtype, device=device, requires_grad=True)
        torch.sum(t["x"] + t["y"]).backward()
        return {k: to_numpy(v.grad) for k, v in t.items()}
    if style == "jax":
        import jax as jax_module
        import jax.numpy as jnp

        with jax_module.enable_x64(dtype == "float64"):
            g = jax_module.grad(lambda a, b: jnp.sum(a + b), argnums=(0, 1))(
                jnp.asarray(arrays["x"]), jnp.asarray(arrays["y"])
            )
            return {"x": np.asarray(g[0]), "y": np.asarray(g[1])}
    raise ValueError(
        f"style={style!r} has no version of the sum example; use one of numpy_manual, "
        f"torch_manual, torch_autograd, jax."
    )


def _sum_grad_ones(
    model: ReferenceModel, implementation: str, *, dtype: str, device: str
) -> FidelityResult:
    params, _ = model.example(seed=0, dtype=dtype)
    grads = sum_grads(implementation, params["x"], params["y"], dtype=dtype, device=device)
    exact = all(np.array_equal(g, np.ones_like(params[k])) for k, g in grads.items())
    return claim_result(
        model, "sum_grad_ones", implementation, dtype,
        passed=bool(exact),
        observed=(
            "x.grad, y.grad all ones" if exact else f"x.grad = {grads['x']}, y.grad = {grads['y']}"
        ),
        figures={k: float(np.max(np.abs(g - 1))) for k, g in grads.items()},
    )


def _power_grads(
    model: ReferenceModel, implementation: str, *, dtype: str, device: str
) -> FidelityResult:
    params, data = model.example(seed=0, dtype=dtype)
    _, grads = model.implementations[implementation](params, data, dtype=dtype, device=device)
    x, y = params["x"], params["y"]
    # The closed forms are computed in float64; the implementation's rounding in `dtype`
    # is what the comparison allows for.
    closed = agree(
        dtype,
        {"x": (grads["x"], 2.0 * x.astype(np.float64)), "y": (grads["y"], 3.0 * y.astype(np.float64) ** 2)},
        terms={"x": 2, "y": 3},
    )
    return claim_result(
        model, "power_grads", implementation, dtype,
        passed=closed.passed,
        observed=f"x.grad vs 2x: {closed.describe('x')}; y.grad vs 3y^2: {closed.describe('y')}",
        figures=closed.margins(),
    )


def _no_grad(
    model: ReferenceModel, implementation: str, *, dtype: str, device: str
) -> FidelityResult:
    import torch

    params, _ = model.example(seed=0, dtype=dtype)
    t = torch_tensors(params, dtype=dtype, device=device, requires_grad=True)
    outside = (t["x"] + t["y"] * 2).requires_grad
    with torch.no_grad():
        inside = (t["x"] + t["y"] * 2).requires_grad
    return claim_result(
        model, "no_grad", implementation, dtype,
        passed=bool(outside and not inside),
        observed=f"requires_grad {outside} outside no_grad, {inside} inside",
        figures={"outside": float(outside), "inside": float(inside)},
    )


def _rounding_terms(params: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray]) -> int:
    return 3


MODEL = ReferenceModel(
    name="autograd_basics",
    description="the autograd notebook: v . (x**2 + y**3), i.e. z.backward(ones_like(x))",
    source="seeds/002_59442d3e7251b636.txt",
    default_sizes={"rows": 5, "cols": 5},
    quick_sizes={"rows": 5, "cols": 5},
    hyper={},
    make_example=make_example,
    implementations={
        "numpy_manual": numpy_manual,
        "torch_manual": torch_manual,
        "torch_autograd": torch_autograd,
        "jax": jax,
    },
    training=None,
    fidelity=claims(
        FidelityCheck(
            name="sum_grad_ones",
            claim=SUM_CLAIM,
            run=_sum_grad_ones,
            styles=("numpy_manual", "torch_manual", "torch_autograd", "jax"),
        ),
        FidelityCheck(
            name="power_grads",
            claim=POWER_CLAIM,
            run=_power_grads,
        ),
        FidelityCheck(
            name="no_grad",
            claim=NO_GRAD_CLAIM,
            run=_no_grad,
            styles=("torch_autograd",),
        ),
    ),
    rounding_terms=_rounding_terms,
)
