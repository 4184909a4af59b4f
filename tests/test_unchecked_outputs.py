"""Outputs that do not require grad: skipped as torch skips them, but never silently."""

from __future__ import annotations

import torch

import gradcheck_kit as gk


def _x(dtype=torch.float64):
    return torch.linspace(-1.0, 2.0, 6, dtype=dtype).requires_grad_()



def _derivatives(report):
    """The derivative comparisons (torch's structural checks name "all outputs")."""
    return [c for c in report.comparisons if c.kind is not gk.ComparisonKind.STRUCTURAL]

def test_an_output_detached_among_differentiable_ones_is_reported():
    report = gk.gradcheck(lambda x: ((x * 2).sum(), (x * 3).detach().sum()), _x())
    assert {c.output for c in _derivatives(report)} == {"outputs[0]"}  # torch's behaviour
    [note] = [n for n in report.notes if "outputs[1]" in n]
    assert "does not require grad" in note and "changes with the inputs" in note
    assert ".detach()" in note and "keep it in the graph" in note


def test_outputs_under_no_grad_and_through_data_are_reported_in_float32_too():
    def fn(x):
        with torch.no_grad():
            stat = (x * x).mean()
        return x.sin(), stat, x.data.cos()

    report = gk.gradcheck(fn, _x(torch.float32))
    [note] = [n for n in report.notes if "do not require grad" in n]
    assert "outputs[1], outputs[2]" in note and "their values change" in note


def test_an_unchecked_constant_output_is_named_as_constant():
    report = gk.gradcheck(lambda x: (torch.ones(2, dtype=x.dtype), x.exp()), _x())
    [note] = [n for n in report.notes if "outputs[0]" in n]
    assert "did not change with the inputs" in note


def test_non_differentiable_outputs_by_design_keep_torchs_verdict():
    # native_batch_norm's saved mean and inverse std are non-differentiable by design.
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    report = gk.gradcheck(
        lambda a: torch.native_batch_norm(a, None, None, None, None, True, 0.1, 1e-5), x
    )
    assert {c.output for c in _derivatives(report)} == {"outputs[0]"}
    assert torch.autograd.gradcheck(
        lambda a: torch.native_batch_norm(a, None, None, None, None, True, 0.1, 1e-5), x
    )
    # Integer outputs (argmax) are not differentiated at all.
    report = gk.gradcheck(lambda a: (a.exp(), a.argmax()), x)
    assert any("not floating point" in n for n in report.notes)


def test_all_outputs_detached_is_never_a_pass():
    # Changing with the inputs: autograd's zero gradient disagrees with finite differences.
    report = gk.gradcheck(lambda x: (x * 3).detach().sum(), _x(), raise_exception=False)
    assert report.status == "failed"
    # Not changing either: nothing is checked, so the check is inconclusive, not passed.
    for fn in (lambda x: torch.ones(3, dtype=x.dtype), lambda x: x.detach() * 0 + 1):
        report = gk.gradcheck(fn, _x(), raise_exception=False)
        assert report.status == "inconclusive"
        [c] = [c for c in report.comparisons if c.inconclusive]
        assert "keep it in the graph" in c.inconclusive_reason
    # A constant whose graph reaches the input has a right zero gradient.
    assert gk.gradcheck(lambda x: (x * 0).sum(), _x())


def test_a_step_function_of_its_inputs_passes_with_a_zero_derivative():
    # A mask of the input (no graph, constant near the point): torch passes it, and its
    # zero derivative is right; unlike a function that ignores its input.
    x = torch.tensor([0.1, 0.35, 0.9], dtype=torch.float64, requires_grad=True)
    report = gk.gradcheck(lambda x: ((x > 0.3) & (x < 0.6)).to(x.dtype), x, raise_exception=False)
    assert report.status == "passed"
    assert any("constant near the inputs" in n for n in report.notes)
