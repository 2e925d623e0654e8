"""The Ollama wire format (``api="ollama"``): its request, its NDJSON lines (checked against the
ollama SDK's own types), its errors and model list; then the real engine against a scripted
server speaking it."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import ollama
import pytest
import wire_harness as harness
from ollama._types import ChatRequest
from scripted_server import Request, Response, ScriptedServer
from wire_harness import close_after_first, deltas, host, left, sending

from jupyter_stream import (
    APIError,
    ChatStream,
    ProtocolError,
    StopReason,
    TruncatedStreamError,
    astream_chat,
    list_models,
)
from jupyter_stream._exceptions import ConfigurationError
from jupyter_stream._reply import Chunk
from jupyter_stream._target import Endpoint
from jupyter_stream._wire import DECODERS, FORMATS
from jupyter_stream._wire import ollama as wire_module

WIRE = wire_module.WIRE
MODEL = "llama3.2"
NDJSON = "application/x-ndjson"


def line(content: str = "", done: bool = False, **message: Any) -> dict[str, Any]:
    """One line of /api/chat, as Ollama streams it."""
    obj: dict[str, Any] = {
        "model": MODEL,
        "created_at": "2025-06-01T12:00:00.000000Z",
        "message": {"role": "assistant", "content": content, **message},
        "done": done,
    }
    return obj


def last(content: str = "", reason: str | None = "stop", **message: Any) -> dict[str, Any]:
    obj = line(content, True, **message)
    if reason is not None:
        obj["done_reason"] = reason
    return obj | {
        "total_duration": 4883583458,
        "load_duration": 1334875,
        "prompt_eval_count": 26,
        "prompt_eval_duration": 342546000,
        "eval_count": 282,
        "eval_duration": 4535599000,
    }


def sdk(obj: dict[str, Any]) -> ollama.ChatResponse:
    """The official SDK's reading of the same line: the fixtures are real shapes."""
    return ollama.ChatResponse.model_validate(obj)


parse_all = partial(harness.parse_all, WIRE)
folded = partial(harness.folded, WIRE)


def endpoint(base_url: str = "http://localhost:11434", **kw: Any) -> Endpoint:
    return Endpoint(base_url, "base_url argument", api="ollama", **kw)


def sdk_reads(body: dict[str, Any] | None) -> None:
    """The SDK's own request type reads the body and drops nothing (it ignores unknown fields:
    a field it would drop is one Ollama does not know)."""
    assert body is not None
    read = ChatRequest.model_validate(body).model_dump(exclude_none=True, by_alias=True)
    assert read == body


# --- the request -----------------------------------------------------------------------------


def test_it_is_registered_with_its_framing() -> None:
    assert FORMATS["ollama"] is WIRE and DECODERS[WIRE.framing].__name__ == "NDJSONDecoder"
    assert (WIRE.root, WIRE.default_base_url, WIRE.key_vars, WIRE.hosts) == (
        "",
        "http://localhost:11434",
        (),
        (),
    )


def test_request_url_headers_and_body() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    params = {"max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": "END", "seed": 7}
    WIRE.check_params(params)
    request = WIRE.request(endpoint(), MODEL, messages, params)
    assert request.url == "http://localhost:11434/api/chat"
    assert request.headers == {"Accept": NDJSON}
    assert request.body == {
        "model": MODEL,
        "messages": messages,
        "options": {
            "num_predict": 50,
            "temperature": 0.2,
            "top_p": 0.9,
            "stop": ["END"],
            "seed": 7,
        },
        "stream": True,
    }
    sdk_reads(request.body)


def test_a_key_given_anyway_goes_as_bearer() -> None:
    """Ollama's cloud (ollama.com) takes a Bearer key; a local server ignores it."""
    request = WIRE.request(endpoint("https://ollama.com", api_key="sekrit"), MODEL, [], {})
    assert request.headers["Authorization"] == "Bearer sekrit"
    assert "sekrit" not in repr(request)


