"""reference_models: the registry, the example generator and the implementation contract."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import reference_models
from reference_models import ReferenceModel, Training

CATALOGUE = [
    "two_layer_relu",
    "cubic_fit",
    "legendre_fit",
    "dynamic_net",
    "autograd_basics",
    "graph_e",
    "linear_w",
    "linear_wb",
    "sigmoid_mlp",
    "softmax_classifier",
    "hand_sigmoid",
]

# Parameter and data names follow the docs' variables (module state_dict keys where the doc
# only has an nn.Module).
NAMES = {
    "two_layer_relu": ({"w1", "w2"}, {"x", "y"}),
    "cubic_fit": ({"a", "b", "c", "d"}, {"x", "y"}),
    "legendre_fit": ({"a", "b", "c", "d"}, {"x", "y"}),
    "dynamic_net": ({"a", "b", "c", "d", "e"}, {"x", "y", "top_order", "schedule"}),
    "autograd_basics": ({"x", "y"}, {"v"}),
    "graph_e": ({"a", "b"}, set()),
    "linear_w": ({"w"}, {"x", "y"}),
    "linear_wb": ({"linear.weight", "linear.bias"}, {"x", "y"}),
    "sigmoid_mlp": (
        {f"linear{i}.{k}" for i in (1, 2, 3) for k in ("weight", "bias")},
        {"x", "y"},
    ),
    "softmax_classifier": ({f"{i}.{k}" for i in (0, 2, 4) for k in ("weight", "bias")}, {"x", "y"}),
    "hand_sigmoid": ({"x"}, {"v"}),
}


def test_names_list_every_doc_example_in_catalogue_order():
    assert reference_models.names()[: len(CATALOGUE)] == CATALOGUE


def test_importing_and_listing_models_imports_neither_torch_nor_jax():
    code = textwrap.dedent("""
        import sys
        import reference_models
        for name in reference_models.names():
            model = reference_models.get(name)
            model.example(**model.quick_sizes)
        import gradcheck_kit
        gradcheck_kit.crosscheck  # the lazy export resolves without a framework
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "jax", "jaxlib"))
        print(heavy)
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_get_unknown_model_suggests_the_close_name():
    with pytest.raises(
        ValueError,
        match=r"'two_layer_rleu' is not a registered model\. Did you mean 'two_layer_relu'",
    ):
        reference_models.get("two_layer_rleu")


@pytest.mark.parametrize("name", CATALOGUE)
def test_model_describes_itself_and_names_follow_the_doc(name):
    model = reference_models.get(name)
    assert model is reference_models.get(name)
    assert model.name == name and model.description
    assert model.source.startswith("seeds/00")
    params, data = model.example(**model.quick_sizes)
    assert (set(params), set(data)) == NAMES[name]
    assert {"numpy_manual", "jax"} <= set(model.implementations)
    assert any(i.startswith("torch") for i in model.implementations)
    for check in model.fidelity.values():
        assert check.applies_to(model), f"{name}.{check.name} applies to no implementation"


def test_doc_sizes_are_the_docs():
    assert reference_models.get("two_layer_relu").default_sizes == {
        "n": 64,
        "d_in": 1000,
        "h": 100,
        "d_out": 10,
    }
    assert reference_models.get("cubic_fit").default_sizes == {"points": 2000}
    softmax = reference_models.get("softmax_classifier").default_sizes
    assert (
        softmax["input_size"],
        softmax["hidden1"],
        softmax["hidden2"],
        softmax["output_size"],
    ) == (784, 128, 64, 10)
    params, _ = reference_models.get("two_layer_relu").example()
    assert params["w1"].shape == (1000, 100) and params["w2"].shape == (100, 10)


@pytest.mark.parametrize("name", CATALOGUE)
def test_examples_are_reproducible_and_sized(name):
    model = reference_models.get(name)
    a_params, a_data = model.example(seed=3, dtype="float32", **model.quick_sizes)
    b_params, b_data = model.example(seed=3, dtype="float32", **model.quick_sizes)
    for a, b in [(a_params, b_params), (a_data, b_data)]:
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
            if np.issubdtype(a[key].dtype, np.floating):
                assert a[key].dtype == np.float32
    # Every size can shrink to 1 (hypothesis-drawn examples start there).
    ones = {k: 1 for k in model.default_sizes}
    params, _ = model.example(**ones)
    assert all(np.all(np.isfinite(v)) for v in params.values())


