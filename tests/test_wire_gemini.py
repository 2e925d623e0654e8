"""The Gemini wire format (``api="gemini"``): its request, its responses (checked against the
google-genai SDK's own types), its errors and model list; then the real engine against a
scripted server speaking it."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
import wire_harness as harness
from google.genai import types
from scripted_server import Request, Response, ScriptedServer
from wire_harness import close_after_first, deltas, host, left, sending

from jupyter_stream import (
    APIError,
    ProtocolError,
    StopReason,
    TruncatedStreamError,
    astream_chat,
    list_models,
)
from jupyter_stream._exceptions import ConfigurationError
from jupyter_stream._reply import Chunk
from jupyter_stream._target import Endpoint
from jupyter_stream._wire import DECODERS, FORMATS, gemini

WIRE = gemini.WIRE
MODEL = "gemini-2.5-flash"


def response(
    *parts: dict[str, Any], finish: str | None = None, usage: bool = False, **extra: Any
) -> dict[str, Any]:
    """A GenerateContentResponse, as the API streams it."""
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    obj: dict[str, Any] = {"candidates": [candidate], "modelVersion": MODEL, "responseId": "r-1"}
    obj["usageMetadata"] = {"promptTokenCount": 7, "totalTokenCount": 7}
    if usage:
        obj["usageMetadata"] = {
            "promptTokenCount": 7,
            "candidatesTokenCount": 5,
            "thoughtsTokenCount": 12,
            "totalTokenCount": 24,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 7}],
        }
    return obj | extra


def text(value: str, **more: Any) -> dict[str, Any]:
    return {"text": value, **more}


parse_all = partial(harness.parse_all, WIRE)
folded = partial(harness.folded, WIRE)


def sdk(obj: dict[str, Any]) -> types.GenerateContentResponse:
    """The official SDK's reading of the same response: the fixtures are real shapes."""
    return types.GenerateContentResponse.model_validate(obj)


def sdk_reads(body: dict[str, Any] | None) -> None:
    """Every field of a request body read by the SDK's own types, which refuse unknown fields:
    the names are Gemini's."""
    assert body is not None
    for content in body["contents"]:
        types.Content.model_validate(content)
    if "systemInstruction" in body:
        types.Content.model_validate(body["systemInstruction"])
    if "generationConfig" in body:
        types.GenerationConfig.model_validate(body["generationConfig"])
    for tool in body.get("tools", ()):
        types.Tool.model_validate(tool)
    for setting in body.get("safetySettings", ()):
        types.SafetySetting.model_validate(setting)


# --- the request -----------------------------------------------------------------------------


def endpoint(base_url: str = "https://generativelanguage.googleapis.com", **kw: Any) -> Endpoint:
    return Endpoint(base_url, "base_url argument", api="gemini", **kw)


def test_it_is_registered_with_its_framing() -> None:
    assert FORMATS["gemini"] is WIRE and WIRE.framing in DECODERS
    assert WIRE.root == "" and WIRE.default_base_url == "https://generativelanguage.googleapis.com"
    assert WIRE.key_vars == ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    assert WIRE.hosts == ("generativelanguage.googleapis.com",)


