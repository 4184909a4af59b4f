"""OpInfo and two-layer suites: cases build, and their ground truth is reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.ground_truth import case_truth
from benchmarks.opinfo import opinfo_cases
from benchmarks.twolayer import SIZES, twolayer_cases


# op_db takes seconds to import and sample, so the OpInfo checks are marked slow.
@pytest.fixture(scope="module")
def suite():
    return opinfo_cases(ops=["sin", "mul", "softmax"], mutants_per_sample=3, seed=0)


@pytest.mark.slow
def test_opinfo_yields_the_op_and_its_mutants(suite) -> None:
    assert suite.ops_used == 3
    clean = [c for c in suite.cases if c.category == "correct op"]
    assert len(clean) == 3 and not any(c.buggy for c in clean)
    assert len(suite.cases) == 3 * 4


@pytest.mark.slow
def test_opinfo_truth_is_recomputed_identically_from_the_reference(suite) -> None:
    for case in suite.cases:
        truth = case_truth(case)
        assert truth.nondeterminism == 0
        assert truth.change == pytest.approx(case.change, rel=1e-12, abs=1e-15)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_opinfo_cases_build_in_both_dtypes(suite, dtype: str) -> None:
    for case in suite.cases:
        problem = case.build(dtype)
        assert all(x.dtype == getattr(torch, dtype) for x in problem.inputs)
        torch.autograd.grad(problem.fn(*problem.inputs).sum(), problem.inputs)


@pytest.mark.slow
def test_opinfo_rejects_unknown_ops() -> None:
    with pytest.raises(ValueError, match="not ops of op_db"):
        opinfo_cases(ops=["not_an_op"])


def test_twolayer_has_doc_sizes_and_a_real_bug() -> None:
    clean, buggy = twolayer_cases()
    x, w1, w2, y = clean.build("float64").inputs
    assert (x.shape, w1.shape, w2.shape, y.shape) == (
        (SIZES["n"], SIZES["d_in"]), (SIZES["d_in"], SIZES["h"]), (SIZES["h"], SIZES["d_out"]),
        (SIZES["n"], SIZES["d_out"]))
    assert not case_truth(clean).buggy
    truth = case_truth(buggy)
    assert truth.buggy and np.isclose(truth.change, buggy.change, rtol=1e-6)


def test_scaling_problems_hold_about_n_elements_and_both_checkers_pass_them():
    from benchmarks import scaling

    for function in scaling.FUNCTIONS:
        fn, inputs = scaling.make_problem(function, 4096, "float64")
        checked = sum(x.numel() for x in inputs if x.requires_grad)
        assert 4096 <= checked <= 4096 + 2000  # the input plus small weights
        row = scaling._worker_time(function, 4096, "float64", repeats=1)
        assert row["passed"] == {"kit": True, "torch_fast": True}
        assert row["seconds"]["kit"] > 0 and row["seconds"]["torch_fast"] > 0
    text = scaling.render({
        "environment": {"date": "d", "machine": "m", "torch": "t", "commit": "c", "command": "x"},
        "rows": [{"function": "elementwise", "dtype": "float64", "n": 1000, "time_ratio": 2.0,
                  "seconds": {"kit": 0.2, "torch_fast": 0.1}}],
        "first_check_seconds": {"kit": 1.0, "torch_fast": 0.5},
    })
    assert "| elementwise | 1e+03 | float64 | 0.2000 | 0.1000 | 2.00 |" in text and "+0.500 s" in text
