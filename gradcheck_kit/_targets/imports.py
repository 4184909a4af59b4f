"""Importing an optional framework, with the install command when it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingFramework", "import_framework", "installed"]

_EXTRA = {"torch": "torch", "jax": "jax"}


class MissingFramework(ImportError):
    """A framework a check or strategy needs is not installed."""


def import_framework(name: str, *, needed_for: str) -> ModuleType:
    """Import `name` (`"torch"` or `"jax"`), or raise `MissingFramework` saying what needs
    it and how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        if exc.name not in (name, None) and not str(exc.name).startswith(name + "."):
            raise  # the framework is there but one of its own imports failed
        raise MissingFramework(
            f"{needed_for} needs {name}, which is not installed. Install it with "
            f"`pip install \"gradcheck-kit[{_EXTRA[name]}]\"` (or `pip install "
            f"\"gradcheck-kit[all]\"` for torch and jax)."
        ) from None


def installed(name: str) -> bool:
    """Whether `name` can be imported (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