def test_native_fields_and_options() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    params = {
        "think": "high",
        "format": "json",
        "keep_alive": "5m",
        "tools": tools,
        "options": {"num_ctx": 8192, "temperature": 1.0},
        "temperature": 0.3,  # the named option wins over the dict
        "num_gpu": 1,
    }
    WIRE.check_params(params)
    body = WIRE.request(endpoint(), MODEL, [{"role": "user", "content": "x"}], params).body
    assert body is not None
    assert body["options"] == {"num_ctx": 8192, "temperature": 0.3, "num_gpu": 1}
    assert (body["think"], body["format"], body["keep_alive"]) == ("high", "json", "5m")
    assert body["tools"] == tools
    sdk_reads(body)


def test_tool_calls_results_and_images_in_ollamas_shape() -> None:
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is it?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"c":1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "3 degrees"},
        {"role": "developer", "content": "be nice"},
    ]
    body = WIRE.request(endpoint(), MODEL, messages, {}).body
    assert body is not None
    assert body["messages"] == [
        {"role": "user", "content": "what is it?", "images": ["iVBORw0KGgo="]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "w", "arguments": {"c": 1}}}],
        },
        {"role": "tool", "content": "3 degrees", "tool_name": "w"},
        {"role": "system", "content": "be nice"},
    ]
    sdk_reads(body)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"stream": False}, "set by jupyter_stream"),
        ({"n": 2}, "n= is not an option Ollama's /api/chat takes"),
        ({"options": "fast"}, "must be a dict"),
    ],
)
def test_check_params_refuses(params: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        WIRE.check_params(params)


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ({"role": "user", "content": [{"type": "input_audio"}]}, "input_audio"),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": "https://x/i.png"}]},
            "data: URL",
        ),
        ({"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}, "function name"),
        (
            {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}]},
            "JSON object",
        ),
    ],
)
def test_messages_it_cannot_send_are_configuration_errors(
    message: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        WIRE.request(endpoint(), MODEL, [message], {})


# --- parsing ---------------------------------------------------------------------------------


def test_text_alone_comes_as_a_str() -> None:
    obj = line("Hel")
    assert parse_all(obj, line("lo wörld")) == ["Hel", "lo wörld"]
    assert sdk(obj).message.content == "Hel"


def test_the_done_line_is_the_end_and_carries_reason_and_counts() -> None:
    obj = last("!")
    (chunk,) = parse_all(obj)
    assert isinstance(chunk, Chunk) and chunk.done
    assert (chunk.content, chunk.finish_reason, chunk.output_tokens, chunk.model) == (
        "!",
        "stop",
        282,
        MODEL,
    )
    assert chunk.usage == {key: obj[key] for key in wire_module._COUNTS}
    assert chunk.notes == ()
    assert sdk(obj).done_reason == "stop" and sdk(obj).eval_count == 282


def test_only_the_done_line_gives_a_finish_reason() -> None:
    """A stray done_reason before the end must not make a cut stream look finished."""
    reply = folded(
        line("x") | {"done_reason": "stop", "eval_count": 3},
        line("y", thinking="z") | {"done_reason": "stop", "eval_count": 3},
    )
    assert reply.content == "xy" and reply.reasoning == "z"
    assert reply.finish_reason is None and reply.usage is None and reply.output_tokens is None


@pytest.mark.parametrize(
    ("reason", "kind"),
    [("stop", "completed"), ("length", "length"), ("load", "completed"), (None, "completed")],
)
def test_done_reasons(reason: str | None, kind: str) -> None:
    (chunk,) = parse_all(last(reason=reason))
    assert isinstance(chunk, Chunk) and chunk.finish_reason == reason
    assert WIRE.end_kind(chunk.finish_reason) == kind


def test_thinking_is_reasoning_and_tool_calls_are_indexed_per_stream() -> None:
    think = line(thinking="Let me see")
    calls = line(
        tool_calls=[
            {"function": {"name": "get_weather", "arguments": {"city": "Zürich"}}},
            {"id": "call_2", "function": {"index": 1, "name": "get_time", "arguments": {}}},
        ]
    )
    more = last(tool_calls=[{"function": {"name": "get_news"}}])
    assert sdk(think).message.thinking == "Let me see"
    assert sdk(calls).message.tool_calls[0].function.arguments == {"city": "Zürich"}  # type: ignore[index]
    reply = folded(think, line("Sure"), calls, more)
    assert reply.reasoning == "Let me see" and reply.content == "Sure"
    assert [(c.index, c.id, c.name, json.loads(c.arguments)) for c in reply.tool_calls] == [
        (0, "", "get_weather", {"city": "Zürich"}),
        (1, "call_2", "get_time", {}),
        (2, "", "get_news", {}),
    ]
    assert reply.finish_reason == "stop" and reply.output_tokens == 282
    (again,) = parse_all(calls)  # a new stream counts from zero again
    assert isinstance(again, Chunk) and again.tool_calls and again.tool_calls[0]["index"] == 0


def test_an_error_line() -> None:
    (chunk,) = parse_all({"error": "an error was encountered while running the model"})
    assert isinstance(chunk, Chunk)
    assert chunk.error == {"message": "an error was encountered while running the model"}
    (odd,) = parse_all({"error": {"detail": 5}})
    assert isinstance(odd, Chunk) and odd.error and '"detail": 5' in odd.error["message"]


def test_lone_surrogates_become_replacement_characters() -> None:
    plain = '{"message":{"role":"assistant","content":"a\\ud800b"},"done":false}'
    think = '{"message":{"role":"assistant","content":"","thinking":"\\udfffx"},"done":false}'
    call = (
        '{"message":{"role":"assistant","content":"","tool_calls":'
        '[{"function":{"name":"f\\ud800","arguments":{"\\udc00":1}}}]},"done":false}'
    )
    plain_out, think_out, call_out = parse_all(plain, think, call)
    assert plain_out == "a\ufffdb"
    assert isinstance(think_out, Chunk) and think_out.reasoning == "\ufffdx"
    assert isinstance(call_out, Chunk) and call_out.tool_calls
    assert call_out.tool_calls[0]["function"] == {"name": "f\ufffd", "arguments": '{"\ufffd": 1}'}


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"message": "hi", "done": False}, "message"),
        ({"message": {"content": 5}, "done": False}, "message.content"),
        ({"message": {"content": "", "thinking": ["x"]}, "done": False}, "message.thinking"),
        ({"message": {"content": "x"}, "done": "true"}, "done"),
        ({"message": {"tool_calls": {"f": 1}}, "done": False}, "message.tool_calls"),
        ({"message": {"tool_calls": [5]}, "done": False}, "message.tool_calls[0]"),
        (
            {"message": {"tool_calls": [{"name": "f"}]}, "done": False},
            "message.tool_calls[0].function",
        ),
        (
            {
                "message": {"tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
                "done": False,
            },
            "message.tool_calls[0].function.arguments",
        ),
        (
            {"message": {"tool_calls": [{"function": {"name": 3}}]}, "done": False},
            "message.tool_calls[0].function.name",
        ),
    ],
)
def test_a_bad_value_that_carries_the_answer_is_a_protocol_error(
    obj: dict[str, Any], field: str
) -> None:
    with pytest.raises(ProtocolError, match="the Ollama format has") as caught:
        parse_all(obj)
    assert caught.value.field == field


