"""Tests for jupyter_stream.sse: the WHATWG event-stream rules, chunk boundaries, limits.

Spec: https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
Chunk boundaries are given as lists of byte strings; no transport is involved.
"""

from __future__ import annotations

import ast
import copy
import json
import pickle
import random
import re
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from jupyter_stream._exceptions import (
    ConfigurationError,
    EventTooLargeError,
    JupyterStreamError,
    ProtocolError,
)
from jupyter_stream.sse import ServerSentEvent, SSEDecoder

E = ServerSentEvent
BOM = b"\xef\xbb\xbf"


def decode(chunks: Iterable[bytes], decoder: SSEDecoder | None = None) -> list[ServerSentEvent]:
    """Feed each chunk, then flush: every event the stream gives."""
    decoder = decoder if decoder is not None else SSEDecoder()
    events = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.flush())
    return events


def datas(chunks: Iterable[bytes]) -> list[str]:
    return [event.data for event in decode(chunks)]


def random_split(stream: bytes, rng: random.Random, max_pieces: int = 8) -> list[bytes]:
    cuts = sorted(
        rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(1, max_pieces)))
    )
    return [stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


def reference_decode(stream: bytes) -> tuple[list[ServerSentEvent], str, int | None]:
    """A slow, literal reading of the spec, on text: (events, last event ID, reconnection time)."""
    # 9.2.5: the stream is decoded with "UTF-8 decode", which replaces invalid sequences and
    # strips one leading BOM.
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    *lines, last = re.split(r"\r\n|\r|\n", text)
    if last:
        lines.append(last)  # an unterminated last line is processed, but cannot dispatch
    events = []
    data_buffer = event_type = last_event_id = ""
    retry: int | None = None
    event_retry: int | None = None
    for line in lines:
        if line == "":
            if data_buffer:
                data = data_buffer[:-1] if data_buffer.endswith("\n") else data_buffer
                events.append(E(event_type or "message", data, last_event_id, event_retry))
            data_buffer = event_type = ""
            event_retry = None
            continue
        if line.startswith(":"):
            continue
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            data_buffer += value + "\n"
        elif field == "event":
            event_type = value
        elif field == "id":
            if "\0" not in value:
                last_event_id = value
        elif field == "retry" and value and all(c in "0123456789" for c in value):
            try:
                retry = event_retry = int(value)
            except ValueError:  # past Python's int/str digit limit
                pass
    return events, last_event_id, retry


# --- the public face -------------------------------------------------------------------------


def test_all_is_sorted_and_exact() -> None:
    import jupyter_stream.sse as sse

    assert sse.__all__ == sorted(sse.__all__) == ["SSEDecoder", "ServerSentEvent"]


def test_module_is_pure() -> None:
    """Only the standard library, the package's exceptions and its line buffer (which imports
    only those): no httpx, asyncio or I/O."""
    import jupyter_stream._lines as lines
    import jupyter_stream.sse as sse

    def imports(module: object) -> set[str]:
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))  # type: ignore[attr-defined]
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.add("." * node.level + (node.module or ""))
        return imported

    assert imports(sse) <= {
        "__future__",
        "json",
        "dataclasses",
        "typing",
        "._exceptions",
        "._lines",
    }
    assert imports(lines) <= {"__future__", "._exceptions"}


def test_server_sent_event_defaults_and_json() -> None:
    event = E()
    assert (event.event, event.data, event.id, event.retry) == ("message", "", "", None)
    assert E(data='{"a": [1, "é"]}').json() == {"a": [1, "é"]}
    with pytest.raises(json.JSONDecodeError):
        E(data="[DONE]").json()


def test_server_sent_event_is_immutable() -> None:
    event = E("add", "x", "1", 5)
    with pytest.raises(AttributeError):
        event.data = "y"  # type: ignore[misc]
    assert event._asdict() == {"event": "add", "data": "x", "id": "1", "retry": 5}


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(b"data: x\n\n", id="fast path"),
        pytest.param(b"event: add\nid: 1\nretry: 5\ndata: x\n\n", id="line by line"),
    ],
)
def test_decoded_events_are_ordinary_server_sent_events(stream: bytes) -> None:
    """Events are built with tuple.__new__; they must not differ from constructed ones."""
    (event,) = decode([stream])
    built = E(event.event, "x", event.id, event.retry)
    assert type(event) is E
    assert event == built and hash(event) == hash(built) and repr(event) == repr(built)
    assert pickle.loads(pickle.dumps(event)) == built
    assert copy.copy(event) == copy.deepcopy(event) == built
    assert event._replace(data="z").data == "z"


