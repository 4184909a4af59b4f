"""Reports are reproducible: equal seeds give equal reports, threads change nothing.

A report may differ between runs only in its timing (`elapsed_s`). It must not depend on
the caller's global random state, and checks running concurrently in threads must give
exactly what they give one after another.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import gradcheck_kit as gk
from custom_functions import scaled_sin


def without_timing(report: gk.Report) -> dict:
    data = report.to_dict()
    assert isinstance(data.pop("elapsed_s"), float)
    # Through JSON, so that a NaN somewhere cannot make two equal reports compare unequal.
    return json.loads(json.dumps(data))


def custom_vjp_sin(factor: float):
    @jax.custom_vjp
    def f(x):
        return jnp.sin(x)

    f.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * jnp.cos(x) * factor,))
    return f


def tensor(*shape, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype).requires_grad_(True)


_MIXING = torch.linalg.qr(torch.randn(24, 24, generator=torch.Generator().manual_seed(9), dtype=torch.float64))[0]


def layered_dropout(x):
    # Several draws from the global generator with real work between them: a check in
    # another thread that reseeded or drew in between would change what this one sees.
    for _ in range(4):
        x = torch.nn.functional.dropout((x @ _MIXING).tanh(), 0.3, training=True)
    return x


def cases():
    """(name, fn, inputs, options, expected verdict): correct and buggy, every framework."""
    return [
        ("torch_tanh_f64", torch.tanh, tensor(4, 5), {}, True),
        ("torch_softmax_f32", lambda x: x.softmax(-1), tensor(3, 6, dtype=torch.float32), {}, True),
        ("torch_dropout", layered_dropout, tensor(16, 24, seed=1), {}, True),
        ("torch_two_inputs", lambda a, b: (a @ b).sin(), (tensor(3, 4), tensor(4, 2, seed=2)), {}, True),
        ("torch_wrong_everywhere", scaled_sin(1.01), tensor(6, seed=3), {}, False),
        ("torch_wrong_element_bisect", scaled_sin(1.5, element=77), tensor(200, seed=4), {}, False),
        ("torch_wrong_element_full", scaled_sin(1.5, element=2), tensor(5, seed=5), {"mode": "full"}, False),
        ("torch_wrong_f32", scaled_sin(1.001), tensor(40, dtype=torch.float32, seed=6), {}, False),
        ("jax_correct", lambda x: jnp.tanh(x) * jnp.sum(x), (jnp.linspace(-1.0, 1.0, 7),), {}, True),
        ("jax_wrong", custom_vjp_sin(0.99), (jnp.linspace(0.1, 1.0, 5),), {}, False),
        (
            "numpy_correct",
            lambda a: float(np.sum(a**3)),
            (np.linspace(-1, 1, 6),),
            {"grad": lambda a: (3 * a**2,)},
            True,
        ),
        (
            "numpy_wrong",
            lambda a: float(np.sum(a**3)),
            (np.linspace(-1, 1, 6),),
            {"grad": lambda a: (3 * a**2 + 1e-3,)},
            False,
        ),
    ]


def run_case(case, *, seed: int = 0) -> gk.Report:
    _, fn, inputs, options, _ = case
    return gk.gradcheck(fn, inputs, seed=seed, raise_exception=False, **options)


CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_equal_seeds_give_equal_reports_whatever_the_global_rng(case):
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    first = run_case(case, seed=11)
    # Different global random state, and some draws in between: must not matter.
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    torch.rand(17), np.random.rand(5), random.random()
    second = run_case(case, seed=11)
    assert bool(first) is case[4], str(first)
    assert without_timing(first) == without_timing(second)
    assert first.seed == second.seed == 11


@pytest.mark.parametrize(
    "case", [CASES[0], CASES[3], CASES[8]], ids=["torch", "torch_two_inputs", "jax"]
)
def test_different_seeds_draw_different_probes(case):
    reports = [run_case(case, seed=s) for s in (0, 1, 2)]
    assert all(reports), "a correct function must pass whatever the seed"
    # The probe direction and cotangent enter the projected derivative `analytic`.
    projections = [
        tuple(c.analytic for c in r.comparisons if "finite" in c.check) for r in reports
    ]
    assert len(set(projections)) == 3, projections
    assert [r.seed for r in reports] == [0, 1, 2]


def test_buggy_function_fails_whatever_the_seed():
    verdicts = [bool(run_case(CASES[5], seed=s)) for s in range(4)]
    assert verdicts == [False] * 4


def test_concurrent_checks_match_sequential_ones():
    sequential = [without_timing(run_case(c)) for c in CASES]
    assert [r["passed"] for r in sequential] == [c[4] for c in CASES]

    # Every case twice, interleaved, on more threads than there are cores.
    jobs = CASES * 2
    with ThreadPoolExecutor(max_workers=6) as pool:
        concurrent = list(pool.map(run_case, jobs))

    for case, report in zip(jobs, concurrent):
        index = CASES.index(case)
        assert bool(report) is case[4], f"{case[0]}: {report}"
        assert without_timing(report) == sequential[index], case[0]


def test_concurrent_checks_leave_global_rng_untouched():
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    expected = (torch.rand(4), np.random.rand(4), random.random())
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)
    stochastic = [c for c in CASES if c[0] in ("torch_dropout", "torch_tanh_f64", "jax_correct")]
    with ThreadPoolExecutor(max_workers=3) as pool:
        reports = list(pool.map(run_case, stochastic * 3))
    assert all(reports)
    assert torch.equal(torch.rand(4), expected[0])
    assert np.array_equal(np.random.rand(4), expected[1])
    assert random.random() == expected[2]
