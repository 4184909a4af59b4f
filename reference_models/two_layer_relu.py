"""The two-layer ReLU network: `y_pred = relu(x @ w1) @ w2`, loss `sum((y_pred - y)**2)`.

Source: seed `000_1539dd40a941c6d7.txt` ("Python Pytorch深度學習之核心小結"), which shows
the network in numpy, in torch tensors with a hand-written backward, and with autograd
(update under `torch.no_grad()`, then `grad.zero_()`); the `nn.Module` form is the same
tutorial family's `nn.Sequential(nn.Linear(d_in, h), nn.ReLU(), nn.Linear(h, d_out))` with
`MSELoss(reduction='sum')`, here bias-free so that it is the same function (`TwoLayerNet`).

Sizes `n, d_in, h, d_out = 64, 1000, 100, 10`; plain SGD with `lr = 1e-6` for 500 steps.
Parameters `w1` (d_in, h) and `w2` (h, d_out); data `x` (n, d_in) and `y` (n, d_out), all
standard normal as in the doc (drawn from numpy's generator seeded by `seed`).

What was fixed: nothing in the math. The doc's torch tensors are float32 (`torch.float`);
here every style runs in the dtype it is asked for.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._arrays import numpy_arrays
from ._claims import claims, loss_falls
from ._jax_style import JaxStyle
from ._model import Arrays, FidelityCheck, FidelityResult, ReferenceModel, Training
from ._torch_style import (
    AutogradStyle,
    ModuleStyle,
    lazy_classes,
    summed_squared_error,
    to_numpy,
    torch_tensors,
)

__all__ = [
    "MODEL",
    "TRAINING",
    "TwoLayerNet",
    "jax",
    "numpy_manual",
    "torch_autograd",
    "torch_manual",
    "torch_module",
]

CLAIM = "the loss falls over 500 SGD steps (lr=1e-6)"

TRAINING = Training(lr=1e-6, steps=500)


def make_example(seed: int, dtype: str, sizes: Mapping[str, int]) -> tuple[Arrays, Arrays]:
    """`x, y, w1, w2 ~ randn` with the doc's shapes."""
    rng = np.random.default_rng(seed)
    n, d_in, h, d_out = sizes["n"], sizes["d_in"], sizes["h"], sizes["d_out"]
    data = {"x": rng.standard_normal((n, d_in)), "y": rng.standard_normal((n, d_out))}
    params = {"w1": rng.standard_normal((d_in, h)), "w2": rng.standard_normal((h, d_out))}
    return (
        {k: v.astype(dtype) for k, v in params.items()},
        {k: v.astype(dtype) for k, v in data.items()},
    )


def numpy_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """The doc's numpy forward and hand-written backward."""
    p, d = numpy_arrays(params, data, dtype)
    w1, w2, x, y = p["w1"], p["w2"], d["x"], d["y"]
    h = x.dot(w1)
    h_relu = np.maximum(h, 0)
    y_pred = h_relu.dot(w2)
    loss = np.square(y_pred - y).sum()
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.T.dot(grad_y_pred)
    grad_h_relu = grad_y_pred.dot(w2.T)
    grad_h = grad_h_relu.copy()
    grad_h[h < 0] = 0
    grad_w1 = x.T.dot(grad_h)
    return float(loss), {"w1": grad_w1, "w2": grad_w2}


def torch_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """The doc's torch-tensor forward (`mm`, `clamp(min=0)`) and hand-written backward."""
    p = torch_tensors(params, dtype=dtype, device=device)
    d = torch_tensors(data, dtype=dtype, device=device)
    w1, w2, x, y = p["w1"], p["w2"], d["x"], d["y"]
    h = x.mm(w1)
    h_relu = h.clamp(min=0)
    y_pred = h_relu.mm(w2)
    loss = (y_pred - y).pow(2).sum().item()
    grad_y_pred = 2.0 * (y_pred - y)
    grad_w2 = h_relu.t().mm(grad_y_pred)
    grad_h_relu = grad_y_pred.mm(w2.T)
    grad_h = grad_h_relu.clone()
    grad_h[h < 0] = 0
    grad_w1 = x.t().mm(grad_h)
    return float(loss), {"w1": to_numpy(grad_w1), "w2": to_numpy(grad_w2)}


