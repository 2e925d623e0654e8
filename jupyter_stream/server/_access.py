"""Who may use the server, and the answer when it is full.

With an API key, a request must carry it. Without one, only this machine may use the server: a
web page elsewhere can make a browser send requests to 127.0.0.1, under its own Origin, or under
a name of its own that it resolves to 127.0.0.1 (DNS rebinding), so both Host and Origin must
name a loopback address. A server with every stream slot taken answers 429 with Retry-After, so
that clients back off instead of queueing behind streams that may last minutes.
"""

from __future__ import annotations

import functools
import hmac
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from ._config import ServerConfig, is_loopback
from ._errors import error_response

__all__ = ["Access", "busy"]


class Access:
    def __init__(self, config: ServerConfig) -> None:
        key = config.api_key
        self._expected = f"Bearer {key}".encode() if key else None

    def check(self, request: Request) -> Response | None:
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


def busy(config: ServerConfig) -> Response:
    """The answer to a request that finds every stream slot taken."""
    return error_response(
        429,
        f"this server is busy: {config.max_streams} streams are open; "
        "retry after the time in Retry-After",
        type="rate_limit_error",
        code="too_many_streams",
        headers={"Retry-After": "1"},
    )


@functools.lru_cache(maxsize=256)
def _is_loopback_url(url: str) -> bool:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if host is None:
        return False
    return host.endswith(".localhost") or is_loopback(host)  # *.localhost: RFC 6761
