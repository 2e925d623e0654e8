"""The OpenAI Responses wire format (api="responses"): its parser on event sequences shaped as
the API sends them (openai.types.responses), its request, its whole answer, and streams through
the real engine against a scripted server on 127.0.0.1."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
import wire_harness as harness
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

WIRE = wire_format("responses")


def event(kind: str, **fields: Any) -> Event:
    return kind, {"type": kind, "sequence_number": 0, **fields}


def response_object(status: str = "in_progress", **fields: Any) -> dict[str, Any]:
    return {
        "id": "resp_67ccd2bed1ec8190b14f964abc054267",
        "object": "response",
        "created_at": 1741476542,
        "status": status,
        "model": "gpt-4.1-2025-04-14",
        "output": [],
        "error": None,
        "incomplete_details": None,
        "usage": None,
        **fields,
    }


USAGE = {
    "input_tokens": 37,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 11,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 48,
}


def text_events(*pieces: str) -> list[Event]:
    """A message item streamed in ``pieces``, between response.created and the item's end."""
    item = {"id": "msg_1", "type": "message", "status": "in_progress", "role": "assistant"}
    part = {"type": "output_text", "text": "", "annotations": []}
    at = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
    return [
        event("response.created", response=response_object()),
        event("response.in_progress", response=response_object()),
        event("response.output_item.added", output_index=0, item={**item, "content": []}),
        event("response.content_part.added", part=part, **at),
        *(event("response.output_text.delta", delta=piece, logprobs=[], **at) for piece in pieces),
        event("response.output_text.done", text="".join(pieces), logprobs=[], **at),
        event("response.content_part.done", part={**part, "text": "".join(pieces)}, **at),
    ]


def completed(**fields: Any) -> Event:
    return event("response.completed", response=response_object("completed", usage=USAGE, **fields))


parse = partial(parse_events, WIRE)
parse_one = partial(harness.parse_one, WIRE)


# -- the parser -------------------------------------------------------------------------------


def test_text_streams_as_plain_strings_and_the_end_mark_carries_finish_and_usage() -> None:
    reply, chunks = parse([*text_events("Hel", "lo", " wörld"), completed()])
    assert reply.content == "Hello wörld"
    assert [chunk for chunk in chunks if type(chunk) is str and chunk] == ["Hel", "lo", " wörld"]
    assert reply.model == "gpt-4.1-2025-04-14"
    assert reply.id == "resp_67ccd2bed1ec8190b14f964abc054267"
    assert reply.finish_reason == "completed" and WIRE.end_kind("completed") == "completed"
    assert reply.usage == USAGE and reply.output_tokens == 11
    end = chunks[-1]
    assert isinstance(end, Chunk) and end.done
    # A stream cut before the end mark must have no finish reason (the engine calls it cut).
    assert all(isinstance(chunk, str) or chunk.finish_reason is None for chunk in chunks[:-1])


def test_reasoning_is_kept_apart_and_summary_parts_are_paragraphs() -> None:
    at = {"item_id": "rs_1", "output_index": 0}
    reply, _ = parse(
        [
            event("response.output_item.added", output_index=0, item={"type": "reasoning"}),
            event("response.reasoning_summary_text.delta", summary_index=0, delta="First", **at),
            event("response.reasoning_summary_text.delta", summary_index=0, delta=" part", **at),
            event("response.reasoning_summary_text.delta", summary_index=1, delta="Second", **at),
            *text_events("42"),
            completed(),
        ]
    )
    assert reply.reasoning == "First part\n\nSecond"
    assert reply.content == "42"


def test_raw_reasoning_text_is_reasoning() -> None:
    chunk = parse_one(
        event(
            "response.reasoning_text.delta",
            item_id="rs",
            output_index=0,
            content_index=0,
            delta="hmm",
        )[1]
    )
    assert chunk == Chunk(reasoning="hmm")


