"""The bug zoo: coverage of issue 2's categories, and ground truth confirmed independently."""

from __future__ import annotations

import pytest

from benchmarks.ground_truth import case_truth
from benchmarks.zoo import zoo_cases

CASES = zoo_cases()
REQUIRED_CATEGORIES = {
    "sign/factor/transpose",
    "reused input",
    "reduction",
    "element/region",
    "tiny gradients",
    "huge values",
    "kinks",
    "kink control",
    "stale saved tensor",
    "detach/.data",
    "nondeterministic",
    "second order",
    "hard float32 (correct)",
    "control",
}


def test_zoo_is_large_and_names_are_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) >= 40
    assert len(set(names)) == len(names)


def test_zoo_covers_every_category_of_issue_2() -> None:
    assert REQUIRED_CATEGORIES <= {c.category for c in CASES}


def test_zoo_has_bugs_and_controls_in_every_framework() -> None:
    for framework in ("torch", "jax", "numpy"):
        mine = [c for c in CASES if c.framework == framework]
        assert any(c.buggy for c in mine), framework
        assert any(not c.buggy for c in mine), framework


def test_second_order_cases_include_a_bug_invisible_at_first_order() -> None:
    # cube_detach_in_backward is right at first order: its order-1 Jacobian matches.
    case = next(c for c in CASES if c.name == "cube_detach_in_backward")
    first_order = type(case)(**{**case.__dict__, "order": 1})
    assert case_truth(case).buggy
    assert not case_truth(first_order).buggy


@pytest.mark.parametrize("case", [c for c in CASES if c.framework != "jax"], ids=lambda c: c.name)
def test_declared_truth_matches_claimed_jacobians(case) -> None:
    assert case_truth(case).buggy == case.buggy


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c.framework == "jax"], ids=lambda c: c.name)
def test_declared_truth_matches_claimed_jacobians_jax(case) -> None:
    assert case_truth(case).buggy == case.buggy


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_builds_are_fresh_and_in_the_requested_dtype(dtype: str) -> None:
    case = next(c for c in CASES if c.name == "matmul_correct")
    a, b = case.build(dtype), case.build(dtype)
    assert all(str(x.dtype) == f"torch.{dtype}" for x in a.inputs)
    assert all(x is not y for x, y in zip(a.inputs, b.inputs))
