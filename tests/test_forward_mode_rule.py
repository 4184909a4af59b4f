"""Reverse against forward mode: a tolerance of both sides' rounding, and one rule.

The dot-product test allows each mode the rounding of its own terms and, where the
derivative is ill-conditioned, how far the reverse probe moves under a one-ulp change of
the inputs. Beyond that, finite differences decide, whatever the size: a wrong backward
fails, a wrong (or inaccurate) jvp rule is a note unless `check_forward_ad=True`.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from custom_functions import unary_function, with_own_rule

import gradcheck_kit as gk
from gradcheck_kit import ComparisonKind

F = torch.nn.functional


def _randn(*shape, seed, scale=1.0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    return (offset + scale * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()


def _conditioned(n, cond, seed):
    g = torch.Generator().manual_seed(seed)
    q1, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    s = torch.logspace(0, -np.log10(cond), n, dtype=torch.float64)
    return (q1 @ torch.diag(s) @ q2.T).requires_grad_()


def _offset(*shape, scale, offset):
    return lambda seed: (_randn(*shape, seed=seed, scale=scale, offset=offset),)


def _logcumsumexp(x):
    return torch.logcumsumexp(x, 0)


CONDITIONED = {
    "pinv-cond-1e4": (torch.linalg.pinv, lambda seed: (_conditioned(6, 1e4, seed),)),
    "pinv-cond-1e6": (torch.linalg.pinv, lambda seed: (_conditioned(6, 1e6, seed),)),
    "logcumsumexp": (_logcumsumexp, _offset(40, scale=3, offset=0)),
    "logcumsumexp-offset": (_logcumsumexp, _offset(40, scale=3, offset=30)),
    "layer-norm-offset": (lambda x: F.layer_norm(x, (16,)), _offset(4, 16, scale=0.01, offset=50)),
    "layer-norm-offset-cubed-sum": (
        lambda x: F.layer_norm(x, (16,)).pow(3).sum(), _offset(4, 16, scale=0.01, offset=50)
    ),
    "cumsum-offset": (lambda x: torch.cumsum(x, 0).sin(), _offset(50, scale=1, offset=1e6)),
}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("name", sorted(CONDITIONED))
def test_ill_conditioned_correct_functions_pass(name, seed):
    fn, inputs = CONDITIONED[name]
    # Through torch's operations alone forward mode is not compared: the identity Function
    # after them makes the check compare forward mode through those operations.
    report = gk.gradcheck(with_own_rule(fn), inputs(seed), seed=seed, raise_exception=False)
    assert report.passed, report
    assert any(c.kind is ComparisonKind.FORWARD_MODE for c in report.comparisons) or any(
        "forward" in n and "reverse" in n for n in report.notes
    )


@pytest.mark.parametrize("factor", [1 + 1e-6, 1.01, 1.5])
def test_a_wrong_jvp_rule_is_a_note_whatever_its_size(factor):
    fn = unary_function(torch.sin, torch.cos, jvp_factor=factor, name="SinJvp").apply
    x = _randn(7, seed=1)
    report = gk.gradcheck(fn, (x,), raise_exception=False)
    assert report.passed, report
    assert any("jvp" in n for n in report.notes)
    strict = gk.gradcheck(fn, (x,), check_forward_ad=True, raise_exception=False)
    assert not strict.passed
    assert any(c.kind is ComparisonKind.FORWARD_MODE for c in strict.failures)


@pytest.mark.parametrize("factor", [1 + 1e-6, 1.01, 1.5])
def test_a_wrong_backward_with_a_right_jvp_fails_whatever_its_size(factor):
    fn = unary_function(torch.sin, torch.cos, factor=factor, jvp_factor=1.0, name="SinBwd").apply
    report = gk.gradcheck(fn, (_randn(7, seed=2),), raise_exception=False)
    assert report.status == "failed"
    assert not any("jvp" in n for n in report.notes)
