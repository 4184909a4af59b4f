"""The jax adapter: dtypes as passed, static arguments passed through, float32-inside found."""

from __future__ import annotations

import warnings

import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

import gradcheck_kit as gk
from gradcheck_kit._targets import make_target


def test_float64_inputs_are_never_truncated_when_x64_is_off():
    from gradcheck_kit._targets.jax import _x64

    with jax.enable_x64(True):
        x = jnp.linspace(0.1, 1.0, 4, dtype=jnp.float64)
    seen = []

    def f(x):
        seen.append(str(x.dtype))
        return jnp.sin(x) * x

    # x64 off in this scope, whatever another test set globally.
    with _x64(False), warnings.catch_warnings():
        # jax warns when it truncates float64 to float32
        warnings.filterwarnings("error", message=".*truncated to dtype float32")
        assert gk.gradcheck(f, (x,)).passed
    assert seen and set(seen) == {"float64"}


def test_a_static_string_argument_is_passed_through():
    def f(x, mode):
        return jnp.tanh(x) if mode == "tanh" else jnp.sin(x)

    target = make_target(f, (jnp.linspace(-1.0, 1.0, 3), "tanh"))
    assert target.input_names == ["inputs[0]"]
    assert gk.gradcheck(f, (jnp.linspace(-1.0, 1.0, 3), "tanh")).passed


def test_a_function_computing_in_float32_inside_is_not_promoted():
    x = jnp.linspace(-1.0, 1.0, 5, dtype=jnp.float32)
    down = make_target(lambda x: jnp.tanh(x.astype(jnp.float32)).astype(x.dtype), (x,))
    assert not down.promoted and "computes in lower precision" in down.promotion_note
    assert make_target(jnp.tanh, (x,)).promoted


def test_numpy_arrays_into_a_jax_function_are_told_to_become_jax_arrays():
    import numpy as np

    with pytest.raises(gk.CheckInputError, match=r"jnp\.asarray"):
        gk.gradcheck(jnp.sin, (np.ones(3),))
