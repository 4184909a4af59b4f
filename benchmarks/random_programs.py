"""Random programs drawn by hypothesis, with and without a bug injected at a random node.

A `Program` is a small graph over equally shaped (n, m) values: inputs, then nodes that
apply elementwise ops (smooth ones like sin and softplus, kinked ones like relu, abs,
clamp and maximum), axis ops (cumsum, softmax, centring) and a matrix product
`a @ (b.T @ c)`. The same program runs in three forms:

- torch: plain autograd; the mutant wraps one node in a `torch.autograd.Function` whose
  backward is rewritten by a `benchmarks.mutations.Mutation`;
- jax: plain jax; the mutant wraps one node in a mutated `jax.custom_vjp`;
- numpy: a scalar `sum(W * program(x))` with a hand-written reverse pass (one VJP rule per
  op); the mutant has that node's rule rewritten.

Whether a mutant really changes the Jacobian is decided in float64 by comparing claimed
Jacobians (torch: row by row through the backward; jax: `jax.jacrev`; numpy: the two
hand-written gradients), never by a checker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from .cases import Case, Problem
from .ground_truth import CHANGE_THRESHOLD, jax_claimed_jacobian, relative_change, torch_claimed_jacobian
from .mutations import Mutation, applicable_kinds, draw_mutation, mutate_jax, mutate_torch

__all__ = ["Node", "Program", "programs", "draw_programs", "program_cases", "numpy_program"]


@dataclass(frozen=True)
class OpSpec:
    """One op in three frameworks; `vjp(g, out, *args)` is the hand-written numpy rule."""

    arity: int
    kinked: bool
    torch: Callable[..., Any]
    jax: Callable[..., Any]
    numpy: Callable[..., Any]
    vjp: Callable[..., tuple[np.ndarray, ...]]
    uses_axis: bool = False


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _rcumsum(g: np.ndarray, axis: int) -> np.ndarray:
    return np.flip(np.cumsum(np.flip(g, axis), axis), axis)


def _t() -> Any:
    import torch

    return torch


def _j() -> Any:
    import jax

    return jax


OPS: dict[str, OpSpec] = {
    "sin": OpSpec(1, False, lambda x: _t().sin(x), lambda x: _j().numpy.sin(x), np.sin,
                  lambda g, o, x: (g * np.cos(x),)),
    "cos": OpSpec(1, False, lambda x: _t().cos(x), lambda x: _j().numpy.cos(x), np.cos,
                  lambda g, o, x: (-g * np.sin(x),)),
    "tanh": OpSpec(1, False, lambda x: _t().tanh(x), lambda x: _j().numpy.tanh(x), np.tanh,
                   lambda g, o, x: (g * (1 - o * o),)),
    "sigmoid": OpSpec(1, False, lambda x: _t().sigmoid(x), lambda x: _j().nn.sigmoid(x), _sigmoid,
                      lambda g, o, x: (g * o * (1 - o),)),
    "square": OpSpec(1, False, lambda x: x * x, lambda x: x * x, lambda x: x * x,
                     lambda g, o, x: (2 * g * x,)),
    "softplus": OpSpec(1, False, lambda x: _t().nn.functional.softplus(x), lambda x: _j().nn.softplus(x),
                       lambda x: np.logaddexp(0, x), lambda g, o, x: (g * _sigmoid(x),)),
    "gauss": OpSpec(1, False, lambda x: _t().exp(-x * x), lambda x: _j().numpy.exp(-x * x),
                    lambda x: np.exp(-x * x), lambda g, o, x: (-2 * g * x * o,)),
    "log1p_sq": OpSpec(1, False, lambda x: _t().log1p(x * x), lambda x: _j().numpy.log1p(x * x),
                       lambda x: np.log1p(x * x), lambda g, o, x: (2 * g * x / (1 + x * x),)),
    "relu": OpSpec(1, True, lambda x: _t().relu(x), lambda x: _j().nn.relu(x), lambda x: np.maximum(x, 0),
                   lambda g, o, x: (g * (x > 0),)),
    "abs": OpSpec(1, True, lambda x: _t().abs(x), lambda x: _j().numpy.abs(x), np.abs,
                  lambda g, o, x: (g * np.sign(x),)),
    "clamp": OpSpec(1, True, lambda x: _t().clamp(x, -0.5, 0.5), lambda x: _j().numpy.clip(x, -0.5, 0.5),
                    lambda x: np.clip(x, -0.5, 0.5), lambda g, o, x: (g * ((x >= -0.5) & (x <= 0.5)),)),
    "add": OpSpec(2, False, lambda a, b: a + b, lambda a, b: a + b, lambda a, b: a + b,
                  lambda g, o, a, b: (g, g)),
    "sub": OpSpec(2, False, lambda a, b: a - b, lambda a, b: a - b, lambda a, b: a - b,
                  lambda g, o, a, b: (g, -g)),
    "mul": OpSpec(2, False, lambda a, b: a * b, lambda a, b: a * b, lambda a, b: a * b,
                  lambda g, o, a, b: (g * b, g * a)),
    "div_soft": OpSpec(2, False, lambda a, b: a / (1 + b * b), lambda a, b: a / (1 + b * b),
                       lambda a, b: a / (1 + b * b),
                       lambda g, o, a, b: (g / (1 + b * b), -2 * g * a * b / (1 + b * b) ** 2)),
    "maximum": OpSpec(2, True, lambda a, b: _t().maximum(a, b), lambda a, b: _j().numpy.maximum(a, b),
                      np.maximum,
                      # Ties split the cotangent evenly, as torch and jax do.
                      lambda g, o, a, b: (g * ((a > b) + 0.5 * (a == b)), g * ((b > a) + 0.5 * (a == b)))),
    "cumsum": OpSpec(1, False, lambda x, axis: _t().cumsum(x, axis), lambda x, axis: _j().numpy.cumsum(x, axis),
                     lambda x, axis: np.cumsum(x, axis), lambda g, o, x, axis: (_rcumsum(g, axis),), True),
    "softmax": OpSpec(1, False, lambda x, axis: _t().softmax(x, axis), lambda x, axis: _j().nn.softmax(x, axis),
                      _softmax, lambda g, o, x, axis: (o * (g - (g * o).sum(axis=axis, keepdims=True)),), True),
    "center": OpSpec(1, False, lambda x, axis: x - x.mean(axis, keepdim=True),
                     lambda x, axis: x - x.mean(axis, keepdims=True), lambda x, axis: x - x.mean(axis, keepdims=True),
                     lambda g, o, x, axis: (g - g.mean(axis=axis, keepdims=True),), True),
    "mix": OpSpec(3, False, lambda a, b, c: a @ (b.T @ c), lambda a, b, c: a @ (b.T @ c),
                  lambda a, b, c: a @ (b.T @ c), lambda g, o, a, b, c: _mix_vjp(g, a, b, c)),
}


def _mix_vjp(g: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
    inner = b.T @ c
    d_inner = a.T @ g
    return g @ inner.T, c @ d_inner.T, b @ d_inner


SMOOTH = tuple(k for k, v in OPS.items() if not v.kinked)
KINKED = tuple(k for k, v in OPS.items() if v.kinked)


@dataclass(frozen=True)
class Node:
    """`op` applied to earlier values `args` (inputs first, then nodes); `axis` for axis ops."""

    op: str
    args: tuple[int, ...]
    axis: int = 0


@dataclass(frozen=True)
class Program:
    """A random program and, optionally, the bug to inject.

    `mutation_node`/`mutation_kind`/`mutation_seed` say where and which mutation; the
    concrete `Mutation` is drawn from `mutation_seed` for the node's shapes.
    """

    n: int
    m: int
    n_inputs: int
    nodes: tuple[Node, ...]
    value_seed: int
    mutation_node: int
    mutation_kind: str
    mutation_seed: int

    @property
    def kinked(self) -> bool:
        return any(OPS[node.op].kinked for node in self.nodes)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.m)

    def describe(self) -> str:
        names = [f"x{i}" for i in range(self.n_inputs)]
        for k, node in enumerate(self.nodes):
            axis = f", axis={node.axis}" if OPS[node.op].uses_axis else ""
            names.append(f"{node.op}({', '.join(names[a] for a in node.args)}{axis})")
        return names[-1]

    def mutation(self) -> Mutation:
        node = self.nodes[self.mutation_node]
        shapes = [self.shape] * OPS[node.op].arity
        return draw_mutation(self.mutation_kind, shapes, [self.shape], np.random.default_rng(self.mutation_seed))

    def inputs(self) -> list[np.ndarray]:
        rng = np.random.default_rng(self.value_seed)
        return [rng.standard_normal(self.shape) for _ in range(self.n_inputs)]


@st.composite
def programs(draw: Any, *, kinked: bool | None = None, max_nodes: int = 6, max_inputs: int = 3) -> Program:
    """A hypothesis strategy for `Program`s over random shapes up to 4 x 4.

    **Arguments:**
    - `kinked`: True for programs with at least one kinked op, False for smooth ones,
      None for either.
    - `max_nodes`, `max_inputs`: size limits.

    **Returns:** a strategy of `Program`s (each carries a mutation to inject on demand).

    **Example:**
    >>> from hypothesis import given
    >>> @given(programs(kinked=False))
    ... def test_smooth(p): assert not p.kinked
    """
    kinked = draw(st.booleans()) if kinked is None else kinked
    n, m = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    n_inputs = draw(st.integers(1, max_inputs))
    n_nodes = draw(st.integers(1, max_nodes))
    kink_at = draw(st.integers(0, n_nodes - 1)) if kinked else -1
    nodes = []
    for k in range(n_nodes):
        pool = KINKED if k == kink_at else (SMOOTH + KINKED if kinked else SMOOTH)
        op = draw(st.sampled_from(pool))
        arity = OPS[op].arity
        available = n_inputs + k
        # Chaining each node to the previous one keeps the output connected to most nodes.
        first = available - 1
        rest = [draw(st.integers(0, available - 1)) for _ in range(arity - 1)]
        nodes.append(Node(op, (first, *rest), draw(st.integers(0, 1))))
    mutation_node = draw(st.integers(0, n_nodes - 1))
    arity = OPS[nodes[mutation_node].op].arity
    kinds = applicable_kinds([(n, m)] * arity, [(n, m)])
    return Program(
        n=n,
        m=m,
        n_inputs=n_inputs,
        nodes=tuple(nodes),
        value_seed=draw(st.integers(0, 2**31 - 1)),
        mutation_node=mutation_node,
        mutation_kind=draw(st.sampled_from(kinds)),
        mutation_seed=draw(st.integers(0, 2**31 - 1)),
    )


def draw_programs(count: int, *, seed: int = 0, kinked: bool | None = None) -> list[Program]:
    """`count` distinct programs drawn by hypothesis from a fixed seed (repeatable)."""
    drawn: list[Program] = []

    @hypothesis_seed(seed)
    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(programs(kinked=kinked))
    def collect(program: Program) -> None:
        if program not in drawn:
            drawn.append(program)

    collect()
    return drawn[:count]


# ---- the three forms of a program ---------------------------------------------------------


def _evaluate(program: Program, inputs: Sequence[Any], apply: Callable[[int, Node], Callable[..., Any]]) -> Any:
    values = list(inputs)
    for k, node in enumerate(program.nodes):
        f = apply(k, node)
        values.append(f(*[values[a] for a in node.args]))
    return values[-1]


def torch_program(program: Program, *, mutated: bool) -> Callable[..., Any]:
    """The program as a torch function; with `mutated`, one node's backward is wrong."""
    mutation = program.mutation() if mutated else None

    def apply(k: int, node: Node) -> Callable[..., Any]:
        spec = OPS[node.op]
        f = (lambda *a: spec.torch(*a, node.axis)) if spec.uses_axis else spec.torch
        return mutate_torch(f, mutation) if mutation is not None and k == program.mutation_node else f

    return lambda *xs: _evaluate(program, xs, apply)


