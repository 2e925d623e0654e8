"""OpenAI Responses (``POST /v1/responses``): the request read, the answer written.

Streamed, an answer is typed SSE events, each named in its ``event:`` line and numbered by
``sequence_number``: ``response.created``, ``response.in_progress``,
``response.output_item.added``, ``response.content_part.added``, one
``response.output_text.delta`` per token, ``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done``, and ``response.completed`` (or
``response.incomplete`` when ``max_output_tokens`` cut it) with the usage. Not streamed, the
whole ``response`` object. Field names and types follow openai-python's
``openai/types/responses``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...sse import encode_event
from .._body import ChatRequest, check_max_tokens, check_model, load_object
from .._errors import error_response, stream_error
from .._exchange import SSE_HEADERS
from .._models import count_prompt_tokens
from . import dumps, json_string

__all__ = ["Frames", "parse"]


def parse(body: bytes, request: Request) -> tuple[ChatRequest, Frames] | Response:
    fields = load_object(body, "responses")
    if isinstance(fields, Response):
        return fields
    messages = _messages(fields.get("input"))
    if isinstance(messages, Response):
        return messages
    instructions = fields.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        return _bad("instructions must be a string", "instructions")
    if instructions:
        messages.insert(0, {"role": "developer", "content": instructions})
    model = check_model(fields.get("model"), "responses")
    if isinstance(model, Response):
        return model
    max_tokens = check_max_tokens(fields.get("max_output_tokens"), "max_output_tokens", "responses")
    if isinstance(max_tokens, Response):
        return max_tokens
    ask = ChatRequest(model, messages, fields.get("stream") is True, max_tokens, True)
    return ask, Frames(ask, instructions or None)


def _messages(given: Any) -> list[dict[str, Any]] | Response:
    """``input`` as chat messages: a string is one user message; of a list of items, the
    messages (items with a role) are kept, other items (tool outputs, …) have no text to answer."""
    if isinstance(given, str) and given:
        return [{"role": "user", "content": given}]
    if not isinstance(given, list) or not given:
        return _bad('input is missing or empty: send e.g. "Hello" or a list of items', "input")
    if not all(isinstance(item, dict) for item in given):
        return _bad("each input item must be an object (a message has a role and content)", "input")
    return [
        {"role": item["role"], "content": item.get("content")}
        for item in given
        if isinstance(item.get("role"), str)
    ]


def _bad(message: str, param: str) -> Response:
    return error_response(400, message, param=param, api="responses")


class Frames:
    headers = SSE_HEADERS

    def __init__(self, request: ChatRequest, instructions: str | None = None) -> None:
        self.request = request
        self.instructions = instructions  # echoed in the response object, as OpenAI does
        self.id = f"resp_{secrets.token_hex(24)}"
        self.item_id = f"msg_{secrets.token_hex(24)}"
        self.created = int(time.time())
        self.sequence = 0
        self.tokens: list[str] = []
        self.delta_head = (
            b"event: response.output_text.delta\ndata: "
            b'{"type":"response.output_text.delta","item_id":"%s","output_index":0,'
            b'"content_index":0,"logprobs":[],"delta":' % self.item_id.encode()
        )

    def _event(self, type: str, **fields: Any) -> bytes:
        data = {"type": type, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return encode_event(dumps(data).decode(), event=type)

    def _response(self, status: str, output: list[Any], sent: int | None = None) -> dict[str, Any]:
        usage = None
        if sent is not None:
            prompt = count_prompt_tokens(self.request.messages)
            usage = {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": sent,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + sent,
            }
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": self.instructions,
            "max_output_tokens": self.request.max_tokens,
            "model": self.request.model,
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "temperature": 1.0,
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "usage": usage,
        }

    def _message(self, status: str, text: str | None) -> dict[str, Any]:
        content = [] if text is None else [_part(text)]
        return {
            "id": self.item_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    def opening(self) -> bytes:
        item = {"output_index": 0, "item": self._message("in_progress", None)}
        where = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        return b"".join(
            (
                self._event("response.created", response=self._response("in_progress", [])),
                self._event("response.in_progress", response=self._response("in_progress", [])),
                self._event("response.output_item.added", **item),
                self._event("response.content_part.added", **where, part=_part("")),
            )
        )

    def content(self, token: str) -> bytes:
        self.tokens.append(token)
        self.sequence += 1
        return b'%s%s,"sequence_number":%d}\n\n' % (
            self.delta_head,
            json_string(token),
            self.sequence - 1,
        )

    def closing(self, sent: int, finish: str) -> bytes:
        text = "".join(self.tokens)
        status = "completed" if finish == "stop" else "incomplete"
        where = {"item_id": self.item_id, "output_index": 0, "content_index": 0}
        item = self._message(status, text)
        return b"".join(
            (
                self._event("response.output_text.done", **where, text=text, logprobs=[]),
                self._event("response.content_part.done", **where, part=_part(text)),
                self._event("response.output_item.done", output_index=0, item=item),
                self._event(f"response.{status}", response=self._response(status, [item], sent)),
            )
        )

    def failure(self, message: str) -> bytes:
        return stream_error("responses", message, sequence_number=self.sequence)

    def whole(self, text: str, sent: int, finish: str) -> bytes:
        status = "completed" if finish == "stop" else "incomplete"
        response = self._response(status, [self._message(status, text)], sent)
        return dumps(response)


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
