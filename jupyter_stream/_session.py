"""ChatSession: a conversation whose turns are streams.

Each turn is a :class:`ChatStream`; what it left (all of its text, or the part received before it
was stopped) goes into the history that the next turn sends. A turn that ended early keeps its
partial answer and is marked with why it ended. Starting a turn while the previous one still
streams closes that one first, with reason ``superseded`` (``supersede=False`` lets it run on:
the new turn's history then holds only the turns that had ended).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._reply import clean_text
from ._stream import ChatStream, StopReason, astream_chat, stream_chat
from ._wire import wire_format

__all__ = ["ChatSession", "Turn"]


@dataclass(frozen=True)
class Turn:
    """One question and what came back."""

    prompt: str
    stream: ChatStream

    @property
    def answer(self) -> str:
        return self.stream.text

    @property
    def stop_reason(self) -> StopReason | None:
        return self.stream.stop_reason

    def messages(self) -> list[dict[str, Any]]:
        """The turn as history: the question and the answer's text.

        A turn that ended before any text (failed, stopped before its first token, or only
        calling tools) leaves nothing: two user messages in a row break some chat templates.
        Tool calls are left out, since a session sends no tool results: an assistant message
        with ``tool_calls`` and no ``tool`` answers makes the server refuse every later turn."""
        if not self.answer:
            return []
        return [
            {"role": "user", "content": self.prompt},
            {"role": "assistant", "content": self.answer},
        ]


class ChatSession:
    """A conversation: a system prompt, the turns so far, and default options for new turns.

    ``session.astream(prompt)`` (or ``stream`` for the sync API) starts a turn with the history
    so far; iterate or close the stream as any other. With ``supersede`` (the default) a new
    turn closes the one still streaming (reason ``superseded``); without, both run.
    ``api`` is the wire protocol of every turn (``"chat"``, ``"responses"``, ``"anthropic"``,
    ``"gemini"``, ``"ollama"``; unset, the environment decides, as for :func:`astream_chat`).
    ``defaults`` are options of :func:`astream_chat` for every turn (``model``,
    ``stop_when``, ``priority``, …).
    """

    def __init__(
        self,
        *,
        system: str | None = None,
        supersede: bool = True,
        api: str | None = None,
        **defaults: Any,
    ) -> None:
        if api is not None:
            wire_format(api)  # a name that is none says so now, not at the first turn
        self.system = system
        self.supersede = supersede
        self.api = api
        self.defaults = defaults
        self._turns: list[Turn] = []

    @property
    def turns(self) -> list[Turn]:
        return list(self._turns)

    @property
    def current(self) -> ChatStream | None:
        """The latest turn's stream, if it still runs."""
        if self._turns and not self._turns[-1].stream.done:
            return self._turns[-1].stream
        return None

    @property
    def running(self) -> list[ChatStream]:
        """The streams of every turn still running (more than one only without supersede)."""
        return [turn.stream for turn in self._turns if not turn.stream.done]

    def messages(self, prompt: str | None = None) -> list[dict[str, Any]]:
        """The history as Chat Completions messages, ending with ``prompt`` when given."""
        said: list[dict[str, Any]] = []
        if self.system:
            # Cleaned here too, not only when sent: messages() is history users print as it is.
            said.append({"role": "system", "content": clean_text(self.system)})
        for turn in self._turns:
            if turn.stream.done:
                said.extend(turn.messages())
        if prompt is not None:
            said.append({"role": "user", "content": prompt})
        return said

    def astream(self, prompt: str, **options: Any) -> ChatStream:
        """Start a turn on the running loop (see :func:`astream_chat`)."""
        return self._start(prompt, options, sync=False)

    def stream(self, prompt: str, **options: Any) -> ChatStream:
        """Start a turn on the private loop thread (see :func:`stream_chat`)."""
        return self._start(prompt, options, sync=True)

    def stop(self) -> None:
        """Stop the running turns, if any (reason ``stopped``)."""
        for stream in self.running:
            stream.close(StopReason.STOPPED)

    def reset(self) -> None:
        """Forget the history (stopping a running turn)."""
        self.stop()
        self._turns.clear()

    def _start(self, prompt: str, options: Mapping[str, Any], *, sync: bool) -> ChatStream:
        if self.supersede:
            for stream in self.running:
                stream.close(StopReason.SUPERSEDED)
        messages: Sequence[Mapping[str, Any]] = self.messages(prompt)
        merged = {"api": self.api, **self.defaults, **options}
        stream = (stream_chat if sync else astream_chat)(messages, **merged)
        # Cleaned for the history that %chat history and messages() show (sending cleans a copy).
        self._turns.append(Turn(clean_text(prompt), stream))
        return stream

    def __repr__(self) -> str:
        api = f" api={self.api!r}" if self.api is not None else ""
        return (
            f"<ChatSession turns={len(self._turns)} system={bool(self.system)} "
            f"supersede={self.supersede}{api}>"
        )
