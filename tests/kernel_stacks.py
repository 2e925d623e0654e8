"""The kernel stacks notebooks run on, each in its own virtual environment under
``.kernel-stacks/<name>`` (made on first use, remade when its recipe or pyproject.toml changes).

Each environment gets the stack's pinned packages *and* this project (editable) in one ``pip
install``, so pip must find our dependency bounds compatible with the pins, or the setup fails: the
matrix proves that the project installs beside the stack without upgrading it. The kernel is then
started from that environment's Python by jupyter_client's ``KernelManager(kernel_cmd=...)``, so one
test process serves every stack.

Run ``python tests/kernel_stacks.py`` to make them all ahead of the tests.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("JUPYTER_STREAM_KERNEL_STACKS", ROOT / ".kernel-stacks"))

COLAB = (
    "ipykernel==6.17.1",
    "ipython==7.34.0",
    "ipywidgets==7.7.1",
    "jupyter_client==7.4.9",
    "anywidget==0.9.21",
    "httpx==0.28.1",
)


@dataclass(frozen=True)
class Stack:
    name: str
    pins: tuple[str, ...]
    about: str
    extras: tuple[str, ...] = ()  # what else the image has that the teaching notebooks use

    @property
    def path(self) -> Path:
        return CACHE / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def recipe(self) -> str:
        """What the environment is made from: a change in either remakes it."""
        project = (ROOT / "pyproject.toml").read_text()
        recipe = [self.pins, self.extras, project, sys.version]
        return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()


STACKS = {
    stack.name: stack
    for stack in (
        Stack("colab", COLAB, "Google Colab's pins (google-colab 1.0)", ("matplotlib==3.10.0",)),
        Stack(
            "kaggle",
            tuple(p if not p.startswith("ipywidgets") else "ipywidgets==8.1.5" for p in COLAB),
            "Kaggle's pins (Colab's image with ipywidgets 8.1.5)",
        ),
        Stack("ipykernel-6.29", ("ipykernel==6.29.5",), "the last ipykernel 6"),
        Stack("sagemaker", ("ipykernel==7.3.0",), "SageMaker Distribution 4.4's ipykernel"),
        Stack("newest", ("ipykernel", "ipython", "ipywidgets", "anywidget"), "the newest releases"),
    )
}


def ensure(stack: Stack) -> Path:
    """The stack's environment, made if missing or stale; its Python."""
    CACHE.mkdir(parents=True, exist_ok=True)
    stamp = stack.path / "recipe.sha256"
    # Another test process making the same stack at once waits for it instead of racing it.
    with open(CACHE / f".{stack.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == stack.recipe() and stack.python.exists():
            return stack.python
        shutil.rmtree(stack.path, ignore_errors=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(stack.path)
        command = [str(stack.python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        done = subprocess.run(
            [*command, *stack.pins, *stack.extras, "-e", str(ROOT)], capture_output=True, text=True
        )
        if done.returncode:
            shutil.rmtree(stack.path, ignore_errors=True)
            raise RuntimeError(
                f"the {stack.name} stack ({' '.join(stack.pins)}) does not install beside "
                f"jupyter-stream:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        stamp.write_text(stack.recipe())
    return stack.python


def versions(stack: Stack) -> dict[str, str]:
    """What the environment holds of the packages a kernel stack is made of."""
    code = (
        "import json, importlib.metadata as m\n"
        "names = ['ipykernel', 'ipython', 'ipywidgets', 'jupyter_client', 'anywidget', 'httpx']\n"
        "print(json.dumps({n: m.version(n) for n in names}))"
    )
    out = subprocess.run([str(ensure(stack)), "-c", code], capture_output=True, text=True)
    out.check_returncode()
    found: dict[str, str] = json.loads(out.stdout)
    return found


def jupyter_data(stack: Stack) -> Path:
    """The stack's Jupyter data directory (for ``JUPYTER_PATH``), holding its kernelspec,
    ``kernel_name(stack)``, run by the stack's Python, and its packages' front-end extensions."""
    python = ensure(stack)
    data = stack.path / "share" / "jupyter"
    spec = data / "kernels" / kernel_name(stack) / "kernel.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.write_text(json.dumps({"argv": argv, "display_name": stack.name, "language": "python"}))
    return data


def kernel_spec_manager(stack: Stack) -> KernelSpecManager:
    """A kernelspec manager that knows one kernel, ``kernel_name(stack)`` (jupyter_client 8 has
    no ``kernel_cmd`` any more)."""
    return KernelSpecManager(kernel_dirs=[str(jupyter_data(stack) / "kernels")])


def kernel_name(stack: Stack) -> str:
    return f"jupyter-stream-{stack.name}"


def kernel_manager(stack: Stack) -> KernelManager:
    """A KernelManager whose kernel runs in the stack's environment."""
    return KernelManager(
        kernel_name=kernel_name(stack), kernel_spec_manager=kernel_spec_manager(stack)
    )


if __name__ == "__main__":
    for name in sys.argv[1:] or STACKS:
        print(name, versions(STACKS[name]), flush=True)
