"""Tests for jupyter_stream.ndjson: lines, blank lines, UTF-8, limits, and every chunk boundary.

Spec: https://github.com/ndjson/ndjson-spec. Chunk boundaries are given as lists of byte strings;
no transport is involved.
"""

from __future__ import annotations

import ast
import json
import random
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
from jupyter_stream.ndjson import NDJSONDecoder, NDJSONLine, encode_line


def decode(chunks: Iterable[bytes], decoder: NDJSONDecoder | None = None) -> list[str]:
    """Feed each chunk, then flush: the data of every line the body gives."""
    decoder = decoder if decoder is not None else NDJSONDecoder()
    lines: list[NDJSONLine] = []
    for chunk in chunks:
        lines.extend(decoder.feed(chunk))
    lines.extend(decoder.flush())
    assert all(line.event == "message" for line in lines)
    return [line.data for line in lines]


def random_split(stream: bytes, rng: random.Random, max_pieces: int = 8) -> list[bytes]:
    cuts = sorted(
        rng.sample(range(1, len(stream)), min(len(stream) - 1, rng.randint(1, max_pieces)))
    )
    return [stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


def reference_decode(stream: bytes) -> list[str]:
    """A slow, literal reading: split the text on LF, drop one CR before it, skip blank lines."""
    out = []
    for raw in stream.split(b"\n"):
        line = raw.decode("utf-8", "replace")
        line = line.removesuffix("\r")
        if line.strip(" \t\r"):
            out.append(line)
    return out


# --- the public face -------------------------------------------------------------------------


def test_all_is_sorted_and_exact() -> None:
    import jupyter_stream.ndjson as ndjson

    assert ndjson.__all__ == sorted(ndjson.__all__) == ["NDJSONDecoder", "NDJSONLine"]


def test_module_is_pure() -> None:
    """Only the standard library, the package's exceptions and its line buffer (which imports
    only those): no httpx, asyncio or I/O."""
    import jupyter_stream._lines as lines
    import jupyter_stream.ndjson as ndjson

    def imports(module: object) -> set[str]:
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))  # type: ignore[attr-defined]
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.add("." * node.level + (node.module or ""))
        return imported

    assert imports(ndjson) <= {"__future__", "typing", "._exceptions", "._lines"}
    assert imports(lines) <= {"__future__", "._exceptions"}


def test_a_line_is_an_ordinary_named_tuple_read_like_an_event() -> None:
    decoder = NDJSONDecoder()
    (line,) = decoder.feed(b'{"a": 1}\n')
    assert type(line) is NDJSONLine
    assert line == NDJSONLine('{"a": 1}') == NDJSONLine('{"a": 1}', "message")
    assert (line.data, line.event) == ('{"a": 1}', "message")
    assert hash(line) == hash(NDJSONLine('{"a": 1}')) and repr(line) == repr(NDJSONLine('{"a": 1}'))


def test_max_buffer_size_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="max_buffer_size"):
        NDJSONDecoder(max_buffer_size=0)


# --- lines -----------------------------------------------------------------------------------


def test_each_line_is_one_item() -> None:
    assert decode([b'{"a":1}\n{"b":2}\n']) == ['{"a":1}', '{"b":2}']


def test_a_cr_before_the_lf_is_dropped_and_nothing_else_ends_a_line() -> None:
    assert decode([b'{"a":1}\r\n{"b":2}\n']) == ['{"a":1}', '{"b":2}']
    # A lone CR, U+2028 and U+0085 are not line ends (str.splitlines() would split on them).
    body = '{"a":"x\ry\u2028z\x85"}\n'.encode()
    assert decode([body]) == ['{"a":"x\ry\u2028z\x85"}']


def test_blank_lines_are_skipped() -> None:
    assert decode([b'\n\r\n  \n\t\r\n{"a":1}\n\n\n{"b":2}\n \n']) == ['{"a":1}', '{"b":2}']


def test_leading_white_space_of_a_value_is_kept() -> None:
    assert decode([b'  {"a":1}\n']) == ['  {"a":1}']  # json.loads reads it: not a blank line


def test_a_last_line_without_lf_comes_at_flush() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a":1}\n{"done":true}') == [NDJSONLine('{"a":1}')]
    assert decoder.flush() == [NDJSONLine('{"done":true}')]
    assert decoder.flush() == []


def test_flush_of_a_blank_tail_gives_nothing() -> None:
    assert decode([b'{"a":1}\n  \r']) == ['{"a":1}']


def test_decoder_is_reusable_after_flush() -> None:
    decoder = NDJSONDecoder()
    decoder.feed(b'{"cut')
    assert decoder.flush() == [NDJSONLine('{"cut')]
    assert decoder.feed(b'{"new":1}\n') == [NDJSONLine('{"new":1}')]


def test_invalid_utf8_is_replaced_never_fatal() -> None:
    assert decode([b'{"a":"caf\xc3\xa9 \xff\xfe!"}\n']) == ['{"a":"café \ufffd\ufffd!"}']


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_utf8_split_across_chunks(cut: int) -> None:
    emoji = "🎉".encode()  # four bytes
    body = b'{"a":"' + emoji + b'"}\n'
    at = 6 + cut
    assert decode([body[:at], body[at:]]) == ['{"a":"🎉"}']
    assert decode([bytes([b]) for b in body]) == ['{"a":"🎉"}']


def test_feed_accepts_buffers_and_does_not_keep_them() -> None:
    decoder = NDJSONDecoder()
    buffer = bytearray(b'{"a":')
    assert decoder.feed(buffer) == []  # type: ignore[arg-type]
    buffer[:] = b"XXXXX"  # the caller reuses its buffer
    assert decoder.feed(memoryview(b"1}\n")) == [NDJSONLine('{"a":1}')]  # type: ignore[arg-type]


