"""The linear model `y = w x` without bias, trained one sample at a time.

Source: seed `003_0eb2371ae03e0a30.txt` ("pytorch入门7--自动求导和神经网络"), section 一:
`x_data = [1.0, 2.0, 3.0]`, `y_data = [2.0, 4.0, 6.0]`, `w = torch.tensor([1.0],
requires_grad=True)`, per-sample loss `(x w - y)^2`; for 1000 epochs, for each sample:
`l.backward()`, `w.data = w.data - 0.01 * w.grad.data`, `w.grad.data.zero_()`. The post
reports that `w` rises to 2 and that `forward(4)` is close to 8.

Params `w` (shape (1,)); data `x = 1..samples`, `y = 2 x`. The model's loss is the sum
of the per-sample losses (what one epoch's gradients add up to); a training step uses one
sample (`batch(data, t)` is sample `t mod samples`), so 1000 epochs are 3000 steps.
`seed=0` gives the post's `w = 1.0`; other seeds draw `w ~ randn`.

What was fixed: the post's code is flattened onto single lines; the loop is restored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._arrays import numpy_arrays
from ._claims import claim_result, claims
from ._jax_style import JaxStyle
from ._model import Arrays, FidelityCheck, FidelityResult, ReferenceModel, Training
from ._torch_style import AutogradStyle, ModuleStyle, grad_or_zeros, to_numpy, torch_tensors
from ._training import train

__all__ = [
    "MODEL",
    "TRAINING",
    "jax",
    "numpy_manual",
    "torch_autograd",
    "torch_manual",
    "torch_module",
]

CLAIM = "after 1000 epochs of per-sample SGD from w = 1, w = 2 and forward(4) ~ 8"

EPOCHS = 1000


def _one_sample(data: Mapping[str, np.ndarray], step: int) -> Mapping[str, np.ndarray]:
    i = step % len(data["x"])
    return {"x": data["x"][i : i + 1], "y": data["y"][i : i + 1]}


TRAINING = Training(lr=0.01, steps=EPOCHS * 3, batch=_one_sample)


def make_example(seed: int, dtype: str, sizes: Mapping[str, int]) -> tuple[Arrays, Arrays]:
    """`x = 1..samples`, `y = 2x`; `w = 1.0` for `seed=0`, else `w ~ randn`."""
    x = np.arange(1, sizes["samples"] + 1, dtype=np.float64)
    w = 1.0 if seed == 0 else np.random.default_rng(seed).standard_normal()
    return {"w": np.asarray([w], dtype=dtype)}, {"x": x.astype(dtype), "y": (2 * x).astype(dtype)}


def numpy_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """`sum((x w - y)^2)` and its gradient `sum(2 x (x w - y))` by hand."""
    p, d = numpy_arrays(params, data, dtype)
    w, x, y = p["w"], d["x"], d["y"]
    r = x * w - y
    return float((r**2).sum()), {"w": np.asarray([(2 * x * r).sum()], dtype=dtype)}


def torch_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """The same on torch tensors."""
    p = torch_tensors(params, dtype=dtype, device=device)
    d = torch_tensors(data, dtype=dtype, device=device)
    r = d["x"] * p["w"] - d["y"]
    return float((r**2).sum().item()), {"w": to_numpy((2 * d["x"] * r).sum().reshape(1))}


def torch_loss(p: dict[str, Any], d: dict[str, Any]) -> Any:
    """The post's `loss(x, y) = (forward(x) - y) ** 2` with `forward(x) = x * w`, summed."""
    return ((d["x"] * p["w"] - d["y"]) ** 2).sum()


class _PostLoop(AutogradStyle):
    def train(
        self,
        params: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        *,
        steps: int,
        dtype: str = "float64",
        device: str = "cpu",
    ) -> Arrays:
        """The post's loop: `l.backward()`, `w.data = w.data - 0.01 * w.grad.data`, `w.grad.data.zero_()`."""
        w = torch_tensors(params, dtype=dtype, device=device, requires_grad=True)["w"]
        for t in range(steps):
            d = torch_tensors(TRAINING.batch(data, t), dtype=dtype, device=device)
            self.loss({"w": w}, d).backward()
            w.data = w.data - TRAINING.lr * w.grad.data
            w.grad.data.zero_()
        return {"w": to_numpy(w)}


torch_autograd = _PostLoop(torch_loss, training=TRAINING)


def _make_module(shapes: Mapping[str, tuple[int, ...]]) -> Any:
    import torch

    return torch.nn.Linear(1, 1, bias=False)


def _module_loss(module: Any, d: dict[str, Any]) -> Any:
    import torch

    return torch.nn.MSELoss(reduction="sum")(module(d["x"].unsqueeze(-1)).squeeze(-1), d["y"])


def _load(module: Any, t: dict[str, Any]) -> None:
    module.weight.copy_(t["w"].reshape(1, 1))


def _read(module: Any, grad: bool) -> Arrays:
    weight = grad_or_zeros(module.weight) if grad else to_numpy(module.weight)
    return {"w": weight.reshape(1)}


torch_module = ModuleStyle(_make_module, _module_loss, load=_load, read=_read, training=TRAINING)


def jax_loss(p: dict[str, Any], d: dict[str, Any], static: dict[str, int]) -> Any:
    """`sum((x w - y)^2)`; its gradient comes from `jax.grad`."""
    import jax.numpy as jnp

    return jnp.sum((d["x"] * p["w"] - d["y"]) ** 2)


jax = JaxStyle(jax_loss)


def _w_to_two(
    model: ReferenceModel, implementation: str, *, dtype: str, device: str
) -> FidelityResult:
    params, data = model.example(seed=0, dtype=dtype)
    steps = EPOCHS * len(data["x"])
    w = float(
        train(model, implementation, params, data, steps=steps, dtype=dtype, device=device)["w"][0]
    )
    prediction = 4 * w
    # Each epoch shrinks w - 2 by (1 - 0.02)(1 - 0.08)(1 - 0.18); after 1000 epochs only
    # rounding is left, a few ulps of the dtype.
    close = abs(w - 2) <= 1e-5 and abs(prediction - 8) <= 4e-5
    return claim_result(
        model, "w_to_two", implementation, dtype,
        passed=bool(close),
        observed=f"w = {w:.8g}, forward(4) = {prediction:.8g}",
        figures={"w": w, "forward_4": prediction},
    )


MODEL = ReferenceModel(
    name="linear_w",
    description="y = w x without bias, squared error, per-sample SGD",
    source="seeds/003_0eb2371ae03e0a30.txt",
    default_sizes={"samples": 3},
    quick_sizes={"samples": 3},
    hyper={
        "lr": TRAINING.lr,
        "epochs": EPOCHS,
        "optimizer": "SGD, one sample per step",
        "w_init": 1.0,
    },
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
            name="w_to_two",
            claim=CLAIM,
            run=_w_to_two,
        )
    ),
    rounding_terms=lambda params, data: int(np.size(data["x"])),
)
