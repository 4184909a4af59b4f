"""The Legendre fit of sin(x): `y_pred = a + b P3(c + d x)` with a custom autograd Function.

Source: seed `001_9fce05b95afe034d.txt`, continued by the tutorial it follows ("Learning
PyTorch with Examples"): `LegendrePolynomial3(torch.autograd.Function)` computes
`P3(t) = (5 t^3 - 3 t) / 2` in `forward` (saving `t`) and `grad_output * 1.5 (5 t^2 - 1)`
in `backward`. The model `y = a + b P3(c + d x)` starts from `a = 0, b = -1, c = 0,
d = 0.3` and is trained with plain SGD, `lr = 5e-6`, for 2000 steps on
`x = linspace(-pi, pi, 2000)`, `y = sin(x)`, loss `sum((y_pred - y)**2)`.

The custom Function is the doc's point, so `torch_function` uses it directly and
`torch_module` wraps it in an `nn.Module` with four scalar `nn.Parameter`s;
`torch_autograd` differentiates the same polynomial without the Function, `jax` with
`jax.grad`, and `jax_custom_vjp` mirrors the Function with `jax.custom_vjp`.

`seed=0` gives the tutorial's init; other seeds draw an init near it (`a, c ~ 0.1 N(0,1)`,
`b ~ -1 + 0.1 N(0,1)`, `d ~ 0.3 + 0.05 N(0,1)`), where the same training is stable.

What was fixed: nothing; the post itself only names this example.
"""

from __future__ import annotations

import functools
import math
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
    "LegendrePolynomial3",
    "TRAINING",
    "jax",
    "jax_custom_vjp",
    "numpy_manual",
    "torch_autograd",
    "torch_function",
    "torch_manual",
    "torch_module",
]

CLAIM = "from a=0, b=-1, c=0, d=0.3 the loss falls over 2000 SGD steps (lr=5e-6)"

TRAINING = Training(lr=5e-6, steps=2000)
PARAMS = ("a", "b", "c", "d")
DOC_INIT = {"a": 0.0, "b": -1.0, "c": 0.0, "d": 0.3}


def make_example(seed: int, dtype: str, sizes: Mapping[str, int]) -> tuple[Arrays, Arrays]:
    """The tutorial's data and init (`seed=0`) or an init near it (other seeds)."""
    x = np.linspace(-math.pi, math.pi, sizes["points"])
    init = dict(DOC_INIT)
    if seed != 0:
        rng = np.random.default_rng(seed)
        spread = {"a": 0.1, "b": 0.1, "c": 0.1, "d": 0.05}
        init = {k: init[k] + spread[k] * rng.standard_normal() for k in PARAMS}
    params = {k: np.asarray(v, dtype=dtype) for k, v in init.items()}
    return params, {"x": x.astype(dtype), "y": np.sin(x).astype(dtype)}


def numpy_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """Forward and chain rule by hand in numpy, with the tutorial's `P3'`."""
    p, d = numpy_arrays(params, data, dtype)
    x, y = d["x"], d["y"]
    t = p["c"] + p["d"] * x
    p3 = 0.5 * (5 * t**3 - 3 * t)
    y_pred = p["a"] + p["b"] * p3
    loss = np.square(y_pred - y).sum()
    grad_y_pred = 2.0 * (y_pred - y)
    grad_t = grad_y_pred * p["b"] * 1.5 * (5 * t**2 - 1)
    grads = {
        "a": grad_y_pred.sum(),
        "b": (grad_y_pred * p3).sum(),
        "c": grad_t.sum(),
        "d": (grad_t * x).sum(),
    }
    return float(loss), {k: np.asarray(v, dtype=dtype) for k, v in grads.items()}


def torch_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """Forward and chain rule by hand on torch tensors."""
    p = torch_tensors(params, dtype=dtype, device=device)
    d = torch_tensors(data, dtype=dtype, device=device)
    x, y = d["x"], d["y"]
    t = p["c"] + p["d"] * x
    p3 = 0.5 * (5 * t**3 - 3 * t)
    y_pred = p["a"] + p["b"] * p3
    loss = (y_pred - y).pow(2).sum().item()
    grad_y_pred = 2.0 * (y_pred - y)
    grad_t = grad_y_pred * p["b"] * 1.5 * (5 * t**2 - 1)
    grads = {
        "a": grad_y_pred.sum(),
        "b": (grad_y_pred * p3).sum(),
        "c": grad_t.sum(),
        "d": (grad_t * x).sum(),
    }
    return float(loss), {k: to_numpy(v) for k, v in grads.items()}


