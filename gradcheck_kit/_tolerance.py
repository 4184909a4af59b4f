"""The tolerance model: how far two derivative oracles may disagree, derived from the dtype.

Every tolerance in gradcheck_kit comes from this table and from the error estimates that
the finite-difference oracle returns with each value; no fixed absolute tolerance is used,
so a wrong gradient of size 1e-6 is caught as surely as one of size 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ToleranceModel", "ArrayComparison", "dtype_name"]


@dataclass(frozen=True)
class ArrayComparison:
    """Result of `ToleranceModel.compare_arrays`."""

    error: float
    tolerance: float
    margin: float
    worst_index: tuple[int, ...]
    passed: bool
    source: str


@dataclass(frozen=True)
class ToleranceModel:
    """Tolerances for one floating-point dtype.

    **Arguments:**
    - `name`: the dtype's name (`"float64"`, `"float32"`, `"bfloat16"`, `"float16"`).
    - `eps`: its unit roundoff (half the distance from 1 to the next number).
    - `fd_safety`: factor on Richardson's truncation-error estimate. The estimate is the
      size of the last correction, which usually over-states the remaining error; the
      factor covers the cases where it does not.
    - `rounding_factor`: ulps of headroom for rounding in a computed derivative, per unit of
      the sum of the magnitudes that were added to form it.
    - `precision_factor`: ulps of the reduced dtype allowed between its backward pass and
      the float64 one (normwise), before scaling by the forward's own measured error.

    **Example:** `ToleranceModel.for_dtype("float32").eps == 2.0**-24`.
    """

    name: str
    eps: float
    fd_safety: float = 8.0
    rounding_factor: float = 64.0
    precision_factor: float = 256.0

    @classmethod
    def for_dtype(cls, dtype: Any) -> ToleranceModel:
        """The model for `dtype`: a name, a numpy dtype, or a torch or jax dtype."""
        name = dtype_name(dtype)
        try:
            return _TABLE[name]
        except KeyError:
            raise ValueError(
                f"dtype={dtype!r} has no tolerance model, because gradients are only checked "
                f"in floating point. Use one of {sorted(_TABLE)}."
            ) from None

    def compare_arrays(
        self, actual: Any, reference: Any, *, terms: int = 1
    ) -> ArrayComparison:
        """Compare two computations, in this dtype, of the same array.

        The tolerance of each element is `rounding_factor * eps * sqrt(terms)` times the
        element's own magnitude plus the array's root-mean-square: rounding in a sum of
        `terms` terms grows like its square root, and the RMS term covers cancellation,
        which leaves an element small while its rounding error stays at the scale of the
        terms that produced it.
        """
        a = np.asarray(actual, dtype=np.float64)
        r = np.asarray(reference, dtype=np.float64)
        if a.shape != r.shape:
            raise ValueError(f"cannot compare arrays of shapes {a.shape} and {r.shape}")
        if r.size == 0:
            return ArrayComparison(0.0, 0.0, 0.0, (), True, "empty arrays")
        rel = self.rounding_factor * self.eps * float(np.sqrt(max(terms, 1)))
        rms = float(np.sqrt(np.mean(r * r))) if np.all(np.isfinite(r)) else 0.0
        tol = rel * (np.abs(r) + np.abs(a) + rms)
        # Two exact zeros agree; give them the smallest positive tolerance so margins stay finite.
        tol = np.maximum(tol, np.finfo(np.float64).tiny)
        err = np.abs(a - r)
        err = np.where(np.isnan(err) | (np.isnan(a) != np.isnan(r)), np.inf, err)
        margins = err / tol
        flat = int(np.argmax(margins))
        idx = tuple(int(i) for i in np.unravel_index(flat, r.shape))
        margin = float(margins.flat[flat])
        return ArrayComparison(
            error=float(err.flat[flat]),
            tolerance=float(tol.flat[flat]),
            margin=margin,
            worst_index=idx,
            passed=bool(margin <= 1.0),
            source=(
                f"{self.rounding_factor:g} ulps of {self.name} x sqrt({terms} terms) "
                f"x (|values| + rms)"
            ),
        )


_TABLE: dict[str, ToleranceModel] = {
    "float64": ToleranceModel("float64", 2.0**-53),
    "float32": ToleranceModel("float32", 2.0**-24),
    # Half precisions: few bits, so rounding dominates; fewer ulps of headroom are needed
    # for the same relative confidence.
    "float16": ToleranceModel("float16", 2.0**-11, rounding_factor=16.0, precision_factor=32.0),
    "bfloat16": ToleranceModel("bfloat16", 2.0**-8, rounding_factor=8.0, precision_factor=16.0),
}


def dtype_name(dtype: Any) -> str:
    """The canonical name of a numpy, torch or jax dtype, or of a dtype name."""
    if isinstance(dtype, str):
        name = dtype
    else:
        name = str(dtype)
        if name.startswith("torch."):
            name = name[len("torch.") :]
        else:
            try:
                name = np.dtype(dtype).name
            except TypeError:
                pass
    aliases = {"double": "float64", "float": "float32", "half": "float16"}
    return aliases.get(name, name)
