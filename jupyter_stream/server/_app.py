"""The OpenAI-compatible Starlette app: built-in models, or a relay to a real upstream.

Routes: ``POST /v1/chat/completions`` (streamed and not), ``GET /v1/models``, ``GET /health``, and
``GET /stream?content=…``, the plain event stream of streaming tutorials, framed as SSE should be.
Errors have OpenAI's JSON shape: ``{"error": {"message", "type", "param", "code"}}``.

Every answer that takes time is an :class:`Exchange`: it runs its work while listening for the
client's disconnect, and cancels the work the moment the client goes (for a relay, that closes
the upstream request). A watchdog ends exchanges whose client has stopped reading, so a slow or
silent client cannot hold a stream slot for ever; a client that never finishes sending its body
gets a 408 after ``body_timeout``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hmac
import itertools
import json
import logging
import math
import re
import secrets
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from .._config import Endpoint
from ._clock import Clock, Player
from ._config import ServerConfig, is_loopback
from ._models import MAX_TOKENS_LIMIT, MODELS, answer_tokens, count_prompt_tokens, tokenize

__all__ = ["ServerConfig", "create_app"]

log = logging.getLogger("jupyter_stream.server")

TELL_WHY_TIMEOUT = 1.0  # seconds to tell a client why the server ended its stream
MAX_BATCH = 64  # tokens in one write, when several are due at once (a late or unpaced stream)
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tells nginx and friends not to buffer the stream
]


def create_app(
    config: ServerConfig | None = None, *, on_ready: Callable[[], None] | None = None
) -> Starlette:
    """The ASGI app; serve it with uvicorn (``jupyter-stream serve`` does). ``on_ready`` is
    called once the app has started."""
    config = config or ServerConfig()
    state = _State(config)
    if config.upstream:
        from ._relay import Relay

        relay: Relay | None = Relay(config)
    else:
        relay = None

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
        denied = state.check_access(request)
        if denied:
            return denied
        body = await _read_body(request, config)
        if isinstance(body, Response):
            return body
        if relay is not None:
            return state.exchange(relay.chat(body, request), request)
        parsed = _parse_chat(body)
        if isinstance(parsed, Response):
            return parsed
        if parsed.stream:
            return state.exchange(_demo_stream(parsed, config, state.clock), request)
        return state.exchange(_demo_whole(parsed, config), request)

    async def models(request: Request) -> Response | Exchange:
        denied = state.check_access(request)
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
        denied = state.check_access(request)
        if denied:
            return denied
        content = request.query_params.get("content", "Hello from a server-sent event stream!")
        try:
            resume = int(request.headers.get("last-event-id", "-1")) + 1
        except ValueError:
            resume = 0
        return state.exchange(_plain_stream(content, resume, config), request)

    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/stream", stream, methods=["GET"]),
    ]
    app = _App(routes=routes, lifespan=lifespan, exception_handlers=_EXCEPTION_HANDLERS)
    app.state.server = state
    state.relay = relay.upstream if relay is not None else None
    return app


# --- errors in OpenAI's shape


def error_response(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _http_exception(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    if status == 404:
        message = (
            f"no route {request.url.path}; the API lives under /v1 (e.g. /v1/chat/completions)"
        )
        return error_response(404, message, code="not_found")
    if status == 405:
        return error_response(405, f"{request.method} is not allowed on {request.url.path}")
    return error_response(status, str(getattr(exc, "detail", "error")))


_EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    404: _http_exception,
    405: _http_exception,
}


# --- request checks


async def _read_body(request: Request, config: ServerConfig) -> bytes | Response:
    """The request body, or the error response: 413 when over the cap, 408 when too slow."""
    limit = config.max_body_bytes
    too_large = error_response(
        413, f"request body over {limit} bytes; send a smaller request", code="body_too_large"
    )
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return too_large

    async def read() -> bytes | Response:
        parts, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > limit:
                return too_large
            parts.append(part)
        return b"".join(parts)

    try:
        if sys.version_info >= (3, 11):  # no task of its own, unlike wait_for
            async with asyncio.timeout(config.body_timeout):
                return await read()
        return await asyncio.wait_for(read(), config.body_timeout)
    except asyncio.TimeoutError:
        return error_response(
            408, f"request body not received within {config.body_timeout:g} s", code="timeout"
        )
    except ClientDisconnect:
        return Response(status_code=400)  # nobody is there to read it


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    max_tokens: int | None
    include_usage: bool


def _parse_chat(body: bytes) -> ChatRequest | Response:
    try:
        text = body.decode(json.detect_encoding(body))  # strictly: json.loads(bytes) would let
        request = json.loads(text)  # an encoded lone surrogate in
    except UnicodeDecodeError as exc:
        return error_response(
            400,
            f"the request body is not UTF-8 text: {exc}; send JSON in UTF-8",
            code="invalid_json",
        )
    except ValueError as exc:
        return error_response(
            400, f"the request body is not valid JSON: {exc}", code="invalid_json"
        )
    except RecursionError:  # a parser's stack, not the server's failure: one log line, a 400
        return error_response(
            400,
            "the request body nests arrays or objects too deeply to read; send flatter JSON",
            code="invalid_json",
        )
    if not isinstance(request, dict):
        return error_response(400, "the request body must be a JSON object", code="invalid_json")
    if _ESCAPED_SURROGATE.search(text):  # is each one half of a pair?
        field = _lone_surrogate(request)
        if field is not None:
            return error_response(
                400,
                f"{field} holds a lone surrogate (such as \\ud800), which is not text; send "
                "valid Unicode",
                param=field,
            )
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return error_response(
            400,
            'messages is missing or empty: send e.g. [{"role": "user", "content": "Hello"}]',
            param="messages",
            code="missing_messages",
        )
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        return error_response(
            400, "each message must be an object with a role and content", param="messages"
        )
    model = request.get("model")
    if not isinstance(model, str) or not model:
        return error_response(400, "model is missing: use demo or echo", param="model")
    if model not in MODELS:
        return error_response(
            404,
            f"The model `{model}` does not exist on this server; its models are demo and echo "
            "(GET /v1/models)",
            param="model",
            code="model_not_found",
        )
    max_tokens = request.get("max_completion_tokens", request.get("max_tokens"))
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        return error_response(400, "max_tokens must be a positive integer", param="max_tokens")
    if max_tokens is not None and max_tokens > MAX_TOKENS_LIMIT:
        return error_response(
            400, f"max_tokens is too large: at most {MAX_TOKENS_LIMIT}", param="max_tokens"
        )
    if request.get("n", 1) != 1:
        return error_response(400, "n must be 1 on this server", param="n")
    options = request.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    return ChatRequest(model, messages, bool(request.get("stream")), max_tokens, include_usage)


_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # after json.loads, only lone ones are left


def _lone_surrogate(request: dict[str, Any]) -> str | None:
    """The name of the first field of ``request`` that holds a lone surrogate anywhere (in a
    string or a key, however deep), which no UTF-8 answer or log line could encode."""
    for key, value in request.items():
        todo: list[Any] = [key, value]  # a list, not recursion: the JSON may be deep
        while todo:
            item = todo.pop()
            if isinstance(item, str):
                if _SURROGATE.search(item):
                    return _printable(key, 40)
            elif isinstance(item, dict):
                todo.extend(item)
                todo.extend(item.values())
            elif isinstance(item, list):
                todo.extend(item)
    return None


# --- exchanges: work that stops the moment the client goes


Work = Callable[["Exchange"], Awaitable[None]]


class Exchange:
    """An ASGI response running ``work(self)``, cancelled when the client disconnects, when the
    client stops reading for ``stall_timeout``, or when the server shuts down.

    ``work`` writes through :meth:`start` and :meth:`body`, and may note what it did in
    :attr:`log` (the model, tokens, why it ended) for the request's log line. When the server
    ends an event stream that its client is still reading, the client is told why in an SSE
    error event; when the work fails before it has started its response, the client gets a 500.
    """

    def __init__(self, work: Work, state: _State, request: Request) -> None:
        self._work = work
        self._state = state
        self.log: dict[str, Any] = request.scope.setdefault("jupyter_stream.log", {})
        self.raw_send: Send | None = request.scope.get("jupyter_stream.send")
        self._send: Send | None = None
        self._task: asyncio.Future[None] | None = None
        self.started = self.completed = self.events = False
        self.sending = False  # a body write is under way (it blocks when the client reads nothing)
        self.writes = 0
        self.stall: tuple[int, float] | None = None  # (writes, since): the watchdog's note
        self.stuck = False  # a write was waiting for the client when the exchange was cancelled

    async def start(
        self, status: int = 200, headers: list[tuple[bytes, bytes]] = SSE_HEADERS
    ) -> None:
        assert self._send is not None
        self.started = True
        self.events = headers is SSE_HEADERS
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        if self.raw_send is None:  # served without our _App around it
            self.raw_send = self._send

    async def body(self, data: bytes, more: bool = True) -> None:
        assert self.raw_send is not None
        self.sending = True
        await self.raw_send({"type": "http.response.body", "body": data, "more_body": more})
        self.sending = False
        self.writes += 1
        self.completed = not more

    def blocked(self, sending: bool) -> None:
        """A write is waiting for the client to read (True), or no longer (False)."""
        self.sending = sending
        with self._state.changed:
            self._state.changed.notify_all()

    def cancel(self, why: str) -> None:
        self.log.setdefault("end", why)
        self.stuck = self.stuck or self.sending  # its client is not reading: tell it nothing
        if self._task is not None:
            self._task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._send = send
        self._task = task = asyncio.ensure_future(self._work(self))
        watcher = asyncio.ensure_future(_disconnected(receive))
        self._state.begin(self)
        try:
            try:
                await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
                if watcher.done() and not task.done():
                    self.cancel("client disconnected")
            finally:
                watcher.cancel()
                task.cancel()  # when the server shuts down, our own task is the one cancelled
                failure = await _outcome(task)  # it cleans up: a relay closes its upstream here
                if failure is not None:
                    self.log["end"] = f"server error ({type(failure).__name__})"
                    log.error("%s failed", scope.get("path"), exc_info=failure)
                if not watcher.done() or watcher.cancelled():  # the client is still there
                    await self._tell_why(failure)
        finally:
            self._state.end(self)

    async def _tell_why(self, failure: BaseException | None) -> None:
        why = str(self.log.get("end", "server error"))
        if not self.started and failure is not None:
            error = error_response(500, f"the server failed: {why}", type="server_error")
            await self.start(500, error.raw_headers)
            await self.body(bytes(error.body), more=False)
        elif self.events and not self.completed and not self.stuck:
            body = {"error": {"message": f"the server ended this stream: {why}",
                              "type": "server_error", "param": None, "code": None}}  # fmt: skip
            with contextlib.suppress(asyncio.TimeoutError):  # nor wait long for a slow reader
                await asyncio.wait_for(
                    self.body(b"data: " + json.dumps(body).encode() + b"\n\n", more=False),
                    TELL_WHY_TIMEOUT,
                )


async def _outcome(task: asyncio.Future[None]) -> BaseException | None:
    """Wait for ``task``; the exception it failed with, if any (its cancellation is none)."""
    try:
        await task
    except asyncio.CancelledError:
        return None
    except Exception as exc:
        return exc
    return None


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _State:
    """What the app's routes share: the live exchanges, the slot count, the access checks."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.exchanges: set[Exchange] = set()
        self.slots = 0
        self.ended: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self.changed = threading.Condition()  # notified as exchanges begin and end
        self.relay: Endpoint | None = None  # the upstream, in relay mode
        self.clock = Clock()  # paces the demo model's streams
        key = config.api_key
        self._expected = f"Bearer {key}".encode() if key else None

    def check_access(self, request: Request) -> Response | None:
        """None if ``request`` may be served: it has the key, or (on a server without a key)
        it names a loopback host and comes from no other site's page."""
        if self._expected is not None:
            given = request.headers.get("authorization", "").encode()
            if hmac.compare_digest(given, self._expected):
                return None
            return error_response(
                401,
                "missing or wrong API key: send the key this server was started with "
                "(--api-key) as Authorization: Bearer <key>",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        # Without a key, only this machine may use the server: a web page elsewhere can make
        # a browser send requests to 127.0.0.1, under its own Origin, or under a name of its
        # own that it resolves to 127.0.0.1 (DNS rebinding), so both are checked.
        host = request.headers.get("host", "")
        origin = request.headers.get("origin")
        if _is_loopback_url(f"//{host}") and (origin is None or _is_loopback_url(origin)):
            return None
        return error_response(
            403,
            "this server has no API key, so it answers only requests for a loopback address "
            "(127.0.0.1, localhost) that come from no other site; start it with --api-key to "
            "serve others",
            code="forbidden_host",
        )

    def exchange(self, work: Work, request: Request) -> Response | Exchange:
        if self.slots >= self.config.max_streams:
            return error_response(
                429,
                f"this server is busy: {self.config.max_streams} streams are open; "
                "retry after the time in Retry-After",
                type="rate_limit_error",
                code="too_many_streams",
                headers={"Retry-After": "1"},
            )
        self.slots += 1  # given back by Exchange.__call__, which Starlette always calls
        return Exchange(work, self, request)

    def begin(self, exchange: Exchange) -> None:
        with self.changed:
            self.exchanges.add(exchange)
            self.changed.notify_all()

    def end(self, exchange: Exchange) -> None:
        with self.changed:
            self.exchanges.discard(exchange)
            self.slots -= 1
            self.ended.append(exchange.log)
            self.changed.notify_all()

    def close_all(self, why: str) -> None:
        for exchange in list(self.exchanges):
            exchange.cancel(why)

    async def watch_stalls(self) -> None:
        """End exchanges whose client has read nothing for ``stall_timeout``: a write that
        has not returned since the last look, for that long."""
        limit = self.config.stall_timeout
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            now = time.monotonic()
            for exchange in list(self.exchanges):
                if not exchange.sending:
                    exchange.stall = None
                elif exchange.stall is None or exchange.stall[0] != exchange.writes:
                    exchange.stall = (exchange.writes, now)
                elif now - exchange.stall[1] >= limit:
                    exchange.cancel(f"client read nothing for {limit:g} s")


@functools.lru_cache(maxsize=256)
def _is_loopback_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if host is None:
        return False
    return host.endswith(".localhost") or is_loopback(host)  # *.localhost: RFC 6761


# --- the built-in models


class _Pace:
    """When each token is due: ``first_token_delay``, then one every 1/``tokens_per_second``."""

    def __init__(self, config: ServerConfig) -> None:
        rate = config.tokens_per_second
        self.interval = 1.0 / rate if rate and math.isfinite(rate) else 0.0
        self.start = time.monotonic() + config.first_token_delay

    def due(self, index: int) -> float:
        return self.start + index * self.interval

    async def wait(self, index: int) -> None:
        delay = self.due(index) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


class _Chunks:
    """The ``chat.completion.chunk`` events of one answer, written fast: the part before the
    delta is built once."""

    def __init__(self, model: str) -> None:
        created = int(time.time())
        self.id = f"chatcmpl-{secrets.token_hex(12)}"
        head = (
            f'{{"id":"{self.id}","object":"chat.completion.chunk","created":{created},'
            f'"model":{json.dumps(model)},"system_fingerprint":"jupyter-stream",'
            f'"choices":[{{"index":0,"delta":'
        )
        self.head = b"data: " + head.encode()
        self.tail = b',"logprobs":null,"finish_reason":null}]}\n\n'
        self.usage_head = (
            f'data: {{"id":"{self.id}","object":"chat.completion.chunk","created":{created},'
            f'"model":{json.dumps(model)},"choices":[],"usage":'
        ).encode()

    def delta(self, delta: str) -> bytes:
        return self.head + delta.encode() + self.tail

    def content(self, token: str) -> bytes:
        return b'%s{"content":%s}%s' % (self.head, _json_string(token), self.tail)

    def finish(self, reason: str) -> bytes:
        return self.head + b'{},"logprobs":null,"finish_reason":"' + reason.encode() + b'"}]}\n\n'

    def usage(self, usage: dict[str, int]) -> bytes:
        return self.usage_head + json.dumps(usage).encode() + b"}\n\n"


@functools.lru_cache(maxsize=8192)
def _json_string(text: str) -> bytes:
    """``text`` as a JSON string, in UTF-8 (cached: a model's tokens repeat)."""
    return json.dumps(text, ensure_ascii=False).encode()


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _answer(request: ChatRequest) -> Iterator[str]:
    return answer_tokens(request.model, request.messages, endless=request.max_tokens is not None)


def _demo_stream(request: ChatRequest, config: ServerConfig, clock: Clock) -> Work:
    async def work(exchange: Exchange) -> None:
        pace = _Pace(config)
        chunks = _Chunks(request.model)
        exchange.log.update(model=request.model, stream=True, tokens=0)
        await exchange.start()
        await exchange.body(chunks.delta('{"role":"assistant","content":""}'))
        limit = math.inf if request.max_tokens is None else request.max_tokens
        player = Player(
            clock, exchange, _answer(request), chunks.content, pace.due, limit, MAX_BATCH
        )
        player.start()
        try:
            sent, finish = await player.done
        finally:
            player.stop()
        tail = [chunks.finish(finish)]
        if request.include_usage:
            tail.append(chunks.usage(_usage(count_prompt_tokens(request.messages), sent)))
        tail.append(b"data: [DONE]\n\n")
        await exchange.body(b"".join(tail), more=False)
        exchange.log.update(tokens=sent, end=finish)

    return work


def _demo_whole(request: ChatRequest, config: ServerConfig) -> Work:
    async def work(exchange: Exchange) -> None:
        pace = _Pace(config)
        exchange.log.update(model=request.model, stream=False)
        limit = request.max_tokens
        tokens = list(
            _answer(request) if limit is None else itertools.islice(_answer(request), limit + 1)
        )
        finish = "stop"
        if limit is not None and len(tokens) > limit:
            tokens, finish = tokens[:limit], "length"
        await pace.wait(max(len(tokens) - 1, 0))  # a model takes its time, streamed or not
        completion = {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "system_fingerprint": "jupyter-stream",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(tokens)},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": _usage(count_prompt_tokens(request.messages), len(tokens)),
        }
        body = json.dumps(completion, ensure_ascii=False).encode()
        await exchange.start(200, [(b"content-type", b"application/json")])
        await exchange.body(body, more=False)
        exchange.log.update(tokens=len(tokens), end=finish)

    return work


