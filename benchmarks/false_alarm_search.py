"""A timed hypothesis search for false alarms: correct torch programs that a checker fails.

`python -m benchmarks.false_alarm_search [--seconds 300 | --programs N] [--out DIR] [--seed 0]
[--native-float32]`

Each drawn program is a chain of one to five ops from `OPS` (over 60 torch ops:
elementwise, binary, axis, normalisation, loss, activation and linear-algebra ops) applied
to a matrix input `offset + scale * N(0, 1)`, with `scale` log-uniform in [1e-4, 1e2] and
`offset` zero or uniform in [-50, 50], in float64 or float32, its output reduced or not.
Every program is plain autograd, so its gradient is right and any failure is a false
alarm. gradcheck_kit runs on every program; torch.autograd.gradcheck (its defaults,
fast mode) beside it on the same program and inputs, as the anchor.

Writes `false_alarm_search.json` (every false alarm with its program, seed and report;
the counts) and prints a summary. Programs that do not run at their input (an op left a
shape too small for the next), are not finite there, or which a checker refuses, are
counted apart: they say nothing about false alarms.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

import gradcheck_kit

__all__ = ["OPS", "Program", "native", "programs", "search"]


def _spd(a: torch.Tensor) -> torch.Tensor:
    """A well-conditioned symmetric positive definite matrix built from `a` (square)."""
    n = min(a.shape[-2:])
    s = a[..., :n, :n]
    return s @ s.transpose(-1, -2) / n + torch.eye(n, dtype=a.dtype)


def _square(a: torch.Tensor) -> torch.Tensor:
    n = min(a.shape[-2:])
    return a[..., :n, :n]


def _kernel(a: torch.Tensor) -> torch.Tensor:
    """A fixed (channels, channels, 3) convolution kernel for `a` of shape (channels, n)."""
    c = a.shape[0]
    return torch.linspace(-1.0, 1.0, 3 * c * c, dtype=a.dtype).reshape(c, c, 3)


def _bounded(a: torch.Tensor) -> torch.Tensor:
    """A map to (-1, 1) that keeps small inputs as they are: for ops with a bounded domain."""
    return torch.tanh(a)


# Each op maps a 2-d tensor to a tensor (any shape); all are smooth where drawn inputs
# land with probability one, except those marked kinked, which the check must handle.
OPS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sin": torch.sin,
    "cos": torch.cos,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "exp_tanh": lambda a: torch.exp(torch.tanh(a)),
    "softplus": F.softplus,
    "gelu": F.gelu,
    "gelu_tanh": lambda a: F.gelu(a, approximate="tanh"),
    "silu": F.silu,
    "mish": F.mish,
    "elu": F.elu,
    "celu": F.celu,
    "selu": F.selu,
    "atan": torch.atan,
    "asinh": torch.asinh,
    "erf": torch.erf,
    "softsign": F.softsign,
    "logsigmoid": F.logsigmoid,
    "tanhshrink": F.tanhshrink,
    "log1p_sq": lambda a: torch.log1p(a * a),
    "log_1p_sq": lambda a: torch.log(1 + a * a),
    "one_minus_cos": lambda a: 1 - torch.cos(a),
    "sqrt_1p_sq": lambda a: torch.sqrt(1 + a * a),
    "rsqrt_1p_sq": lambda a: torch.rsqrt(1 + a * a),
    "reciprocal": lambda a: torch.reciprocal(1 + a * a),
    "lgamma": lambda a: torch.lgamma(1 + a * a),
    "digamma": lambda a: torch.digamma(1 + a * a),
    "expm1_tanh": lambda a: torch.expm1(torch.tanh(a)),
    "asin": lambda a: torch.asin(0.9 * _bounded(a)),
    "atanh": lambda a: torch.atanh(0.9 * _bounded(a)),
    "square": torch.square,
    "cube": lambda a: a**3,
    "pow_abs": lambda a: (a.abs() + 1) ** 1.5,
    "scale_shift": lambda a: 3.0 * a - 2.0,
    "mul_self_t": lambda a: a * a.flip(-1),
    "div": lambda a: a / (1 + a.flip(0) ** 2),
    "atan2": lambda a: torch.atan2(a, 1 + a.flip(0) ** 2),
    "hypot": lambda a: torch.hypot(a, torch.ones_like(a)),
    "logaddexp": lambda a: torch.logaddexp(a, a.flip(-1)),
    "softmax": lambda a: torch.softmax(a, -1),
    "log_softmax": lambda a: torch.log_softmax(a, -1),
    "softmin": lambda a: F.softmin(a, 0),
    "logsumexp": lambda a: torch.logsumexp(a, -1),
    "logcumsumexp": lambda a: torch.logcumsumexp(a, 0),
    "cumsum": lambda a: torch.cumsum(a, -1),
    "cumprod_tanh": lambda a: torch.cumprod(torch.tanh(a), 0),
    "centre": lambda a: a - a.mean(0),
    "std": lambda a: a.std(-1),
    "var": lambda a: a.var(0),
    "normalize": lambda a: F.normalize(a, dim=-1),
    "layer_norm": lambda a: F.layer_norm(a, a.shape[-1:]),
    "rms_norm": lambda a: F.rms_norm(a, a.shape[-1:]),
    "batch_norm_train": lambda a: F.batch_norm(a, None, None, training=True),
    "group_norm": lambda a: F.group_norm(a.unsqueeze(0), 1),
    "cosine_similarity": lambda a: F.cosine_similarity(a, a.flip(0) + 1.0, dim=-1),
    "pairwise_distance": lambda a: F.pairwise_distance(a, a.flip(0) + 1.0),
    "mse_to_flip": lambda a: F.mse_loss(a, a.flip(0)),
    "cross_entropy": lambda a: F.cross_entropy(a, torch.arange(a.shape[0]) % a.shape[1]),
    "kl_div": lambda a: F.kl_div(torch.log_softmax(a, -1), torch.softmax(a.flip(0), -1),
                                 reduction="batchmean"),
    "glu": lambda a: F.glu(torch.cat([a, a.flip(-1)], -1), -1),
    "matmul_t": lambda a: a @ a.transpose(-1, -2),
    "matmul_scaled": lambda a: (a @ a.transpose(-1, -2)) / a.shape[-1],
    "outer_sum": lambda a: a.sum(0, keepdim=True) * a,
    "det_spd": lambda a: torch.linalg.det(_spd(a)).reshape(1, 1),
    "logdet_spd": lambda a: torch.logdet(_spd(a)).reshape(1, 1),
    "inv_spd": lambda a: torch.linalg.inv(_spd(a)),
    "solve_spd": lambda a: torch.linalg.solve(_spd(a), a[: min(a.shape)]),
    "cholesky": lambda a: torch.linalg.cholesky(_spd(a)),
    "eigvalsh": lambda a: torch.linalg.eigvalsh(_spd(a)).reshape(1, -1),
    "svdvals": lambda a: torch.linalg.svdvals(a).reshape(1, -1),
    "pinv": lambda a: torch.linalg.pinv(a),
    "matrix_exp": lambda a: torch.linalg.matrix_exp(_square(a) / (1 + _square(a).abs().sum())),
    "frobenius": lambda a: torch.linalg.norm(a).reshape(1, 1),
    "trace_sq": lambda a: torch.trace(_square(a) @ _square(a)).reshape(1, 1),
    "conv1d": lambda a: F.conv1d(a.unsqueeze(0), _kernel(a), padding=1).squeeze(0),
    "avg_pool": lambda a: F.avg_pool1d(a.unsqueeze(0), 2, 1).squeeze(0),
    "interpolate": lambda a: F.interpolate(a.unsqueeze(0), scale_factor=2.0,
                                           mode="linear").squeeze(0),
    "relu": torch.relu,
    "abs": torch.abs,
    "leaky_relu": F.leaky_relu,
    "hardtanh": F.hardtanh,
    "smooth_l1": lambda a: F.smooth_l1_loss(a, torch.zeros_like(a), reduction="none"),
    "maximum": lambda a: torch.maximum(a, a.flip(0)),
    "max_pool": lambda a: F.max_pool1d(a.unsqueeze(0), 2, 1).squeeze(0),
}
KINKED = frozenset({"relu", "abs", "leaky_relu", "hardtanh", "smooth_l1", "maximum", "max_pool",
                    "pow_abs"})


@dataclass(frozen=True)
class Program:
    ops: tuple[str, ...]
    shape: tuple[int, int]
    scale: float
    offset: float
    dtype: str
    reduce: bool
    seed: int

    def __str__(self) -> str:
        chain = " -> ".join(self.ops) + (" -> sum" if self.reduce else "")
        return (f"x = {self.offset:+.3g} + {self.scale:.3g} * randn{self.shape} ({self.dtype}, "
                f"seed {self.seed}): {chain}")

    def function(self) -> Callable[[torch.Tensor], torch.Tensor]:
        def fn(x: torch.Tensor) -> torch.Tensor:
            y = x
            for name in self.ops:
                y = OPS[name](y if y.dim() == 2 else y.reshape(1, -1))
            return y.sum() if self.reduce else y

        return fn

    def inputs(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        dtype = getattr(torch, self.dtype)
        x = self.offset + self.scale * torch.randn(self.shape, dtype=torch.float64, generator=g)
        return x.to(dtype).requires_grad_()


@st.composite
def programs(draw: Any) -> Program:
    return Program(
        ops=tuple(draw(st.lists(st.sampled_from(sorted(OPS)), min_size=1, max_size=5))),
        shape=(draw(st.integers(2, 6)), draw(st.integers(2, 6))),
        scale=10.0 ** draw(st.floats(-4.0, 2.0)),
        offset=draw(st.one_of(st.just(0.0), st.floats(-50.0, 50.0))),
        dtype=draw(st.sampled_from(["float64", "float32"])),
        reduce=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def _torch_verdict(fn: Callable[..., Any], x: torch.Tensor) -> str:
    try:
        ok = torch.autograd.gradcheck(fn, (x,), fast_mode=True, raise_exception=False)
    except Exception:  # noqa: BLE001 - a refusal, e.g. an op without a float32 path
        return "refused"
    return "passed" if ok else "failed"


class _TimeUp(Exception):
    """Ends the search: hypothesis re-raises it at once (no shrinking phase runs)."""


def native(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """`fn` behind a float32 identity matmul, exact for float32 inputs and refused for
    float64 ones: the program cannot be promoted, and is checked with float32 finite
    differences (as a function holding a captured float32 tensor is)."""

    def fn_native(x: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(x.shape[-1], dtype=torch.float32, device=x.device)
        return fn(x @ eye)

    return fn_native


def search(
    seconds: float, seed: int = 0, programs_limit: int | None = None, *, native_float32: bool = False
) -> dict[str, Any]:
    """Draw and check programs for `seconds`; return the counts and the false alarms.

    Each check runs once per drawn program; with one seed the sequence of programs is
    fixed, so a longer run checks a superset of a shorter one's programs. With
    `native_float32` the float32 programs run behind `native` (counted as "float32
    native"), the float64 ones as they are."""
    found: list[dict[str, Any]] = []
    counts: dict[str, dict[str, int]] = {}
    stop = time.monotonic() + seconds

    # Seeded: two runs of equal length draw the same programs, so runs before and after a
    # change compare verdicts on the same cases.
    @hypothesis_seed(seed)
    @settings(database=None, deadline=None, max_examples=programs_limit or 10**7,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(programs())
    def one(program: Program) -> None:
        if time.monotonic() > stop:
            raise _TimeUp
        fn, x = program.function(), program.inputs()
        dtype = program.dtype
        if native_float32 and dtype == "float32":
            fn, dtype = native(fn), "float32 native"
        tally = counts.setdefault(dtype, {})
        try:
            with torch.no_grad():
                y = fn(x.detach())
        except (RuntimeError, ValueError, IndexError):  # a shape too small for an op
            tally["invalid"] = tally.get("invalid", 0) + 1
            return
        if not bool(torch.isfinite(y).all()):
            tally["not finite"] = tally.get("not finite", 0) + 1
            return
        kinked = any(op in KINKED for op in program.ops)
        try:
            report = gradcheck_kit.gradcheck(fn, x, seed=seed, raise_exception=False)
            kit = report.status
        except gradcheck_kit.CheckInputError as exc:
            kit, report = "refused", exc
        except Exception as exc:  # noqa: BLE001 - a crash of the checker is a finding too
            kit, report = "crashed", repr(exc)
        anchor = _torch_verdict(fn, x) if program.dtype == "float64" else "not run"
        key = f"kit {kit}" + (" (kinked)" if kinked else "")
        tally[key] = tally.get(key, 0) + 1
        tally["programs"] = tally.get("programs", 0) + 1
        if anchor != "not run":
            tally[f"torch {anchor}"] = tally.get(f"torch {anchor}", 0) + 1
        if kit != "passed":
            found.append({"program": str(program), "ops": list(program.ops), "kit": kit,
                          "torch": anchor, "kinked": kinked, "report": str(report)})

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        try:
            one()
        except _TimeUp:
            pass
    return {"seconds": seconds, "programs_limit": programs_limit, "counts": counts,
            "not_passed": found}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.false_alarm_search",
                                description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=300.0, help="how long to search")
    p.add_argument("--programs", type=int, default=None,
                   help="stop after this many drawn programs (the same ones for one seed)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the drawn programs and the checks' probes")
    p.add_argument("--native-float32", action="store_true",
                   help="float32 programs behind an exact float32 matmul that blocks promotion")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    result = search(args.seconds if args.programs is None else math.inf, args.seed,
                    args.programs, native_float32=args.native_float32)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "false_alarm_search.json").write_text(json.dumps(result, indent=1))
    for dtype, tally in sorted(result["counts"].items()):
        print(dtype, json.dumps(dict(sorted(tally.items()))))
    for item in result["not_passed"][:40]:
        print(f"- kit {item['kit']}, torch {item['torch']}: {item['program']}")
        lines = [l for l in item["report"].splitlines() if "[FAIL]" in l or "inconclusive:" in l]
        for line in lines[:2]:
            print("    " + line.strip()[:300])


if __name__ == "__main__":
    main()
