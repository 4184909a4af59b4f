"""The jax adapter: every floating-point leaf of the inputs is differentiable.

Float64 evaluations run inside `jax.enable_x64(True)`, a thread-local context, so the
caller's global jax configuration is never changed.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._base import CheckInputError, ComplexOutputs, Target, call_fn, scalar_output_required
from ._rng import fresh_generator, is_generator

__all__ = ["JaxTarget", "vjp_function"]


def _x64(enabled: bool):
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(enabled)
    from jax.experimental import enable_x64, disable_x64  # jax < 0.6

    return enable_x64() if enabled else disable_x64()


def _is_float(x: Any) -> bool:
    """Whether `x` is a floating-point array or number; other leaves (strings, None,
    Python objects such as an equinox module's activation functions) are static arguments,
    passed through unchanged."""
    return _is_kind(x, jnp.floating)


def _is_kind(x: Any, kind: Any) -> bool:
    if isinstance(x, (str, bytes)):
        return False
    try:
        return bool(jnp.issubdtype(jnp.result_type(x), kind))
    except (TypeError, ValueError):
        return False


class JaxTarget(Target):
    framework = "jax"

    def __init__(
        self, fn: Callable[..., Any], inputs: Sequence[Any], *, grad: Callable[..., Any] | None = None
    ) -> None:
        super().__init__(grad)
        self._fn = fn
        self._inputs = tuple(inputs)
        leaves_with_path, self._treedef = jax.tree_util.tree_flatten_with_path(self._inputs)
        self._leaves = [leaf for _, leaf in leaves_with_path]
        self._diff = []
        for n, (path, leaf) in enumerate(leaves_with_path):
            if is_generator(leaf):
                continue
            if _is_kind(leaf, jnp.complexfloating):
                raise CheckInputError(
                    f"inputs{jax.tree_util.keystr(path)} is complex; complex inputs are not "
                    f"checked yet. Split it into real and imaginary parts"
                )
            if _is_float(leaf):
                self._diff.append(n)
        if not self._diff:
            raise CheckInputError(
                "no input is a floating-point array, so there is no gradient to check. Pass "
                "the inputs to differentiate as float arrays (integer inputs are constants)"
            )
        self.input_names = [
            f"inputs{jax.tree_util.keystr(leaves_with_path[n][0])}" for n in self._diff
        ]
        self.generator_names = tuple(
            f"inputs{jax.tree_util.keystr(path)}" for path, leaf in leaves_with_path
            if is_generator(leaf)
        )
        self._dtypes = [jnp.result_type(self._leaves[n]) for n in self._diff]
        self.native_dtypes = [np.dtype(d).name for d in self._dtypes]
        self.base = [np.asarray(self._leaves[n]).astype(np.float64) for n in self._diff]
        first = self._leaves[self._diff[0]]
        devices = getattr(first, "devices", None)
        self.device = str(next(iter(devices()))) if callable(devices) else "cpu"

        # Float64 inputs are evaluated in float64 (x64 enabled for the call), never
        # truncated to float32 by jax's default configuration.
        with self._context(native=True):
            try:
                self.function_evals += 1
                outs = self._outputs(self.base, native=True)
            except TypeError as exc:
                raise _static_error(exc, leaves_with_path) or exc
        if any(jnp.iscomplexobj(o) for o in outs):
            raise ComplexOutputs(
                "the function returns a complex array; complex outputs are checked by "
                "gradcheck without a hand-written grad=. Return real and imaginary parts"
            )
        self._out_index = [k for k, o in enumerate(outs) if _is_float(o)]
        if len(self._out_index) < len(outs):
            self.notes.append("non-floating outputs are not differentiated")
        if not self._out_index:
            raise CheckInputError("the function returns no floating-point array to differentiate")
        if grad is not None and (len(outs) != 1 or np.size(outs[0]) != 1):
            raise scalar_output_required([np.shape(o) for o in outs], "jax's own derivatives")
        self._n_outputs = len(outs)
        self.output_names = (
            ["output"] if self._n_outputs == 1 else [f"outputs[{k}]" for k in self._out_index]
        )
        self.output_shapes = [tuple(np.shape(outs[k])) for k in self._out_index]
        self.native_outputs = [np.asarray(outs[k]).astype(np.float64) for k in self._out_index]
        if any(d != "float64" for d in self.native_dtypes):
            self.promoted = True
            try:
                with _x64(True):
                    self.function_evals += 1
                    promoted = self._outputs(self.base, native=False)
                    ok = all(np.asarray(promoted[k]).dtype == np.float64 for k in self._out_index)
            except Exception as exc:
                ok = False
                self.promotion_note = (
                    f"the function raised with float64 inputs ({type(exc).__name__}), so "
                    f"finite differences run in {self.native_dtype}"
                )
            if not ok:
                self.promoted = False
                self.promotion_note = self.promotion_note or (
                    "the function does not return float64 for float64 inputs, so finite "
                    f"differences run in {self.native_dtype}"
                )
        self._probe()

    # -- building calls ---------------------------------------------------------------------
    def _args(self, xs: Sequence[np.ndarray], native: bool) -> list[Any]:
        promote = self.promoted and not native
        # A generator leaf (numpy, Python) is copied for each call: the same draws at every
        # perturbed input, and the caller's is not advanced. (Keys are arrays, not state.)
        leaves = [fresh_generator(x) if is_generator(x) else x for x in self._leaves]
        for n, x, d in zip(self._diff, xs, self._dtypes):
            leaves[n] = jnp.asarray(x, dtype=jnp.float64 if promote else d)
        if promote:
            leaves = [
                jnp.asarray(leaf, dtype=jnp.float64) if i not in self._diff and _is_float(leaf) else leaf
                for i, leaf in enumerate(leaves)
            ]
        return leaves

    def _call(self, leaves: Sequence[Any]) -> Any:
        return self._fn(*jax.tree_util.tree_unflatten(self._treedef, list(leaves)))

    def _outputs(self, xs, native: bool) -> list[Any]:
        leaves = jax.tree_util.tree_leaves(self._call(self._args(xs, native)))
        for k, leaf in enumerate(leaves):
            try:
                jnp.result_type(leaf)
            except TypeError:
                raise CheckInputError(
                    f"the function's output {k} is a {type(leaf).__name__}, not an array; "
                    f"return jax arrays (or pytrees of them) only"
                ) from None
        return leaves

    def _on_diff(self, leaves: list[Any]) -> Callable[..., tuple[Any, ...]]:
        def f(*diff):
            full = list(leaves)
            for n, d in zip(self._diff, diff):
                full[n] = d
            outs = jax.tree_util.tree_leaves(self._call(full))
            return tuple(jnp.asarray(outs[k]) for k in self._out_index)

        return f

    def _context(self, native: bool):
        return _x64(True) if (self.promoted and not native) or "float64" in self.native_dtypes else contextlib.nullcontext()

    # -- Target interface -------------------------------------------------------------------
    def _evaluate(self, xs, native):
        with self._context(native):
            outs = self._outputs(xs, native)
            if len(outs) != self._n_outputs:
                raise CheckInputError(
                    f"the function returned {len(outs)} outputs on one call and "
                    f"{self._n_outputs} on another"
                )
            # One copy (real outputs: complex ones are refused at set-up).
            return [np.array(outs[k], dtype=np.float64) for k in self._out_index]

    def _vjps(self, cotangent_sets, native, at=None, saved_noise=0.0):
        # jax's residuals are not reachable from outside: `saved_noise` is not applied.
        with self._context(native):
            leaves = self._args(self.base if at is None else at, native)
            primals = [leaves[n] for n in self._diff]
            outs, pullback = jax.vjp(self._on_diff(leaves), *primals)
            results = []
            for cots in cotangent_sets:
                ct = tuple(
                    jnp.zeros_like(o) if c is None else jnp.asarray(c, dtype=o.dtype)
                    for o, c in zip(outs, cots)
                )
                grads = pullback(ct)
                results.append([np.asarray(g).astype(np.float64) for g in grads])
            return results

    def _jvp(self, tangents):
        with self._context(native=False):
            leaves = self._args(self.base, native=False)
            primals = tuple(leaves[n] for n in self._diff)
            tans = tuple(jnp.asarray(t, dtype=p.dtype) for t, p in zip(tangents, primals))
            _, out_t = jax.jvp(self._on_diff(leaves), primals, tans)
            return [np.array(t, dtype=np.float64) for t in out_t]

    def _call_grad(self, xs, native):
        with self._context(native):
            leaves = self._args(xs, native)
            return self.hand_written_grad(*jax.tree_util.tree_unflatten(self._treedef, leaves))


def _static_error(exc: TypeError, leaves_with_path: Sequence[Any]) -> CheckInputError | None:
    """For a jit-compiled fn given a string (or other non-array) it does not mark static."""
    if "static" not in str(exc) and "valid JAX type" not in str(exc):
        return None
    for path, leaf in leaves_with_path:
        if isinstance(leaf, (str, bytes)) or leaf is None:
            name = f"inputs{jax.tree_util.keystr(path)}"
            top = getattr(path[0], "idx", None) if len(path) else None
            where = f"static_argnums={top}" if top is not None else "static_argnums"
            error = CheckInputError(
                f"{name} is a {type(leaf).__name__} ({leaf!r}), and fn is jit-compiled "
                f"without marking it static, so jax cannot trace it: mark it static, "
                f"jax.jit(f, {where}) or static_argnames=..., or close over it, "
                f"gradcheck(lambda *a: fn(..., {leaf!r}), arrays)"
            )
            error.__cause__ = exc
            return error
    return None


# -- second order ----------------------------------------------------------------------
def vjp_function(
    fn: Callable[..., Any], inputs: Sequence[Any], grad_outputs: Any, seed: int
) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    """`(inputs..., v) -> J(inputs)^T v` through `jax.vjp`, and its inputs."""
    n = len(inputs)
    out = call_fn(fn, inputs)
    for leaf in jax.tree_util.tree_leaves(out):
        try:
            floating = jnp.issubdtype(jnp.result_type(leaf), jnp.floating)
        except TypeError:
            floating = False
        if not floating:
            raise CheckInputError(
                f"fn returned a {type(leaf).__name__} output; gradgradcheck needs "
                f"floating-point arrays only"
            )
    if grad_outputs is None:
        rng = np.random.default_rng(seed + 1)
        grad_outputs = jax.tree_util.tree_map(
            lambda o: jnp.asarray(rng.standard_normal(np.shape(o)), dtype=jnp.result_type(o)), out
        )

    def vjp(*args: Any) -> Any:
        _, pullback = jax.vjp(fn, *args[:n])
        return pullback(args[n])

    return vjp, tuple(inputs) + (grad_outputs,)
