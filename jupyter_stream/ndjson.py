"""A pure, incremental decoder for newline-delimited JSON (``application/x-ndjson``), and its
encoder: the framing of Ollama's streamed answers.

NDJSON (https://github.com/ndjson/ndjson-spec) is one JSON text a line, each ended by LF; "the
parser MAY silently ignore empty lines" and a CR before the LF is tolerated. Bytes go in
(``feed``), one :class:`NDJSONLine` per non-blank line comes out; ``flush`` ends the stream. The
decoder works on bytes, as :class:`~jupyter_stream.sse.SSEDecoder` does: UTF-8 never puts the byte
0x0A inside a multi-byte sequence, so each complete line is decoded on its own, and a character
split across two chunks is simply part of the incomplete line until its LF arrives. It does not
parse the JSON: that is the wire format's (``_wire.ollama``), which checks every value.

It imports nothing beyond the standard library and this package's exceptions: no httpx, no
asyncio, no I/O.
"""

from __future__ import annotations

from typing import NamedTuple

from ._exceptions import ConfigurationError
from ._lines import MIB, LineBuffer

__all__ = ["NDJSONDecoder", "NDJSONLine"]  # encode_line is for this package's server

_BLANK = b" \t\r"  # white space JSON allows around a value: a line of only these is blank
_new_line = tuple.__new__  # as sse.py: the same object, without the keyword handling


class NDJSONLine(NamedTuple):
    """One line of the stream: its text (without the line end), and the name every line has,
    ``"message"`` (so that a wire format reads it as it reads a server-sent event)."""

    data: str
    event: str = "message"


class NDJSONDecoder:
    """Turn the bytes of an NDJSON body into :class:`NDJSONLine` objects.

    ``feed(chunk)`` returns the lines completed by ``chunk``; ``flush()`` ends the stream,
    returning a last line that had no LF (the format allows it), and makes the decoder ready for
    a new stream. A line longer than ``max_buffer_size`` bytes raises
    :class:`EventTooLargeError`, however the bytes were cut (after which only ``flush()`` is
    meaningful).
    """

    __slots__ = ("_max_buffer_size", "_pending")

    def __init__(self, max_buffer_size: int = 16 * MIB) -> None:
        if max_buffer_size <= 0:
            raise ConfigurationError(
                f"NDJSONDecoder(max_buffer_size={max_buffer_size!r}): the cap must be a "
                "positive number of bytes (the default is 16 MiB)"
            )
        self._max_buffer_size = max_buffer_size
        # Pieces of a line whose LF has not arrived: joined once, when it does.
        self._pending = LineBuffer(
            max_buffer_size, "NDJSON", "newline-delimited JSON", "NDJSONDecoder", "lines"
        )

    def feed(self, data: bytes) -> list[NDJSONLine]:
        """Decode one chunk of the body; return the lines it completes."""
        if not data:
            return []
        if type(data) is not bytes:
            data = bytes(data)  # never keep a reference to a buffer the caller may reuse
        region = self._pending.region(data)
        if region is None:
            return []
        lines = region.split(b"\n")
        lines.pop()  # the empty string after the region's final LF
        return self._lines(lines, 0x0D in region)

    @staticmethod
    def _lines(lines: list[bytes], cr: bool) -> list[NDJSONLine]:
        """The lines' items: one CR before the LF dropped, blank lines skipped, each line decoded
        on its own (invalid UTF-8 becomes U+FFFD, as in sse.py). One comprehension: the hot
        path."""
        if cr:
            lines = [line[:-1] if line[-1:] == b"\r" else line for line in lines]
        return [
            _new_line(NDJSONLine, (line.decode("utf-8", "replace"), "message"))
            for line in lines
            if line and (line[0] not in _BLANK or line.strip(_BLANK))
        ]

    def flush(self) -> list[NDJSONLine]:
        """End the stream: a last line without LF is a line too. The decoder is then ready for
        a new stream."""
        if not self._pending.pending:
            return []
        line = self._pending.take()
        return self._lines([line], 0x0D in line)


def encode_line(data: str) -> bytes:
    """One line, framed as the decoder reads it back: ``data`` (compact JSON, which holds no
    line end) and an LF."""
    if "\n" in data or "\r" in data:
        raise ValueError("an NDJSON line cannot hold a line end: encode the value with json.dumps")
    return data.encode() + b"\n"
