"""Gemini (``POST /v1beta/models/{model}:streamGenerateContent`` and ``:generateContent``).

The model is in the path; ``contents`` (``role`` user or model, ``parts`` of text),
``systemInstruction`` and ``generationConfig.maxOutputTokens`` in the body (proto JSON: the
snake_case names are read too). Streamed with ``alt=sse``, each SSE ``data:`` is a whole
``GenerateContentResponse`` holding one token; without it, the same objects as one JSON array,
sent element by element, as Gemini does. The last one has ``finishReason`` (``STOP`` or
``MAX_TOKENS``) and ``usageMetadata``. ``:generateContent`` answers one such object, whole.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .._body import ChatRequest, check_max_tokens, check_model, load_object
from .._errors import error_body, error_response, stream_error
from .._exchange import SSE_HEADERS
from .._models import MAX_TOKENS_LIMIT, count_prompt_tokens
from . import dumps, json_string

__all__ = ["Frames", "model_info", "parse"]

METHODS = ("generateContent", "streamGenerateContent")
ARRAY_HEADERS = [
    (b"content-type", b"application/json; charset=UTF-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
FINISH_REASONS = {"stop": "STOP", "length": "MAX_TOKENS"}


def parse(body: bytes, request: Request) -> tuple[ChatRequest, Frames] | Response:
    model, _, method = request.path_params["target"].partition(":")
    if method not in METHODS:
        message = f"no method {method!r} on models/{model}: use :generateContent or "
        message += ":streamGenerateContent"
        return error_response(404, message, api="gemini")
    fields = load_object(body, "gemini")
    if isinstance(fields, Response):
        return fields
    messages = _messages(fields.get("contents"))
    if isinstance(messages, Response):
        return messages
    system = _field(fields, "systemInstruction", "system_instruction")
    if isinstance(system, dict):
        messages.insert(0, {"role": "system", "content": system.get("parts")})
    elif isinstance(system, str):
        messages.insert(0, {"role": "system", "content": system})
    checked = check_model(model, "gemini", "GET /v1beta/models")
    if isinstance(checked, Response):
        return checked
    config = _field(fields, "generationConfig", "generation_config") or {}
    if not isinstance(config, dict):
        return error_response(400, "generationConfig must be an object", api="gemini")
    cap = _field(config, "maxOutputTokens", "max_output_tokens")
    max_tokens = check_max_tokens(cap, "generationConfig.maxOutputTokens", "gemini")
    if isinstance(max_tokens, Response):
        return max_tokens
    stream = method == "streamGenerateContent"
    ask = ChatRequest(checked, messages, stream, max_tokens, True)
    return ask, Frames(ask, sse=request.query_params.get("alt") == "sse")


def _field(fields: dict[str, Any], name: str, snake: str) -> Any:
    return fields.get(name, fields.get(snake))


def _messages(contents: Any) -> list[dict[str, Any]] | Response:
    if not isinstance(contents, list) or not contents:
        example = '[{"role": "user", "parts": [{"text": "Hello"}]}]'
        message = f"contents is missing or empty: send e.g. {example}"
        return error_response(400, message, api="gemini")
    if not all(isinstance(c, dict) and isinstance(c.get("parts"), list) for c in contents):
        message = "each of contents must be an object with a list of parts"
        return error_response(400, message, api="gemini")
    return [
        {"role": "assistant" if c.get("role") == "model" else "user", "content": c["parts"]}
        for c in contents
    ]


def model_info(model: str) -> dict[str, Any]:
    """One model as ``GET /v1beta/models`` lists it."""
    return {
        "name": f"models/{model}",
        "version": "1",
        "displayName": model.capitalize(),
        "description": f"jupyter_stream's built-in {model} model",
        "inputTokenLimit": MAX_TOKENS_LIMIT,
        "outputTokenLimit": MAX_TOKENS_LIMIT,
        "supportedGenerationMethods": list(METHODS),
    }


class Frames:
    def __init__(self, request: ChatRequest, *, sse: bool) -> None:
        self.request = request
        self.sse = sse
        self.headers = SSE_HEADERS if sse else ARRAY_HEADERS
        self.id = secrets.token_urlsafe(16)
        self.before, self.after = (b"data: ", b"\r\n\r\n") if sse else (b"", b"")
        self.separator = b""  # between array elements: none before the first
        self.head = b'{"candidates":[{"content":{"parts":[{"text":'
        self.tail = b'}],"role":"model"},"index":0}],"modelVersion":%s,"responseId":"%s"}' % (
            json_string(request.model),
            self.id.encode(),
        )

    def _chunk(self, data: bytes) -> bytes:
        framed = b"%s%s%s%s" % (self.separator, self.before, data, self.after)
        if not self.sse:
            self.separator = b",\r\n"
        return framed

    def _last(self, text: str, sent: int, finish: str) -> bytes:
        prompt = count_prompt_tokens(self.request.messages)
        response = {
            "candidates": [
                {
                    "content": {"parts": [{"text": text}], "role": "model"},
                    "finishReason": FINISH_REASONS[finish],
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": prompt,
                "candidatesTokenCount": sent,
                "totalTokenCount": prompt + sent,
            },
            "modelVersion": self.request.model,
            "responseId": self.id,
        }
        return dumps(response)

    def opening(self) -> bytes:
        return b"" if self.sse else b"["

    def content(self, token: str) -> bytes:
        return self._chunk(self.head + json_string(token) + self.tail)

    def closing(self, sent: int, finish: str) -> bytes:
        last = self._chunk(self._last("", sent, finish))
        return last if self.sse else last + b"]"

    def failure(self, message: str) -> bytes:
        if self.sse:
            return stream_error("gemini", message)
        error = dumps(error_body("gemini", 500, message))
        return self._chunk(error) + b"]"

    def whole(self, text: str, sent: int, finish: str) -> bytes:
        return self._last(text, sent, finish)
