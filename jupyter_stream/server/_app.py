"""The OpenAI-compatible Starlette app: its routes, and what they share.

Routes: ``POST /v1/chat/completions`` (streamed and not), ``GET /v1/models``, ``GET /health``, and
``GET /stream?content=…``, the plain event stream of streaming tutorials. Each route only
decides: who may ask (:mod:`._access`), what was asked (:mod:`._body`), who answers (the built-in
models of :mod:`._demo`, or :mod:`._relay`); every answer that takes time runs as an
:class:`~._exchange.Exchange`, and every error has OpenAI's shape (:mod:`._errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._access import Access, busy
from ._body import parse_chat, read_body
from ._clock import Clock
from ._config import ServerConfig
from ._demo import demo_stream, demo_whole, plain_stream
from ._errors import EXCEPTION_HANDLERS
from ._exchange import Exchange, Exchanges, Work
from ._logging import LoggingApp
from ._models import MODELS

if TYPE_CHECKING:
    from .._target import Endpoint
    from ._relay import Relay

__all__ = ["ServerConfig", "create_app"]


class ServerState(Exchanges):
    """What the app's routes share: the live exchanges and their slots, the access checks, the
    upstream (in relay mode) and the clock that paces the built-in models."""

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.access = Access(config)
        self.relay: Endpoint | None = None  # the upstream, in relay mode
        self.clock = Clock()

    def exchange(self, work: Work, request: Request) -> Response | Exchange:
        return self.admit(work, request) or busy(self.config)


def create_app(
    config: ServerConfig | None = None, *, on_ready: Callable[[], None] | None = None
) -> Starlette:
    """The ASGI app; serve it with uvicorn (``jupyter-stream serve`` does). ``on_ready`` is
    called once the app has started."""
    config = config or ServerConfig()
    state = ServerState(config)
    relay: Relay | None = None
    if config.upstream:
        from ._relay import Relay  # httpx only in relay mode

        relay = Relay(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.clock = Clock()  # one per run: an app may be served again, on another loop
        watchdog = asyncio.ensure_future(state.watch_stalls())
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            watchdog.cancel()
            state.close_all("server shutting down")
            if relay is not None:
                await relay.aclose()

    async def chat(request: Request) -> Response | Exchange:
        denied = state.access.check(request)
        if denied:
            return denied
        body = await read_body(request, config)
        if isinstance(body, Response):
            return body
        if relay is not None:
            return state.exchange(relay.chat(body, request), request)
        parsed = parse_chat(body)
        if isinstance(parsed, Response):
            return parsed
        if parsed.stream:
            return state.exchange(demo_stream(parsed, config, state.clock), request)
        return state.exchange(demo_whole(parsed, config), request)

    async def models(request: Request) -> Response | Exchange:
        denied = state.access.check(request)
        if denied:
            return denied
        if relay is not None:
            return state.exchange(relay.models(), request)
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "jupyter-stream"} for m in MODELS
        ]
        return JSONResponse({"object": "list", "data": data})

    async def health(request: Request) -> Response:
        mode = "relay" if relay is not None else "demo"
        return JSONResponse({"status": "ok", "mode": mode, "streams": len(state.exchanges)})

    async def stream(request: Request) -> Response | Exchange:
        denied = state.access.check(request)
        if denied:
            return denied
        content = request.query_params.get("content", "Hello from a server-sent event stream!")
        model = request.query_params.get("model")
        if relay is not None:
            resuming = "last-event-id" in request.headers
            return state.exchange(relay.plain(content, model, resuming), request)
        try:
            resume = int(request.headers.get("last-event-id", "-1")) + 1
        except ValueError:
            resume = 0
        work = plain_stream(content, resume, config, state.clock, model or "demo")
        return state.exchange(work, request)

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/stream", stream, methods=["GET"]),
    ]
    app = LoggingApp(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    app.state.server = state
    state.relay = relay.upstream if relay is not None else None
    return app
