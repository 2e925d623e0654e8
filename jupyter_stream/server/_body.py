"""Request bodies: read within a size and a time limit, then checked as a chat request.

The checks every API shares (a JSON object, a built-in model, a length cap) are here too; each
native API's own fields are read by its module in :mod:`._dialects`.

A body is read whole before anything acts on it, so that a client that sends too much, or too
slowly, costs the server a bounded buffer and a bounded wait (413, 408); the built-in models
then check every field they use and answer a bad one with an error that names it, before any
answer has begun. The relay reads bodies here too, but leaves their checking to its upstream.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from .._reply import escapes_surrogate, has_lone_surrogate
from ._config import ServerConfig
from ._errors import Api, api_of, error_response
from ._logging import printable
from ._models import MAX_TOKENS_LIMIT, MODELS

__all__ = [
    "ChatRequest",
    "check_max_tokens",
    "check_model",
    "load_object",
    "parse_chat",
    "read_body",
]


async def read_body(request: Request, config: ServerConfig) -> bytes | Response:
    """The request body, or the error response: 413 when over the cap, 408 when too slow."""
    limit = config.max_body_bytes
    api = api_of(request)
    too_large = error_response(
        413,
        f"request body over {limit} bytes; send a smaller request",
        code="body_too_large",
        api=api,
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
        async with asyncio.timeout(config.body_timeout):  # no task of its own, unlike wait_for
            return await read()
    except TimeoutError:
        return error_response(
            408,
            f"request body not received within {config.body_timeout:g} s",
            code="timeout",
            api=api,
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
    grow: bool = True  # demo goes on to max_tokens; False: max_tokens only caps (Anthropic's)


def parse_chat(body: bytes) -> ChatRequest | Response:
    request = load_object(body)
    if isinstance(request, Response):
        return request
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
    model = check_model(request.get("model"))
    if isinstance(model, Response):
        return model
    max_tokens = check_max_tokens(
        request.get("max_completion_tokens", request.get("max_tokens")), "max_tokens"
    )
    if isinstance(max_tokens, Response):
        return max_tokens
    if request.get("n", 1) != 1:
        return error_response(400, "n must be 1 on this server", param="n")
    options = request.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    return ChatRequest(model, messages, bool(request.get("stream")), max_tokens, include_usage)


def load_object(body: bytes, api: Api = "chat") -> dict[str, Any] | Response:
    """``body`` as a JSON object, or the 400 that says why it is none."""
    try:
        text = body.decode(json.detect_encoding(body))  # strictly: json.loads(bytes) would let
        request = json.loads(text)  # an encoded lone surrogate in
    except UnicodeDecodeError as exc:
        return error_response(
            400,
            f"the request body is not UTF-8 text: {exc}; send JSON in UTF-8",
            code="invalid_json",
            api=api,
        )
    except ValueError as exc:
        return error_response(
            400, f"the request body is not valid JSON: {exc}", code="invalid_json", api=api
        )
    except RecursionError:  # a parser's stack, not the server's failure: one log line, a 400
        return error_response(
            400,
            "the request body nests arrays or objects too deeply to read; send flatter JSON",
            code="invalid_json",
            api=api,
        )
    if not isinstance(request, dict):
        message = "the request body must be a JSON object"
        return error_response(400, message, code="invalid_json", api=api)
    if escapes_surrogate(text):  # is each one half of a pair?
        field = _lone_surrogate(request)
        if field is not None:
            return error_response(
                400,
                f"{field} holds a lone surrogate (such as \\ud800), which is not text; send "
                "valid Unicode",
                param=field,
                api=api,
            )
    return request


def check_model(model: Any, api: Api = "chat", where: str = "GET /v1/models") -> str | Response:
    """``model`` if it names a built-in model, else the 400 or 404 that says which exist."""
    if not isinstance(model, str) or not model:
        return error_response(400, "model is missing: use demo or echo", param="model", api=api)
    if model not in MODELS:
        return error_response(
            404,
            f"The model `{printable(model, 100)}` does not exist on this server; its models are "
            f"demo and echo ({where})",
            param="model",
            code="model_not_found",
            api=api,
        )
    return model


def check_max_tokens(value: Any, name: str, api: Api = "chat") -> int | Response | None:
    """``value`` as the answer's length cap (None: no cap), or the 400 that names ``name``."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        return error_response(400, f"{name} must be a positive integer", param=name, api=api)
    if value > MAX_TOKENS_LIMIT:
        message = f"{name} is too large: at most {MAX_TOKENS_LIMIT}"
        return error_response(400, message, param=name, api=api)
    return value


def _lone_surrogate(request: dict[str, Any]) -> str | None:
    """The name of the first field of ``request`` that holds a lone surrogate anywhere (in a
    string or a key, however deep), which no UTF-8 answer or log line could encode."""
    for key, value in request.items():
        todo: list[Any] = [key, value]  # a list, not recursion: the JSON may be deep
        while todo:
            item = todo.pop()
            if isinstance(item, str):
                if has_lone_surrogate(item):
                    return printable(key, 40)
            elif isinstance(item, dict):
                todo.extend(item)
                todo.extend(item.values())
            elif isinstance(item, list):
                todo.extend(item)
    return None
