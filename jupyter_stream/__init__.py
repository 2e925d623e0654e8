"""jupyter_stream: stream an LLM's answer into a notebook, and stop it the instant you want.

async for delta in astream_chat("Explain SSE in one paragraph"):  # the embedded demo server
    print(delta, end="")
"""

from typing import Any

from ._exceptions import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    EventTooLargeError,
    HTTPStatusError,
    JupyterStreamError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
    StreamLimitError,
    StreamTimeout,
    TruncatedStreamError,
)
from ._models import alist_models, list_models
from ._moderation import RuleMatch, StopOn, stop_on
from ._registry import StreamRegistry, registry
from ._reply import Reply, ToolCall
from ._session import ChatSession, Turn
from ._stream import ChatStream, StopReason, StreamStats, astream_chat, stream_chat
from .sse import ServerSentEvent, SSEDecoder

__version__ = "0.1.0"


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext jupyter_stream``: registers ``%%chat`` and ``%chat``."""
    from ._magic import load_ipython_extension

    load_ipython_extension(shell)


def unload_ipython_extension(shell: Any) -> None:
    from ._magic import unload_ipython_extension

    unload_ipython_extension(shell)


def __getattr__(name: str) -> Any:
    # The widgets import ipywidgets, which a script or the CLI should not pay for.
    if name == "ChatPanel":
        from ._widgets import ChatPanel

        return ChatPanel
    raise AttributeError(f"module 'jupyter_stream' has no attribute {name!r}")


__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ChatPanel",
    "ChatSession",
    "ChatStream",
    "ConfigurationError",
    "ConnectError",
    "ConnectionLostError",
    "EventTooLargeError",
    "HTTPStatusError",
    "JupyterStreamError",
    "NotFoundError",
    "ProtocolError",
    "RateLimitError",
    "Reply",
    "RuleMatch",
    "SSEDecoder",
    "ServerError",
    "ServerSentEvent",
    "StopOn",
    "StopReason",
    "StreamLimitError",
    "StreamRegistry",
    "StreamStats",
    "StreamTimeout",
    "ToolCall",
    "TruncatedStreamError",
    "Turn",
    "alist_models",
    "astream_chat",
    "list_models",
    "load_ipython_extension",
    "registry",
    "stop_on",
    "stream_chat",
    "unload_ipython_extension",
]