def test_request_url_headers_and_body() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello!"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "and"}, {"type": "text", "text": "?"}],
        },
    ]
    params = {"max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": "END"}
    request = WIRE.request(endpoint(api_key="sekrit"), MODEL, messages, params)
    assert request.url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash"
        ":streamGenerateContent?alt=sse"
    )
    assert request.headers == {"Accept": "text/event-stream", "x-goog-api-key": "sekrit"}
    assert "sekrit" not in repr(request)
    assert request.body == {
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"text": "Hello!"}]},
            {"role": "user", "parts": [{"text": "and"}, {"text": "?"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {
            "maxOutputTokens": 50,
            "temperature": 0.2,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
    }
    sdk_reads(request.body)


@pytest.mark.parametrize(
    ("base_url", "model", "expected"),
    [
        ("https://h.example", "models/gemini-x", "https://h.example/v1beta/models/gemini-x"),
        ("https://h.example/v1beta", "gemini-x", "https://h.example/v1beta/models/gemini-x"),
        ("https://h.example/proxy/", "gemini-x", "https://h.example/proxy/v1beta/models/gemini-x"),
        ("https://h.example", "tunedModels/my-1", "https://h.example/v1beta/tunedModels/my-1"),
        ("https://h.example", "a/../b?c&d", "https://h.example/v1beta/models/a%2F..%2Fb%3Fc%26d"),
        (
            "https://h.example/v1beta/models/gemini-y:streamGenerateContent",
            "gemini-x",
            "https://h.example/v1beta/models/gemini-x",
        ),
    ],
)
def test_request_paths(base_url: str, model: str, expected: str) -> None:
    request = WIRE.request(endpoint(base_url), model, [{"role": "user", "content": "x"}], {})
    assert request.url == expected + ":streamGenerateContent?alt=sse"


def test_alt_sse_is_merged_into_the_base_urls_query() -> None:
    base = "https://h.example?key=abc&alt=json"
    request = WIRE.request(endpoint(base), "g", [{"role": "user", "content": "x"}], {})
    assert request.url == "https://h.example/v1beta/models/g:streamGenerateContent?key=abc&alt=sse"
    assert "abc" not in repr(request)


def test_url_credentials_go_as_basic_when_there_is_no_key() -> None:
    request = WIRE.request(
        endpoint("https://u:p@h.example"), "g", [{"role": "user", "content": "x"}], {}
    )
    assert request.headers["Authorization"].startswith("Basic ")
    assert "x-goog-api-key" not in request.headers


def test_thinking_tools_and_native_fields() -> None:
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"googleSearch": {}},
    ]
    params = {
        "include_thoughts": True,
        "thinking_budget": 1024,
        "tools": tools,
        "generationConfig": {"responseMimeType": "text/plain", "temperature": 1.0},
        "temperature": 0.5,  # the named option wins over the dict
        "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}],
    }
    WIRE.check_params(params)
    body = WIRE.request(endpoint(), "g", [{"role": "user", "content": "x"}], params).body
    assert body is not None
    assert body["generationConfig"] == {
        "responseMimeType": "text/plain",
        "temperature": 0.5,
        "thinkingConfig": {"includeThoughts": True, "thinkingBudget": 1024},
    }
    assert body["tools"] == [
        {"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object"}}]},
        {"googleSearch": {}},
    ]
    assert body["safetySettings"] == params["safetySettings"]
    sdk_reads(body)


def test_tool_calls_and_results_go_back_as_function_parts() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "w", "arguments": '{"c":"Oslo"}'},
                },
                {"id": "", "type": "function", "function": {"name": "t", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 3}'},
        {"role": "tool", "name": "t", "content": "12:00"},
    ]
    body = WIRE.request(endpoint(), "g", messages, {}).body
    assert body is not None
    assert body["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "w", "args": {"c": "Oslo"}, "id": "c1"}},
                {"functionCall": {"name": "t", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "w", "response": {"temp": 3}, "id": "c1"}},
                {"functionResponse": {"name": "t", "response": {"result": "12:00"}}},
            ],
        },
    ]
    sdk_reads(body)


