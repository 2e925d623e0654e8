"""A pure, incremental decoder for ``text/event-stream`` (server-sent events), and its encoder.

It follows the WHATWG HTML standard, section 9.2 "Server-sent events", in particular
"9.2.5 Parsing an event stream" and "9.2.6 Interpreting an event stream":
https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

Bytes go in (``feed``), events come out; ``flush`` ends the stream. Every way of cutting the
same bytes into chunks gives the same events. The decoder works on bytes: it splits lines on
CR and LF only (bytes never contain U+2028 and friends, and a UTF-8 multi-byte sequence never
contains the bytes 0x0A or 0x0D), so each complete line can be decoded on its own, and a
character split across two chunks is simply part of the incomplete line until its line end.

:func:`encode_event` frames one event the way the decoder reads it back (the server writes with
it), so that both halves of the format live, and are tested, side by side.

It imports nothing beyond the standard library and this package's exceptions: no httpx, no
asyncio, no I/O.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from ._exceptions import ConfigurationError, EventTooLargeError
from ._lines import MIB, LineBuffer, size_text

__all__ = ["SSEDecoder", "ServerSentEvent"]  # encode_event is for this package's server

# 9.2.5: "The UTF-8 decode algorithm strips one leading UTF-8 Byte Order Mark (BOM), if any."
_BOM = b"\xef\xbb\xbf"


class ServerSentEvent(NamedTuple):
    """One dispatched event: an immutable named tuple ``(event, data, id, retry)``.

    ``id`` is the last event ID buffer at dispatch time (it persists across events, per spec);
    ``retry`` is the reconnection time set by a ``retry:`` field in this event, else None.
    """

    event: str = "message"
    data: str = ""
    id: str = ""
    retry: int | None = None

    def json(self) -> Any:
        """The data parsed as JSON (raises ``json.JSONDecodeError`` if it is not JSON)."""
        return json.loads(self.data)


# Building thousands of events a second, the decoder makes them with tuple.__new__ directly,
# skipping the keyword handling of the generated __new__ (same object, a third of the cost).
_new_event = tuple.__new__


class SSEDecoder:
    """Turn the bytes of an event stream into :class:`ServerSentEvent` objects.

    ``feed(chunk)`` returns the events completed by ``chunk``; ``flush()`` ends the stream,
    discarding an event that was not finished by a blank line, and makes the decoder ready for
    a new stream (``last_event_id`` and ``retry`` persist, as they do for an ``EventSource``).

    There is no limit on line length short of ``max_buffer_size``: an incomplete line, or the
    data of an event being assembled, larger than that raises :class:`EventTooLargeError`
    (after which only ``flush()`` is meaningful: it makes the decoder usable again).
    """

    __slots__ = (
        "_at_start",
        "_data_lines",
        "_data_size",
        "_event_retry",
        "_event_type",
        "_last_event_id",
        "_max_buffer_size",
        "_pending",
        "_retry",
        "_trailing_cr",
    )

    def __init__(self, max_buffer_size: int = 16 * MIB) -> None:
        if max_buffer_size <= 0:
            raise ConfigurationError(
                f"SSEDecoder(max_buffer_size={max_buffer_size!r}): the cap must be a positive "
                "number of bytes (the default is 16 MiB)"
            )
        self._max_buffer_size = max_buffer_size
        # 9.2.6: "the last event ID buffer" persists across events (and across flush()).
        self._last_event_id = ""
        # 9.2.6: "the event stream's reconnection time", last set by a valid retry field.
        self._retry: int | None = None
        self._reset()

    def _reset(self) -> None:
        # The line whose end has not arrived yet, in pieces (joined once, not on every chunk).
        self._pending = LineBuffer(
            self._max_buffer_size, "SSE", "an event stream", "SSEDecoder", "events"
        )
        # The previous chunk ended in CR: an LF at the start of the next one ends no line
        # (9.2.5: CRLF is one line end even when split across chunks).
        self._trailing_cr = False
        # Still looking for the one BOM that may start the stream (possibly split over chunks).
        self._at_start = True
        # 9.2.6: "the data buffer", kept as the raw bytes of each data value, joined with LF
        # and decoded once at dispatch.
        self._data_lines: list[bytes] = []
        self._data_size = 0
        # 9.2.6: "the event type buffer" (empty means "message" at dispatch).
        self._event_type = ""
        # Reconnection time set by a retry field of the event being assembled.
        self._event_retry: int | None = None

    @property
    def last_event_id(self) -> str:
        """The last event ID buffer: the value of the last valid ``id`` field seen."""
        return self._last_event_id

    @property
    def retry(self) -> int | None:
        """The reconnection time (milliseconds) last set by a ``retry`` field, or None."""
        return self._retry

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Decode one chunk of the stream; return the events it completes."""
        if not data:
            return []
        if type(data) is not bytes:
            data = bytes(data)  # never keep a reference to a buffer the caller may reuse

        if self._at_start:
            # 9.2.5: skip one leading BOM, which may arrive split over several chunks.
            if self._pending.pending:
                data = self._pending.take() + data
            if len(data) < 3 and _BOM.startswith(data):
                self._pending.pending.append(data)  # at most 2 bytes: below any cap's check
                self._pending.pending_size = len(data)
                return []
            self._at_start = False
            if data[:3] == _BOM:
                data = data[3:]
                if not data:
                    return []

        # 9.2.5: "Lines must be separated by either a U+000D CARRIAGE RETURN U+000A LINE FEED
        # (CRLF) character pair, a single U+000A LINE FEED (LF) character, or a single
        # U+000D CARRIAGE RETURN (CR) character." Nothing else ends a line (not U+2028, U+0085,
        # VT, FF, FS...), so all splitting below is on bytes, on LF only, after turning CRLF and
        # lone CR into LF.
        if self._trailing_cr:
            # The previous chunk ended in CR: an LF starting this one is the rest of a CRLF.
            self._trailing_cr = False
            if data[0] == 0x0A:
                data = data[1:]
                if not data:
                    return []
        if 0x0D in data:
            self._trailing_cr = data[-1] == 0x0D
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

        region = self._pending.region(data)
        if region is None:
            return []
        if len(region) <= self._max_buffer_size:  # a larger one goes line by line
            if (
                region[:5] == b"data:"
                and region[-2:] == b"\n\n"
                and not self._data_lines
                and not self._event_type
                and self._event_retry is None
            ):
                events = self._data_only_events(region)
            else:
                events = self._typed_region(region)
            if events is not None:
                return events

        return self._interpret(self._lines(region))

    @staticmethod
    def _lines(region: bytes) -> list[bytes]:
        """The lines of complete lines (each ending in LF), without their LF."""
        lines = region.split(b"\n")
        lines.pop()  # the empty string after the region's final LF
        return lines

    def _typed_region(self, region: bytes) -> list[ServerSentEvent] | None:
        """Events for a region whose whole events are typed (see :meth:`_typed_events`), else
        None, having changed nothing.

        Chunks end anywhere, so a region often begins inside an event and ends inside another:
        the lines up to its first blank line and those after its last are interpreted line by
        line, and the whole events between them, once the state is clean (a blank line leaves
        no type, data or retry behind), go the fast way.
        """
        end = region.rfind(b"\n\n") + 2
        if end < 2:
            return None  # no blank line: no whole event
        clean = not self._data_lines and not self._event_type and self._event_retry is None
        start = 0 if clean and region[:7] == b"event: " else region.find(b"\n\n") + 2
        if end <= start or region[start : start + 7] != b"event: ":
            return None
        events = self._interpret(self._lines(region[:start])) if start else []
        typed = self._typed_events(region[start:end])
        if typed is None:  # not typed events only: line by line, from where the head ended
            return events + self._interpret(self._lines(region[start:]))
        events += typed
        if end < len(region):
            events += self._interpret(self._lines(region[end:]))
        return events

    def _data_only_events(self, region: bytes) -> list[ServerSentEvent] | None:
        """The fast path: events for a region that is only ``data: VALUE\\n\\n`` events, else None.

        Nearly every chat completion stream has this shape: each event is one ``data:`` line
        and a blank line. The caller has checked that the region starts with ``data:``, ends
        with a blank line, and that no event is half-assembled; if, besides, no value contains
        an LF, then each value is one event's data and nothing else in the region has any
        effect, which is exactly what 9.2.6 line by line gives (one space stripped, data buffer
        = value + LF, then the LF removed at dispatch, type "message"). Returns None, having
        changed nothing, when the region is not of that shape.
        """
        if region[5] == 0x20:
            # "data: VALUE", as most servers write it: no value has a space to strip.
            values = region.split(b"\n\ndata: ")
            values[0] = values[0][6:]
            strip = False
        else:
            # "data:VALUE" (as some servers write it) or a mix: strip one space where present.
            values = region.split(b"\n\ndata:")
            values[0] = values[0][5:]
            strip = True
        values[-1] = values[-1][:-2]
        last_event_id = self._last_event_id
        events: list[ServerSentEvent] = []
        append = events.append
        for value in values:
            if 0x0A in value:
                return None  # a multi-line event, or some other field: take the general path
            if strip and value[:1] == b" ":
                value = value[1:]
            # Each value is decoded on its own rather than the region at once: one emoji would
            # make the region's str four bytes per character. Invalid UTF-8 becomes U+FFFD.
            data = value.decode("utf-8", "replace")
            append(_new_event(ServerSentEvent, ("message", data, last_event_id, None)))
        return events

    def _typed_events(self, region: bytes) -> list[ServerSentEvent] | None:
        """The fast path for typed events: events for a region that is only
        ``event: NAME\\ndata: VALUE\\n\\n`` events (Anthropic's, OpenAI Responses'), else None.

        The caller has checked that the region ends with a blank line and that no event is
        half-assembled; if each event is exactly those two lines (neither holding another LF),
        9.2.6 line by line gives the event type NAME ("message" when empty) and the data VALUE,
        and nothing else changes. Returns None, having changed nothing, for any other region.
        """
        last_event_id = self._last_event_id
        events: list[ServerSentEvent] = []
        append = events.append
        types: dict[bytes, str] = {}  # a few names, each checked and decoded once per region
        for block in region[:-2].split(b"\n\n"):
            head, found, value = block.partition(b"\ndata: ")
            if not found or 0x0A in value:
                return None  # a comment, an id or retry field, a multi-line event, …
            event_type = types.get(head)
            if event_type is None:
                if head[:7] != b"event: " or 0x0A in head:
                    return None
                event_type = types[head] = head[7:].decode("utf-8", "replace") or "message"
            data = value.decode("utf-8", "replace")
            append(_new_event(ServerSentEvent, (event_type, data, last_event_id, None)))
        return events

    def _interpret(self, lines: list[bytes]) -> list[ServerSentEvent]:
        """9.2.6 "Interpreting an event stream", for complete lines (without their line end)."""
        # One loop with no call per line: this is the hot path for streams that
        # _data_only_events() does not cover.
        events: list[ServerSentEvent] = []
        data_lines = self._data_lines
        data_size = self._data_size
        max_size = self._max_buffer_size
        for line in lines:
            if not line:
                # "If the line is empty (a blank line): Dispatch the event."
                # Dispatch: "If the data buffer is an empty string, set the data buffer and
                # the event type buffer to the empty string and return."
                if data_lines:
                    # "If the data buffer's last character is a U+000A LINE FEED (LF)
                    # character, then remove the last character from the data buffer."
                    # (We join the values with LF instead of appending LF after each.)
                    # Invalid UTF-8 becomes U+FFFD (the spec's "UTF-8 decode"), never an error.
                    # "Initialize event's type attribute to "message"" unless the event type
                    # buffer has a value other than the empty string; "Initialize event's
                    # lastEventId attribute to the last event ID string of the event source."
                    data = b"\n".join(data_lines).decode("utf-8", "replace")
                    event_type = self._event_type or "message"
                    fields = (event_type, data, self._last_event_id, self._event_retry)
                    events.append(_new_event(ServerSentEvent, fields))
                    data_lines.clear()
                    data_size = 0
                self._event_type = ""
                self._event_retry = None
            elif line[:6] == b"data: ":
                # Shortcut for the commonest line: field "data", value after one space.
                data_lines.append(line[6:])
                data_size += len(line) - 5
                if data_size > max_size:
                    raise self._event_too_large(data_size)
            elif line[0] == 0x3A:
                # "If the line starts with a U+003A COLON character (:): Ignore the line."
                pass
            else:
                # "If the line contains a U+003A COLON character (:): Collect the characters
                # on the line before the first U+003A COLON character (:), and let field be
                # that string. Collect the characters on the line after the first U+003A
                # COLON character (:), and let value be that string. If value starts with a
                # U+0020 SPACE character, remove it from value."
                # "Otherwise, the string is not empty but does not contain a U+003A COLON
                # character (:): Process the field using the whole line as the field name,
                # and the empty string as the field value."
                colon = line.find(b":")
                if colon < 0:
                    name = line
                    value = b""
                else:
                    name = line[:colon]
                    value = line[colon + 1 :]
                    if value[:1] == b" ":
                        value = value[1:]
                # "Process the field": names are compared exactly (case-sensitively).
                if name == b"data":
                    # "Append the field value to the data buffer, then append a single
                    # U+000A LINE FEED (LF) character to the data buffer."
                    data_lines.append(value)
                    data_size += len(value) + 1
                    if data_size > max_size:
                        raise self._event_too_large(data_size)
                elif name == b"event":
                    # "Set the event type buffer to field value."
                    self._event_type = value.decode("utf-8", "replace")
                elif name == b"id":
                    # "If the field value does not contain U+0000 NULL, then set the last
                    # event ID buffer to the field value. Otherwise, ignore the field."
                    # (NUL is one byte in UTF-8 and never part of a multi-byte sequence.)
                    if 0 not in value:
                        self._last_event_id = value.decode("utf-8", "replace")
                # "If the field value consists of only ASCII digits, then interpret the field
                # value as an integer in base ten, and set the event stream's reconnection
                # time to that integer. Otherwise, ignore the field."
                # (bytes.isdigit() is ASCII-only, and False for b"".)
                elif name == b"retry" and value.isdigit():
                    try:
                        retry = int(value)
                    except ValueError:
                        pass  # over Python's int/str digit limit: not a usable time
                    else:
                        self._retry = retry
                        self._event_retry = retry
                # "Otherwise: The field is ignored."
        self._data_size = data_size
        return events

    def flush(self) -> list[ServerSentEvent]:
        """End the stream: process an unterminated last line, then discard the unfinished event.

        9.2.6: "Once the end of the file is reached, any pending data must be discarded. (If the
        file ends in the middle of an event, before the final empty line, the incomplete event
        is not dispatched.)" A last line without a line end is still processed (an ``id`` or
        ``retry`` there takes effect) but it cannot dispatch, so this always returns ``[]``.
        Afterwards the decoder is ready for a new stream; ``last_event_id`` and ``retry`` persist.
        """
        # The unfinished event is discarded whatever the last line says; dropping its data
        # first also keeps that line from tripping the size cap for nothing.
        self._data_lines.clear()
        self._data_size = 0
        if self._pending.pending:
            # The pending bytes never contain CR or LF: they are exactly one line. (At the
            # start of the stream they can be an incomplete BOM, which is then that line.)
            self._interpret([self._pending.take()])
        self._reset()
        return []

    def _event_too_large(self, size: int) -> EventTooLargeError:
        cap = self._max_buffer_size
        return EventTooLargeError(
            f"the data of one SSE event grew to {size_text(size)} before its blank line, past the "
            f"decoder's cap of {size_text(cap)}; the server may not be sending an event stream; "
            "raise SSEDecoder(max_buffer_size=...) if its events really are this large"
        )


def encode_event(data: str, *, id: str | None = None, event: str | None = None) -> bytes:
    """One event, framed as 9.2.5 reads it: each line of ``data`` on a ``data:`` line of its
    own (a bare line end inside a ``data:`` line would end the field, or the event, early)."""
    lines = []
    if event is not None:
        lines.append(f"event: {event}\n")
    if id is not None:
        lines.append(f"id: {id}\n")
    data = data.replace("\r\n", "\n").replace("\r", "\n")  # 9.2.5's three line ends
    lines.extend(f"data: {line}\n" for line in data.split("\n"))
    lines.append("\n")
    return "".join(lines).encode()
