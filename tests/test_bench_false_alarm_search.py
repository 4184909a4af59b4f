"""The false-alarm search's native-float32 mode: programs that cannot be promoted."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import gradcheck_kit as gk
from benchmarks.false_alarm_search import native, search


def test_native_is_exact_for_float32_and_refuses_float64():
    fn = native(torch.tanh)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fn(x), torch.tanh(x))
    with pytest.raises(RuntimeError):
        fn(x.double())
    report = gk.gradcheck(fn, x.requires_grad_(), raise_exception=False)
    assert not report.promoted and report.dtype == "float32"


def test_the_search_counts_native_float32_programs_apart():
    result = search(float("inf"), seed=0, programs_limit=12, native_float32=True)
    assert "float32" not in result["counts"]
    assert result["counts"]["float32 native"]["programs"] > 0
    plain = search(float("inf"), seed=0, programs_limit=12)
    assert "float32 native" not in plain["counts"]
    # The same drawn programs: the float64 ones are checked alike in both modes.
    assert result["counts"].get("float64") == plain["counts"].get("float64")