def test_max_buffer_size_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="max_buffer_size"):
        SSEDecoder(max_buffer_size=0)


# --- the spec's examples (9.2.6) -------------------------------------------------------------


def test_spec_example_stock_multi_line_data() -> None:
    assert decode([b"data: YHOO\ndata: +2\ndata: 10\n\n"]) == [E(data="YHOO\n+2\n10")]


def test_spec_example_comment_ids_and_leading_space() -> None:
    stream = (
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n"
        b"data:  third event\n\n"
    )
    decoder = SSEDecoder()
    assert decode([stream], decoder) == [
        E(data="first event", id="1"),
        E(data="second event", id=""),  # "id" with no value resets the last event ID
        E(data=" third event", id=""),  # only one leading space is removed
    ]
    assert decoder.last_event_id == ""


def test_spec_example_the_end_of_the_stream_does_not_dispatch() -> None:
    stream = b": test stream\n\ndata: first event\nid: 1\n\ndata:  third event\n"
    assert decode([stream]) == [E(data="first event", id="1")]


def test_spec_example_empty_data_and_lone_newline() -> None:
    # "The first block fires events with the data set to the empty string [...] The middle
    # block fires an event with the data set to a single newline character. The last block is
    # discarded because it is not followed by a blank line."
    assert datas([b"data\n\ndata\ndata\n\ndata:"]) == ["", "\n"]


def test_spec_example_data_colon_with_and_without_space() -> None:
    assert decode([b"data:test\n\ndata: test\n\n"]) == [E(data="test"), E(data="test")]


def test_spec_example_event_types() -> None:
    stream = (
        b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n"
    )
    assert decode([stream]) == [
        E("add", "73857293"),
        E("remove", "2153"),
        E("add", "113411"),
    ]


# --- line ends (9.2.5) -----------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r", b"\r\n"], ids=["LF", "CR", "CRLF"])
def test_each_line_end(eol: bytes) -> None:
    stream = b"event: e" + eol + b"data: a" + eol + b"data: b" + eol + eol + b"data: c" + eol + eol
    assert decode([stream]) == [E("e", "a\nb"), E(data="c")]


def test_mixed_line_ends() -> None:
    assert datas([b"data: a\rdata: b\ndata: c\r\n\rdata: d\n\r\n"]) == ["a\nb\nc", "d"]


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    # Were the LF a second line end, "a" would be dispatched on its own.
    assert datas([b"data: a\r", b"\ndata: b\r\n\r\n"]) == ["a\nb"]
    assert datas([b"data: a\r", b"\n", b"data: b\r", b"\n", b"\r", b"\n"]) == ["a\nb"]


def test_empty_chunk_between_cr_and_lf_changes_nothing() -> None:
    assert datas([b"data: a\r", b"", b"\ndata: b\r", b"", b"", b"\n\r\n"]) == ["a\nb"]


def test_cr_cr_is_a_blank_line() -> None:
    assert datas([b"data: a\r", b"\rdata: b\r\r"]) == ["a", "b"]


@pytest.mark.parametrize(
    "char", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"], ids=repr
)
def test_only_cr_and_lf_end_lines(char: str) -> None:
    """str.splitlines() also splits on these (the httpx-sse U+2028 bug); the spec does not."""
    value = f"a{char}b"
    stream = f"data: {value}\n\nevent: x{char}y\ndata: {value}\ndata: c\n\n".encode()
    assert decode([stream]) == [E(data=value), E(f"x{char}y", f"{value}\nc")]
    assert decode([bytes([b]) for b in stream]) == decode([stream])


# --- the BOM (9.2.5) -------------------------------------------------------------------------


def test_one_leading_bom_is_skipped() -> None:
    assert datas([BOM + b"data: a\n\n"]) == ["a"]


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_bom_split_across_chunks(cut: int) -> None:
    stream = BOM + b"data: a\n\n"
    assert datas([stream[:cut], stream[cut:]]) == ["a"]
    assert datas([bytes([b]) for b in stream]) == ["a"]


