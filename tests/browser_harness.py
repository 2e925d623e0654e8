"""JupyterLab and Notebook 7, started for the tests, and Debian's Chromium driven by Playwright.

The browser is ``/usr/bin/chromium`` from Debian's ``chromium`` package (the README's test
command installs it); Playwright's own browser downloads are never used. Each server runs on
127.0.0.1 with a random token, as root when the tests are root, in a temporary root directory
with its own settings, workspaces and runtime directories, so that nothing of the developer's
Jupyter setup leaks in and nothing is left behind.

Nothing here sleeps to synchronise: the server is ready when it logs its URL, a cell has run
when its prompt shows an execution count, and the page is waited on through Playwright's
auto-waiting locators.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import nbformat
from playwright.sync_api import Locator, Page, WebSocket, expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # as root, Chromium's sandbox refuses to start
    "--disable-background-networking",  # this machine's closed network refuses those calls
    "--disable-component-update",
    "--no-first-run",
    "--disable-gpu",
    "--disable-sync",
    "--disable-dev-shm-usage",  # a container's small /dev/shm crashes renderers now and then
]
RAN = re.compile(r"\[\d+\]:")  # a cell's prompt once it has run
NOT_RUN = re.compile(r"^\s*\[ \]:\s*$")  # a cell's prompt before it was sent to the kernel
START_TIMEOUT = 60.0  # seconds for a server to start: a guard against hangs
KERNEL_START_TIMEOUT_MS = 90_000  # a kernel of a pinned stack, in its own venv: a guard
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not os.access(CHROMIUM, os.X_OK):
        return (
            f"Debian's Chromium is not installed at {CHROMIUM}: run "
            "`apt-get install -y chromium` (the README's test command does it when it is missing)"
        )
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class JupyterApp:
    """``jupyter lab`` or ``jupyter notebook`` on 127.0.0.1 with a token, in ``root``."""

    def __init__(self, app: str, root: Path, env: Mapping[str, str], name: str) -> None:
        assert app in ("jupyterlab", "notebook")
        self.app = app
        self.root = root
        self.port = free_port()
        self.token = secrets.token_hex(16)
        home = root.parent / f"{name}-jupyter"
        settings = home / "lab-settings"
        # No "get notified about official Jupyter news?" toast over the notebook.
        notification = settings / "@jupyterlab" / "apputils-extension"
        notification.mkdir(parents=True, exist_ok=True)
        (notification / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        bin_dir = str(Path(sys.executable).parent)
        env = {
            **env,
            # The kernel is this interpreter's: "python3" resolves through PATH.
            "PATH": bin_dir + os.pathsep + env.get("PATH", os.defpath),
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        }
        self.log_path = ARTIFACTS / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._ready = threading.Event()  # it logged its URL
        self._exited = threading.Event()  # its output ended
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                app,
                "--no-browser",
                "--allow-root",
                "--ip=127.0.0.1",
                f"--port={self.port}",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={root}",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # stop() ends it and its kernels together
        )
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT) or self._exited.is_set():
            self.stop()
            raise RuntimeError(f"{app} did not start; its log: {self.log_path}")

    def _read_log(self) -> None:
        assert self._process.stdout is not None
        with self.log_path.open("w") as log:
            for line in self._process.stdout:
                log.write(line)
                log.flush()
                if f"http://127.0.0.1:{self.port}/" in line:
                    self._ready.set()
        self._exited.set()
        self._ready.set()  # let a waiter see it

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A REST call. A kernel still starting (a reloaded page starts one) has no last activity
        yet, and jupyter_server answers a list of kernels or sessions with a 500 until it has:
        a GET polls for a while."""
        for _ in range(40 if method == "GET" else 1):
            response = httpx.request(
                method,
                f"http://127.0.0.1:{self.port}/api/{path}",
                headers={"Authorization": f"token {self.token}"},
                timeout=30,
                **kwargs,
            )
            if response.status_code != 500:
                break
            time.sleep(0.25)
        response.raise_for_status()
        return response

    def notebook_url(self, name: str) -> str:
        """The notebook, alone: in JupyterLab, in a workspace of its own, so that no tab of an
        earlier test is restored beside it (with a kernel of its own)."""
        if self.app == "jupyterlab":
            return self.url(f"lab/workspaces/{Path(name).stem}/tree/{name}")
        return self.url(f"notebooks/{name}")

    def kernel_of(self, name: str) -> str | None:
        """The id of the kernel of the notebook ``name``'s session, if it has one yet."""
        for session in self.api("GET", "sessions").json():
            if session["path"] == name and session.get("kernel"):
                return str(session["kernel"]["id"])
        return None

    def write_notebook(self, name: str, cells: Sequence[str], kernel: str = "python3") -> Path:
        """The notebook, its kernel the kernelspec named ``kernel``."""
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        notebook.metadata["kernelspec"] = {
            "name": kernel,
            "display_name": kernel,
            "language": "python",
        }
        path = self.root / name
        nbformat.write(notebook, path)
        return path

    def shutdown_kernels(self) -> None:
        for kernel in self.api("GET", "kernels").json():
            self.api("DELETE", f"kernels/{kernel['id']}")

    def stop(self) -> None:
        """Stop the server; its kernels go with it (SIGKILL to the group if it lingers)."""
        self._process.terminate()
        try:
            self._process.wait(15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self._process.pid, signal.SIGKILL)  # kernels it left, if any
        except ProcessLookupError:
            pass
        self._process.wait()
        self._reader.join()  # the pipe's writers are all gone: its output ends
        if self._process.stdout is not None:
            self._process.stdout.close()


