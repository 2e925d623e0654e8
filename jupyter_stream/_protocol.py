"""Kept for the server package's import of ``excerpt`` until it imports ``_reply`` directly;
the client's parts live in ``_reply`` (neutral), ``_messages`` and ``_wire.chat``."""

from ._reply import excerpt

__all__ = ["excerpt"]
