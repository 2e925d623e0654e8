"""Ollama's own API (``api="ollama"``): ``POST /api/chat``, its newline-delimited JSON answer,
its error bodies and its model list (``GET /api/tags``).

Pure: dictionaries and strings in, objects out. No I/O, no httpx, no asyncio.

The base URL is the host, as the ollama SDK takes it (``http://localhost:11434``). The body is
one JSON object a line (https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion)::

    {"model": "llama3.2", "created_at": "…", "message": {"role": "assistant", "content": "Hel"},
     "done": false}
    {"model": "llama3.2", "created_at": "…", "message": {"role": "assistant", "content": ""},
     "done": true, "done_reason": "stop", "prompt_eval_count": 26, "eval_count": 12, …}

The line with ``"done": true`` is the end mark, and the only one with a finish reason. Reasoning
comes as ``message.thinking``; tool calls arrive whole, their arguments an object, and take the
next index of the stream. An ``{"error": "…"}`` line is an API error.

Every value is checked where it enters, as in :mod:`.chat` (whose helpers this reuses).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from .._exceptions import ConfigurationError, ProtocolError
from .._reply import Chunk, clean_text, escapes_surrogate, excerpt, scrub
from ._base import EndKind, Framing, Parse, Target, WireRequest
from ._common import StreamState as _State
from .chat import (
    CommonWays,
    _described,
    _name,
    _object,
    _output_tokens,
    _parsed,
    _scrubbed,
    _text,
    _usage,
    headers,
    model_list,
    nameless,
    refuse_reserved,
)
from .chat import _wrong as _chat_wrong

__all__ = ["WIRE", "Ollama"]

API = "Ollama"
PATH = "/api/chat"
TAGS = "/api/tags"
OLLAMA_BASE_URL = "http://localhost:11434"
END_MARK = '"done": true'
_RESERVED = ("stream", "messages", "model")
_ENDS: dict[str, EndKind] = {"length": "length"}
# Chat Completions' names -> Ollama's options (the rest of its options keep their own names).
_RENAMED = {"max_tokens": "num_predict", "max_completion_tokens": "num_predict"}
_OPTIONS = frozenset(
    {"num_predict", "temperature", "top_p", "top_k", "min_p", "typical_p", "stop", "seed"}
    | {"presence_penalty", "frequency_penalty", "repeat_penalty", "repeat_last_n", "num_keep"}
    | {"num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", "use_mmap", "numa"}
    | {"mirostat", "mirostat_tau", "mirostat_eta", "tfs_z", "penalize_newline", "low_vram"}
)
# The request's own top-level fields, sent as they are given.
_NATIVE = ("think", "format", "keep_alive", "tools", "options", "logprobs", "top_logprobs")
_PLAIN_MESSAGE = frozenset({"role", "content"})
_COUNTS = (
    *("prompt_eval_count", "eval_count", "total_duration", "load_duration"),
    *("prompt_eval_duration", "eval_duration"),
)


def _wrong(field: str, value: Any, expected: str) -> ProtocolError:
    return _chat_wrong(field, value, expected, API)


def parse_line(data: str, state: _State) -> str | Chunk:
    """One line: its text alone when it carries nothing else (the hot path), else a Chunk
    (``done`` on the last line)."""
    obj = _object(data, "a line")
    # Text and nothing else; the model is taken from the last line, which carries it too.
    message = obj.get("message")
    if obj.get("done") is False and type(message) is dict and message.keys() <= _PLAIN_MESSAGE:
        content = message.get("content")
        if type(content) is str and "error" not in obj:
            return content if content.isascii() else clean_text(content)
    return _checked(_scrubbed(obj, data), state)


def _checked(obj: dict[str, Any], state: _State) -> Chunk:
    """Any line, every field checked."""
    error = obj.get("error")
    if error is not None:
        said = error if type(error) is str and error else excerpt(_described(error))
        return Chunk(error={"message": said})
    done = obj.get("done")
    if done is not None and type(done) is not bool:
        raise _wrong("done", done, "a boolean")
    message = obj.get("message")
    if message is None:
        message = {}
    elif type(message) is not dict:
        raise _wrong("message", message, "an object")
    notes: list[str] = []
    usage = None
    finish = None
    if done:  # the counts and the reason come on the last line alone
        counts = {key: obj[key] for key in _COUNTS if key in obj}
        usage = _usage(counts, notes)
        finish = _name(obj.get("done_reason"), "done_reason", notes)
    return Chunk(
        content=_text(message.get("content"), "message.content", API),
        reasoning=_text(message.get("thinking"), "message.thinking", API),
        tool_calls=_tool_calls(message.get("tool_calls"), state),
        finish_reason=finish,
        usage=usage,
        model=_name(obj.get("model"), "model", notes),
        done=bool(done),
        notes=tuple(notes),
        output_tokens=_output_tokens(usage, "eval_count"),
    )


def _tool_calls(value: Any, state: _State) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if type(value) is not list:
        raise _wrong("message.tool_calls", value, "an array")
    calls = []
    for number, call in enumerate(value):
        where = f"message.tool_calls[{number}]"
        if type(call) is not dict:
            raise _wrong(where, call, "an object")
        function = call.get("function")
        if type(function) is not dict:
            raise _wrong(f"{where}.function", function, "an object")
        name = function.get("name")
        if type(name) is not str or not name:
            raise _wrong(f"{where}.function.name", name, "a function's name (a string)")
        arguments = function.get("arguments")
        if arguments is None:
            arguments = {}
        elif type(arguments) is not dict:
            raise _wrong(f"{where}.function.arguments", arguments, "an object")
        calls.append(
            {
                "index": state.tools,
                "id": _text(call.get("id"), f"{where}.id", API),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)},
            }
        )
        state.tools += 1
    return calls or None


# --- the request -----------------------------------------------------------------------------


def build_body(
    model: str, messages: list[dict[str, Any]], params: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON body: Chat-shaped messages in Ollama's shape, the options under ``options``."""
    options: dict[str, Any] = dict(params.get("options") or {})
    names: dict[str, str] = {}  # tool call id -> function name, for the results
    body: dict[str, Any] = {
        "model": model,
        "messages": [_message(message, number, names) for number, message in enumerate(messages)],
    }
    for name, value in params.items():
        if name in _RENAMED:
            options[_RENAMED[name]] = value
        elif name in _OPTIONS:
            options[name] = [value] if name == "stop" and isinstance(value, str) else value
        elif name != "options":
            body[name] = value  # one of _NATIVE: check_params let nothing else through
    if options:
        body["options"] = options
    body["stream"] = True
    return body


