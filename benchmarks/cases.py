"""What a benchmark case is: a function, the point where it is checked, and the truth.

Every suite (zoo, OpInfo, random programs, two-layer network) produces `Case`s; the
harness runs every checker on every case and dtype. `Case.buggy` is the ground truth:
whether the derivatives the function claims (its backward, custom VJP or hand-written
gradient) really differ from the true ones. Suites decide it independently of any checker,
by comparing claimed Jacobians (see `benchmarks.ground_truth`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

__all__ = ["Case", "Framework", "Problem", "DTYPES"]

Framework = Literal["torch", "jax", "numpy"]

DTYPES: tuple[str, ...] = ("float64", "float32")


@dataclass(frozen=True)
class Problem:
    """A function and the point where its derivatives are checked.

    `fn(*inputs)` is the function. For numpy problems `grad(*inputs)` is the hand-written
    gradient of the scalar `fn` with respect to each input, as a tuple.
    """

    fn: Callable[..., Any]
    inputs: tuple[Any, ...]
    grad: Callable[..., Any] | None = None


@dataclass(frozen=True)
class Case:
    """One benchmark case.

    **Arguments:**
    - `name`: unique within its suite.
    - `suite`: "zoo", "opinfo", "random" or "twolayer".
    - `category`: what kind of bug (or control) it is, e.g. "sign/factor/transpose".
    - `framework`: which framework `build` returns.
    - `buggy`: the ground truth: the claimed derivatives differ from the true ones;
      `None` for an equivalent mutant (a mutation that leaves the Jacobian unchanged),
      which is not scored.
    - `build`: `build(dtype)` returns a fresh `Problem` in that dtype ("float64"/"float32").
    - `order`: 1 for a gradient check, 2 for a second-order check (`gradgradcheck`).
    - `reference`: `reference(dtype)` returns the same function with trusted derivatives
      (plain autograd / `jax.grad`; for numpy cases a torch function), used to confirm
      `buggy` independently.
    - `change`: how much the claimed Jacobian differs from the true one, relative to the
      largest true entry (filled in by suites that measure it).

    **Example:**
    >>> problem = case.build("float32")
    >>> out = problem.fn(*problem.inputs)
    """

    name: str
    suite: str
    category: str
    framework: Framework
    buggy: bool | None
    build: Callable[[str], Problem]
    order: int = 1
    dtypes: tuple[str, ...] = DTYPES
    reference: Callable[[str], Problem] | None = None
    change: float | None = None
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
