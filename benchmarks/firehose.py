"""A fast OpenAI-compatible event-stream server for benchmarks, on 127.0.0.1 only.

Run it as a subprocess, so that it does not share the client's GIL::

    python benchmarks/firehose.py --port 0      # prints "PORT <n>" once listening

It serves until it is killed, or until its stdin is closed when stdin is a pipe. It is raw
asyncio (asyncio's streams, made as ``asyncio.start_server`` makes them, with a protocol that
timestamps the peer's EOF): HTTP/1.1, keep-alive, chunked transfer encoding, no framework, so
that the server is never the bottleneck of a client benchmark.

``POST /v1/chat/completions`` (any path ending in ``/chat/completions``) answers with
``Content-Type: text/event-stream``, and so does every other API's streaming route, in that API's
shape: ``…/responses`` (OpenAI Responses events), ``…/v1/messages`` (Anthropic Messages events),
``…/models/{model}:streamGenerateContent`` (Gemini, ``alt=sse``); ``…/api/chat`` answers Ollama's
NDJSON (``application/x-ndjson``). The JSON body chooses the behaviour (for the other APIs, the
length is the API's own field: ``max_output_tokens``, ``generationConfig.maxOutputTokens``,
``options.num_predict``), and so may the model name, which every API carries:
``bench_n20000_i0.02_idab12_stamp`` is ``max_tokens`` 20,000, ``bench_interval`` 0.02,
``bench_id`` ab12 and ``bench_stamp``, each part optional, over the body's:

- ``max_tokens``: number of content chunks (default 20,000);
- ``bench_interval``: seconds between chunks. 0 (the default) sends the whole stream as fast as
  possible: a pre-built body (role chunk, ``max_tokens`` content chunks of " tok", a finish chunk,
  a usage chunk when ``stream_options.include_usage`` is true, ``data: [DONE]``) written in
  ~16 KiB HTTP chunks with ``drain()``. Above 0 it sends one content chunk per interval (up to
  ``max_tokens``) while reading the socket, and when the client disconnects (EOF or reset) it
  records ``time.monotonic()`` — CLOCK_MONOTONIC, system-wide on Linux, so comparable with the
  client process's clock — under the body's ``bench_id``;
- ``bench_id``: the name under which a disconnect is recorded;
- ``bench_stamp``: when true (paced mode only), each content chunk's content is
  ``" @<time.monotonic() just before the write>"`` (e.g. ``" @12345.678901"``) instead of
  ``" tok"``, so that a client can measure each chunk's latency on the same clock.

``GET /disconnects`` returns the log as JSON: ``[{"id", "t", "sent"}, ...]`` (``sent`` is how
many content chunks went out before the disconnect was seen). Query parameters ``prefix=P``
(only ids starting with P), ``expect=N`` and ``timeout=S`` (wait, on an event, up to S seconds
until N matching entries are logged). ``POST /reset`` clears the log. ``GET /health`` says ok.

:class:`FirehoseServer` can also run on a loop of your own (``await start()``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import stat
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "APIS",
    "FirehoseServer",
    "Shape",
    "api_of",
    "build_body",
    "build_event",
    "main",
    "model_options",
    "shape",
]

HOST = "127.0.0.1"
DEFAULT_TOKENS = 20_000
MAX_TOKENS = 10_000_000  # a bound on every stream
HTTP_CHUNK = 16 * 1024
MAX_BODY = 1024 * 1024
MAX_HEAD = 64 * 1024
IDLE_TIMEOUT = 300.0  # an idle keep-alive connection is closed after this long
MAX_REQUESTS_PER_CONNECTION = 1_000_000
MAX_WAIT = 60.0  # longest wait a GET /disconnects may ask for

_BASE = '{"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"bench",'


def build_event(choices: str, extra: str = "") -> bytes:
    """One ``data:`` event of a chat.completion.chunk with the given JSON ``choices``."""
    return f'data: {_BASE}"choices":{choices}{extra}}}\n\n'.encode()


_ROLE_EVENT = build_event(
    '[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]'
)
_TOKEN_EVENT = build_event('[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]')
_FINISH_EVENT = build_event('[{"index":0,"delta":{},"finish_reason":"stop"}]')
_DONE_EVENT = b"data: [DONE]\n\n"


def _usage_event(n: int) -> bytes:
    usage = {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": n + 8}
    return build_event("[]", ',"usage":' + json.dumps(usage, separators=(",", ":")))


def _tail(n: int, include_usage: bool) -> bytes:
    return _FINISH_EVENT + (_usage_event(n) if include_usage else b"") + _DONE_EVENT


# -- every API's stream shape ---------------------------------------------------------------------


class Shape(NamedTuple):
    """One API's streamed answer: a head, one event per content chunk, a tail with the end mark."""

    content_type: str
    head: bytes
    token: Callable[[str], bytes]  # the event that carries one chunk of text
    tail: Callable[[int], bytes]  # finish reason, usage and end mark of an n-chunk answer


