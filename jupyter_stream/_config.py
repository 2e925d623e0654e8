"""Where a stream goes and with which key, from call options and the environment.

Highest first: call options, then the environment (``JUPYTER_STREAM_BASE_URL`` or
``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``JUPYTER_STREAM_MODEL``), then the defaults: OpenAI's
API when only a key is set, and with neither a base URL nor a key the embedded demo server
(started on first use, model ``demo``). The key is held where no repr, message or log line can
show it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from ._exceptions import ConfigurationError, exception_chain

__all__ = ["Endpoint", "check_base_url", "resolve_endpoint", "resolve_model"]

BASE_URL_VARS = ("JUPYTER_STREAM_BASE_URL", "OPENAI_BASE_URL")
API_KEY_VAR = "OPENAI_API_KEY"
MODEL_VAR = "JUPYTER_STREAM_MODEL"
OPENAI_BASE_URL = "https://api.openai.com/v1"
EMBEDDED = "the embedded demo server"
EMBEDDED_MODEL = "demo"


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible API root such as ``https://api.openai.com/v1``."""

    base_url: str = field(repr=False)  # may hold user info or a query: see display_url
    base_url_source: str
    api_key: str | None = field(default=None, repr=False)
    api_key_source: str | None = None

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
    def chat_url(self) -> str:
        return self.url("/chat/completions")

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

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def redact(self, text: str) -> str:
        """``text`` with the API key, if it appears, replaced by ``***``."""
        if self.api_key:
            text = text.replace(self.api_key, "***")
        return text

    def appears_in(self, exc: BaseException) -> bool:
        """Whether the key appears in ``exc`` or anything chained to it."""
        key = self.api_key
        if not key:
            return False
        return any(key in str(link) or key in repr(link) for link in exception_chain(exc))


def resolve_endpoint(base_url: str | None = None, api_key: str | None = None) -> Endpoint:
    """The endpoint from call options, else from the environment."""
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
            from .server import embedded_base_url  # the one place the core starts the server

            return Endpoint(embedded_base_url(), EMBEDDED)
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
    embedded server."""
    model = model or os.environ.get(MODEL_VAR)
    if not model and endpoint is not None and endpoint.base_url_source == EMBEDDED:
        return EMBEDDED_MODEL
    if not model:
        raise ConfigurationError(
            f"no model given: pass model=..., or set {MODEL_VAR} (e.g. gpt-4o-mini, llama3.2)"
        )
    return model


def check_base_url(url: str, source: str) -> str:
    url = url.strip().rstrip("/")
    if url.endswith("/chat/completions"):
        url = url[: -len("/chat/completions")]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        hint = f"http://{url}" if "://" not in url else "http://localhost:8000/v1"
        raise ConfigurationError(
            f"{source} must be an http:// or https:// URL, got {url!r}; did you mean {hint!r}?"
        )
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigurationError(f"{source} has an invalid port: {url!r}") from exc
    return url
