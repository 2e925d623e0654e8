"""Anthropic Messages (``api="anthropic"``): the request, the events of its stream, its whole
answer, its error bodies and its model list.

Pure: dictionaries and strings in, objects out. No I/O, no httpx, no asyncio.

The stream is a sequence of typed events, each named (``event:``) as its data's ``type``
(https://docs.anthropic.com/en/docs/build-with-claude/streaming)::

    message_start        {"message": {"id": "msg_…", "model": "claude-…", "usage": {…}}}
    content_block_start  {"index": 0, "content_block": {"type": "text", "text": ""}}
    content_block_delta  {"index": 0, "delta": {"type": "text_delta", "text": "Hel"}}
    content_block_start  {"index": 1, "content_block": {"type": "tool_use", "id": "toolu_…",
                          "name": "f", "input": {}}}
    content_block_delta  {"index": 1, "delta": {"type": "input_json_delta", "partial_json": "{"}}
    content_block_stop   {"index": 1}
    message_delta        {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}}
    message_stop         {}

``message_stop`` is the end mark: the stop reason and the usage merged from ``message_start``
and ``message_delta`` are reported with it, so a stream cut before it has no finish reason (it
is truncated). An ``error`` event (``overloaded_error``, …) is an error; ``ping`` and unknown
events are ignored. Values are checked as in :mod:`.chat`: a field that carries the answer with
the wrong type is a ProtocolError that names it, a describing one is ignored and noted.

Thinking blocks in a row are paragraphs of ``Chunk.reasoning`` ("\n\n" apart). With extended
thinking on, the API refuses the tool results of a turn whose thinking blocks are not sent
back, so each signed thinking block (its text and ``signature_delta``), once stopped, and each
``redacted_thinking`` block (its ``data``) is kept, in order, in the message's extra content:
``Chunk.extra_content`` and ``Reply.to_message()["extra_content"]`` are
``{"anthropic": {"thinking_blocks": [{"type": "thinking", "thinking", "signature"} |
{"type": "redacted_thinking", "data"}, …]}}``, and :func:`build_body` puts those blocks first
in the assistant message's content. A thinking block without a signature is reasoning only.
Server tools' blocks (``server_tool_use``, ``mcp_tool_use``, their results) are not part of the
answer: their input is no tool call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .._exceptions import ConfigurationError
from .._reply import Chunk, clean_text, escapes_surrogate, excerpt, scrub
from .._secrets import basic_credentials
from . import chat
from ._base import EndKind, Framing, Parse, Target, WireRequest
from ._common import items
from .chat import (
    CommonWays,
    _error_object,
    _ignored,
    _name,
    _output_tokens,
    _parsed,
    _usage,
    _wrong,
    load_object,
    refuse_reserved,
)
from .responses import plain_text

__all__ = ["WIRE", "AnthropicMessages", "build_body", "headers"]

API = "Anthropic Messages"  # the format's name in messages
PATH = "/v1/messages"
BASE_URL = "https://api.anthropic.com"
VERSION = "2023-06-01"  # the anthropic-version header the SDK sends
DEFAULT_MAX_TOKENS = 4096  # the API requires max_tokens; this when the caller gives none
END = "message_stop"
_RESERVED = ("model", "messages", "stream")
_RENAMED = {"max_output_tokens": "max_tokens", "max_completion_tokens": "max_tokens"}
_ENDS: dict[str, EndKind] = {
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
}


# A text delta exactly as the API writes it, the text's JSON string literal between these two, is
# recognised by comparison and only the literal decoded (json's C string scanner): a third of
# the cost of a full parse. Any other data (other key order, more keys, white space) is parsed
# whole, and so is a literal the scanner refuses, for the full parse's error.
_DELTA_HEAD = '{"type":"content_block_delta","index":'
_TEXT_HEAD = ',"delta":{"type":"text_delta","text":"'
_AT_INDEX = len(_DELTA_HEAD)
_AT_ONE_DIGIT_TEXT = _AT_INDEX + 1 + len(_TEXT_HEAD)
_MAX_DIGITS = 18  # an index with more digits than this takes the full parse
_DIGITS = "0123456789"
_scan_string: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


def _text_start(data: str) -> int:
    """Where the text's literal begins in a text delta of the API's own shape, else -1."""
    if data.startswith(_TEXT_HEAD, _AT_INDEX + 1) and data[_AT_INDEX] in _DIGITS:
        return _AT_ONE_DIGIT_TEXT  # the commonest: blocks 0 to 9
    at = data.find(_TEXT_HEAD, _AT_INDEX, _AT_INDEX + _MAX_DIGITS + len(_TEXT_HEAD))
    digits = data[_AT_INDEX:at]
    # A JSON integer from 0 without leading zeros, as the full parse would accept.
    if at < 0 or not (digits.isascii() and digits.isdigit()) or digits[0] == "0" != digits:
        return -1
    return at + len(_TEXT_HEAD)


def _text(value: Any, field: str) -> str:
    return chat._text(value, field, API)


def _index(obj: dict[str, Any]) -> int:
    """A content block's index, which keys a tool call's fragments."""
    index = obj.get("index")
    if type(index) is not int or index < 0:
        raise _wrong("index", index, "an integer from 0", API)
    return index


def _arguments(value: Any, field: str) -> str:
    """A tool_use block's input (an object) as the JSON text of a tool call's arguments."""
    if value is None or value == {}:
        return ""
    if type(value) is not dict:
        raise _wrong(field, value, "an object", API)
    return json.dumps(value, ensure_ascii=False)


def _extra(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Thinking blocks to send back, as a message's extra content."""
    return {"anthropic": {"thinking_blocks": blocks}}


