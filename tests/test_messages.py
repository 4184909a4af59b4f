"""Each input error names the argument, the real reason and a fix that works when followed."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import gradcheck_kit as gk
from gradcheck_kit import CheckInputError

jax = pytest.importorskip("jax")
jnp = jax.numpy

LABELS = np.array([0, 2, 1])
LOGITS = np.random.default_rng(0).standard_normal((3, 3))


def _np_xent(z, labels):
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return -np.log(p[np.arange(3), labels]).mean()


def _np_xent_grad(z, labels):
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    p[np.arange(3), labels] -= 1
    return (p / 3,)


def test_numpy_arrays_into_a_jax_function_say_to_pass_jax_arrays():
    fn = lambda a: jnp.sin(a).sum()
    x = np.linspace(-1, 1, 5)
    with pytest.raises(CheckInputError, match=r"inputs\[0\] is a numpy array, but fn is a jax") as e:
        gk.gradcheck(fn, (x,))
    assert "jnp.asarray(inputs[0])" in str(e.value) and "no automatic" not in str(e.value)
    assert gk.gradcheck(fn, (jnp.asarray(x),))  # the fix works
    # A jax function that rejects numpy arrays is recognised too.
    strict = lambda a: jnp.sin(a).sum() + a.at[0].get()
    with pytest.raises(CheckInputError, match="fn is a jax function"):
        gk.gradcheck(strict, (x,))


def test_numpy_arrays_into_a_torch_function_say_which_need_grad():
    fn = lambda z, l: torch.nn.functional.cross_entropy(torch.as_tensor(z), torch.as_tensor(l))
    with pytest.raises(CheckInputError, match="fn is a torch function") as e:
        gk.gradcheck(fn, (LOGITS, LABELS))
    text = str(e.value)
    assert "torch.tensor(inputs[0], requires_grad=True)" in text
    assert "torch.as_tensor(inputs[1])" in text  # labels: no requires_grad, no second error
    assert gk.gradcheck(fn, (torch.tensor(LOGITS, requires_grad=True), torch.as_tensor(LABELS)))


def test_numpy_labels_beside_a_tensor_name_the_array():
    fn = lambda z, l: torch.nn.functional.cross_entropy(z, l)
    z = torch.tensor(LOGITS, requires_grad=True)
    with pytest.raises(CheckInputError, match=r"inputs\[1\] is a numpy array") as e:
        gk.gradcheck(fn, (z, LABELS))
    assert "torch.as_tensor(inputs[1])" in str(e.value) and "must be Tensor" in str(e.value)
    assert gk.gradcheck(fn, (z, torch.as_tensor(LABELS)))


def test_numpy_labels_with_a_numpy_function_follow_the_advice_without_a_second_error():
    with pytest.raises(CheckInputError, match="numpy inputs need grad=") as e:
        gk.gradcheck(_np_xent, (LOGITS, LABELS))
    assert "integer inputs such as labels are constants" in str(e.value)
    # The gradient for the floating-point input only, or one per input with None for the
    # labels: both are accepted.
    assert gk.gradcheck(_np_xent, (LOGITS, LABELS), grad=_np_xent_grad)
    assert gk.gradcheck(_np_xent, (LOGITS, LABELS), grad=lambda z, l: (*_np_xent_grad(z, l), None))


def test_only_integer_inputs_explain_constants_and_conversion():
    with pytest.raises(CheckInputError, match=r"inputs\[0\] has dtype int64 and no input") as e:
        gk.gradcheck(lambda l: float(l.sum()), (LABELS,), grad=lambda l: (np.ones(3),))
    assert "also pass the floating-point arrays" in str(e.value)
    assert "inputs[0].astype(np.float64)" in str(e.value)


@pytest.mark.parametrize(
    "make", [lambda: np.random.default_rng(0), lambda: np.random.RandomState(0),
             lambda: random.Random(0), lambda: torch.Generator().manual_seed(0)],
    ids=["Generator", "RandomState", "Random", "torch"],
)
def test_generator_inputs_are_replayed_and_never_advised_to_be_passed(make):
    def draw(g):
        if isinstance(g, torch.Generator):
            return torch.rand(5, generator=g, dtype=torch.float64)
        if isinstance(g, random.Random):
            return torch.tensor([g.random() for _ in range(5)], dtype=torch.float64)
        return torch.as_tensor(g.uniform(size=5))

    gen = make()
    before = draw(make())
    x = torch.linspace(0, 1, 5, dtype=torch.float64, requires_grad=True)
    assert gk.gradcheck(lambda a, g: (a * draw(g)).sum(), (x, gen))
    assert torch.equal(draw(gen), before)  # the caller's generator was not advanced
    # Randomness from elsewhere: the message names the generator input as replayed.
    other = np.random.default_rng(1)
    with pytest.raises(CheckInputError, match=r"generator input inputs\[1\] is replayed") as e:
        gk.gradcheck(lambda a, g: (a * draw(g) * float(other.uniform())).sum(), (x, make()))
    assert "pass a generator" not in str(e.value)


def test_numpy_generator_inputs_of_numpy_and_jax_functions():
    w = np.linspace(0, 1, 5)
    fn = lambda a, g: float((a * g.standard_normal(5)).sum())
    assert gk.gradcheck(fn, (w, np.random.default_rng(0)),
                        grad=lambda a, g: (g.standard_normal(5),))
    jfn = lambda a, g: (a * jnp.asarray(g.standard_normal(5))).sum()
    assert gk.gradcheck(jfn, (jnp.asarray(w), np.random.default_rng(0)))


def test_jax_static_string_argument():
    def f(a, mode):
        return jnp.sin(a).sum() if mode == "sin" else jnp.cos(a).sum()

    x = jnp.linspace(-1.0, 1.0, 5)
    assert gk.gradcheck(f, (x, "sin"))
    assert gk.gradcheck(jax.jit(f, static_argnums=1), (x, "sin"))
    with pytest.raises(CheckInputError, match=r"inputs\[1\] is a str \('sin'\).*static") as e:
        gk.gradcheck(jax.jit(f), (x, "sin"))
    assert "fn raised" not in str(e.value) and "static_argnums=1" in str(e.value)


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("outputs", ["vector", "two"])
def test_hand_written_grad_needs_one_scalar_output(framework, outputs):
    if framework == "torch":
        x, ones = torch.linspace(0, 1, 4, dtype=torch.float64), torch.ones_like
    else:
        x, ones = jnp.linspace(0.0, 1.0, 4), jnp.ones_like
    fn = (lambda a: a * 2) if outputs == "vector" else (lambda a: (a.sum(), (a * a).sum()))
    with pytest.raises(CheckInputError, match="grad= the function must return one scalar"):
        gk.gradcheck(fn, (x,), grad=lambda a: (ones(a),))


def test_a_tensor_requiring_grad_inside_a_container_is_found():
    x = torch.linspace(0, 1, 4, dtype=torch.float64, requires_grad=True)
    report = gk.gradcheck(lambda d: (d["w"][0] * 2).sum(), ({"w": [x]},))
    assert {c.input for c in report.comparisons} == {"inputs[0]['w'][0]"}
