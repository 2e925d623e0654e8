from __future__ import annotations

import subprocess
import sys

import jupyter_stream


def test_all_is_sorted_and_complete() -> None:
    names = jupyter_stream.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(jupyter_stream, name).__module__.startswith("jupyter_stream"), name


def test_import_is_light() -> None:
    code = (
        "import sys, jupyter_stream; "
        "heavy = [m for m in ('IPython', 'ipywidgets', 'ipykernel', 'uvicorn', 'starlette') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