def test_image_parts_go_inline_from_data_urls() -> None:
    content = [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]
    body = WIRE.request(endpoint(), "g", [{"role": "user", "content": content}], {}).body
    assert body is not None
    assert body["contents"][0]["parts"] == [
        {"text": "what is it?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
    ]
    sdk_reads(body)


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([{"role": "system", "content": "s"}], "no user message"),
        ([{"role": "critic", "content": "x"}], "role 'critic'"),
        ([{"role": "tool", "tool_call_id": "nope", "content": "1"}], "tool_call_id"),
        (
            [
                {
                    "role": "assistant",
                    "tool_calls": [{"function": {"name": "f", "arguments": "[1]"}}],
                }
            ],
            "not a JSON object",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x/i.png"}}],
                }
            ],
            "data: URLs",
        ),
    ],
)
def test_messages_it_cannot_send_are_configuration_errors(
    messages: list[dict[str, Any]], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        WIRE.request(endpoint(), "g", messages, {})


def test_thinking_level_and_a_json_schema() -> None:
    params = {"thinking_level": "low", "response_json_schema": {"type": "object"}}
    WIRE.check_params(params)
    body = WIRE.request(endpoint(), "g", [{"role": "user", "content": "x"}], params).body
    assert body is not None
    assert body["generationConfig"] == {
        "responseJsonSchema": {"type": "object"},
        "thinkingConfig": {"thinkingLevel": "low"},
    }
    sdk_reads(body)


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"contents": []}, "set by jupyter_stream"),
        ({"logprobs": True}, "logprobs= is not an option the Gemini API takes"),
        ({"systemInstruction": {}}, "system message"),
        ({"generationConfig": {"candidateCount": 2}}, "candidateCount"),
        ({"generationConfig": "hot"}, "must be a dict"),
    ],
)
def test_check_params_refuses(params: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        WIRE.check_params(params)


def test_an_empty_model_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="model"):
        WIRE.request(endpoint(), "models/ ", [{"role": "user", "content": "x"}], {})


# --- parsing ---------------------------------------------------------------------------------


def test_text_alone_comes_as_a_str() -> None:
    obj = response(text("Hel"))
    assert parse_all(obj) == ["Hel"]
    assert sdk(obj).text == "Hel"


def test_the_response_with_a_finish_reason_is_the_end_and_carries_its_fields() -> None:
    obj = response(text("lo!"), finish="STOP", usage=True)
    (chunk,) = parse_all(obj)
    assert isinstance(chunk, Chunk) and chunk.done
    assert (chunk.content, chunk.finish_reason, chunk.output_tokens) == ("lo!", "STOP", 5)
    assert chunk.model == MODEL and chunk.id == "r-1"
    assert chunk.usage == {
        "promptTokenCount": 7,
        "candidatesTokenCount": 5,
        "thoughtsTokenCount": 12,
        "totalTokenCount": 24,
    }
    assert chunk.notes == ()  # the per-modality details are expected: no note
    assert sdk(obj).candidates[0].finish_reason == types.FinishReason.STOP  # type: ignore[index]


def test_thoughts_are_reasoning_and_function_calls_are_tool_calls() -> None:
    first = response(text("Let me think", thought=True), text("Sure"))
    calls = response(
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Zürich"}},
            "thoughtSignature": "c2ln",
        },
        {"functionCall": {"id": "fc-2", "name": "get_time", "args": {}}},
    )
    more = response({"functionCall": {"name": "get_news"}}, finish="STOP", usage=True)
    assert [p.thought for p in sdk(first).candidates[0].content.parts] == [True, None]  # type: ignore[index, union-attr]
    assert sdk(calls).function_calls[0].args == {"city": "Zürich"}  # type: ignore[index]
    reply = folded(first, calls, more)
    assert reply.reasoning == "Let me think" and reply.content == "Sure"
    assert [(c.index, c.id, c.name, json.loads(c.arguments)) for c in reply.tool_calls] == [
        (0, "call_0", "get_weather", {"city": "Zürich"}),
        (1, "fc-2", "get_time", {}),
        (2, "call_2", "get_news", {}),
    ]
    assert reply.to_message()["tool_calls"][0]["type"] == "function"