def _sse(kind: str, data: str) -> bytes:
    """A named SSE event (``event:`` then ``data:``), as the Responses and Anthropic APIs send."""
    return f"event: {kind}\ndata: {data}\n\n".encode()


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _chat_token(text: str) -> bytes:
    return build_event('[{"index":0,"delta":{"content":' + _json(text) + '},"finish_reason":null}]')


def _responses(status: str, n: int | None = None) -> dict[str, Any]:
    """A Responses API ``response`` object, in progress or completed with ``n`` chunks."""
    done = n is not None
    text = " tok" * (n or 0)
    message = {"type": "message", "id": "msg_b", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": text, "annotations": []}]}  # fmt: skip
    usage = {"input_tokens": 8, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": n, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": (n or 0) + 8}  # fmt: skip
    return {"id": "resp_b", "object": "response", "created_at": 1, "status": status,
            "model": "bench", "output": [message] if done else [], "parallel_tool_calls": True,
            "tool_choice": "auto", "tools": [], "error": None, "incomplete_details": None,
            "usage": usage if done else None}  # fmt: skip


def _responses_head() -> bytes:
    item = {"type": "message", "id": "msg_b", "status": "in_progress", "role": "assistant",
            "content": []}  # fmt: skip
    part = {"type": "output_text", "text": "", "annotations": []}
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": _responses("in_progress")}),
        ("response.in_progress", {"response": _responses("in_progress")}),
        ("response.output_item.added", {"output_index": 0, "item": item}),
        ("response.content_part.added",
         {"item_id": "msg_b", "output_index": 0, "content_index": 0, "part": part}),
    ]  # fmt: skip
    return b"".join(
        _sse(kind, _json({"type": kind, "sequence_number": i, **fields}))
        for i, (kind, fields) in enumerate(events)
    )


def _responses_token(text: str) -> bytes:
    kind = "response.output_text.delta"
    where = '"item_id":"msg_b","output_index":0,"content_index":0'
    data = f'{{"type":"{kind}","sequence_number":4,{where},"delta":{_json(text)},"logprobs":[]}}'
    return _sse(kind, data)


def _responses_tail(n: int) -> bytes:
    final = _responses("completed", n)
    message = final["output"][0]
    where = {"item_id": "msg_b", "output_index": 0, "content_index": 0}
    events = [
        ("response.output_text.done", {**where, "text": message["content"][0]["text"]}),
        ("response.content_part.done", {**where, "part": message["content"][0]}),
        ("response.output_item.done", {"output_index": 0, "item": message}),
        ("response.completed", {"response": final}),
    ]
    return b"".join(
        _sse(kind, _json({"type": kind, "sequence_number": 5 + n + i, **fields}))
        for i, (kind, fields) in enumerate(events)
    )


