"""Where a stream goes, ready to connect: the configured endpoint, with the embedded demo server
started when the configuration says "embedded". The one module of the client that imports the
server package."""

from __future__ import annotations

from ._config import configured_endpoint
from ._exceptions import ConfigurationError
from ._target import EMBEDDED, Endpoint
from ._wire import wire_format

__all__ = ["open_endpoint", "resolve_endpoint"]


def open_endpoint(endpoint: Endpoint) -> Endpoint:
    """``endpoint``, or for the embedded one, the embedded server's (started on first use)."""
    if not endpoint.embedded:
        return endpoint
    from .server import embedded_base_url  # lazy: Starlette and uvicorn load on its thread

    # The server speaks every API; its root for each is where that API's official SDK puts it.
    host = embedded_base_url().removesuffix("/v1")
    return Endpoint(host + wire_format(endpoint.api).root, EMBEDDED, api=endpoint.api)


def resolve_endpoint(
    base_url: str | None = None, api_key: str | None = None, api: str | None = None
) -> Endpoint:
    """The endpoint from call options, else from the environment, ready to connect."""
    try:
        endpoint = configured_endpoint(base_url, api_key, api)
    except ConfigurationError as exc:
        base_url = api_key = None  # a verbose traceback prints this frame's variables
        raise exc.with_traceback(None) from None
    return open_endpoint(endpoint)
