"""ChatStream against a real HTTP server on 127.0.0.1 (tier 2): close, deadlines, disconnects."""

from __future__ import annotations

import asyncio
import gc
import signal
import threading
import time
import weakref

import pytest
from conftest import client_sockets
from scripted_server import Request, Response, ScriptedServer, chunk, complete

from jupyter_stream import (
    ChatStream,
    ConnectionLostError,
    StopReason,
    TruncatedStreamError,
    astream_chat,
    stream_chat,
)
from jupyter_stream.server import BackgroundServer

WAIT = 10  # seconds: a guard against hangs, never a timing assertion


def stalls_after(*tokens: str):
    """A handler that sends ``tokens`` and then nothing, until the client goes."""

    async def handler(request: Request, response: Response) -> None:
        for token in tokens:
            await response.event(chunk(token))
        await response.until_disconnect()

    return handler


def open_stream(server: ScriptedServer, **options) -> ChatStream:
    return astream_chat("hi", model="test-model", base_url=server.url, max_retries=0, **options)


def sees_disconnect(server: ScriptedServer) -> Request:
    request = server.requests[-1]
    assert request.disconnected.wait(WAIT), "the server never saw the client go"
    assert not request.finished
    return request


async def test_a_whole_answer_streams_and_completes(server: ScriptedServer) -> None:
    stream = open_stream(server)
    deltas = [delta async for delta in stream]
    assert deltas == ["Hello", ",", " world", "!"]
    assert stream.text == "Hello, world!"
    assert stream.stop_reason is StopReason.COMPLETED
    assert stream.error is None
    assert stream.reply.finish_reason == "stop"
    assert stream.reply.usage == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 3}
    stats = stream.stats
    assert stats.chunks == 6 and stats.tokens == 4
    assert stats.time_to_first_token is not None and stats.elapsed >= stats.time_to_first_token
    payload = server.requests[-1].json()
    assert payload["stream"] is True
    assert payload["stream_options"] == {"include_usage": True}
    assert payload["messages"] == [{"role": "user", "content": "hi"}]
    assert server.requests[-1].path == "/v1/chat/completions"


async def test_close_from_the_consuming_task(server: ScriptedServer) -> None:
    server.handler = stalls_after("a", "b", "c")
    stream = open_stream(server)
    received = []
    async for delta in stream:
        received.append(delta)
        stream.close()
    assert received == ["a"]  # b and c had arrived, but none is delivered after close()
    assert stream.stop_reason is StopReason.STOPPED
    assert stream.error is None
    sees_disconnect(server)
    await stream.aclose()
    assert stream.text.startswith("a")  # what arrived is kept


async def test_close_from_another_task(server: ScriptedServer) -> None:
    server.handler = stalls_after("a")
    stream = open_stream(server)
    first = asyncio.Event()

    async def consume() -> list[str]:
        received = []
        async for delta in stream:
            received.append(delta)
            first.set()
        return received

    consumer = asyncio.create_task(consume())
    await first.wait()
    stream.close()
    assert await asyncio.wait_for(consumer, WAIT) == ["a"]
    assert stream.stop_reason is StopReason.STOPPED
    sees_disconnect(server)


async def test_close_from_another_thread_while_the_loop_waits(server: ScriptedServer) -> None:
    server.handler = stalls_after("a")
    stream = open_stream(server)
    received = [await stream.__anext__()]
    closer = threading.Timer(0.05, stream.close)
    closer.start()
    received += [delta async for delta in stream]
    closer.join()
    assert received == ["a"]
    assert stream.stop_reason is StopReason.STOPPED
    sees_disconnect(server)


def test_sync_stream_closed_from_another_thread(server: ScriptedServer) -> None:
    server.handler = stalls_after("a")
    stream = stream_chat("hi", model="m", base_url=server.url)
    received = []
    for delta in stream:
        received.append(delta)
        threading.Thread(target=stream.close).start()
    assert received == ["a"]
    assert stream.stop_reason is StopReason.STOPPED
    sees_disconnect(server)


def test_sync_stream_completes_and_context_manager_releases(server: ScriptedServer) -> None:
    with stream_chat("hi", model="m", base_url=server.url) as stream:
        assert "".join(stream) == "Hello, world!"
    assert stream.stop_reason is StopReason.COMPLETED
    assert stream._engine._released.done()


async def test_close_before_the_first_byte(server: ScriptedServer) -> None:
    arrived = threading.Event()

    async def silent(request: Request, response: Response) -> None:
        arrived.set()
        await response.until_disconnect()

    server.handler = silent
    stream = open_stream(server)
    consumer = asyncio.create_task(stream.__anext__())
    await asyncio.get_running_loop().run_in_executor(None, arrived.wait, WAIT)
    stream.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(consumer, WAIT)
    assert stream.stop_reason is StopReason.STOPPED
    assert stream.text == ""
    sees_disconnect(server)


