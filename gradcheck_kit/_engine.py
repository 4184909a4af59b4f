"""The engine: random probes, comparisons, localisation, verdict.

For each differentiable input `i` the engine draws a direction `v_i`, and for each output
`j` a cotangent `u_j`, with entries of random sign and magnitude in [1, 2] (never near
zero, so no element of the Jacobian is hidden by a small weight; continuous, so errors do
not cancel exactly). It then compares, per (input, output) pair:

- reverse mode `<J_j^T u_j, v_i>` (one backward pass per output serves every input)
  against finite differences of `t -> <u_j, f_j(x + t v_i)>` (one directional derivative
  per input serves every output), within the error estimate of the differences;
- reverse mode against forward mode `<u_j, J_j v_i>` where available: a dot-product test
  with no truncation error;
- two identical backward passes (nondeterminism);
- for float32/bfloat16/float16 inputs of a dtype-generic function: the native backward
  against the float64 one. The comparisons above then run in float64, so a formula bug is
  found in float32 as surely as in float64.

Cost is O(1) evaluations in the input size. Only when a probe fails is the error
localised: a full Jacobian for small inputs, bisection over coordinates for large ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._finite_differences import Derivative, default_step, directional_derivative
from ._report import Comparison, Element, Report
from ._targets import CheckInputError, Target
from ._tolerance import ToleranceModel

__all__ = ["Engine", "Settings"]

# Inputs with at most this many elements are localised by a full Jacobian; larger ones by
# bisection (about 2*log2(n) directional derivatives instead of n).
_FULL_JACOBIAN_LIMIT = 64
# Output rows are formed (one backward pass each) for at most this many output elements.
_ROW_LIMIT = 256
_WORST_SHOWN = 5


@dataclass(frozen=True)
class Settings:
    mode: str = "auto"
    seed: int = 0
    atol: float | None = None
    rtol: float | None = None
    step: float | None = None
    nondet_tol: float = 0.0
    check_forward_ad: bool = False


class Engine:
    """Runs one check of `target` and builds its `Report`."""

    def __init__(self, target: Target, settings: Settings) -> None:
        self.t = target
        self.s = settings
        self.rng = np.random.default_rng(settings.seed)
        self.work = ToleranceModel.for_dtype("float64" if target.promoted else target.native_dtype)
        self.native = ToleranceModel.for_dtype(target.native_dtype)
        self.notes: list[str] = list(target.notes)
        self.errors: list[str] = []
        self.comparisons: list[Comparison] = []

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> Report:
        t = self.t
        if t.promotion_note:
            self.notes.append(t.promotion_note)
        elif t.promoted:
            self.notes.append(
                f"inputs are {t.native_dtype}: derivatives were compared in float64 (the function "
                f"is dtype-generic), and the {t.native_dtype} backward against the float64 one"
            )
        self.frozen = self._check_inputs_finite()
        # Infinite elements (masked positions such as -inf attention scores) are held fixed:
        # there is no derivative at infinity, and perturbing them would change nothing.
        self.finite_base = [np.where(f, 0.0, x) for f, x in zip(self.frozen, t.base)]
        y0 = self._base_outputs()
        try:
            self._check_outputs_finite(y0)
        except CheckInputError:
            self._reject_infinite_inputs()
            raise
        self.y0 = y0
        for name, f in zip(t.input_names, self.frozen):
            if f.any():
                self.notes.append(
                    f"{name} has {int(f.sum())} infinite element(s): held fixed, their "
                    f"gradients are not compared"
                )

        self.u = [self._signed(shape) for shape in t.output_shapes]
        # The natural size of a probe <u_j, J_j v_i>: rounding inside the derivative scales
        # with the intermediate terms, which can be this large even where the derivative
        # itself cancels to almost nothing (a saturated tanh or softmax). The 1 stands for
        # intermediates of unit size where f(x) itself cancels to zero (var(exp(x)) at 0):
        # it hides nothing above ulps of the dtype.
        self.out_scale = [float(np.sum(np.abs(u) * (np.abs(y) + 1.0))) for u, y in zip(self.u, y0)]
        self.v = [
            np.where(f, 0.0, self._signed(x.shape) * _scale(x)) for f, x in zip(self.frozen, t.base)
        ]
        cotangent_sets = [self._on_output(j, u) for j, u in enumerate(self.u)]
        # The last set repeats the first: two identical backward passes must agree.
        grads = t.vjps(cotangent_sets + cotangent_sets[:1])
        grads = [self._without_frozen(g) for g in grads]
        self.grads = grads[:-1]
        self._check_determinism(grads[0], grads[-1])

        # Empty inputs have no elements to perturb: nothing to compare.
        self.checked = [i for i, x in enumerate(t.base) if x.size > 0]
        for i, x in enumerate(t.base):
            if x.size == 0:
                self.notes.append(f"{t.input_names[i]} is empty: it has no derivative to compare")
        # Finite differences see the outputs as one flat vector; parts[j] is output j's slice.
        self.flat0 = np.concatenate([y.ravel() for y in y0]) if y0 else np.zeros(0)
        bounds = np.cumsum([0] + [y.size for y in y0])
        self.parts = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        # One directional derivative per input, shared by every output.
        self.probes = {i: self._derivative(i, self.v[i]) for i in self.checked}
        fd_failed = []
        for i in self.checked:
            for j in range(len(self.u)):
                c = self._compare_fd(i, j)
                self.comparisons.append(c)
                if not c.passed:
                    fd_failed.append((i, j, c))
        if t.hand_written_grad is None:
            self._compare_forward_mode()
        if t.promoted:
            self._compare_precision()

        if self.s.mode == "full":
            for i in self.checked:
                for j in range(len(self.u)):
                    self._localise(i, j, self._find(i, j), force=True)
        elif self.s.mode == "auto":
            for i, j, c in fd_failed:
                self._localise(i, j, c)

        return Report(
            comparisons=self.comparisons,
            framework=t.framework,
            dtype=t.native_dtype,
            device=t.device,
            mode=self.s.mode,
            promoted=t.promoted,
            seed=self.s.seed,
            function_evals=t.function_evals,
            backward_evals=t.backward_evals,
            forward_evals=t.forward_evals,
            notes=_unique(self.notes),
            errors=self.errors,
        )

    # -- set-up checks ----------------------------------------------------------------------
    def _check_inputs_finite(self) -> list[np.ndarray]:
        """NaN inputs are an error; the masks of the infinite elements, held fixed."""
        for name, x in zip(self.t.input_names, self.t.base):
            if np.isnan(x).any():
                self._non_finite_input_error(name, x, np.isnan(x))
        return [np.isinf(x) for x in self.t.base]

    def _reject_infinite_inputs(self) -> None:
        """Where the outputs are not finite, blame the infinite inputs if there are any."""
        for name, x, f in zip(self.t.input_names, self.t.base, self.frozen):
            if f.any():
                self._non_finite_input_error(name, x, f)

    @staticmethod
    def _non_finite_input_error(name: str, x: np.ndarray, bad: np.ndarray) -> None:
        idx = tuple(int(k) for k in np.argwhere(bad)[0])
        raise CheckInputError(
            f"{name} holds a non-finite value ({x[idx]}) at index {list(idx)}; derivatives "
            f"are only checked at finite inputs (infinite elements are held fixed only where "
            f"the outputs stay finite). Replace NaN/Inf first"
        )

    def _without_frozen(self, grads: list[np.ndarray]) -> list[np.ndarray]:
        return [np.where(f, 0.0, g) if f.any() else g for f, g in zip(self.frozen, grads)]

    def _check_outputs_finite(self, outputs: Sequence[np.ndarray]) -> None:
        for name, y in zip(self.t.output_names, outputs):
            bad = ~np.isfinite(y)
            if bad.any():
                idx = tuple(int(k) for k in np.argwhere(bad)[0]) if y.ndim else ()
                raise CheckInputError(
                    f"{name} is non-finite ({y[idx]}) at index {list(idx)} for the given "
                    f"inputs; a derivative cannot be checked there. Choose inputs where the "
                    f"function is finite"
                )

    def _base_outputs(self) -> list[np.ndarray]:
        """f(x) in work precision, and whether the forward repeats itself."""
        t = self.t
        y0 = t.evaluate(t.base)
        t.reseed = False
        try:
            y1 = t.evaluate(t.base)
        finally:
            t.reseed = True
        if not _same(y0, y1):
            y2 = t.evaluate(t.base)
            if _same(y0, y2):
                self.notes.append(
                    "the forward is stochastic (it draws from the global random generators): "
                    "the generators were reseeded before every evaluation so that each call "
                    "drew the same numbers, and restored afterwards"
                )
            else:
                diff = max(float(np.max(np.abs(a - b), initial=0.0)) for a, b in zip(y0, y2))
                raise CheckInputError(
                    f"the function returns different values for the same input (by up to "
                    f"{diff:.3g}) even with the random generators reseeded; finite differences "
                    f"need a deterministic function. Fix its randomness (e.g. pass a generator "
                    f"or key as an input) or make its kernels deterministic"
                )
        return y0

    def _check_determinism(self, first: list[np.ndarray], second: list[np.ndarray]) -> None:
        worst = 0.0
        where = (0, ())
        for i, (a, b) in enumerate(zip(first, second)):
            d = np.abs(a - b)
            if d.size and float(d.max()) > worst:
                worst = float(d.max())
                where = (i, tuple(int(k) for k in np.unravel_index(int(d.argmax()), d.shape)))
        if worst > self.s.nondet_tol or not np.all(np.isfinite(worst)):
            i, idx = where
            self.comparisons.append(
                Comparison(
                    check="backward determinism (two identical backward passes)",
                    input=self.t.input_names[i],
                    output=self.t.output_names[0],
                    error=worst,
                    tolerance=self.s.nondet_tol,
                    tolerance_source="nondet_tol",
                    passed=False,
                    worst=[Element(idx, None, float(first[i][idx]), float(second[i][idx]), worst, self.s.nondet_tol)],
                    backward_evals=2,
                    notes=["the backward is nondeterministic: it returned different gradients for "
                           "the same input and cotangent; pass nondet_tol= if that is expected"],
                )
            )

    # -- finite differences -----------------------------------------------------------------
    def _derivative(self, i: int, direction: np.ndarray) -> Derivative:
        """Finite differences of every output along `direction` in input i."""
        t = self.t
        scales = [float(np.sum(np.abs(g[i]) * np.abs(direction))) for g in self.grads]
        tau = np.sqrt(self.work.eps)

        def g(step: float) -> np.ndarray:
            xs = list(t.base)
            xs[i] = t.base[i] + step * direction
            return np.concatenate([y.ravel() for y in t.evaluate(xs)])

        def accurate(value: np.ndarray, error: np.ndarray) -> bool:
            # Accurate enough when every projected value is known to sqrt(eps) of the
            # magnitudes that form it: far below any error worth reporting.
            for (a, b), u, s in zip(self.parts, self.u, scales):
                if np.sum(np.abs(u.ravel()) * error[a:b]) > tau * (abs(np.dot(u.ravel(), value[a:b])) + s):
                    return False
            return True

        step = default_step(self.work.eps)
        if self.s.step is not None:
            step = self.s.step / max(float(np.max(np.abs(direction), initial=0.0)), 1e-300)
        try:
            return directional_derivative(
                g, eps=self.work.eps, step=step, g0=self.flat0, target=accurate,
                safety=self.work.fd_safety,
            )
        except FloatingPointError as exc:
            raise CheckInputError(
                f"finite differences along {t.input_names[i]} failed: {exc}. Check the "
                f"gradient at a point inside the function's domain"
            ) from None

    def _compare_fd(self, i: int, j: int) -> Comparison:
        t = self.t
        d = self.probes[i]
        direction = self.v[i].ravel()
        a, b = self.parts[j]
        u = self.u[j].ravel()
        g = self.grads[j][i]
        analytic = float(np.dot(g.ravel(), direction))
        magnitude = float(np.dot(np.abs(g.ravel()), np.abs(direction)))
        numeric = float(np.dot(u, d.value[a:b]))
        fd_error = float(np.dot(np.abs(u), d.error[a:b]))
        kink = d.kink[a:b]
        lo_hi = None
        if kink.any():
            lo = float(np.sum(np.minimum(u * d.lower[a:b], u * d.upper[a:b])))
            hi = float(np.sum(np.maximum(u * d.lower[a:b], u * d.upper[a:b])))
            lo_hi = (lo, hi)
            fd_error = float(np.dot(np.abs(u[~kink]), d.error[a:b][~kink]))
        fd_error += self._input_rounding(g.ravel(), self.finite_base[i].ravel(), d.step)
        tol, source = self._tolerance(
            fd_error, magnitude + self.out_scale[j], numeric, size=g.size + u.size
        )
        if lo_hi is None:
            error = abs(analytic - numeric)
        else:
            error = max(0.0, lo_hi[0] - analytic, analytic - lo_hi[1])
        notes = list(d.notes)
        if lo_hi is not None:
            notes.append(
                f"a kink at the input itself: the one-sided derivatives along the probe differ "
                f"({lo_hi[0]:.6g} to {lo_hi[1]:.6g}); any value between them is accepted as a "
                f"subgradient"
            )
        elif np.any(d.scheme[a:b] != 0):
            notes.append("one-sided differences were used: central ones straddled a kink")
        check = (
            "hand-written gradient vs finite differences"
            if t.hand_written_grad is not None
            else "reverse mode vs finite differences"
        )
        return Comparison(
            check=check + (" (float64)" if t.promoted else ""),
            input=t.input_names[i],
            output=t.output_names[j],
            error=error,
            tolerance=tol,
            tolerance_source=source,
            passed=_within(error, tol),
            analytic=analytic,
            numeric=numeric,
            function_evals=d.evals,
            backward_evals=1,
            notes=notes,
        )

    def _input_rounding(self, g: np.ndarray, x: np.ndarray, step: float) -> float:
        """Bound on the finite-difference error from rounding the perturbed input x + t v.

        The output-noise bound scales with |f|, which misses this where f is near zero
        (f(x) = x - 1 at x = 1): each perturbed element is off by up to eps |x_k|, moving
        the probe by sum_k |g_k| eps |x_k|, divided by the step as any noise is.
        """
        if step <= 0:
            return 0.0
        return 6.0 * self.work.eps * float(np.dot(np.abs(g), np.abs(x))) / step

    def _tolerance(self, fd_error: float, magnitude: float, numeric: float, size: int) -> tuple[float, str]:
        w = self.work
        # Rounding in a computed derivative grows with the magnitudes summed into it; the
        # square root of the number of elements accounts for the length of those sums.
        rounding = w.rounding_factor * w.eps * np.sqrt(max(size, 1)) * magnitude
        if self.s.atol is not None or self.s.rtol is not None:
            atol = self.s.atol or 0.0
            rtol = self.s.rtol or 0.0
            tol = atol + rtol * abs(numeric) + fd_error
            return tol, f"user atol={atol:g}, rtol={rtol:g}, plus the finite-difference error estimate"
        tol = fd_error + rounding
        return tol, (
            f"finite-difference error estimate ({w.fd_safety:g} x Richardson's truncation "
            f"estimate + rounding bound) + {w.rounding_factor:g} ulps of {w.name} x sqrt(size) "
            f"x (|terms| + |u| (|f(x)| + 1))"
        )

    # -- other oracles ----------------------------------------------------------------------
    def _compare_forward_mode(self) -> None:
        t = self.t
        w = self.work
        for i in self.checked:
            tangents = [np.zeros_like(x) for x in t.base]
            tangents[i] = self.v[i]
            out_t = t.jvp(tangents)
            if out_t is None:
                self.notes.append(str(t.forward_mode_note))
                return
            for j, u in enumerate(self.u):
                g = self.grads[j][i]
                reverse = float(np.dot(g.ravel(), self.v[i].ravel()))
                forward = float(np.dot(u.ravel(), out_t[j].ravel()))
                magnitude = float(
                    np.dot(np.abs(g.ravel()), np.abs(self.v[i].ravel()))
                    + np.dot(np.abs(u.ravel()), np.abs(out_t[j].ravel()))
                ) + self.out_scale[j]
                size = g.size + u.size
                tol = w.rounding_factor * w.eps * np.sqrt(size) * magnitude
                if self.s.atol is not None or self.s.rtol is not None:
                    tol = max(tol, (self.s.atol or 0.0) + (self.s.rtol or 0.0) * abs(forward))
                error = abs(reverse - forward)
                if error > tol and self._forward_rule_is_wrong(i, j, forward):
                    continue
                self.comparisons.append(
                    Comparison(
                        check="reverse mode vs forward mode (dot-product test)",
                        input=t.input_names[i],
                        output=t.output_names[j],
                        error=error,
                        tolerance=tol,
                        tolerance_source=(
                            f"{w.rounding_factor:g} ulps of {w.name} x sqrt(size) x (|terms| + "
                            f"|u| (|f(x)| + 1)) (both sides exact up to rounding)"
                        ),
                        passed=_within(error, tol),
                        analytic=reverse,
                        numeric=forward,
                        backward_evals=0,
                    )
                )

    def _forward_rule_is_wrong(self, i: int, j: int, forward: float) -> bool:
        """Whether forward mode alone disagrees, with reverse mode and finite differences agreeing.

        Then the function's jvp rule is wrong, not its backward (torch has such rules
        for a few ops); the backward is what gradcheck checks, so this is a note unless
        check_forward_ad=True asks for forward mode to be checked too.
        """
        fd = self._find(i, j)
        if self.s.check_forward_ad or not fd.passed or fd.numeric is None:
            return False
        off = abs(forward - fd.numeric)
        if off <= fd.tolerance:
            return False
        self.notes.append(
            f"forward mode disagrees with both reverse mode and finite differences for "
            f"{self.t.input_names[i]} -> {self.t.output_names[j]} (forward {forward:.10g}, "
            f"finite differences {fd.numeric:.10g}): the forward-mode (jvp) rule looks wrong "
            f"while the backward agrees; pass check_forward_ad=True to fail on it"
        )
        return True

    def _compare_precision(self) -> None:
        """The native-dtype backward against the float64 one, normwise per pair."""
        t = self.t
        nat = self.native
        cotangent_sets = [self._on_output(j, u) for j, u in enumerate(self.u)]
        native_grads = [self._without_frozen(g) for g in t.vjps(cotangent_sets, native=True)]
        for j, (yn, yw) in enumerate(zip(t.native_outputs, self.y0)):
            # How much the forward itself loses in the native dtype, in its ulps: a backward
            # through the same operations loses about as much.
            scale = float(np.linalg.norm(yw))
            amplification = float(np.linalg.norm(yn - yw)) / (nat.eps * scale) if scale > 0 else 0.0
            for i in self.checked:
                gn, gw = native_grads[j][i], self.grads[j][i]
                # The gradient's norm, or for a function of unit scale the norm its terms
                # would have, whichever is larger (see out_scale).
                natural = self.out_scale[j] / (_scale(t.base[i]) * np.sqrt(max(gw.size, 1)))
                norm = float(np.linalg.norm(gw)) + natural
                error = float(np.linalg.norm(gn - gw))
                tol = nat.precision_factor * nat.eps * max(1.0, amplification) * norm
                if not np.isfinite(error):
                    error = float("inf")
                worst = []
                if gn.size:
                    k = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(gn - gw), np.abs(gn - gw), np.inf))), gn.shape)
                    k = tuple(int(q) for q in k)
                    worst = [Element(k, None, float(gn[k]), float(gw[k]), float(abs(gn[k] - gw[k])), tol)]
                self.comparisons.append(
                    Comparison(
                        check=f"{t.native_dtype} backward vs float64 backward (normwise)",
                        input=t.input_names[i],
                        output=t.output_names[j],
                        error=error,
                        tolerance=tol,
                        tolerance_source=(
                            f"{nat.precision_factor:g} ulps of {nat.name} x max(1, forward's own "
                            f"error in ulps = {amplification:.3g}) x (|float64 gradient| + "
                            f"|u| (|f(x)| + 1) / |x|)"
                        ),
                        passed=_within(error, tol),
                        worst=worst,
                        backward_evals=1,
                    )
                )

    # -- localisation ------------------------------------------------------------------------
    def _find(self, i: int, j: int) -> Comparison:
        for c in self.comparisons:
            if c.input == self.t.input_names[i] and c.output == self.t.output_names[j] and "finite" in c.check:
                return c
        raise AssertionError("no finite-difference comparison for this pair")

    def _localise(self, i: int, j: int, comparison: Comparison, force: bool = False) -> None:
        x = self.t.base[i]
        evals_before = self.t.function_evals
        if x.size <= _FULL_JACOBIAN_LIMIT or force:
            elements = self._full_columns(i, j)
            if force and not elements:
                return
            if force:
                bad = [e for e in elements if e.error > e.tolerance]
                comparison.passed = comparison.passed and not bad
                comparison.notes.append(
                    f"full Jacobian: {len(bad)} of {len(elements)} elements outside tolerance"
                )
            elements.sort(key=lambda e: -(e.error / e.tolerance if e.tolerance > 0 else np.inf))
            outside = [e for e in elements if e.error > e.tolerance]
            comparison.worst = (outside or elements)[:_WORST_SHOWN]
        else:
            comparison.worst = self._bisect(i, j)
        spent = self.t.function_evals - evals_before
        comparison.function_evals += spent
        comparison.notes.append(f"localised with {spent} more function evaluations")

    def _rows(self, j: int) -> np.ndarray | None:
        """Analytic Jacobian rows of output j for input order, one backward pass each."""
        shape = self.t.output_shapes[j]
        m = int(np.prod(shape))
        if m > _ROW_LIMIT:
            return None
        sets = []
        for flat in range(m):
            e = np.zeros(m)
            e[flat] = 1.0
            sets.append(self._on_output(j, e.reshape(shape)))
        return self.t.vjps(sets) if sets else []

    def _full_columns(self, i: int, j: int) -> list[Element]:
        x = self.t.base[i]
        scale = _scale(x)
        rows = self._rows(j)
        a, b = self.parts[j]
        y = self.y0[j].ravel()
        u = self.u[j].ravel()
        elements = []
        for flat in range(x.size):
            direction = np.zeros(x.size)
            direction[flat] = scale
            d = self._derivative(i, direction.reshape(x.shape))
            idx = tuple(int(q) for q in np.unravel_index(flat, x.shape))
            column = d.value[a:b] / scale
            column_err = d.error[a:b] / scale
            xk = abs(float(self.finite_base[i].ravel()[flat]))
            if rows is not None:
                for m in range(b - a):
                    analytic = float(rows[m][i].ravel()[flat])
                    out_idx = tuple(int(q) for q in np.unravel_index(m, self.t.output_shapes[j]))
                    interval = None
                    if d.kink[a + m]:
                        interval = tuple(sorted((d.lower[a + m] / scale, d.upper[a + m] / scale)))
                    err = float(column_err[m]) + self._input_rounding(
                        np.array([analytic]), np.array([xk]), d.step * scale
                    )
                    elements.append(self._element(
                        idx, out_idx, analytic, float(column[m]), err, abs(y[m]) / scale, interval
                    ))
            else:
                analytic = float(self.grads[j][i].ravel()[flat])
                err = float(np.dot(np.abs(u), column_err)) + self._input_rounding(
                    np.array([analytic]), np.array([xk]), d.step * scale
                )
                natural = self.out_scale[j] / (scale * x.size)
                elements.append(self._element(
                    idx, None, analytic, float(np.dot(u, column)), err, natural, None
                ))
        return elements

    def _element(self, idx, out_idx, analytic, numeric, fd_err, natural, interval) -> Element:
        """One Jacobian element (or projected row element) against its tolerance."""
        tol, _ = self._tolerance(fd_err, abs(analytic) + abs(numeric) + natural, numeric, size=1)
        if interval is not None:
            error = max(0.0, interval[0] - analytic, analytic - interval[1])
        else:
            error = abs(analytic - numeric)
        return Element(idx, out_idx, analytic, numeric, error, tol)

    def _bisect(self, i: int, j: int) -> list[Element]:
        """Halve the set of coordinates of input i, keeping the half that fails worse."""
        x = self.t.base[i]
        v = self.v[i].ravel()
        g = self.grads[j][i].ravel()
        u = self.u[j].ravel()
        a, b = self.parts[j]
        candidates = np.arange(x.size)
        last = None
        while candidates.size > 1:
            halves = np.array_split(candidates, 2)
            scored = []
            for half in halves:
                direction = np.zeros(x.size)
                direction[half] = v[half]
                d = self._derivative(i, direction.reshape(x.shape))
                analytic = float(np.dot(g[half], v[half]))
                numeric = float(np.dot(u, d.value[a:b]))
                err = float(np.dot(np.abs(u), d.error[a:b]))
                err += self._input_rounding(g[half], self.finite_base[i].ravel()[half], d.step)
                magnitude = float(np.dot(np.abs(g[half]), np.abs(v[half])))
                magnitude += self.out_scale[j] * half.size / x.size
                tol, _ = self._tolerance(err, magnitude, numeric, size=half.size + u.size)
                scored.append((abs(analytic - numeric) / max(tol, 1e-300), half, analytic, numeric, tol))
            scored.sort(key=lambda s: -s[0])
            _, candidates, analytic, numeric, tol = scored[0]
            last = (analytic, numeric, tol)
        k = int(candidates[0])
        idx = tuple(int(q) for q in np.unravel_index(k, x.shape))
        if last is None:
            return []
        analytic, numeric, tol = last
        vk = v[k]
        # Back from the probe's units to the gradient element: divide by the direction.
        return [Element(idx, None, analytic / vk, numeric / vk, abs(analytic - numeric) / abs(vk), tol / abs(vk))]

    # -- helpers ------------------------------------------------------------------------------
    def _on_output(self, j: int, cotangent: np.ndarray) -> list[np.ndarray | None]:
        """A cotangent set that is `cotangent` on output j and zero (None) elsewhere."""
        return [cotangent if k == j else None for k in range(len(self.u))]

    def _signed(self, shape: tuple[int, ...]) -> np.ndarray:
        sign = self.rng.choice(np.array([-1.0, 1.0]), size=shape)
        return sign * self.rng.uniform(1.0, 2.0, size=shape)


def _within(error: float, tolerance: float) -> bool:
    """error <= tolerance, where an infinite tolerance (no estimate) proves nothing."""
    return bool(np.isfinite(error) and np.isfinite(tolerance) and error <= tolerance)


def _scale(x: np.ndarray) -> float:
    """The size of a typical finite element of x, so that steps are relative to the input."""
    x = x[np.isfinite(x)]
    rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
    return rms if rms > 0 else 1.0


def _same(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> bool:
    return len(a) == len(b) and all(
        x.shape == y.shape and np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b)
    )


def _unique(items: list[str]) -> list[str]:
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out
