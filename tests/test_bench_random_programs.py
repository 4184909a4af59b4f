"""Random programs: the strategy, the three forms of a program, and issue 6's properties."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings

import gradcheck_kit
from benchmarks.ground_truth import CHANGE_THRESHOLD, relative_change, torch_claimed_jacobian
from benchmarks.random_programs import (
    Program,
    draw_programs,
    numpy_program,
    program_cases,
    programs,
    torch_program,
)


def _torch_inputs(p: Program, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    return [torch.tensor(x, dtype=dtype, requires_grad=True) for x in p.inputs()]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(programs())
def test_hand_written_numpy_gradients_match_torch_autograd(p: Program) -> None:
    fn, grad = numpy_program(p, mutated=False)
    xs = p.inputs()
    weights = np.random.default_rng(p.value_seed + 1).standard_normal(p.shape)
    txs = _torch_inputs(p)
    loss = (torch_program(p, mutated=False)(*txs) * torch.tensor(weights)).sum()
    expected = torch.autograd.grad(loss, txs, allow_unused=True)
    np.testing.assert_allclose(fn(*xs), loss.item(), rtol=1e-12, atol=1e-12)
    for g, e in zip(grad(*xs), expected):
        np.testing.assert_allclose(g, np.zeros(p.shape) if e is None else e.numpy(), rtol=1e-10, atol=1e-12)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(programs(kinked=True))
def test_kinked_strategy_draws_a_kinked_op(p: Program) -> None:
    assert p.kinked


def test_drawing_is_repeatable() -> None:
    assert draw_programs(5, seed=3) == draw_programs(5, seed=3)
    assert draw_programs(5, seed=3) != draw_programs(5, seed=4)


def test_mutant_truth_is_the_jacobian_change() -> None:
    cases = program_cases(torch_count=6, jax_count=0, numpy_count=6, seed=1)
    assert [c.buggy for c in cases if "/" not in c.name] == [False] * 12
    for c in cases:
        if "/" in c.name and c.buggy is not None:
            assert c.buggy == (c.change > CHANGE_THRESHOLD)


# Issue 6, section 1: differential self-testing of gradcheck_kit on random torch programs.


@settings(max_examples=12, deadline=None, derandomize=True)
@given(programs())
def test_property_1_plain_autograd_programs_pass(p: Program) -> None:
    fn = torch_program(p, mutated=False)
    for dtype in (torch.float64, torch.float32):
        report = gradcheck_kit.gradcheck(fn, _torch_inputs(p, dtype), raise_exception=False)
        assert report, f"{p.describe()} in {dtype}:\n{report}"


@settings(max_examples=12, deadline=None, derandomize=True)
@given(programs())
def test_property_2_mutants_that_change_the_jacobian_fail(p: Program) -> None:
    mutated = torch_program(p, mutated=True)
    xs = _torch_inputs(p)
    change = relative_change(torch_claimed_jacobian(mutated, xs),
                             torch_claimed_jacobian(torch_program(p, mutated=False), xs))
    if change <= CHANGE_THRESHOLD:
        return
    for dtype in (torch.float64, torch.float32):
        report = gradcheck_kit.gradcheck(mutated, _torch_inputs(p, dtype), raise_exception=False)
        assert not report, f"{p.describe()}; {p.mutation().description} (change {change:.3g}) in {dtype}"
