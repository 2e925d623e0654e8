"""The neutral side of a reply: what a wire format turns each event into (:class:`Chunk`), and
the :class:`Reply` those fold into. No provider's field names, no I/O, nothing of the package.

A :class:`Chunk` is the happenings of one event: a content delta, a reasoning delta, tool-call
deltas, usage (with ``output_tokens`` named neutrally), a finish with the server's own reason, an
error, the end (``done``), or nothing (an event to ignore), plus ``notes`` on values it ignored.
A tool-call delta has the shape of the library's messages (``Reply.to_message()``): ``index``,
``id``, ``type`` and ``function.name``/``function.arguments``, each a fragment to append, and
an optional ``extra_content`` (what the API needs back with the call, such as Gemini's thought
signature, shaped as in Gemini's OpenAI-compatible API), kept whole. A chunk's own
``extra_content`` is what the API needs back with the whole assistant message (Anthropic's
thinking blocks: ``{"anthropic": {"thinking_blocks": […]}}``), everything so far, replacing
what an earlier chunk carried.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "Chunk",
    "Message",
    "Reply",
    "ToolCall",
    "clean_text",
    "count_texts",
    "escapes_surrogate",
    "excerpt",
    "has_lone_surrogate",
    "scrub",
]

Message = dict[str, Any]

_SURROGATE = re.compile("[\ud800-\udfff]")  # in a str from json.loads, only lone ones are left
_MAX_NOTES = 20


@dataclass(slots=True)
class ToolCall:
    """One tool call, assembled from its streamed fragments."""

    index: int
    id: str = ""
    type: str = "function"
    name: str = ""
    arguments: str = ""
    extra_content: dict[str, Any] | None = None  # {"google": {"thought_signature": …}}

    def to_dict(self) -> dict[str, Any]:
        called: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "function": {"name": self.name, "arguments": self.arguments},
        }
        if self.extra_content:
            called["extra_content"] = self.extra_content
        return called


class Chunk(NamedTuple):
    """What one event of the stream carries, in neutral terms."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] | None = None  # deltas, in the shape of Reply.to_message()
    finish_reason: str | None = None  # the server's own word; its wire format maps it
    usage: dict[str, Any] | None = None  # the server's counts, as sent
    model: str | None = None
    id: str | None = None
    error: dict[str, Any] | None = None  # {"message", "code"?, "type"?}: an error event
    done: bool = False  # the stream's own end mark
    notes: tuple[str, ...] = ()  # what the event held that was ignored, and why
    output_tokens: int | None = None  # tokens of the answer, when the server counted them
    extra_content: dict[str, Any] | None = None  # the message's, whole so far (not a delta)