def test_function_calls_are_assembled_by_output_index() -> None:
    def call(index: int, call_id: str, name: str, arguments: str) -> list[Event]:
        item = {"id": f"fc_{index}", "type": "function_call", "status": "in_progress"}
        item |= {"call_id": call_id, "name": name, "arguments": ""}
        pieces = [arguments[:5], arguments[5:]]
        at = {"item_id": f"fc_{index}", "output_index": index}
        return [
            event("response.output_item.added", output_index=index, item=item),
            *(event("response.function_call_arguments.delta", delta=p, **at) for p in pieces),
            event("response.function_call_arguments.done", arguments=arguments, **at),
            event(
                "response.output_item.done",
                output_index=index,
                item={**item, "arguments": arguments, "status": "completed"},
            ),
        ]

    reply, _ = parse(
        [
            *text_events("Checking."),
            *call(1, "call_a", "get_weather", '{"city":"Paris"}'),
            *call(2, "call_b", "get_time", '{"tz":"CET"}'),
            completed(),
        ]
    )
    assert reply.to_message() == {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            },
            {
                "id": "call_b",
                "type": "function",
                "function": {"name": "get_time", "arguments": '{"tz":"CET"}'},
            },
        ],
    }


def test_a_call_whose_arguments_never_streamed_takes_them_from_its_item() -> None:
    item = {"type": "function_call", "call_id": "call_a", "name": "f", "arguments": ""}
    whole = {**item, "arguments": '{"x":1}'}
    reply, _ = parse(
        [
            event("response.output_item.added", output_index=0, item=item),
            event("response.output_item.done", output_index=0, item=whole),
            event("response.output_item.done", output_index=1, item={**whole, "call_id": "b"}),
            completed(),
        ]
    )
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        ("call_a", "f", '{"x":1}'),
        ("b", "f", '{"x":1}'),  # never announced: all of it from its done event
    ]


@pytest.mark.parametrize(
    ("reason", "kind"),
    [("max_output_tokens", "length"), ("content_filter", "content_filter"), (None, "length")],
)
def test_an_incomplete_response_ends_with_its_reason(reason: str | None, kind: str) -> None:
    details = {"reason": reason} if reason else None
    incomplete = response_object("incomplete", incomplete_details=details, usage=USAGE)
    reply, chunks = parse([*text_events("cut"), event("response.incomplete", response=incomplete)])
    end = chunks[-1]
    assert isinstance(end, Chunk) and end.done
    assert reply.finish_reason == (reason or "incomplete")
    assert WIRE.end_kind(reply.finish_reason) == kind
    assert reply.output_tokens == 11


def test_a_completed_event_whose_response_is_incomplete_ends_with_its_reason() -> None:
    details = {"reason": "max_output_tokens"}
    incomplete = response_object("incomplete", incomplete_details=details)
    reply, _ = parse([*text_events("cut"), event("response.completed", response=incomplete)])
    assert reply.finish_reason == "max_output_tokens"


def test_a_failed_response_is_an_error_with_its_code() -> None:
    failed = response_object(
        "failed", error={"code": "server_error", "message": "The model had a problem."}
    )
    chunk = parse_one(event("response.failed", response=failed)[1])
    assert isinstance(chunk, Chunk)
    assert chunk.error == {"message": "The model had a problem.", "code": "server_error"}
    bare = parse_one(event("response.failed", response=response_object("failed"))[1])
    assert isinstance(bare, Chunk) and bare.error and "did not say why" in bare.error["message"]


def test_an_error_event_is_an_error() -> None:
    data = {"type": "error", "code": "rate_limit_exceeded", "message": "Slow down", "param": None}
    chunk = parse_one(data, "error")
    assert isinstance(chunk, Chunk)
    assert chunk.error == {"message": "Slow down", "code": "rate_limit_exceeded"}
    nested = {"type": "error", "error": {"type": "server_error", "message": "Boom"}}
    chunk = parse_one(nested, "error")
    assert isinstance(chunk, Chunk) and chunk.error == {"message": "Boom", "type": "server_error"}


@pytest.mark.parametrize(
    "data",
    [
        {"type": "ping"},
        {"type": "response.queued", "response": {}},
        {"type": "response.output_text.annotation.added", "annotation": {}},
        {"type": "response.web_search_call.searching", "output_index": 0},
        {"type": "response.some_future_event", "delta": 3},
        "[DONE]",
    ],
)
def test_pings_and_unknown_events_are_ignored(data: dict[str, Any] | str) -> None:
    assert parse_one(data, data["type"] if isinstance(data, dict) else "message") == ""


