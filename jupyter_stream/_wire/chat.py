"""OpenAI Chat Completions (``api="chat"``): the request, the chunks of its event stream, its
error bodies and its model list.

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
from collections.abc import Callable, Mapping
from typing import Any

from .._exceptions import ConfigurationError, ProtocolError
from .._reply import Chunk, Message, clean_text, escapes_surrogate, excerpt, scrub
from .._secrets import basic_credentials
from ._base import EndKind, Framing, Parse, Target, WireRequest

__all__ = ["WIRE", "ChatCompletions", "build_payload", "parse_chunk", "parse_event"]

DONE = "[DONE]"
PATH = "/chat/completions"
OPENAI_BASE_URL = "https://api.openai.com/v1"  # where OPENAI_API_KEY alone points
EXAMPLE_BASE_URL = "http://localhost:8000/v1"
_RESERVED = ("stream", "stream_options", "messages", "model")
_ENDS: dict[str, EndKind] = {"length": "length", "content_filter": "content_filter"}

_DONE_CHUNK = Chunk(done=True)
_PLAIN = frozenset({"content", "role"})
_MAX_COUNT = 2**53 - 1  # the largest integer that JSON readers in JavaScript keep exact
_MAX_NAME = 256  # a model name, id or finish reason longer than this is not one
_USAGE_DEPTH = 2  # nested objects in usage (completion_tokens_details, …)
# json.loads() looks for white space around the value with a regex on each call; chunks never
# have any, so the C scanner is called directly and json.loads() only handles the rest (white
# space, errors). About a third less time per chunk.
_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _object(data: str, what: str = "an event's data") -> dict[str, Any]:
    """``data`` as a JSON object (``what`` names it in the ProtocolError, with an excerpt, when
    it is not one)."""
    try:
        try:
            obj, end = _scan_json(data, 0)
        except (StopIteration, ValueError):
            end = -1
        if end != len(data):  # white space, or not JSON: json.loads() says which
            obj = json.loads(data)
    except ValueError as exc:
        raise ProtocolError(f"malformed stream: {what} is not JSON: {excerpt(data)!r}") from exc
    except RecursionError:
        raise _too_deep(data) from None
    if type(obj) is not dict:
        raise ProtocolError(f"malformed stream: {what} is not a JSON object: {excerpt(data)!r}")
    return obj


def _scrubbed(obj: dict[str, Any], data: str) -> dict[str, Any]:
    """``obj`` with lone surrogates replaced, when its ``data`` escapes any."""
    if escapes_surrogate(data):
        try:
            obj = scrub(obj)
        except RecursionError:
            raise _too_deep(data) from None
    return obj


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
    obj = _object(data)
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
    return _checked(_scrubbed(obj, data), data, event)


def load_object(data: str) -> dict[str, Any]:
    """An event's data as a JSON object, lone surrogates replaced (for the other wire formats,
    whose events are all objects); ProtocolError with an excerpt when it is not one."""
    obj = _object(data)
    return _scrubbed(obj, data) if escapes_surrogate(data) else obj  # one call less: a hot path


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
        usage=(usage := _usage(obj.get("usage"), notes)),
        model=_name(obj.get("model"), "model", notes),
        id=_name(obj.get("id"), "id", notes),
        notes=tuple(notes),
        output_tokens=_output_tokens(usage),
    )


def _output_tokens(usage: dict[str, Any] | None, key: str = "completion_tokens") -> int | None:
    """The answer's token count from ``usage`` (each API names it ``key``), if it is one."""
    count = usage.get(key) if usage else None
    return count if type(count) is int else None


def _text(value: Any, field: str, api: str = "Chat Completions") -> str:
    """A field that carries part of the answer: a string, or absent."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    raise _wrong(field, value, "a string or null", api)


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


def _wrong(field: str, value: Any, expected: str, api: str = "Chat Completions") -> ProtocolError:
    error = ProtocolError(
        f"malformed stream: the server sent {field} as {_described(value)}, where the {api} "
        f"format has {expected}; what arrived before it is kept in .reply"
    )
    error.field = field
    return error


def _too_deep(data: str) -> ProtocolError:
    return ProtocolError(
        f"malformed stream: an event's data is JSON nested too deeply: {excerpt(data)!r}"
    )


def _ignored(field: str, value: Any, expected: str) -> str:
    return f"ignored {field}: the server sent {_described(value)}, expected {expected}"


def build_payload(
    messages: list[Message], model: str, *, include_usage: bool = True, **params: Any
) -> dict[str, Any]:
    """The JSON body of a streaming ``POST /chat/completions`` request."""
    payload: dict[str, Any] = {"model": model, "messages": messages, **params, "stream": True}
    if include_usage:
        payload["stream_options"] = {"include_usage": True}
    return payload


def headers(target: Target, accept: str = "text/event-stream") -> dict[str, str]:
    """The request headers: an API key as Bearer, else the base URL's user info as Basic."""
    headers = {"Accept": accept}
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"
    elif target.url_credentials:
        headers["Authorization"] = basic_credentials(target.url_credentials)
    return headers


