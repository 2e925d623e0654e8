"""Google's Gemini API (``api="gemini"``): ``streamGenerateContent`` with ``alt=sse``, its
responses, error bodies and model list.

Pure: dictionaries and strings in, objects out. No I/O, no httpx, no asyncio.

The base URL is the host, as the google-genai SDK takes it
(``https://generativelanguage.googleapis.com``); the API version is ``v1beta``. The stream is a
sequence of ``data:`` events, each a whole ``GenerateContentResponse``
(https://ai.google.dev/api/generate-content#method:-models.streamgeneratecontent)::

    {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}}],
     "usageMetadata": {...}, "modelVersion": "gemini-2.5-flash", "responseId": "..."}
    {"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}], ...}

There is no end mark of its own: the response with a ``finishReason`` is the last, so it is the
end (``Chunk.done``), carrying its text and usage; so is one whose ``promptFeedback`` says the
prompt was blocked. A part with ``"thought": true`` is reasoning; a ``functionCall`` arrives
whole, its ``args`` an object, and becomes a tool call of its own; one without an ``id`` (the
Developer API seldom sends one) gets ``call_{n}``, its number in the answer, which a tool
result's ``tool_call_id`` can name and which goes back with the call. A call's
``thoughtSignature`` (which Gemini 3 requires back with it) is kept in the tool call's
``extra_content`` (``{"google": {"thought_signature": …}}``, as Gemini's OpenAI-compatible API
has it) and sent back with the call; signatures on text parts are not kept. A mid-stream
``{"error": {"code", "message", "status"}}`` is an API error.

Finish reasons: ``MAX_TOKENS`` ends with ``length``; ``SAFETY``, ``RECITATION``, ``BLOCKLIST``,
``PROHIBITED_CONTENT``, ``SPII``, the image filters and a blocked prompt with
``content_filter``; every other (``STOP``, and the tool-call failures
``MALFORMED_FUNCTION_CALL``, ``UNEXPECTED_TOOL_CALL``, ``TOO_MANY_TOOL_CALLS``) with
``completed``: the model ended its turn, nothing was cut. A failed tool call leaves no tool
call and often no text; ``Reply.finish_reason`` keeps Gemini's word to tell it.

Every value is checked where it enters, as in :mod:`.chat` (whose helpers this reuses): a field
that carries the answer with the wrong type is a :class:`ProtocolError` naming it; one that only
describes it (usage, model, id, finish reason) is ignored and named in ``Reply.notes``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from .._exceptions import ConfigurationError, ProtocolError
from .._reply import Chunk, clean_text, escapes_surrogate, excerpt, scrub
from .._secrets import basic_credentials
from ._base import EndKind, Framing, Parse, Target, WireRequest
from ._common import StreamState as _State
from .chat import (
    CommonWays,
    _described,
    _ignored,
    _name,
    _object,
    _output_tokens,
    _parsed,
    _scrubbed,
    _text,
    _usage,
    body_message,
    model_list,
    nameless,
    refuse_reserved,
)
from .chat import _wrong as _chat_wrong

__all__ = ["WIRE", "Gemini"]

API = "Gemini"
VERSION = "/v1beta"
PATH = VERSION + "/models"
GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"
END_MARK = "a finishReason"
_BLOCKED = "blockReason:"  # the finish reason of a prompt the API blocked, before any answer
_FILTERED = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
    | {"IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR"}
)
_RESERVED = ("contents", "stream", "messages", "model", "alt")
# Chat Completions' names (and a few of Gemini's own in snake case) -> generationConfig fields.
_GENERATION = {
    "max_tokens": "maxOutputTokens",
    "max_completion_tokens": "maxOutputTokens",
    "max_output_tokens": "maxOutputTokens",
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",
    "stop": "stopSequences",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "response_mime_type": "responseMimeType",
    "response_schema": "responseSchema",
    "response_json_schema": "responseJsonSchema",
}
_THINKING = {
    "include_thoughts": "includeThoughts",
    "thinking_budget": "thinkingBudget",
    "thinking_level": "thinkingLevel",
}
# The request's own top-level fields, sent as they are given.
_NATIVE = ("generationConfig", "safetySettings", "toolConfig", "cachedContent", "labels")
_PLAIN_KEYS = frozenset({"candidates", "usageMetadata", "modelVersion", "responseId"})
_QUIET_PART_KEYS = frozenset({"thoughtSignature", "thought"})  # carry nothing to show


def _wrong(field: str, value: Any, expected: str) -> ProtocolError:
    return _chat_wrong(field, value, expected, API)


def parse_event(data: str, state: _State) -> str | Chunk:
    """One ``data:`` event: its text alone when it carries nothing else (the hot path), else a
    Chunk (``done`` on the last response)."""
    obj = _object(data)
    # Text and nothing else; usage, model and id are taken from the last response, which
    # carries them too (Gemini repeats them on every one).
    candidates = obj.get("candidates")
    if type(candidates) is list and len(candidates) == 1 and obj.keys() <= _PLAIN_KEYS:
        candidate = candidates[0]
        if type(candidate) is dict and "finishReason" not in candidate:
            content = candidate.get("content")
            if type(content) is dict:
                parts = content.get("parts")
                if type(parts) is list and len(parts) == 1:
                    part = parts[0]
                    if type(part) is dict and len(part) == 1:
                        text = part.get("text")
                        if type(text) is str:
                            return text if text.isascii() else clean_text(text)
    return _checked(_scrubbed(obj, data), state)


def _checked(obj: dict[str, Any], state: _State) -> Chunk:
    """Any response, every field checked."""
    error = obj.get("error")
    if error is not None:
        return Chunk(error=_error_object(error))
    notes: list[str] = []
    content: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    finish = None
    candidates = obj.get("candidates")
    if candidates is not None and type(candidates) is not list:
        raise _wrong("candidates", candidates, "an array")
    if candidates:
        candidate = candidates[0]
        if type(candidate) is not dict:
            raise _wrong("candidates[0]", candidate, "an object")
        _parts(candidate.get("content"), state, content, reasoning, calls, notes)
        finish = _name(candidate.get("finishReason"), "candidates[0].finishReason", notes)
    feedback = obj.get("promptFeedback")
    if feedback is not None:
        if type(feedback) is not dict:
            notes.append(_ignored("promptFeedback", feedback, "an object"))
        else:
            blocked = _name(feedback.get("blockReason"), "promptFeedback.blockReason", notes)
            if blocked and not candidates:
                finish = _BLOCKED + blocked
    usage = _usage(_without_details(obj.get("usageMetadata")), notes)
    return Chunk(
        content="".join(content),
        reasoning="".join(reasoning),
        tool_calls=calls or None,
        finish_reason=finish,
        usage=usage,
        model=_name(obj.get("modelVersion"), "modelVersion", notes),
        id=_name(obj.get("responseId"), "responseId", notes),
        done=finish is not None,
        notes=tuple(notes),
        output_tokens=_output_tokens(usage, "candidatesTokenCount"),
    )


def _parts(
    value: Any,
    state: _State,
    content: list[str],
    reasoning: list[str],
    calls: list[dict[str, Any]],
    notes: list[str],
) -> None:
    """The candidate's parts, each into the answer, the reasoning or a tool call."""
    if value is None:
        return  # a response cut by a filter has no content
    if type(value) is not dict:
        raise _wrong("candidates[0].content", value, "an object")
    parts = value.get("parts")
    if parts is None:
        return
    if type(parts) is not list:
        raise _wrong("candidates[0].content.parts", parts, "an array")
    for number, part in enumerate(parts):
        where = f"candidates[0].content.parts[{number}]"
        if type(part) is not dict:
            raise _wrong(where, part, "an object")
        thought = part.get("thought")
        if thought is not None and type(thought) is not bool:
            raise _wrong(f"{where}.thought", thought, "a boolean")
        if "text" in part:
            text = _text(part["text"], f"{where}.text", API)
            (reasoning if thought else content).append(text)
        elif "functionCall" in part:
            call = _call(part["functionCall"], f"{where}.functionCall", state.tools)
            signature = part.get("thoughtSignature")
            if type(signature) is str and signature:  # Gemini 3 refuses the call back without it
                call["extra_content"] = {"google": {"thought_signature": signature}}
            calls.append(call)
            state.tools += 1
        elif part.keys() - _QUIET_PART_KEYS:
            kinds = ", ".join(sorted(part.keys() - _QUIET_PART_KEYS))
            notes.append(f"ignored {where}: a part of kind {excerpt(kinds, 80)}, not text")