def test_seeds_change_random_examples_and_seed_zero_is_the_doc_init():
    model = reference_models.get("two_layer_relu")
    p0, _ = model.example(seed=0, **model.quick_sizes)
    p1, _ = model.example(seed=1, **model.quick_sizes)
    assert not np.array_equal(p0["w1"], p1["w1"])
    legendre, _ = reference_models.get("legendre_fit").example(seed=0)
    assert {k: float(v) for k, v in legendre.items()} == {"a": 0.0, "b": -1.0, "c": 0.0, "d": 0.3}
    w, data = reference_models.get("linear_w").example(seed=0)
    assert (
        w["w"].tolist() == [1.0]
        and data["x"].tolist() == [1.0, 2.0, 3.0]
        and data["y"].tolist() == [2.0, 4.0, 6.0]
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"points": 0},
            ValueError,
            r"points=0 is not a valid size of 'cubic_fit'.*positive integers",
        ),
        ({"n": 3}, ValueError, r"n=3 is not a size of 'cubic_fit'; its sizes are: points"),
        ({"dtype": "float16"}, ValueError, r"dtype='float16' is not supported.*float64.*float32"),
        ({"seed": "1"}, TypeError, r"seed='1' is not an integer"),
    ],
)
def test_example_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        reference_models.get("cubic_fit").example(**kwargs)


@pytest.mark.parametrize("name", CATALOGUE)
def test_every_implementation_keeps_the_contract(name):
    model = reference_models.get(name)
    params, data = model.example(seed=1, dtype="float32", **model.quick_sizes)
    snapshot = {k: v.copy() for k, v in params.items()}
    for impl_name, impl in model.implementations.items():
        loss, grads = impl(params, data, dtype="float32", device="cpu")
        assert isinstance(loss, float) and np.isfinite(loss), impl_name
        assert set(grads) == set(params), impl_name
        for key, g in grads.items():
            assert isinstance(g, np.ndarray) and g.shape == params[key].shape, (impl_name, key)
            assert g.dtype == np.float32, (impl_name, key, g.dtype)
            assert np.all(np.isfinite(g)), (impl_name, key)
    for key in params:  # implementations work on copies
        np.testing.assert_array_equal(params[key], snapshot[key])


def test_doc_modules_export_their_torch_classes():
    import torch

    from reference_models.legendre_fit import LegendrePolynomial3
    from reference_models.sigmoid_mlp import Model
    from reference_models.two_layer_relu import TwoLayerNet

    net = TwoLayerNet(20, 10, 3).double()
    params, data = reference_models.get("two_layer_relu").example(n=8, d_in=20, h=10, d_out=3)
    with torch.no_grad():
        net.linear1.weight.copy_(torch.from_numpy(params["w1"].T))
        net.linear2.weight.copy_(torch.from_numpy(params["w2"].T))
        y_pred = net(torch.from_numpy(data["x"])).numpy()
    np.testing.assert_allclose(
        y_pred, np.maximum(data["x"] @ params["w1"], 0) @ params["w2"], rtol=1e-12
    )
    t = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    LegendrePolynomial3.apply(t).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), 1.5 * (5 * t.detach().numpy() ** 2 - 1))
    # The post's Model, fixed: three distinct layers and a y_pred of one probability per row.
    model = Model()
    assert [m.out_features for m in (model.linear1, model.linear2, model.linear3)] == [6, 4, 1]
    out = model(torch.rand(5, 8))
    assert out.shape == (5, 1) and bool(((out > 0) & (out < 1)).all())
    # The classes are served as module attributes and pickle as such.
    assert type(pickle.loads(pickle.dumps(net))) is TwoLayerNet


