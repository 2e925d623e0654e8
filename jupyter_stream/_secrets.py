"""Credentials: taken out of URLs, and kept out of every message, log line and traceback.

A base URL may carry credentials in its user info (``https://user:pass@host/v1``) or in its
query (``?key=…``). The user info is taken out of the URL and sent as ``Authorization: Basic``
(unless an API key is set: its ``Bearer`` header wins). The query stays in the URL, since the
server needs it, but the values of parameters whose names look secret (``key``, ``api_key``,
``token``, ``sig``…) are secrets like the key. No message shows a URL's user info or query.

A :class:`Redactor` finds a secret in every form a server may echo it back in: as it is,
JSON-escaped (``\\u0073k-…``, ``\\/``, and the backslash doubled, as a repr() of that shows it),
URL-encoded (``sk%2D…``), as an HTML character reference, and the Basic credentials as the
base64 that was sent. A secret shorter than :data:`MIN_SUBSTRING` characters is replaced only
where it stands as a token of its own, so that a one-character key does not turn every such
letter of a message into ``***``.

A message often quotes a server's text cut short (``excerpt`` keeps its start and ends it with
"…"), and the cut may fall inside an echoed secret. So the first :data:`MIN_PREFIX` or more
characters of a longer secret are replaced too where a cut shows: right before "…", or at the end
of the text (an escape cut in half included). Nothing cuts a text's start, so a secret's end is
not looked for after a leading "…".
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable
from typing import TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from ._exceptions import exception_chain

__all__ = [
    "MIN_PREFIX",
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
MIN_PREFIX = 4  # fewer characters of a cut secret say little, and more often a word
ELLIPSIS = "\u2026"  # what excerpt() and the other cuts append
MASK = "***"
SECRET_PARAM = re.compile(r"key|token|secret|passw|pwd|sig|auth|credential|session", re.I)
_TOKEN_CHARS = r"A-Za-z0-9_+/=\-"  # a short secret is redacted only between other chars
_Text = TypeVar("_Text", str, bytes)
_ENTITIES = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "#39"}
_BACKSLASH = r"\\{1,2}"  # a JSON escape's, doubled where a repr() or JSON quotes the escape
_JSON_SHORT = {"/": _BACKSLASH + "/", '"': _BACKSLASH + '"', "\\": r"\\{2,4}"}
# An escape cut in half at the end of an excerpt: "\\u00", "%2", "&#x7", "&quo".
_PARTIAL_ESCAPE = (
    f"(?:{_BACKSLASH}(?:u[0-9a-fA-F]{{0,3}})?|%[0-9a-fA-F]?"
    "|&(?:#[xX]?[0-9a-fA-F]{0,7}|[a-z]{0,4}))?"
)
_AT_CUT = f"(?={ELLIPSIS}|\\Z)"
_MAX_NESTED = 256  # optional groups nested for a cut secret (the regex parser recurses)


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
        _BACKSLASH + "u" + _hex(f"{code:04x}"),
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
    """A regex for ``secret`` in any echoed form, and for a long one, also for its first
    ``MIN_PREFIX`` or more characters where a cut shows: right before an ellipsis, or at the end
    of the text."""
    chars = [_char_pattern(char) for char in secret]
    if len(secret) < MIN_SUBSTRING:
        return f"(?<![{_TOKEN_CHARS}]){''.join(chars)}(?![{_TOKEN_CHARS}])"
    rest = ""
    if len(chars) > _MAX_NESTED + MIN_PREFIX:  # a longer prefix of a very long one: to the cut
        rest = f"[^\\s{ELLIPSIS}]*"
    for char in reversed(chars[MIN_PREFIX : _MAX_NESTED + MIN_PREFIX]):  # each after the last
        rest = f"(?:{char}{rest})?"
    whole, cut = "".join(chars[MIN_PREFIX:]), rest + _PARTIAL_ESCAPE + _AT_CUT
    return "".join(chars[:MIN_PREFIX]) + f"(?:{whole}|{cut})"


def _ends_cut(data: _Text, secrets: list[_Text]) -> bool:
    """Whether ``data`` ends with the first ``MIN_PREFIX`` or more characters of a secret."""
    for secret in secrets:
        head, tail = secret[:MIN_PREFIX], data[-len(secret) :]
        start = tail.find(head)
        while start >= 0:
            if secret.startswith(tail[start:]):
                return True
            start = tail.find(head, start + 1)
    return False


class Redactor:
    """Replaces each of some secrets, in any of its echoed forms, by ``***``."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        unique = {secret for secret in secrets if secret}
        self.secrets = tuple(sorted(unique, key=len, reverse=True))  # the longest match wins
        self._text: re.Pattern[str] | None = None
        self._bytes: re.Pattern[bytes] | None = None
        if self.secrets:
            # Each form begins with the secret's first character or an escape's: the search
            # skips every other position at the cost of one look.
            starts = {"\\", "%", "&", *(secret[0] for secret in unique)}
            first = "".join(sorted(re.escape(char) for char in starts))
            alternatives = "|".join(_secret_pattern(secret) for secret in self.secrets)
            pattern = f"(?=[{first}])(?:{alternatives})"
            self._text = re.compile(pattern)
            self._bytes = re.compile(pattern.encode())
        self._plain = [secret for secret in self.secrets if len(secret) >= MIN_SUBSTRING]
        self._plain_bytes = [secret.encode() for secret in self._plain]
        self._short = len(self._plain) < len(self.secrets)
        self._last = {char for secret in self._plain for char in secret}  # a cut one ends in one
        self._last_bytes = {bytes([byte]) for secret in self._plain_bytes for byte in secret}

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
        no cut, and no long secret as it is (a short one: only the regex knows where tokens end)."""
        if self._short:
            return True
        if isinstance(data, str):
            plain, marks = self._plain, ("\\", "%", "&", ELLIPSIS)
            return (
                any(m in data for m in marks)
                or any(s in data for s in plain)
                or (data[-1:] in self._last and _ends_cut(data, plain))
            )
        plain_bytes, byte_marks = self._plain_bytes, (b"\\", b"%", b"&", ELLIPSIS.encode())
        return (
            any(m in data for m in byte_marks)
            or any(s in data for s in plain_bytes)
            or (data[-1:] in self._last_bytes and _ends_cut(data, plain_bytes))
        )

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
# a request of this process was sent with (the layers that send register them: _http, the relay).
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
