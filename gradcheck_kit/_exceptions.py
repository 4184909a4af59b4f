"""The exception a failing check raises, shaped to the framework its users catch.

`GradientMismatch` is an `AssertionError` (a failed check reads as a failed assertion in
any test runner). Torch users catch `torch.autograd.gradcheck.GradcheckError` (a
`RuntimeError`); `except` matches only real subclasses, so for torch checks the raised
class inherits from both. Both bases have the plain `BaseException` instance layout, so
the combined class is valid. Importing this module imports no framework.
"""

from __future__ import annotations

from ._report import GradientMismatch

__all__ = ["mismatch_class_for"]


def mismatch_class_for(framework: str) -> type[GradientMismatch]:
    """The exception class to raise for a failing check of a `framework` function.

    `"torch"`: a subclass of both `GradientMismatch` and torch's `GradcheckError` (so
    `except AssertionError`, `except RuntimeError`, `except GradcheckError` and
    `except GradientMismatch` all catch it), built once. Other frameworks:
    `GradientMismatch` itself.
    """
    if framework == "torch":
        from ._targets.torch_options import torch_gradient_mismatch

        return torch_gradient_mismatch()
    if framework in ("jax", "numpy"):
        return GradientMismatch
    raise ValueError(
        f"framework={framework!r} is not a framework gradcheck_kit checks; use 'torch', "
        f"'jax' or 'numpy'"
    )
