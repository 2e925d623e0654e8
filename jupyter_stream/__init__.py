"""jupyter_stream: stream an LLM's answer into a notebook, and stop it the instant you want.

async for delta in astream_chat("Explain SSE in one paragraph"):  # the embedded demo server
    print(delta, end="")
"""

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
    StreamTimeout,
    TruncatedStreamError,
)
from ._models import alist_models, list_models
from ._protocol import Reply, ToolCall
from ._stream import ChatStream, StopReason, StreamStats, astream_chat, stream_chat
from .sse import ServerSentEvent, SSEDecoder

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
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
    "SSEDecoder",
    "ServerError",
    "ServerSentEvent",
    "StopReason",
    "StreamStats",
    "StreamTimeout",
    "ToolCall",
    "TruncatedStreamError",
    "alist_models",
    "astream_chat",
    "list_models",
    "stream_chat",
]
