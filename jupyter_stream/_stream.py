"""ChatStream, the public face of one streamed chat completion, and the functions that make one.

The working part, the engine (its states, its pump, ``close()`` and the hand-off of deltas to
the consumer), is in ``_engine.py``; a ChatStream holds one and reads it, so that a stream that
nobody holds any more is collected and closes its engine as it goes.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any

from ._config import configured_endpoint, resolve_model
from ._endpoint import open_endpoint
from ._engine import Engine, State, StopReason, StreamRequest, StreamStats
from ._exceptions import ConfigurationError, JupyterStreamError
from ._messages import normalize_messages
from ._moderation import RuleMatch, StopWhen, make_watch
from ._reply import Reply
from ._wire import wire_format

__all__ = ["ChatStream", "StopReason", "StreamStats", "astream_chat", "stream_chat"]

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_IDLE_TIMEOUT = 120.0
DEFAULT_MAX_RETRIES = 2


class ChatStream:
    """One streamed chat completion. Iterate it for text deltas; ``close()`` stops it now.

    Made by :func:`astream_chat` (``async for``) or :func:`stream_chat` (``for``). After it ends,
    ``text`` and ``reply`` hold everything received, ``stop_reason`` says why it ended, and
    ``error`` holds the exception when that reason is ``error``.

    Iterate it inside ``async with``/``with``, or call ``close()``: that is what releases the
    connection at a known moment. A stream that nobody holds any more (a ``break`` out of a bare
    loop) is closed when Python collects it, which in CPython is at once.
    """

    __slots__ = ("__weakref__", "_engine")

    def __init__(self, request: StreamRequest, *, sync: bool) -> None:
        self._engine = Engine(request, sync=sync)
        self._engine.handle = weakref.ref(self)

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)  # absent if __init__ failed
        if engine is not None and engine.stop_reason is None:
            engine.close(StopReason.STOPPED)

    @property
    def text(self) -> str:
        """The answer's text received so far (all of it, including any not yet iterated)."""
        return self._engine._reply.content

    @property
    def reply(self) -> Reply:
        """Everything received: content, reasoning, tool calls, usage, finish reason."""
        return self._engine._reply

    @property
    def stop_reason(self) -> StopReason | None:
        """Why the stream ended, or None while it runs."""
        return self._engine._reason

    @property
    def error(self) -> JupyterStreamError | None:
        """The error when ``stop_reason`` is ``error``, else None."""
        return self._engine._error

    @property
    def done(self) -> bool:
        """True once the stream has ended, for whatever reason."""
        return self._engine._reason is not None

    @property
    def model(self) -> str:
        """The model that answers (the server's name for it once known)."""
        engine = self._engine
        return engine._reply.model or engine._request.model

    @property
    def stats(self) -> StreamStats:
        """Time to first token, elapsed time, chunks, tokens, tokens/s, usage."""
        return self._engine.stats()

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The messages the request sends (a copy)."""
        return [dict(message) for message in self._engine._request.messages]

    @property
    def match(self) -> RuleMatch | None:
        """What a ``stop_when`` rule matched (reason ``moderated``), or the stop sequence that
        ended the answer; None otherwise."""
        return self._engine._match

    @property
    def stop_detail(self) -> str | None:
        """Which rule matched (``moderated``), or what took the slot (``preempted``)."""
        return self._engine._detail

    @property
    def number(self) -> int:
        """This stream's number in the process (the registry lists streams by it)."""
        return self._engine.number

    @property
    def priority(self) -> int:
        """Higher is more important: with a full registry, the lowest is preempted first."""
        return self._engine.priority

    @property
    def waiting(self) -> bool:
        """True while the stream waits for a slot (the registry's ``when_full="wait"``)."""
        return self._engine._state is State.WAITING

    def close(self, reason: StopReason | str = StopReason.STOPPED) -> None:
        """Stop the stream now. Idempotent, thread-safe, never blocks.

        After it returns no delta is delivered; the connection is shut down at once and the
        pump is cancelled on its loop. A stream that already ended keeps its reason.
        """
        self._engine.close(reason)

    async def aclose(self) -> None:
        """Close, and wait until the connection is released."""
        await self._engine.aclose()

    def set_deadline(self, seconds: float | None) -> None:
        """End the stream with ``timeout`` once ``seconds`` have passed since it started.

        Takes effect at once, from any thread: a deadline already passed ends it now. None
        removes the limit.
        """
        self._engine.set_deadline(seconds)

    def __repr__(self) -> str:
        engine = self._engine
        reason, state = engine._reason, engine._state
        # "streaming" from the start of the request, as the stream is live from then on.
        shown = reason.value if reason else "new" if state is State.NEW else "streaming"
        if state is State.WAITING:
            shown = "waiting"
        return (
            f"<ChatStream #{engine.number} model={self.model!r} {shown} "
            f"chars={len(self.text)} "
            f"url={engine._request.endpoint.display_url!r}>"
        )

    def __aiter__(self) -> ChatStream:
        return self

    def __anext__(self) -> Coroutine[Any, Any, str]:
        # The coroutine holds the handle while it waits, so that an awaited
        # `astream_chat(...).__anext__()` is not collected, and closed, meanwhile.
        return self._engine.anext(self)

    async def __aenter__(self) -> ChatStream:
        self._engine.begin_async()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        self._engine.close(_reason_for_exit(exc))
        await self._engine.await_released()

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> str:
        return self._engine.next()

    def __enter__(self) -> ChatStream:
        self._engine.begin_sync()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._engine.close(_reason_for_exit(exc))
        self._engine.wait_released()


