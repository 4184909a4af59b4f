"""Verdicts do not depend on units: checking c * f(s * y) at y = x / s is checking f at x.

Scaling by powers of two is exact and commutes with rounding (away from overflow and
underflow), so every evaluation, gradient and finite difference of the rescaled function is
the original's times a power of two. A tolerance with an absolute floor, or any term not
in the outputs' units, breaks the equivalence; a scale-invariant one keeps every margin.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gradcheck_kit as gk
from benchmarks.zoo import zoo_cases

# (s, c): inputs divided by s, outputs multiplied by c.
# Within each dtype's range: the zoo's smallest values (1e-21 J) stay normal numbers and
# its largest (2^60 var(exp(x))) finite.
RESCALINGS = {
    "float64": [(2.0**-40, 2.0**70), (2.0**30, 2.0**-50), (2.0**-8, 2.0**-30)],
    "float32": [(2.0**-20, 2.0**30), (2.0**16, 2.0**-24), (2.0**-8, 2.0**-30)],
}
# Cases whose own arithmetic is not exact under rescaling, with why; they are left out.
NOT_EXACT = {
    # The backward rounds to float16 inside: 2^70 in the output gradient overflows it.
    "large_loss_offset_backward_in_float16": "float16's range",
}
# Cases whose verdict is compared, not their margins: the backward's rounding depends on
# the units of the output gradient.
VERDICT_ONLY = {
    # torch's logcumsumexp backward works on the logarithm of the output gradient, and
    # log(c g) = log(c) + log(g) is rounded.
    "logcumsumexp_correct",
}
CASES = [
    c for c in zoo_cases()
    if c.framework == "torch" and c.order == 1 and c.category != "nondeterministic"
    and c.name not in NOT_EXACT
]


def rescaled(fn, s: float, c: float):
    def scaled(*ys):
        out = fn(*(y * s if _scalable(y) else y for y in ys))
        return tuple(o * c for o in out) if isinstance(out, tuple) else out * c
    return scaled


def _scalable(x) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point()


def _inputs_over(inputs, s: float):
    return tuple(
        (x.detach() / s).requires_grad_(x.requires_grad) if _scalable(x) else x for x in inputs
    )


def _summary(report):
    return report.status, [
        (c.check, c.input, c.output, c.status, c.error / c.tolerance if c.tolerance else c.error)
        for c in report.comparisons
    ]


def _fresh(case, dtype: str):
    problem = case.build(dtype)
    return problem.fn, problem.inputs


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_verdict_and_margins_do_not_depend_on_units(case, dtype):
    fn, inputs = _fresh(case, dtype)
    base = _summary(gk.gradcheck(fn, inputs, raise_exception=False))
    for s, c in RESCALINGS[dtype]:
        fn, inputs = _fresh(case, dtype)
        if not any(bool(x.detach().ne(0).any()) for x in inputs if _scalable(x)):
            # An input that is all zeros has no scale of its own: its probe has unit size
            # in any units, so only the outputs' units can change the check's numbers.
            s = 1.0
        scaled = _summary(gk.gradcheck(rescaled(fn, s, c), _inputs_over(inputs, s),
                                       raise_exception=False))
        assert scaled[0] == base[0], (s, c)
        assert len(scaled[1]) == len(base[1])
        for a, b in zip(scaled[1], base[1]):
            assert a[:4] == b[:4], (s, c)
            if case.name not in VERDICT_ONLY:
                assert math.isclose(a[4], b[4], rel_tol=1e-9, abs_tol=1e-12), (s, c, a, b)


def test_the_rescaling_is_exact():
    # What the equivalence rests on: the rescaled function's values are the original's
    # times c, bit for bit.
    x = torch.tensor(np.random.default_rng(0).standard_normal(7))
    f = lambda a: torch.log1p(a.exp()).cumsum(0)
    for s, c in RESCALINGS["float64"]:
        assert torch.equal(rescaled(f, s, c)(x / s), f(x) * c)
