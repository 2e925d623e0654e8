"""Our client against a server we did not write: llmock (PyPI), one ``llmock serve`` process.

Every API llmock speaks (Chat Completions, Responses, Anthropic Messages, Gemini; it has no
Ollama) gets llmock's answer, its finish reasons and tool calls, stops at once on ``close()``
(llmock's journal records the request as not completed), and meets llmock's stream faults and
error statuses with the right error and what arrived kept.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from typing import Any

import pytest
from llmock_server import MODELS, PROVIDERS, LLMock

from jupyter_stream import (
    BadRequestError,
    ChatStream,
    ConnectionLostError,
    ProtocolError,
    StopReason,
    TruncatedStreamError,
    astream_chat,
    stream_chat,
)

APIS = ["chat", "responses", "anthropic", "gemini"]
LONG = " ".join(f"word{i}" for i in range(400))  # 400 chunks at 20 ms: outlasts every test
FAULT_AFTER = 6  # chunks before a fault: some text has arrived on every API by then
UNICODE = "Grüße — 東京 🚀 «ok»\nline two\ttab."


@pytest.fixture(params=APIS)
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def nonce() -> str:
    """A marker put in the prompt: it finds the request in llmock's journal."""
    return f"n{uuid.uuid4().hex[:12]}"


def options(mock: LLMock, api: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODELS[api],
        "base_url": mock.base_url(api),
        "api_key": "sk-llmock",
        "api": api,
        "timeout": 30,
        **extra,
    }


def reply(api: str, **fields: Any) -> dict[str, Any]:
    """A scripted reply for the next streamed request of ``api``'s provider."""
    return {"type": "reply", "match": {"provider": PROVIDERS[api], "stream": True}, **fields}


# -- answers --------------------------------------------------------------------------------------


async def test_stream_gets_llmocks_answer(mock: LLMock, api: str) -> None:
    marker = nonce()
    deltas = []
    async with astream_chat(f"say {marker}", **options(mock, api)) as stream:
        async for delta in stream:
            deltas.append(delta)
    assert stream.stop_reason is StopReason.COMPLETED, stream.error
    assert marker in stream.text  # llmock echoes the prompt: the request carried it
    assert "".join(deltas) == stream.text
    assert len(deltas) > 1  # streamed, not one whole answer
    assert stream.reply.usage, "llmock sends token counts on every API"
    record = mock.record(marker)
    assert (record["status"], record["stream"], record["completed"]) == (200, True, True)


def test_scripted_text_arrives_exactly(mock: LLMock, api: str) -> None:
    mock.script(reply(api, text=UNICODE))
    with stream_chat("hello", **options(mock, api)) as stream:
        deltas = list(stream)
    assert stream.stop_reason is StopReason.COMPLETED, stream.error
    assert "".join(deltas) == stream.text == UNICODE


FINISHES = [
    ("length", StopReason.LENGTH, APIS),
    # The Responses API has no content-filter finish that llmock can send.
    ("content_filter", StopReason.CONTENT_FILTER, ["chat", "anthropic", "gemini"]),
]


@pytest.mark.parametrize(("finish", "reason", "apis"), FINISHES, ids=[f[0] for f in FINISHES])
def test_finish_reason_maps_to_stop_reason(
    mock: LLMock,
    api: str,
    finish: str,
    reason: StopReason,
    apis: list[str],
) -> None:
    if api not in apis:
        pytest.skip(f"llmock cannot say {finish!r} on {api!r}")
    mock.script(reply(api, text="cut short", finish_reason=finish))
    with stream_chat("hello", **options(mock, api)) as stream:
        text = "".join(stream)
    assert stream.stop_reason is reason, stream.error
    assert text == "cut short"


def test_tool_calls_are_assembled(mock: LLMock, api: str) -> None:
    args = {"city": "Zürich", "days": [1, 2, 3], "note": "a long enough value to be cut up"}
    calls = [{"name": "get_weather", "arguments": args}, {"name": "get_time", "arguments": {}}]
    mock.script(reply(api, tool_calls=calls))
    with stream_chat("weather?", **options(mock, api)) as stream:
        list(stream)
    assert stream.stop_reason is StopReason.COMPLETED, stream.error
    got = [(call.name, json.loads(call.arguments or "{}")) for call in stream.reply.tool_calls]
    assert got == [("get_weather", args), ("get_time", {})]


# -- close() ---------------------------------------------------------------------------------------


def assert_left_early(mock: LLMock, marker: str) -> None:
    """llmock's journal records the request as one the client left."""
    record = mock.record(marker)
    assert record["completed"] is False, record
    assert record["chunks_sent"] < len(LONG.split()), record


