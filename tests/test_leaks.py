"""No socket, thread or task outlives its stream, on any path (tier 2: real servers on 127.0.0.1).

Sockets are counted as this process's socket fds (``/proc/self/fd``): a socket that was shut
down but never closed is gone from ``/proc/net/tcp`` yet still held, which is how the sync API
once leaked one socket per stream. Pooled keep-alive connections are legitimately open, so each
test closes the loop's pooled client before it compares with the baseline.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import client_sockets, socket_fds
from scripted_server import Request, Response, ScriptedServer, chunk

from jupyter_stream import (
    ChatStream,
    ConnectionLostError,
    ProtocolError,
    ServerError,
    StopReason,
    astream_chat,
    stream_chat,
)
from jupyter_stream._http import LIMITS, close_client
from jupyter_stream._loop import private_loop
from jupyter_stream.server import BackgroundServer

WAIT = 10  # seconds: a guard against hangs, never a timing assertion
POOL = LIMITS.max_keepalive_connections
assert POOL is not None


def on_private_loop(make: Callable[[], Any]) -> Any:
    return asyncio.run_coroutine_threadsafe(make(), private_loop()).result(WAIT)


async def _close_pool() -> None:
    await close_client()
    await asyncio.sleep(0)  # asyncio closes a transport's socket one iteration after close()


async def _other_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]


class SyncBaseline:
    """What the process holds with the private loop running and its pool closed."""

    def __init__(self) -> None:
        on_private_loop(_close_pool)
        self.sockets = socket_fds(servers=False)
        self.threads = set(threading.enumerate())

    def check(self) -> None:
        """Every stream released: no task left on the private loop, no new thread, and once
        the pool is closed, exactly the sockets of the baseline."""
        assert on_private_loop(_other_tasks) == []
        assert set(threading.enumerate()) <= self.threads, "a thread outlived its stream"
        on_private_loop(_close_pool)
        assert socket_fds(servers=False) == self.sockets


@pytest.fixture
def sync_baseline(demo_server: BackgroundServer) -> Iterator[SyncBaseline]:
    with stream_chat("warm up", model="demo", base_url=demo_server.base_url) as stream:
        assert list(stream)  # starts the private loop, builds the TLS context
    yield SyncBaseline()


def demo(server: BackgroundServer, **options: Any) -> ChatStream:
    return stream_chat("hi", model="demo", base_url=server.base_url, **options)


def scripted(server: ScriptedServer, **options: Any) -> ChatStream:
    return stream_chat("hi", model="test-model", base_url=server.url, max_retries=0, **options)


def stalls_after(*tokens: str) -> Callable[[Request, Response], Any]:
    async def handler(request: Request, response: Response) -> None:
        for token in tokens:
            await response.event(chunk(token))
        await response.until_disconnect()

    return handler


# -- the helper counts what /proc/net/tcp misses ---------------------------------------------------


def test_a_socket_shut_down_but_never_closed_is_counted() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        before_fds, before = socket_fds(servers=False), client_sockets(port)
        client = socket.create_connection(("127.0.0.1", port))
        try:
            accepted, _ = listener.accept()
            assert client_sockets(port) == before + 1
            client.shutdown(socket.SHUT_RDWR)
            accepted.close()  # both ends said goodbye: the kernel forgets the connection
            assert client.recv(1) == b""
            assert client_sockets(port) == before + 1  # shut down, not closed: still held
            assert socket_fds(servers=False) == before_fds + 1
        finally:
            client.close()
        assert client_sockets(port) == before
        assert socket_fds(servers=False) == before_fds


# -- the sync API ----------------------------------------------------------------------------------


def test_sync_with_and_break_300_times(
    demo_server: BackgroundServer, sync_baseline: SyncBaseline
) -> None:
    for _ in range(300):
        with demo(demo_server) as stream:
            for count, _delta in enumerate(stream, 1):
                if count == 5:
                    break
        assert stream.stop_reason in (StopReason.STOPPED, StopReason.COMPLETED)
    assert (
        socket_fds(servers=False) <= sync_baseline.sockets + POOL
    )  # idle pooled connections at most
    sync_baseline.check()


def test_sync_close_200_times(demo_server: BackgroundServer, sync_baseline: SyncBaseline) -> None:
    streams = []
    for _ in range(200):
        stream = demo(demo_server)
        for count, _delta in enumerate(stream, 1):
            if count == 5:
                break
        stream.close()
        streams.append(stream)
    for stream in streams:
        stream._engine.wait_released()
    assert socket_fds(servers=False) <= sync_baseline.sockets + POOL
    sync_baseline.check()


def test_sync_stream_collected_without_close(
    demo_server: BackgroundServer, sync_baseline: SyncBaseline
) -> None:
    engines = []
    for _ in range(100):
        stream = demo(demo_server)
        engines.append(stream._engine)
        for count, _delta in enumerate(stream, 1):
            if count == 5:
                break
        del stream  # the last reference: collecting it closes it
    for engine in engines:
        engine.wait_released()
        assert engine.stop_reason in (StopReason.STOPPED, StopReason.COMPLETED)
    sync_baseline.check()


def test_sync_close_while_the_read_waits(
    server: ScriptedServer, sync_baseline: SyncBaseline
) -> None:
    server.handler = stalls_after("a", "b")
    for _ in range(50):
        with scripted(server) as stream:
            assert [next(stream), next(stream)] == ["a", "b"]
        assert stream.stop_reason is StopReason.STOPPED
        assert server.requests[-1].disconnected.wait(WAIT)
    assert client_sockets(server.port) == 0
    sync_baseline.check()


def test_sync_close_from_another_thread(
    server: ScriptedServer, sync_baseline: SyncBaseline
) -> None:
    server.handler = stalls_after("a")
    for _ in range(20):
        stream = scripted(server)
        assert next(stream) == "a"
        closer = threading.Thread(target=stream.close)
        closer.start()
        assert list(stream) == []  # ends once the other thread has closed it
        closer.join(WAIT)
        stream._engine.wait_released()
    assert client_sockets(server.port) == 0
    sync_baseline.check()


async def _status_500(request: Request, response: Response) -> None:
    await response.whole(500, '{"error": {"message": "boom"}}')


async def _malformed(request: Request, response: Response) -> None:
    await response.event(chunk("a"))
    await response.event("{not json")
    await response.until_disconnect()


async def _dropped(request: Request, response: Response) -> None:
    await response.event(chunk("a"))
    response.abort()


async def _not_an_event_stream(request: Request, response: Response) -> None:
    await response.send("hello")
    await response.end()


@pytest.mark.parametrize(
    ("handler", "error"),
    [
        (_status_500, ServerError),
        (_malformed, ProtocolError),
        (_dropped, ConnectionLostError),
        (_not_an_event_stream, ProtocolError),
    ],
    ids=["500", "malformed", "dropped", "not-sse"],
)
def test_sync_errors(
    server: ScriptedServer,
    sync_baseline: SyncBaseline,
    handler: Callable[[Request, Response], Any],
    error: type[Exception],
) -> None:
    server.handler = handler
    for _ in range(20):
        with pytest.raises(error), scripted(server) as stream:
            list(stream)
        assert stream.stop_reason is StopReason.ERROR
    assert client_sockets(server.port) <= POOL  # a 500 read whole leaves its connection pooled
    sync_baseline.check()
    assert client_sockets(server.port) == 0


def test_sync_keyboard_interrupt_in_the_loop_body(
    demo_server: BackgroundServer, server: ScriptedServer, sync_baseline: SyncBaseline
) -> None:
    server.handler = stalls_after("a")
    for stream_of in (lambda: demo(demo_server), lambda: scripted(server)):
        for _ in range(20):
            with pytest.raises(KeyboardInterrupt), stream_of() as stream:
                for _delta in stream:
                    raise KeyboardInterrupt
            assert stream.stop_reason in (StopReason.INTERRUPTED, StopReason.COMPLETED)
    assert stream.stop_reason is StopReason.INTERRUPTED  # the stalled one cannot complete
    assert client_sockets(server.port) == 0
    sync_baseline.check()


def test_sync_keyboard_interrupt_without_with(
    server: ScriptedServer, sync_baseline: SyncBaseline
) -> None:
    server.handler = stalls_after("a")
    engines = []
    for _ in range(20):
        stream = scripted(server)
        engines.append(stream._engine)
        with pytest.raises(KeyboardInterrupt) as raised:
            for _delta in stream:
                raise KeyboardInterrupt
        del stream, raised  # the traceback held the stream
        gc.collect()
    for engine in engines:
        engine.wait_released()
        assert engine.stop_reason is StopReason.STOPPED
    assert client_sockets(server.port) == 0
    sync_baseline.check()


# -- the async API ---------------------------------------------------------------------------------


class AsyncBaseline:
    """What the process holds before this test's loop made a pooled client."""

    def __init__(self) -> None:
        self.sockets = socket_fds(servers=False)
        self.threads = set(threading.enumerate())

    async def check(self) -> None:
        assert await _other_tasks() == []
        assert set(threading.enumerate()) <= self.threads, "a thread outlived its stream"
        await _close_pool()
        assert socket_fds(servers=False) == self.sockets