def test_calls_without_an_id_get_one_that_their_results_go_back_with() -> None:
    calls = response(
        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
        {"functionCall": {"name": "get_time", "args": {}}},
        finish="STOP",
    )
    assistant = folded(calls).to_message()
    ids = [call["id"] for call in assistant["tool_calls"]]
    assert len(set(ids)) == 2 and all(ids)
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "weather and time?"},
        assistant,
        {"role": "tool", "tool_call_id": ids[1], "content": "12:00"},
        {"role": "tool", "tool_call_id": ids[0], "content": '{"temp": 3}'},
    ]
    body = WIRE.request(endpoint(), "g", messages, {}).body
    assert body is not None
    results = [part["functionResponse"] for part in body["contents"][2]["parts"]]
    assert [(r["name"], r["response"]) for r in results] == [
        ("get_time", {"result": "12:00"}),
        ("get_weather", {"temp": 3}),
    ]
    sdk_reads(body)


def test_a_calls_thought_signature_goes_back_with_it() -> None:
    calls = response(
        {"functionCall": {"name": "get_weather", "args": {}}, "thoughtSignature": "c2ln"},
        {"functionCall": {"name": "get_time", "args": {}}},
        finish="STOP",
    )
    assistant = folded(calls).to_message()
    google = {"google": {"thought_signature": "c2ln"}}  # as Gemini's OpenAI-compatible API
    assert [call.get("extra_content") for call in assistant["tool_calls"]] == [google, None]
    messages = [{"role": "user", "content": "weather and time?"}, assistant]
    body = WIRE.request(endpoint(), "g", messages, {}).body
    assert body is not None
    assert body["contents"][1]["parts"] == [
        {
            "functionCall": {"name": "get_weather", "args": {}, "id": "call_0"},
            "thoughtSignature": "c2ln",
        },
        {"functionCall": {"name": "get_time", "args": {}, "id": "call_1"}},
    ]
    sdk_reads(body)


def test_each_stream_counts_its_tool_calls_from_zero() -> None:
    call = response({"functionCall": {"name": "f", "args": {}}})
    for _ in range(2):
        (chunk,) = parse_all(call)
        assert isinstance(chunk, Chunk) and chunk.tool_calls
        assert chunk.tool_calls[0]["index"] == 0


@pytest.mark.parametrize(
    ("finish", "kind"),
    [
        ("STOP", "completed"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "completed"),
        ("UNEXPECTED_TOOL_CALL", "completed"),
        ("TOO_MANY_TOOL_CALLS", "completed"),
        ("OTHER", "completed"),
        (None, "completed"),
    ],
)
def test_finish_reasons(finish: str | None, kind: str) -> None:
    assert WIRE.end_kind(finish) == kind


def test_a_blocked_prompt_ends_with_content_filter() -> None:
    obj = {"promptFeedback": {"blockReason": "OTHER"}, "usageMetadata": {"promptTokenCount": 4}}
    (chunk,) = parse_all(obj)
    assert isinstance(chunk, Chunk) and chunk.done and chunk.content == ""
    assert WIRE.end_kind(chunk.finish_reason) == "content_filter"
    assert sdk(obj).prompt_feedback.block_reason == types.BlockedReason.OTHER  # type: ignore[union-attr]


def test_a_safety_stop_without_content() -> None:
    obj = {"candidates": [{"finishReason": "SAFETY", "safetyRatings": []}]}
    (chunk,) = parse_all(obj)
    assert isinstance(chunk, Chunk) and chunk.done and chunk.finish_reason == "SAFETY"


def test_a_mid_stream_error() -> None:
    obj = {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}
    (chunk,) = parse_all(obj)
    assert isinstance(chunk, Chunk)
    assert chunk.error == {
        "message": "Resource exhausted",
        "code": "429",
        "type": "RESOURCE_EXHAUSTED",
    }
    (bare,) = parse_all({"error": "overloaded"})
    assert isinstance(bare, Chunk) and bare.error == {"message": "overloaded"}