def test_the_event_name_stands_in_for_a_missing_type() -> None:
    assert parse_one({"delta": "x", "output_index": 0}, "response.output_text.delta") == "x"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"type": "response.output_text.delta", "delta": 7}, "delta"),
        ({"type": "response.reasoning_summary_text.delta", "delta": ["x"]}, "delta"),
        ({"type": "response.output_item.added", "output_index": 0, "item": "call"}, "item"),
        (
            {
                "type": "response.output_item.added",
                "output_index": "1",
                "item": {"type": "function_call", "name": "f"},
            },
            "output_index",
        ),
        (
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": {"type": "function_call", "name": {"n": 1}},
            },
            "item.name",
        ),
        (
            {"type": "response.function_call_arguments.delta", "output_index": 0, "delta": {}},
            "delta",
        ),
    ],
)
def test_a_field_of_the_answer_with_a_wrong_type_is_named(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ProtocolError, match="Responses format") as caught:
        parse_one(data)
    assert caught.value.field == field


def test_describing_fields_with_wrong_types_are_noted_not_fatal() -> None:
    reply, _ = parse(
        [
            event("response.created", response=response_object(model=42, id=["x"])),
            *text_events("ok"),
            event("response.completed", response=response_object("completed", usage="lots")),
        ]
    )
    assert reply.content == "ok" and reply.finish_reason == "completed"
    assert reply.model == "gpt-4.1-2025-04-14"  # from response.in_progress, which has it right
    assert reply.usage is None
    assert any("response.model" in note for note in reply.notes)
    assert any("usage" in note for note in reply.notes)
    chunk = parse_one({"type": "response.completed", "response": "done"})
    assert isinstance(chunk, Chunk) and chunk.done and chunk.notes


@pytest.mark.parametrize("data", ["{not json", "[1, 2]", '"text"'])
def test_data_that_is_no_json_object_is_a_protocol_error(data: str) -> None:
    with pytest.raises(ProtocolError, match="malformed stream"):
        parse_one(data)


def test_lone_surrogates_become_replacement_characters() -> None:
    text = r'{"type":"response.output_text.delta","delta":"a\ud800b"}'
    assert parse_one(text) == "a\ufffdb"
    reasoning = r'{"type":"response.reasoning_text.delta","delta":"\udfffx","output_index":0}'
    chunk = parse_one(reasoning)
    assert isinstance(chunk, Chunk) and chunk.reasoning == "\ufffdx"
    created = r'{"type":"response.created","response":{"model":"m\ud800"}}'
    chunk = parse_one(created)
    assert isinstance(chunk, Chunk) and chunk.model == "m\ufffd"


def test_a_parser_keeps_its_state_to_itself() -> None:
    item = {"type": "function_call", "call_id": "c", "name": "f", "arguments": ""}
    first = WIRE.parser()
    first(json.dumps(event("response.output_item.added", output_index=0, item=item)[1]), "m")
    first(
        json.dumps(event("response.function_call_arguments.delta", output_index=0, delta="{}")[1]),
        "m",
    )
    # A second stream's parser has seen nothing: the done event brings the whole call.
    done = event("response.output_item.done", output_index=0, item={**item, "arguments": "{}"})
    chunk = WIRE.parser()(json.dumps(done[1]), "m")
    assert isinstance(chunk, Chunk) and chunk.tool_calls
    assert chunk.tool_calls[0]["function"] == {"arguments": "{}", "name": "f"}


# -- the request ------------------------------------------------------------------------------


def endpoint(**options: Any) -> Endpoint:
    return Endpoint("https://api.example.test/v1", "test", api="responses", **options)


