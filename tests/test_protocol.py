"""Chunk parsing and reply assembly: pure, no I/O."""

from __future__ import annotations

import json
import re

import pytest

from jupyter_stream import ProtocolError, Reply, StopReason
from jupyter_stream._messages import normalize_messages
from jupyter_stream._reply import (
    Chunk,
    clean_text,
    count_texts,
    escapes_surrogate,
    has_lone_surrogate,
)
from jupyter_stream._wire import wire_format
from jupyter_stream._wire.chat import build_payload, parse_chunk, parse_event


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


def test_content_length_and_the_text_count_follow_every_way_text_is_added() -> None:
    reply = Reply()
    reads: list[list[str | Chunk]] = [
        ["ab", "", "é"],
        [Chunk(content="xyz", reasoning="r"), Chunk(reasoning="only"), Chunk(usage={"a": 1})],
        [Chunk(content="\U0001f600")],
    ]
    for read in reads:
        assert reply.extend(read) == count_texts(read)
        assert reply.content_length == len(reply.content)
    reply.append_content("held")
    reply.append_content("")
    assert reply.content == "abéxyz\U0001f600held" and reply.content_length == len(reply.content)
    assert [count_texts(read) for read in reads] == [2, 2, 1]


def test_a_messages_extra_content_is_the_latest_chunks_and_goes_with_to_message() -> None:
    reply = Reply()
    reply.extend(["hi", Chunk(usage={"a": 1})])
    assert reply.extra_content is None
    assert reply.to_message() == {"role": "assistant", "content": "hi"}  # no key when none
    redacted = {"type": "redacted_thinking", "data": "d"}
    first = {"anthropic": {"thinking_blocks": [redacted]}}
    both = {"anthropic": {"thinking_blocks": [redacted, redacted]}}  # each chunk: all so far
    reply.extend([Chunk(extra_content=first), Chunk(extra_content=both), Chunk(content="!")])
    assert reply.to_message() == {"role": "assistant", "content": "hi!", "extra_content": both}


def test_the_natural_ends_are_the_wire_formats_end_kinds() -> None:
    natural = {reason for reason in StopReason if reason.natural}
    assert natural == {StopReason.COMPLETED, StopReason.LENGTH, StopReason.CONTENT_FILTER}
    chat = wire_format()  # it maps every finish reason to one of them
    kinds = {StopReason(chat.end_kind(why)) for why in ("stop", "length", "content_filter", None)}
    assert kinds == natural


@pytest.mark.parametrize(
    ("raw", "lone"),
    [
        (r'"\ud800"', True),
        (r'"x\uDFFF"', True),
        (r'"\ud83d\ude00"', False),  # a pair: one character
        (r'"\ud55c"', False),  # not a surrogate, though the quick test looks twice
        ('"é😀"', False),
    ],
)
def test_a_lone_surrogate_is_told_from_a_pair(raw: str, lone: bool) -> None:
    text = json.loads(raw)
    assert has_lone_surrogate(text) is lone and has_lone_surrogate(clean_text(text)) is False
    assert escapes_surrogate(raw) is ("\\u" in raw)  # every lone one, a few more looked at


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


# -- hostile values: every field checked where it enters ------------------------------------


def event(delta: dict[str, object] | None = None, **top: object) -> str:
    """A chunk's data with ``delta`` (and ``finish_reason``) in its choice, ``top`` beside it."""
    finish_reason = top.pop("finish_reason", None)
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish_reason}
    return json.dumps({"choices": [choice], **top})


def utf8_safe(value: object) -> bool:
    """True if ``value`` can go into a Jupyter message (JSON, then UTF-8, NaN refused)."""
    json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    return True


def test_a_lone_surrogate_in_plain_text_becomes_a_replacement_character() -> None:
    data = event({"content": "a\ud800b"})
    assert "\\ud800" in data  # as a server sends it: an escape, valid JSON
    assert parse_event(data) == "a\ufffdb"
    assert parse_chunk(data).content == "a\ufffdb"


def test_an_escaped_surrogate_pair_stays_the_character_it_encodes() -> None:
    assert parse_event(event({"content": "🎉"})) == "🎉"
    assert parse_chunk(event({"content": "🎉"}, finish_reason="stop")).content == "🎉"