class _Parser:
    """One stream's parse: it keeps the usage so far, the stop reason (reported with the end
    mark), which tool_use blocks got arguments, which thinking block gave text last, and the
    thinking blocks to send back."""

    __slots__ = ("_args", "_kept", "_open", "_stop_reason", "_thinking", "_tools", "_usage")

    def __init__(self) -> None:
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._tools: set[int] = set()  # indices of tool_use blocks
        self._args: set[int] = set()  # … of those whose input arrived
        self._thinking: Any = None  # the index of the thinking block that gave text last
        self._open: dict[int, tuple[list[str], list[str]]] = {}  # thinking: texts, signature
        self._kept: list[dict[str, Any]] = []  # stopped signed thinking blocks, redacted ones

    def __call__(self, data: str, event: str) -> str | Chunk:
        if data.startswith(_DELTA_HEAD) and data.endswith('"}}'):  # the hot path
            start = _text_start(data)
            if start > 0:
                try:
                    text, end = _scan_string(data, start)
                except ValueError:  # a control character or a bad escape
                    end = -1
                if end == len(data) - 2:  # the literal ends the data: nothing else in it
                    if end - start - 1 == len(text):  # no escape, so no escaped surrogate
                        return text
                    return clean_text(text) if escapes_surrogate(data) else text
        return self.parse_whole_event(data, event)

    def parse_whole_event(self, data: str, event: str) -> str | Chunk:
        """Any event, its data parsed whole and every value checked (what the hot path in
        ``__call__`` gives for a text delta, it gives too)."""
        obj = load_object(data)
        kind = obj.get("type")
        if type(kind) is not str:
            kind = event
        if kind == "content_block_delta":
            delta = obj.get("delta")
            if type(delta) is not dict:
                raise _wrong("delta", delta, "an object", API)
            delta_kind = delta.get("type")
            if delta_kind == "text_delta":  # in another shape than __call__'s hot path takes
                text = delta.get("text")
                if type(text) is str:
                    return text  # load_object has replaced lone surrogates
                raise _wrong("delta.text", text, "a string", API)
            if delta_kind == "thinking_delta":
                return self._thought(obj, _text(delta.get("thinking"), "delta.thinking"))
            if delta_kind == "input_json_delta":
                index = _index(obj)
                partial = _text(delta.get("partial_json"), "delta.partial_json")
                if index not in self._tools:
                    return ""  # a server tool's input (server_tool_use, …): not a call to make
                if partial:
                    self._args.add(index)
                return Chunk(tool_calls=[{"index": index, "function": {"arguments": partial}}])
            if delta_kind == "signature_delta":
                signature = _text(delta.get("signature"), "delta.signature")
                thought = self._open.get(obj["index"]) if type(obj.get("index")) is int else None
                if thought is not None:
                    thought[1].append(signature)
            return ""  # citations_delta, …
        if kind == "content_block_start":
            return self._start(obj)
        if kind == "content_block_stop":
            block = obj.get("index")
            if type(block) is not int:
                return ""
            if block in self._tools and block not in self._args:
                self._args.add(block)  # a tool without arguments: its input is {}
                return Chunk(tool_calls=[{"index": block, "function": {"arguments": "{}"}}])
            return self._stop_thinking(block)
        if kind == "message_start":
            return self._message_start(obj)
        if kind == "message_delta":
            notes: list[str] = []
            delta = obj.get("delta")
            if type(delta) is dict:
                reason = _name(delta.get("stop_reason"), "delta.stop_reason", notes)
                self._stop_reason = reason or self._stop_reason
            elif delta is not None:
                notes.append(_ignored("delta", delta, "an object"))
            return self._counted(obj.get("usage"), notes)
        if kind == END:
            return Chunk(
                done=True,
                finish_reason=self._stop_reason,
                usage=dict(self._usage) or None,
                output_tokens=self._output_tokens(),
            )
        if kind == "error" or event == "error":
            return Chunk(error=_error_object(obj.get("error"), obj, data))
        return ""  # ping, and events added since

    def _start(self, obj: dict[str, Any]) -> str | Chunk:
        block = obj.get("content_block")
        if type(block) is not dict:
            raise _wrong("content_block", block, "an object", API)
        kind = block.get("type")
        if kind == "text":
            return _text(block.get("text"), "content_block.text")
        if kind == "thinking":
            text = _text(block.get("thinking"), "content_block.thinking")
            signature = _text(block.get("signature"), "content_block.signature")
            if type(obj.get("index")) is int:
                self._open[obj["index"]] = ([], [signature])
            return self._thought(obj, text)
        if kind == "redacted_thinking":
            data = _text(block.get("data"), "content_block.data")
            if not data:
                return ""
            self._kept.append({"type": "redacted_thinking", "data": data})
            return Chunk(extra_content=_extra(list(self._kept)))
        if kind != "tool_use":
            return ""  # server tools' blocks: not part of the answer
        index = _index(obj)
        self._tools.add(index)
        arguments = _arguments(block.get("input"), "content_block.input")
        if arguments:
            self._args.add(index)
        name = _text(block.get("name"), "content_block.name")
        fragment = {
            "index": index,
            "id": _text(block.get("id"), "content_block.id"),
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        return Chunk(tool_calls=[fragment])

    def _thought(self, obj: dict[str, Any], text: str) -> Chunk:
        index = obj.get("index")
        thought = self._open.get(index) if type(index) is int else None
        if thought is not None:
            thought[0].append(text)
        if text and self._thinking is not None and index != self._thinking:
            text = "\n\n" + text  # a new thinking block is a new paragraph, as Responses'
        if text:
            self._thinking = index
        return Chunk(reasoning=text)

    def _stop_thinking(self, index: int) -> str | Chunk:
        """A stopped thinking block kept to send back, when it was signed."""
        thought = self._open.pop(index, None)
        signature = "".join(thought[1]) if thought else ""
        if not (thought and signature):
            return ""
        block = {"type": "thinking", "thinking": "".join(thought[0]), "signature": signature}
        self._kept.append(block)
        return Chunk(extra_content=_extra(list(self._kept)))

    def _message_start(self, obj: dict[str, Any]) -> Chunk:
        notes: list[str] = []
        message = obj.get("message")
        if type(message) is not dict:
            notes.append(_ignored("message", message, "an object"))
            return Chunk(notes=tuple(notes))
        counted = self._counted(message.get("usage"), notes)
        return counted._replace(
            model=_name(message.get("model"), "message.model", notes),
            id=_name(message.get("id"), "message.id", notes),
            notes=tuple(notes),
        )

    def _counted(self, value: Any, notes: list[str]) -> Chunk:
        """Usage merged into the usage so far (message_delta's counts are cumulative; a null
        one leaves the count before it), reported whole."""
        usage = _usage(value, notes)
        if usage:
            self._usage.update((key, count) for key, count in usage.items() if count is not None)
        return Chunk(
            usage=dict(self._usage) or None,
            output_tokens=self._output_tokens(),
            notes=tuple(notes),
        )

    def _output_tokens(self) -> int | None:
        return _output_tokens(self._usage, "output_tokens")


def _whole(message: dict[str, Any]) -> Chunk:
    """A whole Message object as one Chunk."""
    content: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for number, where, block in items(message, "content", API):
        kind = block.get("type")
        if kind == "text":
            content.append(_text(block.get("text"), f"{where}.text"))
        elif kind == "thinking":
            text = _text(block.get("thinking"), f"{where}.thinking")
            reasoning.append(text)
            signature = _text(block.get("signature"), f"{where}.signature")
            if signature:
                kept.append({"type": "thinking", "thinking": text, "signature": signature})
        elif kind == "redacted_thinking":
            data = _text(block.get("data"), f"{where}.data")
            if data:
                kept.append({"type": "redacted_thinking", "data": data})
        elif kind == "tool_use":
            calls.append(
                {
                    "index": number,
                    "id": _text(block.get("id"), f"{where}.id"),
                    "type": "function",
                    "function": {
                        "name": _text(block.get("name"), f"{where}.name"),
                        "arguments": _arguments(block.get("input"), f"{where}.input") or "{}",
                    },
                }
            )
    notes: list[str] = []
    usage = _usage(message.get("usage"), notes)
    return Chunk(
        content="".join(content),
        reasoning="\n\n".join(text for text in reasoning if text),
        tool_calls=calls or None,
        finish_reason=_name(message.get("stop_reason"), "stop_reason", notes),
        usage=usage,
        output_tokens=_output_tokens(usage, "output_tokens"),
        model=_name(message.get("model"), "model", notes),
        id=_name(message.get("id"), "id", notes),
        notes=tuple(notes),
        extra_content=_extra(kept) if kept else None,
    )


# -- the request ------------------------------------------------------------------------------


def _host(base: str) -> str:
    """A base URL (a path, no query) without the ``/v1`` that a paste of OpenAI's shape ends in:
    the paths below add it."""
    return base.rstrip("/").removesuffix("/v1")


def _url(target: Target, path: str) -> str:
    """``path`` below the base URL, a ``/v1`` at its end taken off (the query kept)."""
    parts = urlsplit(target.url(""))
    return urlunsplit(parts._replace(path=_host(parts.path) + path))


def headers(target: Target, accept: str = "text/event-stream") -> dict[str, str]:
    """The request headers: the API key as ``x-api-key``, else the base URL's user info as
    Basic; the API version the SDK sends."""
    sent = {"Accept": accept, "anthropic-version": VERSION}
    if target.api_key:
        sent["x-api-key"] = target.api_key
    elif target.url_credentials:
        sent["Authorization"] = basic_credentials(target.url_credentials)
    return sent


def build_body(
    messages: list[dict[str, Any]], model: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON body of a streaming ``POST /v1/messages``: system messages become ``system``,
    Chat-shaped tool calls and results ``tool_use`` and ``tool_result`` blocks, Chat-shaped
    tools Anthropic's; an assistant message's thinking blocks (its extra content) go first in
    its content."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for number, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        thought = _thinking_blocks(message, number) if role == "assistant" else []
        if role in ("system", "developer"):
            system.append(plain_text(content))
        elif role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id") or "",
                "content": content if isinstance(content, str) else plain_text(content),
            }
            last = turns[-1] if turns else None
            if last and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(result)  # the results of one turn's calls, together
            else:
                turns.append({"role": "user", "content": [result]})
        elif role == "assistant" and (message.get("tool_calls") or thought):
            blocks = _content(content) if content else []
            if isinstance(blocks, str):
                blocks = [{"type": "text", "text": blocks}]
            blocks = [*thought, *blocks]
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id") or "",
                        "name": function.get("name") or "",
                        "input": _input(function.get("arguments")),
                    }
                )
            turns.append({"role": "assistant", "content": blocks})
        else:
            turns.append({"role": role, "content": _content(content)})
    body: dict[str, Any] = {
        "model": model,
        "messages": turns,
        "max_tokens": DEFAULT_MAX_TOKENS,
        **params,
        "stream": True,
    }
    if "tools" in params:
        body["tools"] = [_tool(tool) for tool in params["tools"] or ()]
    if "tool_choice" in params:
        body["tool_choice"] = _tool_choice(params["tool_choice"])
    if system:
        given = params.get("system")
        if isinstance(given, list):  # blocks (with cache_control, say): the messages' after
            body["system"] = [*given, {"type": "text", "text": "\n\n".join(system)}]
        else:
            body["system"] = "\n\n".join([given, *system] if given else system)
    return body


