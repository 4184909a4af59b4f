"""The sigmoid written by hand, `1 / (1 + exp(-x))`, against `torch.sigmoid` and `nn.Sigmoid`.

Source: seed `004_2edbd753a91f33fa.txt` ("PyTorch: The Basics", translated):
`torch.manual_seed(7)`, `x = torch.randn(2, 2)`, `Sigmoid = 1 / (1 + torch.exp(-x))`,
`nn.Sigmoid()`, and sums of products `(a * b).sum()`.

The model is `loss = (v * sigmoid(x)).sum()` with param `x` and data `v` (both
`randn(rows, cols)`, 2 x 2 as in the doc, from numpy's generator seeded by `seed` rather
than torch's `manual_seed(7)`, so that every style receives the same numbers). The hand
formula is differentiated by hand (`s (1 - s)`), by autograd and by `jax.grad`;
`torch_sigmoid` and `torch_module` use the built-ins. The doc trains nothing, so the model
has no training loop.

What was fixed: the post's `self.output = nn.Linearse lf.sigmoid = nn.Sigmoid()` is two
statements run together; only the sigmoid matters here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._arrays import numpy_arrays
from ._claims import agree, claim_result, claims
from ._jax_style import JaxStyle
from ._model import Arrays, FidelityCheck, FidelityResult, ReferenceModel
from ._torch_style import AutogradStyle, to_numpy, torch_tensors

__all__ = [
    "MODEL",
    "jax",
    "numpy_manual",
    "torch_autograd",
    "torch_manual",
    "torch_module",
    "torch_sigmoid",
]

CLAIM = "1 / (1 + exp(-x)) has the value and gradient of torch.sigmoid / nn.Sigmoid"


def make_example(seed: int, dtype: str, sizes: Mapping[str, int]) -> tuple[Arrays, Arrays]:
    """`x, v ~ randn(rows, cols)`."""
    rng = np.random.default_rng(seed)
    shape = (sizes["rows"], sizes["cols"])
    return {"x": rng.standard_normal(shape).astype(dtype)}, {
        "v": rng.standard_normal(shape).astype(dtype)
    }


def numpy_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """`1 / (1 + exp(-x))` and its derivative `s (1 - s)` by hand."""
    p, d = numpy_arrays(params, data, dtype)
    s = 1 / (1 + np.exp(-p["x"]))
    return float((d["v"] * s).sum()), {"x": d["v"] * s * (1 - s)}


def torch_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """The doc's `1 / (1 + torch.exp(-x))`, derivative by hand."""
    p = torch_tensors(params, dtype=dtype, device=device)
    v = torch_tensors(data, dtype=dtype, device=device)["v"]
    s = 1 / (1 + (-p["x"]).exp())
    return float((v * s).sum().item()), {"x": to_numpy(v * s * (1 - s))}


def torch_loss(p: dict[str, Any], d: dict[str, Any]) -> Any:
    """The doc's `1 / (1 + torch.exp(-x))`, differentiated by autograd."""
    import torch

    return (d["v"] * (1 / (1 + torch.exp(-p["x"])))).sum()


def torch_sigmoid_loss(p: dict[str, Any], d: dict[str, Any]) -> Any:
    """`torch.sigmoid`, differentiated by autograd."""
    import torch

    return (d["v"] * torch.sigmoid(p["x"])).sum()


def torch_module_loss(p: dict[str, Any], d: dict[str, Any]) -> Any:
    """`nn.Sigmoid()`, differentiated by autograd (the module has no parameters; `x` is its input)."""
    import torch

    return (d["v"] * torch.nn.Sigmoid()(p["x"])).sum()


torch_autograd = AutogradStyle(torch_loss)
torch_sigmoid = AutogradStyle(torch_sigmoid_loss)
torch_module = AutogradStyle(torch_module_loss)


def jax_loss(p: dict[str, Any], d: dict[str, Any], static: dict[str, int]) -> Any:
    """`1 / (1 + exp(-x))` in `jax.numpy`; its gradient comes from `jax.grad`."""
    import jax.numpy as jnp

    return jnp.sum(d["v"] * (1 / (1 + jnp.exp(-p["x"]))))


jax = JaxStyle(jax_loss)


def _matches_builtin(
    model: ReferenceModel, implementation: str, *, dtype: str, device: str
) -> FidelityResult:
    params, data = model.example(seed=0, dtype=dtype)
    loss_ref, grads_ref = torch_sigmoid(params, data, dtype=dtype, device=device)
    loss, grads = model.implementations[implementation](params, data, dtype=dtype, device=device)
    same = agree(
        dtype,
        {"value": (loss, loss_ref), "grad": (grads["x"], grads_ref["x"])},
        terms=model.rounding_terms(params, data),
    )
    return claim_result(
        model, "matches_torch_sigmoid", implementation, dtype,
        passed=same.passed,
        observed=f"value {same.describe('value')}; gradient {same.describe('grad')}",
        figures=same.margins(),
    )


MODEL = ReferenceModel(
    name="hand_sigmoid",
    description="(v * sigmoid(x)).sum() with sigmoid written as 1 / (1 + exp(-x)) and built in",
    source="seeds/004_2edbd753a91f33fa.txt",
    default_sizes={"rows": 2, "cols": 2},
    quick_sizes={"rows": 2, "cols": 2},
    hyper={},
    make_example=make_example,
    implementations={
        "numpy_manual": numpy_manual,
        "torch_manual": torch_manual,
        "torch_autograd": torch_autograd,
        "torch_sigmoid": torch_sigmoid,
        "torch_module": torch_module,
        "jax": jax,
    },
    training=None,
    fidelity=claims(
        FidelityCheck(
            name="matches_torch_sigmoid",
            claim=CLAIM,
            run=_matches_builtin,
        )
    ),
    # exp, one addition, one division, and the product and sum with v (2 x 2 terms).
    rounding_terms=lambda params, data: int(4 + np.size(params["x"])),
)