def test_only_one_bom_is_skipped() -> None:
    # The second BOM is part of the first line's field name, "\ufeffdata": an unknown field.
    assert datas([BOM + BOM + b"data: a\n\ndata: b\n\n"]) == ["b"]


def test_bom_after_the_start_is_not_skipped() -> None:
    assert datas([b"data: a\n\n" + BOM + b"data: b\n\n"]) == ["a"]
    assert datas([b"data: a\n\n", BOM + b"data: b\n\n"]) == ["a"]
    assert datas([b"data: " + BOM + b"a\n\n"]) == ["\ufeffa"]


def test_an_incomplete_bom_is_not_skipped() -> None:
    assert datas([BOM[:2], b"data: a\n\n"]) == []  # field name "\ufffddata": unknown
    assert datas([BOM[:2]]) == []
    assert decode([BOM[:1]]) == []


# --- fields (9.2.6) --------------------------------------------------------------------------


def test_comments_are_ignored() -> None:
    stream = b": hello\n:\ndata: a\n: in the middle\ndata: b\n:data: c\n\n: keep-alive\n\n"
    assert datas([stream]) == ["a\nb"]


def test_a_line_without_colon_is_a_field_with_empty_value() -> None:
    assert datas([b"data\ndata\ndata: x\n\n"]) == ["\n\nx"]
    assert decode([b"event\ndata: x\n\n"]) == [E("message", "x")]
    decoder = SSEDecoder()
    assert decode([b"id: 7\ndata: a\n\nid\ndata: b\n\n"], decoder) == [
        E(data="a", id="7"),
        E(data="b"),
    ]
    assert decoder.last_event_id == ""


def test_exactly_one_leading_space_is_stripped() -> None:
    assert datas([b"data:  two\n\ndata:x\n\ndata: \n\ndata:\t\n\n"]) == [" two", "x", "", "\t"]
    assert decode([b"event:  spaced\ndata: a \n\n"]) == [E(" spaced", "a ")]
    decoder = SSEDecoder()
    assert decode([b"id:  7 \ndata: a\n\n"], decoder) == [E(data="a", id=" 7 ")]


def test_value_keeps_further_colons() -> None:
    assert datas([b'data: {"a": "b:c"}\n\ndata::x\n\n']) == ['{"a": "b:c"}', ":x"]


def test_empty_data_buffer_is_not_dispatched_but_resets_the_type() -> None:
    assert decode([b"event: a\n\ndata: x\n\n"]) == [E("message", "x")]
    assert decode([b"\n\n\nevent: a\nid: 1\nretry: 3\n\n\n"]) == []


def test_data_only_empty_is_dispatched() -> None:
    assert decode([b"data:\n\n"]) == [E(data="")]
    assert decode([b"data: \n\n"]) == [E(data="")]


def test_event_type() -> None:
    stream = b"event: add\ndata: 1\n\nevent:\ndata: 2\n\ndata: 3\n\nevent: a\nevent: b\ndata: 4\n\n"
    assert [e.event for e in decode([stream])] == ["add", "message", "message", "b"]


def test_id_persists_across_events() -> None:
    decoder = SSEDecoder()
    events = decode([b"id: 1\ndata: a\n\ndata: b\n\nid: 2\n\ndata: c\n\n"], decoder)
    assert [(e.data, e.id) for e in events] == [("a", "1"), ("b", "1"), ("c", "2")]
    assert decoder.last_event_id == "2"


def test_id_after_data_in_the_same_event_applies_to_it() -> None:
    assert decode([b"data: a\nid: 9\n\n"]) == [E(data="a", id="9")]


def test_id_containing_nul_is_ignored() -> None:
    decoder = SSEDecoder()
    events = decode([b"id: 5\ndata: a\n\nid: 6\x00\ndata: b\n\nid: \x00\ndata: c\n\n"], decoder)
    assert [e.id for e in events] == ["5", "5", "5"]
    assert decoder.last_event_id == "5"