def jax_program(program: Program, *, mutated: bool) -> Callable[..., Any]:
    """The program as a jax function; with `mutated`, one node has a wrong custom VJP."""
    mutation = program.mutation() if mutated else None

    def apply(k: int, node: Node) -> Callable[..., Any]:
        spec = OPS[node.op]
        f = (lambda *a: spec.jax(*a, node.axis)) if spec.uses_axis else spec.jax
        return mutate_jax(f, mutation) if mutation is not None and k == program.mutation_node else f

    return lambda *xs: _evaluate(program, xs, apply)


def numpy_program(program: Program, *, mutated: bool) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """`(fn, grad)`: the scalar `sum(W * program(x))` and its hand-written gradient."""
    weights = np.random.default_rng(program.value_seed + 1).standard_normal(program.shape)
    mutation = program.mutation() if mutated else None

    def forward(xs: Sequence[np.ndarray]) -> list[np.ndarray]:
        values = list(xs)
        for node in program.nodes:
            spec = OPS[node.op]
            args = [values[a] for a in node.args]
            values.append(spec.numpy(*args, node.axis) if spec.uses_axis else spec.numpy(*args))
        return values

    def fn(*xs: np.ndarray) -> Any:
        out = forward(xs)[-1]
        return (weights.astype(out.dtype) * out).sum()

    def grad(*xs: np.ndarray) -> tuple[np.ndarray, ...]:
        values = forward(xs)
        cot: list[np.ndarray | None] = [None] * len(values)
        cot[-1] = weights.astype(values[-1].dtype)
        for k in reversed(range(len(program.nodes))):
            index = program.n_inputs + k
            g = cot[index]
            if g is None:
                continue
            node = program.nodes[k]
            spec = OPS[node.op]
            args = [values[a] for a in node.args]
            wrong = mutation is not None and k == program.mutation_node
            if wrong:
                (g,) = mutation.cotangents([g])
            extra = (node.axis,) if spec.uses_axis else ()
            grads = list(spec.vjp(g, values[index], *args, *extra))
            if wrong:
                grads = mutation.grads(grads)
            for a, ga in zip(node.args, grads):
                ga = np.asarray(ga, dtype=values[a].dtype)
                cot[a] = ga if cot[a] is None else cot[a] + ga
        return tuple(
            cot[i] if cot[i] is not None else np.zeros(program.shape, dtype=xs[i].dtype)
            for i in range(program.n_inputs)
        )

    return fn, grad


