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
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import urlsplit, urlunsplit

from ._exceptions import ConfigurationError
from ._secrets import (
    Redactor,
    basic_credentials,
    query_secrets,
    register_for_logs,
    safe_url,
    split_userinfo,
)
from ._wire import chat, request_paths

__all__ = ["Endpoint", "check_base_url", "resolve_endpoint", "resolve_model"]

BASE_URL_VARS = ("JUPYTER_STREAM_BASE_URL", "OPENAI_BASE_URL")
API_KEY_VAR = "OPENAI_API_KEY"
MODEL_VAR = "JUPYTER_STREAM_MODEL"
OPENAI_BASE_URL = chat.OPENAI_BASE_URL
EMBEDDED = "the embedded demo server"
EMBEDDED_MODEL = "demo"
# Colab's built-in OpenAI-compatible model proxy, found as google.colab.ai finds it (colabtools'
# google/colab/ai.py): MODEL_PROXY_HOST + /models/openapi today, MODEL_PROXY_BASE_URL before.
COLAB_HOST_VAR = "MODEL_PROXY_HOST"
COLAB_BASE_URL_VAR = "MODEL_PROXY_BASE_URL"
COLAB_KEY_VAR = "MODEL_PROXY_API_KEY"
COLAB_PATH = "/models/openapi"
COLAB = "Colab's model proxy"
COLAB_MODEL = "google/gemini-2.5-flash"  # google.colab.ai.generate_text's default model


@dataclass(frozen=True)
class Endpoint:
    """An API root such as ``https://api.openai.com/v1``, or the embedded server not yet started
    (``embedded``: no base URL; ``_endpoint.open_endpoint`` starts it).

    User info in ``base_url`` is taken out of it (into ``url_credentials``), so that no request,
    log line or message carries it; the query stays, as the server may need it.
    """

    base_url: str = field(repr=False)  # its query may hold a key: see display_url
    base_url_source: str
    api_key: str | None = field(default=None, repr=False)
    api_key_source: str | None = None
    url_credentials: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        url, userinfo = split_userinfo(self.base_url)
        object.__setattr__(self, "base_url", url)  # frozen: set once, here
        object.__setattr__(self, "url_credentials", userinfo)
        if self.redactor:
            register_for_logs(self.redactor.secrets)

    def __repr__(self) -> str:
        return (
            f"Endpoint({self.display_url!r}, from {self.base_url_source}, "
            f"key from {self.api_key_source})"
        )

    def url(self, path: str) -> str:
        """``base_url`` with ``path`` appended to its path (a query string stays at the end)."""
        parts = urlsplit(self.base_url)
        return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path))

    @property
    def embedded(self) -> bool:
        """True for the embedded demo server before it is started (see ``_endpoint``)."""
        return not self.base_url and self.base_url_source == EMBEDDED

    @property
    def chat_url(self) -> str:
        """The Chat Completions URL (for the server's relay; a stream asks its wire format)."""
        return self.url(chat.PATH)

    @property
    def display_url(self) -> str:
        """The base URL without user info or query, safe to show."""
        parts = urlsplit(self.base_url)
        netloc = parts.netloc.rpartition("@")[2]
        return f"{parts.scheme}://{netloc}{parts.path}"

    @property
    def host_port(self) -> str:
        parts = urlsplit(self.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return f"{parts.hostname}:{port}"

    @property
    def credentials_source(self) -> str | None:
        """Where the ``Authorization`` header comes from, if anywhere."""
        if self.api_key:
            return self.api_key_source
        if self.url_credentials:
            return f"the user info in the base URL ({self.base_url_source})"
        return None

    def headers(self) -> dict[str, str]:
        """Chat Completions headers (for the server's relay; a stream asks its wire format)."""
        return chat.headers(self)

    @cached_property
    def redactor(self) -> Redactor:
        """Finds the key and the URL's credentials in any form (see ``_secrets``)."""
        secrets = [self.api_key, *query_secrets(self.base_url)]
        if self.url_credentials:
            user, _, password = self.url_credentials.partition(":")
            secrets += [password or user, basic_credentials(self.url_credentials).split()[1]]
        return Redactor(secrets)

    def redact(self, text: str) -> str:
        """``text`` with the key and the URL's credentials, in any form, replaced by ``***``."""
        return self.redactor.redact(text)

    def redact_bytes(self, data: bytes) -> bytes:
        return self.redactor.redact_bytes(data)

    def appears_in(self, exc: BaseException) -> bool:
        """Whether a secret shows in ``exc``, its chain, or its traceback's local variables."""
        return self.redactor.exposed_by(exc)


def resolve_endpoint(base_url: str | None = None, api_key: str | None = None) -> Endpoint:
    """The endpoint from call options, else from the environment; the embedded server is named,
    not started (see ``_endpoint.resolve_endpoint``)."""
    try:
        return _resolve_endpoint(base_url, api_key)
    except ConfigurationError as exc:
        base_url = api_key = None  # a verbose traceback prints this frame's variables
        raise exc.with_traceback(None) from None  # and the frames below hold the same values


def _resolve_endpoint(base_url: str | None, api_key: str | None) -> Endpoint:
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


def check_base_url(url: str, source: str) -> str:
    """``url`` as an API root, or a ConfigurationError that quotes it without its user info or
    query values."""
    url = url.strip().rstrip("/")
    for path in request_paths():  # a request URL pasted as the base URL
        url = url.removesuffix(path)
    shown = safe_url(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:  # its words may quote the port, which may be a pasted key
        what = "has an invalid port" if "port" in str(exc).lower() else "is not a valid URL"
        raise ConfigurationError(
            f"{source} {what}: {shown!r} (credentials and query values hidden); check the host "
            "and port"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        hint = f"http://{shown}" if "://" not in url else chat.EXAMPLE_BASE_URL
        raise ConfigurationError(
            f"{source} must be an http:// or https:// URL, got {shown!r}; did you mean {hint!r}?"
            + (" (credentials and query values hidden)" if shown != url else "")
        )
    return url
