"""llmock (a mock LLM server from PyPI that we did not write) as a subprocess on 127.0.0.1.

``LLMock`` starts ``llmock serve`` on a free port, waits until it answers ``GET /health``, and
drives its control API: scripted behaviours (``POST /_llmock/scenario``: a long reply, a stream
fault) and the request journal (``GET /_llmock/requests``: ``completed: false`` for a client
that left mid-stream). Where each API lives on it is :data:`BASE_PATHS`; llmock serves no Ollama.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

__all__ = ["BASE_PATHS", "MODELS", "PROVIDERS", "LLMock", "free_port"]

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 30.0
JOURNAL_TIMEOUT = 20.0  # bound on waiting for a request's journal record

# api= name -> the base URL's path on llmock, as the API's official SDK takes it.
BASE_PATHS = {"chat": "/v1", "responses": "/v1", "anthropic": "/anthropic", "gemini": "/gemini"}
MODELS = {
    "chat": "gpt-4o",
    "responses": "gpt-4o",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.0-flash",
}
# api= name -> llmock's provider name (a scenario's match, a journal record's "provider").
PROVIDERS = {"chat": "openai", "responses": "openai", "anthropic": "anthropic", "gemini": "gemini"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class LLMock:
    """One ``llmock serve`` process; ``start()``, then ``stop()`` (also a context manager)."""

    def __init__(self, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="llmock-", suffix=".log", delete=False)  # noqa: SIM115
        self.http = httpx.Client(base_url=self.root, timeout=30, trust_env=False)

    @property
    def root(self) -> str:
        return f"http://{HOST}:{self.port}"

    def base_url(self, api: str) -> str:
        return self.root + BASE_PATHS[api]

    def start(self) -> LLMock:
        executable = Path(sys.executable).with_name("llmock")
        argv = [str(executable), "serve", "--host", HOST, "--port", str(self.port), *self.args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOCK_")}
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if self.http.get("/health", timeout=1).status_code == 200:
                    return self
            # Waits for the process to die, so that a failed start is not waited out.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=0.1)
                raise RuntimeError(f"llmock exited with {self.proc.returncode}:\n{self.log()}")
        self.stop()
        raise RuntimeError(f"llmock did not answer in {STARTUP_TIMEOUT:g} s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.http.close()
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)

    def __enter__(self) -> LLMock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        """The tail of what llmock printed."""
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")[-4000:]

    # -- the control API ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget the journal and any behaviour still queued."""
        self.http.post("/_llmock/reset").raise_for_status()

    def script(self, *behaviors: dict[str, Any]) -> None:
        """Queue behaviours (llmock's JSON form, e.g. ``{"type": "stream_fault", ...}``)."""
        self.http.post("/_llmock/scenario", json={"behaviors": list(behaviors)}).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        """The journal (llmock waits up to 2 s for requests still in flight)."""
        response = self.http.get("/_llmock/requests")
        response.raise_for_status()
        return list(response.json()["requests"])

    def record(
        self, marker: str, done: Callable[[dict[str, Any]], bool] = lambda _r: True
    ) -> dict[str, Any]:
        """The journal record of the request whose body holds ``marker``, once ``done`` holds
        for it: polled, each read blocking in llmock while requests are in flight."""
        deadline = time.monotonic() + JOURNAL_TIMEOUT
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            seen = [r for r in self.requests() if marker in json.dumps(r.get("body"))]
            if seen and done(seen[-1]):
                return seen[-1]
        raise AssertionError(f"no journal record with {marker!r} came to pass; last seen {seen}")