def test_retry_sets_the_reconnection_time() -> None:
    decoder = SSEDecoder()
    assert decoder.retry is None
    events = decode([b"retry: 1500\ndata: a\n\ndata: b\n\nretry: 0\n\ndata: c\n\n"], decoder)
    assert [e.retry for e in events] == [1500, None, None]
    assert decoder.retry == 0


@pytest.mark.parametrize(
    "value",
    [b"", b"1.5", b"-1", b"+5", b"1_000", b" 5", b"5 ", b"12a", b"0x10", "١٢٣".encode(), b"\xff"],
    ids=repr,
)
def test_retry_that_is_not_all_ascii_digits_is_ignored(value: bytes) -> None:
    decoder = SSEDecoder()
    events = decode([b"retry: 100\ndata: a\n\nretry: " + value + b"\ndata: b\n\n"], decoder)
    assert [e.retry for e in events] == [100, None]
    assert decoder.retry == 100


def test_retry_with_thousands_of_digits_is_not_fatal() -> None:
    decoder = SSEDecoder()
    assert datas([b"retry: " + b"9" * 5000 + b"\ndata: a\n\n"]) == ["a"]
    assert decoder.retry is None


def test_unknown_fields_are_ignored() -> None:
    assert decode([b"foo: bar\nDATA: x\ndata: a\nfoo\n\n"]) == [E(data="a")]


@pytest.mark.parametrize("name", [b"Data", b"DATA", b"Event", b"ID", b"Retry", b"data ", b" data"])
def test_field_names_are_case_sensitive_and_exact(name: bytes) -> None:
    decoder = SSEDecoder()
    assert decode([name + b": 7\n\ndata: a\n\n"], decoder) == [E(data="a")]
    assert decoder.last_event_id == "" and decoder.retry is None


# --- UTF-8 -----------------------------------------------------------------------------------


def test_invalid_utf8_is_replaced_never_fatal() -> None:
    decoder = SSEDecoder()
    stream = b"event: \xffx\nid: \xc3\ndata: a\xfe\xffb\ndata: \xe6\x97\n\ndata: \xed\xa0\x80\n\n"
    assert decode([stream], decoder) == [
        E("\ufffdx", "a\ufffd\ufffdb\n\ufffd", "\ufffd"),
        E("message", "\ufffd\ufffd\ufffd", "\ufffd"),  # a surrogate is invalid UTF-8
    ]
    assert decoder.last_event_id == "\ufffd"


def test_utf8_split_across_chunks() -> None:
    text = "café, 日本語, emoji 🎉"
    stream = f"event: {text}\ndata: {text}\n\n".encode()
    for i in range(1, len(stream)):
        assert decode([stream[:i], stream[i:]]) == [E(text, text)], i
    assert decode([bytes([b]) for b in stream]) == [E(text, text)]


# --- end of stream and reuse -----------------------------------------------------------------


def test_flush_discards_an_incomplete_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b\n") == [E(data="a")]
    assert decoder.flush() == []
    assert decoder.feed(b"\n") == []  # the next stream starts afresh
    assert decoder.feed(b"data: c") == []
    assert decoder.flush() == []


def test_flush_processes_an_unterminated_last_line_without_dispatching() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\nid: 7\nretry: 10\ndata: b\n\nid: 8") == [
        E(data="a"),
        E(data="b", id="7", retry=10),
    ]
    assert decoder.flush() == []
    assert decoder.last_event_id == "8"
    decoder.feed(b"retry: 20")
    assert decoder.flush() == []
    assert decoder.retry == 20


def test_decoder_is_reusable_after_flush_and_keeps_the_last_event_id() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"id: 1\nevent: x\nretry: 5\ndata: partial\ndata: also")
    decoder.flush()
    # A new stream: type, data and BOM state reset; last event ID and retry persist.
    assert decoder.feed(BOM + b"data: y\n\n") == [E("message", "y", "1", None)]
    assert decoder.retry == 5
    decoder.feed(b"data: z\r")
    decoder.flush()
    assert decoder.feed(b"\ndata: w\n\n") == [E(data="w", id="1")]  # that LF is a blank line


def test_feed_accepts_buffers_and_does_not_keep_them() -> None:
    decoder = SSEDecoder()
    buffer = bytearray(b"data: abc")
    assert decoder.feed(buffer) == []  # type: ignore[arg-type]
    buffer[:] = b"XXXXXXXXX"
    assert decoder.feed(memoryview(b"\n\n")) == [E(data="abc")]  # type: ignore[arg-type]
    assert decoder.feed(b"") == []


