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

Every value is checked where it enters, since a server's output is untrusted. A field that carries
the answer (content, reasoning, tool calls) with the wrong type is a :class:`ProtocolError` that
names it; one that only describes the answer (usage, model, id, finish reason) is ignored and named
in ``Reply.notes``, so a bad usage block never costs a good answer. Counts above 2**53 - 1 are
ignored too, and lone surrogates (``"\\ud800"``, which no UTF-8 message can carry) become U+FFFD.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ._exceptions import ConfigurationError, ProtocolError

__all__ = [
    "Chunk",
    "Reply",
    "ToolCall",
    "build_payload",
    "clean_text",
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
    notes: tuple[str, ...] = ()  # what the event held that was ignored, and why


_DONE_CHUNK = Chunk(done=True)
_PLAIN = frozenset({"content", "role"})
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_COUNT = 2**53 - 1  # the largest integer that JSON readers in JavaScript keep exact
_MAX_NAME = 256  # a model name, id or finish reason longer than this is not one
_USAGE_DEPTH = 2  # nested objects in usage (completion_tokens_details, …)
_MAX_NOTES = 20
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


def clean_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD.

    ``json.loads`` turns an escaped lone surrogate (``"\\ud800"``) into a str that UTF-8 cannot
    encode: kept, it would fail every Jupyter message and every later request that carries it.
    """
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub("\ufffd", text)


def _scrub(value: Any) -> Any:
    """Parsed JSON with :func:`clean_text` applied to every string, keys included."""
    kind = type(value)
    if kind is str:
        return clean_text(value)
    if kind is dict:
        return {clean_text(key): _scrub(item) for key, item in value.items()}
    if kind is list:
        return [_scrub(item) for item in value]
    return value


def parse_chunk(data: str, event: str = "message") -> Chunk:
    """Parse the data of one SSE event into a :class:`Chunk`.

    Raises :class:`ProtocolError` (with an excerpt) when the data is not a JSON object, or when
    a field that carries the answer (content, reasoning, tool calls) has the wrong type; a bad
    usage block, model name or finish reason is ignored and named in :attr:`Chunk.notes`.
    Lone surrogates in any string are replaced by U+FFFD.
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
    except RecursionError:
        raise _too_deep(data) from None
    if type(obj) is not dict:
        raise ProtocolError(
            f"malformed stream: an event's data is not a JSON object: {excerpt(data)!r}"
        )
    # Text and nothing else, recognised with as few steps as can be. (Model and id are taken
    # from the other chunks: the last one of a stream is never plain.)
    choices = obj.get("choices")
    if type(choices) is list and choices and event == "message":
        choice = choices[0]
        if type(choice) is dict and choice.get("finish_reason") is None:
            delta = choice.get("delta")
            if (
                type(delta) is dict
                and delta
                and delta.keys() <= _PLAIN
                and not obj.get("usage")
                and obj.get("error") is None
            ):
                content = delta.get("content")
                if type(content) is str:
                    return content if content.isascii() else clean_text(content)
                if content is None:
                    return ""
    # Only an escape can make a surrogate: the decoder replaced invalid UTF-8 already.
    if "\\ud" in data or "\\uD" in data:
        try:
            obj = _scrub(obj)
        except RecursionError:
            raise _too_deep(data) from None
    return _checked(obj, data, event)


def _checked(obj: dict[str, Any], data: str, event: str) -> Chunk:
    """Any other event, every field checked."""
    error = obj.get("error")
    if error is not None or event == "error":
        return Chunk(error=_error_object(error, obj, data))
    choices = obj.get("choices")
    if choices is not None and type(choices) is not list:
        raise _wrong("choices", choices, "an array")
    if not choices:  # usage, or nothing, after the answer
        return _chunk(obj, {}, None)
    choice = choices[0]
    if type(choice) is not dict:
        raise _wrong("choices[0]", choice, "an object")
    # A few servers send "message", as a non-streamed completion has it.
    key = "delta" if choice.get("delta") or not choice.get("message") else "message"
    delta = choice.get(key) or {}
    if type(delta) is not dict:
        raise _wrong(f"choices[0].{key}", delta, "an object")
    return _chunk(obj, delta, choice.get("finish_reason"), f"choices[0].{key}")


def _chunk(
    obj: dict[str, Any], delta: dict[str, Any], finish_reason: Any, where: str = "choices[0].delta"
) -> Chunk:
    """A chunk with more than text: every field checked, the bad ones named."""
    notes: list[str] = []
    reasoning = _text(delta.get("reasoning_content"), f"{where}.reasoning_content")
    return Chunk(
        content=_text(delta.get("content"), f"{where}.content"),
        reasoning=reasoning or _text(delta.get("reasoning"), f"{where}.reasoning"),
        tool_calls=_tool_calls(delta.get("tool_calls")),
        finish_reason=_name(finish_reason, "choices[0].finish_reason", notes),
        usage=_usage(obj.get("usage"), notes),
        model=_name(obj.get("model"), "model", notes),
        id=_name(obj.get("id"), "id", notes),
        notes=tuple(notes),
    )


def _text(value: Any, field: str) -> str:
    """A field that carries part of the answer: a string, or absent."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    raise _wrong(field, value, "a string or null")


def _name(value: Any, field: str, notes: list[str]) -> str | None:
    """A short string that describes the reply (model, id, finish reason): when it is not one,
    the reply goes on without it."""
    if value is None or value == "":
        return None
    if type(value) is str and len(value) <= _MAX_NAME:
        return value
    notes.append(_ignored(field, value, f"a string of at most {_MAX_NAME} characters"))
    return None


def _usage(value: Any, notes: list[str]) -> dict[str, Any] | None:
    """Token counts, with every value a count could not be ignored: a bad usage block must not
    cost a good answer."""
    if value is None or value == {}:
        return None
    if type(value) is not dict:
        notes.append(_ignored("usage", value, "an object of token counts"))
        return None
    return _counts(value, "usage", notes, _USAGE_DEPTH) or None


def _counts(obj: dict[str, Any], path: str, notes: list[str], depth: int) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in obj.items():
        kind = type(value)
        if (
            (kind is int and 0 <= value <= _MAX_COUNT)
            or (kind is float and math.isfinite(value))  # some servers add times (Groq)
            or value is None
            or (kind is str and len(value) <= _MAX_NAME)
        ):
            kept[key] = value
        elif kind is dict and depth > 0:  # completion_tokens_details and the like
            kept[key] = _counts(value, f"{path}.{key}", notes, depth - 1)
        else:
            expected = f"a count from 0 to {_MAX_COUNT}"
            notes.append(_ignored(excerpt(f"{path}.{key}", 80), value, expected))
    return kept


def _tool_calls(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if type(value) is not list:
        raise _wrong("choices[0].delta.tool_calls", value, "an array or null")
    return [_fragment(fragment, number) for number, fragment in enumerate(value)] or None


def _fragment(fragment: Any, number: int) -> dict[str, Any]:
    """One tool-call fragment, its fields checked, in the shape :class:`Reply` folds."""
    where = f"choices[0].delta.tool_calls[{number}]"
    if type(fragment) is not dict:
        raise _wrong(where, fragment, "an object")
    index = fragment.get("index")
    if index is not None and type(index) is not int:
        raise _wrong(f"{where}.index", index, "an integer or null")
    function = fragment.get("function") or {}
    if type(function) is not dict:
        raise _wrong(f"{where}.function", function, "an object or null")
    arguments = function.get("arguments")
    if type(arguments) is dict:  # the object itself, as Ollama's own API sends it
        arguments = json.dumps(arguments, ensure_ascii=False)
    clean: dict[str, Any] = {
        "id": _text(fragment.get("id"), f"{where}.id"),
        "type": _text(fragment.get("type"), f"{where}.type"),
        "function": {
            "name": _text(function.get("name"), f"{where}.function.name"),
            "arguments": _text(arguments, f"{where}.function.arguments"),
        },
    }
    if index is not None:
        clean["index"] = index
    return clean


def _error_object(error: Any, obj: dict[str, Any], data: str) -> dict[str, Any]:
    """An error event's message, and its code and type when they are short strings or
    numbers."""
    if type(error) is not dict:
        return {"message": _said(error if error is not None else obj.get("message", data))}
    said: dict[str, Any] = {"message": _said(error.get("message") or error)}
    code = error.get("code")
    if type(code) is str or type(code) is int:
        said["code"] = excerpt(str(code), 100)
    kind = error.get("type")
    if type(kind) is str:
        said["type"] = excerpt(kind, 100)
    return said


def _said(value: Any) -> str:
    return value if type(value) is str else _shown(value)


def _shown(value: Any) -> str:
    """A short excerpt of a parsed JSON value, as JSON."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):
        text = repr(value)
    return excerpt(text, 80)


_KINDS = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    dict: "an object",
    list: "an array",
    type(None): "null",
}