def _call(value: Any, where: str, index: int) -> dict[str, Any]:
    """A whole function call, as a tool-call fragment of its own index."""
    if type(value) is not dict:
        raise _wrong(where, value, "an object")
    args = value.get("args")
    if args is None:
        args = {}
    elif type(args) is not dict:
        raise _wrong(f"{where}.args", args, "an object")
    name = value.get("name")
    if type(name) is not str or not name:
        raise _wrong(f"{where}.name", name, "a function's name (a string)")
    # The Developer API mostly sends no id: one made up lets a tool result name its call.
    call_id = _text(value.get("id"), f"{where}.id", API) or f"call_{index}"
    return {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
    }


def _without_details(usage: Any) -> Any:
    """usageMetadata without its per-modality lists (``promptTokensDetails``: an array of
    ``{modality, tokenCount}``), which are expected, and not counts."""
    if type(usage) is not dict:
        return usage
    return {
        key: value
        for key, value in usage.items()
        if not (key.endswith("Details") and type(value) is list)
    }


def _error_object(error: Any) -> dict[str, Any]:
    """Google's error object: its message, its status (``RESOURCE_EXHAUSTED``) as the type and
    its HTTP code as the code."""
    if type(error) is not dict:
        return {"message": error if type(error) is str else excerpt(_described(error))}
    message = error.get("message")
    said: dict[str, Any] = {
        "message": message if type(message) is str and message else excerpt(_described(error))
    }
    code = error.get("code")
    if (type(code) is int or type(code) is str) and len(str(code)) <= 100:
        said["code"] = str(code)
    status = error.get("status")
    if type(status) is str:
        said["type"] = excerpt(status, 100)
    return said