_ANTHROPIC_HEAD = b"".join([
    _sse("message_start", _json({"type": "message_start", "message": {
        "id": "msg_b", "type": "message", "role": "assistant", "content": [], "model": "bench",
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 8, "output_tokens": 1}}})),
    _sse("content_block_start", _json({"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}})),
    _sse("ping", '{"type":"ping"}'),
])  # fmt: skip


def _anthropic_token(text: str) -> bytes:
    return _sse("content_block_delta", '{"type":"content_block_delta","index":0,'
                '"delta":{"type":"text_delta","text":' + _json(text) + "}}")  # fmt: skip


def _anthropic_tail(n: int) -> bytes:
    return b"".join([
        _sse("content_block_stop", '{"type":"content_block_stop","index":0}'),
        _sse("message_delta", _json({"type": "message_delta",
             "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": n}})),
        _sse("message_stop", '{"type":"message_stop"}'),
    ])  # fmt: skip


def _gemini_token(text: str) -> bytes:
    return (b'data: {"candidates":[{"content":{"parts":[{"text":' + _json(text).encode()
            + b'}],"role":"model"},"index":0}],"modelVersion":"bench"}\n\n')  # fmt: skip


def _gemini_tail(n: int) -> bytes:
    usage = {"promptTokenCount": 8, "candidatesTokenCount": n, "totalTokenCount": n + 8}
    candidate = {"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": "STOP",
                 "index": 0}  # fmt: skip
    data = {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "bench"}
    return f"data: {_json(data)}\n\n".encode()


_OLLAMA_BASE = '{"model":"bench","created_at":"2026-01-01T00:00:00Z",'


def _ollama_token(text: str) -> bytes:
    return (f'{_OLLAMA_BASE}"message":{{"role":"assistant","content":{_json(text)}}},'
            '"done":false}\n').encode()  # fmt: skip


def _ollama_tail(n: int) -> bytes:
    counts = {"done_reason": "stop", "total_duration": 1000, "load_duration": 1,
              "prompt_eval_count": 8, "prompt_eval_duration": 1, "eval_count": n,
              "eval_duration": 1000}  # fmt: skip
    return (f'{_OLLAMA_BASE}"message":{{"role":"assistant","content":""}},"done":true,'
            f"{_json(counts)[1:]}\n").encode()  # fmt: skip


APIS = ("chat", "responses", "anthropic", "gemini", "ollama")


def shape(api: str = "chat", include_usage: bool = True) -> Shape:
    """``api``'s stream shape (``include_usage``: the chat API's usage chunk)."""
    if api == "chat":
        return Shape("text/event-stream", _ROLE_EVENT, _chat_token,
                     lambda n: _tail(n, include_usage))  # fmt: skip
    if api == "responses":
        return Shape("text/event-stream", _responses_head(), _responses_token, _responses_tail)
    if api == "anthropic":
        return Shape("text/event-stream", _ANTHROPIC_HEAD, _anthropic_token, _anthropic_tail)
    if api == "gemini":
        return Shape("text/event-stream", b"", _gemini_token, _gemini_tail)
    if api == "ollama":
        return Shape("application/x-ndjson", b"", _ollama_token, _ollama_tail)
    raise ValueError(f"no API {api!r}; one of {', '.join(APIS)}")


def build_body(n: int = DEFAULT_TOKENS, include_usage: bool = True, api: str = "chat") -> bytes:
    """The body of a fast (``bench_interval`` 0) answer of ``n`` content chunks in ``api``'s
    shape."""
    form = shape(api, include_usage)
    return form.head + form.token(" tok") * n + form.tail(n)


def _frame(data: bytes) -> bytes:
    """One HTTP/1.1 chunk of chunked transfer encoding."""
    return b"%x\r\n%b\r\n" % (len(data), data)


_LAST_CHUNK = b"0\r\n\r\n"


def _stream_head(content_type: str) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: %b\r\n"
        b"Cache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n"
        b"Connection: keep-alive\r\n\r\n"
    ) % content_type.encode()


def api_of(method: str, path: str) -> str | None:
    """Which API a request path speaks (None: not a streamed answer)."""
    if method != "POST":
        return None
    if path.endswith("/chat/completions"):
        return "chat"
    if path.endswith("/responses"):
        return "responses"
    if path.endswith("/v1/messages"):
        return "anthropic"
    if ":streamGenerateContent" in path:
        return "gemini"
    if path.endswith("/api/chat"):
        return "ollama"
    return None


def _max_tokens(api: str, request: dict[str, Any]) -> Any:
    """The API's own field for the answer's length."""
    if api == "responses":
        return request.get("max_output_tokens")
    if api == "gemini":
        return (request.get("generationConfig") or {}).get("maxOutputTokens")
    if api == "ollama":
        return (request.get("options") or {}).get("num_predict")
    return request.get("max_tokens")


def model_options(model: str) -> dict[str, Any]:
    """Options spelled in a model name, which every API carries (Gemini's in the URL):
    ``bench_n20000_i0.02_idab12_stamp`` is 20,000 chunks, 0.02 s apart, logged as ``ab12``."""
    found: dict[str, Any] = {}
    for part in model.split("_")[1:]:
        if part == "stamp":
            found["bench_stamp"] = True
        elif part.startswith("id"):
            found["bench_id"] = part[2:]
        elif part.startswith("n") and part[1:].isdigit():
            found["max_tokens"] = int(part[1:])
        elif part.startswith("i"):
            with contextlib.suppress(ValueError):
                found["bench_interval"] = float(part[1:])
    return found


class _BadRequest(Exception):
    pass