async def test_close_before_start_sends_nothing(server: ScriptedServer) -> None:
    stream = open_stream(server)
    stream.close()
    assert [delta async for delta in stream] == []
    assert stream.stop_reason is StopReason.STOPPED
    assert server.requests == []
    await stream.aclose()


async def test_close_after_the_end_is_a_no_op(server: ScriptedServer) -> None:
    async with open_stream(server) as stream:
        assert "".join([delta async for delta in stream]) == "Hello, world!"
        stream.close()
        stream.close()
    assert stream.stop_reason is StopReason.COMPLETED
    assert stream.text == "Hello, world!"


@pytest.mark.parametrize("api", ["chat", "responses", "anthropic", "gemini", "ollama"])
def test_close_after_a_fast_end_delivers_nothing_more(
    demo_server: BackgroundServer, api: str
) -> None:
    """A fast server's whole answer, end mark included, may arrive before the consumer reads
    its third delta: close() still cuts delivery there, and the stream keeps its own end."""
    root = demo_server.base_url.removesuffix("/v1")
    base_url = root + ("/v1" if api in ("chat", "responses") else "")
    with stream_chat("Tell me about rivers.", base_url=base_url, api=api, model="demo") as stream:
        deltas = iter(stream)
        first = [next(deltas), next(deltas), next(deltas)]
        stream._engine.wait_released()  # the whole answer is in (the pump is done), unread
        assert stream.done
        stream.close()
        assert list(deltas) == []
    assert stream.stop_reason is StopReason.COMPLETED
    assert stream.text.startswith("".join(first)) and len(stream.text) > len("".join(first))


async def test_leaving_async_with_early_stops_the_stream(server: ScriptedServer) -> None:
    server.handler = stalls_after("a", "b")
    async with open_stream(server) as stream:
        async for _ in stream:
            break
    assert stream.stop_reason is StopReason.STOPPED
    sees_disconnect(server)


async def test_cancelling_the_consumer_marks_interrupted(server: ScriptedServer) -> None:
    server.handler = stalls_after("a")
    stream = open_stream(server)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in stream:
            first.set()

    consumer = asyncio.create_task(consume())
    await first.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert stream.stop_reason is StopReason.INTERRUPTED
    assert stream.text == "a"
    sees_disconnect(server)


def test_ctrl_c_in_a_sync_stream_marks_interrupted(server: ScriptedServer) -> None:
    server.handler = stalls_after("a")
    stream = stream_chat("hi", model="m", base_url=server.url)
    main = threading.main_thread().ident
    assert threading.get_ident() == main
    with pytest.raises(KeyboardInterrupt):
        for _ in stream:
            # The signal arrives while next() waits for a delta that never comes.
            threading.Timer(0.05, signal.pthread_kill, (main, signal.SIGINT)).start()
    assert stream.stop_reason is StopReason.INTERRUPTED
    sees_disconnect(server)


async def test_total_deadline(server: ScriptedServer) -> None:
    server.handler = stalls_after("a", "b")
    stream = open_stream(server, timeout=0.3)
    assert [delta async for delta in stream] == ["a", "b"]
    assert stream.stop_reason is StopReason.TIMEOUT
    assert stream.error is None
    sees_disconnect(server)


async def test_idle_timeout_against_a_stalling_server(server: ScriptedServer) -> None:
    server.handler = stalls_after("a")
    stream = open_stream(server, idle_timeout=0.2)
    assert [delta async for delta in stream] == ["a"]
    assert stream.stop_reason is StopReason.IDLE_TIMEOUT
    sees_disconnect(server)


async def test_deadline_moved_mid_stream_takes_effect_at_once(server: ScriptedServer) -> None:
    server.handler = stalls_after("a", "b")
    stream = open_stream(server)  # no deadline
    assert await stream.__anext__() == "a"
    stream.set_deadline(0)  # already passed: ends now
    assert [delta async for delta in stream] == []
    assert stream.stop_reason is StopReason.TIMEOUT
    sees_disconnect(server)


async def test_deadline_extended_mid_stream_lets_it_finish(server: ScriptedServer) -> None:
    async def slow(request: Request, response: Response) -> None:
        await response.event(chunk("a"))
        await asyncio.sleep(0.5)  # longer than the first deadline
        await complete(response, ["b"])

    server.handler = slow
    stream = open_stream(server, timeout=0.2)
    assert await stream.__anext__() == "a"
    stream.set_deadline(30)
    assert [delta async for delta in stream] == ["b"]
    assert stream.stop_reason is StopReason.COMPLETED


