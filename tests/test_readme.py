"""The README's python snippets run as written, each in a fresh interpreter namespace."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)

# Each snippet runs alone, as a reader pastes it; a failure names the snippet.
RUNNER = textwrap.dedent(
    """
    import sys, traceback
    failed = []
    for i, code in enumerate(SNIPPETS):
        try:
            exec(compile(code, f"README snippet {i}", "exec"), {"__name__": f"readme_{i}"})
        except Exception:
            failed.append(f"snippet {i}:\\n{code}\\n{traceback.format_exc()}")
    print("\\n".join(failed))
    sys.exit(1 if failed else 0)
    """
)


def test_the_readme_has_python_snippets() -> None:
    assert len(SNIPPETS) >= 4
    # Each uses what it defines or imports itself: none starts from an undefined name.
    for code in SNIPPETS:
        assert "import" in code


def test_every_python_snippet_of_the_readme_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"SNIPPETS = {SNIPPETS!r}\n{RUNNER}"],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
        env={"PYTHONPATH": str(ROOT), **{k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"}},
    )
    assert done.returncode == 0, done.stdout + done.stderr