def test_lone_surrogates_become_replacement_characters() -> None:
    plain = '{"candidates":[{"content":{"parts":[{"text":"a\\ud800b"}]}}]}'
    full = '{"candidates":[{"content":{"parts":[{"text":"\\udfffx","thought":true}]}}]}'
    call = (
        '{"candidates":[{"content":{"parts":[{"functionCall":'
        '{"name":"f\\ud800","args":{"\\udc00":1}}}]}}]}'
    )
    plain_out, full_out, call_out = parse_all(plain, full, call)
    assert plain_out == "a\ufffdb"
    assert isinstance(full_out, Chunk) and full_out.reasoning == "\ufffdx"
    assert isinstance(call_out, Chunk) and call_out.tool_calls
    assert call_out.tool_calls[0]["function"] == {"name": "f\ufffd", "arguments": '{"\ufffd": 1}'}
    for out in (plain_out, full_out.reasoning, json.dumps(call_out.tool_calls)):
        out.encode()  # UTF-8 can carry it


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ({"candidates": {"0": {}}}, "candidates"),
        ({"candidates": ["x"]}, "candidates[0]"),
        ({"candidates": [{"content": []}]}, "candidates[0].content"),
        ({"candidates": [{"content": {"parts": "hi"}}]}, "candidates[0].content.parts"),
        ({"candidates": [{"content": {"parts": [7]}}]}, "candidates[0].content.parts[0]"),
        (
            {"candidates": [{"content": {"parts": [{"text": 7}]}}]},
            "candidates[0].content.parts[0].text",
        ),
        (
            {"candidates": [{"content": {"parts": [{"text": "x", "thought": "yes"}]}}]},
            "candidates[0].content.parts[0].thought",
        ),
        (
            {
                "candidates": [
                    {"content": {"parts": [{"functionCall": {"name": "f", "args": [1]}}]}}
                ]
            },
            "candidates[0].content.parts[0].functionCall.args",
        ),
        (
            {"candidates": [{"content": {"parts": [{"functionCall": {"args": {}}}]}}]},
            "candidates[0].content.parts[0].functionCall.name",
        ),
    ],
)
def test_a_bad_value_that_carries_the_answer_is_a_protocol_error(
    obj: dict[str, Any], field: str
) -> None:
    with pytest.raises(ProtocolError, match="the Gemini format has") as caught:
        parse_all(obj)
    assert caught.value.field == field


def test_bad_descriptions_are_ignored_and_noted() -> None:
    obj = response(text("ok"), finish="STOP", modelVersion=["x"], responseId=5)
    obj["usageMetadata"] = {"promptTokenCount": -1, "candidatesTokenCount": 2}
    obj["candidates"][0]["content"]["parts"].append({"executableCode": {"code": "print(1)"}})
    (chunk,) = parse_all(obj)
    assert isinstance(chunk, Chunk) and chunk.content == "ok" and chunk.done
    assert chunk.model is None and chunk.id is None
    assert chunk.usage == {"candidatesTokenCount": 2} and chunk.output_tokens == 2
    assert any("modelVersion" in note for note in chunk.notes)
    assert any("usageMetadata" not in note and "promptTokenCount" in note for note in chunk.notes)
    assert any("executableCode" in note for note in chunk.notes)


@pytest.mark.parametrize("data", ["not json", "[1, 2]", '"text"', "{" * 100_000])
def test_data_that_is_no_response_is_a_protocol_error(data: str) -> None:
    with pytest.raises(ProtocolError, match="malformed stream"):
        parse_all(data)


# --- whole answers, errors, models -----------------------------------------------------------


