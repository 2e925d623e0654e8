"""Where a stream goes and with which key, from call options and the environment.

Highest first: call options, then the environment (``JUPYTER_STREAM_BASE_URL`` or
``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``JUPYTER_STREAM_MODEL``), then the defaults: OpenAI's
API when only a key is set; with neither a base URL nor a key, Colab's built-in model proxy when
its variables are set (``MODEL_PROXY_HOST`` or ``MODEL_PROXY_BASE_URL``, and
``MODEL_PROXY_API_KEY``), else the embedded demo server (model ``demo``): this module only says
so (``Endpoint.embedded``), and the layer that opens a stream starts it (``_endpoint``).
The key is held where no repr, message or log line can show it; so are credentials in the base
URL (see ``_secrets``): its user info is sent as Basic auth (an API key wins when both are set),
and no message quotes its user info or its query.
"""

from __future__ import annotations

import os

from ._exceptions import ConfigurationError
from ._target import EMBEDDED, Endpoint, check_base_url
from ._wire import chat

__all__ = ["configured_endpoint", "resolve_model"]

BASE_URL_VARS = ("JUPYTER_STREAM_BASE_URL", "OPENAI_BASE_URL")
API_KEY_VAR = "OPENAI_API_KEY"
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


def configured_endpoint(base_url: str | None = None, api_key: str | None = None) -> Endpoint:
    """The endpoint from call options, else from the environment; the embedded server is named,
    not started (``_endpoint.resolve_endpoint`` starts it)."""
    try:
        return _configured_endpoint(base_url, api_key)
    except ConfigurationError as exc:
        base_url = api_key = None  # a verbose traceback prints this frame's variables
        raise exc.with_traceback(None) from None  # and the frames below hold the same values


def _configured_endpoint(base_url: str | None, api_key: str | None) -> Endpoint:
    source = "base_url argument"
    if base_url is None:
        for name in BASE_URL_VARS:
            if os.environ.get(name):
                base_url, source = os.environ[name], name
                break
    key_source: str | None = "api_key argument"
    if api_key is None:
        api_key = os.environ.get(API_KEY_VAR) or None
        key_source = API_KEY_VAR if api_key else None
    if base_url is None:
        if api_key is None:
            proxy = colab_proxy()
            if proxy is None or not os.environ.get(COLAB_KEY_VAR):
                return Endpoint("", EMBEDDED)  # started by the layer that opens a stream
            # The proxy's key goes to the proxy alone: only here, with nothing else configured.
            base_url, source = proxy
            api_key, key_source = os.environ[COLAB_KEY_VAR], COLAB_KEY_VAR
        else:
            base_url, source = (
                OPENAI_BASE_URL,
                f"OpenAI's API (the default when only {key_source} is set)",
            )
    if api_key is not None:
        api_key = api_key.strip()  # a key pasted from a file often ends in a newline
        if not api_key or not (api_key.isascii() and api_key.isprintable()) or " " in api_key:
            raise ConfigurationError(
                f"the API key from {key_source} is empty or holds spaces or control characters "
                "(not allowed in an HTTP header); check its value"
            )
    return Endpoint(check_base_url(base_url, source), source, api_key, key_source)


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
