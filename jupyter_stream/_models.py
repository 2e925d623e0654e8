"""The models an endpoint offers (``GET /models``), for pickers and ``jupyter-stream models``."""

from __future__ import annotations

import asyncio

import httpx

from ._client import get_client, safe_cause, status_error, translate_error
from ._config import resolve_endpoint
from ._exceptions import ProtocolError
from ._loop import private_loop
from ._protocol import clean_text, excerpt

__all__ = ["alist_models", "list_models"]


async def alist_models(
    *, base_url: str | None = None, api_key: str | None = None, timeout: float = 10.0
) -> list[str]:
    """The ids of the endpoint's models, sorted (configured as for :func:`astream_chat`)."""
    endpoint = resolve_endpoint(base_url, api_key)
    client = await get_client()
    try:  # the headers inline: a verbose traceback prints a frame's variables
        response = await client.get(
            endpoint.url("/models"),
            headers=endpoint.headers() | {"Accept": "application/json"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise translate_error(exc, endpoint, chunks=0) from safe_cause(exc, endpoint)
    if response.status_code >= 400:
        raise status_error(endpoint, response, response.text, model="")
    try:
        listed = response.json()["data"]
    except (ValueError, KeyError, TypeError, RecursionError):
        listed = None
    if type(listed) is not list:
        raise ProtocolError(
            f"GET {endpoint.display_url}/models did not answer with a model list: "
            f"{excerpt(endpoint.redact(response.text))}"
        )
    ids = []
    for number, model in enumerate(listed):
        model_id = model.get("id") if type(model) is dict else None
        if type(model_id) is not str or not model_id:
            raise ProtocolError(
                f"GET {endpoint.display_url}/models listed a model without a name (a string in "
                f"data[{number}].id): {excerpt(endpoint.redact(repr(model)))}"
            )
        ids.append(clean_text(model_id))  # an escaped lone surrogate would break the picker
    return sorted(ids)


def list_models(
    *, base_url: str | None = None, api_key: str | None = None, timeout: float = 10.0
) -> list[str]:
    """The synchronous twin of :func:`alist_models` (runs on the private loop thread)."""
    coroutine = alist_models(base_url=base_url, api_key=api_key, timeout=timeout)
    return asyncio.run_coroutine_threadsafe(coroutine, private_loop()).result()
