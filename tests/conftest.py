from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from scripted_server import ScriptedServer

ENV_VARS = ("JUPYTER_STREAM_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "JUPYTER_STREAM_MODEL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's real endpoint or key."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def _server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


@pytest.fixture
def server(_server: ScriptedServer) -> Iterator[ScriptedServer]:
    """The scripted loopback server, reset for this test."""
    _server.reset()
    yield _server
    _server.reset()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))