def test_the_request_posts_input_items_with_system_messages_as_instructions() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "Sunny"},
        {"role": "system", "content": "Answer in French."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And?"},
                {"type": "image_url", "image_url": {"url": "data:x"}},
            ],
        },
    ]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    request = WIRE.request(
        endpoint(api_key="sk-test"),
        "gpt-4.1",
        messages,
        {"temperature": 0.2, "tools": tools, "tool_choice": "auto"},
    )
    assert request.url == "https://api.example.test/v1/responses"
    assert request.headers["Authorization"] == "Bearer sk-test"
    assert request.headers["Accept"] == "text/event-stream"
    assert request.body == {
        "model": "gpt-4.1",
        "instructions": "Be brief.\n\nAnswer in French.",
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "function_call",
                "call_id": "call_a",
                "name": "get_weather",
                "arguments": '{"city":"Paris"}',
            },
            {"type": "function_call_output", "call_id": "call_a", "output": "Sunny"},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "And?"},
                    {"type": "input_image", "image_url": "data:x"},
                ],
            },
        ],
        "temperature": 0.2,
        "tools": [{"type": "function", "name": "get_weather", "parameters": {}}],
        "tool_choice": "auto",
        "stream": True,
    }


def test_instructions_from_params_come_first() -> None:
    messages = [{"role": "system", "content": "B"}, {"role": "user", "content": "hi"}]
    body = WIRE.request(endpoint(), "m", messages, {"instructions": "A"}).body
    assert body is not None and body["instructions"] == "A\n\nB"
    body = WIRE.request(endpoint(), "m", messages[1:], {"instructions": "A"}).body
    assert body is not None and body["instructions"] == "A"


def test_url_credentials_go_as_basic_auth() -> None:
    target = Endpoint("https://user:pw@api.example.test/v1", "test", api="responses")
    assert (
        WIRE.request(target, "m", [{"role": "user", "content": "hi"}], {})
        .headers["Authorization"]
        .startswith("Basic ")
    )


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"input": "x"}, "input= is set by jupyter_stream"),
        ({"stream": False}, "stream= is set by jupyter_stream"),
        ({"max_tokens": 100, "max_output_tokens": 5}, "set the same limit"),
        ({"max_completion_tokens": 5, "max_tokens": 5}, "pass one of them"),
    ],
)
def test_params_the_format_sets_or_doubles_are_refused(params: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigurationError, match=said):
        WIRE.check_params(params)
    WIRE.check_params({"max_output_tokens": 100, "reasoning": {"effort": "low"}})


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens", "max_output_tokens"])
def test_max_tokens_is_sent_as_max_output_tokens(name: str) -> None:
    target = Endpoint("http://127.0.0.1:9/v1", "test")
    WIRE.check_params({name: 7})
    body = WIRE.request(target, "m", [{"role": "user", "content": "hi"}], {name: 7}).body
    assert body is not None and body["max_output_tokens"] == 7
    assert "max_tokens" not in body and "max_completion_tokens" not in body


def test_the_models_list_is_the_openai_one() -> None:
    request = WIRE.models_request(endpoint(api_key="sk-test"))
    assert request.url == "https://api.example.test/v1/models" and request.body is None
    body = json.dumps({"object": "list", "data": [{"id": "gpt-4.1"}, {"id": "gpt-4o"}]})
    assert WIRE.parse_models(body, "https://api.example.test/v1") == ["gpt-4.1", "gpt-4o"]


def test_messages_for_a_wrong_base_url() -> None:
    said = WIRE.not_found("http://h/v1", "", "gpt-4.1", "base_url argument")
    assert "/v1/responses" in said and "api='chat'" in said and "'gpt-4.1'" in said
    assert WIRE.redirect_base("https://h/v1/responses") == "https://h/v1"
    body = '{"error": {"message": "No such model", "type": "invalid_request_error"}}'
    assert WIRE.error_said(body) == "No such model"


# -- a whole answer ---------------------------------------------------------------------------


def test_a_whole_response_is_one_chunk() -> None:
    output = [
        {"type": "reasoning", "id": "rs", "summary": [{"type": "summary_text", "text": "Hm."}]},
        {
            "type": "message",
            "id": "msg",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello", "annotations": []}],
        },
        {"type": "function_call", "call_id": "call_a", "name": "f", "arguments": "{}"},
    ]
    body = json.dumps(response_object("completed", output=output, usage=USAGE))
    chunk = WIRE.parse_whole(body)
    assert chunk is not None
    assert (chunk.content, chunk.reasoning, chunk.finish_reason) == ("Hello", "Hm.", "completed")
    assert chunk.tool_calls == [
        {
            "index": 2,
            "id": "call_a",
            "type": "function",
            "function": {"name": "f", "arguments": "{}"},
        }
    ]
    assert chunk.usage == USAGE and chunk.output_tokens == 11
    incomplete = response_object(
        "incomplete", output=output[1:2], incomplete_details={"reason": "max_output_tokens"}
    )
    chunk = WIRE.parse_whole(json.dumps(incomplete))
    assert chunk is not None and WIRE.end_kind(chunk.finish_reason) == "length"