def _thinking_blocks(message: Mapping[str, Any], number: int) -> list[Any]:
    """The thinking blocks an assistant message carries back (``Reply.to_message()``'s)."""
    extra = message.get("extra_content")
    anthropic = extra.get("anthropic") if isinstance(extra, dict) else None
    if not isinstance(anthropic, dict) or anthropic.get("thinking_blocks") is None:
        return []
    blocks = anthropic["thinking_blocks"]
    kinds = ("thinking", "redacted_thinking")
    if isinstance(blocks, list) and all(
        isinstance(block, dict) and block.get("type") in kinds for block in blocks
    ):
        return blocks
    raise ConfigurationError(
        f"messages[{number}]: extra_content.anthropic.thinking_blocks is not a list of thinking "
        f"and redacted_thinking blocks ({excerpt(repr(blocks))}). Fix: send the assistant "
        "message back as Reply.to_message() gave it, or leave its extra_content out"
    )


def _input(arguments: Any) -> Any:
    """A Chat tool call's arguments (JSON text) as a tool_use block's input (an object)."""
    if not isinstance(arguments, str):
        return arguments if isinstance(arguments, dict) else {}
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ConfigurationError(
            "a tool call's arguments in the messages are not a JSON object, which Anthropic's "
            f"tool_use input must be: {arguments[:80]!r}. Fix: correct them, or leave the call "
            "out of the messages"
        )
    return value


