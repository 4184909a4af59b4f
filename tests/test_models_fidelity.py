"""Doc fidelity: what the docs report, reproduced in every style, through `run_fidelity`.

These are the very checks `python -m gradcheck_kit verify` runs (`ReferenceModel.fidelity`).
"""

from __future__ import annotations

import numpy as np
import pytest

import reference_models

ALL = ("numpy_manual", "torch_manual", "torch_autograd", "torch_module", "jax")

# (model, claim) -> the styles the claim must have been checked in.
CLAIMS = {
    ("two_layer_relu", "loss_falls"): ALL,
    ("cubic_fit", "fit_reached"): ALL + ("torch_custom_module",),
    ("legendre_fit", "loss_falls"): ALL + ("torch_function", "jax_custom_vjp"),
    ("dynamic_net", "loss_falls"): ALL,
    ("autograd_basics", "sum_grad_ones"): ("numpy_manual", "torch_manual", "torch_autograd", "jax"),
    ("autograd_basics", "power_grads"): ("numpy_manual", "torch_manual", "torch_autograd", "jax"),
    ("autograd_basics", "no_grad"): ("torch_autograd",),
    ("graph_e", "paths_add"): ("numpy_manual", "torch_manual", "torch_autograd", "jax"),
    ("linear_w", "w_to_two"): ALL,
    ("linear_wb", "fit_after_1000_epochs"): ALL,
    ("sigmoid_mlp", "loss_falls"): ALL,
    ("softmax_classifier", "same_as_cross_entropy"): (
        "torch_module_log_softmax_nll",
        "torch_module_softmax_log_nll",
    ),
    ("softmax_classifier", "grads_accumulate"): (
        "torch_module",
        "torch_module_log_softmax_nll",
        "torch_module_softmax_log_nll",
    ),
    ("hand_sigmoid", "matches_torch_sigmoid"): ALL + ("torch_sigmoid",),
}


def test_every_claim_of_every_model_is_listed_here():
    declared = {
        (m, c) for m in reference_models.names()[:11] for c in reference_models.get(m).fidelity
    }
    assert declared == set(CLAIMS)


# The doc's own step counts in every style: these claims train for hundreds to thousands of
# steps (two_layer_relu at its doc size), a few seconds each.
_LONG = {
    ("two_layer_relu", "loss_falls"),
    ("cubic_fit", "fit_reached"),
    ("legendre_fit", "loss_falls"),
    ("dynamic_net", "loss_falls"),
}


@pytest.mark.parametrize(
    ("model_name", "claim"),
    [pytest.param(*key, marks=pytest.mark.slow) if key in _LONG else key for key in sorted(CLAIMS)],
    ids=lambda v: str(v),
)
def test_doc_claim_holds_in_every_style(model_name, claim):
    model = reference_models.get(model_name)
    results = model.run_fidelity([claim], dtype="float64")
    assert sorted(r.implementation for r in results) == sorted(CLAIMS[model_name, claim])
    failures = [str(r) for r in results if not r.passed]
    assert not failures, "\n".join(failures)


def test_published_numbers_are_reproduced():
    # The figures behind the claims, checked here as numbers rather than verdicts.
    cubic = reference_models.get("cubic_fit").run_fidelity(
        ["fit_reached"], implementations=["numpy_manual"]
    )[0]
    assert cubic.figures["b"] == pytest.approx(0.85, abs=0.02)
    assert cubic.figures["d"] == pytest.approx(-0.09, abs=0.005)
    assert cubic.figures["loss"] == pytest.approx(9, abs=0.5)
    wb = reference_models.get("linear_wb").run_fidelity(implementations=["torch_module"])[0]
    assert wb.figures["w"] == pytest.approx(2, abs=1e-3) and wb.figures["b"] == pytest.approx(
        0, abs=3e-3
    )
    assert wb.figures["predict_4"] == pytest.approx(8, abs=2e-3)
    w = reference_models.get("linear_w").run_fidelity(implementations=["torch_autograd"])[0]
    assert w.figures["forward_4"] == pytest.approx(8, abs=1e-9)


@pytest.mark.parametrize(
    ("model_name", "claim", "styles"),
    [
        # The docs' tensors are torch.float (float32).
        ("two_layer_relu", "loss_falls", ["torch_manual", "torch_autograd"]),
        ("cubic_fit", "fit_reached", ["torch_manual"]),
        ("softmax_classifier", "same_as_cross_entropy", None),
    ],
)
def test_doc_claims_hold_in_float32(model_name, claim, styles):
    results = reference_models.get(model_name).run_fidelity(
        [claim], implementations=styles, dtype="float32"
    )
    assert results and all(r.dtype == "float32" for r in results)
    assert all(results), "\n".join(map(str, results))


