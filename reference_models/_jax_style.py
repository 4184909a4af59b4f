"""The jax style behind the implementation contract: `jax.value_and_grad`, compiled once.

Float64 runs inside `jax.enable_x64(True)` (thread-local), never by flipping the global
configuration. Jax is imported when the implementation is first called. Training uses
`reference_models.sgd_steps` on these gradients: a separately compiled update step would
double the compilations, which dominate jax's cost at these sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ._arrays import cast
from ._model import Arrays, check_dtype

__all__ = ["JaxStyle"]


class JaxStyle:
    """An implementation from a loss written with `jax.numpy`, differentiated by `jax.grad`.

    **Arguments:**
    - `loss`: `loss(params, data, static) -> scalar`; `params` and `data` are dicts of jax
      arrays, `static` a dict of the data entries named in `static` as Python ints (used
      for Python control flow, which jax must see at trace time).
    - `static`: names of integer data entries passed as Python values. Each distinct value
      compiles once.

    **Example:** `JaxStyle(lambda p, d, s: ((p["w"] * d["x"] - d["y"]) ** 2).sum())`.
    """

    def __init__(self, loss: Callable[..., Any], *, static: Sequence[str] = ()) -> None:
        self.loss = loss
        self.static = tuple(static)
        self._compiled: Any = None
        self.__doc__ = loss.__doc__

    def _function(self) -> Any:
        if self._compiled is None:
            import jax

            def value_and_grad(params: Any, data: Any, static: tuple[tuple[str, int], ...]) -> Any:
                return jax.value_and_grad(self.loss)(params, data, dict(static))

            self._compiled = jax.jit(value_and_grad, static_argnums=2)
        return self._compiled

    def __call__(
        self,
        params: Mapping[str, np.ndarray],
        data: Mapping[str, np.ndarray],
        *,
        dtype: str = "float64",
        device: str = "cpu",
    ) -> tuple[float, Arrays]:
        import jax
        import jax.numpy as jnp

        dtype = check_dtype(dtype)
        with jax.enable_x64(dtype == "float64"):
            d, static = self._split(data, dtype)
            p = {k: jnp.asarray(v) for k, v in cast(params, dtype).items()}
            value, grads = self._function()(p, d, static)
            return float(value), {k: np.array(g, dtype=dtype) for k, g in grads.items()}

    def _split(
        self, data: Mapping[str, np.ndarray], dtype: str
    ) -> tuple[dict[str, Any], tuple[tuple[str, int], ...]]:
        import jax.numpy as jnp

        d = cast(data, dtype)
        static = tuple(sorted((k, int(d.pop(k))) for k in self.static))
        return {k: jnp.asarray(v) for k, v in d.items()}, static
