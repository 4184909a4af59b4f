"""Correct functions whose forward cancels: false alarms of the finite-difference check.

In each of these functions the output is far smaller than the intermediates whose
rounding reaches it (`log(1 + x*x)` at small x, `x - x.mean(0)`, normalisations that sum
to a constant, `1 - cos x`, `logdet(I + X X^T)` at small X), so a noise bound scaled by
the output is too tight. All are correct (torch's own autograd), so every failed or
inconclusive verdict is a false alarm. The set is the product of the functions, input
scales from 1e-6 to 1e2, two shapes and two dtypes.

Run: `PYTHONPATH=$PWD python -m benchmarks.cancelling [--quick] [-v]`; to measure another
copy of the package, put it first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

import gradcheck_kit as gk

__all__ = ["FUNCTIONS", "SCALES", "SHAPES", "variants", "main"]

Tensor = torch.Tensor


def _logdet(x: Tensor) -> Tensor:
    eye = torch.eye(x.shape[0], dtype=x.dtype)
    return torch.logdet(eye + x @ x.T)


FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "log(1 + x*x).sum()": lambda x: torch.log(1 + x * x).sum(),
    "(x - x.mean(0)).sum()": lambda x: (x - x.mean(0)).sum(),
    "layer_norm(x).sum()": lambda x: F.layer_norm(x, x.shape[-1:]).sum(),
    "batch_norm(x, training).sum()": lambda x: F.batch_norm(x, None, None, training=True).sum(),
    "(1 - cos x).sum()": lambda x: (1 - torch.cos(x)).sum(),
    "logdet(I + X X^T)": _logdet,
    "softmax(x).sum()": lambda x: torch.softmax(x, dim=-1).sum(),
    "(x - x.mean()).square().mean()": lambda x: (x - x.mean()).square().mean(),
}
SCALES: tuple[float, ...] = (1e-6, 1e-4, 1e-2, 1.0, 1e1, 1e2)
SHAPES: tuple[tuple[int, ...], ...] = ((4, 3), (16, 8))
DTYPES: tuple[torch.dtype, ...] = (torch.float64, torch.float32)


def variants(quick: bool = False) -> list[tuple[str, float, tuple[int, ...], torch.dtype]]:
    """Every (function, scale, shape, dtype); `quick` keeps one shape and float64."""
    shapes = SHAPES[:1] if quick else SHAPES
    dtypes = DTYPES[:1] if quick else DTYPES
    return list(itertools.product(FUNCTIONS, SCALES, shapes, dtypes))


def _input(scale: float, shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


def run(cases: Sequence[tuple[str, float, tuple[int, ...], torch.dtype]], *, verbose: bool) -> dict:
    """Check every case; returns the counts and the false alarms."""
    alarms, evals, start = [], 0, time.perf_counter()
    for k, (name, scale, shape, dtype) in enumerate(cases):
        x = _input(scale, shape, dtype, seed=k).requires_grad_()
        label = f"{name} scale={scale:g} shape={tuple(shape)} {str(dtype).replace('torch.', '')}"
        try:
            report = gk.gradcheck(FUNCTIONS[name], (x,), raise_exception=False)
            status, evals = report.status, evals + report.function_evals
            why = "; ".join(
                f"{c.check}: error {c.error:.3g} vs tolerance {c.tolerance:.3g}"
                for c in report.comparisons if not c.passed
            )
        except Exception as exc:  # a refusal is a false alarm too
            status, why = "error", f"{type(exc).__name__}: {str(exc)[:160]}"
        if status != "passed":
            alarms.append((label, status, why))
        if verbose:
            print(f"{status:12s} {label}  {why[:200]}")
    return {
        "cases": len(cases), "false_alarms": alarms, "function_evals": evals,
        "seconds": time.perf_counter() - start,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one shape, float64 only")
    parser.add_argument("-v", "--verbose", action="store_true", help="a line per case")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = run(variants(args.quick), verbose=args.verbose)
    n, alarms = result["cases"], result["false_alarms"]
    failed = [a for a in alarms if a[1] != "inconclusive"]
    finite = [a for a in failed if "finite differences" in a[2]]
    print(
        f"cancelling forwards: {len(alarms)}/{n} not passed: {len(failed)} failed "
        f"({len(finite)} by finite differences), {len(alarms) - len(failed)} inconclusive; "
        f"{result['function_evals'] / max(n, 1):.1f} function evals per check; "
        f"{result['seconds']:.1f} s"
    )
    for label, status, why in alarms:
        print(f"  {status}: {label}: {why[:240]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