def test_lone_surrogates_are_replaced_in_every_string_field() -> None:
    call = {"index": 0, "id": "c\udfff", "function": {"name": "f\ud800", "arguments": '{"\udc00'}}
    chunk = parse_chunk(
        event(
            {"content": "x\ud800", "reasoning_content": "r\udbff", "tool_calls": [call]},
            model="m\ud800",
            id="i\ud800",
            finish_reason="s\ud800",
            usage={"k\ud800": 1, "note": "n\ud800"},
        )
    )
    assert chunk.content == "x\ufffd" and chunk.reasoning == "r\ufffd"
    assert chunk.model == "m\ufffd" and chunk.id == "i\ufffd" and chunk.finish_reason == "s\ufffd"
    assert chunk.usage == {"k\ufffd": 1, "note": "n\ufffd"}
    assert chunk.tool_calls == [
        {
            "index": 0,
            "id": "c\ufffd",
            "type": "",
            "function": {"name": "f\ufffd", "arguments": '{"\ufffd'},
        }
    ]
    assert utf8_safe(chunk._asdict())
    error = parse_chunk(json.dumps({"error": {"message": "bad \ud800", "type": "t\udc00"}}))
    assert error.error == {"message": "bad \ufffd", "type": "t\ufffd"}


@pytest.mark.parametrize(
    ("delta", "field", "kind"),
    [
        ({"content": 123}, "choices[0].delta.content", "a number (123)"),
        ({"content": ["a"], "role": "x"}, "choices[0].delta.content", 'an array (["a"])'),
        ({"content": {"text": "a"}}, "choices[0].delta.content", "an object"),
        ({"content": True}, "choices[0].delta.content", "a boolean (true)"),
        ({"reasoning_content": 1}, "choices[0].delta.reasoning_content", "a number"),
        ({"reasoning": [1]}, "choices[0].delta.reasoning", "an array"),
        ({"tool_calls": {"index": 0}}, "choices[0].delta.tool_calls", "an object"),
        ({"tool_calls": ["f"]}, "choices[0].delta.tool_calls[0]", 'a string ("f")'),
        ({"tool_calls": [{"index": "0"}]}, "choices[0].delta.tool_calls[0].index", "a string"),
        ({"tool_calls": [{"index": 0.5}]}, "choices[0].delta.tool_calls[0].index", "a number"),
        ({"tool_calls": [{"id": 7}]}, "choices[0].delta.tool_calls[0].id", "a number"),
        ({"tool_calls": [{"type": []}]}, "choices[0].delta.tool_calls[0].type", "an array"),
        (
            {"tool_calls": [{"function": "f"}]},
            "choices[0].delta.tool_calls[0].function",
            "a string",
        ),
        (
            {"tool_calls": [{"function": {"name": 1}}]},
            "choices[0].delta.tool_calls[0].function.name",
            "a number",
        ),
        (
            {"tool_calls": [{}, {"function": {"arguments": [1]}}]},
            "choices[0].delta.tool_calls[1].function.arguments",
            "an array",
        ),
    ],
)
def test_an_answer_field_of_the_wrong_type_is_a_protocol_error_naming_it(
    delta: dict[str, object], field: str, kind: str
) -> None:
    for data in (event(delta), event(delta, finish_reason="stop")):
        with pytest.raises(ProtocolError) as caught:
            parse_event(data)
        message = str(caught.value)
        assert f"sent {field} as {kind}" in message, message
        assert "kept in .reply" in message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ('{"choices": "abc"}', "choices as a string"),
        ('{"choices": {"0": {}}}', "choices as an object"),
        ('{"choices": ["abc"]}', "choices[0] as a string"),
        ('{"choices": [7]}', "choices[0] as a number"),
        ('{"choices": [{"delta": "abc"}]}', "choices[0].delta as a string"),
        ('{"choices": [{"delta": [1]}]}', "choices[0].delta as an array"),
    ],
)
def test_a_choice_of_the_wrong_shape_is_a_protocol_error_naming_it(data: str, field: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(field)):
        parse_event(data)


def test_json_nested_too_deeply_is_a_protocol_error() -> None:
    for data in ("[" * 100_000 + "]" * 100_000, '{"a": ' * 100_000 + "1" + "}" * 100_000):
        with pytest.raises(ProtocolError, match="nested too deeply"):
            parse_event(data)
    # Just inside the parser's limit, with a surrogate escape: the clean-up must not fail.
    deep = '{"a": [' * 450 + '"\\ud800"' + "]}" * 450
    try:
        parse_event(deep)
    except ProtocolError as exc:
        assert "nested too deeply" in str(exc)


def test_tool_call_arguments_sent_as_an_object_are_kept_as_json_text() -> None:
    reply = Reply()
    call = {"index": 0, "id": "c", "function": {"name": "f", "arguments": {"city": "Zürich"}}}
    reply.add(parse_chunk(event({"tool_calls": [call]})))
    assert reply.tool_calls[0].arguments == '{"city": "Zürich"}'
    assert json.loads(reply.to_message()["tool_calls"][0]["function"]["arguments"]) == {
        "city": "Zürich"
    }


