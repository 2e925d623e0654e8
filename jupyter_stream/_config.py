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

BASE_URL_VAR = "JUPYTER_STREAM_BASE_URL"  # any API's
OLLAMA_HOST_VAR = "OLLAMA_HOST"
# Each API's own base URL variable, as its official SDK reads it.
PROVIDER_BASE_URL_VARS = {
    "chat": ("OPENAI_BASE_URL",),
    "responses": ("OPENAI_BASE_URL",),
    "anthropic": ("ANTHROPIC_BASE_URL",),
    "gemini": ("GOOGLE_GEMINI_BASE_URL",),
    "ollama": (OLLAMA_HOST_VAR,),
}
API_KEY_VAR = "OPENAI_API_KEY"
API_VAR = "JUPYTER_STREAM_API"
HOST_SOURCE = "the base URL's host"
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
    wire, api_source = _chosen_format(api)
    source = "base_url argument"
    if base_url is None:
        base_url, source = _base_url_from_env(wire)
    if wire is None and base_url is not None:
        wire = format_for_host(base_url)
        api_source = HOST_SOURCE if wire is not None else ""
    key_source: str | None = "api_key argument"
    if api_key is None:
        key_source = None
        if wire is None and base_url is None:
            wire, found = _format_by_key()
            if wire is not None:  # the provider's own base URL variable, as its SDK reads it
                base_url, source = _base_url_from_env(wire)
                api_source = f"its key alone is set ({found})"
        for name in (wire or chat.WIRE).key_vars:
            if os.environ.get(name):
                api_key, key_source = os.environ[name], name
                break
    if wire is None:
        wire, api_source = chat.WIRE, "the default"
    if base_url is None:
        if api_key is None:
            proxy = colab_proxy() if wire.name == "chat" else None
            if proxy is None or not os.environ.get(COLAB_KEY_VAR):
                # Started when a stream opens (_endpoint).
                return Endpoint("", EMBEDDED, api=wire.name, api_source=api_source)
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
    url = check_base_url(base_url, source)
    return Endpoint(url, source, api_key, key_source, api=wire.name, api_source=api_source)


def _chosen_format(api: str | None) -> tuple[WireFormat | None, str]:
    """The wire format the api= option or JUPYTER_STREAM_API names, if either does, and which."""
    if api is not None:
        return wire_format(api), "api argument"
    api = os.environ.get(API_VAR, "").strip() or None
    if api is None:
        return None, ""
    try:
        return wire_format(api), API_VAR
    except ConfigurationError as exc:
        raise ConfigurationError(f"{API_VAR}: {exc}") from None


def _base_url_from_env(wire: WireFormat | None) -> tuple[str | None, str]:
    """JUPYTER_STREAM_BASE_URL, else the base URL variable of the API's own SDK (OpenAI's for an
    API not yet chosen): OPENAI_BASE_URL never sends an Anthropic or Gemini key to OpenAI."""
    for name in (BASE_URL_VAR, *PROVIDER_BASE_URL_VARS[wire.name if wire else "chat"]):
        value = os.environ.get(name, "").strip()
        if value:
            return (_ollama_host(value) if name == OLLAMA_HOST_VAR else value), name
    return None, ""


def _ollama_host(value: str) -> str:
    """OLLAMA_HOST as the ollama library reads it: ``host``, ``host:port`` or a URL."""
    url = value if "://" in value else "http://" + value
    try:
        parts = urlsplit(url)
        port = parts.port or 11434
    except ValueError:
        return url  # check_base_url says what is wrong with it
    host = parts.hostname or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # a server's listen-on-all address: this machine, for a client
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}{parts.path.rstrip('/')}"


def _format_by_key() -> tuple[WireFormat | None, str]:
    """With neither an API nor a base URL given: the provider whose key alone is set, and that
    key's variable. OPENAI_API_KEY wins (chat, the default), as before there was a choice."""
    if os.environ.get(API_KEY_VAR):
        return None, ""
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
    if not found:
        return None, ""
    name, wire = next(iter(found.items()))
    return wire, name


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
