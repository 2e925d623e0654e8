"""The one error family of jupyter_stream.

Every error names what went wrong and what to do about it, and carries the part of the reply that
had already arrived (``error.reply``), so nothing received is lost. A user stop is not an error.
No message, repr or traceback text ever contains an API key, nor anything a terminal would act on
(escape sequences, control characters: see ``_terminal``), though it may quote a server.

In IPython and Jupyter such an error shows as its class and message (the cause and the fix), not
as a traceback through jupyter_stream's internals; ``%tb`` afterwards shows the whole traceback.
Any other exception from the package is a bug in it, and shows its traceback as usual.

    JupyterStreamError
    ├── ConfigurationError        bad option or environment value
    ├── ConnectError              the server could not be reached (names host:port)
    ├── StreamTimeout             connect timeout (a deadline that ends a stream is a stop reason)
    ├── StreamLimitError          refused: max_concurrent streams already run (when_full="refuse")
    ├── HTTPStatusError           the server answered with a 4xx or 5xx status
    │   ├── BadRequestError       400, 422: the server rejected the request
    │   ├── AuthenticationError   401, 403: names the key variable and base URL, never the key
    │   ├── NotFoundError         404: names the model and the URL
    │   ├── RateLimitError        429: shows Retry-After
    │   └── ServerError           5xx
    ├── ProtocolError             the response is not the API's event stream
    │   ├── EventTooLargeError    an SSE event or NDJSON line exceeded the decoder's buffer cap
    │   ├── TruncatedStreamError  the stream ended without its API's end mark
    │   └── ConnectionLostError   the connection dropped in the middle of the stream
    └── APIError                  the server sent an error event in the middle of the stream
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._terminal import for_terminal

if TYPE_CHECKING:
    from ._reply import Reply

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConnectError",
    "ConnectionLostError",
    "EventTooLargeError",
    "HTTPStatusError",
    "JupyterStreamError",
    "NotFoundError",
    "ProtocolError",
    "RateLimitError",
    "ServerError",
    "StreamLimitError",
    "StreamTimeout",
    "TruncatedStreamError",
    "exception_chain",
]


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or during, innermost last (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


class JupyterStreamError(Exception):
    """Root of every error jupyter_stream raises. ``reply`` holds what arrived before it."""

    def __init__(self, message: str, *, reply: Reply | None = None) -> None:
        message = for_terminal(message)  # it may quote a server: shown on terminals, as text
        super().__init__(message)
        self.message = message
        self.reply = reply

    def __str__(self) -> str:
        return self.message

    def _render_traceback_(self) -> list[str]:
        """IPython's hook for showing an exception (ipykernel's error output uses it too).

        As it happens (IPython shows it while handling it): the class and the message only, as
        for a ``UsageError``. Shown again later from ``sys.last_value`` (``%tb``): the whole
        traceback. The cell still ends in an error, so Run All stops at it.
        """
        formatter = _ipython_formatter()
        just_raised = sys.exc_info()[1] is self
        if formatter is None:
            if just_raised:
                return [f"{type(self).__name__}: {self}"]
            return "".join(traceback.format_exception(type(self), self, self.__traceback__)).split(
                "\n"
            )
        if just_raised:
            return list(formatter.get_exception_only(type(self), self))
        # Never the frames' variables (%xmode Verbose): those of the calls between the user's
        # code and the error hold the API key and the base URL.
        include_vars = getattr(formatter, "include_vars", False)
        formatter.include_vars = False
        try:
            return list(formatter.structured_traceback(type(self), self, self.__traceback__))
        finally:
            formatter.include_vars = include_vars


def _ipython_formatter() -> Any:
    """The running IPython's traceback formatter (colours as the user set them), or None."""
    ipython = sys.modules.get("IPython")  # never imported here: only IPython calls the hook
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "InteractiveTB", None)


class ConfigurationError(JupyterStreamError):
    """An option or environment variable has a value that cannot work."""


class ConnectError(JupyterStreamError):
    """The server could not be reached: refused, unknown host, TLS failure."""


class StreamTimeout(JupyterStreamError):
    """The server did not accept the connection or answer in time."""


class StreamLimitError(JupyterStreamError):
    """The registry's ``max_concurrent`` streams already run, and ``when_full`` is
    ``"refuse"``."""


class HTTPStatusError(JupyterStreamError):
    """The server answered with an error status instead of an event stream."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: str = "",
        retry_after: float | None = None,
        reply: Reply | None = None,
    ) -> None:
        super().__init__(message, reply=reply)
        self.status_code = status_code
        self.body = body
        self.retry_after = retry_after


class BadRequestError(HTTPStatusError):
    """400 or 422: the server rejected the request's content."""


class AuthenticationError(HTTPStatusError):
    """401 or 403: the API key is missing, wrong, or not allowed this model."""


class NotFoundError(HTTPStatusError):
    """404: wrong base URL, or a model the server does not have."""


class RateLimitError(HTTPStatusError):
    """429: too many requests; ``retry_after`` says how long the server asks you to wait."""


class ServerError(HTTPStatusError):
    """5xx: the server (or a proxy in front of it) failed."""


class ProtocolError(JupyterStreamError):
    """The response is not a well-formed event stream of its API."""

    field: str | None = None  # the field of the server's data that had a wrong value, if one


class EventTooLargeError(ProtocolError):
    """A line or event grew past the decoder's buffer cap (SSE or NDJSON)."""


class TruncatedStreamError(ProtocolError):
    """The stream ended without its API's end mark (``data: [DONE]`` or a finish reason,
    ``message_stop``, ``response.completed``, a ``finishReason``, ``"done": true``)."""


class ConnectionLostError(ProtocolError):
    """The connection dropped while the answer was streaming."""


class APIError(JupyterStreamError):
    """The server sent an error in the middle of the stream (``{"error": …}``, Anthropic's
    ``error`` event, ``response.failed``, …): ``.type`` and ``.code`` as it said them."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        type: str | None = None,
        reply: Reply | None = None,
    ) -> None:
        super().__init__(message, reply=reply)
        self.code = code
        self.type = type
