"""gradcheck on jax functions and on numpy functions with hand-written gradients."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradcheck_kit as gk
from gradcheck_kit._targets import CheckInputError


def sin_with_custom_vjp(factor: float):
    @jax.custom_vjp
    def f(x):
        return jnp.sin(x)

    def fwd(x):
        return jnp.sin(x), x

    def bwd(x, g):
        return (g * jnp.cos(x) * factor,)

    f.defvjp(fwd, bwd)
    return f


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_jax_function_passes_in_reduced_precision(dtype):
    x = jnp.linspace(-1.0, 1.0, 7).astype(dtype)
    report = gk.gradcheck(lambda a: jnp.tanh(a) * jnp.sum(a**2), (x,))
    assert report.passed and report.framework == "jax" and report.promoted
    assert report.forward_evals >= 1  # the jvp dot-product test ran


def test_jax_float64_checks_run_without_touching_the_global_x64_flag():
    before = jax.config.read("jax_enable_x64")
    gk.gradcheck(jnp.sin, (jnp.ones(3, dtype=jnp.float32),))
    assert jax.config.read("jax_enable_x64") == before


def test_jax_custom_vjp_bug_is_caught_and_localised():
    x = jnp.linspace(0.1, 1.0, 5)
    assert gk.gradcheck(sin_with_custom_vjp(1.0), (x,))
    report = gk.gradcheck(sin_with_custom_vjp(1.01), (x,), raise_exception=False)
    assert not report
    assert report.failures[0].worst[0].output_index is not None
    assert any("forward mode unavailable" in n for n in report.notes)


def test_jax_pytree_inputs_are_named_by_path():
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    x = jnp.arange(2.0)
    report = gk.gradcheck(lambda p, x: jnp.tanh(x @ p["w"] + p["b"]).sum(), (params, x))
    names = {c.input for c in report.comparisons}
    assert {"inputs[0]['w']", "inputs[0]['b']", "inputs[1]"} <= names


def test_jax_gradgradcheck():
    x = jnp.linspace(-1.0, 1.0, 4)
    assert gk.gradgradcheck(lambda a: jnp.sum(jnp.sin(a) ** 3), (x,))


A = np.random.default_rng(0).standard_normal((4, 3))


def quadratic(w):
    return float(np.sum((A @ w) ** 2))


def quadratic_grad(w):
    return 2 * A.T @ (A @ w)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_hand_written_gradient(dtype):
    w = np.linspace(-1, 1, 3).astype(dtype)
    assert gk.gradcheck(quadratic, w, grad=quadratic_grad)
    report = gk.gradcheck(quadratic, w, grad=lambda w: quadratic_grad(w) * 1.01, raise_exception=False)
    assert not report
    assert report.failures[0].check.startswith("hand-written gradient")


def test_numpy_multiple_inputs_with_transposed_bug():
    x = np.random.default_rng(1).standard_normal((3, 3))
    w = np.random.default_rng(2).standard_normal((3, 3))
    fn = lambda x, w: float(np.sum(np.tanh(x @ w)))  # noqa: E731

    def grad(x, w):
        g = 1 - np.tanh(x @ w) ** 2
        return g @ w.T, x.T @ g

    def grad_transposed(x, w):
        gx, gw = grad(x, w)
        return gx, gw.T

    assert gk.gradcheck(fn, (x, w), grad=grad)
    report = gk.gradcheck(fn, (x, w), grad=grad_transposed, raise_exception=False)
    assert [c.input for c in report.failures] == ["inputs[1]"]


def test_numpy_errors_name_the_problem_and_the_fix():
    w = np.ones(3)
    with pytest.raises(CheckInputError, match="grad="):
        gk.gradcheck(quadratic, w)
    with pytest.raises(CheckInputError, match=r"shape \(2,\) for inputs\[0\]"):
        gk.gradcheck(quadratic, w, grad=lambda w: np.ones(2))
    with pytest.raises(CheckInputError, match="one gradient per input"):
        gk.gradcheck(quadratic, w, grad=lambda w: (np.ones(3), np.ones(3)))
    with pytest.raises(CheckInputError, match="astype"):
        gk.gradcheck(quadratic, np.arange(3), grad=quadratic_grad)
    with pytest.raises(CheckInputError, match="must return a scalar"):
        gk.gradcheck(lambda w: A @ w, w, grad=quadratic_grad)
    with pytest.raises(CheckInputError, match="ZeroDivisionError"):
        gk.gradcheck(lambda w: 1 / 0, w, grad=quadratic_grad)
