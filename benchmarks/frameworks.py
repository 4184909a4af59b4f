"""Framework set-up shared by the suites: jax float64 and torch threads."""

from __future__ import annotations

__all__ = ["enable_jax_x64", "configure_torch"]


def enable_jax_x64() -> None:
    """Let jax hold float64 arrays (the float64 half of every jax measurement needs it).

    Set once for the whole benchmark process; float32 arrays stay float32.
    """
    import jax

    if not jax.config.jax_enable_x64:
        jax.config.update("jax_enable_x64", True)


def configure_torch(*, threads: int) -> None:
    """Pin torch's intra-op threads so timings are comparable between checkers."""
    import torch

    torch.set_num_threads(threads)
