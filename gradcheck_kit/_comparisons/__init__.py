"""The comparisons: each sets two derivative oracles against each other for one pair.

One module per kind (`ComparisonKind`). Each comparison is a function of explicit inputs
(the `BasePoint`, the oracles' outputs, the `Tolerances`) returning a `Comparison`; none
calls the target, so each can be run and tested alone.
"""

from __future__ import annotations

from .determinism import DETERMINISM_CHECK, compare_determinism
from .finite_differences import compare_finite_differences, finite_difference_check
from .forward_mode import (
    FORWARD_MODE_CHECK,
    compare_forward_mode,
    forward_rule_disagreement,
    subgradient_disagreement,
)
from .precision import compare_precision, forward_amplification, precision_check

__all__ = [
    "DETERMINISM_CHECK",
    "FORWARD_MODE_CHECK",
    "compare_determinism",
    "compare_finite_differences",
    "compare_forward_mode",
    "compare_precision",
    "finite_difference_check",
    "forward_amplification",
    "forward_rule_disagreement",
    "precision_check",
    "subgradient_disagreement",
]
