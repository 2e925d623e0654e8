"""Relay mode: forward each API's requests to a real server that speaks it, stream its answer back.

``/v1/chat/completions`` goes to the upstream base URL's ``/chat/completions`` (the base is an
OpenAI API root, ``…/v1``); every native API's request (Responses, Anthropic Messages, Gemini,
Ollama, and their model lists) goes to the upstream's root (the base without a trailing ``/v1``)
plus the request's own path, with the relay's key in that API's own header (the header its
wire format's ``headers()`` sends, as the client does; Anthropic's ``anthropic-version`` and
``anthropic-beta`` are the client's, else version 2023-06-01; the client's own key is never
forwarded).

So an upstream at a provider's OpenAI-compatible path (such as Gemini's ``…/v1beta/openai``)
serves only Chat Completions: a native API's request would go to that path plus its own, which
is no URL of the provider's; relaying native APIs needs the provider's host (or an OpenAI root,
``…/v1``) as the upstream. ``GET /stream`` and ``GET /v1/models`` (without ``anthropic-version``)
speak Chat Completions to the upstream whatever API its clients speak: they need an upstream
that serves ``/chat/completions`` and ``/models`` below its base URL.

The upstream's bytes are passed on as they arrive, cut only at event boundaries (an SSE event, or
an NDJSON line, split across two reads goes out when its end arrives, which is when a client could
use it anyway), so that an error found mid-answer can be sent as an error event of its own, in
the shape of the API it interrupts. The relay runs inside an
:class:`~jupyter_stream.server._exchange.Exchange`: when its client disconnects the relay is
cancelled, which closes the upstream response at once, so the upstream sees the disconnect too.

Errors before the upstream's first byte are answered with the upstream's own status and body (or,
when the upstream cannot be reached, 502 or 504 in the error shape of the request's API).

``GET /stream`` in relay mode (:meth:`Relay.plain`) asks the upstream for a streamed chat
completion and sends on only its text, as the plain event stream of streaming tutorials.

Every byte passed on from the upstream (events, whole answers, errors, the model list) goes
through the upstream endpoint's redactor first, so that an upstream that echoes the relay's key,
as it is or escaped, never hands it to a client. Bytes are passed on decoded (an upstream may
gzip them though asked not to), so the redactor sees what the client would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import httpx
from starlette.requests import Request
from starlette.responses import Response

from .._exceptions import ProtocolError
from .._reply import Chunk, excerpt
from .._secrets import register_for_logs
from .._target import Endpoint, check_base_url
from .._wire import Target, anthropic, chat, gemini
from ..sse import SSEDecoder, encode_event
from ._config import ServerConfig
from ._demo import PLAIN_RETRY, plain_error
from ._errors import Api, api_of, error_response, stream_error
from ._exchange import SSE_HEADERS, Exchange, Work

__all__ = ["Relay"]

ERROR_BODY_LIMIT = 64 * 1024
MAX_MODELS_BYTES = 4 * 1024 * 1024
MAX_EVENT_BYTES = 16 * 1024 * 1024  # as the client's decoder: a longer event is an error
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')
_GEMINI_MODEL = re.compile(r"/models/([^/:]{1,200}):")
_FORWARDED_HEADERS = ("content-type", "retry-after", "x-request-id", "request-id")
_BOUNDARIES = (b"\n\n", b"\r\r", b"\n\r\n", b"\r\n\n")
STREAM_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
_PASSED_REQUEST_HEADERS = ("anthropic-version", "anthropic-beta")  # the client's own choice
# Each API's request headers, with the upstream's key where that API's client puts it.
_KEYED_HEADERS: dict[Api, Callable[[Target, str], dict[str, str]]] = {
    "chat": chat.headers,
    "responses": chat.headers,
    "anthropic": anthropic.headers,
    "gemini": gemini.headers,
    "ollama": chat.headers,
}


@dataclass(frozen=True)
class _Framing:
    """How a streamed body is cut into events: where one ends, and how an error is written."""

    boundaries: tuple[bytes, ...]
    fail: Callable[[str], bytes] | None  # None: nothing can be added (a JSON array)


def _framing(api: Api, content_type: str, array: bool = False) -> _Framing | None:
    """The framing of a streamed answer of that content type, or None for a whole answer.
    ``array``: a JSON answer is Gemini's stream without ``alt=sse``, a JSON array written an
    element at a time, cut at line ends (a failure can add nothing to it: it stays unclosed,
    which its client reads as a cut answer)."""
    if content_type.startswith("text/event-stream"):
        return _Framing(_BOUNDARIES, lambda message: stream_error(api, message))
    if content_type.startswith(("application/x-ndjson", "application/jsonl")):
        return _Framing((b"\n",), lambda message: stream_error("ollama", message))
    if array and content_type.startswith("application/json"):
        return _Framing((b"\n",), None)
    return None


class Relay:
    def __init__(self, config: ServerConfig) -> None:
        assert config.upstream is not None
        self.upstream = Endpoint(
            check_base_url(config.upstream, "--upstream"),
            "--upstream",
            config.upstream_api_key,
            "the upstream key variable",
        )
        register_for_logs(self.upstream.redactor.secrets)  # httpx's log lines show its query
        connect = config.upstream_connect_timeout
        self._timeout = httpx.Timeout(config.upstream_idle_timeout, connect=connect, pool=connect)
        # As many upstream connections as the server has streams (httpx's default is 100).
        self._limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
        self._client: httpx.AsyncClient | None = None
        self.default_model = config.upstream_model  # GET /stream's, when it names none

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:  # made on the server's loop, at first use
            self._client = httpx.AsyncClient(
                timeout=self._timeout, limits=self._limits, trust_env=False
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _headers(self, request: Request | None = None, api: Api = "chat") -> dict[str, str]:
        """The upstream request's headers: the upstream's key (never the client's) in ``api``'s
        own header, and the client's Accept and Content-Type."""
        accept = "text/event-stream" if request is None else request.headers.get("accept", "*/*")
        headers = _KEYED_HEADERS[api](self.upstream, accept)
        headers["Accept-Encoding"] = "identity"  # bytes pass through as they are
        if request is not None:
            headers["Content-Type"] = request.headers.get("content-type", "application/json")
        return headers

    def chat(self, body: bytes, request: Request) -> Work:
        url = self.upstream.url(chat.PATH)
        return self._forward("chat", "POST", url, self._headers(request), body)

    def native(self, body: bytes, request: Request) -> Work:
        """Forward a native API's request (``POST /v1/responses``, ``/v1/messages``,
        ``/v1beta/models/…:streamGenerateContent``, ``/api/chat``, ``GET /api/tags``, …) to the
        upstream's root plus the request's path and query (less any ``key=`` of the client's),
        with the relay's own key in that API's own header, never the client's."""
        path = request.url.path
        api = api_of(request)
        headers = self._headers(request, api)
        for name in _PASSED_REQUEST_HEADERS:
            if (value := request.headers.get(name)) is not None:
                headers[name] = value
        if request.method == "GET":
            del headers["Content-Type"]
        url = self.native_url(path, request.url.query)
        model = _GEMINI_MODEL.search(path) if api == "gemini" else None
        named = model.group(1) if model else None
        array = api == "gemini" and path.endswith(":streamGenerateContent")
        return self._forward(api, request.method, url, headers, body, named, array)

    def native_url(self, path: str, query: str = "") -> str:
        """The upstream's URL for a native API's ``path``: the upstream's root (its base URL
        without a trailing ``/v1``, nor the path's own first segment, such as ``/v1beta``) plus
        ``path``; the base URL's query, then the client's without its ``key=``."""
        parts = urlsplit(self.upstream.base_url)
        first = "/" + path.lstrip("/").split("/", 1)[0]
        root = parts.path.rstrip("/").removesuffix("/v1").removesuffix(first)
        kept = [
            field
            for field in query.split("&")
            if field and unquote_plus(field.partition("=")[0]) != "key"
        ]
        joined = "&".join(([parts.query] if parts.query else []) + kept)
        return urlunsplit(parts._replace(path=root + path, query=joined))

    def _forward(
        self,
        api: Api,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        model: str | None = None,
        array: bool = False,
    ) -> Work:
        async def work(exchange: Exchange) -> None:
            exchange.log["upstream"] = self.upstream.host_port
            named = _MODEL.search(body[:4096]) if model is None else None
            if named:  # for the log line; the upstream judges the rest
                exchange.log["model"] = named.group(1).decode("utf-8", "replace")
            elif model is not None:
                exchange.log["model"] = model
            content = body if method != "GET" else None
            try:
                upstream = await self.client.send(
                    self.client.build_request(method, url, content=content, headers=headers),
                    stream=True,
                )
            except httpx.HTTPError as exc:
                exchange.log["end"] = f"upstream unreachable ({type(exc).__name__})"
                await _answer(exchange, self._unreachable(exc, api))
                return
            try:
                await self._answer_with(api, upstream, exchange, array)
            finally:
                await upstream.aclose()

        return work

    async def _answer_with(
        self, api: Api, upstream: httpx.Response, exchange: Exchange, array: bool = False
    ) -> None:
        """Pass the upstream's answer on: an error or a whole answer read whole (to be
        redacted), a stream event by event."""
        forwarded = [
            (name.encode(), self.upstream.redact_bytes(value.encode()))
            for name in _FORWARDED_HEADERS
            if (value := upstream.headers.get(name)) is not None
        ]
        if upstream.status_code >= 400:
            error = self._error(upstream.status_code, await _read_limited(upstream), api=api)
            kept = [h for h in forwarded if h[0] != b"content-type"]  # Retry-After, …
            exchange.log["end"] = f"upstream {upstream.status_code}"
            await _answer(exchange, error, kept)
            return
        content_type = upstream.headers.get("content-type", "")
        framing = _framing(api, content_type, array)
        if framing is None:  # a whole answer (stream false, a model list)
            whole = await _read_limited(upstream, MAX_EVENT_BYTES + 1)
            if len(whole) > MAX_EVENT_BYTES:
                exchange.log["end"] = "upstream answer too large"
                too_large = f"answered with over {MAX_EVENT_BYTES} bytes"
                await _answer(exchange, self._error(502, b"", too_large, api))
                return
            await exchange.start(upstream.status_code, forwarded)
            await exchange.body(self.upstream.redact_bytes(whole), more=False)
            return
        if content_type.startswith("text/event-stream"):
            forwarded = SSE_HEADERS + [h for h in forwarded if h[0] != b"content-type"]
        else:
            forwarded = forwarded + STREAM_HEADERS
        exchange.last_words = framing.fail  # the server's own end of it, in the API's shape too
        await exchange.start(upstream.status_code, forwarded)
        await self._pass_on(upstream, exchange, framing)

    async def _pass_on(
        self, upstream: httpx.Response, exchange: Exchange, framing: _Framing
    ) -> None:
        held = b""
        chunks = 0
        boundaries = framing.boundaries
        last = boundaries[0]  # the commonest end of a read: a whole event
        try:
            async for data in upstream.aiter_bytes():
                if held:
                    if len(held) > MAX_EVENT_BYTES:
                        raise httpx.RemoteProtocolError(
                            f"an event over {MAX_EVENT_BYTES} bytes, or no event boundary"
                        )
                    data = held + data
                if data.endswith(last):
                    held = b""
                else:
                    cut = max(data.rfind(b) + len(b) if b in data else 0 for b in boundaries)
                    data, held = data[:cut], data[cut:]
                    if not data:
                        continue
                chunks += 1
                await exchange.body(self.upstream.redact_bytes(data))  # whole events only
        except httpx.HTTPError as exc:
            message = (
                f"the upstream {self.upstream.host_port} failed mid-answer "
                f"({type(exc).__name__}: {self.upstream.redact(str(exc)) or 'no detail'}); "
                "what arrived before is complete"
            )
            exchange.log["end"] = f"upstream failed ({type(exc).__name__})"
            await exchange.body(framing.fail(message) if framing.fail else b"", more=False)
            return
        exchange.log.setdefault("end", "upstream done")
        exchange.log["writes"] = chunks
        await exchange.body(self.upstream.redact_bytes(held), more=False)

    def plain(self, content: str, model: str | None, resume: bool = False) -> Work:
        """``GET /stream`` in relay mode: ``content`` asked of the upstream as one user message
        (a streamed chat completion), its answer's text sent on as it arrives, a piece an event.

        An upstream's answer cannot be replayed, so a reconnecting client (``resume``: it sent
        ``Last-Event-ID``) gets 204, which tells an ``EventSource`` to stop reconnecting,
        rather than a second answer, which would cost a second upstream request.
        """
        model = model or self.default_model
        url = self.upstream.url(chat.PATH)
        headers = self._headers()
        headers.update({"Accept": "text/event-stream", "Content-Type": "application/json"})
        message = {"role": "user", "content": content}
        body = json.dumps({"model": model, "messages": [message], "stream": True}).encode()

        async def work(exchange: Exchange) -> None:
            exchange.log.update(upstream=self.upstream.host_port, model=model, stream=True)
            if resume:
                exchange.log["end"] = "no resume in relay mode"
                await _answer(exchange, Response(status_code=204))
                return
            if model is None:
                why = (
                    "model is missing: name the upstream's model as GET /stream?model=…&content=…, "
                    "or start the server with --upstream-model"
                )
                await _answer(exchange, error_response(400, why, param="model"))
                return
            try:
                upstream = await self.client.send(
                    self.client.build_request("POST", url, content=body, headers=headers),
                    stream=True,
                )
            except httpx.HTTPError as exc:
                exchange.log["end"] = f"upstream unreachable ({type(exc).__name__})"
                await _answer(exchange, self._unreachable(exc))
                return
            try:
                if upstream.status_code >= 400:
                    exchange.log["end"] = f"upstream {upstream.status_code}"
                    data = await _read_limited(upstream)
                    await _answer(exchange, self._error(upstream.status_code, data))
                    return
                content_type = upstream.headers.get("content-type", "")
                if not content_type.startswith("text/event-stream"):
                    exchange.log["end"] = "upstream answered whole"
                    data = await _read_limited(upstream)
                    not_a_stream = f"answered {content_type or 'a body'}, not an event stream"
                    await _answer(exchange, self._error(502, data, not_a_stream))
                    return
                exchange.last_words = plain_error
                await exchange.start()
                await exchange.body(PLAIN_RETRY)
                await self._pass_on_text(upstream, exchange)
            finally:
                await upstream.aclose()

        return work

    async def _pass_on_text(self, upstream: httpx.Response, exchange: Exchange) -> None:
        """The text of a streamed chat completion, a piece an SSE event (ids counting them),
        then ``event: done``; an error, the upstream's or ours, as ``event: error``."""
        decoder = SSEDecoder(MAX_EVENT_BYTES)
        pieces = 0
        done = False
        try:
            async for data in upstream.aiter_bytes():
                out = []
                for event in decoder.feed(data):
                    parsed = chat.parse_event(event.data, event.event)
                    if isinstance(parsed, Chunk):
                        if parsed.error is not None:
                            said = self.upstream.redact(str(parsed.error.get("message")))
                            raise ProtocolError(f"the upstream sent an error: {said}")
                        done = done or parsed.done
                        parsed = parsed.content
                    if parsed:
                        out.append(encode_event(parsed, id=str(pieces)))
                        pieces += 1
                if out:
                    await exchange.body(self.upstream.redact_bytes(b"".join(out)))
                    exchange.log["tokens"] = pieces
                if done:
                    break
            if not done:
                raise ProtocolError("the upstream's answer ended without data: [DONE]")
        except (httpx.HTTPError, ProtocolError) as exc:
            said = self.upstream.redact(str(exc)) or type(exc).__name__
            message = f"the upstream {self.upstream.host_port} failed mid-answer: {said}"
            exchange.log["end"] = f"upstream failed ({type(exc).__name__})"
            await exchange.body(plain_error(message, "upstream_error"), more=False)
            return
        exchange.log["end"] = "stop"
        await exchange.body(encode_event("[DONE]", event="done"), more=False)

    def _unreachable(self, exc: httpx.HTTPError, api: Api = "chat") -> Response:
        where = self.upstream.host_port
        if isinstance(exc, httpx.TimeoutException):
            said = f"the upstream {where} did not answer in time"
            return error_response(504, said, type="upstream_error", api=api)
        said = f"could not reach the upstream {where} ({type(exc).__name__}); check --upstream"
        return error_response(502, said, type="upstream_error", api=api)

    def models(self) -> Work:
        async def work(exchange: Exchange) -> None:
            exchange.log["upstream"] = self.upstream.host_port
            url, headers = self.upstream.url("/models"), self._headers()
            try:
                async with self.client.stream("GET", url, headers=headers) as upstream:
                    data = await _read_limited(upstream, MAX_MODELS_BYTES)
            except httpx.HTTPError as exc:
                await _answer(exchange, self._unreachable(exc))
                return
            if upstream.status_code >= 400:
                await _answer(exchange, self._error(upstream.status_code, data))
            elif not _is_json(data):
                await _answer(exchange, self._error(502, data, "its model list is not JSON"))
            else:
                await exchange.start(200, [(b"content-type", b"application/json")])
                await exchange.body(self.upstream.redact_bytes(data), more=False)

        return work

    def _error(
        self, status: int, data: bytes, what: str | None = None, api: Api = "chat"
    ) -> Response:
        """An upstream's error answer as ours: its status, and its body without the key, as it
        is when it is JSON, else in OpenAI's error shape with an excerpt (of an HTML page, say)."""
        data = self.upstream.redact_bytes(data)  # as it is, JSON-escaped or URL-encoded
        if _is_json(data) and what is None:
            return Response(data, status, media_type="application/json")
        said = excerpt(data[:4096].decode("utf-8", "replace"))
        what = what or f"answered {status}"
        message = f"the upstream {what}: {said}"
        return error_response(status, message, type="upstream_error", api=api)


async def _answer(
    exchange: Exchange, response: Response, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await exchange.start(response.status_code, [*response.raw_headers, *headers])
    await exchange.body(bytes(response.body), more=False)


async def _read_limited(response: httpx.Response, limit: int = ERROR_BODY_LIMIT) -> bytes:
    parts, size = [], 0
    async for part in response.aiter_bytes():
        parts.append(part)
        size += len(part)
        if size >= limit:
            break
    return b"".join(parts)[:limit]


def _is_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except (ValueError, RecursionError):  # too deep to check: passed on as an error excerpt
        return False
    return True