async def test_server_killed_mid_stream_keeps_the_partial_answer(server: ScriptedServer) -> None:
    async def crash(request: Request, response: Response) -> None:
        await response.event(chunk("par"))
        await response.event(chunk("tial"))
        response.abort()

    server.handler = crash
    stream = open_stream(server)
    received = []
    with pytest.raises(ConnectionLostError) as caught:
        async for delta in stream:
            received.append(delta)
    assert received == ["par", "tial"]
    assert caught.value.reply is not None and caught.value.reply.content == "partial"
    assert "dropped after 2 chunks" in str(caught.value)
    assert stream.stop_reason is StopReason.ERROR and stream.error is caught.value


async def test_no_done_and_no_finish_reason_is_truncated(server: ScriptedServer) -> None:
    async def truncated(request: Request, response: Response) -> None:
        await response.event(chunk("cut"))
        await response.end()

    server.handler = truncated
    stream = open_stream(server)
    with pytest.raises(TruncatedStreamError, match="neither \\[DONE\\] nor a finish reason"):
        [delta async for delta in stream]
    assert stream.text == "cut"
    assert stream.error is not None and stream.error.reply is stream.reply


async def test_a_finish_reason_without_done_completes(server: ScriptedServer) -> None:
    async def no_done(request: Request, response: Response) -> None:
        await response.event(chunk("ok"))
        await response.event(chunk(finish_reason="length"))
        await response.end()

    server.handler = no_done
    stream = open_stream(server)
    assert [delta async for delta in stream] == ["ok"]
    assert stream.stop_reason is StopReason.LENGTH


async def test_invalid_utf8_is_replaced_not_fatal(server: ScriptedServer) -> None:
    async def bad_bytes(request: Request, response: Response) -> None:
        await response.send(b'data: {"choices":[{"delta":{"content":"caf\xc3\xa9 \xff!"}}]}\n\n')
        await complete(response, [])

    server.handler = bad_bytes
    stream = open_stream(server)
    assert [delta async for delta in stream] == ["café \ufffd!"]


async def test_a_one_megabyte_line(server: ScriptedServer) -> None:
    big = "x" * 1_000_000

    async def huge(request: Request, response: Response) -> None:
        await complete(response, [big, "!"])

    server.handler = huge
    stream = open_stream(server)
    assert [delta async for delta in stream] == [big, "!"]


async def test_utf8_split_across_network_reads(server: ScriptedServer) -> None:
    async def split(request: Request, response: Response) -> None:
        data = ('data: {"choices":[{"delta":{"content":"日本語 🎉"}}]}\r\n\r\n').encode()
        for i in range(len(data)):
            await response.send(data[i : i + 1])
        await complete(response, [])

    server.handler = split
    stream = open_stream(server)
    assert [delta async for delta in stream] == ["日本語 🎉"]


async def test_reasoning_and_tool_calls_are_kept_apart(server: ScriptedServer) -> None:
    async def rich(request: Request, response: Response) -> None:
        await response.event(chunk(reasoning_content="think "))
        await response.event(chunk(reasoning="more"))
        await response.event(chunk("answer"))
        call = {"index": 0, "id": "call_1", "type": "function"}
        await response.event(
            chunk(tool_calls=[{**call, "function": {"name": "get", "arguments": '{"a"'}}])
        )
        await response.event(chunk(tool_calls=[{"index": 0, "function": {"arguments": ": 1}"}}]))
        await response.event(chunk(finish_reason="tool_calls"))
        await response.event("[DONE]")
        await response.end()

    server.handler = rich
    stream = open_stream(server)
    assert [delta async for delta in stream] == ["answer"]
    assert stream.reply.reasoning == "think more"
    [call] = stream.reply.tool_calls
    assert (call.id, call.name, call.arguments) == ("call_1", "get", '{"a": 1}')
    assert stream.stop_reason is StopReason.COMPLETED
    assert stream.reply.to_message()["tool_calls"][0]["function"]["name"] == "get"


async def test_hundred_concurrent_streams_closed_at_once_leave_no_sockets(
    server: ScriptedServer,
) -> None:
    server.handler = stalls_after("a")
    streams = [open_stream(server) for _ in range(100)]
    firsts = await asyncio.gather(*(stream.__anext__() for stream in streams))
    assert firsts == ["a"] * 100
    assert client_sockets(server.port) == 100
    for stream in streams:
        stream.close()
    await asyncio.gather(*(stream.aclose() for stream in streams))
    assert all(stream.stop_reason is StopReason.STOPPED for stream in streams)
    for request in server.requests[-100:]:
        assert request.disconnected.wait(WAIT)
    assert client_sockets(server.port) == 0
    for stream in streams:
        assert [delta async for delta in stream] == []


def test_streams_reuse_pooled_connections(server: ScriptedServer) -> None:
    before = server.connections
    for _ in range(3):
        with stream_chat("hi", model="m", base_url=server.url) as stream:
            assert "".join(stream) == "Hello, world!"
    assert server.connections - before == 1


