"""OpenAI-compatible Chat Completions: the request payload and the chunks of its event stream.

Pure: dictionaries and strings in, objects out. No I/O, no httpx, no asyncio.

The stream is a sequence of ``data:`` events, each a ``chat.completion.chunk`` object, ended by
``data: [DONE]`` (https://platform.openai.com/docs/api-reference/chat-streaming)::

    {"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": null}], ...}
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], ...}
    {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 12, ...}}
    [DONE]

Servers differ at the edges, and all of these are accepted: reasoning text as
``delta.reasoning_content`` (DeepSeek, vLLM) or ``delta.reasoning`` (Ollama, OpenRouter), tool
calls as ``delta.tool_calls`` fragments keyed by ``index``, usage on the last content chunk (vLLM
with continuous usage), and ``{"error": {...}}`` events mid-stream (OpenAI, vLLM, LiteLLM).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ._exceptions import ConfigurationError, ProtocolError

__all__ = [
    "Chunk",
    "Reply",
    "ToolCall",
    "build_payload",
    "normalize_messages",
    "parse_chunk",
    "parse_event",
]

Message = dict[str, Any]

DONE = "[DONE]"


@dataclass(slots=True)
class ToolCall:
    """One tool call, assembled from its streamed fragments."""

    index: int
    id: str = ""
    type: str = "function"
    name: str = ""
    arguments: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "function": {"name": self.name, "arguments": self.arguments},
        }


class Chunk(NamedTuple):
    """What one event of the stream carries."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    model: str | None = None
    id: str | None = None
    error: dict[str, Any] | None = None
    done: bool = False


_DONE_CHUNK = Chunk(done=True)
_PLAIN = frozenset({"content", "role"})
# json.loads() looks for white space around the value with a regex on each call; chunks never
# have any, so the C scanner is called directly and json.loads() only handles the rest (white
# space, errors). About a third less time per chunk.
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _loads(data: str) -> Any:
    try:
        value, end = _scan_json(data, 0)
    except (StopIteration, ValueError):
        return json.loads(data)
    return value if end == len(data) else json.loads(data)


def parse_chunk(data: str, event: str = "message") -> Chunk:
    """Parse the data of one SSE event into a :class:`Chunk`.

    Raises :class:`ProtocolError` (with an excerpt) when the data is not a JSON object.
    """
    parsed = parse_event(data, event)
    return Chunk(parsed) if isinstance(parsed, str) else parsed


def parse_event(data: str, event: str = "message") -> str | Chunk:
    """Like :func:`parse_chunk`, but a chunk that carries only text (the commonest by far)
    comes back as that text alone, a str, which the stream's hot loop handles cheapest."""
    if data == DONE:
        return _DONE_CHUNK
    try:
        obj = _loads(data)
    except ValueError as exc:
        raise ProtocolError(
            f"malformed stream: an event's data is not JSON: {excerpt(data)!r}"
        ) from exc
    if not isinstance(obj, dict):
        raise ProtocolError(
            f"malformed stream: an event's data is not a JSON object: {excerpt(data)!r}"
        )

    error = obj.get("error")
    if error is not None or event == "error":
        if not isinstance(error, dict):
            error = {"message": str(error if error is not None else obj.get("message", data))}
        return Chunk(error=error)

    usage = obj.get("usage") or None
    choices = obj.get("choices")
    if not choices:
        return Chunk(usage=usage, model=obj.get("model"), id=obj.get("id"))
    choice = choices[0]
    delta = choice.get("delta") or choice.get("message")  # a few servers send "message"
    finish_reason = choice.get("finish_reason")
    if not delta:
        return Chunk(
            finish_reason=finish_reason, usage=usage, model=obj.get("model"), id=obj.get("id")
        )
    if usage is None and finish_reason is None and delta.keys() <= _PLAIN:
        # Text and nothing else. (Model and id are taken from the other chunks: the last
        # one of a stream is never plain.)
        content: str = delta.get("content") or ""
        return content
    return Chunk(
        content=delta.get("content") or "",
        reasoning=delta.get("reasoning_content") or delta.get("reasoning") or "",
        tool_calls=delta.get("tool_calls") or None,
        finish_reason=finish_reason,
        usage=usage,
        model=obj.get("model"),
        id=obj.get("id"),
    )


@dataclass
class Reply:
    """Everything received for one answer: content, reasoning, tool calls, usage."""

    model: str | None = None
    id: str | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    chunks: int = 0
    # Append-only pieces, and a (count, joined) cache swapped in one assignment, so that reading
    # .content from another thread while the stream appends is safe without a lock.
    _content: list[str] = field(default_factory=list, init=False, repr=False)
    _reasoning: list[str] = field(default_factory=list, init=False, repr=False)
    _content_cache: tuple[int, str] = field(default=(0, ""), init=False, repr=False)
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
    def reasoning(self) -> str:
        """Reasoning ("thinking") text so far, kept apart from the answer."""
        count, text = self._reasoning_cache
        if count != len(self._reasoning):
            pieces = self._reasoning[count:]
            text += "".join(pieces)
            self._reasoning_cache = (count + len(pieces), text)
        return text

    def add(self, chunk: Chunk) -> None:
        """Fold one chunk into the reply."""
        self.extend((chunk,))

    def extend(self, chunks: Iterable[str | Chunk]) -> int:
        """Fold chunks into the reply, a str standing for a chunk with only that text (see
        :func:`parse_event`); return how many carried text (content or reasoning)."""
        texts = 0
        for chunk in chunks:
            self.chunks += 1
            if type(chunk) is str:
                if chunk:
                    self._content.append(chunk)
                    texts += 1
                continue
            assert isinstance(chunk, Chunk)
            content, reasoning = chunk.content, chunk.reasoning
            if content:
                self._content.append(content)
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
            if chunk.model and not self.model:
                self.model = chunk.model
            if chunk.id and not self.id:
                self.id = chunk.id
        return texts

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

    def to_message(self) -> Message:
        """The reply as an assistant message, ready to append to a conversation."""
        message: Message = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        return message

    def __str__(self) -> str:
        return self.content


def normalize_messages(prompt_or_messages: str | Sequence[Mapping[str, Any]]) -> list[Message]:
    """A prompt string becomes one user message; a message list is checked and copied."""
    if isinstance(prompt_or_messages, str):
        return [{"role": "user", "content": prompt_or_messages}]
    messages = [dict(message) for message in prompt_or_messages]
    if not messages:
        raise ConfigurationError("no messages: pass a prompt string or a non-empty message list")
    for message in messages:
        if "role" not in message:
            raise ConfigurationError(
                f"a message has no 'role': {excerpt(repr(message))}; "
                "use {'role': 'user', 'content': '...'}"
            )
    return messages


def build_payload(
    messages: list[Message], model: str, *, include_usage: bool = True, **params: Any
) -> dict[str, Any]:
    """The JSON body of a streaming ``POST /chat/completions`` request."""
    payload: dict[str, Any] = {"model": model, "messages": messages, **params, "stream": True}
    if include_usage:
        payload["stream_options"] = {"include_usage": True}
    return payload


def excerpt(text: str, limit: int = 200) -> str:
    """A short, single-line excerpt of ``text`` for an error message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
