"""Where a stream goes and with which key, from call options and the environment.

Highest first: call options, then the environment (``JUPYTER_STREAM_API``,
``JUPYTER_STREAM_BASE_URL`` or ``OPENAI_BASE_URL``, the API's key variable such as
``OPENAI_API_KEY``, ``JUPYTER_STREAM_MODEL``), then the defaults. The API (``api=``, a wire
format's name) is the one named, else the one a well-known host speaks (api.anthropic.com), else
the one whose key alone is set (``ANTHROPIC_API_KEY``; ``OPENAI_API_KEY`` wins), else ``chat``.
A key alone points at its provider's own API. With neither a base URL nor a key: Colab's
built-in model proxy when its variables are set (``MODEL_PROXY_HOST`` or
``MODEL_PROXY_BASE_URL``, and ``MODEL_PROXY_API_KEY``), else the embedded demo server (model
``demo``), which speaks every API: this module only says so (``Endpoint.embedded``), and the
layer that opens a stream starts it (``_endpoint``).
The key is held where no repr, message or log line can show it; so are credentials in the base
URL (see ``_secrets``): its user info is sent as Basic auth (an API key wins when both are set),
and no message quotes its user info or its query.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ._exceptions import ConfigurationError
from ._target import EMBEDDED, Endpoint, check_base_url
from ._wire import FORMATS, WireFormat, chat, format_for_host, wire_format

__all__ = ["configured_endpoint", "resolve_model"]

BASE_URL_VARS = ("JUPYTER_STREAM_BASE_URL", "OPENAI_BASE_URL")
API_KEY_VAR = "OPENAI_API_KEY"
API_VAR = "JUPYTER_STREAM_API"
_PROVIDERS = {"chat": "OpenAI", "responses": "OpenAI", "anthropic": "Anthropic", "gemini": "Google"}
MODEL_VAR = "JUPYTER_STREAM_MODEL"
OPENAI_BASE_URL = chat.OPENAI_BASE_URL
EMBEDDED_MODEL = "demo"
# Colab's built-in OpenAI-compatible model proxy, found as google.colab.ai finds it (colabtools'
# google/colab/ai.py): MODEL_PROXY_HOST + /models/openapi today, MODEL_PROXY_BASE_URL before.
COLAB_HOST_VAR = "MODEL_PROXY_HOST"
COLAB_BASE_URL_VAR = "MODEL_PROXY_BASE_URL"
COLAB_KEY_VAR = "MODEL_PROXY_API_KEY"
COLAB_PATH = "/models/openapi"
COLAB = "Colab's model proxy"
COLAB_MODEL = "google/gemini-2.5-flash"  # google.colab.ai.generate_text's default model


def configured_endpoint(
    base_url: str | None = None, api_key: str | None = None, api: str | None = None
) -> Endpoint:
    """The endpoint from call options, else from the environment; the embedded server is named,
    not started (``_endpoint.resolve_endpoint`` starts it)."""
    try:
        return _configured_endpoint(base_url, api_key, api)
    except ConfigurationError as exc:
        base_url = api_key = None  # a verbose traceback prints this frame's variables
        raise exc.with_traceback(None) from None  # and the frames below hold the same values


def _configured_endpoint(base_url: str | None, api_key: str | None, api: str | None) -> Endpoint:
    wire = _chosen_format(api)
    source = "base_url argument"
    if base_url is None:
        for name in BASE_URL_VARS:
            if os.environ.get(name):
                base_url, source = os.environ[name], name
                break
    if wire is None and base_url is not None:
        wire = format_for_host(_host(base_url))
    key_source: str | None = "api_key argument"
    if api_key is None:
        key_source = None
        if wire is None and base_url is None:
            wire, key_source = _format_by_key()
        for name in (wire or chat.WIRE).key_vars:
            if os.environ.get(name):
                api_key, key_source = os.environ[name], name
                break
    if wire is None:
        wire = chat.WIRE
    if base_url is None:
        if api_key is None:
            proxy = colab_proxy() if wire.name == "chat" else None
            if proxy is None or not os.environ.get(COLAB_KEY_VAR):
                return Endpoint("", EMBEDDED, api=wire.name)  # started when a stream opens
            # The proxy's key goes to the proxy alone: only here, with nothing else configured.
            base_url, source = proxy
            api_key, key_source = os.environ[COLAB_KEY_VAR], COLAB_KEY_VAR
        else:
            base_url = wire.default_base_url
            provider = _PROVIDERS.get(wire.name, wire.name)
            source = f"{provider}'s API (the default when only {key_source} is set)"
    if api_key is not None:
        api_key = api_key.strip()  # a key pasted from a file often ends in a newline
        if not api_key or not (api_key.isascii() and api_key.isprintable()) or " " in api_key:
            raise ConfigurationError(
                f"the API key from {key_source} is empty or holds spaces or control characters "
                "(not allowed in an HTTP header); check its value"
            )
    return Endpoint(check_base_url(base_url, source), source, api_key, key_source, api=wire.name)


def _chosen_format(api: str | None) -> WireFormat | None:
    """The wire format the api= option or JUPYTER_STREAM_API names, if either does."""
    if api is None:
        api = os.environ.get(API_VAR, "").strip() or None
        if api is None:
            return None
        try:
            return wire_format(api)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{API_VAR}: {exc}") from None
    return wire_format(api)


def _format_by_key() -> tuple[WireFormat | None, str | None]:
    """With neither an API nor a base URL given: the provider whose key alone is set.
    OPENAI_API_KEY wins, as before there was a choice."""
    if os.environ.get(API_KEY_VAR):
        return chat.WIRE, None
    found = {
        name: wire
        for wire in FORMATS.values()
        for name in wire.key_vars
        if name != API_KEY_VAR and os.environ.get(name)
    }
    providers = {wire.name for wire in found.values()}
    if len(providers) > 1:
        raise ConfigurationError(
            f"{' and '.join(sorted(found))} are set, and nothing says which API to use; pass "
            f"api=... or set {API_VAR} (one of {', '.join(FORMATS)})"
        )
    return (next(iter(found.values())), None) if found else (None, None)


def _host(url: str) -> str | None:
    try:
        return urlsplit(url.strip()).hostname
    except ValueError:  # check_base_url says what is wrong with it
        return None


def resolve_model(model: str | None, endpoint: Endpoint | None = None) -> str:
    """The model from the call option, else ``JUPYTER_STREAM_MODEL``, else ``demo`` on the
    embedded server and Colab's default on Colab's model proxy."""
    model = model or os.environ.get(MODEL_VAR)
    if not model and endpoint is not None and endpoint.base_url_source == EMBEDDED:
        return EMBEDDED_MODEL
    if not model and endpoint is not None and endpoint.base_url_source.startswith(COLAB):
        return COLAB_MODEL
    if not model:
        raise ConfigurationError(
            f"no model given: pass model=..., or set {MODEL_VAR} (e.g. gpt-4o-mini, llama3.2)"
        )
    return model


def colab_proxy() -> tuple[str, str] | None:
    """Colab's model proxy as the environment names it: (base URL, source), else None."""
    host = os.environ.get(COLAB_HOST_VAR, "").strip()
    if host:
        return host.rstrip("/") + COLAB_PATH, f"{COLAB}, from {COLAB_HOST_VAR}"
    base_url = os.environ.get(COLAB_BASE_URL_VAR, "").strip()
    if base_url:
        return base_url, f"{COLAB}, from {COLAB_BASE_URL_VAR}"
    return None