def _square_model(name: str) -> ReferenceModel:
    """A user's model: loss = sum((w * x - y)^2) with numpy and jax implementations."""

    def make(seed, dtype, sizes):
        rng = np.random.default_rng(seed)
        n = sizes["n"]
        return {"w": rng.standard_normal(n).astype(dtype)}, {
            "x": rng.standard_normal(n).astype(dtype),
            "y": rng.standard_normal(n).astype(dtype),
        }

    def numpy_impl(params, data, *, dtype="float64", device="cpu"):
        w, x, y = (np.asarray(a, dtype=dtype) for a in (params["w"], data["x"], data["y"]))
        r = w * x - y
        return float((r**2).sum()), {"w": 2 * r * x}

    def jax_impl(params, data, *, dtype="float64", device="cpu"):
        import jax
        import jax.numpy as jnp

        with jax.enable_x64(dtype == "float64"):
            f = lambda w: jnp.sum(
                (w * jnp.asarray(data["x"], dtype) - jnp.asarray(data["y"], dtype)) ** 2
            )
            value, g = jax.value_and_grad(f)(jnp.asarray(params["w"], dtype))
            return float(value), {"w": np.asarray(g)}

    return ReferenceModel(
        name=name,
        description="elementwise least squares",
        source="a test",
        default_sizes={"n": 6},
        hyper={"lr": 0.05},
        make_example=make,
        implementations={"numpy_manual": numpy_impl, "jax": jax_impl},
        training=Training(lr=0.05, steps=10),
        rounding_terms=lambda params, data: 2,
    )


@pytest.fixture
def user_model():
    model = _square_model("user_square")
    reference_models.register_model(model)
    yield model
    reference_models.unregister_model("user_square")


def test_register_model_joins_the_registry_and_the_crosscheck(user_model):
    import gradcheck_kit

    assert reference_models.names()[-1] == "user_square"
    assert reference_models.get("user_square") is user_model
    report = gradcheck_kit.crosscheck("user_square")
    assert report, str(report)
    assert {r.check for r in report.rows} == {
        "valid",
        "consensus",
        "pairwise",
        "jax",
        "finite_differences",
        "trajectory",
    }
    with pytest.raises(ValueError, match="already registered; pass replace=True"):
        reference_models.register_model(_square_model("user_square"))
    with pytest.raises(ValueError, match="one of the doc examples, which cannot be unregistered"):
        reference_models.unregister_model("cubic_fit")
    with pytest.raises(TypeError, match="is not a ReferenceModel"):
        reference_models.register_model("user_square")


def test_register_and_unregister_implementation():
    model = reference_models.get("cubic_fit")
    base = model.implementations["numpy_manual"]

    def my_port(params, data, *, dtype="float64", device="cpu"):
        return base(params, data, dtype=dtype, device=device)

    reference_models.register_implementation("cubic_fit", "my_port", my_port)
    try:
        assert model.implementations["my_port"] is my_port
        with pytest.raises(
            ValueError, match="already has an implementation named 'my_port'; pass replace=True"
        ):
            reference_models.register_implementation("cubic_fit", "my_port", my_port)
        reference_models.register_implementation("cubic_fit", "my_port", my_port, replace=True)
        with pytest.raises(TypeError, match="impl=3 is not callable"):
            reference_models.register_implementation("cubic_fit", "other", 3)
    finally:
        reference_models.unregister_implementation("cubic_fit", "my_port")
    assert "my_port" not in model.implementations
    with pytest.raises(
        ValueError, match="'my_port' is not a registered implementation of 'cubic_fit'"
    ):
        reference_models.unregister_implementation("cubic_fit", "my_port")


def test_train_runs_the_doc_loop_and_rejects_what_cannot_train():
    model = reference_models.get("linear_w")
    params, data = model.example(seed=0)
    # One per-sample step from w = 1 on (x, y) = (1, 2): w += 0.01 * 2 * 1 * (2 - 1).
    for impl in model.implementations:
        w = reference_models.train(model, impl, params, data, steps=1)["w"]
        np.testing.assert_allclose(w, [1.02], rtol=1e-15, err_msg=impl)
    assert params["w"].tolist() == [1.0]
    with pytest.raises(ValueError, match="'graph_e' has no training loop"):
        reference_models.train(
            "graph_e", "jax", *reference_models.get("graph_e").example(), steps=1
        )
    with pytest.raises(ValueError, match="steps=-1 is not a non-negative integer"):
        reference_models.train(model, "jax", params, data, steps=-1)
    with pytest.raises(
        ValueError, match="implementation='jx' is not an implementation of 'linear_w'"
    ):
        reference_models.train(model, "jx", params, data, steps=1)


def test_module_style_leaves_torch_rng_alone():
    import torch

    torch.manual_seed(123)
    before = torch.get_rng_state()
    model = reference_models.get("softmax_classifier")
    model.implementations["torch_module"](*model.example(**model.quick_sizes))
    assert torch.equal(torch.get_rng_state(), before)
