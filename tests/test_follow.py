"""Following a stream, pure: the status throttle on an injected clock, and a reply printed as
text with its end mark (the magic's text path and the CLI share it)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

from jupyter_stream._follow import StatusThrottle, TextReply


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