async def test_close_after_first_delta_ends_at_once(mock: LLMock, api: str) -> None:
    mock.script(reply(api, text=LONG))
    marker = nonce()
    stream = astream_chat(f"go {marker}", **options(mock, api))
    after: list[str] = []
    async with stream:
        async for delta in stream:
            if stream.stop_reason is StopReason.STOPPED:
                after.append(delta)
                continue
            assert delta
            stream.close()
    assert stream.stop_reason is StopReason.STOPPED
    assert after == []
    assert stream.text.startswith("word0")
    assert stream.error is None
    assert_left_early(mock, marker)


def test_close_from_another_thread_ends_at_once(mock: LLMock, api: str) -> None:
    mock.script(reply(api, text=LONG))
    marker = nonce()
    first = threading.Event()
    closed = threading.Event()
    after: list[str] = []

    def closer(stream: ChatStream) -> None:
        if first.wait(30):
            stream.close()
        closed.set()

    with stream_chat(f"go {marker}", **options(mock, api)) as stream:
        thread = threading.Thread(target=closer, args=(stream,), daemon=True)
        thread.start()
        for delta in stream:
            if closed.is_set():
                after.append(delta)
            first.set()
        thread.join(30)
    assert stream.stop_reason is StopReason.STOPPED
    assert after == []
    assert_left_early(mock, marker)


# -- faults and errors -----------------------------------------------------------------------------

FAULTS = [
    ("truncate", TruncatedStreamError),  # a clean end with no end mark
    ("disconnect", ConnectionLostError),  # the connection dropped mid-body
    ("malformed", ProtocolError),  # an event whose JSON is cut in half
]


@pytest.mark.parametrize(("kind", "error"), FAULTS, ids=[f[0] for f in FAULTS])
def test_stream_fault_raises_and_keeps_what_arrived(
    mock: LLMock, api: str, kind: str, error: type[Exception]
) -> None:
    mock.script(
        reply(api, text=LONG),
        {"type": "stream_fault", "kind": kind, "after_chunks": FAULT_AFTER},
    )
    marker = nonce()
    deltas: list[str] = []
    stream = stream_chat(f"go {marker}", **options(mock, api))
    with pytest.raises(error) as raised, stream:
        for delta in stream:
            deltas.append(delta)
    assert stream.stop_reason is StopReason.ERROR
    assert stream.error is raised.value
    assert deltas, "some text arrived before the fault"
    assert raised.value.reply is not None
    assert raised.value.reply.content == "".join(deltas) == stream.text
    assert LONG.startswith(stream.text)
    assert mock.record(marker)["fault"] == f"stream:{kind}@{FAULT_AFTER}"


def test_stall_ends_with_idle_timeout_and_keeps_what_arrived(mock: LLMock, api: str) -> None:
    mock.script(
        reply(api, text=LONG),
        {"type": "stream_fault", "kind": "stall", "after_chunks": FAULT_AFTER, "stall_seconds": 30},
    )
    marker = nonce()
    with stream_chat(f"go {marker}", **options(mock, api, idle_timeout=0.5)) as stream:
        deltas = list(stream)
    assert stream.stop_reason is StopReason.IDLE_TIMEOUT
    assert deltas and "".join(deltas) == stream.text
    assert LONG.startswith(stream.text)
    assert_left_early(mock, marker)


async def test_error_status_before_first_byte_is_retried(mock: LLMock, api: str) -> None:
    mock.script({"type": "fail", "status": 503, "retry_after": 0.05, "times": 1})
    marker = nonce()
    async with astream_chat(f"say {marker}", **options(mock, api)) as stream:
        text = "".join([delta async for delta in stream])
    assert stream.stop_reason is StopReason.COMPLETED, stream.error
    assert marker in text
    mock.record(marker, lambda r: r["status"] == 200)
    statuses = [r["status"] for r in mock.requests() if marker in json.dumps(r["body"])]
    assert statuses == [503, 200]


def test_error_status_quotes_llmocks_words(mock: LLMock, api: str) -> None:
    said = f"llmock refuses {nonce()}"
    mock.script({"type": "fail", "status": 400, "message": said, "times": 1})
    stream = stream_chat("hello", **options(mock, api))
    with pytest.raises(BadRequestError) as raised, stream:
        list(stream)
    assert said in str(raised.value)
    assert "sk-llmock" not in str(raised.value) + repr(raised.value)
    assert stream.text == ""


def test_many_streams_at_once_all_get_their_answers(mock: LLMock, api: str) -> None:
    markers = [nonce() for _ in range(8)]

    async def one(marker: str) -> tuple[StopReason | None, str]:
        async with astream_chat(f"say {marker}", **options(mock, api)) as stream:
            text = "".join([delta async for delta in stream])
        return stream.stop_reason, text

    async def together() -> list[tuple[StopReason | None, str]]:
        return await asyncio.gather(*(one(m) for m in markers))

    results = asyncio.run(together())
    for marker, (reason, text) in zip(markers, results, strict=True):
        assert reason is StopReason.COMPLETED
        assert marker in text
