"""One log line per request, written when its answer has ended, and safe to print.

A streamed answer ends long after its route returns, so the line is written around the whole
ASGI call, with what the exchange noted on the way (model, tokens, why it ended). Everything in
it that a client chose (path, model name, JSON keys) goes through :func:`printable` first, so
that no request can forge a log line.
"""

from __future__ import annotations

import logging
import time

from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

__all__ = ["LOG_NOTES", "RAW_SEND", "LoggingApp", "log", "printable"]

log = logging.getLogger("jupyter_stream.server")

LOG_NOTES = "jupyter_stream.log"  # scope key: what an exchange noted, for the request's line
RAW_SEND = "jupyter_stream.send"  # scope key: the server's own send, past the middleware


class LoggingApp(Starlette):
    """The Starlette app, with one log line per request, and the server's own ``send`` kept in
    the scope: an exchange writes its body through it, past the middleware's wrappers, which
    matter only for the response's start."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        scope[RAW_SEND] = send
        if not self.state.server.config.log_requests or not log.isEnabledFor(logging.INFO):
            await super().__call__(scope, receive, send)
            return
        started = time.monotonic()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await super().__call__(scope, receive, send_status)
        finally:
            notes = scope.get(LOG_NOTES, {})
            extra = " ".join(f"{key}={printable(value)}" for key, value in notes.items())
            client = scope.get("client") or ("-", 0)
            log.info(
                '%s:%s "%s %s" %s %.1f ms %s',
                client[0],
                client[1],
                scope["method"],
                printable(scope.get("raw_path", b"").decode("latin-1")),
                status or "-",
                (time.monotonic() - started) * 1000,
                extra,
            )


def printable(value: object, limit: int = 200) -> str:
    """``value`` for a log line or a message: control characters escaped (no forged lines), at
    most ``limit`` characters."""
    text = str(value)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 1] + "…"
