"""pytest plugin: run a third-party suite with `torch.autograd.gradcheck` replaced by ours.

Load it with ``pytest -p benchmarks.swap_gradcheck``. Every call of
`torch.autograd.gradcheck` / `gradgradcheck` (however the suite imported it) runs
torch's check and then `gradcheck_kit`'s on the same arguments, writes one JSON line per
call to ``$GCK_SWAP_LOG`` (both verdicts, times, and the kit's report when the two
disagree; torch's time in fast mode at the same call too), and returns what the kit decided, raising as torch would when the caller asked
it to raise. The suite's own pass/fail therefore shows what a user who swapped the
import would see, and the log shows each call side by side with torch.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable

import pytest

_current_test = "<collection>"


def _timed(check: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float, str | None]:
    start = time.perf_counter()
    try:
        result = check(*args, **kwargs)
        error = None
    except Exception as exc:  # a raising check is a verdict too; keep its message
        result, error = False, f"{type(exc).__name__}: {exc}"
    return result, time.perf_counter() - start, error


def _swapped(name: str, torch_check: Callable[..., Any], kit_check: Callable[..., Any]) -> Callable[..., Any]:
    def check(*args: Any, **kwargs: Any) -> Any:
        raise_exception = kwargs.pop("raise_exception", True)
        torch_result, torch_time, torch_error = _timed(torch_check, *args, raise_exception=False, **kwargs)
        # Torch's fast mode at the same call site: the anchor for the kit's time.
        fast_time = torch_time
        if not kwargs.get("fast_mode", False):
            _, fast_time, _ = _timed(torch_check, *args, raise_exception=False, **{**kwargs, "fast_mode": True})
        kit_result, kit_time, kit_error = _timed(kit_check, *args, raise_exception=False, **kwargs)
        kit_passed = bool(kit_result) and kit_error is None
        record = {
            "test": _current_test,
            "check": name,
            "torch": bool(torch_result) and torch_error is None,
            "kit": kit_passed,
            "kit_status": getattr(kit_result, "status", "refused" if kit_error else str(bool(kit_result))),
            "torch_s": torch_time,
            "torch_fast_s": fast_time,
            "kit_s": kit_time,
            "kit_error": kit_error,
            "torch_error": torch_error,
        }
        if record["torch"] != record["kit"] and kit_error is None:
            record["kit_report"] = str(kit_result)[:4000]
        log = os.environ.get("GCK_SWAP_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        if kit_error is not None:
            raise RuntimeError(f"gradcheck_kit refused the call: {kit_error}")
        if not kit_passed and raise_exception:
            raise RuntimeError(f"gradcheck_kit: {str(kit_result)[:2000]}")
        return kit_passed

    check.__name__ = name
    return check


def pytest_configure(config: pytest.Config) -> None:
    import torch.autograd
    import torch.autograd.gradcheck  # noqa: F401  (the module, for `from ...gradcheck import`)

    import gradcheck_kit

    module = sys.modules["torch.autograd.gradcheck"]
    for name in ("gradcheck", "gradgradcheck"):
        replacement = _swapped(name, getattr(module, name), getattr(gradcheck_kit, name))
        setattr(module, name, replacement)
        setattr(torch.autograd, name, replacement)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    global _current_test
    _current_test = item.nodeid
