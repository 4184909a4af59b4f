"""The core without torch or jax: the package, the plugin and a clear message when needed.

Each case runs in a fresh interpreter whose import system refuses the blocked frameworks,
as on a machine where they are not installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gradcheck_kit
from test_plugin import PLUGIN

PROJECT_ROOT = Path(gradcheck_kit.__file__).resolve().parents[1]

BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Missing())
"""


def _run(blocked: tuple[str, ...], code: str) -> subprocess.CompletedProcess[str]:
    program = BLOCKER.format(blocked=blocked) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=PROJECT_ROOT,
        env={"PYTHONPATH": str(PROJECT_ROOT), "PATH": "", "JAX_PLATFORMS": "cpu"}, timeout=120,
    )


PLUGIN_RUN = """
import pytest, sys
sys.exit(pytest.main([
    *{plugin!r}, "-p", "no:cacheprovider", "-q", "--rootdir", {root!r},
    "-o", "addopts=", {test!r},
]))
"""

USER_TEST = """
import numpy as np

def test_numpy_gradient(gradcheck, gradcheck_device, gradcheck_dtype_name):
    assert gradcheck_device == "cpu"
    x = np.linspace(0.1, 1.0, 4)
    gradcheck(lambda x: np.sin(x).sum(), (x,), grad=lambda x: (np.cos(x),))
"""


@pytest.mark.parametrize("blocked", [("torch",), ("jax", "jaxlib"), ("torch", "jax", "jaxlib")])
def test_core_and_plugin_work_without_a_framework(blocked: tuple[str, ...], tmp_path: Path) -> None:
    test_file = tmp_path / "test_user.py"
    test_file.write_text(USER_TEST)
    out = _run(blocked, "import gradcheck_kit, gradcheck_kit.pytest_plugin\n"
               + PLUGIN_RUN.format(plugin=PLUGIN, root=str(tmp_path), test=str(test_file)))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout


def test_a_missing_framework_is_a_clear_message() -> None:
    out = _run(("torch",), """
        from gradcheck_kit import strategies as gst
        import numpy as np
        try:
            gst.as_framework_array(np.ones(2), dtype="float64", device="cpu", framework="torch")
        except ImportError as exc:
            print("MESSAGE", exc)
    """)
    assert "MESSAGE framework='torch' needs torch, which is not installed" in out.stdout, out.stderr
    assert 'pip install "gradcheck-kit[torch]"' in out.stdout
