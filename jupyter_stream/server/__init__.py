"""An OpenAI-compatible server: the built-in ``demo`` and ``echo`` models, or a relay.

``jupyter-stream serve`` runs it from a terminal; :class:`BackgroundServer` runs it on a thread;
when no endpoint is configured, streams use the embedded default (:func:`embedded_base_url`).
The rest of jupyter_stream imports this package only to start the embedded default, and this
module imports Starlette only when an app is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._background import BackgroundServer, embedded_base_url, stop_embedded
from ._config import ServerConfig

if TYPE_CHECKING:
    from ._app import create_app

__all__ = ["BackgroundServer", "ServerConfig", "create_app", "embedded_base_url", "stop_embedded"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ._app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
