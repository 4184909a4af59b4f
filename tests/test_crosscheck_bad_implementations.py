"""A broken implementation gets a verdict naming it; the rest of the matrix still runs."""

from __future__ import annotations

import numpy as np
import pytest

import gradcheck_kit
import reference_models

MODEL = "cubic_fit"
SIZES = {"points": 50}


def _base():
    return reference_models.get(MODEL).implementations["numpy_manual"]


def wrong_shape(params, data, *, dtype="float64", device="cpu"):
    loss, grads = _base()(params, data, dtype=dtype, device=device)
    return loss, {**grads, "b": np.array([grads["b"], grads["b"]])}


def missing_param(params, data, *, dtype="float64", device="cpu"):
    loss, grads = _base()(params, data, dtype=dtype, device=device)
    return loss, {k: v for k, v in grads.items() if k != "d"}


def extra_param(params, data, *, dtype="float64", device="cpu"):
    loss, grads = _base()(params, data, dtype=dtype, device=device)
    return loss, {**grads, "e": np.zeros(())}


def nan_loss(params, data, *, dtype="float64", device="cpu"):
    _, grads = _base()(params, data, dtype=dtype, device=device)
    return float("nan"), grads


def inf_gradient(params, data, *, dtype="float64", device="cpu"):
    loss, grads = _base()(params, data, dtype=dtype, device=device)
    return loss, {**grads, "c": np.array(np.inf)}


def raises(params, data, *, dtype="float64", device="cpu"):
    raise RuntimeError("CUDA kernel failed to launch")


def returns_none(params, data, *, dtype="float64", device="cpu"):
    return None


def grads_as_list(params, data, *, dtype="float64", device="cpu"):
    loss, grads = _base()(params, data, dtype=dtype, device=device)
    return loss, list(grads.values())


def vector_loss(params, data, *, dtype="float64", device="cpu"):
    loss, grads = _base()(params, data, dtype=dtype, device=device)
    return np.array([loss, loss]), grads


CASES = [
    (wrong_shape, r"returned a gradient of shape \(2,\) for 'b', whose shape is \(\)"),
    (
        missing_param,
        r"returned no gradient for 'd' \(it returned 'a', 'b', 'c'\); every parameter of the example needs one: a, b, c, d",
    ),
    (
        extra_param,
        r"returned a gradient for 'e', which is not a parameter of the example \(a, b, c, d\)",
    ),
    (nan_loss, r"returned a non-finite loss \(nan\)"),
    (inf_gradient, r"returned non-finite values in the gradient of 'c' \(1 of 1 elements"),
    (
        raises,
        r"raised RuntimeError: CUDA kernel failed to launch at .*test_crosscheck_bad_implementations.py:\d+",
    ),
    (returns_none, r"returned NoneType, not \(loss, grads\)"),
    (
        grads_as_list,
        r"returned gradients as list; return a dict mapping each parameter name \(a, b, c, d\)",
    ),
    (vector_loss, r"returned a loss of shape \(2,\); the loss is a scalar"),
]


@pytest.mark.parametrize(("impl", "message"), CASES, ids=[c[0].__name__ for c in CASES])
def test_broken_implementation_gets_a_verdict_naming_it(impl, message):
    name = impl.__name__
    reference_models.register_implementation(MODEL, name, impl)
    try:
        report = gradcheck_kit.crosscheck(MODEL, sizes=SIZES)
    finally:
        reference_models.unregister_implementation(MODEL, name)
    assert not report
    assert report.disagreeing == [name]
    [row] = report.rows_of(name)  # only the contract row: nothing else can be compared
    assert row.check == "valid" and not row.passed
    assert row.detail.startswith(name + " ")
    assert __import__("re").search(message, row.detail), row.detail
    assert name in str(report)
    # The rest of the matrix ran and agrees.
    for other in reference_models.get(MODEL).implementations:
        rows = report.rows_of(other)
        assert {r.check for r in rows} == {
            "valid",
            "consensus",
            "pairwise",
            "jax",
            "finite_differences",
            "trajectory",
        } - ({"jax"} if other == "jax" else set())
        assert all(r.passed for r in rows), rows


def test_a_broken_training_loop_is_reported_on_its_own():
    def exploding_loop(params, data, *, steps, dtype="float64", device="cpu"):
        raise FloatingPointError("overflow in step 2")

    good = _base()
    reference_models.register_implementation(MODEL, "bad_loop", good, train=exploding_loop)
    try:
        report = gradcheck_kit.crosscheck(MODEL, sizes=SIZES)
    finally:
        reference_models.unregister_implementation(MODEL, "bad_loop")
    assert report.disagreeing == ["bad_loop"]
    [row] = [r for r in report.rows_of("bad_loop") if not r.passed]
    assert row.check == "trajectory"
    assert "bad_loop's training loop raised FloatingPointError: overflow in step 2" in row.detail


def test_a_broken_jax_reference_is_noted_and_the_others_still_compared():
    model = reference_models.get(MODEL)
    original = model.implementations["jax"]
    reference_models.register_implementation(MODEL, "jax", raises, replace=True)
    try:
        report = gradcheck_kit.crosscheck(
            MODEL, sizes=SIZES, implementations=["numpy_manual", "torch_autograd"]
        )
    finally:
        reference_models.register_implementation(MODEL, "jax", original, replace=True)
    assert report  # the two implementations agree with each other and finite differences
    assert any(
        "the jax reference 'jax' is unusable (raised RuntimeError" in n for n in report.notes
    )
    assert "jax" not in {r.check for r in report.rows}
    assert model.implementations["jax"] is original
