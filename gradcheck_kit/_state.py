"""Keeping the caller's global state as it was: random generators, under one lock."""

from __future__ import annotations

import contextlib
import random
import sys
import threading
from typing import Iterator

import numpy as np

__all__ = ["preserved_global_state"]

# Checks reseed the global generators before every evaluation (so that stochastic forwards
# repeat themselves); two checks interleaving in threads would see each other's draws.
# One re-entrant lock makes concurrent checks behave exactly as sequential ones.
_LOCK = threading.RLock()


@contextlib.contextmanager
def preserved_global_state() -> Iterator[None]:
    """Run a check, then restore the torch, numpy and `random` generators, even on error."""
    with _LOCK:
        py_state = random.getstate()
        np_state = np.random.get_state()
        torch = sys.modules.get("torch")
        torch_state = torch.random.get_rng_state() if torch is not None else None
        cuda_states = None
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            cuda_states = torch.cuda.get_rng_state_all()
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch = sys.modules.get("torch")
            if torch is not None:
                if torch_state is not None:
                    torch.random.set_rng_state(torch_state)
                if cuda_states is not None:
                    torch.cuda.set_rng_state_all(cuda_states)