def _parsed(body: str) -> Any:
    """A whole body's JSON value; None when it is not JSON."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def body_message(body: str) -> str:
    """The server's own words from an error body: a JSON ``error.message``, an HTML title, or
    an excerpt."""
    obj = _parsed(body)
    if isinstance(obj, dict):
        error = obj.get("error", obj)
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail") or error.get("msg")
            if message:
                return excerpt(str(message))
        elif isinstance(error, str):
            return excerpt(error)
        if isinstance(obj.get("detail"), str):
            return excerpt(obj["detail"])
    title = re.search(r"<title[^>]*>(.*?)</title>", body, re.IGNORECASE | re.DOTALL)
    if title:
        return "HTML page: " + excerpt(title.group(1))
    if "<html" in body[:512].lower():
        return "HTML page: " + excerpt(re.sub(r"<[^>]+>", " ", body))
    return excerpt(body)


def refuse_reserved(params: Mapping[str, Any], reserved: tuple[str, ...]) -> None:
    """ConfigurationError for a request option that the format sets itself."""
    for name in reserved:
        if name in params:
            raise ConfigurationError(f"{name}= is set by jupyter_stream itself; leave it out")


def model_list(body: str, key: str, url: str) -> list[Any]:
    """The list under ``key`` of a models response to ``GET url``; ProtocolError if none."""
    obj = _parsed(body)
    listed = obj.get(key) if type(obj) is dict else None
    if type(listed) is not list:
        raise ProtocolError(f"GET {url} did not answer with a model list: {excerpt(body)}")
    return listed


def nameless(url: str, field: str, model: Any) -> ProtocolError:
    """The error for a listed model without a name (a string in ``field``)."""
    return ProtocolError(
        f"GET {url} listed a model without a name (a string in {field}): {excerpt(repr(model))}"
    )


class CommonWays:
    """What most wire formats do alike, for them to inherit: a request with nothing optional
    to leave out, finish reasons mapped by ``ends`` (any other is ``completed``), an error body's
    words found as :func:`body_message` finds them, and a redirect's base URL its target without
    the request path."""

    path: str
    ends: Mapping[str, EndKind] = {}

    def fallback(self, status: int, body: str) -> bool:
        return False

    def end_kind(self, finish_reason: str | None) -> EndKind:
        return self.ends.get(finish_reason or "", "completed")

    def error_said(self, body: str) -> str:
        return body_message(body)

    def redirect_base(self, target_url: str) -> str:
        return target_url.removesuffix(self.path)


class ChatCompletions(CommonWays):
    """``POST {base}/chat/completions`` with ``stream: true``; SSE ``data:`` chunks to
    ``data: [DONE]``."""

    name = "chat"
    framing: Framing = "sse"
    path = PATH
    ends = _ENDS
    root = "/v1"
    default_base_url = OPENAI_BASE_URL
    key_vars: tuple[str, ...] = ("OPENAI_API_KEY",)
    key_header = "Authorization"  # as Bearer
    hosts: tuple[str, ...] = ("api.openai.com",)
    end_mark = DONE
    described = "an OpenAI-compatible API"
    url_hint = "Is the base URL an OpenAI-compatible API (most end in /v1)?"

    def check_params(self, params: Mapping[str, Any]) -> None:
        refuse_reserved(params, _RESERVED)
        if params.get("n", 1) != 1:
            raise ConfigurationError("n= other than 1 is not supported: a stream holds one answer")

    def request(
        self,
        target: Target,
        model: str,
        messages: list[dict[str, Any]],
        params: Mapping[str, Any],
        *,
        fallback: bool = False,
    ) -> WireRequest:
        # The fallback leaves out stream_options, which some older servers reject.
        body = build_payload(messages, model, include_usage=not fallback, **params)
        return WireRequest(target.url(PATH), headers(target), body)

    def fallback(self, status: int, body: str) -> bool:
        return status in (400, 422) and ("stream_options" in body or "include_usage" in body)

    def parser(self) -> Parse:
        return parse_event  # every chunk stands alone

    def parse_whole(self, body: str) -> Chunk | None:
        try:
            chunk = parse_chunk(body)
        except ProtocolError as exc:
            if exc.field is not None:  # a completion, with a bad value: say which
                raise
            return None
        if not (chunk.content or chunk.tool_calls or chunk.finish_reason):
            return None
        return chunk

    def not_found(self, where: str, said_part: str, model: str, source: str) -> str:
        return (
            f"404 from {where}{PATH}{said_part}. Fix: check the base URL "
            f"({source}); most servers want it to end in /v1, and check "
            f"that model {model!r} exists."
        )

    def models_request(self, target: Target) -> WireRequest:
        return WireRequest(target.url("/models"), headers(target, "application/json"))

    def parse_models(self, body: str, where: str) -> list[str]:
        ids = []
        for number, model in enumerate(model_list(body, "data", f"{where}/models")):
            model_id = model.get("id") if type(model) is dict else None
            if type(model_id) is not str or not model_id:
                raise nameless(f"{where}/models", f"data[{number}].id", model)
            ids.append(clean_text(model_id))  # an escaped lone surrogate would break the picker
        return sorted(ids)


WIRE = ChatCompletions()