def _torch_inputs(program: Program, dtype: str) -> tuple[Any, ...]:
    import torch

    return tuple(torch.tensor(x, dtype=getattr(torch, dtype)).requires_grad_() for x in program.inputs())


def _jax_inputs(program: Program, dtype: str) -> tuple[Any, ...]:
    import jax.numpy as jnp

    from .frameworks import enable_jax_x64

    enable_jax_x64()
    return tuple(jnp.asarray(x, dtype=dtype) for x in program.inputs())


def _change(program: Program, framework: str) -> float:
    if framework == "torch":
        xs = _torch_inputs(program, "float64")
        return relative_change(
            torch_claimed_jacobian(torch_program(program, mutated=True), xs),
            torch_claimed_jacobian(torch_program(program, mutated=False), xs),
        )
    if framework == "jax":
        xs = _jax_inputs(program, "float64")
        return relative_change(
            jax_claimed_jacobian(jax_program(program, mutated=True), xs),
            jax_claimed_jacobian(jax_program(program, mutated=False), xs),
        )
    xs = program.inputs()
    flat = lambda grads: np.concatenate([np.ravel(g) for g in grads])[None, :]  # noqa: E731
    return relative_change(flat(numpy_program(program, mutated=True)[1](*xs)),
                           flat(numpy_program(program, mutated=False)[1](*xs)))


