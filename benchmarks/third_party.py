"""Summarise third-party suites run with `benchmarks.swap_gradcheck`.

Run a library's gradient tests with the swap plugin, one log per library::

    GCK_SWAP_LOG=entmax.jsonl python -m pytest -p benchmarks.swap_gradcheck <its tests>

then ``python -m benchmarks.third_party entmax.jsonl torchdiffeq.jsonl ...`` prints, per
library, how many calls both checkers agreed on, where only one failed, which calls the
kit refused or called inconclusive, and the time ratio over the same calls.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def summarise(log: Path) -> dict[str, object]:
    """Counts and time ratio of one swap log."""
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    status = Counter(r["kit_status"] for r in rows)
    kit_only = [r for r in rows if r["torch"] and not r["kit"]]
    torch_only = [r for r in rows if r["kit"] and not r["torch"]]
    torch_s = sum(r["torch_s"] for r in rows)
    return {
        "library": log.stem,
        "calls": len(rows),
        "agree": sum(r["torch"] == r["kit"] for r in rows),
        "kit_only_fails": len(kit_only),
        "torch_only_fails": len(torch_only),
        "refused": status.get("refused", 0),
        "inconclusive": status.get("inconclusive", 0),
        "time_ratio": sum(r["kit_s"] for r in rows) / torch_s if torch_s else float("nan"),
        "kit_s": sum(r["kit_s"] for r in rows),
        "torch_s": torch_s,
        # Logs from before torch's fast mode was timed at each call have no such entry.
        "torch_fast_s": sum(r.get("torch_fast_s", float("nan")) for r in rows),
        "kit_only_tests": sorted({r["test"] for r in kit_only}),
        "torch_only_tests": sorted({r["test"] for r in torch_only}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    print("| library | calls | agree | kit-only fails | torch-only fails | refused | inconclusive "
          "| kit time / torch time | kit time / torch fast mode's |")
    print("|---|---|---|---|---|---|---|---|---|")
    summaries = [summarise(log) for log in args.logs]
    for s in summaries:
        print(f"| {s['library']} | {s['calls']} | {s['agree']} | {s['kit_only_fails']} | {s['torch_only_fails']} "
              f"| {s['refused']} | {s['inconclusive']} | {s['time_ratio']:.2f}x "
              f"| {s['kit_s'] / s['torch_fast_s']:.2f}x |")
    kit, fast = sum(s["kit_s"] for s in summaries), sum(s["torch_fast_s"] for s in summaries)
    print(f"all: kit {kit:.1f} s, torch as called {sum(s['torch_s'] for s in summaries):.1f} s, "
          f"torch fast mode {fast:.1f} s ({kit / fast:.2f}x)")
    for s in summaries:
        for kind in ("kit_only_tests", "torch_only_tests"):
            for test in s[kind]:  # type: ignore[union-attr]
                print(f"{s['library']}: {kind.replace('_', ' ')[:-1]}: {test}")


if __name__ == "__main__":
    main()
