"""Run the benchmarks and write results: `python -m benchmarks.run [--quick] [--suite NAME ...]`.

Writes, under `--out` (default `benchmarks/results/`):
- `<suite>.json` (`<suite>.json.gz` when large): every record (case, dtype, checker, verdict, evaluations, seconds, what
  the checker said) plus the run's environment;
- `results.md`: the summary tables, gradcheck_kit's misses and false alarms, and per-case
  matrices.

Every checker runs on the same problems in the same process, so ratios between checkers
are meaningful even on a busy machine; absolute times are not.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .checkers import CHECKERS, KIT
from .frameworks import configure_torch
from .harness import Record, run_cases, summarize
from .tables import case_matrix, category_table, cost_table, findings, opinfo_false_alarm_table, summary_table

SUITES = ("zoo", "opinfo", "random", "twolayer")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    p.add_argument("--suite", action="append", choices=SUITES + ("scaling",),
                   help="suite to run (repeatable; default: all but scaling, which runs "
                        "`python -m benchmarks.scaling` into --out and has its own options)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes: 25 OpInfo ops, 20/8/20 random programs, two-layer without float32 anchors")
    p.add_argument("--limit", type=int, default=None,
                   help="OpInfo ops to draw (fixed seed); 0 for all eligible ops (default 100, quick 25)")
    p.add_argument("--samples-per-op", type=int, default=1, help="OpInfo samples per op (default 1)")
    p.add_argument("--mutants", type=int, default=4, help="mutants per OpInfo sample (default 4)")
    p.add_argument("--programs", type=int, default=None,
                   help="torch and numpy random programs (jax gets a third; default 100, quick 20)")
    p.add_argument("--twolayer-full", action="store_true",
                   help="also run torch slow mode and the tuned float32 fast mode on the two-layer network (minutes)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed for op subsets, samples, programs and mutations")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="output folder")
    p.add_argument("--checkers", nargs="*", default=None,
                   help="restrict to these checker names (default: all)")
    p.add_argument("--render", action="store_true",
                   help="do not run anything: rebuild results.md from the JSON files already in --out")
    p.add_argument("-v", "--verbose", action="store_true", help="print a line per case")
    return p


def _kit_commit() -> str:
    """The repository commit, and whether gradcheck_kit/ differs from it (read-only git)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "gradcheck_kit"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return head + (" with local changes to gradcheck_kit/" if dirty else "")


def environment(threads: int) -> dict[str, Any]:
    """Date, machine and library versions of this run."""
    import jax
    import numpy
    import torch

    try:
        import gradcheck_kit

        kit_version = getattr(gradcheck_kit, "__version__", "unknown")
    except Exception as exc:  # recorded, so a broken import is visible in the results
        kit_version = f"import failed: {type(exc).__name__}: {exc}"
    return {
        "gradcheck_kit_commit": _kit_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "jax": jax.__version__,
        "numpy": numpy.__version__,
        "gradcheck_kit": kit_version,
        "torch_threads": threads,
        "command": "python -m benchmarks.run " + " ".join(sys.argv[1:]),
    }