# --- sizes -----------------------------------------------------------------------------------


def test_a_one_megabyte_line_in_small_pieces() -> None:
    value = ("0123456789abcdéf" * 70_000)[:1_000_000]
    stream = b"data: " + value.encode() + b"\n\ndata: next\n\n"
    pieces = [stream[i : i + 1024] for i in range(0, len(stream), 1024)]
    assert datas(pieces) == [value, "next"]
    assert datas([stream]) == [value, "next"]


def test_a_long_line_in_tiny_pieces_is_not_quadratic() -> None:
    stream = b"data: " + b"x" * (4 * 1024 * 1024) + b"\n\n"
    pieces = [stream[i : i + 512] for i in range(0, len(stream), 512)]
    start = time.perf_counter()
    (event,) = decode(pieces)
    assert len(event.data) == 4 * 1024 * 1024
    assert time.perf_counter() - start < 5  # joining on every piece would copy ~16 GB


@pytest.mark.parametrize("piece", [1, 100, 999, 5000], ids=lambda n: f"pieces of {n}")
def test_a_line_over_the_cap_raises(piece: int) -> None:
    stream = b"data: " + b"x" * 2000 + b"\n\n"
    decoder = SSEDecoder(max_buffer_size=1000)
    with pytest.raises(EventTooLargeError) as info:
        for i in range(0, len(stream), piece):
            decoder.feed(stream[i : i + piece])
    message = str(info.value)
    assert "SSE line" in message and "1,000 bytes" in message
    assert "max_buffer_size" in message and "event stream" in message
    assert isinstance(info.value, ProtocolError) and isinstance(info.value, JupyterStreamError)


def test_a_line_without_line_end_over_the_cap_raises() -> None:
    decoder = SSEDecoder(max_buffer_size=1000)
    decoder.feed(b"<html>" + b"x" * 994)
    with pytest.raises(EventTooLargeError, match=r"1,001 bytes.*1,000 bytes"):
        decoder.feed(b"y")


def test_a_line_at_the_cap_is_fine() -> None:
    decoder = SSEDecoder(max_buffer_size=1000)
    line = b"data: " + b"x" * 994  # 1000 bytes; the event's data is 994 bytes + LF
    assert [len(e.data) for e in decode([line[:500], line[500:], b"\n\n"], decoder)] == [994]
    assert [len(e.data) for e in decode([line + b"\n\n"], SSEDecoder(1000))] == [994]


def test_event_data_over_the_cap_raises() -> None:
    decoder = SSEDecoder(max_buffer_size=1000)
    with pytest.raises(EventTooLargeError, match=r"data of one SSE event.*max_buffer_size"):
        for _ in range(20):
            decoder.feed(b"data: " + b"x" * 99 + b"\n")


def test_many_small_events_in_a_chunk_larger_than_the_cap() -> None:
    stream = b"".join(b"data: %04d" % i + b"x" * 90 + b"\n\n" for i in range(100))
    assert len(stream) > 10_000
    assert len(decode([stream], SSEDecoder(max_buffer_size=1000))) == 100


def test_the_default_cap_is_16_mib() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"x" * (16 * 1024 * 1024))
    with pytest.raises(EventTooLargeError, match="16 MiB"):
        decoder.feed(b"x")


# --- every split gives the same events -------------------------------------------------------

TOKENS = ["Hello", " café", ",", " 日本語", " emoji", " 🎉", " naïve", " tok", "\u2028", "!"]


def chat_stream(
    eol: bytes = b"\n", bom: bool = False, prefix: bytes = b"data: "
) -> tuple[bytes, list[str]]:
    """An OpenAI-style chat completion stream of 50 chunks, and the data of its events."""
    data = []
    for i in range(50):
        chunk = {
            "id": "chatcmpl-123",
            "object": "chat.completion.chunk",
            "choices": [
                {"index": 0, "delta": {"content": TOKENS[i % len(TOKENS)]}, "finish_reason": None}
            ],
        }
        data.append(json.dumps(chunk, ensure_ascii=False, separators=(",", ":")))
    data.append("[DONE]")
    stream = b"".join(prefix + d.encode() + eol + eol for d in data)
    return (BOM if bom else b"") + stream, data