async def test_async_with_and_break_300_times(demo_server: BackgroundServer) -> None:
    baseline = AsyncBaseline()
    for _ in range(300):
        async with astream_chat("hi", model="demo", base_url=demo_server.base_url) as stream:
            count = 0
            async for _delta in stream:
                count += 1
                if count == 5:
                    break
    assert socket_fds(servers=False) <= baseline.sockets + POOL
    await baseline.check()


async def test_async_close_200_times(demo_server: BackgroundServer) -> None:
    baseline = AsyncBaseline()
    streams = []
    for _ in range(200):
        stream = astream_chat("hi", model="demo", base_url=demo_server.base_url)
        count = 0
        async for _delta in stream:
            count += 1
            if count == 5:
                break
        stream.close()
        streams.append(stream)
    await asyncio.gather(*(stream.aclose() for stream in streams))  # waits for the release
    assert socket_fds(servers=False) <= baseline.sockets + POOL
    await baseline.check()


async def test_async_close_while_the_read_waits(server: ScriptedServer) -> None:
    baseline = AsyncBaseline()
    server.handler = stalls_after("a")
    streams = [
        astream_chat("hi", model="test-model", base_url=server.url, max_retries=0)
        for _ in range(50)
    ]
    assert await asyncio.gather(*(stream.__anext__() for stream in streams)) == ["a"] * 50
    assert client_sockets(server.port) == 50
    for stream in streams:
        stream.close()
    await asyncio.gather(*(stream.aclose() for stream in streams))
    assert client_sockets(server.port) == 0
    await baseline.check()


