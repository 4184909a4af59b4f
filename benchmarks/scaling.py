"""Scaling: time and memory of one check against input size, next to torch fast mode.

`python -m benchmarks.scaling [--sizes 1e3 1e4 ...] [--out DIR]` (or
`python -m benchmarks.run --suite scaling`) writes `scaling.json` and `scaling.md`.

Method, for each function, dtype and size:
- **time**: in one subprocess, one warm-up check of each checker, then `--repeats` rounds
  that alternate gradcheck_kit and `torch.autograd.gradcheck(fast_mode=True)`; the median
  of each is reported with their ratio. One torch thread. Alternating in the same process
  keeps the ratio meaningful on a busy machine, where absolute times are not.
- **peak memory**: a fresh subprocess per checker: build the inputs, run one warm-up check
  at a tiny size (so that code and caches are loaded), read the process high-water mark
  (`ru_maxrss`), run the check at the measured size, read it again. The difference is the
  peak above baseline; divided by the bytes of the checked inputs it is the number of
  input-sized arrays alive at the peak.
- **first check**: a fresh subprocess per checker times its first call on a small input
  (imports of gradcheck_kit and torch done before, so this is the checker's one-off cost).

torch fast mode needs float64 inputs to be meaningful; for float32 it is given the inputs
cast to float64 (as its documentation asks), the kit the float32 inputs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

FUNCTIONS = ("elementwise", "matmul", "mlp")
DTYPES = ("float64", "float32")
DEFAULT_SIZES = (1e3, 1e4, 1e5, 1e6, 1e7)
# The matmul and MLP functions do more work per element; their largest size is 1e6 by
# default to keep the suite within minutes on two cores.
MAX_SIZE = {"elementwise": 1e7, "matmul": 1e6, "mlp": 1e6}


def make_problem(function: str, n: int, dtype: str, seed: int = 0):
    """(fn, inputs) whose checked inputs hold about `n` elements in all."""
    import torch

    g = torch.Generator().manual_seed(seed)
    dt = getattr(torch, dtype)
    if function == "elementwise":
        x = torch.randn(n, generator=g, dtype=dt).requires_grad_()
        return (lambda x: torch.tanh(x) * 2), (x,)
    if function == "matmul":
        k = 64
        x = torch.randn(max(n // k, 1), k, generator=g, dtype=dt).requires_grad_()
        w = (torch.randn(k, 16, generator=g, dtype=dt) / 8).requires_grad_()
        return (lambda x, w: x @ w), (x, w)
    if function == "mlp":
        # A module whose parameters are checked through a closure over functional_call.
        model = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4)).to(dt)
        names = [name for name, _ in model.named_parameters()]
        x = torch.randn(max(n // 32, 1), 32, generator=g, dtype=dt).requires_grad_()
        params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())

        def fn(x, *ps):
            return torch.func.functional_call(model, dict(zip(names, ps)), (x,))

        return fn, (x, *params)
    raise ValueError(f"function={function!r}: expected one of {FUNCTIONS}")


def _checker(name: str):
    import torch

    if name == "kit":
        import gradcheck_kit

        def run(fn, inputs):
            return bool(gradcheck_kit.gradcheck(fn, inputs))
    else:
        def run(fn, inputs):
            inputs = tuple(x.detach().double().requires_grad_() for x in inputs)
            return bool(torch.autograd.gradcheck(fn, inputs, fast_mode=True))
    return run


def _input_bytes(inputs) -> int:
    return sum(x.numel() * x.element_size() for x in inputs)


# -- subprocess workers ------------------------------------------------------------------
def _worker_time(function: str, n: int, dtype: str, repeats: int) -> dict[str, Any]:
    import time

    fn, inputs = make_problem(function, n, dtype)
    runs = {"kit": _checker("kit"), "torch_fast": _checker("torch_fast")}
    passed = {k: r(fn, inputs) for k, r in runs.items()}  # warm-up
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for k, r in runs.items():
            t = time.perf_counter()
            r(fn, inputs)
            times[k].append(time.perf_counter() - t)
    return {"passed": passed, "seconds": {k: statistics.median(v) for k, v in times.items()}}


def _worker_memory(function: str, n: int, dtype: str, checker: str) -> dict[str, Any]:
    import resource

    run = _checker(checker)
    small_fn, small_inputs = make_problem(function, 64, dtype)
    run(small_fn, small_inputs)
    fn, inputs = make_problem(function, n, dtype)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run(fn, inputs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    above = (peak - base) * 1024  # ru_maxrss is in KiB on Linux
    return {"peak_bytes": above, "input_bytes": _input_bytes(inputs),
            "arrays": above / _input_bytes(inputs)}


def _worker_first(checker: str) -> dict[str, Any]:
    import time

    run = _checker(checker)
    fn, inputs = make_problem("elementwise", 100, "float64")
    t = time.perf_counter()
    run(fn, inputs)
    return {"seconds": time.perf_counter() - t}


def _worker_jax(n: int, repeats: int) -> dict[str, Any]:
    """The kit against `jax.test_util.check_grads(modes=("rev",), order=1)` on a jitted tanh.

    Also counts how often the jitted function is traced during the kit's first and its
    warm checks: once per shape means one trace in the first check and none after.
    """
    import time

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from jax.test_util import check_grads

    import gradcheck_kit

    traces = [0]

    @jax.jit
    def f(x):
        traces[0] += 1
        return jnp.tanh(x) * 2

    x = jnp.asarray(np.random.default_rng(0).standard_normal(n))
    gradcheck_kit.gradcheck(f, (x,))
    first_traces = traces[0]
    check_grads(f, (x,), order=1, modes=("rev",))
    times: dict[str, list[float]] = {"kit": [], "check_grads": []}
    traces[0] = 0
    for _ in range(repeats):
        t = time.perf_counter()
        gradcheck_kit.gradcheck(f, (x,))
        times["kit"].append(time.perf_counter() - t)
        t = time.perf_counter()
        check_grads(f, (x,), order=1, modes=("rev",))
        times["check_grads"].append(time.perf_counter() - t)
    seconds = {k: statistics.median(v) for k, v in times.items()}
    return {"n": n, "seconds": seconds, "ratio": seconds["kit"] / seconds["check_grads"],
            "traces_first_kit_check": first_traces, "traces_warm_rounds": traces[0]}


def _spawn(args: list[str], timeout: float = 1200) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "--worker", *args], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          cwd=Path(__file__).resolve().parent.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- driver ------------------------------------------------------------------------------
def run_scaling(sizes, functions, dtypes, repeats: int, memory: bool, jax_sizes=(), verbose: bool = True,
                on_row=None) -> dict[str, Any]:
    rows = []
    for function in functions:
        for dtype in dtypes:
            for size in sizes:
                if size > MAX_SIZE[function]:
                    continue
                n = int(size)
                row: dict[str, Any] = {"function": function, "dtype": dtype, "n": n}
                row.update(_spawn(["time", function, str(n), dtype, str(repeats)]))
                row["time_ratio"] = row["seconds"]["kit"] / row["seconds"]["torch_fast"]
                if memory:
                    row["memory"] = {c: _spawn(["memory", function, str(n), dtype, c]) for c in ("kit", "torch_fast")}
                    tb = row["memory"]["torch_fast"]["peak_bytes"]
                    row["memory_ratio"] = row["memory"]["kit"]["peak_bytes"] / tb if tb > 0 else None
                rows.append(row)
                if verbose:
                    print(_line(row), flush=True)
                if on_row is not None:  # partial results survive an interrupted run
                    on_row({"rows": rows, "first_check_seconds": None, "jax": []})
    first = {c: _spawn(["first", c])["seconds"] for c in ("kit", "torch_fast")}
    if verbose:
        print(f"first check: kit {first['kit']:.3f} s, torch fast {first['torch_fast']:.3f} s", flush=True)
    jax_rows = []
    for n in jax_sizes:
        jax_rows.append(_spawn(["jax", str(int(n)), str(repeats)]))
        if verbose:
            r = jax_rows[-1]
            print(f"jax n={r['n']} kit {r['seconds']['kit']:.4f} s check_grads {r['seconds']['check_grads']:.4f} s "
                  f"ratio {r['ratio']:.2f} traces {r['traces_first_kit_check']}/{r['traces_warm_rounds']}", flush=True)
    return {"rows": rows, "first_check_seconds": first, "jax": jax_rows}


def _line(row) -> str:
    s = row["seconds"]
    text = (f"{row['function']:11s} {row['dtype']} n={row['n']:<9d} kit {s['kit']:.4f} s  "
            f"torch fast {s['torch_fast']:.4f} s  ratio {row['time_ratio']:.2f}")
    if "memory" in row:
        m = row["memory"]
        text += (f"  | arrays at peak kit {m['kit']['arrays']:.1f} torch fast {m['torch_fast']['arrays']:.1f}")
    return text


def render(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        "# Scaling",
        "",
        f"- date: {env['date']}",
        f"- machine: {env['machine']} (torch threads: 1)",
        f"- torch {env['torch']}, gradcheck_kit commit {env['commit']}",
        f"- command: `{env['command']}`",
        "",
        "Warm time: median over alternated rounds in one process after a warm-up check. Peak memory: "
        "process high-water mark (ru_maxrss) above the baseline after a tiny warm-up check, in a "
        "fresh process per checker; 'arrays' is that peak in units of the checked inputs' bytes "
        "(resolution ~MBs, so small sizes read 0). torch fast mode checks float64 copies of float32 inputs.",
        "",
        "| function | n | dtype | kit (s) | torch fast (s) | time kit / torch fast | peak MB kit | peak MB torch fast | memory kit / torch fast | arrays at peak kit | arrays torch fast |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        s = r["seconds"]
        mem = r.get("memory")
        if mem:
            mk, mt = mem["kit"], mem["torch_fast"]
            ratio = f"{r['memory_ratio']:.2f}" if r.get("memory_ratio") else "-"
            memcols = (f"{mk['peak_bytes'] / 1e6:.1f} | {mt['peak_bytes'] / 1e6:.1f} | {ratio} | "
                       f"{mk['arrays']:.1f} | {mt['arrays']:.1f}")
        else:
            memcols = "- | - | - | - | -"
        lines.append(f"| {r['function']} | {r['n']:.0e} | {r['dtype']} | {s['kit']:.4f} | {s['torch_fast']:.4f} | "
                     f"{r['time_ratio']:.2f} | {memcols} |")
    f = result["first_check_seconds"] or {"kit": float("nan"), "torch_fast": float("nan")}
    lines += ["", f"First check in a fresh process (imports done before): kit {f['kit']:.3f} s, "
              f"torch fast {f['torch_fast']:.3f} s, difference {f['kit'] - f['torch_fast']:+.3f} s.", ""]
    if result.get("jax"):
        lines += ["jax (float64, jitted `tanh(x) * 2`): kit against `jax.test_util.check_grads(modes=('rev',), "
                  "order=1)`, warm; traces of the jitted function in the kit's first check / in all warm rounds.", "",
                  "| n | kit (s) | check_grads (s) | ratio | traces first check | traces warm |", "|---|---|---|---|---|---|"]
        for r in result["jax"]:
            lines.append(f"| {r['n']:.0e} | {r['seconds']['kit']:.4f} | {r['seconds']['check_grads']:.4f} | "
                         f"{r['ratio']:.2f} | {r['traces_first_kit_check']} | {r['traces_warm_rounds']} |")
        lines.append("")
    return "\n".join(lines)


def _environment(command: str) -> dict[str, Any]:
    import torch

    from .run import _kit_commit

    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}",
            "torch": torch.__version__, "commit": _kit_commit(), "command": command}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="*", type=float, default=list(DEFAULT_SIZES))
    p.add_argument("--functions", nargs="*", choices=FUNCTIONS, default=list(FUNCTIONS))
    p.add_argument("--dtypes", nargs="*", choices=DTYPES, default=list(DTYPES))
    p.add_argument("--repeats", type=int, default=3, help="alternated timing rounds (default 3)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--jax-sizes", nargs="*", type=float, default=[1e4, 1e6],
                   help="sizes for the jax comparison (default 1e4 1e6; none to skip)")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:
        import torch

        torch.set_num_threads(1)
        kind, *rest = args.worker
        if kind == "time":
            out = _worker_time(rest[0], int(rest[1]), rest[2], int(rest[3]))
        elif kind == "memory":
            out = _worker_memory(rest[0], int(rest[1]), rest[2], rest[3])
        elif kind == "jax":
            out = _worker_jax(int(rest[0]), int(rest[1]))
        else:
            out = _worker_first(rest[0])
        print(json.dumps(out))
        return 0
    command = "python -m benchmarks.scaling " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    environment = _environment(command.strip())

    def write(result: dict[str, Any]) -> None:
        result["environment"] = environment
        (args.out / "scaling.json").write_text(json.dumps(result, indent=1))
        (args.out / "scaling.md").write_text(render(result))

    write(run_scaling(args.sizes, args.functions, args.dtypes, args.repeats, not args.no_memory,
                      jax_sizes=args.jax_sizes, on_row=write))
    print(f"wrote {args.out / 'scaling.json'} and {args.out / 'scaling.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
