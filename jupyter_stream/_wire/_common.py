"""What several wire formats share that is no one format's own (:mod:`.chat` holds Chat's
helpers, which the others reuse too).

Pure: dictionaries and strings in, objects out. No I/O, no httpx, no asyncio.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .chat import _wrong

__all__ = ["StreamState", "items"]


class StreamState:
    """What one stream's parse keeps from event to event where tool calls arrive whole (Gemini,
    Ollama): the next tool call's index."""

    __slots__ = ("tools",)

    def __init__(self) -> None:
        self.tools = 0


def items(obj: dict[str, Any], key: str, api: str) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """The objects of a whole answer's array ``obj[key]`` (content blocks, output items), each
    with its number and its name in messages; a ProtocolError names one that is not one."""
    listed = obj.get(key)
    if type(listed) is not list:
        raise _wrong(key, listed, "an array", api)
    for number, item in enumerate(listed):
        where = f"{key}[{number}]"
        if type(item) is not dict:
            raise _wrong(where, item, "an object", api)
        yield number, where, item
