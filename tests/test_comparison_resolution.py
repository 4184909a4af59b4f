"""`_comparisons/resolution.py`: comparisons turned inconclusive where nothing is resolved."""

from __future__ import annotations

import torch

import gradcheck_kit as gk


def _x(scale: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(6, dtype=torch.float64, generator=g)).requires_grad_()


def _reasons(report) -> list[str]:
    return [c.inconclusive_reason or "" for c in report.comparisons if c.inconclusive]


def test_underflowing_probes_are_inconclusive_and_normal_ones_are_not():
    tiny = gk.gradcheck(lambda x: (x * x).sum(), _x(1e-170), raise_exception=False)
    assert tiny.status == "inconclusive"
    assert any("smallest normal number" in r for r in _reasons(tiny))
    assert gk.gradcheck(lambda x: (x * x).sum(), _x(1e-150), raise_exception=False).passed


def test_outputs_stuck_at_every_step_are_inconclusive_only_where_they_move_far():
    stuck = gk.gradcheck(lambda x: torch.log(1 + x**6), _x(2e-3), raise_exception=False)
    assert stuck.status == "inconclusive"
    assert any("stayed bit for bit the same" in r for r in _reasons(stuck))


def test_outputs_independent_of_the_inputs_name_the_fix():
    w = _x(1.0, seed=1)
    report = gk.gradcheck(lambda x: (w * 2.0).sum(), (w.detach().clone().requires_grad_(),),
                          raise_exception=False)
    [c] = [c for c in report.comparisons if c.inconclusive]
    assert c.check == "dependence of the outputs on the inputs"
    assert "pass it as an argument" in c.inconclusive_reason
