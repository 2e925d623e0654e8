from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from llmock_server import LLMock
from scripted_server import ScriptedServer

from jupyter_stream.server import BackgroundServer, ServerConfig

ENV_VARS = (
    *("JUPYTER_STREAM_BASE_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "JUPYTER_STREAM_MODEL"),
    *("MODEL_PROXY_HOST", "MODEL_PROXY_BASE_URL", "MODEL_PROXY_API_KEY"),  # Colab's model proxy
    *("JUPYTER_STREAM_API", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),  # the other APIs'
    *("GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "OLLAMA_HOST"),
)


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


def _sockets() -> list[tuple[int | None, int | None, bool]]:
    """(local port, peer port, listening) of each of this process's socket fds; a port is None
    for a socket that has none (not TCP, or no peer)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            # A duplicate, so that closing our socket object leaves the process's fd alone.
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:  # closed meanwhile
            continue
        with sock:
            local = peer = None
            listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                local = sock.getsockname()[1]
                try:
                    peer = sock.getpeername()[1]
                except OSError:  # shut down, or never connected
                    peer = None
            found.append((local, peer, listening))
    return found


def socket_fds(*, servers: bool = True) -> int:
    """How many socket fds this process holds. A socket that was shut down but never closed
    counts (``/proc/net/tcp`` no longer lists it). ``servers=False`` leaves out the sockets of
    servers in this process (bound to a port something here listens on), which each server
    closes on its own thread, in its own time."""
    sockets = _sockets()
    if servers:
        return len(sockets)
    ports = {local for local, _, listening in sockets if listening}
    return sum(1 for local, _, _ in sockets if local is None or local not in ports)


def client_sockets(port: int) -> int:
    """This process's client ends of connections to ``port`` on loopback, plus every TCP
    socket of this process left shut down but open (no peer, not listening, not a server's):
    such a socket is a leak whatever it was connected to, and ``/proc/net/tcp`` misses it."""
    sockets = _sockets()
    servers = {local for local, _, listening in sockets if listening}
    return sum(
        1
        for local, peer, listening in sockets
        if peer == port
        or (local is not None and peer is None and not listening and local not in servers)
    )


@pytest.fixture(scope="session")
def demo_server() -> Iterator[BackgroundServer]:
    """Our OpenAI-compatible server on 127.0.0.1, its demo model as fast as it can go."""
    with BackgroundServer(ServerConfig(tokens_per_second=0, first_token_delay=0)) as server:
        yield server


@pytest.fixture
def make_server() -> Iterator[Callable[..., BackgroundServer]]:
    """Start servers of a given ServerConfig for one test; all stop when it ends."""
    servers: list[BackgroundServer] = []

    def make(**config: Any) -> BackgroundServer:
        server = BackgroundServer(ServerConfig(**config))
        servers.append(server)
        server.__enter__()
        return server

    yield make
    for server in servers:
        server.stop()
        assert not server.alive, f"{server} did not stop"


def wait_for_exchanges(server: BackgroundServer, predicate: Callable[[Any], bool]) -> None:
    """Wait (on the server's condition, not a sleep) until ``predicate(state)`` holds."""
    state = server.app.state.server
    with state.changed:
        assert state.changed.wait_for(lambda: predicate(state), 10), "the server never got there"


def ended(server: BackgroundServer) -> list[dict[str, Any]]:
    """The server's log of the exchanges it has ended, oldest first."""
    return list(server.app.state.server.ended)


def ended_since(server: BackgroundServer, before: int) -> list[dict[str, Any]]:
    """The exchanges the server ended since it had ended ``before``, once there is one (a
    client can see its stream end before the server's thread has logged it)."""
    wait_for_exchanges(server, lambda state: len(state.ended) > before)
    return ended(server)[before:]


def user_env(**settings: str) -> dict[str, str]:
    """This process's environment for a child (a kernel, a Jupyter server) as a new user's:
    none of the developer's endpoint variables, plus ``settings``."""
    env = {name: value for name, value in os.environ.items() if name not in ENV_VARS}
    return env | settings


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item (the browser tests screenshot a failure)."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


# llmock, a provider mock we did not write (PyPI), one process for the whole run. echo: its answer
# quotes the prompt, which shows that the request carried it.
LLMOCK_ARGS = ("--stream-chunk-delay-ms", "20", "--response-style", "echo")
LLMOCK_ARGS += ("--log-level", "warning")


@pytest.fixture(scope="session")
def llmock() -> Iterator[LLMock]:
    with LLMock(*LLMOCK_ARGS) as server:
        yield server


@pytest.fixture
def mock(llmock: LLMock) -> Iterator[LLMock]:
    """llmock with nothing scripted and an empty journal, before and after the test."""
    llmock.reset()
    yield llmock
    llmock.reset()
