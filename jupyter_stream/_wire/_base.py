"""The interface every wire format implements (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, Protocol

from .._reply import Chunk
from .._secrets import safe_url

__all__ = [
    "Decoder",
    "EndKind",
    "Event",
    "Framing",
    "Parse",
    "Target",
    "WireFormat",
    "WireRequest",
]

Framing = Literal["sse", "ndjson"]
EndKind = Literal["completed", "length", "content_filter"]


class Event(Protocol):
    """One decoded event of a body: its data, and its name (``"message"`` where none)."""

    @property
    def data(self) -> str: ...

    @property
    def event(self) -> str: ...


# One stream's parse: (data, event name) -> a str for a chunk of text alone (the hot path), else
# a Chunk. A Chunk with ``done`` is the stream's end mark; its other fields are taken too.
Parse = Callable[[str, str], "str | Chunk"]


class Decoder(Protocol):
    """Bytes in, events out, for one framing (``sse.SSEDecoder`` is one)."""

    def feed(self, data: bytes) -> Sequence[Event]: ...

    def flush(self) -> Sequence[Event]: ...


class Target(Protocol):
    """What a wire format needs of an endpoint (``_target.Endpoint`` is one)."""

    @property
    def api_key(self) -> str | None: ...

    @property
    def url_credentials(self) -> str | None: ...

    def url(self, path: str) -> str: ...


class WireRequest(NamedTuple):
    """An HTTP request to send: POST ``body`` as JSON, or GET when ``body`` is None."""

    url: str
    headers: dict[str, str]
    body: dict[str, Any] | None = None

    def __repr__(self) -> str:  # a verbose traceback prints it: no headers (the key), no query
        return f"<WireRequest {'POST' if self.body is not None else 'GET'} {safe_url(self.url)}>"


class WireFormat(Protocol):
    """One API's request and event shapes."""

    name: str  # the api= name
    framing: Framing  # how the streamed body is cut into events
    path: str  # the request path below the base URL, for messages
    root: str  # the base URL's path below the host, as the official SDK has it: "/v1" or ""
    default_base_url: str  # the provider's own API root, where its key alone points
    key_vars: tuple[str, ...]  # environment variables that hold the provider's key, first wins
    key_header: str  # the header an API key goes in: "Authorization" (as Bearer), or its own
    hosts: tuple[str, ...]  # well-known hosts that speak this API (and no other)
    end_mark: str  # the stream's own end, for messages: "[DONE]"
    described: str  # what the base URL should be, for messages: "an OpenAI-compatible API"
    url_hint: str  # a question to ask when the base URL looks wrong

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise ConfigurationError for request options the format sets itself, or refuses."""

    def request(
        self,
        target: Target,
        model: str,
        messages: list[dict[str, Any]],
        params: Mapping[str, Any],
        *,
        fallback: bool = False,
    ) -> WireRequest:
        """The streaming request; ``fallback`` after :meth:`fallback` said to retry plainer."""

    def fallback(self, status: int, body: str) -> bool:
        """True when an error status says the request should be retried once, plainer."""

    def parser(self) -> Parse:
        """A parse function for one stream; it may keep state from event to event (open tool
        calls, usage so far, the index of the next whole tool call)."""

    def parse_whole(self, body: str) -> Chunk | None:
        """A whole, unstreamed JSON answer as one Chunk; None when it is not one."""

    def end_kind(self, finish_reason: str | None) -> EndKind:
        """How the server's finish reason ends the stream."""

    def error_said(self, body: str) -> str:
        """The server's own words from an error body (short)."""

    def not_found(self, where: str, said_part: str, model: str, source: str) -> str:
        """The message for a 404 that does not name the model."""

    def redirect_base(self, target_url: str) -> str:
        """The base URL a redirect to ``target_url`` suggests."""

    def models_request(self, target: Target) -> WireRequest:
        """The request that lists the models."""

    def parse_models(self, body: str, where: str) -> list[str]:
        """The model ids of a models response (ProtocolError naming ``where`` if it is none)."""