def test_sync_stream_time_to_first_token_is_measured(server: ScriptedServer) -> None:
    stream = stream_chat("hi", model="m", base_url=server.url)
    started = time.monotonic()
    list(stream)
    stats = stream.stats
    assert stats.time_to_first_token is not None
    assert 0 <= stats.time_to_first_token <= time.monotonic() - started
    assert stats.tokens == 4


async def test_async_with_closed_before_the_pump_ever_ran_does_not_hang(
    server: ScriptedServer,
) -> None:
    async with open_stream(server) as stream:
        pass  # the pump task exists but has not taken a step yet
    assert stream.stop_reason is StopReason.STOPPED
    async with open_stream(server) as stream:
        stream.set_deadline(0)
    assert stream.stop_reason is StopReason.TIMEOUT


async def test_a_cancelled_aclose_does_not_break_the_stream_for_others(
    server: ScriptedServer,
) -> None:
    server.handler = stalls_after("a")
    stream = open_stream(server)
    assert await stream.__anext__() == "a"
    impatient = asyncio.create_task(stream.aclose())
    await asyncio.sleep(0)  # let it start waiting, then give up on it
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    await asyncio.wait_for(stream.aclose(), WAIT)
    assert stream._engine._released.done() and not stream._engine._released.cancelled()
    sees_disconnect(server)


async def test_no_retry_once_the_body_has_started(server: ScriptedServer) -> None:
    async def comment_then_crash(request: Request, response: Response) -> None:
        await response.send(": keep-alive\n\n")
        response.abort()

    server.handler = comment_then_crash
    stream = astream_chat("hi", model="m", base_url=server.url, max_retries=2)
    with pytest.raises(ConnectionLostError):
        async for _ in stream:
            pass
    assert len(server.requests) == 1


async def test_a_connection_dropped_before_the_answer_is_retried(server: ScriptedServer) -> None:
    async def flaky(request: Request, response: Response) -> None:
        if len(server.requests) == 1:
            response.abort()  # no status line at all
        else:
            await complete(response, ["ok"])

    server.handler = flaky
    stream = astream_chat("hi", model="m", base_url=server.url, max_retries=1)
    assert [delta async for delta in stream] == ["ok"]
    assert len(server.requests) == 2


async def test_a_break_out_of_a_bare_async_loop_stops_the_stream(server: ScriptedServer) -> None:
    server.handler = stalls_after("a", "b")
    async for _ in open_stream(server):
        break  # nobody holds the stream any more: collecting it closes it
    sees_disconnect(server)


def test_a_break_out_of_a_bare_sync_loop_stops_the_stream(server: ScriptedServer) -> None:
    server.handler = stalls_after("a", "b")
    for _ in stream_chat("hi", model="m", base_url=server.url):
        break
    sees_disconnect(server)


async def test_a_stream_that_is_held_is_not_stopped_by_collection(server: ScriptedServer) -> None:
    server.handler = stalls_after("a", "b")
    stream = open_stream(server)
    async for _ in stream:
        break
    gc.collect()
    assert stream.stop_reason is None  # still running: its holder may iterate on
    assert await stream.__anext__() == "b"
    await stream.aclose()
    assert not server.requests[-1].finished


async def test_awaiting_one_delta_of_an_unheld_stream_keeps_it_alive(
    server: ScriptedServer,
) -> None:
    first = asyncio.create_task(open_stream(server).__anext__())
    gc.collect()
    assert await first == "Hello"


async def test_streams_can_be_tracked_by_weak_reference(server: ScriptedServer) -> None:
    server.handler = stalls_after("a")
    stream = open_stream(server)
    tracked = weakref.WeakSet([stream])
    assert await stream.__anext__() == "a"
    del stream
    gc.collect()
    assert len(tracked) == 0  # tracking does not keep it alive, so it closed itself
    sees_disconnect(server)


def test_streams_starting_together_on_a_new_loop_share_one_client(
    server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    import jupyter_stream._http as client_module

    made = []

    class CountedClient(httpx.AsyncClient):
        def __init__(self, **options: object) -> None:
            super().__init__(**options)  # type: ignore[arg-type]
            made.append(self)

    async def text(stream: ChatStream) -> str:
        return "".join([delta async for delta in stream])

    async def together() -> list[str]:
        return await asyncio.gather(*(text(open_stream(server)) for _ in range(5)))

    monkeypatch.setattr(client_module.httpx, "AsyncClient", CountedClient)
    # First use in the process: building the TLS context suspends each stream's get_client().
    monkeypatch.setattr(client_module, "_ssl", None)
    assert asyncio.run(together()) == ["Hello, world!"] * 5
    assert len(made) == 1
