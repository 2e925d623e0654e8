"""What the wire formats' tests (tests/test_wire_*.py) share: feeding events to a format's
parser, and streaming through the real engine from a scripted server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from scripted_server import Request, Response, ScriptedServer

from jupyter_stream import ChatStream, ProtocolError
from jupyter_stream._reply import Chunk, Reply
from jupyter_stream._wire import WireFormat

WAIT = 10  # seconds: a guard against hangs, never a timing assertion

Event = tuple[str, dict[str, Any]]  # a named event: (its name, its data)
Handler = Callable[[Request, Response], Awaitable[None]]


# -- the parser -------------------------------------------------------------------------------


def parse_events(wire: WireFormat, events: list[Event]) -> tuple[Reply, list[str | Chunk]]:
    """Every event through one parser, as the engine feeds them; the reply they fold into."""
    parse = wire.parser()
    chunks = [parse(json.dumps(data), name) for name, data in events]
    reply = Reply()
    reply.extend(chunks)
    return reply, chunks


def parse_one(wire: WireFormat, data: dict[str, Any] | str, name: str = "message") -> str | Chunk:
    return wire.parser()(data if isinstance(data, str) else json.dumps(data), name)


def parse_all(wire: WireFormat, *objs: dict[str, Any] | str) -> list[str | Chunk]:
    """Unnamed events (SSE data alone, or NDJSON lines) through one parser."""
    parse = wire.parser()
    return [parse(o if isinstance(o, str) else json.dumps(o), "message") for o in objs]


def folded(wire: WireFormat, *objs: dict[str, Any] | str) -> Reply:
    reply = Reply()
    reply.extend(parse_all(wire, *objs))
    return reply


# -- through the engine, against a real server ------------------------------------------------


def host(server: ScriptedServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def sending(*pieces: str, content_type: str | None = None, then_stall: bool = False) -> Handler:
    """A handler that sends ``pieces`` of a body, each a write of its own (under
    ``content_type``, when given), and ends the body (or, ``then_stall``, waits for the client
    to leave)."""

    async def handler(request: Request, response: Response) -> None:
        if content_type is not None:
            await response.start(200, content_type)
        for piece in pieces:
            await response.send(piece)
        if then_stall:
            await response.until_disconnect()
        else:
            await response.end()

    return handler


def scripted(*events: Event, then_stall: bool = False) -> Handler:
    """A handler that sends named SSE events, each its own ``event:`` and ``data:``."""
    sse = (f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    return sending(*sse, then_stall=then_stall)


async def deltas(stream: ChatStream) -> AsyncIterator[str]:
    """The stream's deltas, guarded against a hang."""
    async with asyncio.timeout(WAIT):
        async for delta in stream:
            yield delta


async def close_after_first(stream: ChatStream) -> list[str]:
    """Every delta delivered after close() is called at the first one."""
    received = []
    async for delta in deltas(stream):
        received.append(delta)
        stream.close()
    return received


async def left(request: Request) -> bool:
    """True once the server saw the client leave ``request`` (False after WAIT)."""
    return await asyncio.to_thread(request.disconnected.wait, WAIT)


# -- a hot path against its full parse: generated string literals -----------------------------

# Pieces of a JSON string literal's inside: plain, non-ASCII, escapes (lone surrogates among them),
# and what makes the literal invalid (a raw control character or quote, a bad escape).
LITERAL_PIECES = (
    "a", " tok", "é", "日本", "😀", '\\"', "\\\\", "\\n", "\\/", "\\u00e9", "\\ud800", "\\uDFFF",
    "\\ud83d\\ude00", "\\\\ud800", "\\x", "\\u12", "\t", "\x00", '"', "\\",
)  # fmt: skip
NOT_STRINGS = ("5", "null", "[]", "{}", "true", '["a"]')


def random_literal(rng: random.Random) -> str:
    """A JSON string literal, valid or not, or now and then a value that is no string."""
    if rng.random() < 0.1:
        return rng.choice(NOT_STRINGS)
    if rng.random() < 0.1:
        return json.dumps("".join(rng.choices('ab"\\\n\u00e9\U0001f600\ud800', k=4)))
    return '"' + "".join(rng.choices(LITERAL_PIECES, k=rng.randrange(6))) + '"'


def outcome(parse: Any, data: str, event: str) -> tuple[Any, ...]:
    """What a parse gives: the value, or the error's type, message and field."""
    try:
        return ("value", parse(data, event))
    except ProtocolError as exc:
        return ("error", type(exc), str(exc), exc.field)
