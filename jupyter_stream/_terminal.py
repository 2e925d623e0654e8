"""Untrusted text made safe to show on a terminal: the one filter for all we print there.

A model's reply, a server's error message or model name could hold escape sequences that a
terminal acts on: set the clipboard (OSC 52), clear the screen (CSI 2J), hide text (SGR 8),
retitle the window, or move the cursor to overwrite what was shown. What goes is what a
terminal would act on, and what reorders the shown text:

- escape sequences, whole: CSI (``ESC [`` … final byte), the string sequences OSC, DCS, SOS, PM
  and APC (``ESC ]`` … BEL or ST) when they end on the same line, and two-character escapes
  (ECMA-48 5.3-5.6), also in their 8-bit C1 forms;
- every other C0 and C1 control character (CR, backspace, DEL, a stray ESC), but tab and newline;
- the bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069), which
  make a line show in another order than it reads (the "Trojan Source" trick).

Kept, because they are text: zero-width joiners and non-joiners (emoji and several scripts need
them), the left-to-right and right-to-left marks, Unicode tag characters (flag emoji). A string
sequence that runs past its line is not removed whole: its control characters go and its text
is shown, so that an unterminated OSC cannot hide the rest of a reply.
"""

from __future__ import annotations

import re

__all__ = ["TerminalFilter", "for_terminal"]

_BODY = r"[^\x07\x1b\x9c\n]*"  # a string sequence's text: up to BEL or ST, within one line
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"  # CSI: parameters, intermediates, final
    rf"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]){_BODY}(?:\x07|\x1b\\|\x9c)"  # OSC DCS SOS PM APC
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]"  # ESC, intermediates, a final: ESC c (reset), ESC 7, ESC ( B
)
_PARTIAL = re.compile(  # a sequence begun at the end of a piece, that the next may finish
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*\Z"
    rf"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]){_BODY}\x1b?\Z"
    r"|\x1b[\x20-\x2f]*\Z"
)
_STRAY = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
MAX_HELD = 4096  # characters of an unfinished sequence held back; beyond, shown as text


def for_terminal(text: str) -> str:
    """``text`` without escape sequences, control characters (but tab and newline) and bidi
    overrides: safe to write to a terminal (see the module docstring)."""
    if text.isprintable():  # the usual case: nothing to remove, nothing to scan
        return text
    return _STRAY.sub("", _SEQUENCE.sub("", text))


class TerminalFilter:
    """:func:`for_terminal` over a stream of pieces: a sequence split between two pieces is
    removed whole, as it would be in one piece. Call :meth:`flush` at the end."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        if self._held:
            text, self._held = self._held + text, ""
        if "\x1b" in text or _has_c1(text):
            partial = _PARTIAL.search(text)
            if partial is not None and len(text) - partial.start() <= MAX_HELD:
                text, self._held = text[: partial.start()], text[partial.start() :]
        return for_terminal(text)

    def flush(self) -> str:
        """What is held back (an unfinished sequence), filtered: its text, without controls."""
        held, self._held = self._held, ""
        return for_terminal(held)


def _has_c1(text: str) -> bool:
    """Whether ``text`` holds an 8-bit sequence introducer (CSI, OSC, DCS, SOS, PM, APC)."""
    return any(c in text for c in "\x90\x98\x9b\x9d\x9e\x9f")
