"""The 8-6-4-1 sigmoid network of the post, with its bugs fixed, as a binary classifier.

Source: seed `003_0eb2371ae03e0a30.txt` ("pytorch入门7--自动求导和神经网络"), section 二.2:
`Model(torch.nn.Module)` with `Linear(8, 6)`, `Linear(6, 4)`, `Linear(4, 1)` and
`torch.nn.Sigmoid()` after each. The course the post follows trains it as a binary
classifier of 8 input features with `BCELoss` (mean) and `SGD(lr=0.1)`, full batch, for
100 epochs; the data here is synthetic of that shape: `x ~ U[-1, 1]^(n, 8)`, labels
`y = 1[x . t + noise > 0]` from a seeded random teacher `t`, so that there is something
to learn.

Params are the module's own names, `linear1.weight` (6, 8), `linear1.bias` (6,),
`linear2.*` (4, 6), (4,), `linear3.*` (1, 4), (1,), drawn as `nn.Linear` draws them
(uniform on +-1/sqrt(fan_in)) from numpy's generator seeded by `seed`.

What was fixed (the post's code does not run):
- `self.linear1` is assigned twice; the second assignment, `Linear(4, 1)`, is the
  missing `self.linear3` (the post's `forward` calls `self.linear3`, never defined);
- `forward` returns `n`, an undefined name; it returns `y_pred`.
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
from ._torch_style import AutogradStyle, ModuleStyle, lazy_classes, to_numpy, torch_tensors

__all__ = [
    "MODEL",
    "Model",
    "TRAINING",
    "jax",
    "numpy_manual",
    "torch_autograd",
    "torch_manual",
    "torch_module",
]

CLAIM = "the fixed 8-6-4-1 model trains: BCE falls over 100 epochs of SGD(lr=0.1)"

TRAINING = Training(lr=0.1, steps=100)
LAYERS = ("linear1", "linear2", "linear3")


def make_example(seed: int, dtype: str, sizes: Mapping[str, int]) -> tuple[Arrays, Arrays]:
    """Synthetic `x`, teacher labels `y`, `nn.Linear`-style init of the three layers."""
    rng = np.random.default_rng(seed)
    n, widths = sizes["n"], (sizes["features"], sizes["hidden1"], sizes["hidden2"], 1)
    params = {}
    for layer, fan_in, fan_out in zip(LAYERS, widths, widths[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        params[f"{layer}.weight"] = rng.uniform(-bound, bound, (fan_out, fan_in))
        params[f"{layer}.bias"] = rng.uniform(-bound, bound, (fan_out,))
    x = rng.uniform(-1, 1, (n, widths[0]))
    teacher = rng.standard_normal(widths[0])
    y = (x @ teacher + 0.3 * rng.standard_normal(n) > 0).astype(np.float64).reshape(n, 1)
    return (
        {k: v.astype(dtype) for k, v in params.items()},
        {"x": x.astype(dtype), "y": y.astype(dtype)},
    )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def numpy_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """Forward and backward by hand: sigmoid' = s (1 - s); BCE∘sigmoid' = (p - y) / n."""
    p, d = numpy_arrays(params, data, dtype)
    x, y = d["x"], d["y"]
    acts = [x]
    for layer in LAYERS:
        acts.append(_sigmoid(acts[-1] @ p[f"{layer}.weight"].T + p[f"{layer}.bias"]))
    prob = acts[-1]
    # BCELoss clamps its logs at -100; the examples never come near it.
    loss = -np.mean(y * np.log(prob) + (1 - y) * np.log(1 - prob))
    grads: Arrays = {}
    delta = (prob - y) / len(y)
    for i in reversed(range(len(LAYERS))):
        layer = LAYERS[i]
        grads[f"{layer}.weight"] = delta.T @ acts[i]
        grads[f"{layer}.bias"] = delta.sum(axis=0)
        if i:
            delta = (delta @ p[f"{layer}.weight"]) * acts[i] * (1 - acts[i])
    return float(loss), {k: grads[k] for k in params}


def torch_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """The same on torch tensors."""
    import torch

    p = torch_tensors(params, dtype=dtype, device=device)
    d = torch_tensors(data, dtype=dtype, device=device)
    x, y = d["x"], d["y"]
    acts = [x]
    for layer in LAYERS:
        acts.append(torch.sigmoid(acts[-1].mm(p[f"{layer}.weight"].t()) + p[f"{layer}.bias"]))
    prob = acts[-1]
    loss = -(y * prob.log() + (1 - y) * (1 - prob).log()).mean()
    grads = {}
    delta = (prob - y) / y.shape[0]
    for i in reversed(range(len(LAYERS))):
        layer = LAYERS[i]
        grads[f"{layer}.weight"] = to_numpy(delta.t().mm(acts[i]))
        grads[f"{layer}.bias"] = to_numpy(delta.sum(dim=0))
        if i:
            delta = delta.mm(p[f"{layer}.weight"]) * acts[i] * (1 - acts[i])
    return float(loss.item()), {k: grads[k] for k in params}


def torch_loss(p: dict[str, Any], d: dict[str, Any]) -> Any:
    """Functional forward with `torch.sigmoid` and `binary_cross_entropy`, autograd backward."""
    import torch
    import torch.nn.functional as F

    h = d["x"]
    for layer in LAYERS:
        h = torch.sigmoid(F.linear(h, p[f"{layer}.weight"], p[f"{layer}.bias"]))
    return F.binary_cross_entropy(h, d["y"])


torch_autograd = AutogradStyle(torch_loss, training=TRAINING)


@functools.cache
def _model_class() -> type:
    import torch

    class Model(torch.nn.Module):
        """The post's `Model`, fixed: `Linear(8, 6)`, `Linear(6, 4)`, `Linear(4, 1)`, sigmoids.

        **Example:** `Model()(torch.rand(5, 8)).shape == (5, 1)`.
        """

        def __init__(self, features: int = 8, hidden1: int = 6, hidden2: int = 4) -> None:
            super().__init__()
            self.linear1 = torch.nn.Linear(features, hidden1)
            self.linear2 = torch.nn.Linear(hidden1, hidden2)
            self.linear3 = torch.nn.Linear(hidden2, 1)
            self.sigmoid = torch.nn.Sigmoid()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pred1 = self.sigmoid(self.linear1(x))
            pred2 = self.sigmoid(self.linear2(pred1))
            y_pred = self.sigmoid(self.linear3(pred2))
            return y_pred

    # Named as the module attribute it is served as, so that it pickles.
    Model.__qualname__ = "Model"
    return Model


__getattr__ = lazy_classes(__name__, {"Model": _model_class})


def _make_module(shapes: Mapping[str, tuple[int, ...]]) -> Any:
    hidden1, features = shapes["linear1.weight"]
    hidden2, _ = shapes["linear2.weight"]
    return _model_class()(features, hidden1, hidden2)


def _module_loss(module: Any, d: dict[str, Any]) -> Any:
    import torch

    return torch.nn.BCELoss()(module(d["x"]), d["y"])


torch_module = ModuleStyle(
    _make_module,
    _module_loss,
    binding={
        f"{layer}.{kind}": (f"{layer}.{kind}", False)
        for layer in LAYERS
        for kind in ("weight", "bias")
    },
    training=TRAINING,
)


def jax_loss(p: dict[str, Any], d: dict[str, Any], static: dict[str, int]) -> Any:
    """The forward and BCE in `jax.numpy`; its gradient comes from `jax.grad`."""
    import jax
    import jax.numpy as jnp

    h = d["x"]
    for layer in LAYERS:
        h = jax.nn.sigmoid(h @ p[f"{layer}.weight"].T + p[f"{layer}.bias"])
    y = d["y"]
    return -jnp.mean(y * jnp.log(h) + (1 - y) * jnp.log(1 - h))


jax = JaxStyle(jax_loss)


def _loss_falls(
    model: ReferenceModel, implementation: str, *, dtype: str, device: str
) -> FidelityResult:
    return loss_falls(
        model, implementation, dtype=dtype, device=device, chunks=4,
        steps=TRAINING.steps // 4, label="BCE at epochs 0,25,...,100", fmt=".5f",
    )


def _rounding_terms(params: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray]) -> int:
    # Each layer's dot products (its fan-in) and the backward's sums over the samples (n).
    return int(
        np.shape(data["x"])[0] + sum(np.shape(params[f"{layer}.weight"])[1] for layer in LAYERS)
    )


MODEL = ReferenceModel(
    name="sigmoid_mlp",
    description="8-6-4-1 sigmoid network (the post's Model, fixed), BCE, synthetic data",
    source="seeds/003_0eb2371ae03e0a30.txt",
    default_sizes={"n": 759, "features": 8, "hidden1": 6, "hidden2": 4},
    quick_sizes={"n": 16, "features": 8, "hidden1": 6, "hidden2": 4},
    hyper={"lr": TRAINING.lr, "epochs": TRAINING.steps, "optimizer": "SGD", "loss": "BCELoss"},
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
