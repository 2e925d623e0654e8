"""Credentials: taken out of URLs, and kept out of every message, log line and traceback.

A base URL may carry credentials in its user info (``https://user:pass@host/v1``) or in its
query (``?key=…``). The user info is taken out of the URL and sent as ``Authorization: Basic``
(unless an API key is set: its ``Bearer`` header wins). The query stays in the URL, since the
server needs it, but the values of parameters whose names look secret (``key``, ``api_key``,
``token``, ``sig``…) are secrets like the key. No message shows a URL's user info or query.

A :class:`Redactor` finds a secret in every form a server may echo it back in: as it is,
JSON-escaped (``\\u0073k-…``, ``\\/``), URL-encoded (``sk%2D…``), as an HTML character
reference, and the Basic credentials as the base64 that was sent. A secret shorter than
:data:`MIN_SUBSTRING` characters is replaced only where it stands as a token of its own, so that
a one-character key does not turn every such letter of a message into ``***``.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

from ._exceptions import exception_chain

__all__ = [
    "MIN_SUBSTRING",
    "Redactor",
    "basic_credentials",
    "query_secrets",
    "register_for_logs",
    "safe_url",
    "shown_query",
    "split_userinfo",
]

MIN_SUBSTRING = 8
MASK = "***"
SECRET_PARAM = re.compile(r"key|token|secret|passw|pwd|sig|auth|credential|session", re.I)
_TOKEN_CHARS = r"A-Za-z0-9_+/=\-"  # a short secret is redacted only between other chars
_ENTITIES = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "#39"}
_JSON_SHORT = {"/": r"\\/", '"': r'\\"', "\\": r"\\\\"}


def split_userinfo(url: str) -> tuple[str, str | None]:
    """``url`` without its user info, and that user info as ``user:password`` (decoded)."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None
    return urlunsplit(parts._replace(netloc=host)), unquote(userinfo)


def basic_credentials(userinfo: str) -> str:
    """The ``Authorization: Basic`` value of ``user:password``."""
    return "Basic " + base64.b64encode(userinfo.encode()).decode("ascii")


def query_secrets(url: str) -> list[str]:
    """The decoded values of ``url``'s query parameters whose names look secret."""
    found = []
    for pair in urlsplit(url).query.split("&"):
        name, eq, value = pair.partition("=")
        if eq and value and SECRET_PARAM.search(unquote(name)):
            found.append(unquote(value.replace("+", " ")))
    return found


def safe_url(text: str) -> str:
    """``text`` (a URL, perhaps malformed) with its user info and query values masked."""
    text, hash_, fragment = text.partition("#")
    text, mark, query = text.partition("?")
    scheme, sep, rest = text.partition("://") if "://" in text else ("", "", text)
    if "@" in rest:  # user info, even with a "/" in its password
        rest = MASK + "@" + rest.rpartition("@")[2]
    authority, slash, path = rest.partition("/")
    host, colon, port = authority.rpartition(":")
    if colon and not port.isdigit() and not port.endswith("]"):  # "user:key" with no host
        authority = f"{host}:{MASK}"
    masked = []
    for pair in query.split("&") if query else []:
        name, eq, value = pair.partition("=")
        masked.append(f"{name}={MASK}" if eq and value else pair if eq else MASK)
    shown = f"{scheme}{sep}{authority}{slash}{path}"
    shown += mark + "&".join(masked)
    return shown + (hash_ + MASK if fragment else "")


def shown_query(url: str) -> str:
    """``url``'s query with the values of parameters whose names look secret masked."""
    shown = []
    for pair in urlsplit(url).query.split("&"):
        name, eq, _value = pair.partition("=")
        if pair:
            shown.append(f"{name}={MASK}" if eq and SECRET_PARAM.search(unquote(name)) else pair)
    return "&".join(shown)