def test_bad_descriptions_are_ignored_and_noted() -> None:
    obj = last("ok") | {"model": {"x": 1}, "eval_count": -5, "done_reason": 7}
    (chunk,) = parse_all(obj)
    assert isinstance(chunk, Chunk) and chunk.done and chunk.content == "ok"
    assert chunk.model is None and chunk.finish_reason is None and chunk.output_tokens is None
    assert chunk.usage is not None and "eval_count" not in chunk.usage
    notes = " ".join(chunk.notes)
    assert "model" in notes and "eval_count" in notes and "done_reason" in notes


@pytest.mark.parametrize("data", ["not json", "[1, 2]", '"text"', "{" * 100_000])
def test_a_line_that_is_no_object_is_a_protocol_error(data: str) -> None:
    with pytest.raises(ProtocolError, match="malformed stream"):
        parse_all(data)


# --- whole answers, errors, models -----------------------------------------------------------


def test_parse_whole_takes_a_whole_answer() -> None:
    chunk = WIRE.parse_whole(json.dumps(last("Hello", reason="length", thinking="hm")))
    assert chunk is not None and not chunk.done
    assert (chunk.content, chunk.reasoning, chunk.finish_reason) == ("Hello", "hm", "length")
    assert chunk.output_tokens == 282


@pytest.mark.parametrize("body", ["{}", "[]", '{"error": "no"}', "<html>", '{"models": []}'])
def test_parse_whole_refuses_what_is_no_answer(body: str) -> None:
    assert WIRE.parse_whole(body) is None