def _described(value: Any) -> str:
    return f"{_KINDS.get(type(value), type(value).__name__)} ({_shown(value)})"


def _wrong(field: str, value: Any, expected: str) -> ProtocolError:
    error = ProtocolError(
        f"malformed stream: the server sent {field} as {_described(value)}, where the Chat "
        f"Completions format has {expected}; what arrived before it is kept in .reply"
    )
    error.field = field
    return error


def _too_deep(data: str) -> ProtocolError:
    return ProtocolError(
        f"malformed stream: an event's data is JSON nested too deeply: {excerpt(data)!r}"
    )


def _ignored(field: str, value: Any, expected: str) -> str:
    return f"ignored {field}: the server sent {_described(value)}, expected {expected}"


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
    tool_calls: list[ToolCall] = field(default_factory=list)
    chunks: int = 0
    notes: list[str] = field(default_factory=list)
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
            if chunk.notes:
                self._note(chunk.notes)
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

    def to_message(self) -> Message:
        """The reply as an assistant message, ready to append to a conversation."""
        message: Message = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        return message

    def __str__(self) -> str:
        return self.content


def normalize_messages(prompt_or_messages: str | Sequence[Mapping[str, Any]]) -> list[Message]:
    """A prompt string becomes one user message; a message list is checked and copied, lone
    surrogates replaced (UTF-8 cannot encode them: the request would fail)."""
    if isinstance(prompt_or_messages, str):
        return [{"role": "user", "content": clean_text(prompt_or_messages)}]
    messages = [_scrub(dict(message)) for message in prompt_or_messages]
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
