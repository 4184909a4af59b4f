"""The engine: preflight, probes, oracles, comparisons, localisation, report.

For each differentiable input `i` the engine draws a direction `v_i`, and for each output
`j` a cotangent `u_j` (`_probes.py`). It then compares, per (input, output) pair
(`_comparisons/`):

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
localised (`_localisation.py`): a full Jacobian for small inputs, bisection over
coordinates for large ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import _preflight
from ._comparisons import (
    FORWARD_MODE_CHECK,
    compare_determinism,
    compare_finite_differences,
    compare_forward_mode,
    compare_precision,
    finite_difference_check,
    forward_rule_disagreement,
    subgradient_disagreement,
)
from ._comparisons.finite_differences import absorbed_share, kink_interval
from ._comparisons.resolution import outputs_independent, resolve
from ._finite_differences import Derivative
from ._localisation import Localisation, localise
from ._oracles import finite_differences, forward_mode, reverse_mode, with_measured_noise
from ._power import apply_power
from ._probes import (
    BasePoint,
    draw_cotangents,
    draw_directions,
    input_scale,
    output_layout,
    on_output,
    output_scales,
    random_signs,
    without_frozen,
)
from ._report import Comparison, ComparisonKind, Element, Report
from ._targets import CheckInputError, Target
from ._tolerance import Tolerances, ToleranceModel, UserTolerance

__all__ = ["Settings", "run"]


@dataclass(frozen=True)
class Settings:
    mode: str = "auto"
    seed: int = 0
    atol: float | None = None
    rtol: float | None = None
    step: float | None = None
    nondet_tol: float = 0.0
    check_forward_ad: bool = False
    #: False: forward mode is checked against finite differences instead of the backward
    #: (the target must be in forward-only mode, `Target.use_forward_mode_only`).
    check_backward_ad: bool = True


def run(target: Target, settings: Settings) -> Report:
    """Run one check of `target` and build its `Report`."""
    t, s = target, settings
    rng = np.random.default_rng(s.seed)
    tolerances = Tolerances(
        work=ToleranceModel.for_dtype(t.work_dtype),
        native=ToleranceModel.for_dtype(t.native_dtype),
        user=UserTolerance(s.atol, s.rtol),
    )
    notes: list[str] = list(t.notes)
    comparisons: list[Comparison] = []
    if t.promotion_note:
        notes.append(t.promotion_note)
    elif t.promoted and t.promoted_objects:
        notes.append(
            f"inputs are {t.native_dtype}: derivatives were compared in float64, the function "
            f"computing on float64 copies (same values) of {'; '.join(t.promoted_objects)}, "
            f"and the {t.native_dtype} backward on the caller's objects against the float64 "
            f"one; the caller's objects are unchanged"
        )
    elif t.promoted:
        notes.append(
            f"inputs are {t.native_dtype}: derivatives were compared in float64 (the function "
            f"is dtype-generic), and the {t.native_dtype} backward against the float64 one"
        )

    # -- preflight
    frozen = _preflight.frozen_masks(t.input_names, t.base)
    # Infinite elements (masked positions such as -inf attention scores) are held fixed:
    # there is no derivative at infinity, and perturbing them would change nothing.
    finite_base = [np.where(f, 0.0, x) if f.any() else x for f, x in zip(frozen, t.base)]
    y0, stochastic = _preflight.base_outputs(t)
    notes += stochastic
    try:
        _preflight.check_outputs_finite(t.output_names, y0)
    except CheckInputError:
        _preflight.reject_infinite_inputs(t.input_names, t.base, frozen)
        raise
    for name, f in zip(t.input_names, frozen):
        if f.any():
            notes.append(
                f"{name} has {int(f.sum())} infinite element(s): held fixed, their "
                f"gradients must be finite and zero (nothing differentiable reaches an "
                f"infinite input), not compared with finite differences"
            )

    # -- probes and reverse mode
    u = draw_cotangents(rng, t.output_shapes)
    v = draw_directions(rng, t.base, frozen)
    flat0, parts = output_layout(y0)
    point = BasePoint(
        input_names=tuple(t.input_names),
        output_names=tuple(t.output_names),
        output_shapes=tuple(t.output_shapes),
        base=tuple(t.base),
        frozen=tuple(frozen),
        finite_base=tuple(finite_base),
        y0=tuple(y0),
        flat0=flat0,
        parts=parts,
        u=tuple(u),
        v=tuple(v),
        out_scale=tuple(output_scales(u, y0)),
        grads=(),
        # Empty inputs have no elements to perturb: nothing to compare.
        checked=tuple(i for i, x in enumerate(t.base) if x.size > 0),
    )
    sets = point.cotangent_sets()
    n_sets = len(sets)
    # After the sets: the first again (two identical backward passes must agree) and, for
    # the reduced-precision comparison, each set scaled by 3 (the backward's own rounding,
    # `Tolerances.precision`). The raw gradients keep their frozen elements, which are
    # checked on their own below.
    # Below float64 the backward's rounding is measured (`_analytic_spreads`), unless the
    # user's atol/rtol replace every derived allowance.
    below = t.work_dtype != "float64" and s.check_backward_ad and not tolerances.user.given
    scaled = (
        [[None if c is None else 3.0 * c for c in cs] for cs in sets]
        if t.promoted or below else []
    )
    raw = reverse_mode(
        t, sets + sets[:1] + scaled, [np.zeros(f.shape, dtype=bool) for f in frozen]
    )
    del scaled  # output-sized cotangents, read no more
    grads = [without_frozen(g, frozen) for g in raw]
    point = dataclasses.replace(point, grads=tuple(tuple(g) for g in grads[:n_sets]))
    # A forward the set-up probe saw resolve float64 steps computes in float64, whatever
    # its backward rounds to (a backward that rounds to bfloat16 is a bug to find).
    if t.hand_written_grad is None and not t.resolves_float64:
        inside = _internal_precision(t, point)
        if inside is not None:
            # Computed in a lower precision inside: the check starts again in that one.
            t.demote(*inside)
            return run(target, settings)
    comparisons += _frozen_comparisons(point, raw[:n_sets], eps=tolerances.work.eps)
    determinism = compare_determinism(
        grads[0], grads[n_sets], input_names=t.input_names, output_name=t.output_names[0],
        nondet_tol=s.nondet_tol,
    )
    if not determinism.passed:  # a passing one compares an oracle with itself: not listed
        comparisons.append(determinism)
    # The second backward pass served the determinism check only: input-sized arrays
    # fewer for the rest of the check.
    grads[n_sets] = []
    del raw
    for i, x in enumerate(t.base):
        if x.size == 0:
            notes.append(f"{t.input_names[i]} is empty: it has no derivative to compare")

    # Below float64 the analytic side's rounding is measured, not modelled: it is what
    # the power of such a check depends on (`Tolerances.finite_difference_measured`).
    spreads = (
        _analytic_spreads(t, point, grads[n_sets + 1:], frozen, eps=tolerances.work.eps,
                          seed=s.seed)
        if below else None
    )

    # -- finite differences: one directional derivative per input, shared by every output
    def derivative(i: int, direction: np.ndarray):
        return finite_differences(t, point, i, direction, work=tolerances.work, step=s.step)

    check = finite_difference_check(
        hand_written=t.hand_written_grad is not None, promoted=t.promoted,
        forward=not s.check_backward_ad,
    )
    fd: dict[tuple[int, int], int] = {}  # (i, j) -> index of its comparison
    ds: dict[int, Derivative] = {i: derivative(i, point.v[i]) for i in point.checked}
    # How much the outputs bend along every probe, summed: part of each probe's natural
    # size, in the outputs' units (`output_scales`).
    bends = _bends(point, ds)
    point = dataclasses.replace(point, out_scale=tuple(output_scales(point.u, point.y0, bends)))
    for i in point.checked:
        d = ds[i]
        found = [
            compare_finite_differences(
                point, i, j, d, tolerances=tolerances, check=check,
                spread=None if spreads is None else spreads[j][i],
            )
            for j in range(len(point.u))
        ]
        if d.noise is None and (t.work_dtype != "float64" or not all(c.passed for c in found)):
            # Before a verdict of failure: the noise the model bounded may be larger (a
            # cancelling forward); measure it at the point and compare again. Below
            # float64 it is measured always: the power of a passing check (`_power.py`)
            # must state what the check would have seen had the gradient been wrong,
            # with that noise included, not what the model alone allows.
            d = ds[i] = with_measured_noise(t, point, i, point.v[i], d)
            found = [
                compare_finite_differences(
                    point, i, j, d, tolerances=tolerances, check=check,
                    spread=None if spreads is None else spreads[j][i],
                )
                for j in range(len(point.u))
            ]
        for j, c in enumerate(found):
            fd[i, j] = len(comparisons)
            c = resolve(t, point, i, j, d, c, tolerances)
            comparisons.append(c)
        if np.any(d.kink):
            _split_kinks(point, i, d, comparisons, fd, derivative=derivative, tolerances=tolerances, check=check)

    comparisons += _equalised(
        t, point, ds, frozen, bends, tolerances=tolerances, check=check
    )
    # Whether the outputs depend on the inputs at all matters where the backward says
    # they do not, or where no step moved them (a rounding: a straight-through gradient
    # fails, and the note says why); elsewhere the evaluations it costs would show nothing.
    if point.checked and (
        all(not np.any(g) for row in point.grads for g in row)
        or any(d.moved is not None and not np.any(d.moved) for d in ds.values())
    ):
        notes += t.probe_dependence(point.flat0)
    notes += t.unchecked_notes()  # after the steps, which show whether those outputs move

    # -- forward mode: where it disagrees with reverse mode beyond rounding, finite
    # differences decide whether the backward is wrong (`forward_rule_disagreement`).
    # It runs where it checks the user's code: a derivative rule of the user's own in the
    # graph (`Target.forward_mode_adds_power`; for torch a custom autograd.Function,
    # custom_op or C++ Function), or where asked for (check_forward_ad=True, mode="full").
    # Through torch's own operations alone it would check torch's forward rules against
    # its backward rules, at the cost of a forward pass per input (and, on the first
    # check, importing torch._dynamo for the rules of operations with a Python number).
    if not s.check_backward_ad:
        notes.append(
            "check_backward_ad=False: forward mode (its Jacobian, one column per input "
            "element) was compared with finite differences; the backward was not called"
        )
    elif t.hand_written_grad is None and (
        s.check_forward_ad or s.mode == "full" or t.forward_mode_adds_power()
    ):
        spread: list[list[np.ndarray]] | None = None
        for i in point.checked:
            out_t = forward_mode(t, point, i)
            if out_t is None:
                if s.check_forward_ad:
                    comparisons.append(_forward_mode_missing(point, str(t.forward_mode_note)))
                else:
                    notes.append(str(t.forward_mode_note))
                break
            for j in range(len(point.u)):
                c = compare_forward_mode(point, i, j, out_t, tolerances=tolerances)
                if not c.passed and not tolerances.user.given:
                    # Ill-conditioned derivatives: measured once, only where needed.
                    if spread is None:
                        spread = _reverse_spread(t, point, frozen, rng, eps=tolerances.work.eps)
                    c = compare_forward_mode(
                        point, i, j, out_t, tolerances=tolerances, spread=spread[j][i]
                    )
                kink = kink_interval(point, i, j, ds[i])
                a, b = point.parts[j]
                fd_error = float(np.dot(np.abs(point.u[j].ravel()), ds[i].error[a:b]))
                fdc = comparisons[fd[i, j]]
                note = subgradient_disagreement(c, fdc, kink)
                if note is not None:  # neither mode is wrong
                    notes.append(note)
                    continue
                note = forward_rule_disagreement(c, fdc, fd_error=fd_error, kink=kink)
                if note is not None:
                    notes.append(note)
                    if not s.check_forward_ad:
                        continue
                comparisons.append(c)

    # The estimates per output element are read no more (localisation differentiates
    # again): only their steps, for the power rule; several output-sized arrays fewer
    # while the reduced-precision backward passes run.
    steps = {i: d.step for i, d in ds.items()}
    del ds, bends
    d = None  # the finite-difference loop's last estimate

    # -- reduced precision
    if t.promoted and not s.check_backward_ad:
        notes.append(
            f"the {t.native_dtype} forward mode was not compared with the float64 one: "
            f"check_backward_ad=False compares derivatives in float64 only"
        )
    elif t.promoted:
        native_grads = reverse_mode(t, point.cotangent_sets(), frozen, native=True)
        # The float64 gradient one native ulp of the inputs (and of the tensors the forward
        # saves for the backward) away, random signs per element. Elements far below their
        # input's scale (a parameter at exactly 0) move by an ulp of that scale: the
        # intermediates they enter are rounded at it.
        moved = _moved(t.base, frozen, tolerances.native.eps, rng)
        shifted = reverse_mode(
            t, point.cotangent_sets(), frozen, at=moved, saved_noise=tolerances.native.eps
        )
        del moved
        for j, yn in enumerate(t.native_outputs):
            for i in point.checked:
                g = point.grads[j][i]
                comparisons.append(compare_precision(
                    point, i, j, native_grads[j][i], yn, tolerances=tolerances,
                    native_dtype=t.native_dtype,
                    input_spread=_spread(shifted[j][i], g),
                    rounding_spread=_spread(grads[n_sets + 1 + j][i], g, scale=3.0),
                ))

    # -- localisation
    full = s.mode == "full"
    if s.mode != "fast":
        for (i, j), k in fd.items():
            if not (full or not comparisons[k].passed) or comparisons[k].inconclusive:
                continue  # an unresolved derivative has no wrong elements to find
            found = localise(
                point, i, j, derivative=derivative, vjps=t.vjps, tolerances=tolerances, full=full
            )
            if found is not None:
                comparisons[k] = _localised(comparisons[k], found, full=full)

    # -- power: a check whose numeric side ran below float64 (reduced-precision inputs that
    # could not be promoted, or a function computing in float32 inside) and that is too
    # weak to catch a 1% error in one element is inconclusive, not passed
    shares = {
        (i, j): absorbed_share(
            point, i, j, steps[i], tolerances=tolerances, measured=spreads is not None
        )
        for i, j in fd
    }
    power = apply_power(
        point, comparisons, fd, shares, failing=any(c.status == "failed" for c in comparisons),
        enforce=t.work_dtype != "float64",
    )

    # A constant function has a right zero gradient; one whose outputs are differentiable
    # through something other than its inputs is checked vacuously: inconclusive.
    if t.outputs_independent and t.outputs_disconnected:
        comparisons.append(outputs_independent(point))

    return Report(
        comparisons=comparisons,
        framework=t.framework,
        dtype=t.native_dtype,
        device=t.device,
        mode=s.mode,
        promoted=t.promoted,
        promoted_objects=list(t.promoted_objects) if t.promoted else [],
        seed=s.seed,
        function_evals=t.function_evals,
        backward_evals=t.backward_evals,
        forward_evals=t.forward_evals,
        notes=_unique(notes),
        errors=[],
        power=power,
    )


def _analytic_spreads(
    t: Target,
    point: BasePoint,
    scaled: list[list[np.ndarray]],
    frozen: list[np.ndarray],
    *,
    eps: float,
    seed: int,
) -> list[list[np.ndarray]]:
    """Per output j and input i, how far each gradient element moves under rounding alone.

    Two moves that change no derivative beyond rounding: the cotangent scaled by 3
    (`scaled`, the backward's own rounding, of every operation the cotangent passes
    through) and the inputs moved by about an ulp of their dtype with random signs (what
    the backward reads from the forward, rounded differently; one more backward pass).
    Their sum, per element. A private generator: the check's other draws stay as they are.
    """
    moved = _moved(t.base, frozen, 2.0 * eps, np.random.default_rng([seed, 0x5EED]))
    shifted = reverse_mode(t, point.cotangent_sets(), frozen, at=moved)
    return [
        [
            np.abs(scaled[j][i] / 3.0 - g) + np.abs(shifted[j][i] - g)
            for i, g in enumerate(grads)
        ]
        for j, grads in enumerate(point.grads)
    ]


def _spread(a: np.ndarray, g: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
    """`a / scale - g`, in `a`'s memory where it is a float64 array (read no more after:
    an input-sized array fewer at the reduced-precision comparisons)."""
    if not (isinstance(a, np.ndarray) and a.dtype == np.float64 and a.flags.writeable
            and a.shape == np.shape(g)):
        return a / scale - g
    if scale != 1.0:
        a /= scale
    a -= g
    return a


def _moved(
    base: Sequence[np.ndarray], frozen: Sequence[np.ndarray], relative: float,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """The inputs moved by `relative` of each element, with random signs, the frozen ones
    held. Elements far below their input's scale (a parameter at exactly 0) move by that
    share of the scale: the intermediates they enter are rounded at it."""
    moved = []
    for f, x in zip(frozen, base):
        # In place: `x + relative * max(|x|, scale) * signs`, the same bits.
        out = np.abs(x, out=np.empty_like(x))  # an array even for 0-d inputs
        np.maximum(out, input_scale(x), out=out)
        out *= relative
        out *= random_signs(rng, x.shape)
        out += x
        np.copyto(out, x, where=f)
        moved.append(out)
    return moved


def _internal_precision(t: Target, point: BasePoint) -> tuple[str, str] | None:
    """The lower precision a function evaluated in float64 or float32 computes in inside,
    with the evidence (for `Target.demote`); None where nothing says so.

    Asked only where the gradient lies on a coarser grid; for float64 inputs the set-up
    precision probe runs then (`Target.probe_precision`), and a forward it sees resolve
    float64 steps is not demoted."""
    if t.work_dtype not in ("float64", "float32"):
        return None
    half, grid = _preflight.grids(point.grads)
    if t.work_dtype != "float64":
        grid = None
    if half is None and grid is None:
        return None
    t.probe_precision(point.y0)
    if t.resolves_float64:
        return None
    if half is not None and t.computes_in(half, point.y0):
        return half, (
            f"every element of its gradient is exactly a {half} number, and moving its "
            f"inputs below {half}'s resolution leaves its outputs bit for bit unchanged"
        )
    if grid is None and half is not None and t.work_dtype == "float64" and t.computes_in(
        "float32", point.y0, draws=3, results=half
    ):
        # A float32 computation that rounds its results to a half precision (a reduction
        # accumulated in bfloat16) returns gradients with too few bits for the grid test,
        # and finer inputs than the half precision's: its float32 view decides.
        return "float32", (
            f"every element of its gradient is exactly a {half} number, and moving its "
            "inputs below float32's resolution leaves its outputs bit for bit unchanged"
        )
    if grid is None:
        return None
    return grid, (
        f"every element of its float64 gradient is exactly a {grid} number, as the "
        f"backward of a cast to {grid} returns"
    )


# Most directional derivatives spent on separating the kinked coordinates of one input
# from its smooth ones (breadth first, so that large smooth parts are checked first).
KINK_SPLIT_BUDGET = 16


# Below this ratio between an output's largest and smallest per-element derivatives the
# random cotangent already weighs every element fairly, and no equalised probe is run.
EQUALISE_RANGE = 10.0


def _weight_caps(eps: float) -> tuple[float, float]:
    """The largest weights an equalised probe gives an element: decisive and exploratory.

    Rounding of intermediates as large as an output's largest terms reaches its smaller
    elements too, and can be smooth along the probe, so that finite differences converge
    to it: in gelu's tail (`1 + tanh(z)` at z = -15) the computed forward's derivative
    differs from the true one by 100% at 1e-15 of the largest derivative while the
    backward is right to 1%, both accurate to eps of the largest in absolute terms; in
    kornia's SIFT descriptors elements at RootSIFT's floor behave alike. Up to
    eps**(-1/2) (7e7 in float64) a weighted probe decides: elements that large keep a
    relative accuracy of sqrt(eps) even then. Beyond it, up to eps**(-2/3) (4e10), a
    disagreement cannot tell a wrong gradient from that rounding: it makes the check
    inconclusive, never failed (a 50% error at 4e-18 of the largest, exp over [0, 40],
    is not passed).
    """
    return eps ** -0.5, eps ** (-2.0 / 3.0)


def _equalised(
    t: Target,
    point: BasePoint,
    ds: dict[int, Derivative],
    frozen: list[np.ndarray],
    bends: np.ndarray,
    *,
    tolerances: Tolerances,
    check: str,
) -> list[Comparison]:
    """The probes again, with each output element weighted by its own derivative's inverse.

    A random cotangent weighs output elements by their size: across exp over [0, 40] the
    largest entries dominate the probe, and an error in the smallest is far below its
    tolerance. Weighting element k by `1 / |(J v)_k|` (the finite differences already
    measured it, or its error where it is smaller) makes every element contribute alike,
    for one more backward pass per output and no function evaluation. Elements with no
    derivative along the probe keep their weight; weights stop at `_weight_caps`, and
    where the decisive cap stopped some, a second probe with the exploratory one follows
    (one more backward pass) whose disagreement is inconclusive. Kinked probes are left
    to `_split_kinks`.

    Where a weighted probe fails on noise only the model bounded, the noise is measured and
    the weights formed again (the magnified elements may be ones whose forward cancels).
    """
    if not ds or any(np.any(d.kink) for d in ds.values()) or t.work_dtype != "float64":
        # Below float64 the plain probe's power already falls short of single elements
        # (`_power.py`), and weights of 1e5 and more overflow a float16 cotangent.
        return []
    decisive, exploratory = _weight_caps(tolerances.work.eps)

    def weighted(j: int, cap: float) -> tuple[list[Comparison], bool]:
        found, capped = _equalised_output(
            t, point, j, ds, frozen, bends, cap=cap, tolerances=tolerances, check=check
        )
        unmeasured = [i for i in ds if ds[i].noise is None]
        if unmeasured and not all(c.passed for c in found):
            for i in unmeasured:
                ds[i] = with_measured_noise(t, point, i, point.v[i], ds[i])
            found, capped = _equalised_output(
                t, point, j, ds, frozen, bends, cap=cap, tolerances=tolerances, check=check
            )
        return found, capped

    out = []
    for j in range(len(point.parts)):
        found, capped = weighted(j, decisive)
        if capped and all(c.passed for c in found):
            found = [_exploratory(c, decisive) for c in weighted(j, exploratory)[0]]
        out += found
    return out


def _derivative_size(ds: dict[int, Derivative], a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """`sum_i |value_i|` and `sum_i error_i` over the outputs `a:b`, accumulated in place
    (the same bits as `sum(...)`, whose start at 0 adds nothing to these values)."""
    derivatives = list(ds.values())
    scale = np.abs(derivatives[0].value[a:b])
    error = derivatives[0].error[a:b].copy()
    for d in derivatives[1:]:
        scale += np.abs(d.value[a:b])
        error += d.error[a:b]
    return scale, error


def _exploratory(c: Comparison, decisive: float) -> Comparison:
    """A comparison with weights beyond the decisive cap: its failure is inconclusive."""
    if c.passed or c.inconclusive:
        return c
    return dataclasses.replace(c, inconclusive=True, inconclusive_reason=(
        f"only with output elements weighted beyond {decisive:.2g} (derivatives below "
        f"{1 / decisive:.2g} of the output's largest) does the probe disagree: either the "
        f"gradient of those elements is wrong, or their last digits are rounding of "
        f"intermediates as large as the largest ones (as in gelu's tail), which finite "
        f"differences in float64 cannot tell apart. To decide, check at inputs where those "
        f"elements are the largest, or on those elements alone"
    ))


def _equalised_output(
    t: Target,
    point: BasePoint,
    j: int,
    ds: dict[int, Derivative],
    frozen: list[np.ndarray],
    bends: np.ndarray,
    *,
    cap: float,
    tolerances: Tolerances,
    check: str,
) -> tuple[list[Comparison], bool]:
    """`_equalised` for output `j` with weights at most `cap`: one comparison per input
    (none where the output's derivatives span less than `EQUALISE_RANGE`), and whether
    the cap stopped a weight."""
    a, b = point.parts[j]
    scale, denom = _derivative_size(ds, a, b)
    np.maximum(scale, denom, out=denom)
    # Outputs that stayed bit for bit the same at every step have no measured derivative
    # (only its error bound, which is not its size): they keep their weight.
    live = np.isfinite(denom) & (scale > 0)
    del scale
    if np.count_nonzero(live) < 2:
        return [], False
    # In place and under `where=` (the same values as on `denom[live]`): output-sized
    # arrays fewer while the backward pass below runs.
    top = float(np.max(denom, where=live, initial=-np.inf))
    low = float(np.min(denom, where=live, initial=np.inf))
    if top <= EQUALISE_RANGE * low:
        return [], False
    weight = np.ones(b - a)
    np.divide(top, denom, out=weight, where=live)
    np.minimum(weight, cap, out=weight, where=live)
    del denom
    u = np.multiply(point.u[j].ravel(), weight, out=weight).reshape(point.u[j].shape)
    [grads] = reverse_mode(t, [on_output(j, u, len(point.u))], frozen)
    us = point.u[:j] + (u,) + point.u[j + 1:]
    sub = dataclasses.replace(
        point, u=us, out_scale=tuple(output_scales(us, point.y0, bends)),
        grads=point.grads[:j] + (tuple(grads),) + point.grads[j + 1:],
    )
    out = []
    for i in ds:
        c = compare_finite_differences(sub, i, j, ds[i], tolerances=tolerances, check=check)
        c = resolve(t, sub, i, j, ds[i], c, tolerances)
        if not (c.passed or c.inconclusive) and c.error <= c.tolerance + _magnified_rounding(
            u, point.y0[j], ds[i].step, tolerances.work.eps
        ):
            c = dataclasses.replace(c, inconclusive=True, inconclusive_reason=(
                "the weighted probe disagrees by less than what rounding of intermediates "
                "as large as the output's largest value costs the magnified elements (in "
                "gelu's tail 1 + tanh(z) cancels from terms of size 1): finite differences "
                "in float64 cannot tell a wrong gradient of those elements from it. To "
                "decide, check at inputs where those elements are the largest, or on those "
                "elements alone"
            ))
        out.append(dataclasses.replace(
            c, check=check + " (equalised cotangent)", function_evals=0,
            notes=list(c.notes) + [
                f"output elements weighted by the inverse of their derivative along the "
                f"probe (range {top / low:.3g}{f', weights at most {cap:.2g}' if top > cap * low else ''}), "
                f"so that each contributes alike"
            ],
        ))
    return out, top > cap * low


# Bound on Richardson's amplification of evaluation noise at the levels used (33/20 for
# three central levels, `richardson_noise_gain`), with room for a fourth.
_NOISE_GAIN = 2.0


def _magnified_rounding(u: np.ndarray, y: np.ndarray, step: float, eps: float) -> float:
    """What rounding of intermediates as large as output `y`'s largest value can cost a
    probe with cotangent `u` along a direction at `step`.

    Each element's own rounding bound scales with its own value; an element whose forward
    cancels (gelu's `0.5 x (1 + tanh(z))` at x = -6.6, a value of 3e-13 made from terms of
    size 1) rounds like its terms instead, and finite differences converge to that
    rounding, smoothly, by 2% there. The weights of an equalised probe magnify exactly
    such elements; `eps max|y| / step` per evaluation bounds their rounding whatever they
    cancel from, as long as no intermediate exceeds the largest output.
    """
    finite = np.abs(y[np.isfinite(y)])
    if not finite.size or step <= 0:
        return 0.0
    return _NOISE_GAIN * eps * float(finite.max()) / step * float(np.sum(np.abs(u)))


def _split_kinks(
    point: BasePoint,
    i: int,
    d: Derivative,
    comparisons: list[Comparison],
    fd: dict[tuple[int, int], int],
    *,
    derivative,
    tolerances: Tolerances,
    check: str,
) -> None:
    """Check the smooth part of a kinked probe at full sharpness.

    Where the one-sided derivatives along `v_i` differ, any value in the probe's kink
    interval is a subgradient; that interval is as wide as the kinked coordinates' jumps
    together, and it would hide a wrong gradient in every other coordinate. The direction
    is bisected until its parts either show no kink, and are compared as any probe (a
    failing one replaces the pair's comparison), or are single kinked coordinates, whose
    interval is that coordinate's own subdifferential. Costs at most `KINK_SPLIT_BUDGET`
    directional derivatives, independent of the input size.
    """
    v = point.v[i]
    flat = v.ravel()
    kinked_outputs = [j for j, (a, b) in enumerate(point.parts) if np.any(d.kink[a:b])]
    queue = _halves(np.flatnonzero(flat != 0))
    evals = 0
    resolved = 0  # coordinates in parts that were compared or are single kinks
    spent = 0
    while queue and spent < KINK_SPLIT_BUDGET:
        piece = queue.pop(0)
        part = np.zeros_like(flat)
        part[piece] = flat[piece]
        part = part.reshape(v.shape)
        dp = derivative(i, part)
        spent += 1
        evals += dp.evals
        sub = dataclasses.replace(point, v=point.v[:i] + (part,) + point.v[i + 1:])
        split = False
        for j in kinked_outputs:
            a, b = point.parts[j]
            if np.any(dp.kink[a:b]):
                split = split or piece.size > 1
                continue
            c = compare_finite_differences(sub, i, j, dp, tolerances=tolerances, check=check)
            if not c.passed and comparisons[fd[i, j]].passed:
                comparisons[fd[i, j]] = dataclasses.replace(c, notes=list(c.notes) + [
                    f"the probe along {point.input_names[i]} has a kink at the input; its "
                    f"{piece.size} of {flat.size} coordinates without a kink were compared "
                    f"on their own, at full sharpness, and disagree"
                ])
        resolved += 0 if split else piece.size
        if split:
            queue += _halves(piece)
    for j in kinked_outputs:
        c = comparisons[fd[i, j]]
        comparisons[fd[i, j]] = dataclasses.replace(
            c, function_evals=c.function_evals + evals,
            notes=list(c.notes) + (
                [f"kinked probe split into parts with {spent} more directional derivatives "
                 f"({evals} evaluations)"] + (
                    [f"the split stopped at its budget of {KINK_SPLIT_BUDGET}: "
                     f"{flat.size - resolved} coordinates only checked within the kink interval"]
                    if queue else []
                )
            ),
        )


def _reverse_spread(
    t: Target, point: BasePoint, frozen: list[np.ndarray], rng: np.random.Generator, *, eps: float
) -> list[list[np.ndarray]]:
    """How far each `J_j^T u_j` moves when every finite input element moves by one ulp.

    Both AD modes differentiate at the forward's rounded intermediates; where the
    derivative is ill-conditioned the rounding of those moves it, and the two modes,
    taking different paths through them, differ by as much. One backward pass per output.
    """
    moved = [
        np.where(f, x, x + 2.0 * eps * np.abs(x) * random_signs(rng, x.shape))
        for f, x in zip(frozen, point.base)
    ]
    shifted = reverse_mode(t, point.cotangent_sets(), frozen, at=moved)
    return [[s - g for s, g in zip(row, grads)] for row, grads in zip(shifted, point.grads)]


def _halves(idx: np.ndarray) -> list[np.ndarray]:
    if idx.size <= 1:
        return [idx] if idx.size else []
    m = idx.size // 2
    return [idx[:m], idx[m:]]


def _frozen_comparisons(
    point: BasePoint, raw: list[list[np.ndarray]], *, eps: float
) -> list[Comparison]:
    """The gradients at frozen (infinite, held-fixed) input elements: finite and zero.

    Finite differences cannot move an infinite element, so its gradient is checked on its
    own: where the outputs are finite, nothing differentiable reaches it (a masked softmax
    gives its -inf scores exactly zero weight), and a nonzero or NaN gradient there is a
    backward that leaks into masked positions. The tolerance is rounding of the finite
    elements' gradients (`eps` of the largest), not a fixed absolute one.
    """
    out = []
    for i in point.checked:
        f = point.frozen[i]
        if not f.any():
            continue
        for j, name in enumerate(point.output_names):
            g = np.asarray(raw[j][i], dtype=np.float64)
            at = g[f]
            with np.errstate(invalid="ignore"):
                error = float(np.max(np.abs(at))) if np.all(np.isfinite(at)) else math.inf
            finite = g[~f]
            finite = finite[np.isfinite(finite)]
            tol = eps * float(np.max(np.abs(finite), initial=0.0))
            passed = error <= tol
            worst = []
            if not passed:
                k = int(np.argmax(np.where(np.isfinite(at), np.abs(at), np.inf)))
                index = tuple(int(c) for c in np.argwhere(f)[k])
                worst = [Element(index, None, float(at[k]), 0.0, abs(float(at[k])), tol)]
            out.append(Comparison(
                check="gradient at held-fixed (infinite) input elements",
                input=point.input_names[i],
                output=name,
                error=error,
                tolerance=tol,
                tolerance_source="eps x the largest gradient at the finite elements",
                passed=passed,
                analytic=float(at[np.argmax(np.abs(np.nan_to_num(at, nan=np.inf)))]),
                numeric=0.0,
                worst=worst,
                backward_evals=1,
                notes=[] if passed else [
                    f"{point.input_names[i]} has {int(f.sum())} infinite element(s), held "
                    f"fixed; the outputs are finite, so nothing differentiable reaches them "
                    f"and their gradient must be 0, but the backward gives "
                    f"{float(at[k]):.6g} at index {list(index)}: it leaks gradient (or NaN) "
                    f"into masked positions"
                ],
            ))
    return out


def _forward_mode_missing(point: BasePoint, why: str) -> Comparison:
    """A failed comparison: check_forward_ad=True, and forward mode cannot run."""
    return Comparison(
        check=FORWARD_MODE_CHECK,
        input=", ".join(point.input_names),
        output=", ".join(point.output_names),
        error=math.inf,
        tolerance=0.0,
        tolerance_source="forward mode must run (check_forward_ad=True)",
        passed=False,
        kind=ComparisonKind.FORWARD_MODE,
        notes=[
            f"{why} check_forward_ad=True asks for a forward-mode rule for every operation "
            f"(a custom autograd.Function needs a jvp staticmethod); pass "
            f"check_forward_ad=False to check the backward only"
        ],
    )


def _bends(point: BasePoint, ds: dict[int, Derivative]) -> np.ndarray:
    """`Derivative.bend` of every input's probe, summed, laid out as `point.flat0`."""
    bends = [d.bend for d in ds.values() if d.bend is not None]
    if len(bends) == 1:
        return bends[0]  # read only: no copy
    total = np.zeros(point.flat0.shape)
    for bend in bends:
        total += bend
    return total


def _localised(c: Comparison, found: Localisation, *, full: bool) -> Comparison:
    """The finite-difference comparison with what localising it found.

    Localisation never contradicts the verdict: where the probe failed but every element
    compared is within its own tolerance, the note says so, and the elements shown are
    the nearest to their tolerance, not established errors.
    """
    notes = list(c.notes) + list(found.notes)
    if not c.passed and not found.outside and found.elements:
        notes.append(
            f"localisation found all {found.elements} compared elements within their own "
            f"tolerances: the probe's disagreement is spread over many elements, each below "
            f"what its own finite differences resolve; the elements listed are the closest "
            f"to their tolerance, not established errors"
        )
    return dataclasses.replace(
        c,
        # In full mode every element is compared, and one outside its tolerance fails the
        # pair even where the random probe passed.
        passed=c.passed and not (full and found.outside),
        worst=list(found.worst),
        function_evals=c.function_evals + found.function_evals,
        notes=notes,
    )


def _unique(items: list[str]) -> list[str]:
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out
