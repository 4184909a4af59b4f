"""The determinism comparison alone: two gradient sets from identical backward passes."""

from __future__ import annotations

import numpy as np

from gradcheck_kit import ComparisonKind
from gradcheck_kit._comparisons import DETERMINISM_CHECK, compare_determinism

NAMES = ["a", "b"]


def grads():
    return [np.arange(3.0), np.arange(6.0).reshape(2, 3)]


def test_identical_passes_agree():
    c = compare_determinism(grads(), grads(), input_names=NAMES, output_name="y", nondet_tol=0.0)
    assert c.passed and c.kind is ComparisonKind.DETERMINISM and c.check == DETERMINISM_CHECK
    assert c.error == 0.0 and not c.worst


def test_different_passes_fail_at_the_element_that_differs():
    second = grads()
    second[1][1, 2] += 1e-6
    c = compare_determinism(grads(), second, input_names=NAMES, output_name="y", nondet_tol=0.0)
    assert not c.passed
    assert c.input == "b"
    [e] = c.worst
    assert e.input_index == (1, 2) and e.analytic == 5.0 and e.numeric == 5.0 + 1e-6
    assert c.error == abs(1e-6 + 5.0 - 5.0)
    assert "nondet_tol" in c.notes[0]


def test_nondet_tol_allows_small_differences():
    second = grads()
    second[0][0] += 1e-6
    c = compare_determinism(grads(), second, input_names=NAMES, output_name="y", nondet_tol=1e-5)
    assert c.passed
