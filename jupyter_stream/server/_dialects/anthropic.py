"""Anthropic Messages (``POST /v1/messages``): the request read, the answer written.

``model``, ``messages`` and ``max_tokens`` are required, as Anthropic requires them; as it is
always there, ``max_tokens`` only caps ``demo``'s answer here (the other APIs' length fields make
it that long); ``system`` is a string or a list of text blocks. Streamed, an answer is SSE
events named in their ``event:`` lines (Anthropic's SDK skips an event without one):
``message_start``, ``content_block_start``, ``ping``, one ``content_block_delta`` (``text_delta``)
per token, ``content_block_stop``, ``message_delta`` (``stop_reason`` ``end_turn`` or
``max_tokens``, the output tokens), ``message_stop``. Not streamed, the whole ``message``.
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ...sse import encode_event
from .._body import ChatRequest, check_max_tokens, check_model, load_object
from .._errors import error_response, stream_error
from .._exchange import SSE_HEADERS
from .._models import count_prompt_tokens
from . import dumps, json_string

__all__ = ["Frames", "model_list", "parse"]

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}


def parse(body: bytes, request: Request) -> tuple[ChatRequest, Frames] | Response:
    fields = load_object(body, "anthropic")
    if isinstance(fields, Response):
        return fields
    messages = fields.get("messages")
    if not isinstance(messages, list) or not messages:
        return _bad('messages: Field required: send e.g. [{"role": "user", "content": "Hello"}]')
    if not all(isinstance(m, dict) and m.get("role") in ("user", "assistant") for m in messages):
        return _bad("messages: each message must be an object with role user or assistant")
    system = fields.get("system")
    if system is not None and not isinstance(system, (str, list)):
        return _bad("system: must be a string or a list of text blocks")
    model = check_model(fields.get("model"), "anthropic")
    if isinstance(model, Response):
        return model
    if fields.get("max_tokens") is None:
        return _bad("max_tokens: Field required: send the longest answer wanted, e.g. 1024")
    max_tokens = check_max_tokens(fields["max_tokens"], "max_tokens", "anthropic")
    if isinstance(max_tokens, Response):
        return max_tokens
    chat = [{"role": "system", "content": system}] if system else []
    stream = fields.get("stream") is True
    ask = ChatRequest(model, chat + messages, stream, max_tokens, True, grow=False)
    return ask, Frames(ask)


def _bad(message: str) -> Response:
    return error_response(400, message, api="anthropic")


def model_list(models: tuple[str, ...]) -> dict[str, Any]:
    """``GET /v1/models`` as Anthropic answers it (asked with ``anthropic-version``)."""
    data = [
        {
            "type": "model",
            "id": model,
            "display_name": model.capitalize(),
            "created_at": "1970-01-01T00:00:00Z",
        }
        for model in models
    ]
    return {"data": data, "has_more": False, "first_id": models[0], "last_id": models[-1]}


class Frames:
    headers = SSE_HEADERS

    def __init__(self, request: ChatRequest) -> None:
        self.request = request
        self.id = f"msg_{secrets.token_hex(12)}"
        self.delta_head = (
            b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            b'"delta":{"type":"text_delta","text":'
        )

    def _message(self, content: list[Any], stop: str | None, sent: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.request.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": count_prompt_tokens(self.request.messages),
                "output_tokens": sent,
            },
        }

    def opening(self) -> bytes:
        return b"".join(
            (
                _event("message_start", message=self._message([], None, 1)),
                _event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
                _event("ping"),
            )
        )

    def content(self, token: str) -> bytes:
        return b"%s%s}}\n\n" % (self.delta_head, json_string(token))

    def closing(self, sent: int, finish: str) -> bytes:
        stop = {"stop_reason": STOP_REASONS[finish], "stop_sequence": None}
        return b"".join(
            (
                _event("content_block_stop", index=0),
                _event("message_delta", delta=stop, usage={"output_tokens": sent}),
                _event("message_stop"),
            )
        )

    def failure(self, message: str) -> bytes:
        return stream_error("anthropic", message)

    def whole(self, text: str, sent: int, finish: str) -> bytes:
        content = [{"type": "text", "text": text}]
        message = self._message(content, STOP_REASONS[finish], sent)
        return dumps(message)


def _event(type: str, **fields: Any) -> bytes:
    return encode_event(dumps({"type": type, **fields}).decode(), event=type)