async def test_async_cancelled_consumer_task(server: ScriptedServer) -> None:
    baseline = AsyncBaseline()
    server.handler = stalls_after("a")
    streams = [
        astream_chat("hi", model="test-model", base_url=server.url, max_retries=0)
        for _ in range(50)
    ]
    got_first = [asyncio.Event() for _ in streams]

    async def consume(stream: ChatStream, first: asyncio.Event) -> None:
        async for _delta in stream:
            first.set()

    tasks = [asyncio.create_task(consume(s, e)) for s, e in zip(streams, got_first, strict=True)]
    await asyncio.gather(*(event.wait() for event in got_first))
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(result, asyncio.CancelledError) for result in results)
    await asyncio.gather(*(stream.aclose() for stream in streams))
    assert all(stream.stop_reason is StopReason.INTERRUPTED for stream in streams)
    for request in server.requests[-50:]:
        assert request.disconnected.wait(WAIT)
    assert client_sockets(server.port) == 0
    await baseline.check()


@pytest.mark.parametrize(
    ("handler", "error"),
    [(_status_500, ServerError), (_malformed, ProtocolError), (_dropped, ConnectionLostError)],
    ids=["500", "malformed", "dropped"],
)
async def test_async_errors(
    server: ScriptedServer, handler: Callable[[Request, Response], Any], error: type[Exception]
) -> None:
    baseline = AsyncBaseline()
    server.handler = handler
    for _ in range(20):
        with pytest.raises(error):
            async with astream_chat(
                "hi", model="test-model", base_url=server.url, max_retries=0
            ) as stream:
                async for _delta in stream:
                    pass
    await baseline.check()
    assert client_sockets(server.port) == 0
