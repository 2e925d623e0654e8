"""The native APIs the built-in models speak besides Chat Completions: one module each.

Each module reads its API's request (:func:`parse`: the body, and for Gemini the path and query)
into the neutral :class:`~.._body.ChatRequest` that :mod:`.._models` answers, checks every field
it uses (a bad one is a 400 in the API's own error shape, before any answer has begun), and
writes the answer in the API's framing (its ``Frames``, the protocol of :class:`.._demo.Frames`):

- :mod:`.responses`: OpenAI Responses, SSE with ``event:`` names and ``sequence_number``
- :mod:`.anthropic`: Anthropic Messages, SSE ``message_start`` … ``message_stop``
- :mod:`.gemini`: Gemini ``generateContent``, SSE (``alt=sse``) or a streamed JSON array
- :mod:`.ollama`: Ollama ``/api/chat``, NDJSON

Every API's answer is the same tokens at the same pace: only the bytes around each token differ.
"""

from __future__ import annotations

import datetime
import functools
import json

__all__ = ["NDJSON_HEADERS", "dumps", "iso_time", "json_string"]

NDJSON_HEADERS = [
    (b"content-type", b"application/x-ndjson"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


@functools.lru_cache(maxsize=8192)
def json_string(text: str) -> bytes:
    """``text`` as a JSON string, in UTF-8 (cached: a model's tokens repeat)."""
    return json.dumps(text, ensure_ascii=False).encode()


def dumps(value: object) -> bytes:
    """``value`` as compact JSON in UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def iso_time(seconds: float) -> str:
    """A Unix time as RFC 3339 in UTC, as Anthropic, Gemini and Ollama write times."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
