"""What is checked: a function with its inputs, seen through numpy float64 arrays.

A `Target` hides the framework. The engine hands it float64 numpy arrays for the
differentiable inputs and gets float64 numpy arrays back, whatever runs inside. Each
evaluation runs either in the *work* precision (float64 when the function could be
promoted, otherwise the inputs' own dtypes) or in the *native* precision (the inputs'
own dtypes). Targets never write to the caller's objects: every call builds fresh copies.
"""

from __future__ import annotations

import contextlib
import random
from abc import ABC, abstractmethod
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .._probes import random_signs

__all__ = ["Target", "CheckInputError", "ComplexOutputs", "RNG_SEED", "scalar_output_required"]

# Seed given to the global generators before every evaluation, so that a forward that
# draws random numbers (dropout) draws the same ones at every perturbed input.
RNG_SEED = 20240601


class CheckInputError(ValueError):
    """The function or its inputs cannot be checked as given; the message says how to fix it."""


class ComplexOutputs(CheckInputError):
    """The function returns complex tensors, which a real target cannot compare; `gradcheck`
    then checks it through its real and imaginary parts."""


class Target(ABC):
    """A function and its inputs, as the engine sees them."""

    framework: str
    #: Names of the differentiable inputs, e.g. ``inputs[0]``.
    input_names: list[str]
    #: Float64 copies of the differentiable inputs, in their original shapes.
    base: list[np.ndarray]
    #: The dtype name of each differentiable input.
    native_dtypes: list[str]
    output_names: list[str]
    output_shapes: list[tuple[int, ...]]
    device: str
    #: Whether work-precision evaluations run in float64 although some input is not.
    promoted: bool = False
    #: What besides the inputs the float64 evaluations saw as float64 copies (modules the
    #: function reaches, tensors listed in `promote=`), one description each.
    promoted_objects: Sequence[str] = ()
    #: Why promotion was not possible (None when it was, or was not needed), or that the
    #: function computes in a lower precision than its float64 inputs.
    promotion_note: str | None = None
    #: The precision the function computes in where that is coarser than its inputs' dtype
    #: and promotion (float64 inputs, float32 inside and cast back); None otherwise.
    internal_dtype: str | None = None
    #: What the set-up probe saw of the float64 evaluation's resolution: True where it
    #: changed as a float64 computation does under a step far below float32's resolution,
    #: False where it did not, None where it could not tell (too few output elements
    #: change smoothly enough to predict the change).
    resolves_float64: bool | None = None
    # The precision probe waits for the engine's grid tests (`probe_precision`).
    _precision_deferred: bool = False
    # The set-up probe's outputs at the base point, with the precision they ran in.
    _at_base: tuple[tuple[bool, str | None], list[np.ndarray]] | None = None
    # The outputs of the set-up's first call, made without reseeding the generators, where
    # it ran in work precision (`first_call_outputs`).
    _first_call: list[np.ndarray] | None = None
    # Whether `probe_dependence` has a question left (not once asked, nor where the set-up
    # probe saw the outputs move).
    _dependence_open: bool = False
    #: Why forward mode is unavailable, once a `jvp` has failed.
    forward_mode_note: str | None = None
    #: True when neither the outputs nor the gradients change with any checked input
    #: (every gradient exactly zero and a large perturbation leaving the outputs bit for
    #: bit equal): a comparison would be vacuous, "analytic 0, numeric 0".
    outputs_independent: bool = False
    #: True when the outputs are differentiable, but through tensors other than the inputs
    #: as passed (the graph from the outputs reaches none of them: a closure or a global
    #: read instead of the argument), or when no output requires grad at all (detached).
    #: A constant function, whose zero gradient is right, stays False.
    outputs_disconnected: bool = False
    notes: list[str]
    #: Names of the inputs that are random generators, replayed at every evaluation.
    generator_names: tuple[str, ...] = ()

    #: Where some inputs are constants: (positions of the differentiable ones, number of
    #: inputs). A hand-written grad may then return one gradient per input; the constants'
    #: entries are dropped.
    grad_positions: tuple[list[int], int] | None = None

    #: Forward mode only (torch's `check_backward_ad=False`): the products `J^T u` come from
    #: the Jacobian built column by column with forward mode, and the backward is never
    #: called (see `use_forward_mode_only`).
    forward_only: bool = False

    def __init__(self, grad: Callable[..., Any] | None = None) -> None:
        self.hand_written_grad = grad
        self.notes = []
        self.function_evals = 0
        self.backward_evals = 0
        self.forward_evals = 0
        self.reseed = True

    # -- framework-specific --------------------------------------------------------------
    @abstractmethod
    def _evaluate(self, xs: Sequence[np.ndarray], native: bool) -> list[np.ndarray]:
        """Outputs at `xs`, as fresh float64 numpy arrays.

        Callers reuse the memory of `xs` for the next point: copy the inputs into the
        framework's arrays, keep no reference to them, and return outputs that share no
        memory with them.
        """

    @abstractmethod
    def _vjps(
        self,
        cotangent_sets: Sequence[Sequence[np.ndarray | None]],
        native: bool,
        at: Sequence[np.ndarray] | None = None,
        saved_noise: float = 0.0,
    ) -> list[list[np.ndarray]]:
        """Reverse-mode products at `at` (default: the base point), one forward pass for all
        sets; with `saved_noise`, the tensors the forward saves for the backward are moved
        by that relative amount (random signs) where the framework allows it."""

    def _jvp(self, tangents: Sequence[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def _call_grad(self, xs: Sequence[np.ndarray], native: bool) -> Sequence[Any]:
        """Call the hand-written gradient with framework objects built from `xs`."""
        raise NotImplementedError

    # -- set-up probes ------------------------------------------------------------------------
    def _probe(self) -> None:
        """Ask whether the float64 evaluation really computes in float64 before the check
        (promotion decided by the output dtype alone misses functions that upcast to
        float32 inside and cast back); subclasses call this last. Whether the outputs
        depend on the checked inputs at all is asked later, where the answer can matter
        (`probe_dependence`).
        """
        with np.errstate(all="ignore"):
            outs = self.evaluate(self.base)
            # The check's first evaluation at the point (`_preflight.base_outputs`), if
            # the probes leave the precision it ran in as it is.
            self._at_base = (self._precision_key(), outs)  # no probe writes into them
            y0 = _flat_outputs(outs)
        self._dependence_open = True
        try:
            with _user_code("the function"), np.errstate(all="ignore"):
                if self.promoted:
                    signs = self._probe_signs(np.random.default_rng(RNG_SEED))
                    relative = [_relative(s, x) for s, x in zip(signs, self.base)]
                    if self._probe_precision(self._prober(), y0, relative):
                        self._dependence_open = False  # the outputs moved with the inputs
                elif self.work_dtype == "float64" and self.hand_written_grad is None:
                    # For float64 inputs only the engine's grid tests use what the probe
                    # sees, and they find a grid in almost no float64 gradient: the probe
                    # runs when they do (`probe_precision`), three evaluations saved else.
                    self._precision_deferred = True
        except CheckInputError as exc:
            if exc.__cause__ is None:
                raise
            self._dependence_open = False
            self.notes.append(_refused_probe(exc.__cause__))

    def probe_dependence(self, y0: np.ndarray) -> list[str]:
        """Whether the outputs (`y0` at the point, flat, in work precision) change with the
        checked inputs at all; its notes.

        Asked where the answer can matter (the engine: every gradient exactly zero, or
        outputs that no finite-difference step moved), once: a move of 1e-3 of every
        input's scale at once and, where that leaves the outputs bit for bit as they were,
        one of a quarter of it. Outputs that stay put even then, with a backward that gives
        exactly zero, make the check vacuous (`outputs_independent`).
        """
        if not self._dependence_open:
            return []
        self._dependence_open = False
        # The set-up probe's signs drawn again (the same generator and inputs: the same
        # numbers), rather than an input-sized array kept through the check.
        rng = np.random.default_rng(RNG_SEED)
        signs = self._probe_signs(rng)
        before = len(self.notes)
        at = self._prober()
        try:
            with _user_code("the function"), np.errstate(all="ignore"):
                absolute = [
                    np.where(s != 0, s * (np.abs(x) + 1.0), 0.0) for s, x in zip(signs, self.base)
                ]
                near = at(1e-3, absolute)  # not `moved`: `at` writes into that
                if np.array_equal(near, y0, equal_nan=True):
                    # A step function (a mask, a rounding) is constant near the point
                    # but moves over a quarter of the inputs' scale: its zero
                    # gradient is a claim about its inputs, checked as such.
                    far = at(0.25, absolute)
                    if np.array_equal(far, y0, equal_nan=True):
                        self._probe_dependence(rng)
                    else:
                        self.notes.append(
                            "the outputs are constant near the inputs (they change only "
                            "over moves of a quarter of the inputs' scale, as a mask or "
                            "a step function does): the derivative checked is zero"
                        )
        except CheckInputError as exc:
            if exc.__cause__ is None:
                raise
            self.notes.append(_refused_probe(exc.__cause__))
        return self.notes[before:]

    def _probe_signs(self, rng: np.random.Generator) -> list[np.ndarray]:
        """The set-up probes' random signs; non-finite elements are held fixed, as the check
        holds them."""
        return [np.where(np.isfinite(x), random_signs(rng, x.shape), 0.0) for x in self.base]

    def _prober(self) -> Callable[[float, Sequence[np.ndarray]], np.ndarray]:
        """`at(h, v)`: the outputs, flat, at `base + h v` (one evaluation, generators seeded).

        One buffer per input for every probe point: `_evaluate` copies its inputs into the
        framework's arrays and its outputs out of them, so the buffers can be reused.
        """
        moved = [np.empty_like(x) for x in self.base]

        def at(h: float, v: Sequence[np.ndarray]) -> np.ndarray:
            self.function_evals += 1
            self._seed_generators()
            for buf, x, d in zip(moved, self.base, v):
                np.multiply(d, h, out=buf)
                np.add(buf, x, out=buf)
            return _flat_outputs(self._evaluate(moved, False))

        return at

    def probe_precision(self, y0: Sequence[np.ndarray]) -> None:
        """The set-up precision probe where it was deferred (float64 inputs), at the base
        point whose outputs are `y0`: sets `resolves_float64`. Three evaluations, once."""
        if not self._precision_deferred:
            return
        self._precision_deferred = False
        signs = self._probe_signs(np.random.default_rng(RNG_SEED))
        relative = [_relative(s, x) for s, x in zip(signs, self.base)]
        flat = _flat_outputs([np.asarray(y, dtype=np.float64) for y in y0])
        try:
            with _user_code("the function"), np.errstate(all="ignore"):
                self._probe_precision(self._prober(), flat, relative)
        except CheckInputError as exc:
            if exc.__cause__ is None:
                raise  # the function refuses perturbed inputs: the question stays open

    def _probe_precision(self, at: Callable[..., np.ndarray], y0: np.ndarray, v) -> bool:
        """Demote when float64 evaluations miss changes far above float64 resolution.

        Perturbing each nonzero input element by a relative 1e-4 moves a float32 value by
        ~1700 of its ulps, enough to measure the directional change; two steps (1e-4 and
        5e-5) give its slope `s`, and must agree with a smooth function there. A relative
        step of `TINY_STEP` (2e-8) is below float32's half ulp (3e-8 to 6e-8), and its sign
        is chosen per element so that the element's float32 rounding stays where it is
        (one of the two directions always keeps it): a function that computes in float32
        sees its input unchanged and returns y0 bit for bit (or, where it casts a float64
        intermediate, changes by whole float32 ulps), whereas a float64 function changes
        by `TINY_STEP` s, more than 32 float64 ulps of y0 on the elements tested, unless
        it cancels. Sets `resolves_float64` (most such elements keep that change to 10%,
        or miss it), and demotes a promoted target whose outputs stay unchanged. Returns
        whether the outputs changed under the relative 1e-4 step.
        """
        if not any(np.any(d != 0) for d in v):
            return False
        v = [_float32_stays(x, np.abs(d), TINY_STEP) for x, d in zip(self.base, v)]
        y1, yh, y2 = at(1e-4, v), at(5e-5, v), at(TINY_STEP, v)
        if not y0.shape == y1.shape == yh.shape == y2.shape:
            return True  # outputs that change shape: the check reports it
        # The formulas below run in place, in the evaluations (fresh arrays of the check's
        # own: `_evaluate`) and two more arrays, bit for bit the plain expressions in the
        # comments: at 1e6 outputs and more, fresh temporaries cost as much as the maths.
        d1, dh, d2 = (np.subtract(y, y0, out=y) for y in (y1, yh, y2))  # y - y0
        with np.errstate(invalid="ignore", over="ignore"):
            # The change at TINY_STEP a linear function predicts, with the quadratic term of
            # the two larger steps eliminated: TINY_STEP / 1e-4 * (4 dh - d1).
            expected = np.multiply(dh, 4.0)
            expected -= d1
            expected *= TINY_STEP / 1e-4
            smooth = np.isfinite(y0) & np.isfinite(d1) & np.isfinite(dh) & (d1 != 0)
            # and |d1 - 2 dh| <= 0.05 |d1|
            curvature = np.subtract(d1, np.multiply(dh, 2.0, out=dh), out=dh)
            np.abs(curvature, out=curvature)
            scratch = np.abs(d1)
            smooth &= curvature <= np.multiply(scratch, 0.05, out=scratch)
            ulp = np.spacing(np.abs(y0, out=scratch), out=scratch)
            size = np.abs(expected, out=curvature)  # |expected|
            resolved = smooth & (size > 32.0 * ulp)
            # Within 10%, and the two ulps by which y0 and y2 may each be rounded:
            # |d2 - expected| <= 0.1 |expected| + 2 ulp.
            bound = np.multiply(size, 0.1, out=size)
            bound += np.multiply(ulp, 2.0, out=ulp)
            miss = np.abs(np.subtract(d2, expected, out=expected), out=expected)
            kept = resolved & (miss <= bound)
        missed = resolved & ~kept
        n_kept, n_missed = int(kept.sum()), int(missed.sum())
        if n_kept and n_kept >= n_missed:
            self.resolves_float64 = True
        # Most changing elements must be resolved, or a few that look smooth by chance
        # (a large phase in sin(cumsum(x))) would decide.
        elif n_missed > n_kept and 2 * int(resolved.sum()) >= int(np.count_nonzero(d1)):
            self.resolves_float64 = False
        if self.resolves_float64 is False and self.promoted and np.all(d2[resolved] == 0):
            # A float64 computation that cancels (1 - cos x at x ~ 1e-3) moves by a few
            # ulps of its intermediates and misses the tiny step as well: only outputs
            # that stay bit for bit unchanged demote here. Otherwise, and for float64
            # inputs, the engine looks for the float32 grid in the gradient
            # (`_preflight.gradient_grid`).
            self.demote("float32", (
                f"a relative {TINY_STEP:g} change of its inputs leaves its outputs bit for bit "
                "unchanged"
            ))
        return bool(np.any(d1 != 0))

    def demote(self, dtype: str, evidence: str) -> None:
        """Treat the function as computing in `dtype` although it returns float64.

        A promoted function then runs in its inputs' own dtype; a function of float64
        inputs keeps them, and its derivatives are compared with `dtype`'s tolerances, as
        in a check run in `dtype`: its float64 outputs resolve nothing finer.
        """
        from .._tolerance import ToleranceModel

        if self.promoted:
            self.promoted = False
            self.promotion_note = (
                f"the function returns float64 for float64 inputs but computes in lower "
                f"precision inside ({evidence}, as in a function that casts to {dtype} and "
                f"back), so finite differences run in {self.native_dtype}"
            )
            eps = ToleranceModel.for_dtype
            if eps(dtype).eps > eps(self.native_dtype).eps:
                self.internal_dtype = dtype
            return
        self.internal_dtype = dtype
        self.promotion_note = (
            f"the function returns {self.native_dtype} outputs but computes in lower "
            f"precision inside ({evidence}, as in a function that casts to {dtype} and "
            f"back): its derivatives are resolved to {dtype} precision only, so they are "
            f"compared with {dtype} tolerances, as in a check run in {dtype}"
        )

    def computes_in(
        self, dtype: str, y0: Sequence[np.ndarray], draws: int = 1, results: str | None = None
    ) -> bool:
        """Whether the function sees its inputs only through their `dtype` rounding.

        Every finite nonzero input element moves by a quarter of `dtype`'s unit roundoff
        of itself, in the direction that keeps its `dtype` rounding: a function that casts
        its inputs to `dtype` first returns `y0` bit for bit, where one computing in a
        finer precision changes (unless it is constant there, and then its gradient is
        zero). The same elements moved by four units roundoff, across their rounding, must
        change the outputs, or they do not depend on what moved. Two evaluations, asked
        only where the gradient lies on `dtype`'s grid (`_preflight.half_grid`).

        With `draws` > 1 the moves below are that many, of random sizes up to the quarter:
        an output that is only rounding noise (a float64 `layer_norm(x).sum()`) stays bit
        for bit unchanged under one tiny move with a chance of about 1 in 6, under each of
        several independent ones hardly ever. `results` names a coarser dtype the outputs
        are rounded to (a float32 computation accumulating in bfloat16): the move across
        is by four of its units roundoff, or the rounding would hide it.
        """
        from .._tolerance import ToleranceModel

        u = ToleranceModel.for_dtype(dtype).eps
        size = [np.where(np.isfinite(x), np.abs(x), 0.0) for x in self.base]
        rng = np.random.default_rng(0)
        shares = [[1.0 if draws == 1 else rng.uniform(1 / 16, 1, x.shape) for x in self.base]
                  for _ in range(draws)]
        try:
            with np.errstate(all="ignore"):
                for share in shares:
                    below = [x + u / 4 * _rounding_stays(x, a * r, u / 4, dtype)
                             for x, a, r in zip(self.base, size, share)]
                    same = self.evaluate(below)
                    if not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(same, y0)):
                        return False
                coarse = u if results is None else ToleranceModel.for_dtype(results).eps
                across = [x + 4 * coarse * a for x, a in zip(self.base, size)]
                moved = self.evaluate(across)
        except CheckInputError as exc:
            if exc.__cause__ is None:
                raise
            return False  # a function that refuses the moves is not judged by them
        return not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(moved, y0))

    @property
    def work_dtype(self) -> str:
        """The precision the derivatives are compared in: float64 when promoted, otherwise
        the coarser of the inputs' dtype and the precision the function computes in."""
        from .._tolerance import ToleranceModel

        if self.promoted:
            return "float64"
        if self.internal_dtype is None:
            return self.native_dtype
        return max(
            (self.native_dtype, self.internal_dtype),
            key=lambda d: ToleranceModel.for_dtype(d).eps,
        )

    def _probe_dependence(self, rng: np.random.Generator) -> None:
        cotangents = [[rng.standard_normal(shape) for shape in self.output_shapes]]
        self._seed_generators()
        with contextlib.suppress(Exception):  # a failing backward is reported by the check
            grads = (
                self._hand_written(False) if self.hand_written_grad is not None
                else self._vjps(cotangents, False)[0]
            )
            if all(np.all(np.asarray(g) == 0) for g in grads):
                self.outputs_independent = True
                self.notes.append(
                    f"the outputs do not change with {', '.join(self.input_names)}: every "
                    f"gradient is exactly zero and perturbing the inputs leaves the outputs "
                    f"bit for bit unchanged, so the comparison is vacuous. If the function "
                    f"reads the tensor through a closure or a global, pass it as an argument "
                    f"and use that argument"
                )

    # -- what the engine calls --------------------------------------------------------------
    @property
    def native_dtype(self) -> str:
        """The lowest-precision dtype among the differentiable inputs."""
        from .._tolerance import ToleranceModel

        return max(self.native_dtypes, key=lambda d: ToleranceModel.for_dtype(d).eps)

    def _precision_key(self) -> tuple[bool, str | None]:
        return self.promoted, self.internal_dtype

    def outputs_at_base(self) -> list[np.ndarray]:
        """The outputs at the base point in work precision: the set-up probe's evaluation
        where it ran in the current precision (no second call), else a fresh one."""
        cached, self._at_base = self._at_base, None
        if cached is not None and cached[0] == self._precision_key():
            return cached[1]
        return self.evaluate(self.base)

    def unchecked_notes(self) -> list[str]:
        """Notes on outputs the check leaves out (torch: floating-point outputs that do not
        require grad, and whether the evaluations so far saw them change)."""
        return []

    def first_call_outputs(self) -> list[np.ndarray] | None:
        """The outputs of the set-up's first call at the base point, in work precision and
        drawn from the caller's generator state (not reseeded), once; None where the target
        kept none. `_preflight.base_outputs` compares them with a reseeded evaluation in
        place of a call of its own."""
        first, self._first_call = self._first_call, None
        return first

    def evaluate(self, xs: Sequence[np.ndarray], *, native: bool = False) -> list[np.ndarray]:
        self.function_evals += 1
        self._seed_generators()
        with _user_code("the function"):
            outs = self._evaluate(xs, native)
        self._check_shapes([o.shape for o in outs])
        return outs

    def _check_shapes(self, shapes: Sequence[tuple[int, ...]]) -> None:
        """A clear error where the outputs' shapes differ from the first call's."""
        if hasattr(self, "output_shapes") and list(shapes) != list(self.output_shapes):
            raise CheckInputError(
                f"the function returned outputs of shapes {list(shapes)} on one call and "
                f"{self.output_shapes} on another; a checked function must return the same "
                f"shapes for nearby inputs"
            )

    def vjps(
        self,
        cotangent_sets: Sequence[Sequence[np.ndarray | None]],
        *,
        native: bool = False,
        at: Sequence[np.ndarray] | None = None,
        saved_noise: float = 0.0,
    ) -> list[list[np.ndarray]]:
        """`J^T u` for each set `u` of output cotangents (None: zero for that output), at
        the inputs `at` (default: the base point); `saved_noise` as in `_vjps`."""
        if self.forward_only:
            return self._vjps_by_forward_mode(cotangent_sets)
        self.backward_evals += len(cotangent_sets)
        self._seed_generators()
        if self.hand_written_grad is not None:
            with _user_code("the hand-written gradient (grad=)"):
                grads = self._hand_written(native, at)
            return [
                [g * float(np.sum(u[0])) if u[0] is not None else np.zeros_like(g) for g in grads]
                for u in cotangent_sets
            ]
        with _user_code("the backward pass"):
            return self._vjps(cotangent_sets, native, at, saved_noise)

    def use_forward_mode_only(self) -> None:
        """Check forward mode alone: every later `vjps` is computed from forward-mode
        Jacobian columns, one per input element (as torch's forward-mode check computes
        them), at the work precision; the backward is not called."""
        if self.hand_written_grad is not None:
            raise CheckInputError(
                "check_backward_ad=False checks forward mode, and a hand-written grad= has "
                "none; drop grad= or check_backward_ad=False"
            )
        self.forward_only = True
        self._jacobian: list[np.ndarray] | None = None

    def _forward_jacobian(self) -> list[np.ndarray]:
        """Per input, the Jacobian of all outputs (flattened, in order) as a
        (outputs, input elements) matrix."""
        if self._jacobian is not None:
            return self._jacobian
        rows = int(sum(int(np.prod(s)) for s in self.output_shapes))
        blocks = []
        for i, x in enumerate(self.base):
            block = np.empty((rows, x.size))
            tangents = [np.zeros_like(b) for b in self.base]
            for k in range(x.size):
                tangents[i].flat[k] = 1.0
                self.forward_evals += 1
                self._seed_generators()
                with _user_code("forward mode (check_backward_ad=False checks it alone)"):
                    outs = self._jvp(tangents)
                tangents[i].flat[k] = 0.0
                block[:, k] = np.concatenate([np.ravel(o) for o in outs]) if outs else 0.0
            blocks.append(block)
        self._jacobian = blocks
        return blocks

    def _vjps_by_forward_mode(
        self, cotangent_sets: Sequence[Sequence[np.ndarray | None]]
    ) -> list[list[np.ndarray]]:
        jacobian = self._forward_jacobian()
        bounds = np.cumsum([0] + [int(np.prod(s)) for s in self.output_shapes])
        results = []
        for cots in cotangent_sets:
            grads = [np.zeros(x.size) for x in self.base]
            for j, u in enumerate(cots):
                if u is None:
                    continue
                a, b = int(bounds[j]), int(bounds[j + 1])
                flat = np.asarray(u, dtype=np.float64).ravel()
                for i, block in enumerate(jacobian):
                    grads[i] += flat @ block[a:b]
            results.append([g.reshape(x.shape) for g, x in zip(grads, self.base)])
        return results

    def forward_mode_adds_power(self) -> bool:
        """Whether comparing forward with reverse mode checks the function rather than the
        framework: False where every derivative rule in it is the framework's own, as
        torch can tell (`TorchTarget`); True where that is not known."""
        return True

    def builtin_rules_only(self) -> bool:
        """Whether every derivative rule the reverse-mode products went through is the
        framework's own (as torch can tell, `TorchTarget`); False where that is not known."""
        return False

    def jvp(self, tangents: Sequence[np.ndarray]) -> list[np.ndarray] | None:
        """`J v` in work precision, or None where forward mode is unavailable."""
        if self.hand_written_grad is not None or self.forward_mode_note is not None:
            return None
        self.forward_evals += 1
        self._seed_generators()
        try:
            return self._jvp(tangents)
        except Exception as exc:  # no forward-mode rule somewhere in fn (custom backward only)
            self.forward_mode_note = f"forward mode unavailable: {first_sentence(exc)}"
            return None

    def _hand_written(
        self, native: bool, at: Sequence[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        grads = self._call_grad(self.base if at is None else at, native)
        if not isinstance(grads, (tuple, list)):
            grads = (grads,)
        if self.grad_positions is not None and len(grads) == self.grad_positions[1] != len(self.base):
            grads = [grads[i] for i in self.grad_positions[0]]
        if len(grads) != len(self.base):
            raise CheckInputError(
                f"grad returned {len(grads)} gradient(s) but the function has "
                f"{len(self.base)} differentiable input(s) ({', '.join(self.input_names)}); "
                f"return one gradient per input, in order"
            )
        out = []
        for name, g, x in zip(self.input_names, grads, self.base):
            arr = _to_numpy(g)
            if arr.shape != x.shape:
                raise CheckInputError(
                    f"grad returned shape {arr.shape} for {name}, whose shape is {x.shape}; "
                    f"a gradient has the shape of its input"
                )
            if not np.issubdtype(arr.dtype, np.floating):
                raise CheckInputError(
                    f"grad returned dtype {arr.dtype} for {name}; gradients must be floating point"
                )
            out.append(arr.astype(np.float64))
        return out

    def _seed_generators(self) -> None:
        if not self.reseed:
            return
        import sys

        random.seed(RNG_SEED)
        np.random.seed(RNG_SEED % 2**32)
        torch = sys.modules.get("torch")
        if torch is not None:
            # torch.manual_seed would also seed (and lazily set up) every accelerator's
            # generator on each call; seed those only where they are in use.
            torch.default_generator.manual_seed(RNG_SEED)
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.manual_seed_all(RNG_SEED)


# The relative step the set-up probe expects a float64 function to resolve and a float32
# computation not to see: below float32's half ulp of every element (at least 2**-25).
TINY_STEP = 2e-8


def _relative(sign: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`np.where(sign != 0, sign * |x|, 0.0)` in one array (the same bits)."""
    out = np.abs(x, out=np.empty(np.shape(x), np.result_type(x, sign)))
    out *= sign
    np.copyto(out, 0.0, where=sign == 0)
    return out


def _float32_stays(x: np.ndarray, a: np.ndarray, h: float) -> np.ndarray:
    """`+a` or `-a` per element, whichever keeps the float32 rounding of `x + h (+-a)` at
    that of `x` (for `h a` below float32's half ulp of `x`, at most one of them moves it)."""
    return _rounding_stays(x, a, h, "float32")


def _flat_outputs(outs: Sequence[np.ndarray]) -> np.ndarray:
    """The outputs as one flat vector (the only one itself, unconcatenated: no copy)."""
    if len(outs) == 1:
        return np.ravel(outs[0])
    return np.concatenate([np.ravel(o) for o in outs]) if outs else np.zeros(0)


def _rounding_stays(x: np.ndarray, a: np.ndarray, h: float, dtype: str) -> np.ndarray:
    """`_float32_stays` for the rounding to `dtype`."""
    with np.errstate(all="ignore"):
        stays = round_to(x + h * a, dtype) == round_to(x, dtype)
    return np.where(stays, a, -a)


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """`x` rounded to the nearest `dtype` number (ties to even), as float64.

    bfloat16 keeps float32's exponent range and 8 significant bits; its subnormals and
    overflow are not modelled (values that far out are not probed).
    """
    x = np.asarray(x, dtype=np.float64)
    if dtype == "bfloat16":
        mantissa, exponent = np.frexp(x)
        return np.ldexp(np.round(np.ldexp(mantissa, 8)), exponent - 8)
    with np.errstate(over="ignore"):  # beyond float16's range: inf, on no one's grid
        return x.astype(dtype).astype(np.float64)


def scalar_output_required(shapes: Sequence[tuple[int, ...]], own: str) -> CheckInputError:
    """The error for a hand-written grad= with outputs other than one scalar.

    A hand-written gradient is the gradient of one scalar loss; any other output has a
    Jacobian, not a gradient, and comparing it would report a mismatch that is not there.
    `own` names the framework's own derivatives ("torch's own backward").
    """
    return CheckInputError(
        f"with a hand-written grad= the function must return one scalar, and it returned "
        f"{len(shapes)} output(s) of shapes {[tuple(s) for s in shapes]}; reduce it to a "
        f"scalar loss first (e.g. lambda *a: fn(*a).sum()), or drop grad= to check {own}"
    )


def call_fn(fn: Callable[..., Any], args: Sequence[Any]) -> Any:
    """Call `fn` once as given, its errors turned into a `CheckInputError`."""
    try:
        return fn(*args)
    except Exception as exc:
        raise CheckInputError(
            f"fn raised {type(exc).__name__} when called with the given inputs: {exc}"
        ) from exc


def first_sentence(exc: BaseException) -> str:
    """The first sentence of an exception's message, whole (messages run to many lines)."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0].strip()
    end = line.find(". ")
    return line[: end + 1] if end >= 0 else line


def _refused_probe(cause: BaseException) -> str:
    # The function refuses perturbed inputs (it validates them): the questions stay
    # unanswered, and finite differences look for steps small enough to pass.
    return (
        f"the function raised {type(cause).__name__} ({cause}) at a perturbed input "
        f"while its precision and dependence on the inputs were probed; those probes "
        f"were skipped"
    )


@contextlib.contextmanager
def _user_code(what: str) -> Iterator[None]:
    """Turn an exception raised by the user's code into a `CheckInputError` that says where."""
    try:
        yield
    except CheckInputError:
        raise
    except Exception as exc:
        raise CheckInputError(
            f"{what} raised {type(exc).__name__}: {exc}. The check needs it to run at the "
            f"inputs and at nearby perturbed inputs; fix it (the original traceback is "
            f"chained below)"
        ) from exc


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch
        import torch

        return x.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(x, dtype=np.float64) if _is_float_like(x) else np.asarray(x)


def _is_float_like(x: Any) -> bool:
    try:
        return np.issubdtype(np.asarray(x).dtype, np.floating) or str(np.asarray(x).dtype) == "bfloat16"
    except Exception:
        return False
