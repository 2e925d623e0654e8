"""Values a server should never send, sent by a real server on 127.0.0.1 (tier 2): a lone
surrogate, a usage block that is no usage, a count too big for a float, text that is a number.
Each keeps the answer, ends the stream with a reason, and leaves nothing behind that breaks the
next Jupyter message or the next turn."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from scripted_server import Request, Response, ScriptedServer, chunk

from jupyter_stream import (
    APIError,
    BadRequestError,
    ChatSession,
    ChatStream,
    ProtocolError,
    StopReason,
    alist_models,
    astream_chat,
    list_models,
    stream_chat,
)
from jupyter_stream._magic import _bundle

Handler = Callable[[Request, Response], Awaitable[None]]


def sends(*events: Any, done: bool = True) -> Handler:
    """A handler that sends ``events`` (a dict as JSON, a str as it is), then [DONE]."""

    async def handler(request: Request, response: Response) -> None:
        for item in events:
            await response.event(item)
        if done:
            await response.event("[DONE]")
        await response.end()

    return handler


def open_stream(server: ScriptedServer, prompt: str = "hi") -> ChatStream:
    return astream_chat(prompt, model="test-model", base_url=server.url, max_retries=0)


def jupyter_safe(value: Any) -> None:
    """Raise if ``value`` cannot go into a Jupyter message as jupyter_client packs one."""
    json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")


def usage(**counts: Any) -> dict[str, Any]:
    return {"id": "chatcmpl-test", "choices": [], "usage": counts}


async def test_a_lone_surrogate_becomes_a_replacement_character_and_the_stream_completes(
    server: ScriptedServer,
) -> None:
    server.handler = sends(
        chunk("Hello \ud800"),
        {**chunk("!", finish_reason="stop"), "model": "model-\udfff"},
        usage(prompt_tokens=1, completion_tokens=2),
    )
    stream = open_stream(server)
    assert [delta async for delta in stream] == ["Hello \ufffd", "!"]
    assert stream.stop_reason is StopReason.COMPLETED and stream.error is None
    assert stream.text == "Hello \ufffd!" and stream.model == "model-\ufffd"
    jupyter_safe([stream.text, stream.model, stream.reply.to_message()])


async def test_a_lone_surrogate_in_reasoning_and_tool_calls_is_replaced(
    server: ScriptedServer,
) -> None:
    call = {"index": 0, "id": "c\ud800", "function": {"name": "f\ud800", "arguments": "{\udc00"}}
    server.handler = sends(
        chunk(reasoning_content="think \udbff"),
        chunk(tool_calls=[call]),
        chunk(finish_reason="tool_calls"),
    )
    stream = open_stream(server)
    assert [delta async for delta in stream] == []
    assert stream.reply.reasoning == "think \ufffd"
    [tool] = stream.reply.tool_calls
    assert (tool.id, tool.name, tool.arguments) == ("c\ufffd", "f\ufffd", "{\ufffd")
    jupyter_safe(stream.reply.to_message())


async def test_an_error_event_with_a_lone_surrogate_names_the_error_cleanly(
    server: ScriptedServer,
) -> None:
    server.handler = sends(chunk("part"), {"error": {"message": "overloaded \ud800", "code": 503}})
    stream = open_stream(server)
    with pytest.raises(APIError) as caught:
        [delta async for delta in stream]
    assert "overloaded \ufffd" in str(caught.value) and caught.value.code == "503"
    assert stream.text == "part" and caught.value.reply is stream.reply
    jupyter_safe(str(caught.value))


async def test_usage_that_is_not_an_object_is_ignored_and_the_answer_kept(
    server: ScriptedServer,
) -> None:
    server.handler = sends(
        chunk("Hello"), chunk(finish_reason="stop"), {"choices": [], "usage": "x"}
    )
    stream = open_stream(server)
    assert [delta async for delta in stream] == ["Hello"]
    assert stream.stop_reason is StopReason.COMPLETED and stream.text == "Hello"
    stats = stream.stats
    assert stats.usage is None and stats.tokens == 1 and stats.chunks == 3
    assert stream.reply.notes == [
        'ignored usage: the server sent a string ("x"), expected an object of token counts'
    ]
    # The notebook's final output says so: in its status line and its metadata.
    data, metadata = _bundle(stream)
    assert metadata["jupyter_stream"]["notes"] == stream.reply.notes
    assert "completed · 1 ignored value" in data["text/plain"] + data["text/html"]


def test_usage_that_is_not_an_object_is_ignored_by_the_sync_api_too(
    server: ScriptedServer,
) -> None:
    server.handler = sends(chunk("Hello"), {**chunk(finish_reason="stop"), "usage": "x"})
    with stream_chat("hi", model="m", base_url=server.url, max_retries=0) as stream:
        assert list(stream) == ["Hello"]
    assert stream.stats.usage is None and stream.stop_reason is StopReason.COMPLETED
    assert "ignored usage" in stream.reply.notes[0]


async def test_a_count_too_big_for_a_float_is_ignored_and_the_stats_still_work(
    server: ScriptedServer,
) -> None:
    huge = 10**400

    async def handler(request: Request, response: Response) -> None:
        for token in ["a", "b", "c"]:
            await response.event(chunk(token))
        await response.event(chunk(finish_reason="stop"))
        # json.dumps writes 10**400 as its digits and inf as Infinity: both parse in Python.
        await response.event(
            usage(prompt_tokens=2, completion_tokens=huge, total_tokens=float("inf"))
        )
        await response.event("[DONE]")
        await response.end()

    server.handler = handler
    stream = open_stream(server)
    assert "".join([delta async for delta in stream]) == "abc"
    assert stream.stop_reason is StopReason.COMPLETED
    stats = stream.stats
    assert stats.usage == {"prompt_tokens": 2}
    assert stats.tokens == 3  # counted, since the server's count was ignored
    assert stats.tokens_per_second is None or stats.tokens_per_second > 0
    jupyter_safe({"usage": dict(stats.usage), "tokens": stats.tokens})
    assert [note.split(":")[0] for note in stream.reply.notes] == [
        "ignored usage.completion_tokens",
        "ignored usage.total_tokens",
    ]


async def test_the_largest_exact_count_is_kept_and_used(server: ScriptedServer) -> None:
    server.handler = sends(
        chunk("a"), chunk(finish_reason="stop"), usage(completion_tokens=2**53 - 1)
    )
    stream = open_stream(server)
    [delta async for delta in stream]
    assert stream.stats.tokens == 2**53 - 1 and not stream.reply.notes
    assert stream.stats.tokens_per_second is None or stream.stats.tokens_per_second > 0


@pytest.mark.parametrize("split", ["separate reads", "one read"])
async def test_content_that_is_a_number_is_a_protocol_error_naming_content_and_keeps_the_text(
    server: ScriptedServer, split: str
) -> None:
    bad = {**chunk(), "choices": [{"index": 0, "delta": {"content": 123}, "finish_reason": None}]}

    async def handler(request: Request, response: Response) -> None:
        events = [chunk("Hello"), chunk(" world"), bad, chunk("never")]
        data = "".join(f"data: {json.dumps(item)}\n\n" for item in events)
        if split == "one read":
            await response.send(data)
        else:
            for item in events:
                await response.event(item)
        await response.event("[DONE]")
        await response.end()

    server.handler = handler
    stream = open_stream(server)
    received = []
    with pytest.raises(ProtocolError) as caught:
        async for delta in stream:
            received.append(delta)
    message = str(caught.value)
    assert "choices[0].delta.content as a number (123)" in message, message
    assert "a string or null" in message and "kept in .reply" in message
    assert "AssertionError" not in message
    assert stream.stop_reason is StopReason.ERROR and stream.error is caught.value
    assert stream.text == "Hello world" and caught.value.reply is stream.reply
    assert "".join(received) == "Hello world"


async def test_tool_call_arguments_of_the_wrong_type_are_a_protocol_error_naming_them(
    server: ScriptedServer,
) -> None:
    bad_call = {"index": 0, "function": {"name": "f", "arguments": 5}}
    server.handler = sends(chunk("Let me look."), chunk(tool_calls=[bad_call]))
    stream = open_stream(server)
    with pytest.raises(ProtocolError, match=r"tool_calls\[0\]\.function\.arguments as a number"):
        [delta async for delta in stream]
    assert stream.text == "Let me look."


async def test_a_session_turn_with_a_lone_surrogate_leaves_a_clean_history(
    server: ScriptedServer,
) -> None:
    server.handler = sends(chunk("caf\udce9"), chunk(finish_reason="stop"))
    session = ChatSession(model="m", base_url=server.url, max_retries=0, system="be \ud800 brief")
    first = session.astream("say caf\udce9")  # a prompt decoded with surrogateescape, say
    assert [delta async for delta in first] == ["caf\ufffd"]
    history = session.messages()
    jupyter_safe(history)
    assert [m["content"] for m in history] == ["be \ufffd brief", "say caf\ufffd", "caf\ufffd"]
    assert json.loads(server.requests[-1].body.decode("utf-8"))["messages"][-1] == {
        "role": "user",
        "content": "say caf\ufffd",
    }

    server.handler = sends(chunk("next"), chunk(finish_reason="stop"))
    second = session.astream("and then?")
    assert [delta async for delta in second] == ["next"]
    assert second.stop_reason is StopReason.COMPLETED
    sent = server.requests[-1].json()["messages"]
    assert [m["content"] for m in sent] == [
        "be \ufffd brief",
        "say caf\ufffd",
        "caf\ufffd",
        "and then?",
    ]


async def test_a_turn_that_calls_tools_does_not_poison_the_next(server: ScriptedServer) -> None:
    call = {
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
    }
    server.handler = sends(
        chunk("Checking."), chunk(tool_calls=[call]), chunk(finish_reason="tool_calls")
    )
    session = ChatSession(model="m", base_url=server.url, max_retries=0)
    first = session.astream("look it up")
    assert [delta async for delta in first] == ["Checking."]
    assert first.reply.tool_calls  # the reply keeps them
    server.handler = sends(chunk(tool_calls=[call]), chunk(finish_reason="tool_calls"))
    only_tools = session.astream("again")
    assert [delta async for delta in only_tools] == []

    server.handler = sends(chunk("next"), chunk(finish_reason="stop"))
    third = session.astream("and then?")
    assert [delta async for delta in third] == ["next"]
    # No assistant message with tool calls and no tool answers (servers refuse that history),
    # and no two user messages in a row.
    assert server.requests[-1].json()["messages"] == [
        {"role": "user", "content": "look it up"},
        {"role": "assistant", "content": "Checking."},
        {"role": "user", "content": "and then?"},
    ]


async def test_the_model_list_replaces_lone_surrogates(server: ScriptedServer) -> None:
    body = json.dumps({"object": "list", "data": [{"id": "b\ud800"}, {"id": "a"}]})

    async def handler(request: Request, response: Response) -> None:
        await response.whole(200, body)

    server.handler = handler
    assert await alist_models(base_url=server.url) == ["a", "b\ufffd"]


@pytest.mark.parametrize(
    "data",
    [[{"id": "a"}, {"id": 7}], [{"id": "a"}, {"name": "b"}], [{"id": "a"}, "b"], [{"id": ""}]],
)
def test_a_model_without_a_string_id_is_a_protocol_error_naming_it(
    server: ScriptedServer, data: list[Any]
) -> None:
    body = json.dumps({"object": "list", "data": data})

    async def handler(request: Request, response: Response) -> None:
        await response.whole(200, body)

    server.handler = handler
    with pytest.raises(ProtocolError, match=r"data\[\d\]\.id"):
        list_models(base_url=server.url)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (json.dumps({"error": {"message": "no \ud800 here"}}), "no \ufffd here"),
        ('{"error": ' * 100_000 + "1" + "}" * 100_000, '{"error": {"error"'),
    ],
)
async def test_an_error_status_whose_body_is_hostile_is_still_a_clean_error(
    server: ScriptedServer, body: str, said: str
) -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.whole(400, body)

    server.handler = handler
    stream = open_stream(server)
    with pytest.raises(BadRequestError) as caught:
        [delta async for delta in stream]
    assert said in str(caught.value) and "rejected the request" in str(caught.value)
    jupyter_safe(str(caught.value))