_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the spec's line ends


def sse_event(data: str, *, id: str | None = None, event: str | None = None) -> bytes:
    """One event, framed as the WHATWG spec reads it: each line of ``data`` on a ``data:``
    line of its own (a bare newline in a ``data:`` line would end the event early)."""
    lines = []
    if event is not None:
        lines.append(f"event: {event}\n")
    if id is not None:
        lines.append(f"id: {id}\n")
    lines.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    lines.append("\n")
    return "".join(lines).encode()


def _plain_stream(content: str, resume: int, config: ServerConfig) -> Work:
    async def work(exchange: Exchange) -> None:
        pace = _Pace(config)
        tokens = tokenize(content)
        exchange.log.update(stream=True, tokens=0)
        await exchange.start()
        await exchange.body(b"retry: 3000\n\n")
        for index in range(max(resume, 0), len(tokens)):
            await pace.wait(index - resume)
            await exchange.body(sse_event(tokens[index], id=str(index)))
            exchange.log["tokens"] = index + 1
        await exchange.body(sse_event("[DONE]", event="done"), more=False)
        exchange.log["end"] = "stop"

    return work


class _App(Starlette):
    """The Starlette app, with one log line per request (written when its answer has ended),
    and the server's own ``send`` kept in the scope: an :class:`Exchange` writes its body
    through it, past the middleware's wrappers, which matter only for the response's start."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        scope["jupyter_stream.send"] = send
        if not self.state.server.config.log_requests or not log.isEnabledFor(logging.INFO):
            await super().__call__(scope, receive, send)
            return
        started = time.monotonic()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await super().__call__(scope, receive, send_status)
        finally:
            notes = scope.get("jupyter_stream.log", {})
            extra = " ".join(f"{key}={_printable(value)}" for key, value in notes.items())
            client = scope.get("client") or ("-", 0)
            log.info(
                '%s:%s "%s %s" %s %.1f ms %s',
                client[0],
                client[1],
                scope["method"],
                _printable(scope.get("raw_path", b"").decode("latin-1")),
                status or "-",
                (time.monotonic() - started) * 1000,
                extra,
            )


def _printable(value: object, limit: int = 200) -> str:
    """``value`` for a log line: control characters escaped (no forged lines), at most
    ``limit`` characters."""
    text = str(value)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 1] + "…"
