"""gradcheck_kit: gradient checks you can trust, in float64 and float32.

Importing this package imports neither torch nor jax; each framework is imported the
first time a check needs it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ._report import Comparison, ComparisonKind, Element, GradientMismatch, InconclusiveCheck, Report

if TYPE_CHECKING:
    from ._check import gradcheck, gradgradcheck
    from ._module_check import check_module
    from ._matrix import CrossCheckReport, CrossCheckRow, crosscheck
    from ._reference import CompareReport, ReferenceMismatch, compare
    from ._targets import CheckInputError
    from ._tolerance import ToleranceModel

__version__ = "0.1.0"

__all__ = [
    "CheckInputError",
    "CompareReport",
    "Comparison",
    "ComparisonKind",
    "CrossCheckReport",
    "CrossCheckRow",
    "Element",
    "GradientMismatch",
    "InconclusiveCheck",
    "ReferenceMismatch",
    "Report",
    "ToleranceModel",
    "check_module",
    "compare",
    "crosscheck",
    "gradcheck",
    "gradgradcheck",
]

# Loaded on first use: the checks import numpy, and the cross-check pulls in
# reference_models; `import gradcheck_kit.pytest_plugin` must stay free of both.
_LAZY = {
    "gradcheck": "._check",
    "gradgradcheck": "._check",
    "check_module": "._module_check",
    "compare": "._reference",
    "CompareReport": "._reference",
    "ReferenceMismatch": "._reference",
    "CheckInputError": "._targets",
    "ToleranceModel": "._tolerance",
    "crosscheck": "._matrix",
    "CrossCheckReport": "._matrix",
    "CrossCheckRow": "._matrix",
}
# Exceptions show up in users' tracebacks and hypothesis reports: they carry the public
# module's name, under which they are importable.
GradientMismatch.__module__ = __name__
InconclusiveCheck.__module__ = __name__


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name], __name__)
        value = getattr(module, name)
        globals()[name] = value
        # Any of these modules loads `_targets`, whose CheckInputError a check may raise.
        targets = sys.modules.get(__name__ + "._targets")
        if targets is not None:
            targets.CheckInputError.__module__ = __name__
        if name == "ReferenceMismatch":
            value.__module__ = __name__
        return value
    raise AttributeError(f"module 'gradcheck_kit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
