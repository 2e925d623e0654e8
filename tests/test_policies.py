"""Interruption policies against real servers on 127.0.0.1: the registry of live streams, its
cap with preempt / wait / refuse, priorities, and supersede in a session. Each policy must keep
the text that arrived before the stop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest
from conftest import ended_since, wait_for_exchanges
from scripted_server import Request, Response, ScriptedServer, chunk

from jupyter_stream import (
    ChatSession,
    ChatStream,
    ConfigurationError,
    StopReason,
    StreamLimitError,
    astream_chat,
    registry,
    stream_chat,
)
from jupyter_stream.server import BackgroundServer
from jupyter_stream.server._models import answer_tokens

WAIT = 10  # seconds: a guard against hangs, never a timing assertion
PROMPT = "Explain streaming"


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    """No limit before and after each test, and no stream of one test left for the next."""
    registry.stop_all()
    registry.configure(max_concurrent=None, when_full="preempt")
    yield
    registry.stop_all()
    registry.configure(max_concurrent=None, when_full="preempt")


def stalling(*tokens: str) -> Callable[[Request, Response], object]:
    """A handler that sends ``tokens`` and then nothing, until the client goes."""

    async def handler(request: Request, response: Response) -> None:
        for token in tokens:
            await response.event(chunk(token))
        await response.until_disconnect()

    return handler


def demo_text(tokens: int = 2000) -> str:
    pieces = answer_tokens("demo", [{"role": "user", "content": PROMPT}], endless=True)
    return "".join(piece for _, piece in zip(range(tokens), pieces, strict=False))


async def read(stream: ChatStream, seen: list[str]) -> None:
    async for delta in stream:
        seen.append(delta)


async def ended_all(tasks: list[asyncio.Task[None]], count: int) -> None:
    """Wait until ``count`` of ``tasks`` have ended (each is a consumer of one stream)."""
    pending = set(tasks)
    done_count = 0
    while done_count < count:
        done, pending = await asyncio.wait(pending, timeout=WAIT, return_when="FIRST_COMPLETED")
        assert done, "no stream ended"
        done_count += len(done)


def kept_what_arrived(stream: ChatStream, seen: list[str], full: str) -> None:
    """Nothing received before the stop is lost: the text holds every delta iterated, and is
    what the server sent (a prefix of the whole answer)."""
    assert stream.text.startswith("".join(seen))
    assert full.startswith(stream.text)


# -- the registry -------------------------------------------------------------------------------


async def test_the_registry_lists_live_streams_and_stops_one_or_all(
    server: ScriptedServer,
) -> None:
    server.handler = stalling("a", "b")
    streams = [
        astream_chat(f"q{n}", model="m", base_url=server.url, max_retries=0, priority=n)
        for n in range(3)
    ]
    assert registry.streams() == []  # made, not started: not live yet
    for stream in streams:
        assert await stream.__anext__() == "a"
    assert registry.streams() == streams  # oldest first
    assert [s.priority for s in registry.streams()] == [0, 1, 2]
    assert "3 running" in repr(registry)

    assert registry.stop(streams[1].number)
    assert streams[1].stop_reason is StopReason.STOPPED
    assert server.requests[1].disconnected.wait(WAIT)
    assert registry.streams() == [streams[0], streams[2]]
    assert not registry.stop(streams[1])  # no longer live

    assert registry.stop_all() == 2
    assert [s.stop_reason for s in streams] == [StopReason.STOPPED] * 3
    assert all(request.disconnected.wait(WAIT) for request in server.requests)
    assert registry.streams() == []
    assert all("ab".startswith(s.text) and s.text for s in streams)


async def test_a_stream_leaves_the_registry_when_it_ends(server: ScriptedServer) -> None:
    stream = astream_chat("hi", model="m", base_url=server.url, max_retries=0)
    assert [delta async for delta in stream] == ["Hello", ",", " world", "!"]
    assert stream.stop_reason is StopReason.COMPLETED
    assert registry.streams() == []
    # ... and its slot is free: with a cap of one, the next stream runs.
    registry.configure(max_concurrent=1, when_full="refuse")
    again = astream_chat("hi", model="m", base_url=server.url, max_retries=0)
    assert "".join([delta async for delta in again]) == "Hello, world!"


def test_bad_limits_are_refused_with_the_fix() -> None:
    for bad in (0, -1, 1.5, True, "4"):
        with pytest.raises(ConfigurationError, match="max_concurrent must be a whole number"):
            registry.configure(max_concurrent=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="'preempt', 'wait', 'refuse'"):
        registry.configure(when_full="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="priority must be a whole number"):
        astream_chat("hi", model="m", base_url="http://127.0.0.1:9/v1", priority=1.5)  # type: ignore[arg-type]
    assert registry.max_concurrent is None and registry.when_full == "preempt"


# -- preempt ------------------------------------------------------------------------------------


async def test_a_burst_of_100_streams_keeps_the_highest_priorities(
    make_server: Callable[..., BackgroundServer],
) -> None:
    """100 streams start at once over a cap of 10: the 10 of highest priority (the newest among
    equals) run, the 90 others are preempted, each told what took its slot."""
    slow = make_server(tokens_per_second=20, first_token_delay=0)
    registry.configure(max_concurrent=10, when_full="preempt")
    priorities = [(n * 37) % 7 for n in range(100)]  # 0..6, in a scattered order
    streams = [
        astream_chat(PROMPT, model="demo", base_url=slow.base_url, priority=p, max_tokens=2000)
        for p in priorities
    ]
    seen: list[list[str]] = [[] for _ in streams]
    tasks = [asyncio.create_task(read(s, d)) for s, d in zip(streams, seen, strict=True)]
    await ended_all(tasks, 90)

    by_rank = sorted(streams, key=lambda s: (s.priority, s.number))
    survivors, preempted = by_rank[-10:], by_rank[:-10]
    assert [s.stop_reason for s in survivors] == [None] * 10
    assert registry.streams() == sorted(survivors, key=lambda s: s.number)
    assert {s.stop_reason for s in preempted} == {StopReason.PREEMPTED}
    for stream in preempted:
        assert stream.stop_detail is not None
        assert "max_concurrent" in stream.stop_detail

    assert registry.stop_all() == 10
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
    full = demo_text()
    for stream, deltas in zip(streams, seen, strict=True):
        kept_what_arrived(stream, deltas, full)


async def test_preempted_streams_keep_what_they_had_received(
    make_server: Callable[..., BackgroundServer],
) -> None:
    """Ten streams are running and have text when a burst of 90 of higher priority arrives:
    all ten are closed (the server sees each go), and their text so far is kept."""
    slow = make_server(tokens_per_second=50, first_token_delay=0)
    registry.configure(max_concurrent=10, when_full="preempt")
    low = [
        astream_chat(PROMPT, model="demo", base_url=slow.base_url, max_tokens=2000)
        for _ in range(10)
    ]
    seen: list[list[str]] = [[] for _ in low]
    for stream, deltas in zip(low, seen, strict=True):
        for _ in range(3):
            deltas.append(await stream.__anext__())
    low_tasks = [asyncio.create_task(read(s, d)) for s, d in zip(low, seen, strict=True)]
    before = len(slow.app.state.server.ended)

    high = [
        astream_chat(PROMPT, model="demo", base_url=slow.base_url, max_tokens=2000, priority=1)
        for _ in range(90)
    ]
    high_tasks = [asyncio.create_task(read(s, [])) for s in high]
    await asyncio.wait_for(asyncio.gather(*low_tasks), WAIT)

    assert {s.stop_reason for s in low} == {StopReason.PREEMPTED}
    full = demo_text()
    for stream, deltas in zip(low, seen, strict=True):
        assert len(deltas) >= 3
        kept_what_arrived(stream, deltas, full)
    wait_for_exchanges(slow, lambda state: len(state.ended) >= before + 10)
    gone = ended_since(slow, before)
    assert sum("disconnected" in str(exchange) for exchange in gone) >= 10
    # Of the high ones, the 80 beyond the cap preempted each other (equal priority: the oldest
    # goes), and the 10 newest run.
    await ended_all(high_tasks, 80)
    assert [s.stop_reason for s in high[-10:]] == [None] * 10
    assert {s.stop_reason for s in high[:-10]} == {StopReason.PREEMPTED}
    registry.stop_all()
    await asyncio.wait_for(asyncio.gather(*high_tasks), WAIT)


async def test_a_new_stream_of_lower_priority_than_all_is_preempted_itself(
    server: ScriptedServer,
) -> None:
    server.handler = stalling("a")
    registry.configure(max_concurrent=1, when_full="preempt")
    running = astream_chat("one", model="m", base_url=server.url, max_retries=0, priority=5)
    assert await running.__anext__() == "a"
    late = astream_chat("two", model="m", base_url=server.url, max_retries=0, priority=0)
    assert [delta async for delta in late] == []
    assert late.stop_reason is StopReason.PREEMPTED
    assert "higher priority" in (late.stop_detail or "")
    assert running.stop_reason is None
    assert len(server.requests) == 1  # the late stream never connected


def test_a_sync_stream_is_preempted_from_another_loop(server: ScriptedServer) -> None:
    """The registry is process-wide: an async stream preempts a sync one (on the private loop
    thread), and the sync consumer keeps its text."""
    server.handler = stalling("a", "b", "c")
    registry.configure(max_concurrent=1, when_full="preempt")
    with stream_chat("one", model="m", base_url=server.url, max_retries=0) as sync:
        seen = [next(sync), next(sync)]

        async def newer() -> ChatStream:
            stream = astream_chat("two", model="m", base_url=server.url, max_retries=0)
            await stream.__anext__()
            return stream

        newcomer = asyncio.run(newer())
        rest = list(sync)
    assert sync.stop_reason is StopReason.PREEMPTED
    assert sync.text.startswith("".join(seen + rest)) and sync.text.startswith("ab")
    assert server.requests[0].disconnected.wait(WAIT)
    assert newcomer.stop_reason is not StopReason.PREEMPTED


# -- wait and refuse ----------------------------------------------------------------------------


async def test_a_stream_over_the_cap_waits_for_a_slot_by_priority(server: ScriptedServer) -> None:
    server.handler = stalling("a")
    registry.configure(max_concurrent=1, when_full="wait")
    first = astream_chat("first", model="m", base_url=server.url, max_retries=0)
    assert await first.__anext__() == "a"
    low = astream_chat("low", model="m", base_url=server.url, max_retries=0, priority=0)
    high = astream_chat("high", model="m", base_url=server.url, max_retries=0, priority=9)
    await low.__aenter__()  # starts its pump: a task on this loop
    await high.__aenter__()
    # One loop step: each pump's first step joins the queue (admission runs before the pump's
    # first await; asyncio runs ready tasks in order). Deterministic, not a timed wait.
    await asyncio.sleep(0)
    assert low.waiting and high.waiting
    low_next = asyncio.ensure_future(low.__anext__())
    high_next = asyncio.ensure_future(high.__anext__())
    assert "waiting" in repr(low)
    assert registry.streams() == [first, low, high]
    assert len(server.requests) == 1

    first.close()  # the slot goes to the higher priority, although it came later
    assert await asyncio.wait_for(high_next, WAIT) == "a"
    assert not high.waiting and low.waiting
    assert [request.json()["messages"][-1]["content"] for request in server.requests] == [
        "first",
        "high",
    ]
    high.close()
    assert await asyncio.wait_for(low_next, WAIT) == "a"
    low.close()
    assert [s.stop_reason for s in (first, high, low)] == [StopReason.STOPPED] * 3


async def test_a_waiting_stream_can_be_stopped_and_times_out(server: ScriptedServer) -> None:
    server.handler = stalling("a")
    registry.configure(max_concurrent=1, when_full="wait")
    first = astream_chat("first", model="m", base_url=server.url, max_retries=0)
    assert await first.__anext__() == "a"
    stopped = astream_chat("stopped", model="m", base_url=server.url, max_retries=0)
    timed = astream_chat("timed", model="m", base_url=server.url, max_retries=0, timeout=0.05)
    stopped_task = asyncio.ensure_future(read(stopped, []))
    await asyncio.wait_for(read(timed, []), WAIT)  # the wait counts towards the deadline
    assert timed.stop_reason is StopReason.TIMEOUT
    stopped.close()
    await asyncio.wait_for(stopped_task, WAIT)
    assert stopped.stop_reason is StopReason.STOPPED
    assert len(server.requests) == 1
    assert registry.streams() == [first]


async def test_a_stream_over_the_cap_is_refused_when_so_configured(
    server: ScriptedServer,
) -> None:
    server.handler = stalling("a")
    registry.configure(max_concurrent=1, when_full="refuse")
    first = astream_chat("first", model="m", base_url=server.url, max_retries=0)
    assert await first.__anext__() == "a"
    refused = astream_chat("second", model="m", base_url=server.url, max_retries=0)
    with pytest.raises(StreamLimitError, match=r"max_concurrent=1.*Fix: stop one") as caught:
        await refused.__anext__()
    assert refused.stop_reason is StopReason.ERROR and refused.error is caught.value
    assert len(server.requests) == 1
    assert first.stop_reason is None
    # Raising the limit lets the next one in.
    registry.configure(max_concurrent=2)
    again = astream_chat("third", model="m", base_url=server.url, max_retries=0)
    assert await again.__anext__() == "a"


# -- supersede ----------------------------------------------------------------------------------


async def test_a_session_supersedes_its_running_turn_by_default(server: ScriptedServer) -> None:
    server.handler = stalling("partial")
    session = ChatSession(model="m", base_url=server.url, max_retries=0)
    first = session.astream("one")
    assert await first.__anext__() == "partial"
    second = session.astream("two")
    assert first.stop_reason is StopReason.SUPERSEDED
    assert first.text == "partial"  # kept, and in the history the second turn sends
    assert await second.__anext__() == "partial"
    sent = server.requests[-1].json()["messages"]
    assert [m["content"] for m in sent] == ["one", "partial", "two"]
    session.stop()


async def test_a_session_without_supersede_lets_both_turns_run(server: ScriptedServer) -> None:
    server.handler = stalling("partial")
    session = ChatSession(model="m", base_url=server.url, max_retries=0, supersede=False)
    first = session.astream("one")
    assert await first.__anext__() == "partial"
    second = session.astream("two")
    assert await second.__anext__() == "partial"
    assert first.stop_reason is None and second.stop_reason is None
    assert session.running == [first, second]
    # The running turn is not history yet.
    assert [m["content"] for m in server.requests[-1].json()["messages"]] == ["two"]
    session.stop()
    assert first.stop_reason is second.stop_reason is StopReason.STOPPED


def test_many_threads_starting_streams_never_exceed_the_cap(server: ScriptedServer) -> None:
    """Streams started from several threads at once (sync ones, on the private loop) still get
    at most max_concurrent slots."""
    server.handler = stalling("a")
    registry.configure(max_concurrent=3, when_full="refuse")
    outcomes: list[str] = []
    lock = threading.Lock()
    streams: list[ChatStream] = []

    def start() -> None:
        stream = stream_chat("q", model="m", base_url=server.url, max_retries=0)
        with lock:
            streams.append(stream)
        try:
            next(stream)
            outcome = "running"
        except StreamLimitError:
            outcome = "refused"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=start) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert sorted(outcomes) == ["refused"] * 9 + ["running"] * 3
    assert len(registry.streams()) == 3
    registry.stop_all()
    assert sorted(s.text for s in streams) == [""] * 9 + ["a"] * 3
