"""Low-precision kernel benchmark for `gradcheck_kit.compare`.

Pure-PyTorch "kernels" written as custom autograd Functions with hand-written backward
passes, computing internally in float32 as fused kernels do, each in a correct version,
with formula bugs and with precision bugs, in bfloat16, float16 and float32. Every case is
judged by `compare` and by the anchors used in practice:

- `torch.autograd.gradcheck` on the candidate, default and tuned (`eps=1e-2, atol=rtol=1e-1`),
  both with `fast_mode=True` (the full Jacobian of these inputs would take minutes a case);
- FlashAttention's rule: max |candidate - golden| <= 2 max |reference_dtype - golden| + 1e-5
  per output and gradient;
- Liger-Kernel's style: `torch.allclose(candidate, reference_dtype, atol, rtol)` with the
  tolerances of its RMSNorm test (float32 atol 1e-4 rtol 1e-6; bfloat16 atol 0.2 rtol 0.02,
  also used for float16).

`gradcheck_kit.gradcheck` also runs on the candidate alone, with its low-precision inputs, as a
user would call it on their kernel (no reference): its status (passed, failed, inconclusive),
its `power` and what it promoted to float64 or demoted to the precision computed inside are
recorded. On these kernels, which compute in float32 whatever their inputs, it should never pass
a formula bug (failing or saying inconclusive) and never fail a correct one.

Precision bugs: `bf16_accumulation` (a reduction accumulated sequentially in bfloat16
instead of float32) and `early_cast` (the float32 working copies of the inputs, and the
kernel's main intermediate, rounded to bfloat16:
applied where bfloat16 is narrower than the naive reference's own rounding, i.e. float16 and
float32 candidates, and RoPE's angles in every dtype since the reference keeps them in
float32 or wider).

Run: `python -m benchmarks.kernels [--out benchmarks/results/kernels.json] [--seeds 50]
[--gradcheck-seeds 2] [--kernels rmsnorm,rope] [--dtypes bfloat16] [--first-seed 50]`
(`--first-seed`: a held-out range of seeds, the tolerances having been set on 0-49).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

import gradcheck_kit

BF16 = torch.bfloat16
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
F32 = torch.float32


def seqsum(x: torch.Tensor, dim: int, keepdim: bool = False) -> torch.Tensor:
    """Sum along `dim` accumulated term by term in bfloat16 (the precision bug)."""
    x = x.movedim(dim, -1)
    acc = torch.zeros(x.shape[:-1], dtype=BF16)
    for k in range(x.shape[-1]):
        acc = (acc.float() + x[..., k].float()).to(BF16)
    out = acc.float()
    return out.unsqueeze(dim) if keepdim else out


def seqmatmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    acc = torch.zeros(a.shape[:-1] + b.shape[-1:], dtype=BF16)
    for k in range(a.shape[-1]):
        acc = (acc.float() + a[..., :, k : k + 1].float() * b[..., k : k + 1, :].float()).to(BF16)
    return acc.float()


class Ops:
    """Reductions and casts of one kernel variant."""

    def __init__(self, bug: str, dtype: torch.dtype) -> None:
        self.bug = bug
        self.dtype = dtype

    def sum(self, x, dim, keepdim=False):
        return seqsum(x, dim, keepdim) if self.bug == "bf16_accumulation" else x.sum(dim, keepdim=keepdim)

    def mean(self, x, dim, keepdim=False):
        return self.sum(x, dim, keepdim) / x.shape[dim]

    def mm(self, a, b):
        return seqmatmul(a, b) if self.bug == "bf16_accumulation" else a @ b

    def cast(self, x):
        return x.to(BF16).float() if self.bug == "early_cast" else x


def _f(*xs):
    return [x.float() for x in xs]


# ----------------------------------------------------------------------------- kernels
def make_rmsnorm(bug: str, dtype: torch.dtype):
    o = Ops(bug, dtype)

    class RMSNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, res, w):
            h, w32 = o.cast(x.float() + res.float()), w.float()
            rstd = o.cast(torch.rsqrt(o.mean(h * h, -1, True) + 1e-6))
            ctx.save_for_backward(x, res, w, rstd)
            return (h * rstd * w32).to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            x, res, w, rstd = ctx.saved_tensors
            h, g, w = o.cast(x.float() + res.float()), g.float(), w.float()
            if bug == "stale_statistic":  # statistic of x, saved before the residual was added
                rstd = torch.rsqrt((x.float() ** 2).mean(-1, keepdim=True) + 1e-6)
            xhat = h * rstd
            gw = g * w
            proj = o.mean(gw * xhat, -1, True)
            if bug == "sign":
                dh = rstd * (gw + xhat * proj)
            elif bug == "missing_term":
                dh = rstd * gw
            else:
                dh = rstd * (gw - xhat * proj)
            gx = g * xhat
            dw = gx[: gx.shape[0] // 2].sum(0) if bug == "weight_not_summed" else o.sum(gx, 0)
            return dh.to(x.dtype), dh.to(res.dtype), dw.to(w.dtype if False else ctx.saved_tensors[2].dtype)

    def reference(x, res, w):
        h = x + res
        return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6) * w

    def inputs(gen, dt):
        return (torch.randn(4, 512, generator=gen), torch.randn(4, 512, generator=gen), 1 + 0.1 * torch.randn(512, generator=gen))

    return RMSNorm.apply, reference, inputs


def make_layernorm(bug: str, dtype: torch.dtype):
    o = Ops(bug, dtype)

    class LayerNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, b):
            x32 = o.cast(x.float())
            mu = o.mean(x32, -1, True)
            d = x32 - mu
            rstd = torch.rsqrt(o.mean(d * d, -1, True) + 1e-5)
            xhat = o.cast(d * rstd)
            ctx.save_for_backward(xhat, rstd, w)
            ctx.dt = (x.dtype, b.dtype)
            return (xhat * w.float() + b.float()).to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            xhat, rstd, w = ctx.saved_tensors
            g = g.float()
            gx = g * w.float()
            n = gx.shape[-1]
            m1 = o.sum(gx, -1, True) / n
            # factor: the 2 of d(var)/dx = 2 (x - mu) / n applied on top of the derivation
            m2 = o.sum(gx * xhat, -1, True) / n * (2 if bug == "factor" else 1)
            dx = rstd * (gx - xhat * m2) if bug == "missing_term" else rstd * (gx - m1 - xhat * m2)
            dw = o.sum(g * xhat, 0)
            db = g[: g.shape[0] // 2].sum(0) if bug == "weight_not_summed" else o.sum(g, 0)
            return dx.to(ctx.dt[0]), dw.to(w.dtype), db.to(ctx.dt[1])

    def reference(x, w, b):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) * torch.rsqrt(var + 1e-5) * w + b

    def inputs(gen, dt):
        return (torch.randn(4, 512, generator=gen) + 1.0, 1 + 0.1 * torch.randn(512, generator=gen), 0.1 * torch.randn(512, generator=gen))

    return LayerNorm.apply, reference, inputs


def make_swiglu(bug: str, dtype: torch.dtype):
    o = Ops(bug, dtype)

    class SwiGLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            a32, b32 = (o.cast(t) for t in _f(a, b))
            return (a32 * o.cast(torch.sigmoid(a32)) * b32).to(a.dtype)

        @staticmethod
        def backward(ctx, g):
            a, b = ctx.saved_tensors
            a32, b32, g = (o.cast(t) for t in _f(a, b, g))
            s = o.cast(torch.sigmoid(a32))
            if bug == "sign":
                da = g * b32 * s * (1 - a32 * (1 - s))
            elif bug == "missing_term":
                da = g * b32 * s
            else:
                da = g * b32 * s * (1 + a32 * (1 - s))
            return da.to(a.dtype), (g * a32 * s).to(b.dtype)

    def reference(a, b):
        return a * torch.sigmoid(a) * b

    def inputs(gen, dt):
        return (2 * torch.randn(8, 64, generator=gen), torch.randn(8, 64, generator=gen))

    return SwiGLU.apply, reference, inputs


_K = math.sqrt(2 / math.pi)


def _gelu32(z, o):
    t = o.cast(torch.tanh(_K * (z + 0.044715 * z**3)))
    return 0.5 * z * (1 + t), t


def _gelu_grad(z, t, bug):
    c = 0.044715 if bug == "factor" else 3 * 0.044715
    inner = 0.5 * z * (1 - t * t) * _K * (1 + c * z * z)
    return 0.5 * (1 + t) if bug == "missing_term" else 0.5 * (1 + t) + inner


def make_gelu(bug: str, dtype: torch.dtype):
    o = Ops(bug, dtype)

    class GELU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return _gelu32(o.cast(x.float()), o)[0].to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            z = o.cast(x.float())
            _, t = _gelu32(z, o)
            return (g.float() * _gelu_grad(z, t, bug)).to(x.dtype)

    def reference(x):
        return 0.5 * x * (1 + torch.tanh(_K * (x + 0.044715 * x.pow(3))))

    def inputs(gen, dt):
        return (2 * torch.randn(8, 64, generator=gen),)

    return GELU.apply, reference, inputs


def make_cross_entropy(bug: str, dtype: torch.dtype):
    o = Ops(bug, dtype)

    class CrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, logits, target):
            z = o.cast(logits.float())
            m = z.max(-1, keepdim=True).values
            lse = o.cast(m + torch.log(o.sum(torch.exp(z - m), -1, True)))
            ctx.save_for_backward(logits, target, lse)
            loss = (lse.squeeze(-1) - z.gather(-1, target[:, None]).squeeze(-1)).mean()
            return loss.to(logits.dtype)

        @staticmethod
        def backward(ctx, g):
            logits, target, lse = ctx.saved_tensors
            p = torch.exp(logits.float() - lse)
            onehot = torch.nn.functional.one_hot(target, logits.shape[-1]).float()
            if bug == "missing_term":
                d = p
            elif bug == "sign":
                d = onehot - p
            else:
                d = p - onehot
            n = 1 if bug == "factor" else logits.shape[0]
            return (g.float() * d / n).to(logits.dtype), None

    def reference(logits, target):
        return (logits.logsumexp(-1) - logits.gather(-1, target[:, None]).squeeze(-1)).mean()

    def inputs(gen, dt):
        return (3 * torch.randn(4, 1024, generator=gen), torch.randint(0, 1024, (4,), generator=gen))

    return CrossEntropy.apply, reference, inputs


def make_attention(bug: str, dtype: torch.dtype):
    o = Ops(bug, dtype)

    def scores(q, k, scale, masked=True):
        s = o.mm(q, k.transpose(-1, -2)) * scale
        if masked:
            t = s.shape[-1]
            s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), -math.inf)
        return s

    class Attention(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v):
            q32, k32, v32 = (o.cast(t) for t in _f(q, k, v))
            scale = q.shape[-1] ** -0.5
            s = scores(q32, k32, scale)
            lse = torch.logsumexp(s, -1, keepdim=True)
            p = o.cast(torch.exp(s - lse))
            out = o.mm(p, v32)
            ctx.save_for_backward(q, k, v, out, lse)
            return out.to(q.dtype)

        @staticmethod
        def backward(ctx, g):
            q, k, v, out, lse = ctx.saved_tensors
            q32, k32, v32, g = (o.cast(t) for t in _f(q, k, v, g))
            scale = q.shape[-1] ** -0.5
            if bug == "stale_statistic":  # lse of the unscaled scores
                lse = torch.logsumexp(scores(q32, k32, 1.0), -1, keepdim=True)
            p = o.cast(torch.exp(scores(q32, k32, scale, masked=bug != "mask_leak") - lse))
            dv = o.mm(p.transpose(-1, -2), g)
            dp = o.mm(g, v32.transpose(-1, -2))
            ds = p * (dp - (g * out).sum(-1, keepdim=True))
            dq = o.mm(ds, k32) * (1.0 if bug == "factor" else scale)
            dk = o.mm(ds.transpose(-1, -2), q32) * scale
            return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)

    def reference(q, k, v):
        s = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
        t = s.shape[-1]
        s = s.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), -math.inf)
        return torch.softmax(s, -1) @ v

    def inputs(gen, dt):
        return tuple(torch.randn(2, 128, 16, generator=gen) for _ in range(3))

    return Attention.apply, reference, inputs


def _rope_angles(t: int, d: int, dtype: torch.dtype) -> torch.Tensor:
    pos = torch.arange(1000, 1000 + t, dtype=dtype)
    inv = 10000.0 ** (-torch.arange(0, d, 2, dtype=dtype) / d)
    return pos[:, None] * inv[None, :]


def make_rope(bug: str, dtype: torch.dtype):
    class RoPE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ang = _rope_angles(x.shape[0], x.shape[1], BF16 if bug == "early_cast" else F32).float()
            c, s = torch.cos(ang), torch.sin(ang)
            ctx.save_for_backward(c, s)
            ctx.dt = x.dtype
            x1, x2 = x.float().chunk(2, -1)
            return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], -1).to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            c, s = ctx.saved_tensors
            g1, g2 = g.float().chunk(2, -1)
            if bug == "sign":  # the forward rotation instead of its transpose
                d1, d2 = g1 * c - g2 * s, g1 * s + g2 * c
            elif bug == "missing_term":
                d1, d2 = g1 * c + g2 * s, g2 * c
            else:
                d1, d2 = g1 * c + g2 * s, -g1 * s + g2 * c
            return torch.cat([d1, d2], -1).to(ctx.dt)

    def reference(x):
        ang = _rope_angles(x.shape[0], x.shape[1], torch.promote_types(x.dtype, F32))
        c, s = torch.cos(ang).to(x.dtype), torch.sin(ang).to(x.dtype)
        x1, x2 = x.chunk(2, -1)
        return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], -1)

    def inputs(gen, dt):
        return (torch.randn(16, 32, generator=gen),)

    return RoPE.apply, reference, inputs


def make_linear_gelu(bug: str, dtype: torch.dtype):
    o = Ops(bug, dtype)

    class LinearGELU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, w, b):
            ctx.save_for_backward(x, w, b)
            z = o.cast(o.mm(o.cast(x.float()), o.cast(w.float()).t()) + b.float())
            return _gelu32(z, Ops("", dtype))[0].to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            x, w, b = ctx.saved_tensors
            x32, w32, g = (o.cast(t) for t in _f(x, w, g))
            z = o.cast(o.mm(x32, w32.t()) + b.float())
            _, t = _gelu32(z, Ops("", dtype))
            dz = g * _gelu_grad(z, t, "missing_term" if bug == "missing_term" else "")
            dx = o.mm(dz, w32)
            if bug == "weight_not_summed":
                dw = dz[: dz.shape[0] // 2].t() @ x32[: dz.shape[0] // 2]
            else:
                dw = o.mm(dz.t(), x32)
            return dx.to(x.dtype), dw.to(w.dtype), o.sum(dz, 0).to(b.dtype)

    def reference(x, w, b):
        z = x @ w.t() + b
        return 0.5 * z * (1 + torch.tanh(_K * (z + 0.044715 * z.pow(3))))

    def inputs(gen, dt):
        return (torch.randn(32, 256, generator=gen), torch.randn(16, 256, generator=gen) / 16, 0.1 * torch.randn(16, generator=gen))

    return LinearGELU.apply, reference, inputs


# kernel -> (factory, formula bugs, precision bugs)
KERNELS: dict[str, tuple[Callable[..., Any], tuple[str, ...], tuple[str, ...]]] = {
    "rmsnorm": (make_rmsnorm, ("sign", "missing_term", "stale_statistic", "weight_not_summed"), ("bf16_accumulation", "early_cast")),
    "layernorm": (make_layernorm, ("missing_term", "factor", "weight_not_summed"), ("bf16_accumulation", "early_cast")),
    "swiglu": (make_swiglu, ("sign", "missing_term"), ("early_cast",)),
    "gelu_tanh": (make_gelu, ("factor", "missing_term"), ("early_cast",)),
    "cross_entropy": (make_cross_entropy, ("sign", "missing_term", "factor"), ("bf16_accumulation", "early_cast")),
    "attention": (make_attention, ("mask_leak", "stale_statistic", "factor"), ("bf16_accumulation", "early_cast")),
    "rope": (make_rope, ("sign", "missing_term"), ("early_cast",)),
    "linear_gelu": (make_linear_gelu, ("weight_not_summed", "missing_term"), ("bf16_accumulation", "early_cast")),
}


def applies(kernel: str, bug: str, dtype: str) -> bool:
    """`early_cast` rounds to bfloat16, a loss only where the naive reference keeps more."""
    return not (bug == "early_cast" and dtype == "bfloat16" and kernel != "rope")


def make_case(kernel: str, bug: str, dtype: str, seed: int):
    factory = KERNELS[kernel][0]
    fn, reference, inputs = factory(bug, DTYPES[dtype])
    gen = torch.Generator().manual_seed(1000 + seed)
    args = tuple(
        x.to(DTYPES[dtype]).requires_grad_() if x.is_floating_point() else x for x in inputs(gen, DTYPES[dtype])
    )
    return fn, reference, args


# ----------------------------------------------------------------------------- checkers
LIGER = {"float32": (1e-4, 1e-6), "bfloat16": (2e-1, 2e-2), "float16": (2e-1, 2e-2)}


def _quantities(fn, reference, args, seed):
    """Candidate, same-dtype reference and golden outputs and gradients (shared cotangents)."""
    gen = torch.Generator().manual_seed(seed)

    def run(f, dt):
        xs = [x.detach().to(dt if dt else x.dtype).requires_grad_() if x.is_floating_point() else x for x in args]
        out = f(*xs)
        return out, xs

    oc, xc = run(fn, None)
    cot = torch.randn(oc.shape, generator=gen, dtype=torch.float64).to(oc.dtype)
    result = []
    for f, dt in ((fn, None), (reference, None), (reference, torch.float64)):
        out, xs = run(f, dt)
        diff = [x for x in xs if isinstance(x, torch.Tensor) and x.requires_grad]
        grads = torch.autograd.grad(out, diff, cot.to(out.dtype))
        result.append([out.detach().double()] + [g.double() for g in grads])
    return result


def flash_rule(fn, reference, args, seed) -> bool:
    c, r, g = _quantities(fn, reference, args, seed)
    return all((a - z).abs().max() <= 2 * (b - z).abs().max() + 1e-5 for a, b, z in zip(c, r, g))


def liger_rule(fn, reference, args, seed, dtype) -> bool:
    atol, rtol = LIGER[dtype]
    c, r, _ = _quantities(fn, reference, args, seed)
    return all(torch.allclose(a, b, atol=atol, rtol=rtol) for a, b in zip(c, r))


def torch_gradcheck(fn, args, tuned: bool) -> bool:
    # fast_mode: the full Jacobian of these inputs (thousands of elements) costs minutes per case
    kw = dict(eps=1e-2, atol=1e-1, rtol=1e-1, fast_mode=True) if tuned else dict(fast_mode=True)
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(torch.autograd.gradcheck(fn, args, raise_exception=False, **kw))
    except Exception:
        return False


def compare_rule(fn, reference, args, seed) -> tuple[bool, dict[str, Any]]:
    rep = gradcheck_kit.compare(fn, reference, args, seed=seed, raise_exception=False)
    ratio = max((float(n.split(": ")[1].split(" ")[0]) for n in rep.notes if n.startswith("largest error ratio")), default=0.0)
    return bool(rep), {"kind": rep.kind, "ratio": ratio, "reference_ok": rep.reference_ok}


def gradcheck_rule(fn, args) -> dict[str, Any]:
    """`gradcheck_kit.gradcheck` on the candidate alone, called as a user calls it on a kernel."""
    try:
        rep = gradcheck_kit.gradcheck(fn, args, raise_exception=False)
    except Exception as exc:  # a check that cannot run is a finding, not a crash of the benchmark
        return {"gradcheck": "error", "gradcheck_error": f"{type(exc).__name__}: {exc}"}
    # The kernels compute in float32 whatever their inputs: the report says, in a note, that
    # promotion to float64 was undone ("lower precision inside") and in which dtype it ran.
    demoted = [n for n in rep.notes if "lower precision inside" in n]
    return {"gradcheck": rep.status, "gradcheck_power": rep.power, "gradcheck_promoted": rep.promoted,
            "gradcheck_promoted_objects": list(rep.promoted_objects),
            "gradcheck_demoted": demoted[0] if demoted else None,
            # which comparisons decided a failure: a NaN or an overflow reads differently from a catch
            "gradcheck_failures": [f"{c.check}: {c.input}: margin {c.margin:.3g}" for c in rep.comparisons
                                   if c.status == "failed"] + list(rep.errors)}


# ----------------------------------------------------------------------------- run
def run(seeds: int, bug_seeds: int, anchor_seeds: int, gradcheck_seeds: int = 2,
        kernels: list[str] | None = None, dtypes: list[str] | None = None,
        first_seed: int = 0) -> dict[str, Any]:
    """Rows of every case; `kernels` and `dtypes` (default: all) select a part for quick runs,
    `first_seed` a held-out range of seeds (`first_seed` onwards)."""
    rows = []
    for kernel, (_, formula, precision) in KERNELS.items():
        if kernels is not None and kernel not in kernels:
            continue
        for dtype in DTYPES if dtypes is None else [d for d in DTYPES if d in dtypes]:
            for bug in ("correct",) + formula + precision:
                if not applies(kernel, bug, dtype):
                    continue
                klass = "correct" if bug == "correct" else ("formula" if bug in formula else "precision")
                n = seeds if bug == "correct" else bug_seeds
                for seed in range(first_seed, first_seed + n):
                    fn, reference, args = make_case(kernel, bug, dtype, seed)
                    ok, info = compare_rule(fn, reference, args, seed)
                    row = {"kernel": kernel, "dtype": dtype, "bug": bug, "class": klass, "seed": seed,
                           "compare": ok, **info}
                    if seed - first_seed < anchor_seeds:
                        row["flash_rule"] = bool(flash_rule(fn, reference, args, seed))
                        row["liger_rule"] = bool(liger_rule(fn, reference, args, seed, dtype))
                        row["torch_default"] = torch_gradcheck(fn, args, tuned=False)
                        row["torch_tuned"] = torch_gradcheck(fn, args, tuned=True)
                    if seed - first_seed < gradcheck_seeds:
                        row.update(gradcheck_rule(fn, args))
                    rows.append(row)
    return {"rows": rows}


CHECKERS = ("compare", "flash_rule", "liger_rule", "torch_default", "torch_tuned")
GRADCHECK_STATUSES = ("failed", "inconclusive", "passed", "error")


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ch in CHECKERS:
        stats = {}
        for klass in ("formula", "precision", "correct"):
            rs = [r for r in rows if r["class"] == klass and ch in r]
            flagged = sum(not r[ch] for r in rs)
            stats[klass] = {"flagged": flagged, "of": len(rs)}
        out[ch] = stats
    out["gradcheck"] = {}
    for klass in ("formula", "precision", "correct"):
        statuses = [r["gradcheck"] for r in rows if r["class"] == klass and "gradcheck" in r]
        out["gradcheck"][klass] = {st: statuses.count(st) for st in GRADCHECK_STATUSES} | {"of": len(statuses)}
    ratios = sorted(r["ratio"] for r in rows if r["class"] == "correct")
    out["correct_ratio_max"] = ratios[-1] if ratios else None
    out["correct_ratio_p99"] = ratios[int(0.99 * (len(ratios) - 1))] if ratios else None
    prec = [r for r in rows if r["class"] == "precision" and not r["compare"]]
    out["precision_labels"] = {k: sum(r["kind"] == k for r in prec) for k in ("less accurate", "mismatch")}
    return out


def table(summary: dict[str, Any]) -> str:
    lines = [f"{'checker':<15}{'formula bugs':>16}{'precision bugs':>18}{'false alarms':>16}"]
    for ch in CHECKERS:
        s = summary[ch]
        cell = lambda k: f"{s[k]['flagged']}/{s[k]['of']}"  # noqa: E731
        lines.append(f"{ch:<15}{cell('formula'):>16}{cell('precision'):>18}{cell('correct'):>16}")
    g = summary["gradcheck"]
    # The error count only where a check could not run: otherwise the three statuses.
    shown = [st for st in GRADCHECK_STATUSES if st != "error" or any(c["error"] for c in g.values())]
    lines.append(f"gradcheck ({'/'.join(shown)}):")
    for klass, label in (("formula", "formula bugs"), ("precision", "precision bugs"), ("correct", "correct")):
        lines.append(f"  {label:<16}{'/'.join(str(g[klass][st]) for st in shown)} of {g[klass]['of']}")
    return "\n".join(lines)


def _names(known: dict[str, Any]) -> Callable[[str], list[str]]:
    """Parser of a comma-separated list of names of `known`, for argparse's `type=`."""

    def parse(text: str) -> list[str]:
        names = [n for n in text.split(",") if n]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {unknown}; known: {', '.join(known)}")
        return names

    return parse


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results/kernels.json")
    p.add_argument("--seeds", type=int, default=50, help="seeds per correct kernel and dtype")
    p.add_argument("--bug-seeds", type=int, default=5)
    p.add_argument("--anchor-seeds", type=int, default=2, help="seeds on which the anchors also run")
    p.add_argument("--gradcheck-seeds", type=int, default=2, help="seeds on which gradcheck_kit.gradcheck runs")
    p.add_argument("--first-seed", type=int, default=0, help="first seed (a held-out range: e.g. 50)")
    p.add_argument("--kernels", type=_names(KERNELS), default=None, help="comma-separated kernels (default: all)")
    p.add_argument("--dtypes", type=_names(DTYPES), default=None, help="comma-separated dtypes (default: all)")
    a = p.parse_args(argv)
    t0 = time.time()
    result = run(a.seeds, a.bug_seeds, a.anchor_seeds, a.gradcheck_seeds, a.kernels, a.dtypes, a.first_seed)
    result["summary"] = summarise(result["rows"])
    result["settings"] = {"seeds": a.seeds, "bug_seeds": a.bug_seeds, "anchor_seeds": a.anchor_seeds,
                          "gradcheck_seeds": a.gradcheck_seeds, "kernels": a.kernels, "dtypes": a.dtypes,
                          "first_seed": a.first_seed,
                          "factor": gradcheck_kit._reference.FACTOR, "floor_ulps": gradcheck_kit._reference.FLOOR_ULPS,
                          "torch": torch.__version__, "elapsed_s": round(time.time() - t0, 1)}
    print(table(result["summary"]))
    s = result["summary"]
    print(f"correct kernels: largest normwise error ratio {s['correct_ratio_max']:.3g}, p99 {s['correct_ratio_p99']:.3g}")
    missed = [(r["kernel"], r["dtype"], r["bug"], r["seed"]) for r in result["rows"] if r["class"] != "correct" and r["compare"]]
    alarms = [(r["kernel"], r["dtype"], r["seed"], r["ratio"]) for r in result["rows"] if r["class"] == "correct" and not r["compare"]]
    print(f"compare missed: {missed}\ncompare false alarms: {alarms}")
    rows = result["rows"]
    gc_passed = [(r["kernel"], r["dtype"], r["bug"], r["seed"]) for r in rows
                 if r["class"] == "formula" and r.get("gradcheck") == "passed"]
    gc_alarms = [(r["kernel"], r["dtype"], r["seed"]) for r in rows if r["class"] == "correct" and r.get("gradcheck") == "failed"]
    print(f"gradcheck passed formula bugs: {gc_passed}\ngradcheck false alarms: {gc_alarms}")
    print(f"elapsed {time.time() - t0:.0f} s")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
