"""Exchanges: an answer that takes time, and stops the moment its client goes.

An :class:`Exchange` runs its work while listening for the client's disconnect, and cancels the
work when the client goes (for a relay, that closes the upstream request). :class:`Exchanges`
holds the live ones: each holds one of ``max_streams`` slots from admission to its end, and a
watchdog ends those whose client has stopped reading, so that a slow or silent client cannot
hold a slot for ever. The server's end, the watchdog's and a disconnect all come down to one
cancellation, after which the client (if still there) is told why.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from ._config import ServerConfig
from ._errors import api_of, error_response, stream_error
from ._logging import LOG_NOTES, RAW_SEND, log

__all__ = ["SSE_HEADERS", "Exchange", "Exchanges", "Work"]

TELL_WHY_TIMEOUT = 1.0  # seconds to tell a client why the server ended its stream
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tells nginx and friends not to buffer the stream
]

Work = Callable[["Exchange"], Awaitable[None]]


class Exchange:
    """An ASGI response running ``work(self)``, cancelled when the client disconnects, when the
    client stops reading for ``stall_timeout``, or when the server shuts down.

    ``work`` writes through :meth:`start` and :meth:`body`, and may note what it did in
    :attr:`log` (the model, tokens, why it ended) for the request's log line. When the server
    ends an event stream that its client is still reading, the client is told why in an SSE
    error event; when the work fails before it has started its response, the client gets a 500.
    """

    def __init__(self, work: Work, live: Exchanges, request: Request) -> None:
        self._work = work
        self._live = live
        self.log: dict[str, Any] = request.scope.setdefault(LOG_NOTES, {})
        self.raw_send: Send | None = request.scope.get(RAW_SEND)
        self._send: Send | None = None
        self._task: asyncio.Future[None] | None = None
        self.started = self.completed = self.events = False
        self.sending = False  # a body write is under way (it blocks when the client reads nothing)
        self.writes = 0
        self.stall: tuple[int, float] | None = None  # (writes, since): the watchdog's note
        self.stuck = False  # a write was waiting for the client when the exchange was cancelled
        self.api = api_of(request)  # whose error shapes the client reads
        # the answer's own error event, for a stream that is no SSE or that keeps count
        self.last_words: Callable[[str], bytes] | None = None

    async def start(
        self, status: int = 200, headers: list[tuple[bytes, bytes]] = SSE_HEADERS
    ) -> None:
        assert self._send is not None
        self.started = True
        self.events = headers is SSE_HEADERS or self.last_words is not None
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        if self.raw_send is None:  # served without the LoggingApp around it
            self.raw_send = self._send

    async def body(self, data: bytes, more: bool = True) -> None:
        assert self.raw_send is not None
        self.sending = True
        await self.raw_send({"type": "http.response.body", "body": data, "more_body": more})
        self.sending = False
        self.writes += 1
        self.completed = not more

    def blocked(self, sending: bool) -> None:
        """A write is waiting for the client to read (True), or no longer (False)."""
        self.sending = sending
        with self._live.changed:
            self._live.changed.notify_all()

    def cancel(self, why: str) -> None:
        self.log.setdefault("end", why)
        self.stuck = self.stuck or self.sending  # its client is not reading: tell it nothing
        if self._task is not None:
            self._task.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._send = send
        self._task = task = asyncio.ensure_future(self._work(self))
        watcher = asyncio.ensure_future(_disconnected(receive))
        self._live.begin(self)
        try:
            try:
                await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
                if watcher.done() and not task.done():
                    self.cancel("client disconnected")
            finally:
                watcher.cancel()
                task.cancel()  # when the server shuts down, our own task is the one cancelled
                failure = await _outcome(task)  # it cleans up: a relay closes its upstream here
                if failure is not None:
                    self.log["end"] = f"server error ({type(failure).__name__})"
                    log.error("%s failed", scope.get("path"), exc_info=failure)
                if not watcher.done() or watcher.cancelled():  # the client is still there
                    await self._tell_why(failure)
        finally:
            self._live.end(self)

    async def _tell_why(self, failure: BaseException | None) -> None:
        why = str(self.log.get("end", "server error"))
        if not self.started and failure is not None:
            error = error_response(
                500, f"the server failed: {why}", type="server_error", api=self.api
            )
            await self.start(500, error.raw_headers)
            await self.body(bytes(error.body), more=False)
        elif self.events and not self.completed and not self.stuck:
            message = f"the server ended this stream: {why}"
            event = (self.last_words or self._stream_error)(message)
            with contextlib.suppress(asyncio.TimeoutError):  # nor wait long for a slow reader
                await asyncio.wait_for(self.body(event, more=False), TELL_WHY_TIMEOUT)

    def _stream_error(self, message: str) -> bytes:
        return stream_error(self.api, message)


async def _outcome(task: asyncio.Future[None]) -> BaseException | None:
    """Wait for ``task``; the exception it failed with, if any (its cancellation is none)."""
    try:
        await task
    except asyncio.CancelledError:
        return None
    except Exception as exc:
        return exc
    return None


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class Exchanges:
    """The live exchanges, the slots they hold, and the logs of the last 1000 that ended.

    ``changed`` is notified as exchanges begin, block and end (tests and benchmarks wait on it,
    from other threads).
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.exchanges: set[Exchange] = set()
        self.slots = 0
        self.ended: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self.changed = threading.Condition()  # notified as exchanges begin and end

    def admit(self, work: Work, request: Request) -> Exchange | None:
        """An exchange for ``work`` holding a slot, or None when every slot is taken."""
        if self.slots >= self.config.max_streams:
            return None
        self.slots += 1  # given back by Exchange.__call__, which Starlette always calls
        return Exchange(work, self, request)

    def begin(self, exchange: Exchange) -> None:
        with self.changed:
            self.exchanges.add(exchange)
            self.changed.notify_all()

    def end(self, exchange: Exchange) -> None:
        with self.changed:
            self.exchanges.discard(exchange)
            self.slots -= 1
            self.ended.append(exchange.log)
            self.changed.notify_all()

    def close_all(self, why: str) -> None:
        for exchange in list(self.exchanges):
            exchange.cancel(why)

    async def watch_stalls(self) -> None:
        """End exchanges whose client has read nothing for ``stall_timeout``: a write that
        has not returned since the last look, for that long."""
        limit = self.config.stall_timeout
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            now = time.monotonic()
            for exchange in list(self.exchanges):
                if not exchange.sending:
                    exchange.stall = None
                elif exchange.stall is None or exchange.stall[0] != exchange.writes:
                    exchange.stall = (exchange.writes, now)
                elif now - exchange.stall[1] >= limit:
                    exchange.cancel(f"client read nothing for {limit:g} s")