def test_a_whole_failed_response_is_an_api_error() -> None:
    failed = response_object("failed", error={"code": "server_error", "message": "Oops"})
    with pytest.raises(APIError, match="Oops") as caught:
        WIRE.parse_whole(json.dumps(failed))
    assert caught.value.code == "server_error"


def test_a_body_that_is_no_response_is_not_taken() -> None:
    assert WIRE.parse_whole('{"error": {"message": "x"}}') is None
    assert WIRE.parse_whole("not json") is None
    with pytest.raises(ProtocolError) as caught:
        WIRE.parse_whole(json.dumps(response_object("completed", output="Hello")))
    assert caught.value.field == "output"


# -- through the engine, against a real server ------------------------------------------------


def open_stream(server: ScriptedServer, **options: Any):
    return astream_chat(
        "hi", model="gpt-4.1", base_url=server.url, api="responses", max_retries=0, **options
    )


async def test_a_stream_completes_through_the_engine(server: ScriptedServer) -> None:
    server.handler = scripted(*text_events("Hello", ", world"), completed())
    stream = open_stream(server, max_output_tokens=50)
    assert [delta async for delta in stream] == ["Hello", ", world"]
    assert stream.stop_reason is StopReason.COMPLETED and stream.error is None
    assert stream.reply.usage == USAGE and stream.stats.tokens == 11
    request = server.requests[-1]
    assert request.path == "/v1/responses"
    assert request.json() == {
        "model": "gpt-4.1",
        "input": [{"role": "user", "content": "hi"}],
        "max_output_tokens": 50,
        "stream": True,
    }


async def test_an_incomplete_response_ends_with_length(server: ScriptedServer) -> None:
    details = {"reason": "max_output_tokens"}
    incomplete = response_object("incomplete", incomplete_details=details)
    server.handler = scripted(
        *text_events("cut"), event("response.incomplete", response=incomplete)
    )
    stream = open_stream(server)
    assert [delta async for delta in stream] == ["cut"]
    assert stream.stop_reason is StopReason.LENGTH


async def test_close_mid_stream_ends_it_with_no_delta_after(server: ScriptedServer) -> None:
    server.handler = scripted(*text_events("a", "b", "c"), then_stall=True)
    stream = open_stream(server)
    assert await close_after_first(stream) == ["a"]
    assert stream.stop_reason is StopReason.STOPPED and stream.error is None
    assert await left(server.requests[-1])
    await stream.aclose()


async def test_a_stream_without_its_end_mark_is_truncated(server: ScriptedServer) -> None:
    server.handler = scripted(*text_events("half"))
    stream = open_stream(server)
    with pytest.raises(TruncatedStreamError, match=r"neither response\.completed"):
        [delta async for delta in stream]
    assert stream.text == "half" and stream.stop_reason is StopReason.ERROR


async def test_a_mid_stream_error_is_an_api_error_with_the_reply_kept(
    server: ScriptedServer,
) -> None:
    failed = response_object("failed", error={"code": "server_error", "message": "Overloaded"})
    server.handler = scripted(*text_events("part"), event("response.failed", response=failed))
    stream = open_stream(server)
    with pytest.raises(APIError, match="Overloaded") as caught:
        [delta async for delta in stream]
    assert caught.value.code == "server_error"
    assert caught.value.reply is not None and caught.value.reply.content == "part"


async def test_a_whole_unstreamed_response_is_taken(server: ScriptedServer) -> None:
    output = [{"type": "message", "content": [{"type": "output_text", "text": "Whole"}]}]
    body = json.dumps(response_object("completed", output=output, usage=USAGE))

    async def whole(request: Request, response: Response) -> None:
        await response.whole(200, body)

    server.handler = whole
    stream = open_stream(server)
    assert "".join([delta async for delta in stream]) == "Whole"
    assert stream.stop_reason is StopReason.COMPLETED