def _run_suite(name: str, args: argparse.Namespace, log: Any) -> tuple[list[Record], dict[str, Any]]:
    checkers = [c for c in CHECKERS if args.checkers is None or c.name in args.checkers]
    progress = log if args.verbose else None
    meta: dict[str, Any] = {}
    if name == "zoo":
        from .zoo import zoo_cases

        cases = zoo_cases()
        meta["cases"] = len(cases)
        return run_cases(cases, checkers=checkers, progress=progress), meta
    if name == "opinfo":
        from .opinfo import opinfo_cases

        limit = args.limit if args.limit is not None else (25 if args.quick else 100)
        suite = opinfo_cases(limit=None if limit == 0 else limit, samples_per_op=args.samples_per_op,
                             mutants_per_sample=args.mutants, seed=args.seed)
        meta.update(ops_drawn=suite.ops_considered, ops_used=suite.ops_used, cases=len(suite.cases),
                    unscored_mutants=suite.unscored_mutants, skipped=suite.skipped)
        scored = [c for c in suite.cases if c.buggy is not None]
        log(f"opinfo: {suite.ops_used} of {suite.ops_considered} ops usable, {len(scored)} scored cases")
        return run_cases(scored, checkers=checkers, progress=progress), meta
    if name == "random":
        from .random_programs import program_cases

        n = args.programs if args.programs is not None else (20 if args.quick else 100)
        cases = program_cases(torch_count=n, jax_count=max(1, n // 3) if n else 0, numpy_count=n, seed=args.seed)
        scored = [c for c in cases if c.buggy is not None]
        meta.update(cases=len(cases), unscored_mutants=len(cases) - len(scored))
        return run_cases(scored, checkers=checkers, progress=progress), meta
    from .twolayer import twolayer_cases

    names = {KIT, "torch fast"}
    if args.twolayer_full:
        names |= {"torch slow", "torch fast tuned"}
    chosen = [c for c in checkers if c.name in names]
    # Checks of a second or less are timed as the fastest of five runs.
    records = run_cases(twolayer_cases(), checkers=chosen, dtypes=["float64"], progress=progress, repeats=5)
    # torch's fast mode flags the float32 network and then recomputes slow-mode Jacobians
    # for its message (minutes); --quick leaves the float32 anchors out.
    f32 = [c for c in chosen if c.name == KIT] if args.quick else chosen
    records += run_cases(twolayer_cases(), checkers=f32, dtypes=["float32"], progress=progress, repeats=5)
    records += run_cases(twolayer_cases(closure=True), checkers=[c for c in chosen if c.name == KIT],
                         progress=progress, repeats=5)
    meta["cases"] = 4
    return records, meta


def _markdown(env: dict[str, Any], results: dict[str, tuple[list[Record], dict[str, Any], float]]) -> str:
    out = [
        "# Benchmark results",
        "",
        f"- date: {env['date']}",
        f"- machine: {env['machine']} (torch threads: {env['torch_threads']})",
        f"- python {env['python']}, torch {env['torch']}, jax {env['jax']}, numpy {env['numpy']}, "
        f"gradcheck_kit {env['gradcheck_kit']} (commit {env.get('gradcheck_kit_commit', 'not recorded')})",
        f"- command: `{env['command']}`",
        "",
    ]
    for name, (records, meta, seconds) in results.items():
        out.append(f"## {name} ({seconds:.0f} s wall)\n")
        shown = {k: v for k, v in meta.items() if k != "skipped"}
        if shown:
            out.append(", ".join(f"{k}: {v}" for k, v in shown.items()) + "\n")
        out.append(summary_table(records))
        if name == "opinfo":
            out.append(opinfo_false_alarm_table(records))
        if name == "twolayer":
            out.append(cost_table(records))
        if name in ("zoo", "random"):
            group_checkers = [KIT, "torch slow", "torch fast"] + (["jax rev"] if name == "zoo" else [])
            out.append("Correct verdicts per category:\n")
            out.append(category_table(records, checkers=group_checkers))
        out.append(f"### {KIT}: misses and false alarms\n")
        out.append(findings(records))
        if name == "zoo":
            out.append("### Per case (F flagged, . passed, E raised; wrong verdicts in bold)\n")
            out.append(case_matrix(records))
    return "\n".join(out)


# Results above this size are stored gzipped (`<suite>.json.gz`) to keep the repository small.
_GZIP_ABOVE = 500_000


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write `payload` compactly to `path`, or gzipped to `path.gz` when it is large."""
    text = json.dumps(payload, separators=(",", ":"), default=str)
    for stale in (path, path.with_name(path.name + ".gz")):
        stale.unlink(missing_ok=True)
    if len(text) > _GZIP_ABOVE:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
        return path
    path.write_text(text)
    return path


def read_json(path: Path) -> dict[str, Any] | None:
    """Read what `write_json` wrote (plain or gzipped); None when neither exists."""
    if path.exists():
        return json.loads(path.read_text())
    gz = path.with_name(path.name + ".gz")
    if gz.exists():
        with gzip.open(gz, "rt", encoding="utf-8") as f:
            return json.load(f)
    return None


def _render(args: argparse.Namespace) -> int:
    results: dict[str, tuple[list[Record], dict[str, Any], float]] = {}
    env: dict[str, Any] = {}
    for name in args.suite or SUITES:
        payload = read_json(args.out / f"{name}.json")
        if payload is None:
            continue
        env = payload["environment"]
        results[name] = ([Record(**r) for r in payload["records"]], payload["meta"], payload["wall_seconds"])
    if not results:
        print(f"--render: no suite JSON files in {args.out}; run the benchmarks first", file=sys.stderr)
        return 2
    total = sum(seconds for _, _, seconds in results.values())
    (args.out / "results.md").write_text(_markdown(env, results) + f"\nTotal wall time: {total:.1f} s\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render:
        return _render(args)
    if args.suite and "scaling" in args.suite:
        # Scaling measures in subprocesses of its own and writes scaling.{json,md}.
        from .scaling import main as scaling_main

        scaling_main(["--out", str(args.out)] + (["--sizes", "1e3", "1e4", "1e5"] if args.quick else []))
        args.suite = [s for s in args.suite if s != "scaling"]
        if not args.suite:
            return 0
    configure_torch(threads=args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment(args.threads)
    log = lambda line: print(line, flush=True)  # noqa: E731
    results: dict[str, tuple[list[Record], dict[str, Any], float]] = {}
    total = time.perf_counter()
    for name in args.suite or SUITES:
        start = time.perf_counter()
        log(f"== {name}")
        records, meta = _run_suite(name, args, log)
        seconds = time.perf_counter() - start
        results[name] = (records, meta, seconds)
        payload = {
            "environment": env,
            "suite": name,
            "wall_seconds": seconds,
            "meta": meta,
            "summary": [s.to_dict() for s in summarize(records, group=lambda r: r.suite)],
            "records": [r.to_dict() for r in records],
        }
        write_json(args.out / f"{name}.json", payload)
        log(summary_table(records))
        log(f"{name}: {seconds:.1f} s")
    env["total_seconds"] = round(time.perf_counter() - total, 1)
    (args.out / "results.md").write_text(_markdown(env, results) + f"\nTotal wall time: {env['total_seconds']} s\n")
    log(f"total: {env['total_seconds']} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