def escapes_surrogate(json_text: str) -> bool:
    """Whether JSON text may decode to a lone surrogate: a quick test before looking for one.
    Only an escape makes one (``"\\ud800"``): decoding to text replaced or refused bad UTF-8."""
    return "\\ud" in json_text or "\\uD" in json_text


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` (as ``json.loads`` made it) holds a lone surrogate, which no UTF-8
    message can carry."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def clean_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD.

    ``json.loads`` turns an escaped lone surrogate (``"\\ud800"``) into a str that UTF-8 cannot
    encode: kept, it would fail every Jupyter message and every later request that carries it.
    """
    if not has_lone_surrogate(text):
        return text
    return _SURROGATE.sub("\ufffd", text)


def scrub(value: Any) -> Any:
    """Parsed JSON with :func:`clean_text` applied to every string, keys included."""
    kind = type(value)
    if kind is str:
        return clean_text(value)
    if kind is dict:
        return {clean_text(key): scrub(item) for key, item in value.items()}
    if kind is list:
        return [scrub(item) for item in value]
    return value


@dataclass
class Reply:
    """Everything received for one answer: content, reasoning, tool calls, usage.

    ``notes`` names what the server sent that was ignored (a usage block that is not token
    counts, a model name that is not a string, …), one line each, at most 20.
    """

    model: str | None = None
    id: str | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    output_tokens: int | None = None  # the answer's tokens, as the server counted them
    tool_calls: list[ToolCall] = field(default_factory=list)
    chunks: int = 0
    notes: list[str] = field(default_factory=list)
    # What the API needs back with the message: {"anthropic": {"thinking_blocks": […]}}
    extra_content: dict[str, Any] | None = None
    # Append-only pieces, and a (count, joined) cache swapped in one assignment, so that reading
    # .content from another thread while the stream appends is safe without a lock.
    _content: list[str] = field(default_factory=list, init=False, repr=False)
    _reasoning: list[str] = field(default_factory=list, init=False, repr=False)
    _content_cache: tuple[int, str] = field(default=(0, ""), init=False, repr=False)
    _content_length: int = field(default=0, init=False, repr=False)
    _reasoning_cache: tuple[int, str] = field(default=(0, ""), init=False, repr=False)

    @property
    def content(self) -> str:
        """The answer's text so far."""
        count, text = self._content_cache
        if count != len(self._content):
            pieces = self._content[count:]
            text += "".join(pieces)
            self._content_cache = (count + len(pieces), text)
        return text

    @property
    def content_length(self) -> int:
        """``len(self.content)``, without joining the pieces."""
        return self._content_length

    @property
    def reasoning(self) -> str:
        """Reasoning ("thinking") text so far, kept apart from the answer."""
        count, text = self._reasoning_cache
        if count != len(self._reasoning):
            pieces = self._reasoning[count:]
            text += "".join(pieces)
            self._reasoning_cache = (count + len(pieces), text)
        return text

    def append_content(self, text: str) -> None:
        """Add ``text`` to the answer (text a stream held back and shows now)."""
        if text:
            self._content.append(text)
            self._content_length += len(text)

    def add(self, chunk: Chunk) -> None:
        """Fold one chunk into the reply."""
        self.extend((chunk,))

    def extend(self, chunks: Iterable[str | Chunk]) -> int:
        """Fold chunks into the reply, a str standing for a chunk with only that text (a wire
        format's commonest event); return how many carried text (as :func:`count_texts`)."""
        texts = 0
        for chunk in chunks:
            self.chunks += 1
            if type(chunk) is str:
                if chunk:
                    self._content.append(chunk)
                    self._content_length += len(chunk)
                    texts += 1
                continue
            assert isinstance(chunk, Chunk)
            content, reasoning = chunk.content, chunk.reasoning
            if content:
                self._content.append(content)
                self._content_length += len(content)
            if reasoning:
                self._reasoning.append(reasoning)
            if content or reasoning:
                texts += 1
            if chunk.tool_calls:
                self._add_tool_calls(chunk.tool_calls)
            if chunk.finish_reason:
                self.finish_reason = chunk.finish_reason
            if chunk.usage:
                self.usage = chunk.usage
            if chunk.output_tokens is not None:
                self.output_tokens = chunk.output_tokens
            if chunk.model and not self.model:
                self.model = chunk.model
            if chunk.id and not self.id:
                self.id = chunk.id
            if chunk.notes:
                self._note(chunk.notes)
            if chunk.extra_content:
                self.extra_content = chunk.extra_content
        return texts

    def _note(self, notes: Iterable[str]) -> None:
        for note in notes:  # the same flaw in every chunk is told once
            if len(self.notes) < _MAX_NOTES and note not in self.notes:
                self.notes.append(note)

    def _add_tool_calls(self, fragments: Iterable[Mapping[str, Any]]) -> None:
        by_index = {call.index: call for call in self.tool_calls}
        for fragment in fragments:
            index = fragment.get("index", len(self.tool_calls))
            call = by_index.get(index)
            if call is None:
                call = by_index[index] = ToolCall(index=index)
                self.tool_calls.append(call)
            if fragment.get("id"):
                call.id = fragment["id"]
            if fragment.get("type"):
                call.type = fragment["type"]
            function = fragment.get("function") or {}
            name = function.get("name")
            if name and name != call.name:
                call.name += name
            arguments = function.get("arguments")
            if arguments:
                call.arguments += arguments
            if fragment.get("extra_content"):
                call.extra_content = fragment["extra_content"]

    def to_message(self) -> Message:
        """The reply as an assistant message, ready to append to a conversation."""
        message: Message = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.extra_content:
            message["extra_content"] = self.extra_content
        return message

    def __str__(self) -> str:
        return self.content


def count_texts(chunks: Iterable[str | Chunk]) -> int:
    """How many of ``chunks`` carry text (content or reasoning): what ``Reply.extend`` returns."""
    return sum(
        1
        for chunk in chunks
        if (chunk if isinstance(chunk, str) else chunk.content or chunk.reasoning)
    )


def excerpt(text: str, limit: int = 200) -> str:
    """A short, single-line excerpt of ``text`` for an error message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
