"""The messages a stream sends: a prompt string or a message list, checked and copied."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._exceptions import ConfigurationError
from ._reply import Message, clean_text, excerpt, scrub

__all__ = ["normalize_messages"]


def normalize_messages(prompt_or_messages: str | Sequence[Mapping[str, Any]]) -> list[Message]:
    """A prompt string becomes one user message; a message list is checked and copied, lone
    surrogates replaced (UTF-8 cannot encode them: the request would fail)."""
    if isinstance(prompt_or_messages, str):
        return [{"role": "user", "content": clean_text(prompt_or_messages)}]
    messages = [scrub(dict(message)) for message in prompt_or_messages]
    if not messages:
        raise ConfigurationError("no messages: pass a prompt string or a non-empty message list")
    for message in messages:
        if "role" not in message:
            raise ConfigurationError(
                f"a message has no 'role': {excerpt(repr(message))}; "
                "use {'role': 'user', 'content': '...'}"
            )
    return messages