STREAM_VARIANTS = {
    "LF": chat_stream(),
    "CRLF": chat_stream(b"\r\n"),
    "CR": chat_stream(b"\r"),
    "BOM": chat_stream(bom=True),
    "no space": chat_stream(prefix=b"data:"),
}


@pytest.fixture(params=list(STREAM_VARIANTS))
def chat(request: pytest.FixtureRequest) -> tuple[bytes, list[ServerSentEvent]]:
    stream, data = STREAM_VARIANTS[request.param]
    return stream, [E(data=d) for d in data]


def test_chat_stream_whole(chat: tuple[bytes, list[ServerSentEvent]]) -> None:
    stream, expected = chat
    assert decode([stream]) == expected
    assert "🎉" in expected[5].json()["choices"][0]["delta"]["content"]


def test_chat_stream_every_split_point(chat: tuple[bytes, list[ServerSentEvent]]) -> None:
    stream, expected = chat
    for i in range(len(stream) + 1):
        assert decode([stream[:i], stream[i:]]) == expected, f"split at {i}"


def test_chat_stream_byte_by_byte(chat: tuple[bytes, list[ServerSentEvent]]) -> None:
    stream, expected = chat
    assert decode([stream[i : i + 1] for i in range(len(stream))]) == expected


def test_chat_stream_random_splits(chat: tuple[bytes, list[ServerSentEvent]]) -> None:
    stream, expected = chat
    rng = random.Random(20240611)
    for _ in range(300):
        assert decode(random_split(stream, rng, max_pieces=40)) == expected


# A stream with every rule in it, mixing line ends, so that the line-by-line path and the
# fast path for "data:" events take turns whatever the chunk boundaries.
MIXED = (
    BOM
    + b": comment\r\n"
    + b"retry: 3000\nid: 1\nevent: start\ndata: a\ndata:b\r\n\r"
    + b'data: {"x": 1}\n\ndata: caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x8e\x89\n\n'
    + b"data: \xe2\x80\xa8 line separator \xc2\x85 nel\n\n"
    + b"id: 2\x00\nData: no\nfoo: bar\nevent\ndata\n\n"
    + b"event: x\n\n"
    + b"data: \xff bad \xc3\n\ndata: y\r\rid\rdata:  two spaces\r\n\r\n"
    + b"retry: 12a\nretry: 250\ndata: z\n\ndata: unfinished\nid: 9"
)
MIXED_EXPECTED = [
    E("start", "a\nb", "1", 3000),
    E(data='{"x": 1}', id="1"),
    E(data="café 日 🎉", id="1"),
    E(data="\u2028 line separator \x85 nel", id="1"),
    E(data="", id="1"),
    E(data="\ufffd bad \ufffd", id="1"),
    E(data="y", id="1"),
    E(data=" two spaces", id=""),
    E(data="z", id="", retry=250),
]


def test_mixed_stream_whole() -> None:
    decoder = SSEDecoder()
    assert decode([MIXED], decoder) == MIXED_EXPECTED
    assert (decoder.last_event_id, decoder.retry) == ("9", 250)
    assert reference_decode(MIXED) == (MIXED_EXPECTED, "9", 250)


def test_mixed_stream_every_split_point() -> None:
    for i in range(len(MIXED) + 1):
        decoder = SSEDecoder()
        assert decode([MIXED[:i], MIXED[i:]], decoder) == MIXED_EXPECTED, f"split at {i}"
        assert (decoder.last_event_id, decoder.retry) == ("9", 250)


def test_mixed_stream_every_pair_of_split_points() -> None:
    for i in range(len(MIXED) + 1):
        for j in range(i, len(MIXED) + 1, 7):
            assert decode([MIXED[:i], MIXED[i:j], MIXED[j:]]) == MIXED_EXPECTED, (i, j)


def test_mixed_stream_byte_by_byte_and_random_splits() -> None:
    assert decode([MIXED[i : i + 1] for i in range(len(MIXED))]) == MIXED_EXPECTED
    rng = random.Random(7)
    for _ in range(500):
        assert decode(random_split(MIXED, rng, max_pieces=30)) == MIXED_EXPECTED


