"""gradcheck_kit: gradient checks you can trust, in float64 and float32.

Importing this package imports neither torch nor jax; each framework is imported the
first time a check needs it.
"""

from __future__ import annotations

from typing import Any

from ._check import gradcheck, gradgradcheck
from ._report import Comparison, Element, GradientMismatch, Report
from ._targets import CheckInputError
from ._tolerance import ToleranceModel

__version__ = "0.1.0"

__all__ = [
    "CheckInputError",
    "Comparison",
    "CrossCheckReport",
    "CrossCheckRow",
    "Element",
    "GradientMismatch",
    "Report",
    "ToleranceModel",
    "crosscheck",
    "gradcheck",
    "gradgradcheck",
]

# Names whose modules pull in reference_models (and through it numpy-heavy setup): loaded
# on first use so that `import gradcheck_kit` stays cheap for the pytest plugin.
_LAZY = {
    "crosscheck": "._matrix",
    "CrossCheckReport": "._matrix",
    "CrossCheckRow": "._matrix",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name], __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'gradcheck_kit' has no attribute {name!r}")
