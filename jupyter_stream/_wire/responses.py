"""OpenAI Responses (``api="responses"``): the request, the events of its stream, its whole
answer, its error bodies and its model list.

Pure: dictionaries and strings in, objects out. No I/O, no httpx, no asyncio.

The stream is a sequence of typed events, each named (``event:``) as its data's ``type``
(https://platform.openai.com/docs/api-reference/responses-streaming)::

    response.created                        {"response": {"id": "resp_…", "model": "gpt-4.1"}}
    response.output_item.added              {"output_index": 1, "item": {"type": "function_call",
                                             "call_id": "call_…", "name": "f", "arguments": ""}}
    response.output_text.delta              {"output_index": 0, "delta": "Hel"}
    response.reasoning_summary_text.delta   {"output_index": 0, "summary_index": 0, "delta": "…"}
    response.function_call_arguments.delta  {"output_index": 1, "delta": "{\\"city\\""}
    response.completed                      {"response": {"status": "completed", "usage": {…}}}

``response.completed`` (or ``response.incomplete``) is the end mark; ``response.failed`` and an
``error`` event are errors; every other event (``response.in_progress``, ``….done``, …) is
ignored. Values are checked as in :mod:`.chat`: a field that carries the answer with the wrong
type is a ProtocolError that names it, a describing one is ignored and noted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from .._exceptions import APIError, ConfigurationError
from .._reply import Chunk, clean_text, escapes_surrogate, excerpt, scrub
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
    headers,
    load_object,
    refuse_reserved,
)

__all__ = ["WIRE", "Responses", "build_body"]

API = "Responses"  # the format's name in messages
PATH = "/responses"
END = "response.completed"
_RESERVED = ("model", "input", "stream", "messages")
_RENAMED = {"max_tokens": "max_output_tokens", "max_completion_tokens": "max_output_tokens"}
# An incomplete response's reason; any other finish completed.
_ENDS: dict[str, EndKind] = {
    "max_output_tokens": "length",
    "content_filter": "content_filter",
    "incomplete": "length",  # incomplete without a reason: cut short all the same
}
_TEXT = "response.output_text.delta"
_REASONING = frozenset({"response.reasoning_summary_text.delta", "response.reasoning_text.delta"})
_DESCRIBING = frozenset({"response.created", "response.in_progress"})
_ENDING = frozenset({"response.completed", "response.incomplete"})


# A text delta exactly as OpenAI writes it (these keys in this order, no white space, ids without
# escapes) is recognised by a regular expression up to the delta's JSON string literal, which
# json's C string scanner decodes, and one after it: half the cost of a full parse. Any other
# data (other key order, more keys, white space) is parsed whole, and so is a literal the
# scanner refuses, for the full parse's error.
_INT = r"(?:0|[1-9][0-9]{0,17})"  # a JSON integer from 0 (ASCII digits, no leading zero)
_STR = r'"[^"\\\x00-\x1f]*"'  # a JSON string without escapes
_TEXT_HEAD = re.compile(
    r'\{"type":"response\.output_text\.delta"'
    rf',"sequence_number":{_INT},"item_id":{_STR},"output_index":{_INT},"content_index":{_INT}'
    r',"delta":"'
).match
_TEXT_TAIL = re.compile(rf'(?:,"logprobs":\[\])?(?:,"obfuscation":{_STR})?\}}').fullmatch
_scan_string: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


def _text(value: Any, field: str) -> str:
    return chat._text(value, field, API)


def _index(obj: dict[str, Any]) -> int:
    """The output index of an event, which keys a tool call's fragments."""
    index = obj.get("output_index")
    if type(index) is not int or index < 0:
        raise _wrong("output_index", index, "an integer from 0", API)
    return index


