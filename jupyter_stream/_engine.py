"""The engine of one streamed chat completion: its states, its pump, and the ``close()`` that
stops it now. :class:`~jupyter_stream.ChatStream` (``_stream.py``) is its public face.

A stream is a *pump* task on an event loop (the caller's for ``astream_chat``, a private one for
``stream_chat``) that reads the response, decodes events and folds them into a :class:`Reply`;
the consumer is handed the reply's content pieces one by one, keeping an index into them. What
the two share is guarded by one lock, which is what makes ``close()`` safe from any thread:

- ``close()`` records why the stream ended (the first reason wins), cuts delivery (so no delta
  is delivered after it returns), shuts the socket down at once (so the server sees the
  disconnect even when the loop is busy), and asks the loop to cancel the pump, which closes the
  response and releases the connection. It never blocks; ``aclose()`` also waits for the release.
- A natural end (the end mark, an error, an idle timeout) lets the consumer take what remains.

The request, its retries and httpx's errors are ``_http.py``'s; what the bytes mean is the wire
format's (``_wire/``); what a stop_when rule holds back is the ``Watch``'s (``_moderation.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, get_args

import anyio

from ._exceptions import (
    APIError,
    ConfigurationError,
    JupyterStreamError,
    ProtocolError,
    TruncatedStreamError,
)
from ._http import (
    IDLE_ERRORS,
    TRANSPORT_ERRORS,
    Body,
    safe_cause,
    scrubbed,
    stream_request,
    translate_error,
)
from ._loop import private_loop
from ._moderation import RuleMatch, Watch
from ._registry import Handle, registry
from ._reply import Chunk, Reply, count_texts, excerpt
from ._target import Endpoint
from ._wire import DECODERS, EndKind, Event, WireFormat, wire_format

__all__ = ["NATURAL_ENDS", "Engine", "State", "StopReason", "StreamRequest", "StreamStats"]

DRAIN_TIMEOUT = 1.0  # after the end mark, how long to read on so the connection is kept


class StopReason(StrEnum):
    """Why a stream ended."""

    COMPLETED = "completed"  # the model finished (its answer, or tool calls)
    LENGTH = "length"  # the model hit max_tokens
    CONTENT_FILTER = "content_filter"  # the server's filter cut the answer
    STOPPED = "stopped"  # close() by the caller
    TIMEOUT = "timeout"  # the total deadline passed
    IDLE_TIMEOUT = "idle_timeout"  # nothing arrived for idle_timeout seconds
    INTERRUPTED = "interrupted"  # the consumer was interrupted (Ctrl-C, kernel interrupt)
    SUPERSEDED = "superseded"  # a newer request replaced it
    MODERATED = "moderated"  # a stop_when rule matched
    PREEMPTED = "preempted"  # closed to make room for a stream of higher priority
    ERROR = "error"  # see .error

    @property
    def natural(self) -> bool:
        """True when the model ended the answer (completed, length, content_filter), not
        someone or something on this side."""
        return self in NATURAL_ENDS


_DONE = Chunk(done=True)  # an end mark and nothing else
# A wire format's end kinds (EndKind) are the natural ends: one list of them, the wire's.
NATURAL_ENDS = frozenset(StopReason(kind) for kind in get_args(EndKind))


@dataclass(frozen=True)
class StreamStats:
    """Timing and size of a stream, as of when it was read."""

    time_to_first_token: float | None
    elapsed: float
    chunks: int
    tokens: int
    usage: Mapping[str, Any] | None

    @property
    def tokens_per_second(self) -> float | None:
        """Tokens after the first, per second since the first arrived."""
        if self.time_to_first_token is None or self.tokens < 2:
            return None
        span = self.elapsed - self.time_to_first_token
        return (self.tokens - 1) / span if span > 0 else None


@dataclass(frozen=True)
class StreamRequest:
    endpoint: Endpoint
    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    timeout: float | None
    idle_timeout: float | None
    connect_timeout: float | None
    max_retries: int
    priority: int = 0
    watch: Callable[[], Watch] | None = None
    wire: WireFormat = field(default_factory=wire_format)


class State(Enum):
    """Where a stream is in its life; it only moves forward (WAITING is skipped without a cap)."""

    NEW = "new"  # made, not iterated yet
    WAITING = "waiting"  # for a slot in the registry (when_full="wait")
    CONNECTING = "connecting"  # the request is sent (and retried), no answer yet
    STREAMING = "streaming"  # a 2xx answer is being read
    ENDED = "ended"  # _reason says why


_numbers = itertools.count(1)  # next() on it is atomic in CPython: a number per stream


class Engine:
    """The working part of a :class:`ChatStream`: its state, its pump and the consumer's side.

    It never refers to its ChatStream, so a ChatStream that nobody holds any more (a ``break``
    out of a bare loop, say) is collected, and closes its engine as it goes.
    """

    def __init__(self, request: StreamRequest, *, sync: bool) -> None:
        self._request = request
        self._sync = sync
        self._reply = Reply()
        self._parse = request.wire.parser()  # one per stream: a parser may keep state
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        # Deltas are the reply's own content pieces: the consumer keeps an index into them,
        # and close() sets _cut, after which none is delivered.
        self._delivered = 0
        self._cut = False
        self._state = State.NEW
        self._reason: StopReason | None = None  # set with _state ENDED, under the lock
        self._error: JupyterStreamError | None = None
        self._error_raised = False
        self._timeout = request.timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None  # the pump's, while it runs
        self._pump_began = False
        self._waiter: asyncio.Future[None] | None = None
        self._sock: socket.socket | None = None
        self._deadline_handle: asyncio.TimerHandle | None = None
        self._released: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._started_at: float | None = None
        self._first_token_at: float | None = None
        self._ended_at: float | None = None
        self._tokens = 0
        self._body_started = False
        self.number = next(_numbers)
        self.priority = request.priority
        self.handle: Callable[[], Handle | None] = lambda: None  # set by the ChatStream
        self._detail: str | None = None
        self._match: RuleMatch | None = None
        self._watch = request.watch() if request.watch is not None else None

    @property
    def stop_reason(self) -> StopReason | None:
        return self._reason

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def _end(self, reason: StopReason) -> None:
        """Enter ENDED with ``reason`` (under the lock; the caller checked it had not ended)."""
        self._reason = reason
        self._state = State.ENDED
        self._ended_at = time.monotonic()

    def stats(self) -> StreamStats:
        with self._lock:
            started, first, ended = self._started_at, self._first_token_at, self._ended_at
            tokens = self._tokens
        now = ended if ended is not None else time.monotonic()
        reply = self._reply
        if reply.output_tokens is not None:
            tokens = max(tokens, reply.output_tokens)
        return StreamStats(
            time_to_first_token=None if first is None or started is None else first - started,
            elapsed=0.0 if started is None else now - started,
            chunks=reply.chunks,
            tokens=tokens,
            usage=reply.usage,
        )

    # -- control --------------------------------------------------------------------------------

    def close(
        self, reason: StopReason | str = StopReason.STOPPED, detail: str | None = None
    ) -> None:
        """Stop the stream now. Idempotent, thread-safe, never blocks.

        After it returns no delta is delivered; the connection is shut down at once and the
        pump is cancelled on its loop. A stream that already ended keeps its reason (and its
        text), and delivers none of the deltas its consumer has not read yet.
        """
        reason = StopReason(reason)
        with self._lock:
            if self._reason is not None:
                self._cut = True  # a fast server's whole answer may be waiting to be read
                self._cond.notify_all()
                return
            self._end(reason)
            self._detail = detail
            self._cut = True
            if self._watch is not None:  # text held back by the rules was received
                self._reply.append_content("".join(self._watch.flush()))
            sock, self._sock = self._sock, None
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # the server sees the FIN now
                except OSError:
                    pass
            self._cond.notify_all()
            if self._loop is None:  # never started: nothing to release
                self._release()
                return
        registry.leave(self)
        self._on_loop(self._cancel)

    async def aclose(self) -> None:
        """Close, and wait until the connection is released."""
        self.close()
        await self.await_released()

    async def await_released(self) -> None:
        # Shielded: a caller's own timeout must not cancel the future that others wait on too.
        await asyncio.shield(asyncio.wrap_future(self._released))

    def _release(self) -> None:
        if not self._released.done():
            self._released.set_result(None)

    def set_deadline(self, seconds: float | None) -> None:
        """End the stream with ``timeout`` once ``seconds`` have passed since it started.

        Takes effect at once, from any thread: a deadline already passed ends it now. None
        removes the limit.
        """
        if seconds is not None and seconds < 0:
            raise ConfigurationError(f"a deadline must be >= 0 seconds, got {seconds}")
        with self._lock:
            self._timeout = seconds
            started = self._started_at
        if seconds is not None and started is not None and time.monotonic() >= started + seconds:
            self.close(StopReason.TIMEOUT)
        else:
            self._on_loop(self._schedule_deadline)

    def _on_loop(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the stream's loop: now if this is its thread, else as soon as the
        loop wakes. Nothing to do when the stream has no loop yet, or its loop is closed."""
        loop = self._loop
        if loop is None:
            return
        try:
            if threading.get_ident() == self._loop_thread:
                callback()
            else:
                loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop is closed: the pump is gone with it
            pass

    # -- async consumer -------------------------------------------------------------------------

    async def anext(self, holder: object) -> str:
        """The next delta. ``holder`` (the ChatStream) is kept alive by this frame only."""
        if self._loop is None or self._sync:
            self.begin_async()
        while True:
            delta = self._next_delta()
            if delta is not None:
                return delta
            if self._reason is not None:
                self._raise_error_once()
                raise StopAsyncIteration
            # The pump runs on this thread, so nothing arrives between the check and the wait;
            # close() from another thread wakes the waiter through the loop.
            assert self._loop is not None
            waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            except asyncio.CancelledError:
                self.close(StopReason.INTERRUPTED)
                raise

    def begin_async(self) -> None:
        if self._sync:
            raise TypeError(
                "this stream is synchronous: use `for` and `with` with stream_chat, or "
                "`async for` and `async with` with astream_chat"
            )
        if self._loop is None:
            self._begin(asyncio.get_running_loop())

    # -- sync consumer --------------------------------------------------------------------------

    def next(self) -> str:
        if self._loop is None or not self._sync:
            self.begin_sync()
        with self._cond:
            while True:
                delta = self._next_delta()
                if delta is not None:
                    return delta
                if self._reason is not None:
                    self._raise_error_once()
                    raise StopIteration
                try:
                    self._cond.wait()
                except KeyboardInterrupt:
                    self.close(StopReason.INTERRUPTED)
                    raise

    def begin_sync(self) -> None:
        if not self._sync:
            raise TypeError(
                "this stream is asynchronous: use `async for` and `async with` with "
                "astream_chat, or `for` and `with` with stream_chat"
            )
        if self._loop is None:
            self._begin(private_loop())

    def wait_released(self) -> None:
        try:
            self._released.result(timeout=DRAIN_TIMEOUT + 5)
        except concurrent.futures.TimeoutError:
            pass

    def _next_delta(self) -> str | None:
        """The next content piece not yet delivered, or None (none yet, or close() was called)."""
        # No lock: the pieces are append-only (safe to index while the pump appends), and the
        # decision to deliver is the read of _cut, which close() sets before it returns. A lock
        # here would not change what a consumer on another thread can observe (it must release
        # it before returning the piece), so it is left out of the hot path.
        pieces = self._reply._content
        index = self._delivered
        if index < len(pieces) and not self._cut:
            self._delivered = index + 1
            return pieces[index]
        return None

    def _raise_error_once(self) -> None:
        if self._error is not None and not self._error_raised:
            self._error_raised = True
            raise self._error

    # -- the pump, on the stream's loop ---------------------------------------------------------

    def _begin(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if self._loop is not None:
                return
            self._loop = loop
            if self._reason is not None:  # closed before it started: close() released it
                return
        if self._sync:
            loop.call_soon_threadsafe(self._start)
        else:
            self._start()

    def _start(self) -> None:
        with self._lock:
            self._loop_thread = threading.get_ident()
            if self._reason is not None:
                self._release()
                return
            self._started_at = time.monotonic()
            self._state = State.CONNECTING
            assert self._loop is not None
            self._task = self._loop.create_task(self._pump())
            # A task cancelled before its first step never runs _pump's finally: this does.
            self._task.add_done_callback(self._pump_done)
        self._schedule_deadline()

    def _pump_done(self, task: asyncio.Task[None]) -> None:
        self._finish(StopReason.INTERRUPTED)
        self._release()

    def _cancel(self) -> None:
        """Cancel the pump (on its loop). A running pump is cancelled through its anyio scope,
        never by Task.cancel(): httpcore closes a response under an anyio shield, which a
        native cancel pierces, leaving the connection ACTIVE in the pool and its socket open."""
        if self._scope is not None:
            self._scope.cancel()
        elif self._task is not None and not self._pump_began:
            self._task.cancel()  # not started yet: it never runs, and _pump_done releases
        self._wake()

    def _wake(self) -> None:
        """Wake the consumer; called on the loop thread, with or without the lock."""
        if self._sync:
            with self._cond:
                self._cond.notify_all()
        else:
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _schedule_deadline(self) -> None:
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
            self._deadline_handle = None
        if self._timeout is None or self._reason is not None or self._started_at is None:
            return
        assert self._loop is not None
        # asyncio's loop.time() is time.monotonic(), the clock _started_at was read from.
        self._deadline_handle = self._loop.call_at(
            self._started_at + self._timeout, self.close, StopReason.TIMEOUT
        )

    def _finish(self, reason: StopReason, error: JupyterStreamError | None = None) -> None:
        """Record a natural end (the first reason wins); undelivered deltas stay deliverable."""
        ended = False
        with self._lock:
            if self._reason is None:
                ended = True
                if self._watch is not None:
                    reason = self._last_watch(self._watch, reason)
                self._end(reason)
                if error is not None:
                    error.reply = self._reply
                    self._error = error
            self._sock = None
        self._wake()
        if ended:
            registry.leave(self)

    def _last_watch(self, watch: Watch, reason: StopReason) -> StopReason:
        """At a natural end: show the text held back for a stop sequence, and let the rules
        confirm a match that reached the end (under the lock)."""
        # A stop sequence ends the answer as the end mark does: a match that reached its end
        # stands.
        ended_by_sequence = self._match is not None and self._match is watch.sequence
        confirm = reason.natural and (self._match is None or ended_by_sequence)
        release, match = watch.finish(lambda: self._reply.content, confirm=confirm)
        self._reply.append_content(release)
        if match is not None:
            self._match, self._detail = match, str(match)
            self._cut = True  # the match is never delivered, as when a stream is closed
            return StopReason.MODERATED
        return reason

    async def _pump(self) -> None:
        reason, error = StopReason.INTERRUPTED, None
        self._pump_began = True
        try:
            # close(), the deadline and the drain's limit cancel this scope (see _cancel); it
            # swallows its own cancellation, and the reason was set by whoever cancelled.
            with anyio.CancelScope() as self._scope:
                reason = await self._receive()
        except asyncio.CancelledError:
            # Only a native cancel gets here: the loop shutting down is an interruption.
            reason = StopReason.INTERRUPTED
        except IDLE_ERRORS:
            reason = StopReason.IDLE_TIMEOUT
        except JupyterStreamError as exc:
            error = scrubbed(exc, self._request.endpoint)
        except TRANSPORT_ERRORS as exc:
            request = self._request
            translated = translate_error(
                exc, request.endpoint, request.wire, chunks=self._reply.chunks
            )
            error = self._caused_by(translated, exc)
        except Exception as exc:  # a bug or a shape we did not foresee: end, never hang
            message = f"unexpected {type(exc).__name__} while streaming: {exc}"
            error = self._caused_by(ProtocolError(self._request.endpoint.redact(message)), exc)
        finally:
            self._scope = None
            if self._deadline_handle is not None:
                self._deadline_handle.cancel()
            self._finish(StopReason.ERROR if error is not None else reason, error)
            # close() from another thread may have left the registry just before the pump
            # joined it: leaving again here (it is idempotent) never keeps a slot taken.
            registry.leave(self)
            # asyncio closes a transport's socket one loop iteration after transport.close():
            # let it, so that "released" means the socket is really closed.
            try:
                await asyncio.sleep(0)
            finally:
                self._release()

    def _caused_by(self, error: JupyterStreamError, exc: BaseException) -> JupyterStreamError:
        """``error`` raised from ``exc``, or from stand-ins without tracebacks when exc holds an
        httpx request or shows a secret (h11 quotes an illegal header value, key and all)."""
        error.__cause__ = safe_cause(exc, self._request.endpoint)
        error.__suppress_context__ = True
        return error

    async def _take_slot(self) -> None:
        """Join the registry, waiting for a slot if it says so."""
        waiter = registry.admit(self)
        if waiter is not None:
            self._move(State.CONNECTING, State.WAITING)
            try:
                await waiter
            finally:
                self._move(State.WAITING, State.CONNECTING)

    async def _receive(self) -> StopReason:
        request = self._request
        await self._take_slot()
        if self._reason is not None:  # preempted on arrival
            return self._reason
        return await stream_request(
            lambda fallback: request.wire.request(
                request.endpoint, request.model, request.messages, request.params, fallback=fallback
            ),
            self._read_events,
            endpoint=request.endpoint,
            wire=request.wire,
            model=request.model,
            connect_timeout=request.connect_timeout,
            idle_timeout=request.idle_timeout,
            max_retries=request.max_retries,
            body_started=lambda: self._body_started,
        )

    def _move(self, old: State, new: State) -> None:
        """From ``old`` to ``new``, unless the stream has moved on (ended) meanwhile."""
        with self._lock:
            if self._state is old:
                self._state = new

    async def _read_events(self, body: Body) -> StopReason:
        self._move(State.CONNECTING, State.STREAMING)
        content_type = body.content_type
        # NDJSON comes as application/x-ndjson, application/jsonl or plain JSON: a line each.
        lines = self._request.wire.framing == "ndjson"
        if ("json" in content_type and not lines) or "html" in content_type:
            return await self._read_whole_body(body, content_type)
        sock = body.socket()
        with self._lock:
            if self._reason is None and sock is not None:
                self._sock = sock
        try:
            chunks = body.chunks()
            try:
                return await self._read_chunks(chunks, content_type)
            finally:
                await body.close(chunks)
        finally:
            with self._lock:  # the connection may go back to the pool: close() must not touch it
                self._sock = None

    async def _read_chunks(self, chunks: AsyncIterator[bytes], content_type: str) -> StopReason:
        decoder = DECODERS[self._request.wire.framing]()
        head = b""  # the first bytes, for an error message if this is no event stream
        async for data in chunks:
            if len(head) < 512:
                head += data[:512]
                self._body_started = True
            events = decoder.feed(data)
            if events and self._deliver(events):
                if self._reason is not None:  # closed meanwhile; the pump is being cancelled
                    return self._reason
                return await self._drain(chunks)
        if self._deliver(decoder.flush()) or self._reply.finish_reason:
            return self._end_reason()
        if not self._reply.chunks:
            said = excerpt(self._request.endpoint.redact(head.decode("utf-8", "replace")))
            raise ProtocolError(
                f"expected an event stream from {self._request.endpoint.display_url} but got "
                f"{content_type or 'no content type'}: {said!r}"
            )
        raise TruncatedStreamError(
            f"the stream from {self._request.endpoint.host_port} ended after "
            f"{self._reply.chunks} chunks with neither {self._request.wire.end_mark} nor a finish "
            "reason: the answer may be cut short; what arrived is kept in .reply"
        )

    async def _drain(self, chunks: AsyncIterator[bytes]) -> StopReason:
        """After the end mark: end the stream for the consumer now, then read to the end of the body
        (briefly) so that the connection can go back to the pool."""
        reason = self._end_reason()
        self._finish(reason)
        assert self._loop is not None and self._scope is not None
        handle = self._loop.call_later(DRAIN_TIMEOUT, self._scope.cancel)
        try:
            async for _ in chunks:
                pass
        finally:
            handle.cancel()
        return reason

    async def _read_whole_body(self, body: Body, content_type: str) -> StopReason:
        """A server that answered without streaming: accept a whole answer, else explain."""
        text = await body.text()
        wire = self._request.wire
        chunk = wire.parse_whole(text) if "json" in content_type else None
        if chunk is None:
            said = excerpt(self._request.endpoint.redact(text))
            raise ProtocolError(
                f"expected an event stream (text/event-stream) from "
                f"{self._request.endpoint.display_url}{wire.path} but got {content_type}: "
                f"{said!r}. {wire.url_hint}"
            )
        self._commit([chunk])
        return self._end_reason()

    def _end_reason(self) -> StopReason:
        return StopReason(self._request.wire.end_kind(self._reply.finish_reason))

    def _deliver(self, events: Sequence[Event]) -> bool:
        """Parse events and hand them over; True once the stream gives its end mark."""
        chunks: list[str | Chunk] = []
        done = False
        failure: JupyterStreamError | None = None
        parse = self._parse
        for event in events:
            try:
                chunk = parse(event.data, event.event)
            except JupyterStreamError as exc:
                failure = exc
                break
            if type(chunk) is not str:
                assert isinstance(chunk, Chunk)
                if chunk.error is not None:
                    failure = _api_error(chunk.error, self._request.endpoint)
                    break
                if chunk.notes:  # they quote the server's values, which may echo the key
                    redact = self._request.endpoint.redact
                    chunk = chunk._replace(notes=tuple(redact(note) for note in chunk.notes))
                if chunk.done:
                    done = True
                    if chunk != _DONE:  # an end mark may carry the finish reason or usage
                        chunks.append(chunk._replace(done=False))
                    break
            chunks.append(chunk)
        if chunks and not self._commit(chunks):
            return True  # closed meanwhile: stop reading
        if failure is not None:
            raise failure
        return done

    def _commit(self, chunks: list[str | Chunk]) -> bool:
        """Fold chunks into the reply and wake the consumer; False once the stream has ended
        (closed meanwhile, or ended here by a stop_when rule or a stop sequence)."""
        with self._lock:
            if self._reason is not None:
                return False
            if self._watch is None:
                texts = self._reply.extend(chunks)
                match = None
            else:
                texts, match = self._commit_watched(self._watch, chunks)
            if texts:
                self._tokens += texts
                if self._first_token_at is None:
                    self._first_token_at = time.monotonic()
            if match is not None:
                self._match = match
                if self._watch is not None and match is self._watch.sequence:
                    self._finish(StopReason.COMPLETED)  # shown text stays deliverable
                else:
                    self.close(StopReason.MODERATED, str(match))  # no more deliveries
            if texts:
                self._wake()
        return match is None

    def _commit_watched(
        self, watch: Watch, chunks: list[str | Chunk]
    ) -> tuple[int, RuleMatch | None]:
        """``_commit`` through the stream's rules (see ``Watch.take``). Returns the tokens that
        arrived and the match."""
        reply = self._reply
        taken = watch.take(chunks, reply.content_length, lambda: reply.content)
        reply.append_content(taken.release)
        counted = reply.extend(taken.chunks)
        if taken.chunks is not chunks:  # tokens that arrived before the stop, held ones included
            counted = count_texts(chunks[: len(taken.chunks)])
        return counted, taken.match


def _api_error(error: Mapping[str, Any], endpoint: Endpoint) -> APIError:
    message = endpoint.redact(str(error.get("message") or error))
    code = error.get("code")
    return APIError(
        f"the server reported an error mid-stream: {excerpt(message)}; what arrived before it "
        "is kept in .reply",
        code=str(code) if code is not None else None,
        type=error.get("type"),
    )
