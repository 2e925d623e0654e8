"""The process-wide registry of live streams: list them, stop one or all, and cap how many run
at once.

A stream joins when it starts (its first ``async for``/``for`` step, or ``async with``/``with``)
and leaves the moment it ends, for whatever reason. With ``max_concurrent`` set, a stream that
would go over the cap is handled as ``when_full`` says:

- ``"preempt"``: of the running streams and the new one, the one of lowest priority (the
  oldest among equals) is closed with reason ``preempted``; that may be the new one itself.
- ``"wait"``: the new stream waits, before it connects, for a slot; waiting streams get slots by
  priority, then in order of arrival. The wait counts towards the stream's ``timeout``.
- ``"refuse"``: the new stream ends at once with a :class:`StreamLimitError`.

One lock guards the registry; it is never held while a stream is closed, so ``close()`` and the
registry can be called from any thread.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
from types import EllipsisType
from typing import Any, Generic, Literal, Protocol, TypeVar

from ._exceptions import ConfigurationError, StreamLimitError

__all__ = ["Entry", "Handle", "StreamRegistry", "WhenFull", "registry"]

WhenFull = Literal["preempt", "wait", "refuse"]
WHEN_FULL = ("preempt", "wait", "refuse")


class Handle(Protocol):
    """What the caller holds of a stream (a ChatStream)."""

    @property
    def number(self) -> int: ...

    @property
    def done(self) -> bool: ...

    def close(self, reason: str) -> None: ...


S = TypeVar("S", bound=Handle)
S_co = TypeVar("S_co", bound=Handle, covariant=True)


class Entry(Protocol[S_co]):
    """What the registry holds of a stream (its engine, which never refers to its handle but
    through ``handle()``, so that a handle nobody holds is collected)."""

    number: int
    priority: int

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None: ...

    def handle(self) -> S_co | None: ...

    def close(self, reason: str, detail: str | None = None) -> None: ...


class StreamRegistry(Generic[S]):
    """The live streams of this process (``jupyter_stream.registry``)."""

    def __init__(self, *, max_concurrent: int | None = None, when_full: WhenFull = "preempt"):
        self._lock = threading.Lock()
        self._running: dict[int, Entry[S]] = {}  # by number, in the order they got their slot
        self._waiting: list[tuple[int, int, Entry[S], asyncio.Future[None]]] = []  # a heap
        self._max: int | None = None
        self._when_full: WhenFull = "preempt"
        self.configure(max_concurrent=max_concurrent, when_full=when_full)

    # -- settings -------------------------------------------------------------------------------

    @property
    def max_concurrent(self) -> int | None:
        """How many streams may run at once (None: no limit)."""
        return self._max

    @property
    def when_full(self) -> WhenFull:
        """What a stream that would go over the limit does: preempt, wait or refuse."""
        return self._when_full

    def configure(
        self,
        *,
        max_concurrent: int | EllipsisType | None = ...,
        when_full: WhenFull | EllipsisType = ...,
    ) -> None:
        """Set the limit and what happens at it; leave out what should stay as it is.

        Lowering the limit ends no stream: it applies to the streams that start from now on.
        Raising it lets waiting streams start at once.
        """
        if not (
            max_concurrent is ...
            or max_concurrent is None
            or (type(max_concurrent) is int and max_concurrent >= 1)
        ):
            raise ConfigurationError(
                f"max_concurrent must be a whole number >= 1, or None for no limit; got "
                f"{max_concurrent!r}"
            )
        if when_full is not ... and when_full not in WHEN_FULL:
            raise ConfigurationError(
                f"when_full must be one of {', '.join(map(repr, WHEN_FULL))}; got {when_full!r}"
            )
        with self._lock:
            if max_concurrent is not ...:
                self._max = max_concurrent
            if when_full is not ...:
                self._when_full = when_full
            woken = self._fill()
        _wake(woken)

    # -- what the caller sees -------------------------------------------------------------------

    def streams(self) -> list[S]:
        """The live streams, running and waiting, oldest first."""
        with self._lock:
            engines = [*self._running.values(), *(entry[2] for entry in self._waiting)]
        engines.sort(key=lambda engine: engine.number)
        handles = (engine.handle() for engine in engines)
        return [stream for stream in handles if stream is not None and not stream.done]

    def stop(self, stream: S | int, reason: str = "stopped") -> bool:
        """Stop one live stream, given as itself or by its ``number``; False if it is not live."""
        for live in self.streams():
            if live is stream or live.number == stream:
                live.close(reason)
                return True
        return False

    def stop_all(self, reason: str = "stopped") -> int:
        """Stop every live stream; how many were stopped."""
        streams = self.streams()
        for stream in streams:
            stream.close(reason)
        return len(streams)

    def __len__(self) -> int:
        return len(self.streams())

    def __repr__(self) -> str:
        with self._lock:
            running, waiting = len(self._running), len(self._waiting)
        limit = "no limit" if self._max is None else f"max_concurrent={self._max}"
        return (
            f"<StreamRegistry {running} running, {waiting} waiting, {limit}, "
            f"when_full={self._when_full!r}>"
        )

    # -- what the streams call ------------------------------------------------------------------

    def admit(self, engine: Entry[S]) -> asyncio.Future[None] | None:
        """Give ``engine`` a slot: None when it may run now (it may have been preempted
        itself: look at its reason), a future to await for a slot when it must wait. Raises
        :class:`StreamLimitError` when it is refused. Called on the stream's loop."""
        victim: Entry[S] | None = None
        with self._lock:
            if engine.number in self._running:
                return None
            limit = self._max
            if limit is None or len(self._running) < limit:
                self._running[engine.number] = engine
                return None
            if self._when_full == "refuse":
                running = len(self._running)
                raise StreamLimitError(
                    f"{running} stream{' is' if running == 1 else 's are'} running, the limit "
                    f"(max_concurrent={limit}, when_full='refuse'). Fix: stop one (close(), "
                    "registry.stop_all(), %chat stop all), or raise the limit with "
                    "registry.configure(max_concurrent=...)"
                )
            if self._when_full == "wait":
                assert engine.loop is not None
                future: asyncio.Future[None] = engine.loop.create_future()
                heapq.heappush(self._waiting, (-engine.priority, engine.number, engine, future))
                return future
            lowest = min(self._running.values(), key=lambda e: (e.priority, e.number))
            if engine.priority < lowest.priority:
                victim = engine
                detail = (
                    f"all {limit} slots (max_concurrent) are held by streams of higher priority "
                    f"than {engine.priority}"
                )
            else:
                victim = lowest
                del self._running[lowest.number]
                self._running[engine.number] = engine
                detail = (
                    f"stream #{engine.number} (priority {engine.priority}) took its slot "
                    f"(max_concurrent={limit})"
                )
        victim.close("preempted", detail)
        return None

    def leave(self, engine: Entry[S]) -> None:
        """``engine`` has ended: free its slot or its place in the queue."""
        with self._lock:
            if self._running.pop(engine.number, None) is None:
                for index, entry in enumerate(self._waiting):
                    if entry[2] is engine:
                        self._waiting[index] = self._waiting[-1]
                        self._waiting.pop()
                        heapq.heapify(self._waiting)
                        break
                return
            woken = self._fill()
        _wake(woken)

    def _fill(self) -> list[asyncio.Future[None]]:
        """Give free slots to the waiting streams first in line (under the lock)."""
        woken = []
        while self._waiting and (self._max is None or len(self._running) < self._max):
            _priority, number, engine, future = heapq.heappop(self._waiting)
            self._running[number] = engine
            woken.append(future)
        return woken


def _wake(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        try:
            future.get_loop().call_soon_threadsafe(_resolve, future)
        except RuntimeError:  # its loop is closed: that stream is gone
            pass


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


registry: StreamRegistry[Any] = StreamRegistry()  # of ChatStreams