class _Parser:
    """One stream's parse: it keeps which tool calls got their arguments, and which reasoning
    part streamed last."""

    __slots__ = ("_calls", "_part")

    def __init__(self) -> None:
        self._calls: dict[int, bool] = {}  # output index of a function call -> arguments arrived
        self._part: tuple[Any, ...] | None = None  # (output, part) of the last reasoning delta

    def __call__(self, data: str, event: str) -> str | Chunk:
        head = _TEXT_HEAD(data)
        if head is not None:  # the hot path
            start = head.end()
            try:
                text, end = _scan_string(data, start)
            except ValueError:  # a control character or a bad escape
                end = -1
            if end > 0 and _TEXT_TAIL(data, end) is not None:
                if end - start - 1 == len(text):  # no escape, so no escaped surrogate
                    return text
                return clean_text(text) if escapes_surrogate(data) else text
        return self.parse_whole_event(data, event)

    def parse_whole_event(self, data: str, event: str) -> str | Chunk:
        """Any event, its data parsed whole and every value checked (what the hot path in
        ``__call__`` gives for a text delta, it gives too)."""
        if data == "[DONE]":  # not the Responses API's, but some servers add it: harmless
            return ""
        obj = load_object(data)
        kind = obj.get("type")
        if type(kind) is not str:
            kind = event
        if kind == _TEXT:  # in another shape than _TEXT_HEAD's
            delta = obj.get("delta")
            if type(delta) is str:
                return delta  # load_object has replaced lone surrogates
            raise _wrong("delta", delta, "a string", API)
        if kind in _REASONING:
            return Chunk(reasoning=self._reasoning(obj))
        if kind == "response.refusal.delta":  # the model's own words, shown as its answer
            return _text(obj.get("delta"), "delta")
        if kind == "response.output_item.added":
            return self._item(obj, added=True)
        if kind == "response.function_call_arguments.delta":
            index = _index(obj)
            arguments = _text(obj.get("delta"), "delta")
            if arguments:
                self._calls[index] = True
            return Chunk(tool_calls=[{"index": index, "function": {"arguments": arguments}}])
        if kind == "response.output_item.done":
            return self._item(obj, added=False)
        if kind in _DESCRIBING:
            notes: list[str] = []
            response = _response(obj, notes)
            return Chunk(
                model=_name(response.get("model"), "response.model", notes),
                id=_name(response.get("id"), "response.id", notes),
                notes=tuple(notes),
            )
        if kind in _ENDING:
            return _ended(obj, kind)
        if kind == "response.failed":
            return Chunk(error=_failure(_response(obj, []), data))
        if kind == "error" or event == "error":
            error = obj.get("error")
            said = _error_object(error if type(error) is dict else obj, obj, data)
            if said.get("type") == "error":  # the event's own type, not the error's
                del said["type"]
            return Chunk(error=said)
        return ""  # content_part.added, output_text.done, annotations, …: nothing new

    def _reasoning(self, obj: dict[str, Any]) -> str:
        text = _text(obj.get("delta"), "delta")
        part = (obj.get("output_index"), obj.get("summary_index"), obj.get("content_index"))
        if self._part is not None and part != self._part and text:
            text = "\n\n" + text  # a new summary part is a new paragraph
        if text:
            self._part = part
        return text

    def _item(self, obj: dict[str, Any], *, added: bool) -> str | Chunk:
        """An output item begins (added) or ends (done); only function calls matter. A call
        whose arguments never streamed takes them whole from its item."""
        item = obj.get("item")
        if type(item) is not dict:
            raise _wrong("item", item, "an object", API)
        if item.get("type") != "function_call":
            return ""
        index = _index(obj)
        streamed = self._calls.get(index)
        if streamed:
            return ""
        arguments = _text(item.get("arguments"), "item.arguments")
        self._calls[index] = bool(arguments)
        fragment: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
        if added or streamed is None:  # the call was not announced: all of it, here
            fragment["id"] = _text(item.get("call_id"), "item.call_id")
            fragment["type"] = "function"
            fragment["function"]["name"] = _text(item.get("name"), "item.name")
        elif not arguments:
            return ""
        return Chunk(tool_calls=[fragment])