def _reason_for_exit(exc: BaseException | None) -> StopReason:
    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        return StopReason.INTERRUPTED
    return StopReason.STOPPED


def _make_request(
    prompt_or_messages: str | Sequence[Mapping[str, Any]],
    *,
    model: str | None,
    base_url: str | None,
    api_key: str | None,
    api: str | None,
    timeout: float | None,
    idle_timeout: float | None,
    connect_timeout: float | None,
    max_retries: int,
    params: dict[str, Any],
    stop_when: StopWhen | None = None,
    stop_sequences: str | Sequence[str] | None = None,
    priority: int = 0,
) -> StreamRequest:
    configured = configured_endpoint(base_url, api_key, api)  # pure: the server starts below
    wire = wire_format(configured.api)
    wire.check_params(params)
    for name, value in (
        ("timeout", timeout),
        ("idle_timeout", idle_timeout),
        ("connect_timeout", connect_timeout),
    ):
        if value is not None and value <= 0:
            raise ConfigurationError(f"{name} must be > 0 seconds (or None for no limit)")
    if max_retries < 0:
        raise ConfigurationError("max_retries must be >= 0")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ConfigurationError(f"priority must be a whole number, got {priority!r}")
    watch = make_watch(stop_when, stop_sequences)
    endpoint = open_endpoint(configured)
    return StreamRequest(
        endpoint=endpoint,
        model=resolve_model(model, endpoint),
        messages=normalize_messages(prompt_or_messages),
        params=params,
        timeout=timeout,
        idle_timeout=idle_timeout,
        connect_timeout=connect_timeout,
        max_retries=max_retries,
        priority=priority,
        watch=watch,
        wire=wire,
    )


def astream_chat(
    prompt_or_messages: str | Sequence[Mapping[str, Any]],
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    api: str | None = None,
    timeout: float | None = None,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    max_retries: int = DEFAULT_MAX_RETRIES,
    stop_when: StopWhen | None = None,
    stop_sequences: str | Sequence[str] | None = None,
    priority: int = 0,
    **params: Any,
) -> ChatStream:
    """Stream a chat completion on the running event loop; ``async for`` gives text deltas.

    ``prompt_or_messages`` is a prompt string or a list of ``{"role", "content"}`` messages.
    ``api`` is the wire protocol: ``"chat"`` (OpenAI Chat Completions, the default),
    ``"responses"`` (OpenAI Responses), ``"anthropic"`` (Messages), ``"gemini"`` or
    ``"ollama"``; unset, ``JUPYTER_STREAM_API``, a well-known host or a lone provider key decides.
    ``timeout`` is the total deadline in seconds (movable with ``set_deadline``),
    ``idle_timeout`` the longest gap between two reads, ``connect_timeout`` the longest wait for
    a connection.

    ``stop_when`` is a rule, or a list of them, that ends the stream with ``moderated`` when it
    matches: :func:`stop_on` words and regexes, or a function ``text -> bool | str`` of the text
    so far. ``stop_sequences`` end the answer before the first of them (it completes, trimmed).
    ``priority`` ranks the stream in the process's :data:`registry` when ``max_concurrent``
    streams already run (higher is more important). Other keyword arguments
    (``temperature``, ``max_tokens``, ``tools``, …) go into the request as they are.
    """
    request = _make_request(
        prompt_or_messages,
        model=model,
        base_url=base_url,
        api_key=api_key,
        api=api,
        timeout=timeout,
        idle_timeout=idle_timeout,
        connect_timeout=connect_timeout,
        max_retries=max_retries,
        params=params,
        stop_when=stop_when,
        stop_sequences=stop_sequences,
        priority=priority,
    )
    return ChatStream(request, sync=False)


def stream_chat(
    prompt_or_messages: str | Sequence[Mapping[str, Any]],
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    api: str | None = None,
    timeout: float | None = None,
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
    max_retries: int = DEFAULT_MAX_RETRIES,
    stop_when: StopWhen | None = None,
    stop_sequences: str | Sequence[str] | None = None,
    priority: int = 0,
    **params: Any,
) -> ChatStream:
    """The synchronous twin of :func:`astream_chat`: ``for`` gives text deltas.

    The stream runs on a private event loop thread, so this works in scripts and in notebook
    cells alike, and ``close()`` from any thread stops it at once.
    """
    request = _make_request(
        prompt_or_messages,
        model=model,
        base_url=base_url,
        api_key=api_key,
        api=api,
        timeout=timeout,
        idle_timeout=idle_timeout,
        connect_timeout=connect_timeout,
        max_retries=max_retries,
        params=params,
        stop_when=stop_when,
        stop_sequences=stop_sequences,
        priority=priority,
    )
    return ChatStream(request, sync=True)