def screenshot_path(nodeid: str) -> Path:
    return ARTIFACTS / "screenshots" / (re.sub(r"[^\w.-]+", "_", nodeid) + ".png")


class Notebook:
    """A notebook written into ``app``'s root and opened in ``page``, its kernel connected."""

    def __init__(
        self, page: Page, app: JupyterApp, name: str, cells: list[str], kernel: str = "python3"
    ) -> None:
        self.page = page
        self.path = app.write_notebook(name, cells, kernel)

        # A cell run before the page has a kernel connection is dropped (and the execution
        # indicator says "idle" before there is a kernel): wait for this notebook's kernel's
        # websocket.
        def to_its_kernel(socket: WebSocket) -> bool:
            kernel = app.kernel_of(name)
            return kernel is not None and f"/api/kernels/{kernel}/" in socket.url

        # A guard, not a timing: a pinned stack's kernel in its own venv starts slowly on a busy
        # machine, and JupyterLab opens the kernel's websocket only once the kernel is up.
        with page.expect_websocket(to_its_kernel, timeout=KERNEL_START_TIMEOUT_MS):
            page.goto(app.notebook_url(name))
        self.cells = page.locator(".jp-NotebookPanel:visible .jp-Cell")
        expect(self.cells).to_have_count(len(cells))

    def cell(self, index: int) -> Locator:
        return self.cells.nth(index)

    def run(self, index: int) -> Locator:
        """Run one cell as a user does: select it, Ctrl+Enter (run, and stay on it).

        A key pressed while the freshly opened page is still settling its focus can reach no
        cell (seen in Notebook 7, about one run in ten): the prompt then stays "[ ]:", since a
        cell sent to the kernel at once shows "[*]:". Only then is the key pressed again, so no
        cell ever runs twice."""
        cell = self.cell(index)
        prompt = cell.locator(".jp-InputPrompt")
        for _ in range(3):
            prompt.click()
            self.page.keyboard.press("Control+Enter")
            try:
                expect(prompt).not_to_have_text(NOT_RUN, timeout=5_000)
                break
            except AssertionError:
                continue
        return cell

    def run_and_wait(self, index: int) -> Locator:
        cell = self.run(index)
        expect(cell.locator(".jp-InputPrompt")).to_have_text(RAN)
        return cell
