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
    proc = _run(
        """
        import json, torch, gradcheck_kit
        model = torch.nn.Linear(3, 2).double()
        def by_dtype(x):
            return model.to(x.dtype)(x)
        def by_device(x):
            return model.to(x.device)(x).tanh()
        x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
        verdicts = [bool(gradcheck_kit.gradcheck(f, (x,))) for f in (by_dtype, by_device)]
        forward = [
            any("dot-product" in c.check for c in gradcheck_kit.gradcheck(f, (x,)).comparisons)
            for f in (by_dtype, by_device)
        ]
        print(json.dumps({"verdicts": verdicts, "forward": forward}))
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"verdicts": [True, True], "forward": [True, True]}


def test_a_first_check_imports_no_compiler_and_emits_no_warning():
    proc = _run(
        """
        import json, sys, warnings, torch
        import gradcheck_kit
        x = torch.randn(5, dtype=torch.float64, requires_grad=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = gradcheck_kit.gradcheck(lambda x: (x.sin() * x).softmax(0), (x,))
        print(json.dumps({
            "passed": bool(report),
            "forward": any("dot-product" in c.check for c in report.comparisons),
            "warnings": [str(w.message) for w in caught],
            "dynamo": "torch._dynamo" in sys.modules,
            "jit_decompositions": "torch._decomp.decompositions_for_jvp" in sys.modules,
        }))
        """
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {
        "passed": True, "forward": True, "warnings": [], "dynamo": False,
        "jit_decompositions": False,
    }


def test_ops_whose_forward_rule_is_a_decomposition_still_get_forward_mode():
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    report = gk.gradcheck(lambda x: torch.trace(x.sin()), (x,))
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