def test_error_said_not_found_and_redirect() -> None:
    said = WIRE.error_said('{"error": "model \\"llama9\\" not found, try pulling it first"}')
    assert said == 'model "llama9" not found, try pulling it first'
    message = WIRE.not_found("http://h:11434/api", "", MODEL, "base_url argument")
    assert "http://h:11434/api/api/chat" in message and "without /api" in message
    assert "ollama pull llama3.2" in message
    assert WIRE.redirect_base("http://new:11434/api/chat") == "http://new:11434"


def test_models() -> None:
    request = WIRE.models_request(endpoint())
    assert request.url == "http://localhost:11434/api/tags" and request.body is None
    tags = {
        "models": [
            {"name": "qwen3:8b", "model": "qwen3:8b", "size": 5, "digest": "d", "details": {}},
            {"model": "llama3.2:latest"},
            {"name": "evil\ud800"},
        ]
    }
    assert ollama.ListResponse.model_validate(tags).models[0].model == "qwen3:8b"
    assert WIRE.parse_models(json.dumps(tags), "http://h") == [
        "evil\ufffd",
        "llama3.2:latest",
        "qwen3:8b",
    ]
    with pytest.raises(ProtocolError, match="did not answer with a model list"):
        WIRE.parse_models('{"data": []}', "http://h")
    with pytest.raises(ProtocolError, match=r"models\[0\].name"):
        WIRE.parse_models('{"models": [{"size": 1}]}', "http://h")


# --- the real engine against a scripted server -----------------------------------------------


def ndjson(obj: dict[str, Any]) -> str:
    return json.dumps(obj) + "\n"


def open_stream(server: ScriptedServer, **options: Any) -> ChatStream:
    return astream_chat(
        "hi", model=MODEL, base_url=host(server), api="ollama", max_retries=0, **options
    )


async def test_a_whole_answer_streams_through_the_engine(server: ScriptedServer) -> None:
    body = "".join(ndjson(line(token)) for token in ["Hel", "lo", " wörld"])
    call = {"function": {"name": "f", "arguments": {"x": 1}}}
    server.handler = sending(
        ndjson(line(thinking="Thinking…")),
        body[:40],  # lines and characters cut across reads
        body[40:],
        ndjson(line(tool_calls=[call])),
        ndjson(last("!")),
        content_type=NDJSON,
    )
    stream = open_stream(server, temperature=0.1, think=True)
    received = [delta async for delta in deltas(stream)]
    assert "".join(received) == "Hello wörld!" and stream.stop_reason is StopReason.COMPLETED
    assert stream.reply.reasoning == "Thinking…"
    assert stream.reply.finish_reason == "stop" and stream.reply.output_tokens == 282
    assert stream.reply.model == MODEL
    assert [call.name for call in stream.reply.tool_calls] == ["f"]
    request = server.requests[-1]
    assert request.path == "/api/chat" and "authorization" not in request.headers
    assert request.json() == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "think": True,
        "options": {"temperature": 0.1},
        "stream": True,
    }


