"""One clock per server that writes every paced stream's tokens when they fall due.

A thousand streams at 30 tokens per second are 30,000 writes a second. Had each stream a task
that sleeps until its next token, each write would also cost a future, a timer and a task step;
here one timer callback wakes for whatever is due (tens of streams at a time under load) and
writes it at once. A write goes to the server's ``send`` coroutine, which completes without
suspending unless the client has stopped reading (the transport is paused); only then does the
rest of it become a task, and the stream waits for it before its next token.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._exchange import Exchange

__all__ = ["Clock", "Player"]

# uvloop's timers count whole milliseconds (rounding the delay, flooring the clock), so a timer
# may fire up to 1.5 ms before the time asked for; what falls due within that is written at
# once, rather than the timer re-armed for the rest.
EARLY = 0.002


class Clock:
    """A heap of (when, player) and one timer for the earliest."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Player]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._ticking = False

    def schedule(self, when: float, player: Player) -> None:
        heapq.heappush(self._heap, (when, next(self._order), player))
        if not self._ticking and when < self._timer_at:
            self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = math.inf
        if self._heap:
            when = self._heap[0][0]
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(when - time.monotonic(), 0.0), self._tick)
            self._timer_at = when

    def _tick(self) -> None:
        self._timer, self._timer_at = None, math.inf
        self._ticking = True
        try:
            now = time.monotonic()
            horizon = now + EARLY  # what falls due within a timer's resolution goes now
            heap, due = self._heap, []
            while heap and heap[0][0] <= horizon:
                due.append(heapq.heappop(heap)[2])
            for player in due:  # each once a tick: an unpaced stream cannot hog the loop
                if player.playing:
                    try:
                        player.play(now)
                    except Exception as exc:  # that stream fails, not the others
                        player.fail(exc)
        finally:
            self._ticking = False
            self._arm()


class Player:
    """Writes one stream's tokens as they fall due, several at once when it is late; ``done``
    gets the number of tokens written and why the answer ended (``stop`` or ``length``)."""

    def __init__(
        self,
        clock: Clock,
        exchange: Exchange,
        tokens: Iterator[str],
        encode: Callable[[str], bytes],
        due: Callable[[int], float],
        limit: float,
        max_batch: int,
    ) -> None:
        self._clock = clock
        self._exchange = exchange
        self._tokens = tokens
        self._encode = encode
        self._due = due
        self._limit = limit
        self._max_batch = max_batch
        self._next = next(tokens, None)
        self.sent = 0  # tokens taken for writing
        self._error: Exception | None = None  # met while taking them; raised once they are out
        self.playing = True
        self._blocked: asyncio.Future[None] | None = None
        self.done: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    def start(self) -> None:
        self._after_write()

    def stop(self) -> None:
        self.playing = False
        if self._blocked is not None:
            self._blocked.cancel()

    def play(self, now: float) -> None:
        batch = []
        try:
            while self._next is not None and self.sent < self._limit:
                batch.append(self._encode(self._next))
                self.sent += 1
                self._next = next(self._tokens, None)
                if len(batch) == self._max_batch or self._due(self.sent) > now:
                    break
        except Exception as exc:  # the tokens before it still go out, then the stream fails
            self._error = exc
            if not batch:
                self.fail(exc)
                return
        self._write(b"".join(batch))

    def _after_write(self) -> None:
        if not self.playing or self.done.done():
            return
        if self._error is not None:
            self.fail(self._error)
        elif self._next is None or self.sent >= self._limit:
            self.done.set_result((self.sent, "stop" if self._next is None else "length"))
        else:
            self._clock.schedule(self._due(self.sent), self)

    def _write(self, data: bytes) -> None:
        exchange = self._exchange
        send = exchange.raw_send
        assert send is not None  # the response has started
        message = {"type": "http.response.body", "body": data, "more_body": True}
        coroutine: Coroutine[Any, Any, None] = send(message)  # type: ignore[assignment]
        try:
            waiting_on = coroutine.send(None)
        except StopIteration:
            self._written()
            return
        except Exception as exc:
            self.fail(exc)
            return
        exchange.blocked(True)  # the client is slow: the rest of the write becomes a task
        self._blocked = blocked = asyncio.ensure_future(_rest(coroutine, waiting_on))
        blocked.add_done_callback(self._unblocked)

    def _unblocked(self, blocked: asyncio.Future[None]) -> None:
        self._exchange.blocked(False)
        self._blocked = None
        if blocked.cancelled():
            if self.playing:  # cancelled by something other than stop()
                self.fail(asyncio.CancelledError())
            return
        error = blocked.exception()
        if error is not None:
            self.fail(error)
            return
        self._written()

    def _written(self) -> None:
        self._exchange.writes += 1
        self._exchange.log["tokens"] = self.sent
        self._after_write()

    def fail(self, error: BaseException) -> None:
        if not self.done.done():
            self.done.set_exception(error)


async def _rest(coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """Await the rest of ``coroutine``, which has run up to a suspension on ``waiting_on``."""
    return await _Resumed(coroutine, waiting_on)


class _Resumed:
    """An awaitable that hands ``waiting_on`` to the task first, then drives ``coroutine`` on:
    generator delegation, as ``await`` does, from a point the caller has already reached."""

    def __init__(self, coroutine: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self._coroutine = coroutine
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, value = self._coroutine, self._waiting_on
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # CancelledError, thrown in by the task
                try:
                    value = coroutine.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coroutine.send(sent)
                except StopIteration as stop:
                    return stop.value
