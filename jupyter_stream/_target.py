"""An API root and its credentials: where requests go, with which key, and how to hide the key.

:class:`Endpoint` is a value, pure (no I/O, no environment): the client resolves one from its
options and the environment (``_config``), and the server's relay makes one for its upstream
(``server._relay``), so that both send the same headers and hide the same secrets, and the
server needs nothing of the client's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import urlsplit, urlunsplit

from ._exceptions import ConfigurationError
from ._secrets import (
    Redactor,
    basic_credentials,
    query_secrets,
    safe_url,
    split_userinfo,
)
from ._wire import chat, request_paths

__all__ = ["EMBEDDED", "Endpoint", "check_base_url"]

EMBEDDED = "the embedded demo server"


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
    api: str = "chat"  # the wire format it speaks (an api= name of _wire.FORMATS)
    api_source: str = field(default="the default", compare=False)  # what chose it
    url_credentials: str | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        url, userinfo = split_userinfo(self.base_url)
        object.__setattr__(self, "base_url", url)  # frozen: set once, here
        object.__setattr__(self, "url_credentials", userinfo)

    def __repr__(self) -> str:
        return (
            f"Endpoint({self.display_url!r}, api={self.api!r}, from {self.base_url_source}, "
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
    def display_url(self) -> str:
        """The base URL without user info or query, safe to show."""
        parts = urlsplit(self.base_url)  # no user info: __post_init__ took it out
        return f"{parts.scheme}://{parts.netloc}{parts.path}"

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
