"""The built-in models' answers, written as each API writes its own: paced, chunked, framed.

:mod:`._models` says what ``demo`` and ``echo`` answer (pure text and tokens); this module writes
those tokens into an :class:`~._exchange.Exchange` at the configured pace (streamed: through the
shared :class:`~._clock.Clock`, which writes many streams per timer; whole: after the time the
tokens would have taken), in the :class:`Frames` of the API asked (Chat Completions' here, the
native APIs' in :mod:`._dialects`), and serves ``/stream``, the plain event stream of streaming
tutorials. Each API's encoding is hand-built around each token, once per answer, as it is the
server's hottest path (tens of thousands of writes a second).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import secrets
import time
from collections.abc import Iterator
from typing import Any, Protocol

from ..sse import encode_event
from ._body import ChatRequest
from ._clock import Clock, Player
from ._config import ServerConfig
from ._dialects import json_string
from ._errors import error_response, stream_error
from ._exchange import SSE_HEADERS, Exchange, Work
from ._models import MODELS, answer_tokens, count_prompt_tokens

__all__ = [
    "PLAIN_RETRY",
    "Frames",
    "chat_frames",
    "demo_stream",
    "demo_whole",
    "plain_error",
    "plain_stream",
]

MAX_BATCH = 64  # tokens in one write, when several are due at once (a late or unpaced stream)


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


class Frames(Protocol):
    """One answer's bytes in one API's framing; made per answer, so that the parts that do not
    change from token to token (ids, model, timestamps) are encoded once."""

    headers: list[tuple[bytes, bytes]]  # a streamed answer's response headers

    def opening(self) -> bytes:
        """What a streamed answer sends before its first token."""

    def content(self, token: str) -> bytes:
        """One token's event (the hot path)."""

    def closing(self, sent: int, finish: str) -> bytes:
        """What ends a streamed answer of ``sent`` tokens (``finish``: stop or length)."""

    def failure(self, message: str) -> bytes:
        """The event that ends the stream mid-answer when the server ends it."""

    def whole(self, text: str, sent: int, finish: str) -> bytes:
        """The whole answer as one JSON document (not streamed)."""


class _Chunks:
    """Chat Completions' frames: ``chat.completion.chunk`` events; the part before the delta
    is built once."""

    headers = SSE_HEADERS

    def __init__(self, request: ChatRequest) -> None:
        created = int(time.time())
        self.request = request
        self.id = f"chatcmpl-{secrets.token_hex(12)}"
        model = json.dumps(request.model)
        head = (
            f'{{"id":"{self.id}","object":"chat.completion.chunk","created":{created},'
            f'"model":{model},"system_fingerprint":"jupyter-stream",'
            f'"choices":[{{"index":0,"delta":'
        )
        self.head = b"data: " + head.encode()
        self.tail = b',"logprobs":null,"finish_reason":null}]}\n\n'
        self.usage_head = (
            f'data: {{"id":"{self.id}","object":"chat.completion.chunk","created":{created},'
            f'"model":{model},"choices":[],"usage":'
        ).encode()

    def opening(self) -> bytes:
        return self.head + b'{"role":"assistant","content":""}' + self.tail

    def content(self, token: str) -> bytes:
        return b'%s{"content":%s}%s' % (self.head, json_string(token), self.tail)

    def closing(self, sent: int, finish: str) -> bytes:
        tail = [self.head + b'{},"logprobs":null,"finish_reason":"%s"}]}\n\n' % finish.encode()]
        if self.request.include_usage:
            usage = _usage(count_prompt_tokens(self.request.messages), sent)
            tail.append(self.usage_head + json.dumps(usage).encode() + b"}\n\n")
        tail.append(b"data: [DONE]\n\n")
        return b"".join(tail)

    def failure(self, message: str) -> bytes:
        return stream_error("chat", message)

    def whole(self, text: str, sent: int, finish: str) -> bytes:
        completion: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.request.model,
            "system_fingerprint": "jupyter-stream",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": _usage(count_prompt_tokens(self.request.messages), sent),
        }
        return json.dumps(completion, ensure_ascii=False).encode()


def chat_frames(request: ChatRequest) -> Frames:
    return _Chunks(request)


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _answer(request: ChatRequest) -> Iterator[str]:
    endless = request.grow and request.max_tokens is not None
    return answer_tokens(request.model, request.messages, endless=endless)


def demo_stream(request: ChatRequest, frames: Frames, config: ServerConfig, clock: Clock) -> Work:
    """The built-in model's answer to ``request``, streamed in ``frames`` at the configured pace."""

    async def work(exchange: Exchange) -> None:
        pace = _Pace(config)
        exchange.log.update(model=request.model, stream=True, tokens=0)
        exchange.last_words = frames.failure
        await exchange.start(200, frames.headers)
        opening = frames.opening()
        if opening:  # an empty write would end a chunked body
            await exchange.body(opening)
        limit = math.inf if request.max_tokens is None else request.max_tokens
        player = Player(
            clock, exchange, _answer(request), frames.content, pace.due, limit, MAX_BATCH
        )
        player.start()
        try:
            sent, finish = await player.done
        finally:
            player.stop()
        await exchange.body(frames.closing(sent, finish), more=False)
        exchange.log.update(tokens=sent, end=finish)

    return work


def demo_whole(request: ChatRequest, frames: Frames, config: ServerConfig) -> Work:
    """The built-in model's whole answer to ``request``, after the time streaming it would take."""

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
        body = frames.whole("".join(tokens), len(tokens), finish)
        await exchange.start(200, [(b"content-type", b"application/json")])
        await exchange.body(body, more=False)
        exchange.log.update(tokens=len(tokens), end=finish)

    return work


PLAIN_RETRY = b"retry: 3000\n\n"  # /stream's first line: an EventSource reconnects after 3 s


def plain_error(message: str, type: str = "server_error") -> bytes:
    """``/stream``'s last event when its answer fails: ``event: error``, an OpenAI error object
    (a plain ``data:`` event would read as more of the answer)."""
    error = {"error": {"message": message, "type": type}}
    return encode_event(json.dumps(error), event="error")


def plain_stream(
    content: str, resume: int, config: ServerConfig, clock: Clock, model: str = "demo"
) -> Work:
    """``GET /stream``: ``model``'s answer to ``content`` (one user message), paced as chat
    completions are, a token an event, each with its index as id; ``resume`` is the first
    index to send (one past the client's Last-Event-ID), as the answer is deterministic."""

    async def work(exchange: Exchange) -> None:
        if model not in MODELS:
            error = error_response(
                404,
                f"The model `{model}` does not exist on this server; its models are demo and "
                "echo (GET /v1/models)",
                param="model",
                code="model_not_found",
            )
            await exchange.start(404, error.raw_headers)
            await exchange.body(bytes(error.body), more=False)
            return
        first = max(resume, 0)
        answer = answer_tokens(model, [{"role": "user", "content": content}])
        ids = itertools.count(first)
        exchange.log.update(model=model, stream=True, tokens=0)
        exchange.last_words = plain_error
        await exchange.start()
        await exchange.body(PLAIN_RETRY)
        player = Player(
            clock,
            exchange,
            itertools.islice(answer, first, None),
            lambda token: encode_event(token, id=str(next(ids))),
            _Pace(config).due,
            math.inf,
            MAX_BATCH,
        )
        player.start()
        try:
            sent, finish = await player.done
        finally:
            player.stop()
        await exchange.body(encode_event("[DONE]", event="done"), more=False)
        exchange.log.update(tokens=sent, end=finish)

    return work