def test_parse_whole_takes_a_response_or_the_array_of_them() -> None:
    single = response(text("Hi"), finish="STOP", usage=True)
    chunk = WIRE.parse_whole(json.dumps(single))
    assert chunk is not None and not chunk.done
    assert (chunk.content, chunk.finish_reason, chunk.output_tokens) == ("Hi", "STOP", 5)
    array = [
        response(text("think", thought=True)),
        response(text("Hel")),
        response(
            text("lo"),
            {"functionCall": {"name": "f", "args": {"a": 1}}},
            finish="MAX_TOKENS",
            usage=True,
        ),
    ]
    chunk = WIRE.parse_whole(json.dumps(array))
    assert chunk is not None
    assert (chunk.content, chunk.reasoning, chunk.finish_reason) == ("Hello", "think", "MAX_TOKENS")
    assert chunk.tool_calls and chunk.tool_calls[0]["function"]["arguments"] == '{"a": 1}'
    assert chunk.model == MODEL and chunk.usage and chunk.usage["totalTokenCount"] == 24


@pytest.mark.parametrize(
    "body", ["{}", "[]", "[1]", '{"error": {"message": "no"}}', "<html>", '{"models": []}']
)
def test_parse_whole_refuses_what_is_no_answer(body: str) -> None:
    assert WIRE.parse_whole(body) is None


def test_error_said_reads_googles_error_bodies() -> None:
    error = {"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}
    assert WIRE.error_said(json.dumps(error)) == "API key not valid."
    assert WIRE.error_said(json.dumps([error])) == "API key not valid."
    assert WIRE.error_said("[oops") == "[oops"


def test_not_found_and_redirect_name_the_host() -> None:
    message = WIRE.not_found("https://h.example", "", "models/gemini-x", "base_url argument")
    assert "https://h.example/v1beta/models/gemini-x:streamGenerateContent" in message
    assert "host" in message and "'models/gemini-x'" in message
    assert WIRE.redirect_base("https://new.example/v1beta/models/g:streamGenerateContent") == (
        "https://new.example"
    )


def test_models() -> None:
    request = WIRE.models_request(endpoint("https://h.example?key=k", api_key="sekrit"))
    assert request.url == "https://h.example/v1beta/models?key=k&pageSize=1000"
    assert request.body is None and request.headers["x-goog-api-key"] == "sekrit"
    body = {
        "models": [
            {"name": "models/gemini-2.5-flash", "supportedGenerationMethods": ["generateContent"]},
            {"name": "models/text-embedding-004", "supportedGenerationMethods": ["embedContent"]},
            {"name": "models/gemini-\ud800x"},
            {"name": "models/aqa"},
        ],
        "nextPageToken": "",
    }
    ids = WIRE.parse_models(json.dumps(body), "https://h.example")
    assert ids == ["aqa", "gemini-2.5-flash", "gemini-\ufffdx"]
    with pytest.raises(ProtocolError, match="did not answer with a model list"):
        WIRE.parse_models('{"data": []}', "https://h.example")
    with pytest.raises(ProtocolError, match=r"models\[0\].name"):
        WIRE.parse_models('{"models": [{"name": "models/"}]}', "https://h.example")


# --- the real engine against a scripted server -----------------------------------------------


def sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj)}\r\n\r\n"  # the API's own line ends


def open_stream(server: ScriptedServer, **options: Any) -> Any:
    return astream_chat(
        "hi", model=MODEL, base_url=host(server), api="gemini", max_retries=0, **options
    )


async def test_a_whole_answer_streams_through_the_engine(server: ScriptedServer) -> None:
    call = {"functionCall": {"name": "f", "args": {"x": 1}}}
    server.handler = sending(
        sse(response(text("Thinking…", thought=True))),
        *(sse(response(text(token))) for token in ["Hel", "lo", " wörld"]),
        sse(response(text("!"), call, finish="STOP", usage=True)),
        content_type="text/event-stream",
    )
    stream = open_stream(server, api_key="sekrit", temperature=0.1)
    deltas = [delta async for delta in stream]
    assert "".join(deltas) == "Hello wörld!" and stream.stop_reason is StopReason.COMPLETED
    assert stream.reply.reasoning == "Thinking…"
    assert stream.reply.finish_reason == "STOP" and stream.reply.output_tokens == 5
    assert stream.reply.model == MODEL
    assert [call.name for call in stream.reply.tool_calls] == ["f"]
    request = server.requests[-1]
    assert request.path == f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    assert request.headers["x-goog-api-key"] == "sekrit" and "authorization" not in request.headers
    assert request.json() == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"temperature": 0.1},
    }


