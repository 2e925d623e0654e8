"""The line buffer both byte decoders share (``sse.py``, ``ndjson.py``): bytes in, the complete
lines so far out as one region, the unfinished last line held back, and one size cap for a line
however the bytes were cut. Pure: no I/O."""

from __future__ import annotations

from ._exceptions import EventTooLargeError

__all__ = ["MIB", "LineBuffer", "size_text"]

MIB = 1024 * 1024


def size_text(n: int) -> str:
    """A byte count as a message says it: ``16 MiB``, ``1,234 bytes``."""
    if n >= MIB and n % MIB == 0:
        return f"{n // MIB} MiB"
    return f"{n:,} bytes"


class LineBuffer:
    """Holds the bytes of an unfinished line until its LF arrives.

    A line past ``max_size`` bytes raises :class:`EventTooLargeError` as soon as the held bytes
    pass the cap, and inside a region too, so that every split of the input behaves alike. The
    message names the format (``kind``: "SSE"), what the body should be (``body``), the
    ``decoder`` class and what its lines make (``items``).
    """

    __slots__ = ("body", "decoder", "items", "kind", "max_size", "pending", "pending_size")

    def __init__(self, max_size: int, kind: str, body: str, decoder: str, items: str) -> None:
        self.max_size = max_size
        self.kind, self.body, self.decoder, self.items = kind, body, decoder, items
        self.pending: list[bytes] = []
        self.pending_size = 0

    def too_large(self, size: int) -> EventTooLargeError:
        return EventTooLargeError(
            f"an {self.kind} line grew to {size_text(size)}, past the decoder's cap of "
            f"{size_text(self.max_size)}; the server may not be sending {self.body} (or no line "
            f"ends); raise {self.decoder}(max_buffer_size=...) if its {self.items} really are "
            "this large"
        )

    def hold(self, data: bytes) -> None:
        """Keep ``data``, which holds no LF, until its line ends."""
        size = self.pending_size + len(data)
        if size > self.max_size:
            raise self.too_large(size)
        self.pending.append(data)
        self.pending_size = size

    def take(self) -> bytes:
        """The held bytes, which are then forgotten."""
        held = b"".join(self.pending)
        self.pending = []
        self.pending_size = 0
        return held

    def region(self, data: bytes) -> bytes | None:
        """The complete lines that ``data`` ends (each with its LF, the held bytes before the
        first), or None when it ends none; what follows the last LF is held."""
        end = data.rfind(b"\n") + 1
        if not end:
            self.hold(data)
            return None
        if self.pending:
            self.pending.append(data[:end])
            region = self.take()
        else:
            region = data if end == len(data) else data[:end]
        if end < len(data):
            self.hold(data[end:])
        if len(region) > self.max_size:
            longest = max(map(len, region.split(b"\n")))
            if longest > self.max_size:
                raise self.too_large(longest)
        return region
