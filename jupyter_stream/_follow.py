"""Following a stream, for any front end: frames paced to the frame rate with an exact last one
(:func:`follow`), the status line throttled (:class:`StatusThrottle`), and a reply printed as
text with its end mark (:class:`TextReply`). asyncio only: no widgets, no IPython.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any, TypeVar

from ._render import FRAME_INTERVAL, end_mark, format_status
from ._stream import ChatStream, StopReason
from ._terminal import TerminalFilter, for_terminal

__all__ = [
    "STATUS_INTERVAL",
    "StatusThrottle",
    "TextReply",
    "follow",
    "reply_mark",
    "status_text",
]

STATUS_INTERVAL = 0.5  # the status line's elapsed time ticks twice a second
WAKE_INTERVAL = 0.1  # while a reply streams, the loop wakes at least this often (see follow())
YIELD_INTERVAL = 0.01  # reading buffered deltas, follow() lets other callbacks run this often

S = TypeVar("S", bound=AsyncIterable[Any])
Sink = Callable[[S, bool], None]  # draw(stream, final): one frame, the last one exact


async def follow(
    stream: S,
    sink: Sink[S],
    clock: Callable[[], float] | None = None,
    *,
    idle: float | None = STATUS_INTERVAL,
) -> None:
    """Read ``stream`` to its end, calling ``sink`` at most once per frame interval, and once
    more, exactly, at the end (also when it ends by an error or a cancellation). An interrupt
    (a cancellation, or KeyboardInterrupt) closes a ChatStream, as interrupted, before that frame.

    When no token has brought a frame for ``idle`` seconds, one is drawn anyway (so that a status
    line keeps time while the server thinks); it is paced like any other. While the stream runs
    the loop is also woken every 100 ms: ipykernel 7 turns Kernel -> Interrupt into a
    cancellation that a sleeping loop notices only when something else wakes it. ``clock``
    (seconds, the loop's time by default) must run at the loop's pace: waits are slept on it.
    """
    loop = asyncio.get_running_loop()
    now = clock or loop.time
    last = -FRAME_INTERVAL
    pending: asyncio.TimerHandle | None = None

    def frame() -> None:
        nonlocal pending, last
        pending = None
        sink(stream, False)
        last = now()  # from its end: a slow frame never leaves the loop without a turn

    def schedule() -> bool:
        """Draw now if a frame is due (True), else make sure one will be."""
        nonlocal pending
        if pending is None:
            wait = last + FRAME_INTERVAL - now()
            if wait <= 0:
                frame()
                return True
            pending = loop.call_later(wait, frame)
        return False

    async def tick() -> None:
        while True:
            await asyncio.sleep(WAKE_INTERVAL)
            if idle is not None and now() - last >= idle:
                schedule()

    def stop_drawing() -> None:
        ticker.cancel()
        if pending is not None:
            pending.cancel()

    async def paced() -> None:
        """Keep the final frame, too, within the frame rate."""
        wait = last + FRAME_INTERVAL - now()
        if wait > 0:
            await asyncio.sleep(wait)

    ticker = loop.create_task(tick())
    turn = now()
    try:
        async for _delta in stream:
            # Buffered deltas arrive without a pause: give Stop, the slider's deadline and an
            # interrupt their turn after each frame, and at least every YIELD_INTERVAL.
            if schedule() or now() - turn >= YIELD_INTERVAL:
                await asyncio.sleep(0)
                turn = now()
    except (asyncio.CancelledError, KeyboardInterrupt):  # an interrupt: draw now, never wait
        stop_drawing()
        _interrupted(stream)
        sink(stream, True)
        raise
    except BaseException:
        stop_drawing()
        await paced()
        sink(stream, True)
        raise
    stop_drawing()
    await paced()
    sink(stream, True)


def _interrupted(stream: object) -> None:
    """Close a ChatStream that an interrupt left open."""
    # Buffered deltas are read without waiting, so the interrupt often lands on the yield above
    # rather than in the stream's own wait (which closes it): the connection would stay open.
    if isinstance(stream, ChatStream):
        stream.close(StopReason.INTERRUPTED)  # a stream that already ended keeps its reason


class StatusThrottle:
    """Whether a status line is due: with every final frame, else at most once per ``interval``
    (it rides along with a frame, so it never costs a message of its own)."""

    def __init__(
        self, interval: float = STATUS_INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._at: float | None = None

    def due(self, final: bool = False) -> bool:
        now = self._clock()
        if final or self._at is None or now - self._at >= self.interval:
            self._at = now
            return True
        return False


def status_text(stream: ChatStream) -> str:
    """The status line: model, tokens, rate, first token, elapsed, and how it ended."""
    stats = stream.stats
    reason = stream.stop_reason
    said = None if reason is None else reason.value
    if said is None and stream.waiting:
        said = "waiting for a free slot (max_concurrent)…"
    notes = len(stream.reply.notes)
    if said is not None and notes:  # values the server sent that were ignored (in metadata)
        said += f" · {notes} ignored value{'' if notes == 1 else 's'}"
    return format_status(
        model=stream.model,
        tokens=stats.tokens,
        tokens_per_second=stats.tokens_per_second,
        time_to_first_token=stats.time_to_first_token,
        elapsed=stats.elapsed,
        reason=said,
    )


def reply_mark(stream: ChatStream) -> str | None:
    """How the reply is marked at its end (None when it completed)."""
    return end_mark(stream.stop_reason.value if stream.stop_reason else "", stream.stop_detail)


class TextReply:
    """A reply printed to ``out`` as it streams, made safe for a terminal (the text may come from
    a hostile server), then ended on a line of its own with its mark, if any."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self._terminal = TerminalFilter()
        self._last = ""  # the last character shown

    def print(self, deltas: Iterable[str]) -> None:
        for delta in deltas:
            self.write(delta)

    async def aprint(self, deltas: AsyncIterable[str]) -> None:
        async for delta in deltas:
            self.write(delta)

    def write(self, delta: str) -> None:
        self._show(self._terminal.feed(delta))

    def end(self, mark: str | None = None) -> None:
        """Show what the filter holds back, end the line, then ``[mark]`` on one of its own."""
        self._show(self._terminal.flush())
        if self._last not in ("", "\n"):
            self.out.write("\n")
        if mark:
            self.out.write(for_terminal(f"[{mark}]") + "\n")
        self.out.flush()

    def _show(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self._last = text[-1]