def _program_case(program: Program, index: int, framework: str, *, mutated: bool) -> Case:
    change = _change(program, framework) if mutated else 0.0
    # A mutant that leaves the Jacobian unchanged (its node's effect is cut off downstream,
    # or it permutes equal entries) is an equivalent mutant: kept, but not scored.
    buggy: bool | None = (True if change > CHANGE_THRESHOLD else None) if mutated else False

    def build(dtype: str) -> Problem:
        if framework == "torch":
            return Problem(torch_program(program, mutated=mutated), _torch_inputs(program, dtype))
        if framework == "jax":
            return Problem(jax_program(program, mutated=mutated), _jax_inputs(program, dtype))
        fn, grad = numpy_program(program, mutated=mutated)
        return Problem(fn, tuple(x.astype(dtype) for x in program.inputs()), grad)

    kind = "kinked" if program.kinked else "smooth"
    return Case(
        name=f"{framework}_p{index}" + (f"/{program.mutation_kind}@{program.mutation_node}" if mutated else ""),
        suite=f"random/{framework}",
        category=f"{kind} mutant" if mutated else f"{kind} correct",
        framework=framework,  # type: ignore[arg-type]
        buggy=buggy,
        build=build,
        change=change,
        description=program.describe() + (f"; {program.mutation().description}" if mutated else ""),
    )


def program_cases(*, torch_count: int = 100, jax_count: int = 30, numpy_count: int = 60, seed: int = 0) -> list[Case]:
    """Correct and mutated cases for programs drawn in each framework.

    **Arguments:**
    - `torch_count`, `jax_count`, `numpy_count`: programs per framework (each gives a
      correct case and a mutant).
    - `seed`: the hypothesis seed (each framework draws its own programs from it).

    **Returns:** a list of `Case`s (suite "random/torch", "random/jax", "random/numpy").

    **Example:**
    >>> len(program_cases(torch_count=2, jax_count=0, numpy_count=0))
    4
    """
    cases: list[Case] = []
    for offset, (framework, count) in enumerate((("torch", torch_count), ("jax", jax_count), ("numpy", numpy_count))):
        if count <= 0:
            continue
        for i, program in enumerate(draw_programs(count, seed=seed + offset)):
            cases.append(_program_case(program, i, framework, mutated=False))
            cases.append(_program_case(program, i, framework, mutated=True))
    return cases