def _folded(chunks: list[Chunk]) -> Chunk:
    """Responses of one answer as one Chunk, as a Reply would fold them."""
    notes: list[str] = []
    for chunk in chunks:
        notes += [note for note in chunk.notes if note not in notes]
    calls = [call for chunk in chunks for call in chunk.tool_calls or ()]
    last = chunks[-1]
    return Chunk(
        content="".join(chunk.content for chunk in chunks),
        reasoning="".join(chunk.reasoning for chunk in chunks),
        tool_calls=calls or None,
        finish_reason=next((c.finish_reason for c in reversed(chunks) if c.finish_reason), None),
        usage=next((chunk.usage for chunk in reversed(chunks) if chunk.usage), None),
        model=next((chunk.model for chunk in chunks if chunk.model), None),
        id=next((chunk.id for chunk in chunks if chunk.id), None),
        notes=tuple(notes),
        output_tokens=last.output_tokens,
    )


# --- the request -----------------------------------------------------------------------------


def model_path(model: str) -> str:
    """The model's resource path: ``models/x`` (a bare id or ``models/x``) or ``tunedModels/x``,
    its id quoted so that no character of it can change the path."""
    kind, _, name = model.partition("/")
    if kind not in ("models", "tunedModels") or not name:
        kind, name = "models", model
    if not name.strip():
        raise ConfigurationError("the model for the Gemini API is empty; pass model='gemini-…'")
    return f"{kind}/{quote(name, safe='')}"


