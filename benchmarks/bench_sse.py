"""Throughput of jupyter_stream's SSE decoder against httpx-sse and openai-python's.

The input: 20,000 OpenAI-shaped chunk events (~200 bytes, some non-ASCII), a finish and a usage
chunk and ``data: [DONE]``, cut into TCP-read-like pieces (half 1-199 bytes, half up to 16 KiB).
All decoders must produce the same events (checked before timing); best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import platform
import random
import time
from collections.abc import Callable
from typing import Any

import _harness as h

from jupyter_stream.sse import SSEDecoder

_WORDS = (
    "the", "a", "stream", "token", "model", "notebook", "answer", "of", "and", "to", "is",
    "Jupyter", "kernel", "cell", "widget", "fast", "decoder", "event", "line", "bytes",
    "café", "naïve", "日本語", "données", "🎉", "Größe", "ñandú", "→", "π", "€",
)  # fmt: skip


def build_stream(n_chunks: int = 20_000, seed: int = 0) -> bytes:
    """An OpenAI-style streamed chat completion of ``n_chunks`` content chunks, as bytes."""
    rng = random.Random(seed)
    base = {
        "id": "chatcmpl-9xQbE2yZr4lQm0T7nP1aKd3sVh6Uo",
        "object": "chat.completion.chunk",
        "created": 1_718_000_000,
        "model": "gpt-4o-mini-2024-07-18",
    }
    out = []

    def event(choices: list[dict[str, Any]], **extra: Any) -> None:
        chunk = {**base, "choices": choices, **extra}
        text = json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))  # as OpenAI sends
        out.append(b"data: " + text.encode() + b"\n\n")

    delta: dict[str, Any] = {"role": "assistant", "content": ""}
    event([{"index": 0, "delta": delta, "finish_reason": None}])
    for _ in range(n_chunks):
        words = rng.choices(_WORDS, k=rng.randint(1, 3))
        delta = {"content": " " + " ".join(words)}
        event([{"index": 0, "delta": delta, "finish_reason": None}])
    event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    usage = {"prompt_tokens": 42, "completion_tokens": n_chunks, "total_tokens": n_chunks + 42}
    event([], usage=usage)
    out.append(b"data: [DONE]\n\n")
    return b"".join(out)


def split_like_network(stream: bytes, seed: int = 0) -> list[bytes]:
    """Cut ``stream`` into pieces sized like TCP reads: half under 200 bytes, half up to 16 KiB."""
    rng = random.Random(seed)
    pieces = []
    i = 0
    while i < len(stream):
        size = rng.randint(1, 199) if rng.random() < 0.5 else rng.randint(200, 16 * 1024)
        pieces.append(stream[i : i + size])
        i += size
    return pieces


def decode_ours(pieces: list[bytes]) -> list[str]:
    decoder = SSEDecoder()
    events = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.flush())
    return [event.data for event in events]


def decode_httpx_sse(pieces: list[bytes]) -> list[str]:
    # What httpx + httpx-sse do: an incremental UTF-8 decoder (httpx's TextDecoder), then
    # httpx_sse's line decoder and event decoder (httpx_sse._api._iter_sse_lines / iter_sse).
    from httpx_sse._decoders import SSEDecoder as HttpxSSEDecoder
    from httpx_sse._decoders import SSELineDecoder

    text_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    line_decoder = SSELineDecoder()
    decoder = HttpxSSEDecoder()
    events = []
    for piece in pieces:
        text = text_decoder.decode(piece)
        if text:  # httpx never passes empty text on
            for line in line_decoder.decode(text):
                sse = decoder.decode(line.rstrip("\n"))
                if sse is not None:
                    events.append(sse)
    text = text_decoder.decode(b"", True)
    lines = line_decoder.decode(text) if text else []
    for line in [*lines, *line_decoder.flush()]:
        sse = decoder.decode(line.rstrip("\n"))
        if sse is not None:
            events.append(sse)
    return [event.data for event in events]


def decode_openai(pieces: list[bytes]) -> list[str]:
    from openai._streaming import SSEDecoder as OpenAISSEDecoder

    return [event.data for event in OpenAISSEDecoder().iter_bytes(iter(pieces))]


DECODERS: dict[str, Callable[[list[bytes]], list[str]]] = {
    "jupyter_stream.sse": decode_ours,
    "httpx-sse": decode_httpx_sse,
    "openai._streaming": decode_openai,
}


def run(repeat: int = 7, seed: int = 0, n_chunks: int = 20_000) -> list[dict[str, Any]]:
    """Check that the decoders agree, time each, and return one row per decoder.

    Each row has ``decoder``, ``seconds`` (best of ``repeat``), ``mb_per_s``, ``events_per_s``
    and ``ratio``: the decoder's seconds over ours, i.e. how many times faster ours is.
    """
    stream = build_stream(n_chunks, seed)
    pieces = split_like_network(stream, seed)

    expected = decode_ours(pieces)
    assert len(expected) == n_chunks + 4, len(expected)
    assert expected[-1] == "[DONE]"
    assert expected == decode_ours([stream]), "ours: split changes the events"
    for name, decode in DECODERS.items():
        got = decode(pieces)
        assert len(got) == len(expected), f"{name}: {len(got)} events, expected {len(expected)}"
        assert got == expected, f"{name}: event data differs"

    # Rounds over all decoders rather than all runs of one decoder after another, so that a
    # slow spell of the machine does not fall on one decoder only.
    def measure(name: str) -> float:
        start = time.perf_counter()
        DECODERS[name](pieces)
        return time.perf_counter() - start

    times, problems = h.interleaved(list(DECODERS), measure, repeats=repeat, warmup=0)
    assert not problems, problems
    best = {name: min(seconds) for name, seconds in times.items()}

    ours = best["jupyter_stream.sse"]
    return [
        {
            "decoder": name,
            "seconds": seconds,
            "mb_per_s": len(stream) / seconds / 1e6,
            "events_per_s": len(expected) / seconds,
            "ratio": seconds / ours,
        }
        for name, seconds in best.items()
    ]


def header(stream: bytes, pieces: list[bytes], repeat: int, seed: int) -> str:
    n_events = stream.count(b"\n\n")
    return (
        f"SSE decoder benchmark: Python {platform.python_version()} "
        f"({platform.python_implementation()}), {os.cpu_count()} cores, {platform.machine()}\n"
        f"stream: {n_events:,} events, {len(stream):,} bytes "
        f"({len(stream) / n_events:.0f} B/event) in {len(pieces):,} pieces; "
        f"best of {repeat}, seed {seed}"
    )


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'decoder':<20} {'MB/s':>8} {'events/s':>12} {'ours faster by':>14}",
        f"{'-' * 20} {'-' * 8} {'-' * 12} {'-' * 14}",
    ]
    for row in rows:
        lines.append(
            f"{row['decoder']:<20} {row['mb_per_s']:>8.1f} {row['events_per_s']:>12,.0f} "
            f"{row['ratio']:>13.2f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per decoder (best kept)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the stream and its split")
    args = parser.parse_args(argv)
    stream = build_stream(seed=args.seed)
    pieces = split_like_network(stream, args.seed)
    print(header(stream, pieces, args.repeat, args.seed))
    print(format_table(run(repeat=args.repeat, seed=args.seed)))


if __name__ == "__main__":
    main()
