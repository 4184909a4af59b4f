"""`gradcheck_kit.crosscheck`: every model agrees with itself, and a wrong gradient is named."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gradcheck_kit
import reference_models

MODELS = reference_models.names()[:11]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", MODELS)
def test_every_model_agrees_across_styles_and_oracles(name, dtype):
    model = reference_models.get(name)
    report = gradcheck_kit.crosscheck(name, dtype=dtype, sizes=dict(model.quick_sizes))
    assert report, str(report)
    assert report.implementations == list(model.implementations)
    checks = {r.check for r in report.rows}
    assert {"valid", "consensus", "pairwise", "jax", "finite_differences"} <= checks
    assert ("trajectory" in checks) == (model.training is not None)
    # Every implementation got every comparison that applies to it.
    for impl in model.implementations:
        expected = {"valid", "consensus", "pairwise", "finite_differences"}
        expected |= {"jax"} if impl != "jax" else set()
        expected |= {"trajectory"} if model.training is not None else set()
        assert {r.check for r in report.rows_of(impl)} == expected, impl


@pytest.mark.parametrize("name", MODELS)
def test_every_model_agrees_at_the_smallest_sizes(name):
    # Hypothesis-drawn examples shrink to every size 1: a 1x1x1x1 network, one point,
    # one class.
    model = reference_models.get(name)
    ones = {k: 1 for k in model.default_sizes}
    report = gradcheck_kit.crosscheck(name, sizes=ones, seed=5, trajectory_steps=1)
    assert report, str(report)


# At the doc's sizes (64x1000x100x10, 2000 points, 784-128-64-10) a cross-check takes a
# second or so once torch and jax are imported.
@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["two_layer_relu", "cubic_fit", "legendre_fit", "dynamic_net", "softmax_classifier"]
)
def test_doc_sizes_agree(name):
    report = gradcheck_kit.crosscheck(name, dtype="float32")
    assert report, str(report)
    assert report.shapes == {k: v.shape for k, v in reference_models.get(name).example()[0].items()}


def _perturbed(model_name: str, base_name: str, param: str, index: tuple[int, ...], rel: float):
    base = reference_models.get(model_name).implementations[base_name]

    def impl(params, data, *, dtype="float64", device="cpu"):
        loss, grads = base(params, data, dtype=dtype, device=device)
        grads = {k: np.array(v) for k, v in grads.items()}
        grads[param][index] *= 1 + rel
        return loss, grads

    return impl


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_wrong_element_is_named_with_its_implementation_and_parameter(dtype):
    # A 0.1% error in one weight's gradient, the size the core is asked to find.
    model = reference_models.get("two_layer_relu")
    reference_models.register_implementation(
        "two_layer_relu",
        "buggy_kernel",
        _perturbed("two_layer_relu", "torch_autograd", "w1", (3, 2), 1e-3),
    )
    try:
        report = gradcheck_kit.crosscheck(
            "two_layer_relu", dtype=dtype, sizes=dict(model.quick_sizes)
        )
    finally:
        reference_models.unregister_implementation("two_layer_relu", "buggy_kernel")
    assert not report
    assert report.disagreeing == ["buggy_kernel"]
    [consensus] = [r for r in report.rows_of("buggy_kernel") if r.check == "consensus"]
    assert not consensus.passed
    assert (consensus.quantity, consensus.index) == ("w1", (3, 2))
    assert consensus.against == "consensus of 6"
    assert consensus.actual == pytest.approx(consensus.expected * (1 + 1e-3), rel=1e-5)
    [fd] = [r for r in report.rows_of("buggy_kernel") if r.check == "finite_differences"]
    assert not fd.passed and fd.quantity == "w1"
    # The correct implementations are not blamed: their consensus, jax, finite-difference
    # and (wrong partners excluded) pairwise rows pass.
    for impl in model.implementations:
        assert all(r.passed for r in report.rows_of(impl)), report.rows_of(impl)
    text = str(report)
    assert "disagreeing: buggy_kernel" in text
    assert "[FAIL] buggy_kernel consensus: gradient of 'w1'[3, 2]" in text


def test_a_wrong_bias_gradient_in_the_classifier_is_found_by_every_oracle():
    model = reference_models.get("softmax_classifier")
    reference_models.register_implementation(
        "softmax_classifier",
        "sign_slip",
        _perturbed("softmax_classifier", "numpy_manual", "2.bias", (1,), -2.0),
    )
    try:
        report = gradcheck_kit.crosscheck("softmax_classifier", sizes=dict(model.quick_sizes))
    finally:
        reference_models.unregister_implementation("softmax_classifier", "sign_slip")
    assert report.disagreeing == ["sign_slip"]
    failing = {r.check: r for r in report.rows_of("sign_slip") if not r.passed}
    assert set(failing) == {"consensus", "pairwise", "jax", "finite_differences", "trajectory"}
    assert (failing["consensus"].quantity, failing["consensus"].index) == ("2.bias", (1,))
    assert (failing["jax"].quantity, failing["jax"].index) == ("2.bias", (1,))
    assert failing["trajectory"].quantity == "2.bias"


def test_forgetting_zero_grad_between_batches_is_caught_by_the_trajectory():
    import torch

    model = reference_models.get("softmax_classifier")
    style = model.implementations["torch_module"]

    def train_without_zero_grad(params, data, *, steps, dtype="float64", device="cpu"):
        from reference_models._torch_style import torch_tensors

        module = style.module(params, dtype=dtype, device=device)
        optimizer = torch.optim.SGD(module.parameters(), lr=model.training.lr)
        for t in range(steps):
            batch = torch_tensors(model.training.batch(data, t), dtype=dtype, device=device)
            style.forward_loss(module, batch).backward()  # no optimizer.zero_grad()
            optimizer.step()
        return style.parameters_of(module)

    reference_models.register_implementation(
        "softmax_classifier", "no_zero_grad", style, train=train_without_zero_grad
    )
    try:
        report = gradcheck_kit.crosscheck("softmax_classifier", sizes=dict(model.quick_sizes))
    finally:
        reference_models.unregister_implementation("softmax_classifier", "no_zero_grad")
    assert report.disagreeing == ["no_zero_grad"]
    failing = [r.check for r in report.rows_of("no_zero_grad") if not r.passed]
    assert failing == ["trajectory"]  # its gradients are right; its loop is not


def test_restricting_implementations_keeps_the_jax_and_finite_difference_oracles():
    report = gradcheck_kit.crosscheck("hand_sigmoid", implementations=["torch_autograd"])
    assert report
    assert report.implementations == ["torch_autograd"]
    assert [r.check for r in report.rows] == ["valid", "consensus", "jax", "finite_differences"]
    assert "one implementation: the consensus is that implementation itself" in report.notes


def test_an_explicit_example_is_checked_as_given():
    model = reference_models.get("graph_e")
    report = gradcheck_kit.crosscheck(
        model, example=({"a": np.float64(2.0), "b": np.float64(1.0)}, {})
    )
    assert report
    # e = (a + b)(b + 1) = 6 at the classic a = 2, b = 1.
    assert set(report.losses.values()) == {6.0}
    assert report.shapes == {"a": (), "b": ()}


def test_report_is_json_serialisable_and_readable():
    model = reference_models.get("linear_wb")

    def nan_gradient(params, data, *, dtype="float64", device="cpu"):
        return 1.0, {k: np.full(np.shape(v), np.nan) for k, v in params.items()}

    reference_models.register_implementation("linear_wb", "nan_gradient", nan_gradient)
    try:
        report = gradcheck_kit.crosscheck("linear_wb")
    finally:
        reference_models.unregister_implementation("linear_wb", "nan_gradient")
    document = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert document["passed"] is False
    assert document["disagreeing"] == ["nan_gradient"]
    invalid = [r for r in document["rows"] if r["implementation"] == "nan_gradient"]
    assert invalid == [next(r for r in invalid if r["check"] == "valid")]
    assert invalid[0]["margin"] == "inf"
    assert set(document["finite_differences"]) == set(model.implementations)
    text = str(report)
    assert text.startswith("crosscheck FAILED: linear_wb, float64 on cpu, seed 0")
    assert "implementation  check" in text


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": "cubic_fitt"}, ValueError, r"Did you mean 'cubic_fit'"),
        ({"model": 3}, TypeError, r"model=3 is neither a model name nor a ReferenceModel"),
        (
            {"implementations": ["numpy"]},
            ValueError,
            r"'numpy', which is not an implementation of 'cubic_fit'.*numpy_manual",
        ),
        ({"implementations": "jax"}, TypeError, r"implementations='jax' is a string; pass a list"),
        ({"implementations": []}, ValueError, r"implementations=\[\] selects nothing"),
        ({"dtype": "bfloat16"}, ValueError, r"dtype='bfloat16' is not supported"),
        (
            {"reference": "jaxx"},
            ValueError,
            r"reference='jaxx' is not an implementation of 'cubic_fit'",
        ),
        (
            {"trajectory_steps": -1},
            ValueError,
            r"trajectory_steps=-1 is not a non-negative integer",
        ),
        (
            {"example": ({}, {}), "sizes": {"points": 3}},
            ValueError,
            r"pass either example= or sizes=",
        ),
        ({"example": {}}, TypeError, r"is not a \(params, data\) pair"),
        ({"sizes": {"n": 3}}, ValueError, r"n=3 is not a size of 'cubic_fit'"),
    ],
)
def test_bad_arguments_are_explained(kwargs, error, match):
    kwargs = {"model": "cubic_fit", **kwargs}
    with pytest.raises(error, match=match):
        gradcheck_kit.crosscheck(kwargs.pop("model"), **kwargs)


def test_crosscheck_leaves_the_callers_arrays_alone():
    model = reference_models.get("two_layer_relu")
    params, data = model.example(**model.quick_sizes)
    snapshot = {k: v.copy() for k, v in {**params, **data}.items()}

    def scribbler(p, d, *, dtype="float64", device="cpu"):
        loss, grads = model.implementations["numpy_manual"](p, d, dtype=dtype, device=device)
        for a in (*p.values(), *d.values()):
            a[...] = 0.0  # writes into what it was given
        return loss, grads

    reference_models.register_implementation("two_layer_relu", "scribbler", scribbler)
    try:
        report = gradcheck_kit.crosscheck(
            model, example=(params, data), implementations=["scribbler", "numpy_manual", "jax"]
        )
    finally:
        reference_models.unregister_implementation("two_layer_relu", "scribbler")
    for key, value in {**params, **data}.items():
        np.testing.assert_array_equal(value, snapshot[key])
    assert all(r.passed for r in report.rows if r.check in ("valid", "consensus", "jax"))


def _imported_modules(path):
    import ast

    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield ("." * node.level) + (node.module or "")


def test_only_the_matrix_layer_imports_reference_models_and_only_one_way():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    importers = {
        str(p.relative_to(root / "gradcheck_kit"))
        for p in (root / "gradcheck_kit").rglob("*.py")
        if any(m.split(".")[0] == "reference_models" for m in _imported_modules(p))
    }
    # The matrix and verify; the command line also locates the package to list its files.
    allowed = {"_verify.py", "_cli.py"}
    assert importers and all(p.startswith("_matrix/") or p in allowed for p in importers), importers
    private = {
        (p.name, m)
        for p in (root / "reference_models").glob("*.py")
        for m in _imported_modules(p)
        if m.startswith("gradcheck_kit.") or m.startswith("gradcheck_kit._")
    }
    assert private == set()
