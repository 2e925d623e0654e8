"""A real HTTP/1.1 server on 127.0.0.1, on its own thread and loop, that a test scripts.

Each test installs a handler ``async def handler(request, response)``; the server records every
request and the moment it sees each client go away (EOF or reset on the socket while the
response is still being written), which is what "the server sees the disconnect" means.
Its clock is ``time.monotonic()``, the same as the client's in the same process.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[["Request", "Response"], Awaitable[None]]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    disconnected: threading.Event = field(default_factory=threading.Event)
    disconnected_at: float | None = None
    finished: bool = False  # the handler wrote the whole response
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # on the server's loop

    def json(self) -> Any:
        return json.loads(self.body)


class Response:
    """What a handler writes with: a status line, then chunks of a chunked body."""

    def __init__(self, writer: asyncio.StreamWriter, request: Request) -> None:
        self._writer = writer
        self.request = request
        self._started = False

    async def start(
        self,
        status: int = 200,
        content_type: str = "text/event-stream",
        headers: dict[str, str] | None = None,
    ) -> None:
        lines = [f"HTTP/1.1 {status} X", f"Content-Type: {content_type}"]
        lines.append("Transfer-Encoding: chunked")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._started = True
        await self._writer.drain()

    async def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode()
        if not self._started:
            await self.start()
        if data:
            self._writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await self._writer.drain()

    async def event(self, obj: Any) -> None:
        """One ``data:`` event; a dict is sent as JSON."""
        data = obj if isinstance(obj, str) else json.dumps(obj)
        await self.send(f"data: {data}\n\n")

    async def end(self) -> None:
        self._writer.write(b"0\r\n\r\n")
        await self._writer.drain()

    async def whole(
        self,
        status: int,
        body: str,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        """A complete non-chunked response."""
        data = body.encode()
        head = (
            f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(data)}\r\n"
        )
        for key, value in (headers or {}).items():
            head += f"{key}: {value}\r\n"
        self._writer.write(head.encode() + b"\r\n" + data)
        await self._writer.drain()

    def abort(self) -> None:
        """Kill the connection mid-response (RST), as a crashing server would."""
        self._writer.transport.abort()

    async def until_disconnect(self) -> None:
        """Stall, sending nothing, until the client goes away."""
        await self.request.gone.wait()


def chunk(content: str | None = None, finish_reason: str | None = None, **delta: Any) -> dict:
    """An OpenAI ``chat.completion.chunk`` object."""
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


async def complete(response: Response, tokens: list[str], usage: bool = True) -> None:
    """A whole, well-formed chat completion stream."""
    for token in tokens:
        await response.event(chunk(token))
    await response.event(chunk(finish_reason="stop"))
    if usage:
        await response.event(
            {
                "id": "chatcmpl-test",
                "choices": [],
                "usage": {"prompt_tokens": 3, "completion_tokens": len(tokens), "total_tokens": 3},
            }
        )
    await response.event("[DONE]")
    await response.end()


class ScriptedServer:
    def __init__(self) -> None:
        self.handler: Handler = self._default
        self.requests: list[Request] = []
        self.connections = 0
        self.open_connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="scripted-server")
        self._thread.start()
        self._ready.wait(10)
        self.port: int = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"

    @staticmethod
    async def _default(request: Request, response: Response) -> None:
        await complete(response, ["Hello", ",", " world", "!"])

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

        self._loop.run_until_complete(start())
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def reset(self) -> None:
        self.handler = self._default
        self.requests.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        buffer = bytearray()
        try:
            while True:
                try:
                    request = await self._read_request(reader, buffer)
                except (ConnectionError, asyncio.CancelledError):
                    return
                if request is None:
                    return
                self.requests.append(request)
                watcher = asyncio.ensure_future(self._watch(reader, buffer, request))
                try:
                    await self.handler(request, Response(writer, request))
                    request.finished = not request.disconnected.is_set()
                except ConnectionError:  # a write failed: the client is gone
                    self._gone(request)
                except asyncio.CancelledError:
                    pass
                finally:
                    watcher.cancel()
                if request.disconnected.is_set() or writer.transport.is_closing():
                    return
        finally:
            self.open_connections -= 1
            writer.close()

    async def _watch(
        self, reader: asyncio.StreamReader, buffer: bytearray, request: Request
    ) -> None:
        """Read while the response is written: EOF or a reset means the client went away.
        Bytes of a next (pipelined) request are kept for the request loop."""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                buffer += data
        except ConnectionError:
            pass
        self._gone(request)

    @staticmethod
    def _gone(request: Request) -> None:
        if not request.disconnected.is_set():
            request.disconnected_at = time.monotonic()
            request.disconnected.set()
            request.gone.set()

    @staticmethod
    async def _read_request(reader: asyncio.StreamReader, buffer: bytearray) -> Request | None:
        while b"\r\n\r\n" not in buffer:
            data = await reader.read(65536)
            if not data:
                return None
            buffer += data
        head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            data = await reader.read(65536)
            if not data:
                return None
            rest += data
        buffer[:] = rest[length:]
        return Request(method, path, headers, rest[:length])


# A server that tries to act on the terminal: a clipboard write (OSC 52), a screen clear, hidden
# text, an 8-bit CSI, a carriage return and a bidi override. ACTED_ON is what a terminal acts on
# (spelled here, apart from jupyter_stream._terminal, so that the tests check it).
HOSTILE = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\x1b[8mhidden\x1b[0m\x9b2J\r\u202e"
ACTED_ON = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


async def hostile(request: Request, response: Response) -> None:
    """A reply, model name and model list (GET .../models) that hold HOSTILE; the reply's
    sequence split between two chunks."""
    if request.path.endswith("/models"):
        ids = [f"evil{HOSTILE}", "fine"]
        await response.whole(200, json.dumps({"data": [{"id": i} for i in ids]}))
        return
    evil = {"model": f"evil{HOSTILE}"}
    for token in ["Hi ", HOSTILE[:9], HOSTILE[9:], " there"]:
        await response.event(chunk(token) | evil)
    await response.event(chunk(finish_reason="stop") | evil)
    await response.event("[DONE]")
    await response.end()
