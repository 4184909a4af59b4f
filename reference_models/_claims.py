"""Building blocks of the doc claims: their results, loss traces and array agreements.

Every claim ends in a `FidelityResult` built the same way (`claim_result`); claims that
say "the loss falls" share `loss_falls`; claims that compare arrays (a closed form, a
built-in) go through `agree`, which judges them with gradcheck_kit's public
`ToleranceModel.compare_arrays`, so the models hold no tolerance arithmetic of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ._model import FidelityCheck, FidelityResult, ReferenceModel
from ._training import loss_trace

__all__ = ["Agreement", "agree", "claim_result", "claims", "loss_falls"]


def claims(*checks: FidelityCheck) -> dict[str, FidelityCheck]:
    """`ReferenceModel.fidelity` from its checks, keyed by their names."""
    return {check.name: check for check in checks}


def claim_result(
    model: ReferenceModel,
    check: str,
    implementation: str,
    dtype: str,
    *,
    passed: bool,
    observed: str,
    figures: Mapping[str, float] | None = None,
) -> FidelityResult:
    """The result of `model`'s claim `check`; the claim's words come from the model."""
    return FidelityResult(
        model=model.name,
        check=check,
        implementation=implementation,
        dtype=dtype,
        passed=bool(passed),
        claim=model.fidelity[check].claim,
        observed=observed,
        figures={k: float(v) for k, v in (figures or {}).items()},
    )


def loss_falls(
    model: ReferenceModel,
    implementation: str,
    *,
    dtype: str,
    device: str,
    chunks: int,
    steps: int,
    label: str,
    ratio: float | None = None,
    fmt: str = ".4g",
    extra: Callable[[Mapping[str, Any]], tuple[str, Mapping[str, float]]] | None = None,
) -> FidelityResult:
    """The claim `loss_falls`: the loss falls at each of `chunks + 1` checkpoints `steps` apart.

    **Arguments:**
    - `label`: the checkpoints in words (`"loss at steps 0,100,...,500"`).
    - `ratio`: the final loss must be below `ratio` times the initial one (`None`: no bound).
    - `fmt`: the format of the losses in `observed`.
    - `extra`: `extra(final_params) -> (text, figures)` appended to the result.
    """
    losses, params = loss_trace(
        model, implementation, chunks=chunks, steps=steps, dtype=dtype, device=device
    )
    falls = all(b < a for a, b in zip(losses, losses[1:]))
    shrink = losses[-1] / losses[0]
    passed = falls and (ratio is None or shrink < ratio)
    observed = f"{label}: " + ", ".join(format(v, fmt) for v in losses)
    if ratio is not None:
        observed += f" (final/initial {shrink:.2e})"
    figures: dict[str, float] = {"initial_loss": losses[0], "final_loss": losses[-1]}
    if extra is not None:
        text, more = extra(params)
        observed += text
        figures.update(more)
    return claim_result(
        model, "loss_falls", implementation, dtype, passed=passed, observed=observed,
        figures=figures,
    )


@dataclass(frozen=True)
class Agreement:
    """Named array comparisons (`gradcheck_kit.ToleranceModel.compare_arrays` results)."""

    comparisons: Mapping[str, Any]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons.values())

    @property
    def worst(self) -> str:
        """The name of the comparison with the largest margin."""
        return max(self.comparisons, key=lambda k: self.comparisons[k].margin)

    def margins(self, suffix: str = "_margin") -> dict[str, float]:
        """`{name + suffix: margin}`, the figures of a claim."""
        return {f"{k}{suffix}": c.margin for k, c in self.comparisons.items()}

    def describe(self, name: str) -> str:
        """`error E (tolerance T) at [i, j]` for one comparison."""
        c = self.comparisons[name]
        where = f" at {list(c.worst_index)}" if c.worst_index else ""
        return f"error {c.error:.3g} (tolerance {c.tolerance:.3g}){where}"


def agree(
    dtype: str, pairs: Mapping[str, tuple[Any, Any]], *, terms: int | Mapping[str, int]
) -> Agreement:
    """Compare each `(actual, reference)` pair in `dtype`'s rounding model.

    `terms` is the number of summed terms behind each value (one number, or one per name).
    """
    from gradcheck_kit import ToleranceModel

    tol = ToleranceModel.for_dtype(dtype)
    return Agreement(
        {
            name: tol.compare_arrays(
                actual, reference, terms=terms if isinstance(terms, int) else terms[name]
            )
            for name, (actual, reference) in pairs.items()
        }
    )