def _url(target: Target, path: str, query: str) -> str:
    """``path`` below the host of the base URL (a version pasted into it, ``/v1beta``, is taken
    off), with ``query`` merged into the query it may carry (a ``key=``)."""
    parts = urlsplit(target.url(""))
    base = parts.path.rstrip("/")
    cut = base.find(PATH + "/")  # a request URL pasted whole
    base = base[:cut] if cut >= 0 else base.removesuffix(VERSION).removesuffix("/v1")
    name = query.partition("=")[0] + "="
    kept = [item for item in parts.query.split("&") if item and not item.startswith(name)]
    return urlunsplit(parts._replace(path=base + path, query="&".join([*kept, query])))


def headers(target: Target, accept: str) -> dict[str, str]:
    """The key as ``x-goog-api-key`` (as the SDK sends it), else the base URL's user info."""
    headers = {"Accept": accept}
    if target.api_key:
        headers["x-goog-api-key"] = target.api_key
    elif target.url_credentials:
        headers["Authorization"] = basic_credentials(target.url_credentials)
    return headers


def build_body(messages: list[dict[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body: Chat-shaped messages as ``contents`` and ``systemInstruction``, and the
    options as ``generationConfig`` and Gemini's own fields."""
    body: dict[str, Any] = {"contents": contents(messages)}
    system = [
        {"text": text}
        for message in messages
        if message.get("role") in ("system", "developer")
        for text in _texts(message)
    ]
    if system:
        body["systemInstruction"] = {"parts": system}
    config: dict[str, Any] = dict(params.get("generationConfig") or {})
    thinking: dict[str, Any] = dict(config.get("thinkingConfig") or {})
    for name, value in params.items():
        if name in _GENERATION:
            if name == "stop" and isinstance(value, str):
                value = [value]
            config[_GENERATION[name]] = value
        elif name in _THINKING:
            thinking[_THINKING[name]] = value
        elif name == "tools":
            body["tools"] = _tools(value)
        elif name != "generationConfig":
            body[name] = value  # one of _NATIVE: check_params let nothing else through
    if thinking:
        config["thinkingConfig"] = thinking
    if config:
        body["generationConfig"] = config
    return body


def contents(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat-shaped messages as Gemini's ``contents``: user and model turns, tool results as the
    user's ``functionResponse`` parts (one turn for results in a row), system messages left out
    (they are the ``systemInstruction``)."""
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, for the results
    for number, message in enumerate(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            continue
        if role == "tool":
            part = _function_response(message, names, number)
            if out and out[-1]["role"] == "user" and "functionResponse" in out[-1]["parts"][-1]:
                out[-1]["parts"].append(part)
            else:
                out.append({"role": "user", "parts": [part]})
            continue
        if role not in ("user", "assistant", "model"):
            raise ConfigurationError(
                f"messages[{number}] has role {role!r}, which the Gemini API has no place for; "
                "use 'system', 'user', 'assistant' or 'tool'"
            )
        parts: list[dict[str, Any]] = [{"text": text} for text in _texts(message) if text]
        parts += _media(message, number)
        for call in message.get("tool_calls") or ():
            parts.append(_function_call(call, names, number))
        out.append(
            {"role": "user" if role == "user" else "model", "parts": parts or [{"text": ""}]}
        )
    if not out:
        raise ConfigurationError(
            "no user message: the Gemini API needs one besides the system messages"
        )
    return out


def _texts(message: Mapping[str, Any]) -> list[str]:
    content = message.get("content")
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and "text" in part
        ]
    raise ConfigurationError(
        f"a message's content is {type(content).__name__}; use a string or a list of parts"
    )


def _media(message: Mapping[str, Any], number: int) -> list[dict[str, Any]]:
    """Image parts given as data URLs (the only kind a request can carry inline)."""
    content = message.get("content")
    if not isinstance(content, list):
        return []
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            continue
        url = part.get("image_url") if kind == "image_url" else None
        url = url.get("url") if isinstance(url, dict) else url
        if not (isinstance(url, str) and url.startswith("data:") and ";base64," in url):
            raise ConfigurationError(
                f"messages[{number}] has a content part of type {kind!r} that the Gemini API "
                "cannot take inline; use text parts, or image_url parts with data: URLs"
            )
        mime, _, data = url[5:].partition(";base64,")
        parts.append({"inlineData": {"mimeType": mime, "data": data}})
    return parts


def _function_call(call: Any, names: dict[str, str], number: int) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise ConfigurationError(
            f"messages[{number}] has a tool call without a function name: {excerpt(repr(call))}"
        )
    arguments = function.get("arguments") if isinstance(function, dict) else None
    try:
        args = json.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except ValueError:
        args = None
    if not isinstance(args, dict):
        raise ConfigurationError(
            f"messages[{number}]: the arguments of tool call {name!r} are not a JSON object "
            f"({excerpt(repr(arguments))}), which the Gemini API needs"
        )
    found: dict[str, Any] = {"name": name, "args": args}
    if call.get("id"):
        names[call["id"]] = name
        found["id"] = call["id"]
    part: dict[str, Any] = {"functionCall": found}
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    signature = google.get("thought_signature") if isinstance(google, dict) else None
    if isinstance(signature, str) and signature:
        part["thoughtSignature"] = signature
    return part


def _function_response(
    message: Mapping[str, Any], names: dict[str, str], number: int
) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    name = message.get("name") or names.get(call_id or "")
    if not isinstance(name, str) or not name:
        raise ConfigurationError(
            f"messages[{number}] is a tool result whose function the Gemini API must be told: "
            "give it the 'tool_call_id' of an earlier assistant tool call, or a 'name'"
        )
    text = "".join(_texts(message))
    try:
        result = json.loads(text)
    except ValueError:
        result = None
    response: dict[str, Any] = {"name": name, "response": result}
    if not isinstance(result, dict):  # Gemini takes an object: a bare value goes in one
        response["response"] = {"result": text}
    if call_id:
        response["id"] = call_id
    return {"functionResponse": response}


def _tools(tools: Any) -> list[Any]:
    """Chat-shaped function tools as one ``functionDeclarations`` tool; Gemini's own tools
    (``{"googleSearch": {}}``, …) as they are."""
    if not isinstance(tools, list):
        raise ConfigurationError("tools= must be a list of tools")
    declarations = []
    native = []
    for tool in tools:
        if isinstance(tool, dict) and tool.get("type") == "function":
            declarations.append(tool.get("function") or {})
        else:
            native.append(tool)
    return ([{"functionDeclarations": declarations}] if declarations else []) + native


class Gemini(CommonWays):
    """``POST {host}/v1beta/models/{model}:streamGenerateContent?alt=sse``; SSE ``data:``
    responses to the one with a ``finishReason``."""

    name = "gemini"
    framing: Framing = "sse"
    path = PATH
    root = ""
    default_base_url = GEMINI_BASE_URL
    # GOOGLE_API_KEY first when both are set, as google-genai reads them
    key_vars: tuple[str, ...] = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    key_header = "x-goog-api-key"  # as headers() sends it
    hosts: tuple[str, ...] = ("generativelanguage.googleapis.com",)
    end_mark = END_MARK
    described = "the Gemini API (its host, such as https://generativelanguage.googleapis.com)"
    url_hint = (
        "Is the base URL the Gemini API's host (https://generativelanguage.googleapis.com, "
        "without /v1beta)?"
    )

    def check_params(self, params: Mapping[str, Any]) -> None:
        refuse_reserved(params, _RESERVED)
        known = (*_GENERATION, *_THINKING, "tools", *_NATIVE)
        for name in params:
            if name not in known:
                raise ConfigurationError(
                    f"{name}= is not an option the Gemini API takes here; use one of "
                    f"{', '.join(sorted(known))} (generationConfig= for the rest of its "
                    "generation options, a system message for systemInstruction)"
                )
        config = params.get("generationConfig")
        if config is not None and not isinstance(config, dict):
            raise ConfigurationError("generationConfig= must be a dict of Gemini's fields")
        if (config or {}).get("candidateCount", 1) != 1:
            raise ConfigurationError(
                "candidateCount other than 1 is not supported: a stream holds one answer"
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
        path = f"{VERSION}/{model_path(model)}:streamGenerateContent"
        url = _url(target, path, "alt=sse")
        return WireRequest(url, headers(target, "text/event-stream"), build_body(messages, params))

    def parser(self) -> Parse:
        state = _State()
        return lambda data, event: parse_event(data, state)

    def parse_whole(self, body: str) -> Chunk | None:
        """A whole ``generateContent`` response, or the JSON array of responses that
        ``streamGenerateContent`` sends without ``alt=sse``."""
        obj = _parsed(body)
        responses = obj if type(obj) is list else [obj]
        if not responses or not all(type(response) is dict for response in responses):
            return None
        if escapes_surrogate(body):
            responses = scrub(responses)
        state = _State()
        chunks = [_checked(response, state) for response in responses]
        if any(chunk.error is not None for chunk in chunks):
            return None  # an error body: the caller quotes it
        chunk = _folded(chunks)
        if not (chunk.content or chunk.tool_calls or chunk.finish_reason):
            return None
        return chunk

    def end_kind(self, finish_reason: str | None) -> EndKind:
        if finish_reason == "MAX_TOKENS":
            return "length"
        if finish_reason in _FILTERED or (finish_reason or "").startswith(_BLOCKED):
            return "content_filter"
        return "completed"

    def error_said(self, body: str) -> str:
        stripped = body.lstrip()
        if stripped.startswith("["):  # streamGenerateContent's JSON array, holding the error
            try:
                first = json.loads(stripped)[0]
            except (ValueError, RecursionError, IndexError, KeyError, TypeError):
                first = None
            if isinstance(first, dict):
                return body_message(json.dumps(first))
        return body_message(body)

    def not_found(self, where: str, said_part: str, model: str, source: str) -> str:
        return (
            f"404 from {where}{PATH}/{model_path(model).partition('/')[2]}:streamGenerateContent"
            f"{said_part}. Fix: check the base URL ({source}): the Gemini API wants the host "
            f"alone ({GEMINI_BASE_URL}), and check that model {model!r} exists "
            "(list_models(api='gemini'))."
        )

    def redirect_base(self, target_url: str) -> str:
        cut = target_url.find(VERSION + "/")
        return target_url[:cut] if cut >= 0 else target_url

    def models_request(self, target: Target) -> WireRequest:
        # One page of up to 1000 (the API's largest): every model Google serves fits.
        return WireRequest(_url(target, PATH, "pageSize=1000"), headers(target, "application/json"))

    def parse_models(self, body: str, where: str) -> list[str]:
        ids = []
        for number, model in enumerate(model_list(body, "models", f"{where}{PATH}")):
            name = model.get("name") if type(model) is dict else None
            if type(name) is not str or not name.removeprefix("models/"):
                raise nameless(f"{where}{PATH}", f"models[{number}].name", model)
            methods = model.get("supportedGenerationMethods")
            if type(methods) is list and not {"generateContent", "streamGenerateContent"} & {
                method for method in methods if type(method) is str
            }:
                continue  # an embedding model, or another that cannot answer a chat
            ids.append(clean_text(name.removeprefix("models/")))
        return sorted(ids)


WIRE = Gemini()
