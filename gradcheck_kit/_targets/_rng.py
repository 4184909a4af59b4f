"""Saving and restoring the frameworks' global random generators.

Only frameworks already imported are touched (looked up in `sys.modules`), so saving
state never imports torch.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

__all__ = ["save_framework_rng"]


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