def test_a_usage_block_that_is_not_an_object_is_ignored_with_a_note() -> None:
    reply = Reply()
    for data in (event({"content": "Hi"}, usage="x"), json.dumps({"choices": [], "usage": [1]})):
        reply.add(parse_chunk(data))
    assert reply.content == "Hi" and reply.usage is None
    assert reply.notes == [
        'ignored usage: the server sent a string ("x"), expected an object of token counts',
        "ignored usage: the server sent an array ([1]), expected an object of token counts",
    ]


def test_usage_keeps_counts_and_ignores_what_no_count_can_be() -> None:
    huge = 10**400
    data = (
        f'{{"choices": [], "usage": {{"prompt_tokens": 3, "completion_tokens": {huge}, '
        '"total_tokens": -1, "queue_time": 0.25, "t": 1e400, "u": NaN, "v": true, "w": [1], '
        '"completion_tokens_details": {"reasoning_tokens": 2, "x": {"y": {"z": 1}}}}}'
    )
    chunk = parse_chunk(data)
    assert chunk.usage == {
        "prompt_tokens": 3,
        "queue_time": 0.25,
        "completion_tokens_details": {"reasoning_tokens": 2, "x": {}},
    }
    ignored = [note.split(":")[0] for note in chunk.notes]
    assert ignored == [
        "ignored usage.completion_tokens",
        "ignored usage.total_tokens",
        "ignored usage.t",
        "ignored usage.u",
        "ignored usage.v",
        "ignored usage.w",
        "ignored usage.completion_tokens_details.x.y",
    ]
    assert all(len(note) < 200 for note in chunk.notes)  # a 401-digit number is cut short
    assert utf8_safe(chunk.usage)
    # The largest count a JavaScript front end holds exactly is kept; one more is not.
    edge = parse_chunk(json.dumps({"choices": [], "usage": {"a": 2**53 - 1, "b": 2**53}}))
    assert edge.usage == {"a": 2**53 - 1} and "usage.b" in edge.notes[0]


@pytest.mark.parametrize(
    ("top", "field"),
    [
        ({"model": 5}, "model"),
        ({"model": {"name": "m"}}, "model"),
        ({"model": "m" * 257}, "model"),
        ({"id": ["x"]}, "id"),
        ({"finish_reason": 7}, "choices[0].finish_reason"),
        ({"finish_reason": {"type": "stop"}}, "choices[0].finish_reason"),
    ],
)
def test_a_bad_model_id_or_finish_reason_is_ignored_with_a_note(
    top: dict[str, object], field: str
) -> None:
    reply = Reply()
    reply.add(parse_chunk(event({"content": "kept"}, **({"finish_reason": "stop"} | top))))
    assert reply.content == "kept" and reply.model is None and reply.id is None
    assert reply.finish_reason == (None if "finish_reason" in top else "stop")
    [note] = reply.notes
    assert note.startswith(f"ignored {field}: the server sent ")


def test_notes_are_told_once_each_and_at_most_twenty() -> None:
    reply = Reply()
    for _ in range(3):
        reply.add(parse_chunk(event({"content": "a"}, usage="x")))
    assert len(reply.notes) == 1 and reply.content == "aaa"
    for number in range(50):
        reply.add(parse_chunk(json.dumps({"choices": [], "model": number})))
    assert len(reply.notes) == 20


def test_error_objects_keep_short_string_fields_only() -> None:
    said = parse_chunk(json.dumps({"error": {"message": {"deep": 1}, "code": 10**400, "type": []}}))
    assert said.error is not None
    assert said.error["message"] == '{"deep": 1}'
    assert said.error["code"].startswith("1000") and len(said.error["code"]) <= 100
    assert "type" not in said.error
    assert parse_chunk(json.dumps({"error": {"message": "m", "code": 429}})).error == {
        "message": "m",
        "code": "429",
    }
    assert parse_chunk(json.dumps({"error": ["x"]})).error == {"message": '["x"]'}
    assert parse_chunk("{}", event="error").error == {"message": "{}"}


def test_outgoing_messages_are_scrubbed_of_lone_surrogates() -> None:
    assert normalize_messages("a\ud800") == [{"role": "user", "content": "a\ufffd"}]
    parts = [{"role": "user", "content": [{"type": "text", "text": "b\udfff"}]}]
    assert normalize_messages(parts) == [
        {"role": "user", "content": [{"type": "text", "text": "b\ufffd"}]}
    ]
    assert clean_text("🎉 ok") == "🎉 ok" and clean_text("\ud83d\ude00") == "\ufffd\ufffd"
