"""The import layering (pyproject.toml's [tool.importlinter] contracts) holds: no cycles, pure
layers free of I/O, one module each for httpx, IPython and ipywidgets, the server started only
by _endpoint. Run by import-linter's own command, so a failure reads as its report."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lint_imports() -> str:
    beside = Path(sys.executable).parent / "lint-imports"
    command = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert command, "lint-imports is missing: pip install -e '.[test]' (it brings import-linter)"
    return command


def test_the_import_contracts_are_kept() -> None:
    done = subprocess.run(
        [lint_imports(), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
