"""The Starlette app: its routes, and what they share.

Routes, each API's streamed and whole: ``POST /v1/chat/completions`` (OpenAI Chat Completions),
``POST /v1/responses`` (OpenAI Responses), ``POST /v1/messages`` (Anthropic Messages),
``POST /v1beta/models/{model}:streamGenerateContent`` and ``:generateContent`` (Gemini),
``POST /api/chat`` (Ollama); the model lists ``GET /v1/models`` (OpenAI's shape, or Anthropic's
when asked with ``anthropic-version``), ``GET /v1beta/models``, ``GET /api/tags``;
``GET /health``, and ``GET /stream?content=…``, the plain event stream of streaming tutorials.
Each route only decides: who may ask (:mod:`._access`), what was asked (:mod:`._body`,
:mod:`._dialects`), who answers (the built-in models of :mod:`._demo`, or :mod:`._relay`); every
answer that takes time runs as an :class:`~._exchange.Exchange`, and every error has the shape of
the API asked (:mod:`._errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._access import Access, busy
from ._body import ChatRequest, parse_chat, read_body
from ._clock import Clock
from ._config import ServerConfig
from ._demo import Frames, chat_frames, demo_stream, demo_whole, plain_stream
from ._dialects import anthropic, gemini, ollama, responses
from ._errors import EXCEPTION_HANDLERS, api_of, error_response
from ._exchange import Exchange, Exchanges, Work
from ._logging import LoggingApp
from ._models import MODELS

if TYPE_CHECKING:
    from .._target import Endpoint
    from ._relay import Relay

__all__ = ["ServerConfig", "create_app"]

Parse = Callable[[bytes, Request], "tuple[ChatRequest, Frames] | Response"]
Handler = Callable[[Request], Awaitable["Response | Exchange"]]


class ServerState(Exchanges):
    """What the app's routes share: the live exchanges and their slots, the access checks, the
    upstream (in relay mode) and the clock that paces the built-in models."""

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self.access = Access(config)
        self.relay: Endpoint | None = None  # the upstream, in relay mode
        self.clock = Clock()

    def exchange(self, work: Work, request: Request) -> Response | Exchange:
        return self.admit(work, request) or busy(self.config, api_of(request))


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

    def answer(parse: Parse, native: bool = True) -> Handler:
        """The route of one API's answers: its body read, relayed or parsed and answered."""

        async def route(request: Request) -> Response | Exchange:
            denied = state.access.check(request)
            if denied:
                return denied
            body = await read_body(request, config)
            if isinstance(body, Response):
                return body
            if relay is not None:
                work = relay.native(body, request) if native else relay.chat(body, request)
                return state.exchange(work, request)
            parsed = parse(body, request)
            if isinstance(parsed, Response):
                return parsed
            ask, frames = parsed
            if ask.stream:
                return state.exchange(demo_stream(ask, frames, config, state.clock), request)
            return state.exchange(demo_whole(ask, frames, config), request)

        return route

    def parse_chat_frames(body: bytes, request: Request) -> tuple[ChatRequest, Frames] | Response:
        parsed = parse_chat(body)
        return parsed if isinstance(parsed, Response) else (parsed, chat_frames(parsed))

    def model_list(listed: Callable[[Request], object | None]) -> Handler:
        """The route of one API's model list (``listed``: the list, or None for a 404)."""

        async def route(request: Request) -> Response | Exchange:
            denied = state.access.check(request)
            if denied:
                return denied
            if relay is not None:
                if api_of(request) == "chat":
                    return state.exchange(relay.models(), request)
                return state.exchange(relay.native(b"", request), request)
            found = listed(request)
            if found is None:
                message = "no such model on this server; its models are demo and echo"
                return error_response(404, message, code="model_not_found", api=api_of(request))
            return JSONResponse(found)

        return route

    def openai_or_anthropic_models(request: Request) -> object:
        if api_of(request) == "anthropic":
            return anthropic.model_list(MODELS)
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "jupyter-stream"} for m in MODELS
        ]
        return {"object": "list", "data": data}

    def gemini_model(request: Request) -> object | None:
        name = request.path_params["target"]
        return gemini.model_info(name) if name in MODELS else None

    models = model_list(openai_or_anthropic_models)

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

    chat = answer(parse_chat_frames, native=False)
    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/chat/completions", chat, methods=["POST"]),
        Route("/v1/responses", answer(responses.parse), methods=["POST"]),
        Route("/v1/messages", answer(anthropic.parse), methods=["POST"]),
        Route("/v1beta/models/{target}", answer(gemini.parse), methods=["POST"]),
        Route("/api/chat", answer(ollama.parse), methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route(
            "/v1beta/models",
            model_list(lambda _: {"models": [gemini.model_info(m) for m in MODELS]}),
            methods=["GET"],
        ),
        Route("/v1beta/models/{target}", model_list(gemini_model), methods=["GET"]),
        Route("/api/tags", model_list(lambda _: ollama.model_list(MODELS)), methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/stream", stream, methods=["GET"]),
    ]
    app = LoggingApp(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    app.state.server = state
    state.relay = relay.upstream if relay is not None else None
    return app
