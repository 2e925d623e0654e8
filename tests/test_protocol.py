"""Chunk parsing and reply assembly: pure, no I/O."""

from __future__ import annotations

import json

import pytest

from jupyter_stream import ProtocolError, Reply
from jupyter_stream._protocol import build_payload, parse_chunk


def data(**delta: object) -> str:
    return json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})


def test_done() -> None:
    assert parse_chunk("[DONE]").done


def test_content_reasoning_and_finish() -> None:
    assert parse_chunk(data(content="hi")).content == "hi"
    assert parse_chunk(data(reasoning_content="hmm")).reasoning == "hmm"
    assert parse_chunk(data(reasoning="hmm")).reasoning == "hmm"
    finish = json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
    assert parse_chunk(finish).finish_reason == "length"


def test_usage_only_chunk() -> None:
    chunk = parse_chunk(json.dumps({"choices": [], "usage": {"completion_tokens": 5}}))
    assert chunk.usage == {"completion_tokens": 5} and chunk.content == ""


def test_error_events() -> None:
    assert parse_chunk(json.dumps({"error": {"message": "bad"}})).error == {"message": "bad"}
    assert parse_chunk(json.dumps({"error": "plain"})).error == {"message": "plain"}
    assert parse_chunk(json.dumps({"message": "x"}), event="error").error == {"message": "x"}


@pytest.mark.parametrize("payload", ["{oops", "[1, 2]", '"text"'])
def test_malformed_data_is_a_protocol_error_with_an_excerpt(payload: str) -> None:
    with pytest.raises(ProtocolError, match="malformed stream"):
        parse_chunk(payload)


def test_reply_accumulates_and_reads_are_cached() -> None:
    reply = Reply()
    for piece in ["a", "b", "c"]:
        reply.add(parse_chunk(data(content=piece)))
        assert reply.content.endswith(piece)
    assert reply.content == "abc" and reply.chunks == 3 and str(reply) == "abc"


def test_tool_call_fragments_are_assembled_by_index() -> None:
    reply = Reply()
    fragments = [
        [{"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}}],
        [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}],
        [{"index": 0, "function": {"arguments": '{"x":'}}],
        [{"index": 0, "function": {"arguments": " 1}"}}],
    ]
    for tool_calls in fragments:
        reply.add(parse_chunk(data(tool_calls=tool_calls)))
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        ("a", "f", '{"x": 1}'),
        ("b", "g", "{}"),
    ]
    assert reply.to_message()["tool_calls"][1]["function"] == {"name": "g", "arguments": "{}"}


def test_payload() -> None:
    messages = [{"role": "user", "content": "hi"}]
    payload = build_payload(messages, "m", temperature=0.2)
    assert payload == {
        "model": "m",
        "messages": messages,
        "temperature": 0.2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert "stream_options" not in build_payload(messages, "m", include_usage=False)