class _Protocol(asyncio.StreamReaderProtocol):
    """asyncio's stream protocol, noting when the peer's EOF (or reset) reached the loop: the
    callback's own time, not the later moment a task gets round to reading it."""

    eof_at: float | None = None

    def eof_received(self) -> bool | None:
        if self.eof_at is None:
            self.eof_at = time.monotonic()
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.eof_at is None:
            self.eof_at = time.monotonic()
        super().connection_lost(exc)


class FirehoseServer:
    """The server: ``await start()`` on a running loop, ``await aclose()`` to stop."""

    def __init__(self, host: str = HOST, port: int = 0) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the firehose serves loopback only")
        self.host = host
        self.port = port
        self.disconnects: list[dict[str, Any]] = []
        self._server: asyncio.AbstractServer | None = None
        self._logged: asyncio.Condition | None = None
        self._bodies: dict[tuple[str, int, bool], list[bytes]] = {}
        self._handlers: set[asyncio.Task[Any]] = set()

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self) -> int:
        """Listen; returns the port."""
        self._logged = asyncio.Condition()
        loop = asyncio.get_running_loop()

        def factory() -> _Protocol:  # what asyncio.start_server does, with _Protocol
            return _Protocol(asyncio.StreamReader(limit=MAX_HEAD, loop=loop), self._handle, loop)

        self._server = await loop.create_server(factory, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    # -- HTTP -----------------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            for _ in range(MAX_REQUESTS_PER_CONNECTION):
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
                except (
                    TimeoutError,
                    asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError,
                    ConnectionError,
                ):
                    return
                headers: dict[str, str] = {}
                try:
                    method, target, headers = _parse_head(head)
                    body = await _read_body(reader, headers)
                    keep = await self._route(method, target, body, reader, writer)
                except _BadRequest as exc:
                    _respond(writer, 400, {"error": {"message": str(exc)}}, keep_alive=False)
                    keep = False
                if headers.get("connection", "").lower() == "close":
                    keep = False
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _route(
        self,
        method: str,
        target: str,
        body: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request; False when the connection must not be reused."""
        url = urlsplit(target)
        path = url.path
        api = api_of(method, path)
        if api is not None:
            try:
                request = json.loads(body or b"{}")
            except ValueError as exc:
                raise _BadRequest(f"the body is not JSON: {exc}") from None
            if not isinstance(request, dict):
                raise _BadRequest("the body is not a JSON object")
            model = path.rsplit("/models/", 1)[-1].split(":")[0] if api == "gemini" else ""
            options = model_options(str(request.get("model") or model))
            n = options.get("max_tokens", _max_tokens(api, request))
            try:
                n = DEFAULT_TOKENS if n is None else int(n)
                interval = float(options.get("bench_interval", request.get("bench_interval")) or 0)
            except (TypeError, ValueError) as exc:
                raise _BadRequest(f"bad length or interval: {exc}") from None
            n = max(0, min(n, MAX_TOKENS))
            # Only the chat API's usage chunk is asked for; the others always send usage.
            include_usage = api != "chat" or bool(
                (request.get("stream_options") or {}).get("include_usage")
            )
            if interval <= 0:
                return await self._fast(writer, api, n, include_usage)
            return await self._paced(
                reader,
                writer,
                shape(api, include_usage),
                n,
                interval,
                str(options.get("bench_id", request.get("bench_id", ""))),
                stamp=options.get("bench_stamp", request.get("bench_stamp")) is True,
            )
        if method == "GET" and path == "/disconnects":
            query = parse_qs(url.query)
            prefix = query.get("prefix", [""])[0]
            expect = int(query.get("expect", ["0"])[0])
            wait = min(float(query.get("timeout", ["0"])[0]), MAX_WAIT)
            entries = await self._wait_for(prefix, expect, wait)
            _respond(writer, 200, entries)
            return True
        if method == "POST" and path == "/reset":
            self.disconnects.clear()
            _respond(writer, 200, {"ok": True})
            return True
        if method == "GET" and path in ("/health", "/v1/health"):
            _respond(writer, 200, {"ok": True})
            return True
        if method == "GET" and path.endswith("/models"):
            _respond(writer, 200, {"object": "list", "data": [{"id": "bench", "object": "model"}]})
            return True
        _respond(writer, 404, {"error": {"message": f"no route for {method} {path}"}})
        return True

    async def _fast(
        self, writer: asyncio.StreamWriter, api: str, n: int, include_usage: bool
    ) -> bool:
        key = (api, n, include_usage)
        frames = self._bodies.get(key)
        if frames is None:
            body = build_body(n, include_usage, api)
            frames = [_frame(body[i : i + HTTP_CHUNK]) for i in range(0, len(body), HTTP_CHUNK)]
            frames.insert(0, _stream_head(shape(api).content_type))
            frames.append(_LAST_CHUNK)
            if len(self._bodies) > 16:
                self._bodies.clear()
            self._bodies[key] = frames
        for frame in frames:
            writer.write(frame)
            await writer.drain()
        return True

    async def _paced(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        form: Shape,
        n: int,
        interval: float,
        bench_id: str,
        stamp: bool = False,
    ) -> bool:
        loop = asyncio.get_running_loop()
        protocol = writer.transport.get_protocol()
        watcher = asyncio.create_task(_watch_eof(reader, protocol))
        sent = 0
        try:
            writer.write(_stream_head(form.content_type) + (form.head and _frame(form.head)))
            start = loop.time()
            for i in range(n):
                text = f" @{time.monotonic():.6f}" if stamp else " tok"
                writer.write(_frame(form.token(text)))
                sent += 1
                await writer.drain()
                if watcher.done():
                    break
                # Pacing, not synchronisation: wait for the next tick or the disconnect.
                delay = start + (i + 1) * interval - loop.time()
                await asyncio.wait({watcher}, timeout=max(0.0, delay))
                if watcher.done():
                    break
            else:
                writer.write(_frame(form.tail(n)) + _LAST_CHUNK)
                await writer.drain()
                watcher.cancel()
                return True
        except (ConnectionError, OSError):
            t = getattr(protocol, "eof_at", None) or time.monotonic()
            if not watcher.done():
                watcher.cancel()
                await self._log(bench_id, t, sent)
                return False
        t = await watcher
        await self._log(bench_id, t, sent)
        return False

    async def _log(self, bench_id: str, t: float, sent: int) -> None:
        assert self._logged is not None
        async with self._logged:
            self.disconnects.append({"id": bench_id, "t": t, "sent": sent})
            self._logged.notify_all()

    async def _wait_for(self, prefix: str, expect: int, wait: float) -> list[dict[str, Any]]:
        def matching() -> list[dict[str, Any]]:
            return [e for e in self.disconnects if e["id"].startswith(prefix)]

        if expect > 0 and wait > 0:
            assert self._logged is not None
            try:
                async with self._logged:
                    await asyncio.wait_for(
                        self._logged.wait_for(lambda: len(matching()) >= expect), wait
                    )
            except TimeoutError:
                pass
        return matching()


async def _watch_eof(reader: asyncio.StreamReader, protocol: Any) -> float:
    """Read (and discard) until the client's EOF or a reset; return when the loop saw it."""
    try:
        for _ in range(1_000_000):
            if not await reader.read(65536):
                break
    except (ConnectionError, OSError):
        pass
    seen = getattr(protocol, "eof_at", None)
    return seen if seen is not None else time.monotonic()


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, _version = lines[0].split(" ", 2)
    except ValueError:
        raise _BadRequest(f"bad request line {lines[0]!r}") from None
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest(f"bad header line {line!r}")
        headers[name.strip().lower()] = value.strip()
    return method, target, headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts: list[bytes] = []
        size_total = 0
        for _ in range(MAX_BODY):
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                return b"".join(parts)
            size_total += size
            if size_total > MAX_BODY:
                raise _BadRequest("body too large")
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        raise _BadRequest("too many chunks")
    length = int(headers.get("content-length", "0") or 0)
    if length > MAX_BODY:
        raise _BadRequest("body too large")
    return await reader.readexactly(length) if length else b""


def _respond(writer: asyncio.StreamWriter, status: int, obj: Any, keep_alive: bool = True) -> None:
    body = json.dumps(obj).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n".encode()
        + body
    )


async def _serve(port: int) -> None:
    server = FirehoseServer(HOST, port)
    port = await server.start()
    print(f"PORT {port}", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.create_future()
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
        watch_stdin = stat.S_ISFIFO(mode)
    except (OSError, ValueError, AttributeError):
        watch_stdin = False
    if watch_stdin:
        stdin_reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin_reader), sys.stdin)

        async def watch() -> None:
            for _ in range(1_000_000):
                if not await stdin_reader.read(4096):
                    break
            if not stdin_closed.done():
                stdin_closed.set_result(None)

        watch_task = asyncio.create_task(watch())
    try:
        await stdin_closed  # forever when stdin is not a pipe: until killed
    finally:
        if watch_stdin:
            watch_task.cancel()
        await server.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