def _response(obj: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """The response object an event carries: it only describes, so a bad one is noted."""
    response = obj.get("response")
    if type(response) is dict:
        return response
    notes.append(_ignored("response", response, "an object"))
    return {}


def _ended(obj: dict[str, Any], kind: str) -> Chunk:
    notes: list[str] = []
    response = _response(obj, notes)
    finish = "completed"
    # The response's own status rules: some servers end an incomplete one with .completed.
    if kind == "response.incomplete" or response.get("status") == "incomplete":
        finish = _incomplete(response, "response.", notes)
    described = _describing(response, "response.", notes)
    return Chunk(done=True, finish_reason=finish, **described, notes=tuple(notes))


def _incomplete(response: dict[str, Any], where: str, notes: list[str]) -> str:
    """An incomplete response's reason (``where`` prefixes its field in a note)."""
    details = response.get("incomplete_details")
    reason = details.get("reason") if type(details) is dict else None
    return _name(reason, f"{where}incomplete_details.reason", notes) or "incomplete"


def _describing(response: dict[str, Any], where: str, notes: list[str]) -> dict[str, Any]:
    """A response's usage, model and id as Chunk fields, the bad ones noted."""
    usage = _usage(response.get("usage"), notes)
    return {
        "usage": usage,
        "output_tokens": _output_tokens(usage, "output_tokens"),
        "model": _name(response.get("model"), f"{where}model", notes),
        "id": _name(response.get("id"), f"{where}id", notes),
    }


def _failure(response: dict[str, Any], data: str) -> dict[str, Any]:
    error = response.get("error")
    if type(error) is dict:
        return _error_object(error, response, data)
    return {"message": "the response failed, and the server did not say why"}


def _whole(response: dict[str, Any]) -> Chunk:
    """A whole Response object as one Chunk."""
    content: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for number, where, item in items(response, "output", API):
        kind = item.get("type")
        if kind == "message":
            content += _parts(item, where, "content", {"output_text": "text", "refusal": "refusal"})
        elif kind == "reasoning":
            texts = _parts(item, where, "summary", {"summary_text": "text"})
            reasoning.append("\n\n".join(texts or _parts(item, where, "content", {})))
        elif kind == "function_call":
            calls.append(
                {
                    "index": number,
                    "id": _text(item.get("call_id"), f"{where}.call_id"),
                    "type": "function",
                    "function": {
                        "name": _text(item.get("name"), f"{where}.name"),
                        "arguments": _text(item.get("arguments"), f"{where}.arguments"),
                    },
                }
            )
    notes: list[str] = []
    status = response.get("status")
    if status == "incomplete":
        finish = _incomplete(response, "", notes)
    else:
        finish = _name(status, "status", notes) or "completed"
    described = _describing(response, "", notes)
    return Chunk(
        content="".join(content),
        reasoning="\n\n".join(text for text in reasoning if text),
        tool_calls=calls or None,
        finish_reason=finish,
        **described,
        notes=tuple(notes),
    )


def _parts(item: dict[str, Any], where: str, key: str, kinds: dict[str, str]) -> list[str]:
    """The texts of an item's parts (``kinds``: part type -> its text's key; empty: any part's
    ``text``)."""
    parts = item.get(key)
    if parts is None:
        return []
    if type(parts) is not list:
        raise _wrong(f"{where}.{key}", parts, "an array", API)
    texts = []
    for number, part in enumerate(parts):
        if type(part) is not dict:
            raise _wrong(f"{where}.{key}[{number}]", part, "an object", API)
        field = kinds.get(str(part.get("type")), "") if kinds else "text"
        if field:
            texts.append(_text(part.get(field), f"{where}.{key}[{number}].{field}"))
    return texts


# -- the request ------------------------------------------------------------------------------


def build_body(
    messages: list[dict[str, Any]], model: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON body of a streaming ``POST /responses``: system messages become
    ``instructions``, the others input items; Chat-shaped tools are reshaped."""
    instructions: list[str] = []
    items: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role == "system":
            instructions.append(plain_text(content))
        elif role == "tool":
            output = content if isinstance(content, str) else plain_text(content)
            items.append(
                {"type": "function_call_output", "call_id": message.get("tool_call_id") or ""}
                | {"output": output}
            )
        else:
            if content or not message.get("tool_calls"):
                items.append({"role": role, "content": _content(content, role)})
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                items.append(
                    {
                        "type": "function_call",
                        "call_id": call.get("id") or "",
                        "name": function.get("name") or "",
                        "arguments": function.get("arguments") or "",
                    }
                )
    body: dict[str, Any] = {"model": model, "input": items, **params, "stream": True}
    if "tools" in params:
        body["tools"] = [_tool(tool) for tool in params["tools"] or ()]
    choice = params.get("tool_choice")
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        body["tool_choice"] = {"type": "function", "name": choice["function"].get("name")}
    if instructions:
        given = params.get("instructions")
        body["instructions"] = "\n\n".join([given, *instructions] if given else instructions)
    return body


def plain_text(content: Any) -> str:
    """A message's content as text: a string, or the texts of its parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, dict) and "text" in part
        )
    return "" if content is None else str(content)


def _content(content: Any, role: Any) -> Any:
    """Chat content parts as the Responses API's: text and image URLs reshaped."""
    if not isinstance(content, list):
        return "" if content is None else content
    text_type = "output_text" if role == "assistant" else "input_text"
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": text_type, "text": part.get("text") or ""})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append({"type": "input_image", "image_url": url})
        else:
            parts.append(part)
    return parts


def _tool(tool: Any) -> Any:
    """A Chat-shaped tool (``{"type": "function", "function": {...}}``) made flat, as the
    Responses API has it; any other tool as given."""
    if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
        return {"type": "function", **tool["function"]}
    return tool


class Responses(CommonWays):
    """``POST {base}/responses`` with ``stream: true``; typed SSE events to
    ``response.completed``."""

    name = "responses"
    framing: Framing = "sse"
    path = PATH
    ends = _ENDS
    root = "/v1"
    default_base_url = chat.OPENAI_BASE_URL
    key_vars: tuple[str, ...] = ("OPENAI_API_KEY",)
    key_header = "Authorization"  # as Bearer
    hosts: tuple[str, ...] = ()  # api.openai.com speaks Chat Completions too, the default
    end_mark = END
    described = "an OpenAI API that speaks the Responses API"
    url_hint = "Is the base URL an OpenAI API root that speaks the Responses API (ending in /v1)?"

    def check_params(self, params: Mapping[str, Any]) -> None:
        refuse_reserved(params, _RESERVED)
        given = [name for name in (*_RENAMED, "max_output_tokens") if name in params]
        if len(given) > 1:  # one limit, named as on every API (max_tokens) or as here
            raise ConfigurationError(
                f"{' and '.join(f'{name}=' for name in given)} set the same limit "
                "(the Responses API's max_output_tokens); pass one of them"
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
        # max_tokens, as every other API names it, is the Responses API's max_output_tokens.
        params = {_RENAMED.get(name, name): value for name, value in params.items()}
        return WireRequest(target.url(PATH), headers(target), build_body(messages, model, params))

    def parser(self) -> Parse:
        return _Parser()

    def parse_whole(self, body: str) -> Chunk | None:
        obj = _parsed(body)
        if type(obj) is not dict or obj.get("object") != "response":
            return None
        obj = scrub(obj)
        if obj.get("status") == "failed":
            error = _failure(obj, body)
            code = error.get("code")
            raise APIError(
                f"the server answered that the response failed: {excerpt(error['message'])}",
                code=str(code) if code is not None else None,
                type=error.get("type"),
            )
        return _whole(obj)

    def not_found(self, where: str, said_part: str, model: str, source: str) -> str:
        return (
            f"404 from {where}{PATH}{said_part}. Fix: check the base URL ({source}): it should "
            "end in /v1, and the server must speak the Responses API (many OpenAI-compatible "
            f"servers speak only Chat Completions: api='chat'); check that model {model!r} "
            "exists."
        )

    def models_request(self, target: Target) -> WireRequest:
        return chat.WIRE.models_request(target)

    def parse_models(self, body: str, where: str) -> list[str]:
        return chat.WIRE.parse_models(body, where)


WIRE = Responses()
