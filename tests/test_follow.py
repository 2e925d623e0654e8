"""Following a stream: the status throttle on an injected clock, a reply printed as text with its
end mark (the magic's text path and the CLI share it), and follow() under an interrupt."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest
from scripted_server import Request, Response, ScriptedServer, chunk

from jupyter_stream import StopReason, astream_chat
from jupyter_stream._follow import StatusThrottle, TextReply, follow
from jupyter_stream._stream import ChatStream


def test_the_status_is_due_at_first_then_once_per_interval_and_always_at_the_end() -> None:
    now = [100.0]
    throttle = StatusThrottle(0.5, clock=lambda: now[0])
    due = []
    for step in (0.0, 0.2, 0.2, 0.2, 0.1):
        now[0] += step
        due.append(throttle.due())
    assert due == [True, False, False, True, False]
    assert throttle.due(final=True)


def test_a_reply_is_filtered_across_pieces_and_ends_on_a_line_of_its_own() -> None:
    out = io.StringIO()
    reply = TextReply(out)
    reply.print(["Hi \x1b]52;c;", "cm0=\x07there"])
    reply.end("stopped: \x1b[2Jmatched")
    assert out.getvalue() == "Hi there\n[stopped: matched]\n"


def test_a_reply_that_ends_with_a_newline_gets_none_more() -> None:
    out = io.StringIO()
    reply = TextReply(out)
    reply.print(["line\n"])
    reply.end()
    assert out.getvalue() == "line\n"
    empty = io.StringIO()
    TextReply(empty).end("interrupted")
    assert empty.getvalue() == "[interrupted]\n"


async def test_aprint_writes_each_delta_as_it_arrives() -> None:
    out = io.StringIO()
    seen: list[str] = []

    async def deltas() -> AsyncIterator[str]:
        for piece in ("a", "b"):
            yield piece
            seen.append(out.getvalue())

    reply = TextReply(out)
    await reply.aprint(deltas())
    reply.end()
    assert seen == ["a", "ab"] and out.getvalue() == "ab\n"


async def test_an_interrupt_between_deltas_closes_the_stream_before_the_last_frame(
    server: ScriptedServer,
) -> None:
    """Kernel -> Interrupt cancels the cell's task wherever it waits: here at follow()'s own yield
    after a frame, not in the stream's wait for a delta. The stream is closed all the same, so the
    last frame says interrupted and the server sees the client go."""

    async def stalls(request: Request, response: Response) -> None:
        for piece in ("Hello", " there"):
            await response.event(chunk(piece))
        await response.until_disconnect()  # only a close ends it

    server.handler = stalls
    stream = astream_chat("hi", model="test-model", base_url=server.url, max_retries=0)
    finals: list[StopReason | None] = []
    frames: list[bool] = []

    def draw(drawn: ChatStream, final: bool) -> None:
        frames.append(final)
        if final:
            finals.append(drawn.stop_reason)
        elif asyncio.current_task() is task and frames.count(False) == 1:
            task.cancel()  # lands on the yield that follows this frame

    task = asyncio.get_running_loop().create_task(follow(stream, draw))
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)
    assert finals == [StopReason.INTERRUPTED]
    assert stream.text and stream.stop_reason is StopReason.INTERRUPTED
    await stream.aclose()
    assert server.requests[-1].disconnected.wait(30), "the server never saw the client go"
