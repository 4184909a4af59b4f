"""Forward mode can never take the process down, and costs no imports or warnings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import gradcheck_kit as gk
from custom_functions import unary_function

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT,
    )


def test_a_forward_calling_module_to_gives_a_verdict_instead_of_crashing():
    # Under torch.func.jvp, Module.to inside the function segfaulted the interpreter.
    # check_forward_ad=True: through torch's own operations forward mode runs only where
    # asked for.
    proc = _run(
        """
        import json, torch, gradcheck_kit
        model = torch.nn.Linear(3, 2).double()
        def by_dtype(x):
            return model.to(x.dtype)(x)
        def by_device(x):
            return model.to(x.device)(x).tanh()
        x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
        reports = [
            gradcheck_kit.gradcheck(f, (x,), check_forward_ad=True) for f in (by_dtype, by_device)
        ]
        verdicts = [bool(r) for r in reports]
        forward = [any("dot-product" in c.check for c in r.comparisons) for r in reports]
        print(json.dumps({"verdicts": verdicts, "forward": forward}))
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"verdicts": [True, True], "forward": [True, True]}


def test_a_first_check_imports_no_compiler_and_emits_no_warning():
    # The forward-mode rule of an operation with a Python number (`* 2`) imports
    # torch._dynamo: through torch's own operations it is not run unless asked for.
    proc = _run(
        """
        import json, sys, warnings, torch
        import gradcheck_kit
        sys.path.insert(0, "tests")
        from custom_functions import with_own_rule
        x = torch.randn(5, dtype=torch.float64, requires_grad=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plain = gradcheck_kit.gradcheck(lambda x: torch.tanh(x) * 2, (x,))
            dynamo_after_plain = "torch._dynamo" in sys.modules
            # An identity Function after torch's operations: forward mode runs through them.
            fn = with_own_rule(lambda x: (x.sin() * x).softmax(0))
            report = gradcheck_kit.gradcheck(fn, (x,))
        print(json.dumps({
            "passed": [bool(plain), bool(report)],
            "forward_evals": [plain.forward_evals, report.forward_evals > 0],
            "forward": any("dot-product" in c.check for c in report.comparisons),
            "warnings": [str(w.message) for w in caught],
            "dynamo": [dynamo_after_plain, "torch._dynamo" in sys.modules],
            "jit_decompositions": "torch._decomp.decompositions_for_jvp" in sys.modules,
        }))
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {
        "passed": [True, True], "forward_evals": [0, True], "forward": True, "warnings": [],
        "dynamo": [False, False], "jit_decompositions": False,
    }


def test_ops_whose_forward_rule_is_a_decomposition_still_get_forward_mode():
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    report = gk.gradcheck(lambda x: torch.trace(x.sin()), (x,), check_forward_ad=True)
    assert report.passed
    assert any("dot-product" in c.check for c in report.comparisons)
    assert not any("forward mode unavailable" in n for n in report.notes)


_NoJvp = unary_function(torch.exp, torch.exp, name="_NoJvp")  # a backward, no jvp


def test_the_forward_mode_note_keeps_its_first_sentence_whole():
    x = torch.randn(4, dtype=torch.float64, requires_grad=True)
    report = gk.gradcheck(_NoJvp.apply, (x,))
    assert report.passed
    note = next(n for n in report.notes if n.startswith("forward mode unavailable"))
    reason = note.removeprefix("forward mode unavailable: ")
    assert reason.endswith(".") and len(reason) > 20
