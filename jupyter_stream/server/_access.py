"""Who may use the server, and the answer when it is full.

With an API key, a request must carry it as its API's clients send one: ``Authorization: Bearer``
on every API, Anthropic's ``x-api-key``, Gemini's ``x-goog-api-key`` or ``?key=``. Without one,
only this machine may use the server: a web page elsewhere can make a browser send requests to
127.0.0.1, under its own Origin, or under a name of its own that it resolves to 127.0.0.1 (DNS
rebinding), so both Host and Origin must name a loopback address. A server with every stream slot
taken answers 429 with Retry-After, so that clients back off instead of queueing behind streams
that may last minutes.
"""

from __future__ import annotations

import functools
import hmac
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from .._wire import FORMATS
from ._config import ServerConfig, is_loopback
from ._errors import Api, api_of, error_response

__all__ = ["Access", "busy"]

_BEARER = "Authorization: Bearer <key>"  # every API's clients may send the key so
# The APIs whose clients send the key in a header of their own (their wire format's key_header).
_KEY_HEADERS: dict[str, str] = {
    name: wire.key_header for name, wire in FORMATS.items() if wire.key_header != "Authorization"
}
_OR = {"gemini": "?key=<key>"}  # the second way a 401 names, where it is not Bearer


def _how(api: Api) -> str:
    """How a client of ``api`` sends the key, for the 401's message."""
    header = _KEY_HEADERS.get(api)
    if header is None:
        return f"as {_BEARER}"
    return f"as {header}: <key> (or {_OR.get(api, _BEARER)})"


class Access:
    def __init__(self, config: ServerConfig) -> None:
        key = config.api_key
        self._key = key.encode() if key else None

    def check(self, request: Request) -> Response | None:
        """None if ``request`` may be served: it has the key, or (on a server without a key)
        it names a loopback host and comes from no other site's page."""
        api = api_of(request)
        if self._key is not None:
            if self._has_key(request, api):
                return None
            how = _how(api)
            return error_response(
                401,
                f"missing or wrong API key: send the key this server was started with "
                f"(--api-key) {how}",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
                api=api,
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
            api=api,
        )

    def _has_key(self, request: Request, api: Api) -> bool:
        assert self._key is not None
        bearer = request.headers.get("authorization", "")
        given = [bearer[7:] if bearer.startswith("Bearer ") else ""]
        if api in _KEY_HEADERS:
            given.append(request.headers.get(_KEY_HEADERS[api], ""))
        if api == "gemini":
            given.append(request.query_params.get("key", ""))
        # every candidate compared, each in constant time: no early exit to time
        return sum(hmac.compare_digest(g.encode(), self._key) for g in given) > 0


def busy(config: ServerConfig, api: Api = "chat") -> Response:
    """The answer to a request that finds every stream slot taken."""
    return error_response(
        429,
        f"this server is busy: {config.max_streams} streams are open; "
        "retry after the time in Retry-After",
        type="rate_limit_error",
        code="too_many_streams",
        headers={"Retry-After": "1"},
        api=api,
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