def _message(message: Mapping[str, Any], number: int, names: dict[str, str]) -> dict[str, Any]:
    """One Chat-shaped message in Ollama's shape: text content, images apart, tool call
    arguments as objects, a tool result named by its function."""
    role = message.get("role")
    out: dict[str, Any] = {"role": "system" if role == "developer" else role}
    content = message.get("content")
    if isinstance(content, list):
        texts, images = [], []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(str(part.get("text", "")))
            elif kind == "image_url":
                images.append(_image(part.get("image_url"), number))
            else:
                raise ConfigurationError(
                    f"messages[{number}] has a content part of type {kind!r}, which Ollama "
                    "cannot take; use text and image_url parts"
                )
        out["content"] = "".join(texts)
        if images:
            out["images"] = images
    else:
        out["content"] = "" if content is None else content
    calls = message.get("tool_calls")
    if calls:
        out["tool_calls"] = [_tool_call(call, number) for call in calls]
        for call, sent in zip(calls, out["tool_calls"], strict=True):
            if isinstance(call, dict) and isinstance(call.get("id"), str):
                names[call["id"]] = sent["function"]["name"]
    if role == "tool":
        name = message.get("name") or names.get(str(message.get("tool_call_id")))
        if name:
            out["tool_name"] = name
    for key in ("images", "thinking", "tool_name"):  # Ollama's own fields, given as they are
        if key in message:
            out[key] = message[key]
    return out


