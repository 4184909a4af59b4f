"""Backward mutations: what they do, the same in numpy, torch and jax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.ground_truth import relative_change, torch_claimed_jacobian
from benchmarks.mutations import MUTATION_KINDS, applicable_kinds, draw_mutation, mutate_jax, mutate_torch

SHAPES = [(2, 3), (2, 3)]


@pytest.mark.parametrize("kind", MUTATION_KINDS)
def test_every_kind_is_linear_and_framework_independent(kind: str) -> None:
    mutation = draw_mutation(kind, SHAPES, [(2, 3)], np.random.default_rng(3))
    rng = np.random.default_rng(4)
    grads = [rng.standard_normal(s) for s in SHAPES]
    cot = [rng.standard_normal((2, 3))]
    np_out = mutation.grads(mutation.cotangents(cot) + grads[1:])
    torch_out = mutation.grads(mutation.cotangents([torch.tensor(cot[0])]) + [torch.tensor(grads[1])])
    for a, b in zip(np_out, torch_out):
        np.testing.assert_array_equal(a, b.numpy())
    doubled = mutation.grads([2 * g for g in grads])
    for a, b in zip(doubled, mutation.grads(grads)):
        np.testing.assert_allclose(a, 2 * b)


def test_applicable_kinds_depend_on_shapes() -> None:
    assert "swap_inputs" in applicable_kinds(SHAPES, [(2, 3)])
    single = applicable_kinds([(1,)], [(1,)])
    assert "permute" not in single and "cotangent_permute" not in single and "drop_input" not in single


def test_mutated_torch_function_has_the_same_forward_and_a_changed_jacobian() -> None:
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, dtype=torch.float64, requires_grad=True)
    fn = lambda a, b: a * torch.sin(b)  # noqa: E731
    mutation = draw_mutation("one_element_x1.1", [(4,), (4,)], [(4,)], np.random.default_rng(0))
    mutated = mutate_torch(fn, mutation)
    torch.testing.assert_close(mutated(x, y), fn(x, y))
    true = torch_claimed_jacobian(fn, (x, y))
    claimed = torch_claimed_jacobian(mutated, (x, y))
    (i, fmap), = mutation.grad_maps
    col = 4 * i + int(np.flatnonzero(fmap.scale != 1)[0])
    diff = np.abs(claimed - true)
    assert np.count_nonzero(diff.max(axis=0)) == 1 and diff[:, col].max() > 0
    np.testing.assert_allclose(claimed[:, col], 1.1 * true[:, col])


def test_mutated_jax_function_matches_the_torch_mutation() -> None:
    import jax
    import jax.numpy as jnp

    from benchmarks.frameworks import enable_jax_x64

    enable_jax_x64()
    x = np.random.default_rng(1).standard_normal((2, 3))
    mutation = draw_mutation("cotangent_permute", [(2, 3)], [(2, 3)], np.random.default_rng(2))
    g = np.random.default_rng(5).standard_normal((2, 3))
    (jax_grad,) = jax.vjp(mutate_jax(jnp.tanh, mutation), jnp.asarray(x))[1](jnp.asarray(g))
    xt = torch.tensor(x, requires_grad=True)
    (torch_grad,) = torch.autograd.grad(mutate_torch(torch.tanh, mutation)(xt), xt, torch.tensor(g))
    np.testing.assert_allclose(np.asarray(jax_grad), torch_grad.numpy(), rtol=1e-12)
    assert relative_change(torch_grad.numpy(), (1 - np.tanh(x) ** 2) * g) > 1e-3


def test_unknown_kind_is_rejected_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="not a mutation kind"):
        draw_mutation("flip_everything", SHAPES, [(2, 3)], np.random.default_rng(0))
