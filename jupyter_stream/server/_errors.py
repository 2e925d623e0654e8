"""Errors in each API's own shape, as a JSON answer or as a stream's last event.

Every part of the server (routes, body checks, access, exchanges, the relay) answers a failure
through this module, in the shape of the API the request belongs to (:func:`api_of`), so that
each API's official client reads our errors as it reads its provider's:

- ``chat``, ``responses``: ``{"error": {"message", "type", "param", "code"}}`` (OpenAI)
- ``anthropic``: ``{"type": "error", "error": {"type", "message"}}``
- ``gemini``: ``{"error": {"code", "message", "status"}}`` (Google's RPC status)
- ``ollama``: ``{"error": "message"}``
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..sse import encode_event

__all__ = [
    "EXCEPTION_HANDLERS",
    "Api",
    "api_of",
    "error_event",
    "error_response",
    "stream_error",
]

Api = Literal["chat", "responses", "anthropic", "gemini", "ollama"]

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    408: "DEADLINE_EXCEEDED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def api_of(request: Request) -> Api:
    """The API ``request`` belongs to, by its path (and, for the model list that OpenAI and
    Anthropic share, by Anthropic's version header)."""
    path = request.url.path
    if path.startswith("/v1beta/"):
        return "gemini"
    if path.startswith("/api/"):
        return "ollama"
    if path.endswith("/messages"):
        return "anthropic"
    if path.endswith("/responses"):
        return "responses"
    if path.endswith("/models") and "anthropic-version" in request.headers:
        return "anthropic"
    return "chat"


def error_body(
    api: Api,
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """The JSON body of an error, in ``api``'s shape (``type``, ``code`` and ``param`` are
    OpenAI's fields; the other APIs name the error by its status)."""
    if api == "anthropic":
        kind = _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else type)
        return {"type": "error", "error": {"type": kind, "message": message}}
    if api == "gemini":
        google = _GOOGLE_STATUSES.get(status, "INTERNAL" if status >= 500 else "UNKNOWN")
        return {"error": {"code": status, "message": message, "status": google}}
    if api == "ollama":
        return {"error": message}
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
    api: Api = "chat",
) -> JSONResponse:
    body = error_body(api, status, message, type=type, code=code, param=param)
    return JSONResponse(body, status_code=status, headers=headers)


def error_event(message: str, type: str = "server_error", **more: Any) -> bytes:
    """An OpenAI chat SSE event carrying an error, for a stream whose answer has begun."""
    return encode_event(json.dumps({"error": {"message": message, "type": type, **more}}))


def stream_error(api: Api, message: str, *, sequence_number: int = 0) -> bytes:
    """The event that ends ``api``'s stream mid-answer with a server error: what each API's
    client raises as an error (``sequence_number``: the Responses event count so far)."""
    if api == "responses":
        event = {
            "type": "error",
            "code": "server_error",
            "message": message,
            "param": None,
            "sequence_number": sequence_number,
        }
        return encode_event(json.dumps(event), event="error")
    if api == "anthropic":
        return encode_event(json.dumps(error_body(api, 500, message)), event="error")
    if api == "gemini":
        return encode_event(json.dumps(error_body(api, 500, message)))
    if api == "ollama":
        return json.dumps({"error": message}).encode() + b"\n"
    return error_event(message, param=None, code=None)


_ROOTS = {
    "chat": "the API lives under /v1 (e.g. /v1/chat/completions)",
    "responses": "the API lives under /v1 (e.g. /v1/responses)",
    "anthropic": "Anthropic's API is POST /v1/messages",
    "gemini": "Gemini's API is POST /v1beta/models/{model}:streamGenerateContent",
    "ollama": "Ollama's API is POST /api/chat and GET /api/tags",
}


async def _http_exception(request: Request, exc: Exception) -> Response:
    api = api_of(request)
    status = getattr(exc, "status_code", 500)
    if status == 404:
        message = f"no route {request.url.path}; {_ROOTS[api]}"
        return error_response(404, message, code="not_found", api=api)
    if status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
        return error_response(405, message, api=api)
    return error_response(status, str(getattr(exc, "detail", "error")), api=api)


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    404: _http_exception,
    405: _http_exception,
}
