"""The server on a thread of its own, and the embedded default that uses it.

:class:`BackgroundServer` binds its socket in the caller's thread, which takes microseconds, and
leaves everything slow (importing Starlette and uvicorn, about 200 ms cold) to its own thread: a
client that connects before uvicorn is up waits in the listen backlog, so starting the embedded
default never blocks a kernel's event loop.

:func:`embedded_base_url` starts one such server per process (again after a fork), on a free
loopback port, the first time a stream has no endpoint configured. It logs nothing anyone sees
unless logging is configured to show it, and stops with the process.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import socket
import threading
from types import TracebackType
from typing import Any

from .._exceptions import ConfigurationError
from ._config import ServerConfig

__all__ = ["BackgroundServer", "embedded_base_url", "stop_embedded"]

LOOPBACK = "127.0.0.1"


class BackgroundServer:
    """The OpenAI-compatible server, served by uvicorn on a daemon thread.

    ``with BackgroundServer(config) as server:`` starts it, waits until it accepts requests, and
    stops it on exit; ``server.base_url`` is its API root (``http://127.0.0.1:PORT/v1``).
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        graceful_timeout: int = 1,
    ) -> None:
        self.config = config or ServerConfig()
        self.host = host
        self.port = port
        self.graceful_timeout = graceful_timeout
        self.error: BaseException | None = None
        self.pid = os.getpid()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._server: object | None = None  # the uvicorn.Server, once made
        self.app: Any = None  # the Starlette app, once made (on the server's thread)
        self._ready = threading.Event()
        self._stopping = False

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> str:
        """Bind, start the thread, and return the API root at once (see the module docstring)."""
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(2048)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._run, name=f"jupyter_stream-server-{self.port}", daemon=True
        )
        self._thread.start()
        return self.base_url

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the server accepts requests; raise what stopped it from starting."""
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the server on port {self.port} did not start in {timeout:g} s")
        if self.error is not None:
            raise RuntimeError(f"the server on port {self.port} failed to start") from self.error

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving (open streams get ``graceful_timeout`` to end) and join the thread."""
        self._stopping = True
        server = self._server
        if server is not None:
            server.should_exit = True  # type: ignore[attr-defined]
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        self.start()
        self.wait_ready()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.alive else "stopped"
        return f"<BackgroundServer {self.base_url} {state}>"

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        try:
            from ._app import create_app

            self.app = create_app(self.config, on_ready=self._ready.set)
            server = uvicorn_server(self.app, graceful_timeout=self.graceful_timeout)
            self._server = server
            if not self._stopping:
                server.run(sockets=[sock])  # on uvloop when it is installed, as uvicorn does
        except BaseException as exc:  # kept for wait_ready() and the embedded default's error
            self.error = exc
        finally:
            sock.close()  # connections still in the backlog are refused, not left hanging
            self._ready.set()


def uvicorn_server(app: Any, *, graceful_timeout: int) -> Any:
    """A ``uvicorn.Server`` for ``app`` that, when asked to stop, first ends the app's open
    streams (each told why in an SSE error event), so that stopping does not wait for them.
    Its connections keep the app's ``header_timeout`` and ``idle_timeout``."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            app.state.server.close_all("server shutting down")
            await super().shutdown(sockets=sockets)

    settings: ServerConfig = app.state.server.config
    timeouts: dict[str, Any] = {"timeout_keep_alive": settings.idle_timeout}  # a float works
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=graceful_timeout,
        http=_with_header_timeout(settings.header_timeout),
        **timeouts,
    )
    return Server(config)


def _with_header_timeout(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools or h11), closing a connection whose request head has
    not arrived ``seconds`` after it opened or after its last answer ended.

    uvicorn has no such timeout: its keep-alive timer stops at a request's first byte and does
    not run before the first request, so a client that connects and sends nothing, or sends a
    head a byte at a time (slowloris), would hold its connection for ever, before any API key
    is checked. Once a head has arrived, the app's body, stall and stream limits take over.
    """
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol

    class HeaderTimeoutProtocol(base):  # type: ignore[misc]
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._await_head()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._busy():  # a whole head has arrived: its request is under way
                self._stop_waiting()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self._busy() and not self.transport.is_closing():  # none pipelined
                self._await_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_waiting()
            super().connection_lost(exc)

        def _busy(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _await_head(self) -> None:
            self._stop_waiting()
            self._head_timer = self.loop.call_later(seconds, self._head_late)

        def _stop_waiting(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self) -> None:
            self._head_timer = None
            if not self._busy() and not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


_lock = threading.Lock()
_embedded: BackgroundServer | None = None


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


def embedded_base_url() -> str:
    """The API root of this process's embedded demo server, started on first use."""
    global _embedded
    with _lock:
        server = _embedded
        if server is not None and server.pid == os.getpid():
            if server.error is not None:
                raise ConfigurationError(
                    "the embedded demo server failed to start "
                    f"({type(server.error).__name__}: {server.error}); reinstall jupyter-stream "
                    "with its dependencies, or point JUPYTER_STREAM_BASE_URL at a server"
                ) from server.error
            if server.alive:
                return server.base_url
        # Nothing may reach a notebook's stderr: no request lines, and uvicorn's own records
        # (say, a stream cut at exit) stay off the root logger unless uvicorn's logging has
        # been set up by somebody.
        uvicorn_log = logging.getLogger("uvicorn")
        if not uvicorn_log.handlers:
            uvicorn_log.addHandler(logging.NullHandler())
            uvicorn_log.propagate = False
        server = BackgroundServer(ServerConfig(log_requests=False))
        server.start()
        _embedded = server
        return server.base_url


@atexit.register
def stop_embedded() -> None:
    """Stop the embedded server if this process started one (it also stops at exit)."""
    global _embedded
    with _lock:
        server, _embedded = _embedded, None
    if server is not None and server.pid == os.getpid():
        server.stop()