def _image(value: Any, number: int) -> str:
    url = value.get("url") if isinstance(value, dict) else value
    if isinstance(url, str) and url.startswith("data:") and ";base64," in url:
        data = url.partition(";base64,")[2]
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            pass
        else:
            return data
    raise ConfigurationError(
        f"messages[{number}] has an image that is not a base64 data: URL, which is all Ollama "
        "takes inline"
    )


def _tool_call(call: Any, number: int) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise ConfigurationError(
            f"messages[{number}] has a tool call without a function name: {excerpt(repr(call))}"
        )
    arguments = function.get("arguments") if isinstance(function, dict) else None
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments else {}
        except ValueError:
            arguments = None
    if not isinstance(arguments, dict):
        raise ConfigurationError(
            f"messages[{number}]: the arguments of tool call {name!r} are not a JSON object, "
            "which Ollama needs"
        )
    return {"function": {"name": name, "arguments": arguments}}


class Ollama(CommonWays):
    """``POST {host}/api/chat`` with ``stream: true``; NDJSON lines to ``"done": true``."""

    name = "ollama"
    framing: Framing = "ndjson"
    path = PATH
    ends = _ENDS
    root = ""
    default_base_url = OLLAMA_BASE_URL
    key_vars: tuple[str, ...] = ()  # a local server takes none; Ollama's cloud takes a Bearer key
    key_header = "Authorization"  # as Bearer (Ollama's cloud)
    hosts: tuple[str, ...] = ()
    end_mark = END_MARK
    described = "an Ollama server (its root, such as http://localhost:11434)"
    url_hint = "Is the base URL an Ollama server's root (http://localhost:11434, without /api)?"

    def check_params(self, params: Mapping[str, Any]) -> None:
        refuse_reserved(params, _RESERVED)
        for name in params:
            if name not in _RENAMED and name not in _OPTIONS and name not in _NATIVE:
                raise ConfigurationError(
                    f"{name}= is not an option Ollama's /api/chat takes; use one of its options "
                    f"({', '.join(sorted(_OPTIONS | _RENAMED.keys()))}), or "
                    f"{', '.join(_NATIVE)}"
                )
        if not isinstance(params.get("options", {}), dict):
            raise ConfigurationError("options= must be a dict of Ollama's options")

    def request(
        self,
        target: Target,
        model: str,
        messages: list[dict[str, Any]],
        params: Mapping[str, Any],
        *,
        fallback: bool = False,
    ) -> WireRequest:
        body = build_body(model, messages, params)
        return WireRequest(target.url(PATH), headers(target, "application/x-ndjson"), body)

    def parser(self) -> Parse:
        state = _State()
        return lambda data, event: parse_line(data, state)

    def parse_whole(self, body: str) -> Chunk | None:
        """A whole answer (``"stream": false``): one object, its ``done`` true."""
        obj = _parsed(body)
        if type(obj) is not dict or "message" not in obj or "error" in obj:
            return None
        if escapes_surrogate(body):
            obj = scrub(obj)
        chunk = _checked(obj, _State())
        if not (chunk.content or chunk.tool_calls or chunk.done):
            return None
        return chunk._replace(done=False)

    def not_found(self, where: str, said_part: str, model: str, source: str) -> str:
        return (
            f"404 from {where}{PATH}{said_part}. Fix: check the base URL ({source}): Ollama's "
            f"API wants its root ({OLLAMA_BASE_URL}), without /api or /v1; and check that model "
            f"{model!r} is pulled (`ollama pull {model}`)."
        )

    def models_request(self, target: Target) -> WireRequest:
        return WireRequest(target.url(TAGS), headers(target, "application/json"))

    def parse_models(self, body: str, where: str) -> list[str]:
        ids = []
        for number, model in enumerate(model_list(body, "models", f"{where}{TAGS}")):
            name = model.get("name") or model.get("model") if type(model) is dict else None
            if type(name) is not str or not name:
                raise nameless(f"{where}{TAGS}", f"models[{number}].name", model)
            ids.append(clean_text(name))
        return sorted(ids)


WIRE = Ollama()
