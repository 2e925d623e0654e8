"""The models an endpoint offers, for pickers and ``jupyter-stream models``."""

from __future__ import annotations

import asyncio

from ._endpoint import resolve_endpoint
from ._exceptions import ProtocolError
from ._http import fetch_text, scrubbed
from ._loop import private_loop
from ._wire import wire_format

__all__ = ["alist_models", "list_models"]


async def alist_models(
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    api: str | None = None,
    timeout: float = 10.0,  # noqa: ASYNC109 (as list_models has it)
) -> list[str]:
    """The ids of the endpoint's models, sorted (configured as for :func:`astream_chat`)."""
    endpoint = resolve_endpoint(base_url, api_key, api)
    wire = wire_format(endpoint.api)
    text = await fetch_text(wire.models_request(endpoint), endpoint, wire, timeout=timeout)
    try:
        return wire.parse_models(text, endpoint.display_url)
    except ProtocolError as exc:  # it quotes the body, which may echo a key
        raise scrubbed(exc, endpoint) from None


def list_models(
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    api: str | None = None,
    timeout: float = 10.0,
) -> list[str]:
    """The synchronous twin of :func:`alist_models` (runs on the private loop thread)."""
    coroutine = alist_models(base_url=base_url, api_key=api_key, api=api, timeout=timeout)
    return asyncio.run_coroutine_threadsafe(coroutine, private_loop()).result()