async def test_max_tokens_ends_with_length(server: ScriptedServer) -> None:
    server.handler = sending(
        sse(response(text("cut"))),
        sse(response(text(" sh"), finish="MAX_TOKENS", usage=True)),
        then_stall=True,  # no end of the body: the finish reason is the end
    )
    stream = open_stream(server)
    assert [delta async for delta in deltas(stream)] == ["cut", " sh"]
    assert stream.stop_reason is StopReason.LENGTH


@pytest.mark.parametrize(
    "finish", ["MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"]
)
async def test_a_failed_tool_call_completes_and_keeps_gemini_s_word(
    server: ScriptedServer, finish: str
) -> None:
    server.handler = sending(sse(response(finish=finish, usage=True)), then_stall=True)
    stream = open_stream(server)
    assert [delta async for delta in deltas(stream)] == []
    assert stream.stop_reason is StopReason.COMPLETED and stream.reply.finish_reason == finish
    assert stream.reply.tool_calls == [] and stream.error is None


async def test_close_mid_stream_stops_at_once(server: ScriptedServer) -> None:
    server.handler = sending(*(sse(response(text(token))) for token in "abc"), then_stall=True)
    stream = open_stream(server)
    received = await close_after_first(stream)
    assert received == ["a"]  # b and c may have arrived; none is delivered after close()
    assert stream.stop_reason is StopReason.STOPPED and stream.error is None
    request = server.requests[-1]
    assert await left(request), "the server never saw it"
    assert not request.finished


async def test_no_finish_reason_is_truncated(server: ScriptedServer) -> None:
    server.handler = sending(sse(response(text("cut"))))
    stream = open_stream(server)
    with pytest.raises(TruncatedStreamError, match="neither a finishReason nor a finish reason"):
        [delta async for delta in deltas(stream)]
    assert stream.text == "cut" and stream.error is not None and stream.error.reply is stream.reply


async def test_an_error_event_is_an_api_error_with_the_partial_kept(server: ScriptedServer) -> None:
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}

    server.handler = sending(sse(response(text("par"))), sse(response(text("tial"))), sse(error))
    stream = open_stream(server, api_key="sekrit")
    received = []
    with pytest.raises(APIError, match="overloaded") as caught:
        async for delta in deltas(stream):
            received.append(delta)
    assert received == ["par", "tial"] and stream.text == "partial"
    assert caught.value.code == "503" and caught.value.type == "UNAVAILABLE"
    assert caught.value.reply is not None and caught.value.reply.content == "partial"
    assert stream.stop_reason is StopReason.ERROR


async def test_a_whole_json_array_answer(server: ScriptedServer) -> None:
    body = [response(text("Hel")), response(text("lo"), finish="STOP", usage=True)]

    async def handler(request: Request, response_: Response) -> None:
        await response_.whole(200, json.dumps(body))

    server.handler = handler
    stream = open_stream(server)
    assert "".join([delta async for delta in deltas(stream)]) == "Hello"
    assert stream.stop_reason is StopReason.COMPLETED


def test_list_models(server: ScriptedServer) -> None:
    async def handler(request: Request, response_: Response) -> None:
        models = {"models": [{"name": "models/gemini-b"}, {"name": "models/gemini-a"}]}
        await response_.whole(200, json.dumps(models))

    server.handler = handler
    assert list_models(base_url=host(server), api="gemini", api_key="k") == [
        "gemini-a",
        "gemini-b",
    ]
    assert server.requests[-1].path == "/v1beta/models?pageSize=1000"
    assert server.requests[-1].method == "GET"