# -- the hot path: a text delta of OpenAI's own shape, recognised without a full parse ------------

HEAD = '{{"type":"response.output_text.delta","sequence_number":{seq},"item_id":{item}'
WHERE = ',"output_index":{index},"content_index":{index}'
CANONICAL = HEAD + WHERE + ',"delta":{text},"logprobs":[]}}'
SHAPES = (
    CANONICAL,
    HEAD + WHERE + ',"delta":{text}}}',
    HEAD + WHERE + ',"delta":{text},"logprobs":[],"obfuscation":"aB3x"}}',
    HEAD + WHERE + ',"delta":{text},"obfuscation":{item}}}',
    HEAD + WHERE + ',"delta":{text},"logprobs":[{{"token":"a"}}]}}',
    HEAD + WHERE + ',"delta":{text},"logprobs":[],"x":1}}',
    HEAD + WHERE + ',"delta":{text},"delta":"b"}}',
    HEAD + WHERE + ',"delta":{text},"type":"error"}}',
    HEAD + ',"content_index":{index},"output_index":{index},"delta":{text}}}',
    '{{"sequence_number":{seq},"type":"response.output_text.delta","delta":{text}}}',
    HEAD.replace("output_text", "refusal") + WHERE + ',"delta":{text}}}',
    CANONICAL.replace(",", ", "),
    CANONICAL + " ",
    CANONICAL + "x",
    CANONICAL[:-2],
    " " + CANONICAL,
)
NUMBERS = ("0", "7", "10", "4096", "007", "00", "-1", "1.5", "1e2", '"0"', " 0", "", "null",
           "9" * 18, "9" * 19, "1" * 5000)  # fmt: skip
ITEMS = ('"msg_b"', '""', '"m\\u00e9"', '"m\\ud800"', '"日本"', '"a\tb"', "5", "null")


EVENT = "response.output_text.delta"


def generated_events(count: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    events = []
    for _ in range(count):
        text = random_literal(rng)
        odd = rng.random() < 0.3
        fields = {
            "seq": rng.choice(NUMBERS) if odd else str(rng.randrange(100_000)),
            "item": rng.choice(ITEMS) if odd else '"msg_b"',
            "index": rng.choice(NUMBERS) if odd else str(rng.randrange(3)),
        }
        events.append(rng.choice(SHAPES).format(text=text, **fields))
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
@pytest.mark.parametrize(
    "tail", ["}", ',"logprobs":[]}', ',"logprobs":[],"obfuscation":"aB3x"}', ',"obfuscation":""}']
)
def test_a_text_delta_of_openais_shape_is_read_without_a_full_parse(
    monkeypatch: pytest.MonkeyPatch, literal: str, text: str, tail: str
) -> None:
    from jupyter_stream._wire import responses

    def no_full_parse(data: str) -> Any:
        raise AssertionError(f"parsed whole: {data}")

    monkeypatch.setattr(responses, "load_object", no_full_parse)
    head = HEAD.format(seq=12, item='"msg_0c5b"') + WHERE.format(index=1)
    data = head + ',"delta":' + literal + tail
    assert WIRE.parser()(data, "response.output_text.delta") == text


@pytest.mark.parametrize("text", NOT_STRINGS)
def test_a_delta_that_is_no_string_is_still_named_on_the_hot_paths_shape(text: str) -> None:
    data = CANONICAL.format(seq=4, item='"msg_b"', index=0, text=text)
    with pytest.raises(ProtocolError, match="delta") as caught:
        WIRE.parser()(data, "response.output_text.delta")
    assert caught.value.field == "delta"


@pytest.mark.parametrize("literal", ['"a\tb"', '"a\\xb"', '"a\\u12"', '"a'])
def test_a_bad_literal_on_the_hot_paths_shape_is_a_protocol_error(literal: str) -> None:
    data = CANONICAL.format(seq=4, item='"msg_b"', index=0, text=literal)
    with pytest.raises(ProtocolError, match="not JSON"):
        WIRE.parser()(data, "response.output_text.delta")
