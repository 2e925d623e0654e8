"""The terminal filter: what a terminal would act on goes, text stays (pure); and terminal
IPython, whose %%chat and %chat print a hostile server's text through it."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import user_env
from scripted_server import ACTED_ON, HOSTILE, Request, Response, ScriptedServer, hostile

from jupyter_stream._terminal import MAX_HELD, TerminalFilter, for_terminal

CASES = [
    # (what a hostile reply holds, what is shown)
    ("copy \x1b]52;c;cm0gLXJmIH4=\x07done", "copy done"),  # OSC 52 sets the clipboard (BEL)
    ("copy \x1b]52;c;cm0gLXJmIH4=\x1b\\done", "copy done"),  # … ended by ST
    ("before\x1b[2J\x1b[Hafter", "beforeafter"),  # clear the screen, cursor home
    ("shown \x1b[8msecret\x1b[0m end", "shown secret end"),  # SGR 8 hid "secret": now shown
    ("\x1b]0;pwned\x07title", "title"),  # window title
    ("\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\", "click"),  # OSC 8 hyperlink
    ("a\x9b2Jb", "ab"),  # CSI in its 8-bit C1 form
    ("a\x9d52;c;eA==\x9cb", "ab"),  # OSC … ST, 8-bit forms
    ("a\x1bPq#0;2;0;0;0\x1b\\b", "ab"),  # DCS (sixel)
    ("a\x1bcb", "ab"),  # ESC c: full reset
    ("a\x1b(Bb", "ab"),  # ESC ( B: character set
    ("safe\rrm -rf ~", "saferm -rf ~"),  # CR would overwrite the line
    ("ab\x08\x08cd\x7f", "abcd"),  # backspace, DEL
    ("bell\x07 \x85nel \x1b", "bell nel "),  # BEL, NEL (C1), a stray ESC
    ("access = \u202euser\u2066 admin\u2069", "access = user admin"),  # bidi override, isolate
    ("tab\tand\nnewline\n", "tab\tand\nnewline\n"),  # kept
    ("family 👨\u200d👩\u200d👧 שָׁלוֹם \u200f", "family 👨\u200d👩\u200d👧 שָׁלוֹם \u200f"),  # text
    ("\x1b]0;no end\nrest", "0;no end\nrest"),  # an OSC past its line: its text is shown
    ("\x1b[1;2\nx", "1;2\nx"),  # a CSI with no final byte
]


@pytest.mark.parametrize(("given", "shown"), CASES)
def test_what_a_terminal_acts_on_is_removed_and_text_stays(given: str, shown: str) -> None:
    assert for_terminal(given) == shown


@pytest.mark.parametrize(("given", "shown"), CASES)
def test_a_sequence_split_anywhere_between_pieces_is_removed_as_a_whole(
    given: str, shown: str
) -> None:
    for cut in range(len(given) + 1):
        terminal = TerminalFilter()
        out = terminal.feed(given[:cut]) + terminal.feed(given[cut:]) + terminal.flush()
        assert out == shown, cut
    terminal = TerminalFilter()
    assert "".join(map(terminal.feed, given)) + terminal.flush() == shown  # a character a piece


def test_an_unfinished_sequence_is_held_back_only_so_far() -> None:
    terminal = TerminalFilter()
    assert terminal.feed("text \x1b]52;c;") == "text "  # the next piece may end it
    assert terminal.feed("A" * MAX_HELD) == "52;c;" + "A" * MAX_HELD  # too long: shown as text
    assert terminal.feed("\x07after") == "after"
    terminal = TerminalFilter()
    assert terminal.feed("end \x1b[3") == "end "
    assert terminal.flush() == "3"  # the stream ended first: its text, never the ESC


def test_no_control_character_gets_through_any_mix() -> None:
    alphabet = [*"\x1b[]\\\x07\x9b\x9c\x9d\r\n\t\x00\x7f\u202em;aé🚀P\x90", "2J", "52;c;"]
    rng = random.Random(13)
    for _ in range(2000):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 20)))
        assert not ACTED_ON.search(for_terminal(text)), repr(text)
        terminal = TerminalFilter()
        pieces = [terminal.feed(text[i : i + 3]) for i in range(0, len(text), 3)]
        assert not ACTED_ON.search("".join(pieces) + terminal.flush()), repr(text)


def test_plain_text_comes_back_as_it_is() -> None:
    text = "A plain answer: `code`, *stars*, <tags> & 🚀."
    assert for_terminal(text) is text


def test_terminal_ipython_prints_a_hostile_reply_history_and_models_without_escapes(
    server: ScriptedServer, tmp_path: Path
) -> None:
    server.handler = hostile
    typed = "\n".join(
        [
            f'%config ChatMagics.base_url = "{server.url}"',
            '%config ChatMagics.model = "fine"',
            "%%chat",
            "Say hi.",
            "",
            "",  # simple-prompt IPython ends a cell magic at a second blank line
            "%chat history",
            "%chat models",
            "exit",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-m", "IPython", "--ext", "jupyter_stream", "--simple-prompt",
         "--no-banner", "--colors=NoColor", "--HistoryManager.enabled=False"],
        input=typed, capture_output=True, text=True, timeout=60,
        env=user_env(IPYTHONDIR=str(tmp_path)),
    )  # fmt: skip
    assert "Hi hidden there\n" in done.stdout, done.stdout + done.stderr  # the reply, streamed
    assert "evilhidden: Hi hidden there" in done.stdout  # %chat history
    assert "  evilhidden\n" in done.stdout and "* fine\n" in done.stdout  # %chat models
    assert not ACTED_ON.search(done.stdout), repr(done.stdout)


def test_terminal_ipython_shows_a_hostile_error_message_without_escapes(
    server: ScriptedServer, tmp_path: Path
) -> None:
    async def handler(request: Request, response: Response) -> None:
        error = {"error": {"message": f"nope{HOSTILE}", "type": "invalid_request_error"}}
        await response.whole(400, json.dumps(error))

    server.handler = handler
    typed = "\n".join(
        [f'%config ChatMagics.base_url = "{server.url}"', "%%chat -m x", "Say hi.", "", "", "exit"]
    )
    done = subprocess.run(
        [sys.executable, "-m", "IPython", "--ext", "jupyter_stream", "--simple-prompt",
         "--no-banner", "--colors=NoColor", "--HistoryManager.enabled=False"],
        input=typed, capture_output=True, text=True, timeout=60,
        env=user_env(IPYTHONDIR=str(tmp_path)),
    )  # fmt: skip
    assert "BadRequestError: " in done.stdout and "nopehidden" in done.stdout, done.stdout
    assert not ACTED_ON.search(done.stdout + done.stderr), repr(done.stdout)
