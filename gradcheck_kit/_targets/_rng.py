"""Saving and restoring the frameworks' global random generators.

Only frameworks already imported are touched (looked up in `sys.modules`), so saving
state never imports torch.
"""

from __future__ import annotations

import copy
import random
import sys
from typing import Any, Callable

import numpy as np

__all__ = ["fresh_generator", "is_generator", "save_framework_rng"]


def is_generator(x: Any) -> bool:
    """Whether `x` is a random generator object passed as an argument.

    torch, numpy (`Generator`, `RandomState`) and Python's `random.Random` generators:
    each evaluation gets its own copy in the caller's state (`fresh_generator`).
    """
    if isinstance(x, (np.random.Generator, np.random.RandomState, random.Random)):
        return True
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Generator)


def fresh_generator(x: Any) -> Any:
    """A copy of generator `x` in its current state, so that every evaluation draws the same
    numbers (finite differences then see one function) and the caller's is not advanced."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Generator):
        fresh = torch.Generator(device=x.device)
        fresh.set_state(x.get_state())
        return fresh
    return copy.deepcopy(x)


def save_framework_rng() -> Callable[[], None]:
    """Snapshot torch's CPU and (initialised) CUDA generators; return a restorer."""
    torch = sys.modules.get("torch")
    if torch is None:
        return lambda: None
    cpu_state: Any = torch.random.get_rng_state()
    cuda_states = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda_states = torch.cuda.get_rng_state_all()

    def restore() -> None:
        torch.random.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)

    return restore
