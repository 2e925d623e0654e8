"""From a growing answer to what a notebook shows: safe HTML in frames, a status line, and the
final output bundle. Pure: strings in, strings out; no IPython, no ipywidgets, no asyncio.

Model output is untrusted text. Markdown is rendered by markdown-it-py with raw HTML turned off,
so ``<script>`` or ``<img onerror=…>`` from the model arrive as visible text, and link
destinations such as ``javascript:`` are refused by its ``validateLink``. The Markdown source kept
in the notebook (``text/markdown``) has its ``<`` escaped outside code for the same reason, since
a notebook renders a live output's Markdown as trusted.

Frames are append-mostly, so traffic stays near-linear in the answer's size: the answer is cut
into top-level Markdown blocks, a block is finished once the next one has begun, and a finished
block is rendered and sent once; only the last, unfinished block (the tail) is re-rendered, and
only when it changed.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

__all__ = [
    "FRAME_INTERVAL",
    "BlockSplitter",
    "Frame",
    "end_mark",
    "format_status",
    "render_markdown",
    "reply_bundle",
    "safe_markdown_source",
]

FRAME_INTERVAL = 0.05  # at most 20 frames a second, whatever the token rate

# Images are off: a reply steered by a prompt injection could otherwise make the page load
# ``![](https://elsewhere/?data)``. An image's Markdown is shown as a link instead.
_md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"]).disable("image")


# markdown-it stops parsing a block that nests deeper than its maxNesting (20) and drops the
# rest of it; a block that reaches this level is shown as plain text instead.
_DEEPEST = _md.options["maxNesting"] - 1


def render_markdown(source: str) -> str:
    """Markdown to HTML, with any raw HTML in ``source`` escaped (shown as text, never run).

    A top-level block nested too deeply for the parser (``>`` quotes or lists 20 levels deep)
    is shown as preformatted text, so that none of it vanishes."""
    env: dict[str, Any] = {}
    tokens = _md.parse(source, env)
    if all(token.level < _DEEPEST for token in tokens):
        html_: str = _md.renderer.render(tokens, _md.options, env)
        return html_
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    for block in _top_level_blocks(tokens):
        first = block[0]
        if first.map is not None and any(token.level >= _DEEPEST for token in block):
            text = "".join(lines[first.map[0] : first.map[1]])
            out.append(f'<pre class="jupyter-stream-deep">{html.escape(text)}</pre>\n')
        else:
            out.append(_md.renderer.render(block, _md.options, env))
    return "".join(out)


def _top_level_blocks(tokens: list[Token]) -> list[list[Token]]:
    """``tokens`` cut into the top-level blocks they make up."""
    blocks: list[list[Token]] = []
    depth = 0
    for token in tokens:
        if depth == 0:
            blocks.append([])
        blocks[-1].append(token)
        depth += token.nesting if token.block else 0
    return blocks


@dataclass(frozen=True)
class Frame:
    """What changed since the last frame: blocks now finished (HTML, each sent once) and the
    tail's HTML (None when it did not change)."""

    finished: list[str] = field(default_factory=list)
    tail: str | None = None

    def __bool__(self) -> bool:
        return bool(self.finished) or self.tail is not None


class BlockSplitter:
    """Cuts growing Markdown into finished blocks and the tail still being written.

    Only the text after the last finished block is parsed again, so a frame costs about the
    size of the tail, not of the whole answer.
    """

    def __init__(self) -> None:
        self._text = ""
        self._done = 0  # offset in _text where the tail begins
        self._tail_html: str | None = None

    def update(self, text: str, *, final: bool = False) -> Frame:
        """The frame that brings the display from the last call's text to ``text``.

        ``text`` must extend the previous text. With ``final`` the tail is finished too.
        """
        if not text.startswith(self._text):
            raise ValueError("the text must grow by appending")
        self._text = text
        rest = text[self._done :]
        finished: list[str] = []
        if rest.strip():
            starts = _block_starts(rest)
            lines = rest.splitlines(keepends=True)
            offsets = [0]
            for line in lines:
                offsets.append(offsets[-1] + len(line))
            # A block is finished once the next has begun; a last line without its newline
            # may still be the start of something else (a setext underline, a fence).
            for begin, end in itertools.pairwise(starts):
                source = rest[offsets[begin] : offsets[end]]
                finished.append(render_markdown(source))
            if len(starts) > 1:
                self._done += offsets[starts[-1]]
        tail_source = text[self._done :]
        if final:
            if tail_source.strip():
                finished.append(render_markdown(tail_source))
            self._done = len(text)
            tail_source = ""
        tail_html = render_markdown(tail_source) if tail_source.strip() else ""
        if tail_html == self._tail_html:
            return Frame(finished, None)
        self._tail_html = tail_html
        return Frame(finished, tail_html)


def _block_starts(source: str) -> list[int]:
    """The first line of each top-level block of ``source``."""
    return [
        token.map[0]
        for token in _md.parse(source)
        if token.level == 0 and token.nesting >= 0 and token.map is not None
    ]


# A link's or a link definition's destination with a scheme that runs or embeds something. It is
# looked for after any "](" or "]:", wherever it stands (inside ">" quotes, indented in a list,
# after a label holding "\]"): a definition's label needs a parser to delimit, the "]" that
# ends it does not. Prose that merely reads "]: javascript:" loses its scheme too; nothing runs.
_UNSAFE_LINK = re.compile(r"(\]\s*[(:]\s*)(?=(?:javascript|vbscript|data|file):)", re.IGNORECASE)
# An image's "![": the "!" becomes an entity, so that no renderer of the kept Markdown fetches
# the image (a beacon); it shows as a link. An escaped "\!" (odd backslashes) is left alone.
_IMAGE = re.compile(r"(?<!\\)((?:\\\\)*)!(?=\[)")


