"""Ollama (``POST /api/chat``, ``GET /api/tags``): the request read, the answer written.

``stream`` is true unless the request says false, as in Ollama. Streamed, an answer is NDJSON
(``application/x-ndjson``): one ``{"model", "created_at", "message", "done": false}`` line per
token, then a ``"done": true`` line with ``done_reason`` (``stop`` or ``length``) and the counts;
a server error mid-answer is an ``{"error": …}`` line. Not streamed, the last line's object with
the whole message. A model may be named with its tag (``demo:latest``), as Ollama's are.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .._body import ChatRequest, check_max_tokens, check_model, load_object
from .._errors import error_response, stream_error
from .._models import count_prompt_tokens
from . import NDJSON_HEADERS, dumps, iso_time, json_string

__all__ = ["Frames", "model_list", "parse"]


def parse(body: bytes, request: Request) -> tuple[ChatRequest, Frames] | Response:
    fields = load_object(body, "ollama")
    if isinstance(fields, Response):
        return fields
    messages = fields.get("messages")
    if not isinstance(messages, list) or not messages:
        message = 'messages is missing or empty: send e.g. [{"role": "user", "content": "Hello"}]'
        return error_response(400, message, api="ollama")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        message = "each message must be an object with a role and content"
        return error_response(400, message, api="ollama")
    named = fields.get("model")
    if isinstance(named, str):
        named = named.removesuffix(":latest")
    model = check_model(named, "ollama", "GET /api/tags")
    if isinstance(model, Response):
        return model
    options = fields.get("options") or {}
    if not isinstance(options, dict):
        return error_response(400, "options must be an object", api="ollama")
    cap = options.get("num_predict")
    if isinstance(cap, int) and cap < 0:  # -1: no limit, in Ollama
        cap = None
    max_tokens = check_max_tokens(cap, "options.num_predict", "ollama")
    if isinstance(max_tokens, Response):
        return max_tokens
    ask = ChatRequest(model, messages, fields.get("stream") is not False, max_tokens, True)
    return ask, Frames(ask)


def model_list(models: tuple[str, ...]) -> dict[str, Any]:
    """``GET /api/tags``: the models as Ollama lists those it has pulled."""
    details = {
        "format": "builtin",
        "family": "jupyter-stream",
        "families": ["jupyter-stream"],
        "parameter_size": "0",
        "quantization_level": "none",
    }
    listed = [
        {
            "name": model,
            "model": model,
            "modified_at": "1970-01-01T00:00:00Z",
            "size": 0,
            "digest": "0" * 64,
            "details": details,
        }
        for model in models
    ]
    return {"models": listed}


class Frames:
    headers = NDJSON_HEADERS

    def __init__(self, request: ChatRequest) -> None:
        self.request = request
        self.started = time.monotonic_ns()
        self.created_at = iso_time(time.time())
        self.head = b'{"model":%s,"created_at":"%s","message":{"role":"assistant","content":' % (
            json_string(request.model),
            self.created_at.encode(),
        )

    def _last(self, text: str, sent: int, finish: str) -> bytes:
        elapsed = time.monotonic_ns() - self.started
        last = {
            "model": self.request.model,
            "created_at": iso_time(time.time()),
            "message": {"role": "assistant", "content": text},
            "done": True,
            "done_reason": finish,
            "total_duration": elapsed,
            "load_duration": 0,
            "prompt_eval_count": count_prompt_tokens(self.request.messages),
            "prompt_eval_duration": 0,
            "eval_count": sent,
            "eval_duration": elapsed,
        }
        return dumps(last)

    def opening(self) -> bytes:
        return b""

    def content(self, token: str) -> bytes:
        return b'%s%s},"done":false}\n' % (self.head, json_string(token))

    def closing(self, sent: int, finish: str) -> bytes:
        return self._last("", sent, finish) + b"\n"

    def failure(self, message: str) -> bytes:
        return stream_error("ollama", message)

    def whole(self, text: str, sent: int, finish: str) -> bytes:
        return self._last(text, sent, finish)