def torch_loss(p: dict[str, Any], d: dict[str, Any]) -> Any:
    """The doc's autograd forward: `x.mm(w1).clamp(min=0).mm(w2)`, summed squared error."""
    y_pred = d["x"].mm(p["w1"]).clamp(min=0).mm(p["w2"])
    return (y_pred - d["y"]).pow(2).sum()


torch_autograd = AutogradStyle(torch_loss, training=TRAINING)


@functools.cache
def _two_layer_net() -> type:
    import torch

    class TwoLayerNet(torch.nn.Module):
        """`Linear(d_in, h) -> ReLU -> Linear(h, d_out)`, bias-free by default.

        With `bias=False` it computes exactly the manual versions' `relu(x @ w1) @ w2`,
        with `linear1.weight == w1.T` and `linear2.weight == w2.T`.

        **Example:** `TwoLayerNet(1000, 100, 10)(torch.randn(64, 1000)).shape == (64, 10)`.
        """

        def __init__(self, d_in: int, h: int, d_out: int, *, bias: bool = False) -> None:
            super().__init__()
            self.linear1 = torch.nn.Linear(d_in, h, bias=bias)
            self.relu = torch.nn.ReLU()
            self.linear2 = torch.nn.Linear(h, d_out, bias=bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear2(self.relu(self.linear1(x)))

    # Named as the module attribute it is served as, so that it pickles.
    TwoLayerNet.__qualname__ = "TwoLayerNet"
    return TwoLayerNet


__getattr__ = lazy_classes(__name__, {"TwoLayerNet": _two_layer_net})


def _make_module(shapes: Mapping[str, tuple[int, ...]]) -> Any:
    d_in, h = shapes["w1"]
    _, d_out = shapes["w2"]
    return _two_layer_net()(d_in, h, d_out)


torch_module = ModuleStyle(
    _make_module,
    summed_squared_error,
    binding={"w1": ("linear1.weight", True), "w2": ("linear2.weight", True)},
    training=TRAINING,
)


def jax_loss(p: dict[str, Any], d: dict[str, Any], static: dict[str, int]) -> Any:
    """The forward in `jax.numpy`; its gradient comes from `jax.grad`."""
    import jax.numpy as jnp

    y_pred = jnp.maximum(d["x"] @ p["w1"], 0) @ p["w2"]
    return jnp.sum((y_pred - d["y"]) ** 2)


jax = JaxStyle(jax_loss)


def _loss_falls(
    model: ReferenceModel, implementation: str, *, dtype: str, device: str
) -> FidelityResult:
    # The doc prints the loss at each of its 500 steps and it shrinks; checkpoints every
    # 100 steps show the same steady fall with 6 loss evaluations instead of 500.
    return loss_falls(
        model, implementation, dtype=dtype, device=device, chunks=5,
        steps=TRAINING.steps // 5, label="loss at steps 0,100,...,500", ratio=0.01,
    )


def _rounding_terms(params: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray]) -> int:
    # Rounding accumulates along x @ w1 (d_in terms), @ w2 (h), the backward's products
    # with w2.T (d_out) and the sums over the batch (n).
    n, d_in = np.shape(data["x"])
    h, d_out = np.shape(params["w2"])
    return int(n + d_in + h + d_out)


MODEL = ReferenceModel(
    name="two_layer_relu",
    description="two-layer ReLU network relu(x @ w1) @ w2 with summed squared error",
    source="seeds/000_1539dd40a941c6d7.txt",
    default_sizes={"n": 64, "d_in": 1000, "h": 100, "d_out": 10},
    quick_sizes={"n": 8, "d_in": 20, "h": 10, "d_out": 3},
    hyper={"lr": TRAINING.lr, "steps": TRAINING.steps, "optimizer": "SGD"},
    make_example=make_example,
    implementations={
        "numpy_manual": numpy_manual,
        "torch_manual": torch_manual,
        "torch_autograd": torch_autograd,
        "torch_module": torch_module,
        "jax": jax,
    },
    training=TRAINING,
    fidelity=claims(
        FidelityCheck(
            name="loss_falls",
            claim=CLAIM,
            run=_loss_falls,
        )
    ),
    rounding_terms=_rounding_terms,
)
