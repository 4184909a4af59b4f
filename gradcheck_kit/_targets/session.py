"""Framework objects for the pytest plugin: dtype objects for fixtures, one-off warm-up.

Imported by the plugin only once a test needs it; each framework is imported only when
the test's module has imported it already.
"""

from __future__ import annotations

import sys
import warnings
from types import ModuleType
from typing import Any

__all__ = ["framework_dtype", "framework_of_module", "warm_up"]

_WARMED: set[str] = set()


def framework_of_module(module: ModuleType | None) -> str:
    """`"torch"`, `"jax"` or `"numpy"`: the framework a test module works with.

    Torch if the module's namespace holds torch (or a torch submodule), else jax, else
    numpy: the framework whose dtype objects the module's tests can pass as `dtype=`.
    """
    names = vars(module) if module is not None else {}
    roots = {
        getattr(value, "__name__", "").partition(".")[0]
        for value in names.values()
        if isinstance(value, ModuleType)
    }
    for framework in ("torch", "jax"):
        if framework in roots:
            return framework
    return "numpy"


def framework_dtype(name: str, framework: str) -> Any:
    """The dtype object named `name` (`"float32"`) in `framework`.

    `torch.float32` for torch; for jax and numpy a `numpy.dtype` (jax takes numpy's
    dtypes; bfloat16 comes from ml_dtypes, as in jax).
    """
    if framework == "torch":
        import torch

        return getattr(torch, name)
    import numpy as np

    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def warm_up() -> None:
    """Pay the one-off cost of the first check of each loaded framework, once a process.

    The first torch check imports a part of torch, and the first forward-mode comparison
    through an operation with a Python number imports `torch._dynamo` for its rule (about
    0.7 s); inside a hypothesis test that counts against the first example's deadline.
    Only frameworks already imported are warmed up, and their import-time warnings are
    not the user's concern, so they are silenced here.
    """
    from .. import gradcheck

    for framework in ("torch", "jax"):
        if framework in _WARMED or framework not in sys.modules:
            continue
        _WARMED.add(framework)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if framework == "torch":
                import torch

                x = torch.linspace(0.5, 1.0, 3, dtype=torch.float64, requires_grad=True)
                # mode="full": forward mode runs through torch's own operations too.
                gradcheck(lambda x: torch.sin(x) * 2, x, mode="full", raise_exception=False)
            else:
                import jax.numpy as jnp

                gradcheck(jnp.sin, jnp.linspace(0.5, 1.0, 3), raise_exception=False)
