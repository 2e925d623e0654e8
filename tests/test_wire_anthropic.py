"""The Anthropic Messages wire format (api="anthropic"): its parser on event sequences shaped as
the API sends them (the streaming guide's examples), its request, its whole answer, and streams
through the real engine against a scripted server on 127.0.0.1."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
import wire_harness as harness
from anthropic.types import MessageParam
from pydantic import ConfigDict, TypeAdapter
from scripted_server import Request, Response, ScriptedServer
from wire_harness import (
    NOT_STRINGS,
    Event,
    close_after_first,
    left,
    outcome,
    parse_events,
    random_literal,
    scripted,
)

from jupyter_stream import (
    APIError,
    ConfigurationError,
    ProtocolError,
    StopReason,
    TruncatedStreamError,
    astream_chat,
)
from jupyter_stream._reply import Chunk
from jupyter_stream._target import Endpoint
from jupyter_stream._wire import wire_format
from jupyter_stream._wire.anthropic import build_body

WIRE = wire_format("anthropic")


def event(kind: str, **fields: Any) -> Event:
    return kind, {"type": kind, **fields}


def message_start(input_tokens: int = 25) -> Event:
    message = {
        "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-sonnet-4-5",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
    }
    return event("message_start", message=message)


def text_block(index: int, *pieces: str) -> list[Event]:
    return [
        event("content_block_start", index=index, content_block={"type": "text", "text": ""}),
        event("ping"),
        *(
            event("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
            for piece in pieces
        ),
        event("content_block_stop", index=index),
    ]


def tool_block(index: int, tool_id: str, name: str, *pieces: str) -> list[Event]:
    block = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
    return [
        event("content_block_start", index=index, content_block=block),
        *(
            event(
                "content_block_delta",
                index=index,
                delta={"type": "input_json_delta", "partial_json": piece},
            )
            for piece in pieces
        ),
        event("content_block_stop", index=index),
    ]


def ending(stop_reason: str = "end_turn", output_tokens: int = 15) -> list[Event]:
    return [
        event(
            "message_delta",
            delta={"stop_reason": stop_reason, "stop_sequence": None},
            usage={"output_tokens": output_tokens},
        ),
        event("message_stop"),
    ]


parse = partial(parse_events, WIRE)
parse_one = partial(harness.parse_one, WIRE)


# -- the parser -------------------------------------------------------------------------------


def test_text_streams_as_plain_strings_and_the_end_mark_carries_the_stop_reason() -> None:
    reply, chunks = parse([message_start(), *text_block(0, "Hello", "!", " Grüß"), *ending()])
    assert reply.content == "Hello! Grüß"
    assert [chunk for chunk in chunks if type(chunk) is str and chunk] == ["Hello", "!", " Grüß"]
    assert reply.model == "claude-sonnet-4-5"
    assert reply.id == "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"
    assert reply.finish_reason == "end_turn" and WIRE.end_kind("end_turn") == "completed"
    assert reply.usage == {"input_tokens": 25, "output_tokens": 15}
    assert reply.output_tokens == 15
    end = chunks[-1]
    assert isinstance(end, Chunk) and end.done and end.finish_reason == "end_turn"
    # message_delta's stop reason waits for message_stop: a stream cut between them is cut.
    assert all(isinstance(chunk, str) or chunk.finish_reason is None for chunk in chunks[:-1])


def test_usage_is_merged_and_reported_whole_as_it_grows() -> None:
    _, chunks = parse(
        [
            message_start(input_tokens=472),
            event(
                "message_delta",
                delta={"stop_reason": "end_turn"},
                usage={"input_tokens": None, "output_tokens": 89, "cache_read_input_tokens": 7},
            ),
        ]
    )
    first, second = chunks
    assert isinstance(first, Chunk) and first.usage == {"input_tokens": 472, "output_tokens": 1}
    assert isinstance(second, Chunk)
    assert second.usage == {"input_tokens": 472, "output_tokens": 89, "cache_read_input_tokens": 7}
    assert second.output_tokens == 89


def test_thinking_is_reasoning_apart_from_the_answer() -> None:
    thinking = {"type": "thinking", "thinking": "", "signature": ""}
    reply, chunks = parse(
        [
            message_start(),
            event("content_block_start", index=0, content_block=thinking),
            event(
                "content_block_delta",
                index=0,
                delta={"type": "thinking_delta", "thinking": "27 * 453 = "},
            ),
            event(
                "content_block_delta",
                index=0,
                delta={"type": "thinking_delta", "thinking": "12231"},
            ),
            event(
                "content_block_delta",
                index=0,
                delta={"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"},
            ),
            event("content_block_stop", index=0),
            *text_block(1, "12,231"),
            *ending(),
        ]
    )
    assert reply.reasoning == "27 * 453 = 12231"
    assert reply.content == "12,231"
    assert chunks[4] == ""


SIGNATURE = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxcf1rONUKpbp2hHqIiMJ0Vp5qdoFXXZW2lAzC1Np+ZIWgx"
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5s"
WEATHER = "toolu_01T1x1fJ34qAmk2tNTrN7Up6"


def thinking_block(index: int, *pieces: str, signature: str = SIGNATURE) -> list[Event]:
    """A thinking block as the API streams it: its signature in a signature_delta at its end."""
    block = {"type": "thinking", "thinking": "", "signature": ""}
    return [
        event("content_block_start", index=index, content_block=block),
        *(
            event(
                "content_block_delta", index=index, delta={"type": "thinking_delta", "thinking": p}
            )
            for p in pieces
        ),
        *(
            [
                event(
                    "content_block_delta",
                    index=index,
                    delta={"type": "signature_delta", "signature": signature},
                )
            ]
            if signature
            else []
        ),
        event("content_block_stop", index=index),
    ]


def redacted_block(index: int, data: str = REDACTED) -> list[Event]:
    block = {"type": "redacted_thinking", "data": data}
    return [
        event("content_block_start", index=index, content_block=block),
        event("content_block_stop", index=index),
    ]


def thinking_turn(signature: str = SIGNATURE) -> list[Event]:
    """A turn with extended thinking that calls a tool."""
    return [
        message_start(),
        *thinking_block(0, "The user wants", " the weather.", signature=signature),
        *(redacted_block(1) if signature else []),
        *text_block(2, "Let me check."),
        *tool_block(3, WEATHER, "get_weather", '{"location":', ' "SF"}'),
        *ending("tool_use", 89),
    ]


def sdk_checked(body: dict[str, Any]) -> None:
    """Each message of a request body validated against the anthropic SDK's MessageParam (no
    unknown keys), its content blocks included."""
    adapter = TypeAdapter(MessageParam, config=ConfigDict(extra="forbid"))
    for message in body["messages"]:
        checked = adapter.validate_python(message)
        if not isinstance(checked["content"], str):
            list(checked["content"])  # the blocks are validated as they are read


def test_a_thinking_turn_with_a_tool_call_goes_back_with_its_thinking_blocks_first() -> None:
    reply, chunks = parse(thinking_turn())
    assert reply.reasoning == "The user wants the weather."
    assert reply.content == "Let me check."
    thinking = {
        "type": "thinking",
        "thinking": "The user wants the weather.",
        "signature": SIGNATURE,
    }
    redacted = {"type": "redacted_thinking", "data": REDACTED}
    # Each block is kept once whole: the thinking block at its stop, with nothing before it.
    kept = [c.extra_content for c in chunks if isinstance(c, Chunk) and c.extra_content]
    assert kept == [
        {"anthropic": {"thinking_blocks": [thinking]}},
        {"anthropic": {"thinking_blocks": [thinking, redacted]}},
    ]
    message = reply.to_message()
    assert message["extra_content"] == {"anthropic": {"thinking_blocks": [thinking, redacted]}}
    result = {"role": "tool", "tool_call_id": WEATHER, "content": "Sunny, 18 C"}
    body = build_body(
        [{"role": "user", "content": "Weather in SF?"}, message, result],
        "claude-sonnet-4-5",
        {"thinking": {"type": "enabled", "budget_tokens": 2048}},
    )
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                thinking,
                redacted,
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": WEATHER,
                    "name": "get_weather",
                    "input": {"location": "SF"},
                },
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": WEATHER, "content": "Sunny, 18 C"}],
        },
    ]
    sdk_checked(body)


def test_without_signatures_the_message_and_the_request_are_as_before() -> None:
    reply, chunks = parse(thinking_turn(signature=""))
    assert reply.reasoning == "The user wants the weather."
    assert reply.extra_content is None
    assert all(isinstance(c, str) or c.extra_content is None for c in chunks)
    assert reply.to_message() == {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [
            {
                "id": WEATHER,
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location": "SF"}'},
            }
        ],
    }
    body = build_body([reply.to_message()], "m", {})
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": WEATHER, "name": "get_weather", "input": {"location": "SF"}},
    ]


def test_a_thinking_block_cut_before_its_stop_is_not_kept() -> None:
    reply, _ = parse([message_start(), *thinking_block(0, "Hm")[:-1]])
    assert reply.reasoning == "Hm" and reply.extra_content is None


def test_signature_pieces_join_and_blocks_keep_their_order() -> None:
    events = [
        message_start(),
        *redacted_block(0, "first"),
        *thinking_block(1, "a", signature="sig-")[:-1],
        event("content_block_delta", index=1, delta={"type": "signature_delta", "signature": "2"}),
        event("content_block_stop", index=1),
        *thinking_block(2, "b", signature="other"),
        *ending(),
    ]
    reply, _ = parse(events)
    assert reply.reasoning == "a\n\nb"
    assert reply.extra_content == {
        "anthropic": {
            "thinking_blocks": [
                {"type": "redacted_thinking", "data": "first"},
                {"type": "thinking", "thinking": "a", "signature": "sig-2"},
                {"type": "thinking", "thinking": "b", "signature": "other"},
            ]
        }
    }


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "signature_delta", "signature": 5},
            },
            "delta.signature",
        ),
        (
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "redacted_thinking", "data": []},
            },
            "content_block.data",
        ),
    ],
)
def test_a_signature_or_redacted_data_that_is_no_string_is_named(
    data: dict[str, Any], field: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_one(data, data["type"])
    assert caught.value.field == field


def test_thinking_blocks_of_an_assistant_message_without_tool_calls_go_first() -> None:
    blocks = [{"type": "redacted_thinking", "data": REDACTED}]
    message = {
        "role": "assistant",
        "content": "Hi.",
        "extra_content": {"anthropic": {"thinking_blocks": blocks}},
    }
    body = build_body([message], "m", {})
    assert body["messages"] == [
        {"role": "assistant", "content": [*blocks, {"type": "text", "text": "Hi."}]}
    ]
    sdk_checked(body)
    # Another API's extra content is not Anthropic's: the message goes as before.
    other = {"role": "assistant", "content": "Hi.", "extra_content": {"google": {"x": 1}}}
    body = build_body([other], "m", {})
    assert body["messages"] == [{"role": "assistant", "content": "Hi."}]


@pytest.mark.parametrize("blocks", ["text", [{"type": "text", "text": "x"}], [3]])
def test_thinking_blocks_that_are_no_blocks_are_refused_with_the_fix(blocks: Any) -> None:
    message = {
        "role": "assistant",
        "content": "",
        "extra_content": {"anthropic": {"thinking_blocks": blocks}},
    }
    with pytest.raises(ConfigurationError, match=r"messages\[1\].*Reply.to_message\(\)"):
        build_body([{"role": "user", "content": "q"}, message], "m", {})


def test_thinking_blocks_in_a_row_are_paragraphs_apart() -> None:
    def thinking(index: int, *pieces: str) -> list[Event]:
        block = {"type": "thinking", "thinking": "", "signature": ""}
        return [
            event("content_block_start", index=index, content_block=block),
            *(
                event(
                    "content_block_delta",
                    index=index,
                    delta={"type": "thinking_delta", "thinking": piece},
                )
                for piece in pieces
            ),
            event("content_block_stop", index=index),
        ]

    reply, _ = parse(
        [
            message_start(),
            *thinking(0, "fir", "st"),
            *thinking(1, "", "second"),
            *text_block(2, "answer"),
            *thinking(3, "third"),
            *ending(),
        ]
    )
    assert reply.reasoning == "first\n\nsecond\n\nthird"
    assert reply.content == "answer"


def test_tool_use_blocks_are_assembled_by_block_index() -> None:
    reply, _ = parse(
        [
            message_start(),
            *text_block(0, "Let me check."),
            *tool_block(
                1, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", "", '{"location":', ' "SF"}'
            ),
            *tool_block(2, "toolu_02", "get_time"),  # no arguments at all: its input is {}
            *ending("tool_use", 89),
        ]
    )
    assert reply.finish_reason == "tool_use" and WIRE.end_kind("tool_use") == "completed"
    assert reply.to_message() == {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [
            {
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location": "SF"}'},
            },
            {
                "id": "toolu_02",
                "type": "function",
                "function": {"name": "get_time", "arguments": "{}"},
            },
        ],
    }


def test_a_tool_use_start_with_its_input_takes_it() -> None:
    block = {"type": "tool_use", "id": "t", "name": "f", "input": {"x": "é"}}
    reply, _ = parse(
        [
            event("content_block_start", index=0, content_block=block),
            event("content_block_stop", index=0),
        ]
    )
    assert reply.tool_calls[0].arguments == '{"x": "é"}'


@pytest.mark.parametrize("kind", ["server_tool_use", "mcp_tool_use"])
def test_a_server_tools_input_is_no_tool_call(kind: str) -> None:
    block = {"type": kind, "id": "srvtoolu_1", "name": "web_search", "input": {}}
    reply, chunks = parse(
        [
            event("content_block_start", index=0, content_block=block),
            event(
                "content_block_delta",
                index=0,
                delta={"type": "input_json_delta", "partial_json": '{"query": "x"}'},
            ),
            event("content_block_stop", index=0),
            *text_block(1, "Found."),
        ]
    )
    assert chunks[1] == "" and reply.tool_calls == [] and reply.content == "Found."


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("end_turn", "completed"),
        ("stop_sequence", "completed"),
        ("pause_turn", "completed"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
        (None, "completed"),
    ],
)
def test_stop_reasons_map_to_end_kinds(reason: str | None, kind: str) -> None:
    assert WIRE.end_kind(reason) == kind


def test_an_error_event_is_an_error_with_its_type() -> None:
    data = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    chunk = parse_one(data, "error")
    assert isinstance(chunk, Chunk)
    assert chunk.error == {"message": "Overloaded", "type": "overloaded_error"}


@pytest.mark.parametrize(
    "data",
    [
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta"}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "redacted_thinking"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "some_future_event", "delta": 3},
    ],
)
def test_pings_and_unknown_events_are_ignored(data: dict[str, Any]) -> None:
    assert parse_one(data, data["type"]) == ""


def test_the_event_name_stands_in_for_a_missing_type() -> None:
    text = {"index": 0, "delta": {"type": "text_delta", "text": "x"}}
    assert parse_one(text, "content_block_delta") == "x"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"type": "content_block_delta", "index": 0, "delta": "x"}, "delta"),
        ({"type": "content_block_delta", "delta": {"type": "text_delta", "text": 1}}, "delta.text"),
        (
            {"type": "content_block_delta", "delta": {"type": "thinking_delta", "thinking": []}},
            "delta.thinking",
        ),
        (
            {
                "type": "content_block_delta",
                "index": "1",
                "delta": {"type": "input_json_delta", "partial_json": "{"},
            },
            "index",
        ),
        (
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": 5},
            },
            "delta.partial_json",
        ),
        ({"type": "content_block_start", "index": 0, "content_block": None}, "content_block"),
        (
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "t", "name": 3},
            },
            "content_block.name",
        ),
        (
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": "{}"},
            },
            "content_block.input",
        ),
    ],
)
def test_a_field_of_the_answer_with_a_wrong_type_is_named(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ProtocolError, match="Anthropic Messages format") as caught:
        parse_one(data)
    assert caught.value.field == field


def test_describing_fields_with_wrong_types_are_noted_not_fatal() -> None:
    reply, _ = parse(
        [
            event("message_start", message={"id": 7, "model": ["claude"], "usage": "many"}),
            *text_block(0, "ok"),
            event("message_delta", delta={"stop_reason": {"r": 1}}, usage={"output_tokens": -3}),
            event("message_stop"),
        ]
    )
    assert reply.content == "ok"
    assert reply.model is None and reply.id is None and reply.finish_reason is None
    assert reply.usage is None
    for field in ("message.model", "message.id", "usage", "delta.stop_reason", "output_tokens"):
        assert any(field in note for note in reply.notes), field
    chunk = parse_one({"type": "message_start", "message": "hello"})
    assert isinstance(chunk, Chunk) and chunk.notes and not chunk.error


@pytest.mark.parametrize("data", ["{not json", "[1, 2]", "null"])
def test_data_that_is_no_json_object_is_a_protocol_error(data: str) -> None:
    with pytest.raises(ProtocolError, match="malformed stream"):
        parse_one(data)


def test_lone_surrogates_become_replacement_characters() -> None:
    text = (
        r'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\ud800"}}'
    )
    assert parse_one(text) == "a\ufffd"
    tool = (
        r'{"type":"content_block_delta","index":1,'
        r'"delta":{"type":"input_json_delta","partial_json":"\"\udc00\""}}'
    )
    parse = WIRE.parser()
    block = {"type": "tool_use", "id": "t", "name": "f", "input": {}}
    parse(json.dumps({"type": "content_block_start", "index": 1, "content_block": block}), "")
    chunk = parse(tool, "content_block_delta")
    assert isinstance(chunk, Chunk) and chunk.tool_calls
    assert chunk.tool_calls[0]["function"]["arguments"] == '"\ufffd"'


# -- the request ------------------------------------------------------------------------------


def endpoint(**options: Any) -> Endpoint:
    return Endpoint("https://api.example.test", "test", api="anthropic", **options)


def test_the_request_posts_messages_with_system_pulled_out() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in SF and the time?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "SF"}'},
                },
                {
                    "id": "toolu_b",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_a", "content": "Sunny"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": "noon"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Thanks"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}},
            ],
        },
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather",
                "parameters": {"type": "object"},
            },
        },
        {"name": "native", "input_schema": {"type": "object"}},
    ]
    request = WIRE.request(
        endpoint(api_key="sk-ant-test"),
        "claude-sonnet-4-5",
        messages,
        {"temperature": 0.2, "tools": tools, "tool_choice": "required"},
    )
    assert request.url == "https://api.example.test/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["Accept"] == "text/event-stream"
    assert "Authorization" not in request.headers
    assert request.body == {
        "model": "claude-sonnet-4-5",
        "system": "Be brief.",
        "max_tokens": 4096,
        "messages": [
            {"role": "user", "content": "Weather in SF and the time?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_a",
                        "name": "get_weather",
                        "input": {"location": "SF"},
                    },
                    {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_a", "content": "Sunny"},
                    {"type": "tool_result", "tool_use_id": "toolu_b", "content": "noon"},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Thanks"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                    },
                ],
            },
        ],
        "temperature": 0.2,
        "tools": [
            {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}},
            {"name": "native", "input_schema": {"type": "object"}},
        ],
        "tool_choice": {"type": "any"},
        "stream": True,
    }


def test_max_tokens_and_system_from_params_are_kept() -> None:
    messages = [{"role": "developer", "content": "B"}, {"role": "user", "content": "hi"}]
    body = WIRE.request(endpoint(), "m", messages, {"max_tokens": 100, "system": "A"}).body
    assert body is not None and body["max_tokens"] == 100 and body["system"] == "A\n\nB"
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    blocks = [{"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}}]
    body = WIRE.request(endpoint(), "m", messages, {"system": blocks}).body
    assert body is not None and body["system"] == [*blocks, {"type": "text", "text": "B"}]


def test_tool_call_arguments_that_are_no_object_are_refused_with_the_fix() -> None:
    call = {"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
    messages = [{"role": "assistant", "content": "", "tool_calls": [call]}]
    with pytest.raises(ConfigurationError, match=r"not a JSON object.*Fix"):
        WIRE.request(endpoint(), "m", messages, {})


def test_url_credentials_go_as_basic_auth_when_there_is_no_key() -> None:
    target = Endpoint("https://user:pw@api.example.test", "test", api="anthropic")
    headers = WIRE.request(target, "m", [{"role": "user", "content": "hi"}], {}).headers
    assert headers["Authorization"].startswith("Basic ") and "x-api-key" not in headers


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"messages": []}, "messages= is set by jupyter_stream"),
        ({"stream": False}, "stream= is set by jupyter_stream"),
        ({"max_output_tokens": 100}, "use max_tokens= instead \\(max_tokens=100\\)"),
        ({"max_completion_tokens": 5}, "use max_tokens="),
    ],
)
def test_params_the_format_sets_or_renames_are_refused(params: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigurationError, match=said):
        WIRE.check_params(params)
    WIRE.check_params({"max_tokens": 100, "thinking": {"type": "enabled", "budget_tokens": 1024}})


def test_the_models_list() -> None:
    request = WIRE.models_request(endpoint(api_key="sk-ant-test"))
    assert request.url == "https://api.example.test/v1/models?limit=1000"
    assert request.headers["x-api-key"] == "sk-ant-test" and request.body is None
    with_query = Endpoint("https://h.test/?tenant=a", "test", api="anthropic")
    assert WIRE.models_request(with_query).url == "https://h.test/v1/models?tenant=a&limit=1000"
    body = json.dumps(
        {
            "data": [
                {"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5"},
                {"type": "model", "id": "claude-haiku-4-5", "display_name": "Claude Haiku 4.5"},
            ],
            "has_more": False,
            "first_id": "claude-sonnet-4-5",
            "last_id": "claude-haiku-4-5",
        }
    )
    assert WIRE.parse_models(body, "https://h") == ["claude-haiku-4-5", "claude-sonnet-4-5"]
    with pytest.raises(ProtocolError, match="GET https://h/v1/models"):
        WIRE.parse_models("{}", "https://h")


@pytest.mark.parametrize("base", ["https://h.test/v1", "https://h.test/v1/", "https://h.test"])
def test_a_base_url_with_v1_at_its_end_means_the_host(base: str) -> None:
    target = Endpoint(f"{base}?tenant=a", "test", api="anthropic")
    assert WIRE.request(target, "m", [], {}).url == "https://h.test/v1/messages?tenant=a"
    assert WIRE.models_request(target).url == "https://h.test/v1/models?tenant=a&limit=1000"


def test_messages_for_a_wrong_base_url() -> None:
    said = WIRE.not_found("https://api.anthropic.com/v1", "", "claude", "base_url argument")
    assert "from https://api.anthropic.com/v1/messages" in said and "'claude'" in said
    assert "as the Anthropic SDK takes it (such as https://api.anthropic.com)" in said
    assert "from https://h/v1/messages" in WIRE.not_found("https://h", "", "claude", "x")
    assert WIRE.redirect_base("https://h/v1/messages") == "https://h"
    body = '{"type": "error", "error": {"type": "not_found_error", "message": "model: x"}}'
    assert WIRE.error_said(body) == "model: x"


# -- a whole answer ---------------------------------------------------------------------------


def test_a_whole_message_is_one_chunk() -> None:
    message = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "Hm.", "signature": "x"},
            {"type": "text", "text": "Hello"},
            {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {"a": 1}},
            {"type": "tool_use", "id": "toolu_b", "name": "g", "input": {}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 20},
    }
    chunk = WIRE.parse_whole(json.dumps(message))
    assert chunk is not None
    assert (chunk.content, chunk.reasoning, chunk.finish_reason) == ("Hello", "Hm.", "tool_use")
    assert chunk.tool_calls == [
        {
            "index": 2,
            "id": "toolu_a",
            "type": "function",
            "function": {"name": "f", "arguments": '{"a": 1}'},
        },
        {
            "index": 3,
            "id": "toolu_b",
            "type": "function",
            "function": {"name": "g", "arguments": "{}"},
        },
    ]
    assert chunk.output_tokens == 20 and chunk.model == "claude-sonnet-4-5"
    # The signed thinking block goes back with the message.
    thinking = {"type": "thinking", "thinking": "Hm.", "signature": "x"}
    assert chunk.extra_content == {"anthropic": {"thinking_blocks": [thinking]}}


def test_a_body_that_is_no_message_is_not_taken() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert WIRE.parse_whole(json.dumps(error)) is None
    assert WIRE.parse_whole("not json") is None
    with pytest.raises(ProtocolError) as caught:
        WIRE.parse_whole(json.dumps({"type": "message", "content": [{"type": "text", "text": 1}]}))
    assert caught.value.field == "content[0].text"


# -- through the engine, against a real server ------------------------------------------------


def open_stream(server: ScriptedServer, **options: Any):
    host = harness.host(server)  # the host, as the Anthropic SDK takes it
    return astream_chat(
        "hi", model="claude-sonnet-4-5", base_url=host, api="anthropic", max_retries=0, **options
    )


async def test_a_stream_completes_through_the_engine(server: ScriptedServer) -> None:
    server.handler = scripted(message_start(), *text_block(0, "Hello", ", world"), *ending())
    stream = open_stream(server, api_key="sk-ant-test")
    assert [delta async for delta in stream] == ["Hello", ", world"]
    assert stream.stop_reason is StopReason.COMPLETED and stream.error is None
    assert stream.reply.finish_reason == "end_turn"
    assert stream.reply.usage == {"input_tokens": 25, "output_tokens": 15}
    request = server.requests[-1]
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant-test"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.json() == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4096,
        "stream": True,
    }


async def test_a_thinking_turn_is_continued_through_the_engine(server: ScriptedServer) -> None:
    server.handler = scripted(*thinking_turn())
    stream = open_stream(server)
    assert [delta async for delta in stream] == ["Let me check."]
    message = stream.reply.to_message()
    result = {"role": "tool", "tool_call_id": WEATHER, "content": "Sunny"}
    host = harness.host(server)
    follow = astream_chat(
        [{"role": "user", "content": "hi"}, message, result],
        model="claude-sonnet-4-5",
        base_url=host,
        api="anthropic",
        max_retries=0,
    )
    assert [delta async for delta in follow] == ["Let me check."]
    sent = server.requests[-1].json()["messages"]
    assert [block["type"] for block in sent[1]["content"]] == [
        "thinking",
        "redacted_thinking",
        "text",
        "tool_use",
    ]
    assert sent[1]["content"][0]["signature"] == SIGNATURE
    assert sent[2]["content"][0]["tool_use_id"] == WEATHER
    sdk_checked({"messages": sent})


async def test_max_tokens_ends_with_length(server: ScriptedServer) -> None:
    server.handler = scripted(message_start(), *text_block(0, "cut"), *ending("max_tokens"))
    stream = open_stream(server, max_tokens=3)
    assert [delta async for delta in stream] == ["cut"]
    assert stream.stop_reason is StopReason.LENGTH
    assert server.requests[-1].json()["max_tokens"] == 3


async def test_close_mid_stream_ends_it_with_no_delta_after(server: ScriptedServer) -> None:
    server.handler = scripted(message_start(), *text_block(0, "a", "b", "c")[:-1], then_stall=True)
    stream = open_stream(server)
    assert await close_after_first(stream) == ["a"]
    assert stream.stop_reason is StopReason.STOPPED and stream.error is None
    assert await left(server.requests[-1])
    await stream.aclose()


async def test_a_stream_cut_after_message_delta_is_truncated(server: ScriptedServer) -> None:
    server.handler = scripted(message_start(), *text_block(0, "half"), *ending()[:-1])
    stream = open_stream(server)
    with pytest.raises(TruncatedStreamError, match="neither message_stop"):
        [delta async for delta in stream]
    assert stream.text == "half" and stream.stop_reason is StopReason.ERROR


async def test_an_overloaded_error_mid_stream_is_an_api_error_with_the_reply_kept(
    server: ScriptedServer,
) -> None:
    overloaded = event("error", error={"type": "overloaded_error", "message": "Overloaded"})
    server.handler = scripted(message_start(), *text_block(0, "part")[:-1], overloaded)
    stream = open_stream(server)
    with pytest.raises(APIError, match="Overloaded") as caught:
        [delta async for delta in stream]
    assert caught.value.type == "overloaded_error"
    assert caught.value.reply is not None and caught.value.reply.content == "part"


async def test_a_whole_unstreamed_message_is_taken(server: ScriptedServer) -> None:
    message = {
        "type": "message",
        "content": [{"type": "text", "text": "Whole"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }

    async def whole(request: Request, response: Response) -> None:
        await response.whole(200, json.dumps(message))

    server.handler = whole
    stream = open_stream(server)
    assert "".join([delta async for delta in stream]) == "Whole"
    assert stream.stop_reason is StopReason.COMPLETED


# -- the hot path: a text delta of the API's own shape, recognised without a full parse -----------

HEAD = '{{"type":"content_block_delta","index":{index},"delta":'
CANONICAL = HEAD + '{{"type":"text_delta","text":{text}}}}}'
SHAPES = (
    CANONICAL,
    '{{"index":{index},"type":"content_block_delta","delta":{{"type":"text_delta","text":{text}}}}}',
    HEAD + '{{"text":{text},"type":"text_delta"}}}}',
    HEAD + '{{"type":"text_delta","text":{text},"x":1}}}}',
    HEAD + '{{"type":"text_delta","text":{text}}},"x":[]}}',
    HEAD + '{{"type":"text_delta","text":{text},"text":"b"}}}}',
    HEAD + '{{"type":"thinking_delta","text":{text}}}}}',
    HEAD + '{{"type": "text_delta", "text": {text}}}}}',
    CANONICAL.replace(",", ", "),
    CANONICAL + " ",
    CANONICAL + "x",
    CANONICAL[:-2],
    " " + CANONICAL,
)
INDICES = ("0", "7", "10", "123", "007", "00", "-1", "1.5", "1e2", '"0"', " 0", "", "null",
           "9" * 18, "9" * 19, "1" * 5000)  # fmt: skip


EVENT = "content_block_delta"


def generated_events(count: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    events = []
    for _ in range(count):
        text = random_literal(rng)
        index = rng.choice(INDICES) if rng.random() < 0.5 else str(rng.randrange(12))
        events.append(rng.choice(SHAPES).format(index=index, text=text))
    return events


def test_the_hot_path_and_the_full_parse_agree_on_generated_events() -> None:
    texts = 0
    for data in generated_events(4000, seed=16):
        fast = outcome(WIRE.parser(), data, EVENT)
        assert fast == outcome(WIRE.parser().parse_whole_event, data, EVENT), data
        if fast[0] == "value" and isinstance(fast[1], str):
            fast[1].encode()  # never a lone surrogate: UTF-8 can carry it
            texts += 1
    assert texts > 1000  # the comparison covered the text deltas, not only the errors


@pytest.mark.parametrize(
    ("literal", "text"),
    [
        ('" tok"', " tok"),
        ('"日本😀"', "日本😀"),
        ('"\\"q\\" \\\\ \\n \\/ \\u00e9"', '"q" \\ \n / é'),
        ('"a\\ud800b"', "a\ufffdb"),
        ('"\\uDFFF"', "\ufffd"),
        ('"\\ud83d\\ude00"', "😀"),
        ('"\\\\ud800"', "\\ud800"),
        ('""', ""),
    ],
)
@pytest.mark.parametrize("index", ["0", "3", "10", "4096"])
def test_a_text_delta_of_the_apis_shape_is_read_without_a_full_parse(
    monkeypatch: pytest.MonkeyPatch, literal: str, text: str, index: str
) -> None:
    from jupyter_stream._wire import anthropic

    def no_full_parse(data: str) -> Any:
        raise AssertionError(f"parsed whole: {data}")

    monkeypatch.setattr(anthropic, "load_object", no_full_parse)
    data = CANONICAL.format(index=index, text=literal)
    assert WIRE.parser()(data, "content_block_delta") == text


@pytest.mark.parametrize("text", NOT_STRINGS)
def test_a_text_that_is_no_string_is_still_named_on_the_hot_paths_shape(text: str) -> None:
    with pytest.raises(ProtocolError, match=r"delta\.text") as caught:
        WIRE.parser()(CANONICAL.format(index=0, text=text), "content_block_delta")
    assert caught.value.field == "delta.text"


@pytest.mark.parametrize("literal", ['"a\tb"', '"a\\xb"', '"a\\u12"', '"a'])
def test_a_bad_literal_on_the_hot_paths_shape_is_a_protocol_error(literal: str) -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        WIRE.parser()(CANONICAL.format(index=0, text=literal), "content_block_delta")


def test_a_text_delta_for_a_block_not_started_as_text_is_text_on_both_paths() -> None:
    parse = WIRE.parser()
    start = {"type": "content_block_start", "index": 1, "content_block": {"type": "thinking"}}
    parse(json.dumps(start), "content_block_start")
    data = CANONICAL.format(index=1, text='"x"')
    assert parse(data, "content_block_delta") == "x"
    assert parse.parse_whole_event(data, "content_block_delta") == "x"
