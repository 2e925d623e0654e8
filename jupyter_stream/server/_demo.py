"""The built-in models' answers, written as OpenAI writes its own: paced, chunked, framed.

:mod:`._models` says what ``demo`` and ``echo`` answer (pure text and tokens); this module writes
those tokens into an :class:`~._exchange.Exchange` as ``chat.completion.chunk`` events at the
configured pace (streamed: through the shared :class:`~._clock.Clock`, which writes many streams
per timer; whole: after the time the tokens would have taken), and serves ``/stream``, the plain
event stream of streaming tutorials. The chunk encoding is hand-built around each token, once per
answer, as it is the server's hottest path (tens of thousands of writes a second).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import math
import secrets
import time
from collections.abc import Iterator
from typing import Any

from ..sse import encode_event
from ._body import ChatRequest
from ._clock import Clock, Player
from ._config import ServerConfig
from ._errors import error_response
from ._exchange import Exchange, Work
from ._models import MODELS, answer_tokens, count_prompt_tokens

__all__ = ["PLAIN_RETRY", "demo_stream", "demo_whole", "plain_stream"]

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


def demo_stream(request: ChatRequest, config: ServerConfig, clock: Clock) -> Work:
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


def demo_whole(request: ChatRequest, config: ServerConfig) -> Work:
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
        completion: dict[str, Any] = {
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


PLAIN_RETRY = b"retry: 3000\n\n"  # /stream's first line: an EventSource reconnects after 3 s


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