def _char_pattern(char: str) -> str:
    """A regex for ``char`` as it is or escaped by JSON, a URL or HTML."""
    code = ord(char)
    forms = [
        re.escape(char),
        r"\\u" + _hex(f"{code:04x}"),
        "".join("%" + _hex(f"{byte:02x}") for byte in char.encode()),
        f"&#0*{code};",
        "&#[xX]0*" + _hex(f"{code:x}") + ";",
    ]
    if char in _ENTITIES:
        forms.append(f"&{_ENTITIES[char]};")
    if char in _JSON_SHORT:
        forms.append(_JSON_SHORT[char])
    return "(?:" + "|".join(forms) + ")"


def _hex(digits: str) -> str:
    """Hex digits in either case."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in digits)


def _secret_pattern(secret: str) -> str:
    pattern = "".join(_char_pattern(char) for char in secret)
    if len(secret) < MIN_SUBSTRING:
        pattern = f"(?<![{_TOKEN_CHARS}]){pattern}(?![{_TOKEN_CHARS}])"
    return pattern


class Redactor:
    """Replaces each of some secrets, in any of its echoed forms, by ``***``."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        unique = {secret for secret in secrets if secret}
        self.secrets = tuple(sorted(unique, key=len, reverse=True))  # the longest match wins
        self._text: re.Pattern[str] | None = None
        self._bytes: re.Pattern[bytes] | None = None
        if self.secrets:
            pattern = "|".join(_secret_pattern(secret) for secret in self.secrets)
            self._text = re.compile(pattern)
            self._bytes = re.compile(pattern.encode())
        self._plain = [secret for secret in self.secrets if len(secret) >= MIN_SUBSTRING]
        self._plain_bytes = [secret.encode() for secret in self._plain]
        self._short = len(self._plain) < len(self.secrets)

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def __repr__(self) -> str:
        return f"<Redactor of {len(self.secrets)} secrets>"

    def redact(self, text: str) -> str:
        if self._text is None or not self._may_hold(text):
            return text
        return self._text.sub(MASK, text)

    def redact_bytes(self, data: bytes) -> bytes:
        if self._bytes is None or not self._may_hold(data):
            return data
        return self._bytes.sub(MASK.encode(), data)

    def found_in(self, text: str) -> bool:
        return self._text is not None and self._may_hold(text) and bool(self._text.search(text))

    def _may_hold(self, data: str | bytes) -> bool:
        """A cheap test that lets most text skip the regex: no escape that could hide a secret,
        and no long secret as it is (a short one: only the regex knows where tokens end)."""
        if isinstance(data, str):
            plain, escapes = self._plain, ("\\", "%", "&")
            return self._short or any(m in data for m in escapes) or any(s in data for s in plain)
        plain_bytes, marks = self._plain_bytes, (b"\\", b"%", b"&")
        return self._short or any(m in data for m in marks) or any(s in data for s in plain_bytes)

    def exposed_by(self, exc: BaseException) -> bool:
        """Whether a secret shows in ``exc`` or its chain: a message, a repr, or a local
        variable of a frame in a traceback (which ``%xmode Verbose`` prints)."""
        if not self:
            return False
        for link in exception_chain(exc):
            if self.found_in(_safe_repr(link)) or self.found_in(_safe_str(link)):
                return True
            tb = link.__traceback__
            while tb is not None:
                for value in list(tb.tb_frame.f_locals.values()):
                    if self.found_in(_safe_repr(value)):
                        return True
                tb = tb.tb_next
        return False


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:
        return ""


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return ""


# -- log lines --------------------------------------------------------------------------------

# httpx's INFO line prints a request's URL with its query: these loggers redact every secret
# an endpoint has carried in this process.
LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
_logged: set[str] = set()
_log_lock = threading.Lock()


class _LogFilter(logging.Filter):
    redactor = Redactor(())

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self.redactor
        if redactor:
            message = record.getMessage()
            clean = redactor.redact(message)
            if clean != message:
                record.msg, record.args = clean, None
        return True


_filter = _LogFilter()


def register_for_logs(secrets: Iterable[str | None]) -> None:
    """Redact ``secrets`` from the HTTP libraries' log lines from now on."""
    new = {secret for secret in secrets if secret} - _logged
    if not new:
        return
    with _log_lock:
        if not _logged:
            for name in LOGGERS:
                logging.getLogger(name).addFilter(_filter)
        _logged.update(new)
        _filter.redactor = Redactor(_logged)
