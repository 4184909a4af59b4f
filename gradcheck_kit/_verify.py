"""The verification matrix: which cases `verify` runs, how each runs, and what it records.

A case is one reference model x implementation x check x dtype x device x example, where
the check is the cross-check (`gradcheck_kit.crosscheck`: the implementation against the
other implementations, jax and finite differences) or one of the model's doc-fidelity
claims. `plan` enumerates the cases, `run_case` runs one and returns a `CheckRecord`.
`python -m gradcheck_kit verify` and `pytest --gradcheck-verify` both call these two
functions, so they check exactly the same things.

Records of every kind (verify cases and the plugin's `gradcheck` calls) share one JSON
document with a versioned schema; records, the document and the summary live in
`gradcheck_kit._records` (re-exported here).

This module imports reference_models, hypothesis and the frameworks only inside functions.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._options import DEFAULT_DTYPES, available_devices, check_dtypes, device_available, profile_named
from ._records import SCHEMA, SCHEMA_VERSION, CheckRecord, results_document, summary_lines, write_json
from ._report import _json_float

if TYPE_CHECKING:
    from .strategies import ModelExample

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "CheckRecord",
    "VerifyCase",
    "VerifyError",
    "plan",
    "results_document",
    "run",
    "run_case",
    "summary_lines",
    "write_json",
]

CROSSCHECK = "crosscheck"
FIDELITY_PREFIX = "fidelity:"
# The reference models define their examples in these dtypes only.
_MODEL_DTYPES = ("float64", "float32")


class VerifyError(ValueError):
    """A selection that names nothing that exists (a usage error: exit status 2)."""


@dataclass(frozen=True)
class VerifyCase:
    """One case of the matrix.

    **Arguments:**
    - `model`, `implementation`: what is checked.
    - `check`: `"crosscheck"` or `"fidelity:<claim>"`.
    - `dtype`, `device`: where.
    - `example`: the example a cross-check runs on (`None` for fidelity claims, which use
      the doc's own set-up), and `label`, its short name (`"doc"`, `"quick"`, `"drawn1"`).
    - `peers`: the implementations cross-checked together in this case's group.
    """

    model: str
    implementation: str
    check: str
    dtype: str
    device: str
    label: str = ""
    example: ModelExample | None = None
    peers: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        where = "-".join(p for p in (self.dtype, self.device, self.label) if p)
        return f"{self.model}[{self.implementation}-{self.check}-{where}]"

    @property
    def group(self) -> str:
        """Cases of one group share their oracles (one cross-check of all `peers`)."""
        if self.check == CROSSCHECK:
            return f"{self.model}-{self.dtype}-{self.device}-{self.label}"
        return f"{self.model}-{self.check}"


# ---------------------------------------------------------------------------------------
# Planning.


def plan(
    *,
    models: Sequence[str] | None = None,
    implementations: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    examples: int | None = None,
    seed: int = 0,
    profile: str | None = None,
) -> list[VerifyCase]:
    """The cases of the matrix, in a deterministic order (the same in every process).

    **Arguments:**
    - `models`, `implementations`: restrict to these names (default: everything
      registered, users' implementations included).
    - `dtypes`, `devices`: default float64 and float32, and every available device.
    - `examples`: hypothesis-drawn examples per model beside the doc example (default:
      the profile's); sizes, seeds, dtypes and devices are drawn from `seed`.
    - `profile`: `"quick"`, `None` (standard) or `"thorough"`.

    **Returns:** a list of `VerifyCase`.

    **Raises:** `VerifyError` when a name, dtype or device does not exist here; the
    message lists close matches.

    **Example:** `plan(models=["cubic_fit"], profile="quick")`.
    """
    import reference_models

    chosen = profile_named(profile)
    model_names = _select("model", models, reference_models.names())
    selected_models = [reference_models.get(name) for name in model_names]
    every_impl = sorted({i for m in selected_models for i in m.implementations})
    impl_filter = None if implementations is None else set(
        _select("implementation", implementations, every_impl)
    )
    dtype_names = _model_dtypes(dtypes)
    device_names = _devices(devices)
    n_drawn = chosen.examples if examples is None else examples

    from .strategies import ModelExample

    cases: list[VerifyCase] = []
    for model in selected_models:
        impls = tuple(
            name for name in model.implementations if impl_filter is None or name in impl_filter
        )
        if not impls:
            continue
        placed: list[tuple[str, ModelExample]] = []
        first_label = "doc" if chosen.doc_sizes else "quick"
        first_sizes = {} if chosen.doc_sizes else dict(model.quick_sizes)
        for dtype in dtype_names:
            for device in device_names:
                placed.append((first_label, ModelExample(model.name, first_sizes, seed, dtype, device)))
        drawn_examples = draw_examples(
            model.name, n_drawn, seed=seed, dtypes=dtype_names, devices=device_names
        )
        # A drawn example equal to the first one (a model without sizes, drawn at the same
        # seed) would check the same thing twice and count it twice.
        drawn_examples = [d for d in drawn_examples if all(d != e for _, e in placed)]
        for i, drawn in enumerate(drawn_examples, start=1):
            placed.append((f"drawn{i}", drawn))
        for label, example in placed:
            for impl in impls:
                cases.append(
                    VerifyCase(
                        model.name, impl, CROSSCHECK, example.dtype, example.device,
                        label=label, example=example, peers=impls,
                    )
                )
        for claim in model.fidelity.values():
            for dtype in dtype_names:
                if dtype not in claim.dtypes or dtype not in chosen.fidelity_dtypes:
                    continue
                for device in device_names:
                    for impl in claim.applies_to(model):
                        if impl in impls:
                            cases.append(
                                VerifyCase(
                                    model.name, impl, FIDELITY_PREFIX + claim.name, dtype, device
                                )
                            )
    return cases


def draw_examples(
    model: str, n: int, *, seed: int, dtypes: Sequence[str], devices: Sequence[str]
) -> list[ModelExample]:
    """`n` distinct examples of `model` drawn by hypothesis, the same for the same `seed`.

    The first is the simplest example (every size 1); the others are drawn at random from
    `seed`, so every process that plans the matrix (each pytest-xdist worker) gets the
    same list.
    """
    if n <= 0:
        return []
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fixed_seed

    from .strategies import examples

    found: list[ModelExample] = []

    # Only the generate phase: nothing fails here, and the example database must not
    # replay examples from earlier runs, which would make the plan depend on history.
    @fixed_seed(seed)
    @settings(
        max_examples=n, database=None, phases=[Phase.generate], deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(examples(model, dtypes=dtypes, devices=devices))
    def collect(example: ModelExample) -> None:
        if example not in found:
            found.append(example)

    collect()
    return found[:n]


def _select(kind: str, requested: Sequence[str] | None, known: Sequence[str]) -> list[str]:
    if requested is None:
        return list(known)
    import reference_models

    for name in requested:
        if name not in known:
            raise VerifyError(reference_models.unknown_name_message(kind, name, list(known)))
    return list(dict.fromkeys(requested))


def _model_dtypes(dtypes: Sequence[str] | None) -> list[str]:
    try:
        names = check_dtypes(dtypes or DEFAULT_DTYPES, argument="dtypes")
    except ValueError as exc:
        raise VerifyError(str(exc)) from None
    for name in names:
        if name not in _MODEL_DTYPES:
            raise VerifyError(
                f"dtype {name!r} cannot be verified, because the reference models define "
                f"their examples in {' and '.join(_MODEL_DTYPES)} only. Drop it or use "
                f"those."
            )
    return names


def _devices(devices: Sequence[str] | None) -> list[str]:
    if devices is None:
        return available_devices("torch")
    for device in devices:
        if not device_available(device):
            raise VerifyError(
                f"device {device!r} is not available on this machine; available: "
                f"{', '.join(available_devices('torch'))}."
            )
    return list(dict.fromkeys(devices))


# ---------------------------------------------------------------------------------------
# Running.

# Cross-checks of the last few groups: the cases of one group run one after another
# (in order in one process, and on one worker under `--dist loadgroup`). An entry is keyed
# on everything its report depends on (`_group_key`), so a case of another seed, sizes or
# dtype, or after an implementation was registered or replaced, never reads a stale one.
_GROUPS: OrderedDict[tuple[Any, ...], tuple[Any, float]] = OrderedDict()
_GROUPS_KEPT = 4


def run_case(case: VerifyCase) -> CheckRecord:
    """Run one case; a broken implementation is a failed record, never an exception.

    **Example:** `run_case(plan(models=["graph_e"], profile="quick")[0]).passed`.
    """
    start = time.perf_counter()
    try:
        if case.check == CROSSCHECK:
            record = _crosscheck_record(case)
        else:
            record = _fidelity_record(case)
    except Exception as exc:  # the matrix goes on; the case reports what broke
        import traceback

        record = _record(
            case, passed=False,
            message=f"{case.id}: raised {type(exc).__name__}: {exc}\n"
            + "".join(traceback.format_exception(exc)[-4:]).rstrip(),
        )
    if not record.elapsed_s:
        record.elapsed_s = time.perf_counter() - start
    return record


def run(
    cases: Iterable[VerifyCase], *, progress: Callable[[int, VerifyCase, CheckRecord], None] | None = None
) -> list[CheckRecord]:
    """Run `cases` in order; `progress(i, case, record)` is called after each."""
    records = []
    for i, case in enumerate(cases, start=1):
        record = run_case(case)
        records.append(record)
        if progress is not None:
            progress(i, case, record)
    return records


def _record(case: VerifyCase, *, passed: bool, **figures: Any) -> CheckRecord:
    return CheckRecord(
        id=case.id,
        kind="crosscheck" if case.check == CROSSCHECK else "fidelity",
        passed=passed,
        model=case.model,
        implementation=case.implementation,
        check=case.check,
        dtype=case.dtype,
        device=case.device,
        example=None if case.example is None else {
            "label": case.label, "sizes": dict(case.example.sizes), "seed": case.example.seed,
        },
        **figures,
    )


def _group_key(case: VerifyCase) -> tuple[Any, ...]:
    """The cross-check's inputs: the example, and the model and implementation objects
    themselves (held, so that an identity is never reused by a new object)."""
    import reference_models

    assert case.example is not None
    model = reference_models.get(case.model)
    example = case.example
    return (
        case.group,
        case.peers,
        (example.model, tuple(sorted(example.sizes.items())), example.seed),
        (example.dtype, example.device),
        model,
        tuple(model.implementations.items()),
        tuple(model.training_loops.items()),
        model.training,
    )


def _group_crosscheck(case: VerifyCase) -> tuple[Any, float]:
    key = _group_key(case)
    if key in _GROUPS:
        _GROUPS.move_to_end(key)
        return _GROUPS[key]
    from ._matrix import crosscheck

    assert case.example is not None
    start = time.perf_counter()
    report = crosscheck(
        case.model,
        implementations=list(case.peers),
        example=case.example.build(),
        dtype=case.dtype,
        device=case.device,
        seed=case.example.seed,
    )
    entry = (report, (time.perf_counter() - start) / max(len(case.peers), 1))
    _GROUPS[key] = entry
    while len(_GROUPS) > _GROUPS_KEPT:
        _GROUPS.popitem(last=False)
    return entry


def _crosscheck_record(case: VerifyCase) -> CheckRecord:
    report, share_s = _group_crosscheck(case)
    rows = report.rows_of(case.implementation)
    if not rows:
        return _record(
            case, passed=False, elapsed_s=share_s,
            message=f"{case.id}: the cross-check has no comparison of {case.implementation!r}",
        )
    tightest = max(rows, key=lambda r: r.margin)
    failed = [r for r in rows if not r.passed]
    return _record(
        case,
        passed=not failed,
        error=float(tightest.error),
        tolerance=float(tightest.tolerance),
        margin=float(tightest.margin),
        elapsed_s=share_s,
        message="" if not failed else "\n".join(
            [f"{case.id}: {len(failed)} of {len(rows)} comparisons disagree"]
            + [f"  {r}" for r in failed]
        ),
        details={"rows": [r.to_dict() for r in rows], "notes": list(report.notes)},
    )


def _fidelity_record(case: VerifyCase) -> CheckRecord:
    import reference_models

    model = reference_models.get(case.model)
    name = case.check[len(FIDELITY_PREFIX):]
    results = model.run_fidelity(
        [name], implementations=[case.implementation], dtype=case.dtype, device=case.device
    )
    if not results:
        return _record(case, passed=False, message=f"{case.id}: the claim did not run")
    result = results[0]
    return _record(
        case,
        passed=result.passed,
        message="" if result.passed else str(result),
        details=_json_figures(result.to_dict()),
    )


def _json_figures(result: dict[str, Any]) -> dict[str, Any]:
    # A claim's figures may be non-finite (a diverged loss); the JSON document holds them
    # as the strings every other record uses.
    return {**result, "figures": {k: _json_float(v) for k, v in result["figures"].items()}}