def test_a_claim_fails_for_an_implementation_with_a_wrong_gradient():
    model = reference_models.get("linear_w")
    base = model.implementations["numpy_manual"]

    def half_gradient(params, data, *, dtype="float64", device="cpu"):
        loss, grads = base(params, data, dtype=dtype, device=device)
        return loss, {"w": grads["w"] * 0.5}

    def raises(params, data, *, dtype="float64", device="cpu"):
        raise RuntimeError("kernel not compiled")

    reference_models.register_implementation("linear_w", "half_gradient", half_gradient)
    reference_models.register_implementation("linear_w", "raises", raises)
    try:
        results = {
            r.implementation: r
            for r in model.run_fidelity(
                ["w_to_two"], implementations=["half_gradient", "raises", "jax"]
            )
        }
    finally:
        reference_models.unregister_implementation("linear_w", "half_gradient")
        reference_models.unregister_implementation("linear_w", "raises")
    assert results["jax"].passed
    # Half the gradient is the same descent at half the learning rate: after 1000 epochs it
    # still converges, so the claim (w = 2) holds; the contract checks are crosscheck's job.
    assert results["half_gradient"].figures["w"] == pytest.approx(2, abs=1e-5)
    assert not results["raises"].passed
    assert "raised RuntimeError: kernel not compiled" in results["raises"].observed


def test_a_claim_catches_a_gradient_that_does_not_descend():
    model = reference_models.get("two_layer_relu")
    base = model.implementations["numpy_manual"]

    def zero_gradient(params, data, *, dtype="float64", device="cpu"):
        loss, grads = base(params, data, dtype=dtype, device=device)
        return loss, {k: np.zeros_like(g) for k, g in grads.items()}

    reference_models.register_implementation("two_layer_relu", "zero_gradient", zero_gradient)
    try:
        [result] = model.run_fidelity(["loss_falls"], implementations=["zero_gradient"])
    finally:
        reference_models.unregister_implementation("two_layer_relu", "zero_gradient")
    assert not result.passed
    assert result.figures["final_loss"] == result.figures["initial_loss"]
    assert "zero_gradient" in str(result) and "FAIL" in str(result)


def test_fidelity_results_serialise():
    import json

    results = reference_models.get("autograd_basics").run_fidelity()
    document = json.loads(json.dumps([r.to_dict() for r in results], allow_nan=False))
    assert {d["check"] for d in document} == {"sum_grad_ones", "power_grads", "no_grad"}
    no_grad = next(d for d in document if d["check"] == "no_grad")
    assert no_grad["figures"] == {"outside": 1.0, "inside": 0.0}


def test_run_fidelity_rejects_unknown_claims_and_implementations():
    with pytest.raises(
        ValueError,
        match="checks contains 'fit', which is not a fidelity check of 'cubic_fit'; its checks are: fit_reached",
    ):
        reference_models.get("cubic_fit").run_fidelity(["fit"])
    with pytest.raises(ValueError, match="'numpy', which is not an implementation of 'cubic_fit'"):
        reference_models.get("cubic_fit").run_fidelity(implementations=["numpy"])


def test_sum_example_gradients_are_ones_in_every_style():
    from reference_models.autograd_basics import sum_grads

    x = np.random.default_rng(0).random((5, 5))
    for style in ("numpy_manual", "torch_manual", "torch_autograd", "jax"):
        grads = sum_grads(style, x, 2 * x)
        assert all(np.array_equal(g, np.ones((5, 5))) for g in grads.values()), style
    with pytest.raises(ValueError, match="style='torch_module' has no version of the sum example"):
        sum_grads("torch_module", x, x)


def test_training_loops_are_derived_from_the_styles_that_have_their_own():
    model = reference_models.get("softmax_classifier")
    own = {k for k, impl in model.implementations.items() if hasattr(impl, "train")}
    assert own and set(model.training_loops) == own
    assert model.training_loops["torch_module"] == model.implementations["torch_module"].train
    # A model whose doc trains nothing has no loops, though its styles could train.
    assert reference_models.get("hand_sigmoid").training_loops == {}


def test_a_closed_form_claim_fails_on_a_gradient_off_by_a_rounding_multiple():
    model = reference_models.get("graph_e")
    base = model.implementations["numpy_manual"]

    def nudged(params, data, *, dtype="float64", device="cpu"):
        loss, grads = base(params, data, dtype=dtype, device=device)
        # 1e-9 relative is far beyond float64 rounding of three additions, far below float32's.
        return loss, {k: g * (1 + 1e-9) for k, g in grads.items()}

    reference_models.register_implementation("graph_e", "nudged", nudged)
    try:
        [r64] = model.run_fidelity(["paths_add"], implementations=["nudged"])
        [r32] = model.run_fidelity(["paths_add"], implementations=["nudged"], dtype="float32")
    finally:
        reference_models.unregister_implementation("graph_e", "nudged")
    assert not r64.passed and r64.figures["a_margin"] > 1
    assert r32.passed and r32.figures["a_margin"] <= 1
