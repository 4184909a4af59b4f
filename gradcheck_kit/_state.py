"""Keeping the caller's global state as it was: random generators, under one lock."""

from __future__ import annotations

import contextlib
import random
import threading
from typing import Iterator

import numpy as np

from ._targets._rng import save_framework_rng

__all__ = ["preserved_global_state"]

# Checks reseed the global generators before every evaluation (so that stochastic forwards
# repeat themselves); two checks interleaving in threads would see each other's draws.
# One re-entrant lock makes concurrent checks behave exactly as sequential ones.
_LOCK = threading.RLock()


@contextlib.contextmanager
def preserved_global_state() -> Iterator[None]:
    """Run a check, then restore the framework, numpy and `random` generators, even on error."""
    with _LOCK:
        py_state = random.getstate()
        np_state = np.random.get_state()
        restore_framework = save_framework_rng()
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            restore_framework()