async def test_done_with_length_ends_with_length(server: ScriptedServer) -> None:
    server.handler = sending(
        ndjson(line("cut")) + ndjson(last(" sh", reason="length")),
        content_type=NDJSON,
        then_stall=True,  # no end of the body: the done line is the end
    )
    stream = open_stream(server)
    assert [delta async for delta in deltas(stream)] == ["cut", " sh"]
    assert stream.stop_reason is StopReason.LENGTH


async def test_close_mid_stream_stops_at_once(server: ScriptedServer) -> None:
    lines = (ndjson(line(token)) for token in "abc")
    server.handler = sending(*lines, content_type=NDJSON, then_stall=True)
    stream = open_stream(server)
    received = await close_after_first(stream)
    assert received == ["a"]  # b and c may have arrived; none is delivered after close()
    assert stream.stop_reason is StopReason.STOPPED and stream.error is None
    request = server.requests[-1]
    assert await left(request), "the server never saw it"
    assert not request.finished


async def test_no_done_line_is_truncated(server: ScriptedServer) -> None:
    server.handler = sending(ndjson(line("cut")), content_type=NDJSON)
    stream = open_stream(server)
    with pytest.raises(TruncatedStreamError, match='neither "done": true nor a finish reason'):
        [delta async for delta in deltas(stream)]
    assert stream.text == "cut" and stream.error is not None and stream.error.reply is stream.reply


async def test_an_error_line_is_an_api_error_with_the_partial_kept(server: ScriptedServer) -> None:
    error = {"error": "model runner has unexpectedly stopped"}
    server.handler = sending(
        ndjson(line("par")) + ndjson(line("tial")), ndjson(error), content_type=NDJSON
    )
    stream = open_stream(server)
    received = []
    with pytest.raises(APIError, match="unexpectedly stopped") as caught:
        async for delta in deltas(stream):
            received.append(delta)
    assert received == ["par", "tial"] and stream.text == "partial"
    assert caught.value.reply is not None and caught.value.reply.content == "partial"
    assert stream.stop_reason is StopReason.ERROR


async def test_a_whole_json_answer(server: ScriptedServer) -> None:
    async def handler(request: Request, response: Response) -> None:
        await response.whole(200, json.dumps(last("Hello")))

    server.handler = handler
    stream = open_stream(server)
    assert [delta async for delta in deltas(stream)] == ["Hello"]
    assert stream.stop_reason is StopReason.COMPLETED


def test_list_models(server: ScriptedServer) -> None:
    async def handler(request: Request, response: Response) -> None:
        tags = {"models": [{"name": "qwen3:8b", "model": "qwen3:8b"}, {"name": "gemma3:1b"}]}
        await response.whole(200, json.dumps(tags))

    server.handler = handler
    assert list_models(base_url=host(server), api="ollama") == ["gemma3:1b", "qwen3:8b"]
    assert server.requests[-1].path == "/api/tags" and server.requests[-1].method == "GET"


@pytest.mark.parametrize("content_type", ["application/jsonl", "application/json"])
async def test_lines_under_a_json_content_type_still_stream(
    server: ScriptedServer, content_type: str
) -> None:
    """A relay or proxy may label NDJSON application/jsonl or application/json: still a line
    each, delivered as it comes."""

    server.handler = sending(
        ndjson(line("Hel")) + ndjson(line("lo")), ndjson(last("")), content_type=content_type
    )
    stream = open_stream(server)
    assert [delta async for delta in deltas(stream)] == ["Hel", "lo"]
    assert stream.stop_reason is StopReason.COMPLETED