# Fragments that random streams are made of: field names right and wrong, separators, every
# kind of line end, BOMs, invalid and split UTF-8, NUL, digits, and characters that are line
# ends for str.splitlines() but not for the spec.
FRAGMENTS = [
    b"data",
    b"data: ",
    b"data:",
    b"event",
    b"event: ",
    b"id",
    b"id: ",
    b"retry: ",
    b"Data",
    b":",
    b" ",
    b"\n",
    b"\n\n",
    b"\r",
    b"\r\n",
    b"x",
    b"12",
    b"0",
    b"\x00",
    BOM,
    b"\xff",
    b"\xc3",
    b"\xa9",
    "é".encode(),
    "🎉".encode(),
    "\u2028".encode(),
    b"\x0b",
    b"\x1c",
    b"\n\ndata: ",
]


def test_random_streams_match_a_literal_reading_of_the_spec() -> None:
    rng = random.Random(1234)
    for n in range(3000):
        stream = b"".join(rng.choices(FRAGMENTS, k=rng.randint(1, 40)))
        expected = reference_decode(stream)
        for chunks in (
            [stream],
            random_split(stream, rng) if len(stream) > 1 else [stream],
            [stream[i : i + 1] for i in range(len(stream))],
        ):
            decoder = SSEDecoder()
            events = decode(chunks, decoder)
            assert (events, decoder.last_event_id, decoder.retry) == expected, (n, chunks)


def test_random_data_only_streams_match_the_reference() -> None:
    """Streams shaped like the fast path's input, with near misses, split anywhere."""
    rng = random.Random(99)
    pieces = [
        *[b"data: a", b"data: ", b"data:b", b"data:", b"data:  c", b"data: \xff", b": d"],
        *[b"\n", b"\n\n", b"\r\n", b"\n\n\n", b"event: e\n", b"id: 1\n", b"retry: 2\n"],
    ]
    for _ in range(3000):
        stream = b"".join(rng.choices(pieces, k=rng.randint(1, 30)))
        expected = reference_decode(stream)
        chunks = random_split(stream, rng) if len(stream) > 1 else [stream]
        decoder = SSEDecoder()
        assert (decode(chunks, decoder), decoder.last_event_id, decoder.retry) == expected


def test_random_typed_streams_match_the_reference() -> None:
    """Streams shaped like the typed fast path's input (``event: NAME\\ndata: VALUE\\n\\n``,
    as Anthropic and OpenAI Responses send), with near misses, split anywhere."""
    rng = random.Random(16)
    pieces = [
        *[b"event: a\ndata: x\n\n", b"event: \ndata: \n\n", b"event:  b\ndata:  y\n\n"],
        *[b"event: \xff\ndata: \xc3\n\n", b"event: c", b"\ndata: z", b"\ndata:w", b"\n\n"],
        *[b"\n", b"\n\n\n", b": d\n", b"id: 1\n", b"retry: 2\n", b"data: v\n", b"event: e\n"],
    ]
    for _ in range(3000):
        stream = b"".join(rng.choices(pieces, k=rng.randint(1, 30)))
        expected = reference_decode(stream)
        chunks = random_split(stream, rng) if len(stream) > 1 else [stream]
        for cut in (chunks, [stream]):
            decoder = SSEDecoder()
            assert (decode(cut, decoder), decoder.last_event_id, decoder.retry) == expected


# --- the encoder (the server writes with it) ----------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        "",
        "plain",
        "two\nlines",
        "crlf\r\nand cr\rends",
        "ends with a line end\n",
        "\n\n",
        "data: inside",
        ": not a comment",
        "naïve 日本語 🚀",
        "[DONE]",
    ],
)
def test_an_encoded_event_decodes_to_its_data_with_lf_line_ends(data: str) -> None:
    from jupyter_stream.sse import encode_event

    encoded = encode_event(data, id="7", event="token")
    expected = E("token", data.replace("\r\n", "\n").replace("\r", "\n"), "7")
    assert decode([encoded]) == [expected]
    assert decode([encoded[i : i + 1] for i in range(len(encoded))]) == [expected]
    assert decode([encode_event(data)]) == [E(data=expected.data)]