def _content(content: Any) -> Any:
    """Chat content parts as Anthropic's: text and image URLs reshaped."""
    if not isinstance(content, list):
        return "" if content is None else content
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": part.get("text") or ""})
        elif kind == "image_url":
            image = part.get("image_url")
            url = str(image.get("url") if isinstance(image, dict) else image)
            if url.startswith("data:"):
                head, _, data = url.partition(",")
                media = head.removeprefix("data:").split(";")[0]
                source = {"type": "base64", "media_type": media, "data": data}
            else:
                source = {"type": "url", "url": url}
            parts.append({"type": "image", "source": source})
        else:
            parts.append(part)
    return parts


def _tool(tool: Any) -> Any:
    """A Chat-shaped tool as Anthropic's (name, description, input_schema); any other as
    given."""
    if not (isinstance(tool, dict) and isinstance(tool.get("function"), dict)):
        return tool
    function = tool["function"]
    shaped = {"name": function.get("name")}
    if function.get("description"):
        shaped["description"] = function["description"]
    shaped["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return shaped


def _tool_choice(choice: Any) -> Any:
    """A Chat tool_choice as Anthropic's; any other as given."""
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        return {"type": "tool", "name": choice["function"].get("name")}
    return choice


class AnthropicMessages(CommonWays):
    """``POST {host}/v1/messages`` with ``stream: true``; typed SSE events to
    ``message_stop``."""

    name = "anthropic"
    framing: Framing = "sse"
    path = PATH
    ends = _ENDS
    root = ""
    default_base_url = BASE_URL
    key_vars: tuple[str, ...] = ("ANTHROPIC_API_KEY",)
    key_header = "x-api-key"  # as headers() sends it
    hosts: tuple[str, ...] = ("api.anthropic.com",)
    end_mark = END
    described = "an Anthropic Messages API"
    url_hint = (
        "Is the base URL the host of an Anthropic Messages API, without /v1 "
        "(https://api.anthropic.com)?"
    )

    def check_params(self, params: Mapping[str, Any]) -> None:
        refuse_reserved(params, _RESERVED)
        for name, instead in _RENAMED.items():
            if name in params:
                raise ConfigurationError(
                    f"{name}= is not an Anthropic Messages option; use {instead}= instead "
                    f"({instead}={params[name]!r})"
                )

    def request(
        self,
        target: Target,
        model: str,
        messages: list[dict[str, Any]],
        params: Mapping[str, Any],
        *,
        fallback: bool = False,
    ) -> WireRequest:
        return WireRequest(_url(target, PATH), headers(target), build_body(messages, model, params))

    def parser(self) -> Parse:
        return _Parser()

    def parse_whole(self, body: str) -> Chunk | None:
        obj = _parsed(body)
        if type(obj) is not dict or obj.get("type") != "message":
            return None
        return _whole(scrub(obj))

    def not_found(self, where: str, said_part: str, model: str, source: str) -> str:
        return (
            f"404 from {_host(where)}{PATH}{said_part}. Fix: the base URL ({source}) should be "
            f"the API's host, as the Anthropic SDK takes it (such as {BASE_URL}); check that "
            f"model {model!r} exists."
        )

    def models_request(self, target: Target) -> WireRequest:
        # The list comes in pages of 20 unless asked for more; 1000 is the most a page holds.
        parts = urlsplit(_url(target, "/v1/models"))
        query = "&".join(part for part in (parts.query, "limit=1000") if part)
        url = urlunsplit(parts._replace(query=query))
        return WireRequest(url, headers(target, "application/json"))

    def parse_models(self, body: str, where: str) -> list[str]:
        return chat.WIRE.parse_models(body, f"{_host(where)}/v1")


WIRE = AnthropicMessages()
