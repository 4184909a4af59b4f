"""Numpy at the boundary: casting an example's arrays to the dtype an implementation runs in."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._model import Arrays

__all__ = ["cast", "numpy_arrays"]


def cast(values: Mapping[str, object], dtype: str) -> Arrays:
    """Copies of `values` as numpy arrays; floating ones in `dtype`, integer ones unchanged."""
    if not isinstance(values, Mapping):
        raise TypeError(
            f"expected a mapping of names to arrays, got {type(values).__name__}; pass a dict "
            f"such as the ones ReferenceModel.example returns."
        )
    out = {}
    for name, value in values.items():
        a = np.asarray(value)
        if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
            out[name] = a.copy()
        else:
            out[name] = a.astype(dtype, copy=True)
    return out


def numpy_arrays(
    params: Mapping[str, object], data: Mapping[str, object], dtype: str
) -> tuple[Arrays, Arrays]:
    """`cast` applied to both the parameters and the data."""
    return cast(params, dtype), cast(data, dtype)