@functools.cache
def _legendre_function() -> type:
    import torch

    class LegendrePolynomial3(torch.autograd.Function):
        """`P3(t) = (5 t^3 - 3 t) / 2` with the hand-written backward `1.5 (5 t^2 - 1)`.

        **Example:** `LegendrePolynomial3.apply(torch.tensor(1.0)) == 1.0`.
        """

        @staticmethod
        def forward(ctx: Any, input: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(input)
            return 0.5 * (5 * input**3 - 3 * input)

        @staticmethod
        def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
            (input,) = ctx.saved_tensors
            return grad_output * 1.5 * (5 * input**2 - 1)

    # Named as the module attribute it is served as, so that it pickles.
    LegendrePolynomial3.__qualname__ = "LegendrePolynomial3"
    return LegendrePolynomial3


def torch_function_loss(p: dict[str, Any], d: dict[str, Any]) -> Any:
    """The tutorial's loop body: `a + b * P3(c + d * x)` with `P3 = LegendrePolynomial3.apply`."""
    P3 = _legendre_function().apply
    y_pred = p["a"] + p["b"] * P3(p["c"] + p["d"] * d["x"])
    return (y_pred - d["y"]).pow(2).sum()


def torch_loss(p: dict[str, Any], d: dict[str, Any]) -> Any:
    """The same polynomial written out, differentiated by autograd (no custom Function)."""
    t = p["c"] + p["d"] * d["x"]
    y_pred = p["a"] + p["b"] * (0.5 * (5 * t**3 - 3 * t))
    return (y_pred - d["y"]).pow(2).sum()


torch_function = AutogradStyle(torch_function_loss, training=TRAINING)
torch_autograd = AutogradStyle(torch_loss, training=TRAINING)


@functools.cache
def _legendre_module() -> type:
    import torch

    class LegendreModel(torch.nn.Module):
        """`a + b P3(c + d x)` with four scalar `nn.Parameter`s and the custom Function.

        **Example:** `LegendreModel()(torch.linspace(-3, 3, 5)).shape == (5,)`.
        """

        def __init__(self) -> None:
            super().__init__()
            for name in PARAMS:
                self.register_parameter(name, torch.nn.Parameter(torch.tensor(DOC_INIT[name])))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            P3 = _legendre_function().apply
            return self.a + self.b * P3(self.c + self.d * x)

    # Named as the module attribute it is served as, so that it pickles.
    LegendreModel.__qualname__ = "LegendreModel"
    return LegendreModel


__getattr__ = lazy_classes(
    __name__, {"LegendrePolynomial3": _legendre_function, "LegendreModel": _legendre_module}
)


torch_module = ModuleStyle(
    lambda shapes: _legendre_module()(),
    summed_squared_error,
    binding={k: (k, False) for k in PARAMS},
    training=TRAINING,
)


def jax_loss(p: dict[str, Any], d: dict[str, Any], static: dict[str, int]) -> Any:
    """The polynomial in `jax.numpy`; its gradient comes from `jax.grad`."""
    import jax.numpy as jnp

    t = p["c"] + p["d"] * d["x"]
    y_pred = p["a"] + p["b"] * (0.5 * (5 * t**3 - 3 * t))
    return jnp.sum((y_pred - d["y"]) ** 2)


@functools.cache
def _jax_p3() -> Any:
    import jax

    @jax.custom_vjp
    def p3(t: Any) -> Any:
        return 0.5 * (5 * t**3 - 3 * t)

    def p3_fwd(t: Any) -> tuple[Any, Any]:
        return p3(t), t

    def p3_bwd(t: Any, g: Any) -> tuple[Any]:
        return (g * 1.5 * (5 * t**2 - 1),)

    p3.defvjp(p3_fwd, p3_bwd)
    return p3


def jax_custom_vjp_loss(p: dict[str, Any], d: dict[str, Any], static: dict[str, int]) -> Any:
    """`a + b P3(c + d x)` with `P3` a `jax.custom_vjp` carrying the tutorial's derivative."""
    import jax.numpy as jnp

    y_pred = p["a"] + p["b"] * _jax_p3()(p["c"] + p["d"] * d["x"])
    return jnp.sum((y_pred - d["y"]) ** 2)


jax = JaxStyle(jax_loss)
jax_custom_vjp = JaxStyle(jax_custom_vjp_loss)


def _fitted(params: Mapping[str, Any]) -> tuple[str, dict[str, float]]:
    values = {k: float(v) for k, v in params.items()}
    return "; y = {a:.4g} + {b:.4g} P3({c:.4g} + {d:.4g} x)".format(**values), values


def _loss_falls(
    model: ReferenceModel, implementation: str, *, dtype: str, device: str
) -> FidelityResult:
    return loss_falls(
        model, implementation, dtype=dtype, device=device, chunks=4,
        steps=TRAINING.steps // 4, label="loss at steps 0,500,...,2000", ratio=0.5,
        extra=_fitted,
    )


def _rounding_terms(params: Mapping[str, np.ndarray], data: Mapping[str, np.ndarray]) -> int:
    return int(np.size(data["x"]))


MODEL = ReferenceModel(
    name="legendre_fit",
    description="a + b P3(c + d x) fitted to sin(x), P3 a custom torch.autograd.Function",
    source="seeds/001_9fce05b95afe034d.txt (tutorial continuation)",
    default_sizes={"points": 2000},
    quick_sizes={"points": 50},
    hyper={"lr": TRAINING.lr, "steps": TRAINING.steps, "optimizer": "SGD", "init": dict(DOC_INIT)},
    make_example=make_example,
    implementations={
        "numpy_manual": numpy_manual,
        "torch_manual": torch_manual,
        "torch_autograd": torch_autograd,
        "torch_function": torch_function,
        "torch_module": torch_module,
        "jax": jax,
        "jax_custom_vjp": jax_custom_vjp,
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
