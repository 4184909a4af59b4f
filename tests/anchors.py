"""torch's own verdicts, the reference the drop-in tests compare gradcheck_kit with."""

from __future__ import annotations

import warnings

import torch


def torch_verdict(check, fn, inputs, **kw) -> bool:
    """`check(fn, inputs, **kw)` (torch's gradcheck or gradgradcheck) as a bool; any
    exception it raises counts as a failure."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bool(check(fn, inputs, **kw))
        except Exception:
            return False


def x64(*shape, seed=0):
    """A seeded float64 input that requires grad."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()
