"""Wire formats: one module per API, behind the one small interface :class:`WireFormat`.

A wire format builds the request (URL, headers, body), names the body's framing, turns one
decoded event into neutral happenings (a :class:`~jupyter_stream._reply.Chunk`), maps finish
reasons and error bodies, and lists model ids. Pure: no httpx, no asyncio, no IPython; the stream
engine does the I/O and never learns a provider's field names.

A new format is a module here (``WIRE = YourFormat()``) plus its tests, and one line in
:data:`FORMATS`.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from .._exceptions import ConfigurationError
from ..ndjson import NDJSONDecoder
from ..sse import SSEDecoder
from . import anthropic, chat, gemini, ollama, responses
from ._base import Decoder, EndKind, Event, Framing, Parse, Target, WireFormat, WireRequest

__all__ = [
    "DECODERS",
    "FORMATS",
    "Decoder",
    "EndKind",
    "Event",
    "Framing",
    "Parse",
    "Target",
    "WireFormat",
    "WireRequest",
    "format_for_host",
    "request_paths",
    "wire_format",
]

# api= name -> format, in the order messages and --help list them
FORMATS: dict[str, WireFormat] = {
    wire.name: wire
    for wire in (chat.WIRE, responses.WIRE, anthropic.WIRE, gemini.WIRE, ollama.WIRE)
}
# framing -> a new decoder
DECODERS: dict[str, Callable[[], Decoder]] = {"sse": SSEDecoder, "ndjson": NDJSONDecoder}


def wire_format(name: str = "chat") -> WireFormat:
    """The wire format called ``name``; a ConfigurationError lists the names when it is none."""
    try:
        return FORMATS[name]
    except (KeyError, TypeError):
        raise ConfigurationError(
            f"api={name!r} is not an API jupyter_stream speaks; use one of "
            + ", ".join(repr(known) for known in FORMATS)
        ) from None


def format_for_host(base_url: str) -> WireFormat | None:
    """The wire format a well-known host speaks (``https://api.anthropic.com``: anthropic), else
    None. Only the bare host counts: a path such as Gemini's ``/v1beta/openai`` or Anthropic's
    ``/v1`` is the provider's OpenAI-compatible API."""
    try:
        parts = urlsplit(base_url.strip())
    except ValueError:  # check_base_url says what is wrong with it
        return None
    if not parts.hostname or parts.path.strip("/"):
        return None
    for wire in FORMATS.values():
        if parts.hostname.lower() in wire.hosts:
            return wire
    return None


def request_paths() -> tuple[str, ...]:
    """Every format's request path: a base URL pasted with one has it taken off."""
    return tuple(wire.path for wire in FORMATS.values())
