"""Errors in OpenAI's shape, as a JSON answer or as a stream's last event.

Every part of the server (routes, body checks, access, exchanges, the relay) answers a failure
the same way, ``{"error": {"message", "type", "param", "code"}}``, so that an OpenAI client reads
our errors as it reads OpenAI's; this module is the one place that shape is written.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..sse import encode_event

__all__ = ["EXCEPTION_HANDLERS", "error_event", "error_response"]


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


def error_event(message: str, type: str = "server_error", **more: Any) -> bytes:
    """An SSE event carrying an error, for a stream whose answer has already begun."""
    return encode_event(json.dumps({"error": {"message": message, "type": type, **more}}))


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


EXCEPTION_HANDLERS: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
    404: _http_exception,
    405: _http_exception,
}
