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

from ..sse import SSEDecoder
from . import chat
from ._base import Decoder, EndKind, Event, Framing, Target, WireFormat, WireRequest

__all__ = [
    "DECODERS",
    "FORMATS",
    "Decoder",
    "EndKind",
    "Event",
    "Framing",
    "Target",
    "WireFormat",
    "WireRequest",
    "request_paths",
    "wire_format",
]

FORMATS: dict[str, WireFormat] = {chat.WIRE.name: chat.WIRE}  # api= name -> format
DECODERS: dict[str, Callable[[], Decoder]] = {"sse": SSEDecoder}  # framing -> a new decoder


def wire_format(name: str = "chat") -> WireFormat:
    """The wire format called ``name``."""
    return FORMATS[name]


def request_paths() -> tuple[str, ...]:
    """Every format's request path: a base URL pasted with one has it taken off."""
    return tuple(wire.path for wire in FORMATS.values())
