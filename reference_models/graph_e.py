"""The computation-graph example `e = (a + b) * (b + 1)`: gradients add along paths.

Source: seed `003_0eb2371ae03e0a30.txt` ("pytorch入门7--自动求导和神经网络"), section 一:
with `c = a + b` and `d = b + 1`, `e = c * d`; `de/da = d = b + 1`, and `b` reaches `e`
along two paths, so `de/db = d + c = (b + 1) + (a + b)`.

Params `a`, `b` (scalars, standard normal from numpy's generator seeded by `seed`); no
data. The post trains nothing here, so the model has no training loop.

What was fixed: the post's figures (the graph and its values) are images that did not
survive; the example is checked against the closed-form derivatives above.
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

__all__ = ["MODEL", "jax", "numpy_manual", "torch_autograd", "torch_manual"]

CLAIM = "de/da = b + 1 and de/db = (b + 1) + (a + b): b's two paths add"


def make_example(seed: int, dtype: str, sizes: Mapping[str, int]) -> tuple[Arrays, Arrays]:
    """`a, b ~ randn()`; no data."""
    rng = np.random.default_rng(seed)
    return {
        "a": np.asarray(rng.standard_normal(), dtype=dtype),
        "b": np.asarray(rng.standard_normal(), dtype=dtype),
    }, {}


def numpy_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """Forward through `c = a + b`, `d = b + 1`, `e = c d`; backward adds b's two paths."""
    p, _ = numpy_arrays(params, data, dtype)
    c = p["a"] + p["b"]
    d = p["b"] + 1
    e = c * d
    grad_c, grad_d = d, c
    return float(e), {
        "a": np.asarray(grad_c, dtype=dtype),
        "b": np.asarray(grad_c + grad_d, dtype=dtype),
    }


def torch_manual(
    params: Mapping[str, np.ndarray],
    data: Mapping[str, np.ndarray],
    *,
    dtype: str = "float64",
    device: str = "cpu",
) -> tuple[float, Arrays]:
    """The same on torch tensors."""
    p = torch_tensors(params, dtype=dtype, device=device)
    c = p["a"] + p["b"]
    d = p["b"] + 1
    e = c * d
    return float(e.item()), {"a": to_numpy(d), "b": to_numpy(d + c)}


def torch_loss(p: dict[str, Any], d: dict[str, Any]) -> Any:
    """`(a + b) * (b + 1)` on tensors with `requires_grad`, as in the post."""
    return (p["a"] + p["b"]) * (p["b"] + 1)


torch_autograd = AutogradStyle(torch_loss)


def jax_loss(p: dict[str, Any], d: dict[str, Any], static: dict[str, int]) -> Any:
    """`(a + b) * (b + 1)`; its gradient comes from `jax.grad`."""
    return (p["a"] + p["b"]) * (p["b"] + 1)


jax = JaxStyle(jax_loss)


def _paths_add(
    model: ReferenceModel, implementation: str, *, dtype: str, device: str
) -> FidelityResult:
    params, data = model.example(seed=0, dtype=dtype)
    _, grads = model.implementations[implementation](params, data, dtype=dtype, device=device)
    a, b = float(params["a"]), float(params["b"])
    expected = {"a": b + 1, "b": (b + 1) + (a + b)}
    # Each closed form is two or three additions of the example's values.
    closed = agree(dtype, {k: (grads[k], expected[k]) for k in expected}, terms=3)
    return claim_result(
        model, "paths_add", implementation, dtype,
        passed=closed.passed,
        observed=", ".join(
            f"de/d{k} = {float(grads[k]):.10g} (closed form {expected[k]:.10g})" for k in expected
        ),
        figures=closed.margins(),
    )


MODEL = ReferenceModel(
    name="graph_e",
    description="e = (a + b) * (b + 1): b reaches e along two paths and its gradients add",
    source="seeds/003_0eb2371ae03e0a30.txt",
    default_sizes={},
    quick_sizes={},
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
            name="paths_add",
            claim=CLAIM,
            run=_paths_add,
        )
    ),
    rounding_terms=lambda params, data: 3,
)