def test_empty_chunks_change_nothing() -> None:
    assert decode([b"", b'{"a"', b"", b":1}", b"", b"\n", b""]) == ['{"a":1}']


# --- sizes -----------------------------------------------------------------------------------


def test_a_long_line_in_tiny_pieces_is_not_quadratic() -> None:
    value = "x" * (4 * 1024 * 1024)
    body = json.dumps({"a": value}).encode() + b"\n"
    pieces = [body[i : i + 512] for i in range(0, len(body), 512)]
    start = time.perf_counter()
    (line,) = decode(pieces)
    assert json.loads(line)["a"] == value
    assert time.perf_counter() - start < 5  # joining on every piece would copy ~16 GB


@pytest.mark.parametrize("piece", [1, 100, 999, 5000], ids=lambda n: f"pieces of {n}")
def test_a_line_over_the_cap_raises(piece: int) -> None:
    body = b'{"a":"' + b"x" * 2000 + b'"}\n'
    decoder = NDJSONDecoder(max_buffer_size=1000)
    with pytest.raises(EventTooLargeError) as info:
        for i in range(0, len(body), piece):
            decoder.feed(body[i : i + piece])
    message = str(info.value)
    assert "NDJSON line" in message and "1,000 bytes" in message
    assert "max_buffer_size" in message and "newline-delimited JSON" in message
    assert isinstance(info.value, ProtocolError) and isinstance(info.value, JupyterStreamError)


def test_a_line_without_lf_over_the_cap_raises() -> None:
    decoder = NDJSONDecoder(max_buffer_size=1000)
    decoder.feed(b"<html>" + b"x" * 994)
    with pytest.raises(EventTooLargeError, match=r"1,001 bytes.*1,000 bytes"):
        decoder.feed(b"y")


def test_a_line_at_the_cap_is_fine_however_it_is_cut() -> None:
    line = b'{"a":"' + b"x" * 992 + b'"}'  # 1000 bytes
    assert len(line) == 1000
    for cut in range(0, 1002, 7):
        body = line + b"\n"
        assert decode([body[:cut], body[cut:]], NDJSONDecoder(1000)) == [line.decode()]


def test_many_small_lines_in_a_chunk_larger_than_the_cap() -> None:
    body = b"".join(b'{"n":%04d}\n' % i for i in range(1000))
    assert len(body) > 10_000
    assert len(decode([body], NDJSONDecoder(max_buffer_size=100))) == 1000


def test_the_default_cap_is_16_mib() -> None:
    decoder = NDJSONDecoder()
    decoder.feed(b"x" * (16 * 1024 * 1024))
    with pytest.raises(EventTooLargeError, match="16 MiB"):
        decoder.feed(b"x")


# --- every split gives the same lines --------------------------------------------------------

TOKENS = ["Hello", " café", ",", " 日本語", " emoji", " 🎉", " naïve", "\u2028", "\r", "!"]


def ollama_body(eol: bytes = b"\n") -> tuple[bytes, list[str]]:
    """An Ollama /api/chat body of 30 lines (the last one done), and the data of its lines."""
    data = []
    for i in range(30):
        line = {
            "model": "llama3.2",
            "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": TOKENS[i % len(TOKENS)]},
            "done": False,
        }
        data.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
    data.append('{"model":"llama3.2","message":{"role":"assistant","content":""},"done":true}')
    return b"".join(d.encode() + eol for d in data), data


BODIES = {"LF": ollama_body(), "CRLF": ollama_body(b"\r\n"), "blank lines": ollama_body(b"\n\n")}


@pytest.fixture(params=list(BODIES))
def body(request: pytest.FixtureRequest) -> tuple[bytes, list[str]]:
    return BODIES[request.param]


def test_body_whole(body: tuple[bytes, list[str]]) -> None:
    stream, expected = body
    assert decode([stream]) == expected
    assert json.loads(expected[5])["message"]["content"] == " 🎉"


def test_body_every_split_point(body: tuple[bytes, list[str]]) -> None:
    stream, expected = body
    for i in range(len(stream) + 1):
        assert decode([stream[:i], stream[i:]]) == expected, f"split at {i}"


def test_body_byte_by_byte(body: tuple[bytes, list[str]]) -> None:
    stream, expected = body
    assert decode([bytes([b]) for b in stream]) == expected


def test_body_random_splits(body: tuple[bytes, list[str]]) -> None:
    stream, expected = body
    rng = random.Random(16)
    for _ in range(300):
        assert decode(random_split(stream, rng, max_pieces=40)) == expected


ALPHABET = [
    b"\n",
    b"\r",
    b"\r\n",
    b" ",
    b"\t",
    b"{}",
    b'"a"',
    b"\xc3\xa9",
    b"\xf0\x9f",
    b"\x8e\x89",
]
ALPHABET += [b"\xff", "\u2028".encode(), b"\x00", b"x"]


def test_random_bodies_match_a_literal_reading() -> None:
    """Bodies of line ends, blanks, split and invalid UTF-8, cut anywhere, against the reference."""
    rng = random.Random(1616)
    for _ in range(2000):
        stream = b"".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 30)))
        chunks = random_split(stream, rng) if len(stream) > 1 else [stream]
        assert decode(chunks) == reference_decode(stream), stream


# --- the encoder -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [{"a": 1}, {"t": "line\nbreak\r\u2028🎉"}, [], "x"])
def test_an_encoded_line_decodes_to_its_json(value: object) -> None:
    data = json.dumps(value, ensure_ascii=False)
    assert decode([encode_line(data)]) == [data]


def test_the_encoder_refuses_a_line_end() -> None:
    with pytest.raises(ValueError, match="line end"):
        encode_line('{"a":\n1}')
