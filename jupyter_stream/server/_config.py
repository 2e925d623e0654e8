"""The server's settings (kept apart from the app, so that reading them imports no Starlette)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["ServerConfig", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, without brackets) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """How the server behaves. The defaults are those of ``jupyter-stream serve``."""

    tokens_per_second: float = 30.0  # the built-in models' pace; 0 or inf: as fast as possible
    first_token_delay: float = 0.2  # seconds before the first token
    # relay every request to this OpenAI-compatible API root (out of the repr: may hold credentials)
    upstream: str | None = field(default=None, repr=False)
    upstream_api_key: str | None = field(default=None, repr=False)
    upstream_model: str | None = None  # the model GET /stream asks the upstream for, unless named
    api_key: str | None = field(default=None, repr=False)  # clients must send it as a Bearer token
    max_streams: int = 1024  # concurrent chat completions; beyond it, 429 with Retry-After
    max_body_bytes: int = 4 * 1024 * 1024
    body_timeout: float = 30.0  # to receive the whole request body
    header_timeout: float = 10.0  # to receive a request's head, from connecting or the last answer
    idle_timeout: float = 5.0  # a connection with no request under way is closed after this long
    stall_timeout: float = 30.0  # a client that reads nothing for this long loses its stream
    upstream_connect_timeout: float = 10.0
    upstream_idle_timeout: float = 300.0  # longest silence from the upstream mid-answer
    log_requests: bool = True  # one INFO line per request on the jupyter_stream.server logger

    def __post_init__(self) -> None:
        if not self.tokens_per_second >= 0:
            raise ValueError("tokens_per_second must be >= 0 (0: as fast as possible)")
        if not self.first_token_delay >= 0:
            raise ValueError("first_token_delay must be >= 0 seconds")
        if self.max_streams < 1:
            raise ValueError("max_streams must be >= 1")
        for name in ("max_body_bytes", "body_timeout", "header_timeout", "idle_timeout",
                     "stall_timeout", "upstream_connect_timeout",
                     "upstream_idle_timeout"):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