def safe_markdown_source(text: str) -> str:
    """``text`` as Markdown that no renderer turns into live HTML.

    Outside fenced and indented code blocks, every ``&`` becomes ``&amp;`` and every ``<``
    ``&lt;`` (they render as themselves, and no tag or entity-spelled link scheme can form), and
    links and link definitions to ``javascript:``, ``vbscript:``, ``data:`` and ``file:`` lose
    their scheme, and images show as links (nothing is fetched). Code blocks are kept exactly.
    Inline code spans are escaped too (a renderer shows ``&lt;`` there as typed): telling spans
    apart safely would take a full parser, and the notebook shows the ``text/html`` rendering
    first anyway.
    """
    if not any(mark in text for mark in "<&]!"):
        return text
    lines = text.splitlines(keepends=True)
    in_code = [False] * len(lines)
    for token in _md.parse(text):
        if token.type in ("fence", "code_block") and token.map is not None:
            for number in range(token.map[0], min(token.map[1], len(lines))):
                in_code[number] = True
    out: list[str] = []
    prose: list[str] = []
    for line, code in zip(lines, in_code, strict=True):
        if code:
            if prose:
                out.append(_escape_prose("".join(prose)))
                prose = []
            out.append(line)
        else:
            prose.append(line)
    if prose:
        out.append(_escape_prose("".join(prose)))
    return "".join(out)


def _escape_prose(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    text = _IMAGE.sub(r"\1&#33;", text)
    return _UNSAFE_LINK.sub(r"\1unsafe-", text)


def format_status(
    *,
    model: str,
    tokens: int,
    tokens_per_second: float | None,
    time_to_first_token: float | None,
    elapsed: float,
    reason: str | None,
) -> str:
    """One line: model · tokens · tok/s · time to first token · elapsed · why it ended."""
    parts = [model, f"{tokens} token{'' if tokens == 1 else 's'}"]
    if tokens_per_second is not None:
        parts.append(f"{tokens_per_second:.1f} tok/s")
    if time_to_first_token is not None:
        parts.append(f"first token {time_to_first_token:.2f} s")
    parts.append(f"{elapsed:.1f} s")
    parts.append(reason or "streaming…")
    return " · ".join(parts)


# How a reply that did not complete is marked, in the notebook and in the history.
MARKS = {
    "stopped": "stopped by the user",
    "timeout": "stopped: the time limit passed",
    "idle_timeout": "stopped: the server went quiet",
    "interrupted": "interrupted",
    "superseded": "superseded by a newer question",
    "moderated": "stopped by a moderation rule",
    "preempted": "preempted by a stream of higher priority",
    "length": "cut at the token limit",
    "content_filter": "cut by the server's content filter",
    "error": "ended by an error",
}


def end_mark(reason: str | None, detail: str | None = None) -> str | None:
    """How a reply that did not complete is marked, with what stopped it when known (the rule
    that matched, what took the slot): ``stopped by a moderation rule: word 'x' matched 'X'``."""
    mark = MARKS.get(reason or "")
    if mark is None:
        return None
    if detail:
        return f"{mark}: {' '.join(detail.split())}"
    return mark


_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def markdown_literal(text: str) -> str:
    """``text`` as Markdown that shows exactly ``text``: every ASCII punctuation mark escaped
    with a backslash (CommonMark allows it for each), so no markup or HTML can form."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def reply_bundle(
    *,
    text: str,
    reasoning: str,
    status: str,
    reason: str,
    metadata: Mapping[str, Any],
    detail: str | None = None,
) -> tuple[dict[str, str], dict[str, Any]]:
    """The final output of a turn: ``text/html`` (rendered as live), ``text/markdown`` (the
    answer's source, made safe) and ``text/plain``, with the turn's facts in metadata.
    ``detail`` says what stopped it (a moderation rule's match quotes model output: it is
    escaped like the rest)."""
    mark = end_mark(reason, detail)
    plain = text if mark is None else f"{text}\n[{mark}]"
    markdown = safe_markdown_source(text)
    if mark is not None:
        said = MARKS[reason] + (f": {markdown_literal(' '.join(detail.split()))}" if detail else "")
        markdown += f"\n\n*[{said}]*"
    parts = []
    if reasoning:
        parts.append(reasoning_html(render_markdown(reasoning), open_=False))
    parts.append(f'<div class="jupyter-stream-reply">{render_markdown(text)}</div>')
    parts.append(status_html(status, mark))
    data = {"text/html": "\n".join(parts), "text/markdown": markdown, "text/plain": plain}
    return data, {"jupyter_stream": dict(metadata)}


def reasoning_html(inner: str, *, open_: bool) -> str:
    """Reasoning text, apart and dimmed, in a collapsible box."""
    return (
        f'<details{" open" if open_ else ""} class="jupyter-stream-reasoning" '
        'style="opacity:0.65"><summary>Reasoning</summary>'
        f"{inner}</details>"
    )


def status_html(status: str, mark: str | None = None) -> str:
    marked = f"<strong>{html.escape(mark)}</strong> · " if mark else ""
    return (
        '<div class="jupyter-stream-status" style="opacity:0.7;font-size:85%">'
        f"{marked}{html.escape(status)}</div>"
    )
