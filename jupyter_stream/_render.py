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
    "Continuation",
    "Frame",
    "Rendered",
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


# How much of an unfinished block is rendered again each frame, at most (characters): a longer
# table, code block, list or quote is cut where it can be; a longer paragraph is shown as text.
LIVE_LIMIT = 2048
RAW_LIMIT = 8192

# Where a cut block's further rows or lines go, inside the element its first part made, and
# where they stand in its HTML: markdown-it escapes model text, so these tags are its own.
_TBODY = ":scope > table > tbody"
_CODE = ":scope > pre > code"
_RAW = ":scope > pre"
_INSIDE = {_TBODY: ("<tbody>\n", "</tbody>\n</table>"), _CODE: ("<code", "</code></pre>")}
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_EDGE = 256  # characters either side of a cut where escaping could reach across it


@dataclass(frozen=True)
class Continuation:
    """More of the block finished before it: ``html`` goes at the end of that block's element
    ``into`` (a CSS selector relative to the block: its table's body, its code)."""

    into: str
    html: str


Piece = str | Continuation


@dataclass(frozen=True)
class Frame:
    """What changed since the last frame: pieces now finished (a block's HTML, or more rows or
    lines of the block before it; each sent once) and the tail's HTML (None when it did not
    change)."""

    finished: list[Piece] = field(default_factory=list)
    tail: str | None = None

    def __bool__(self) -> bool:
        return bool(self.finished) or self.tail is not None


@dataclass(frozen=True)
class Rendered:
    """What a finished splitter rendered, for the final output: the whole answer's HTML, and
    its Markdown source made safe (None when it must be made from the whole text)."""

    html: str
    markdown: str | None


class BlockSplitter:
    """Cuts growing Markdown into finished blocks and the tail still being written.

    Only the text after the last finished block is parsed again, and the tail is kept short
    whatever the answer's shape, so a frame costs about what arrived since the last one, not
    the answer's length. A table or code block longer than ``LIVE_LIMIT`` is cut after its
    last complete row or line, and from then on each frame sends only its new rows or lines (a
    ``Continuation``, which the view appends to the same table or code); a list or quote is cut
    between its items into lists or quotes of their own; a paragraph longer than ``RAW_LIMIT``
    is shown as preformatted text up to its end (a blank line), and not parsed meanwhile.

    The finished pieces' HTML, and with ``keep_markdown`` their Markdown made safe, are kept, so
    that the final output needs no rendering of the whole text (``rendered()``).
    """

    def __init__(self, *, keep_markdown: bool = False) -> None:
        self._text = ""
        self._done = 0  # offset in _text where the tail begins
        self._tail_html: str | None = None
        self._lead = ""  # a cut block's first lines (header and delimiter rows, opening fence)
        self._into: str | None = None  # where the tail's rows or lines go, if it continues a cut
        self._raw = False  # the tail is a paragraph too long to parse each frame
        self._scan = 0  # where to look next for the blank line that ends it
        self._html: list[str] = []  # the finished blocks' HTML, continuations spliced in
        self._starts: list[int] = []  # where each finished block begins in _html
        self._final = False
        self._keep = keep_markdown
        self._markdown: list[str] = []
        self._kept = 0  # offset in _text up to which _markdown holds it
        self._exact = True  # "".join(_markdown) is the whole text made safe

    def update(self, text: str, *, final: bool = False, quick: bool = False) -> Frame:
        """The frame that brings the display from the last call's text to ``text``.

        ``text`` must extend the previous text. With ``final`` the tail is finished too, and with
        ``quick`` (someone waits: the reply was stopped) a tail too long to render at once is
        finished as preformatted text.
        """
        if not text.startswith(self._text):
            raise ValueError("the text must grow by appending")
        self._text = text
        finished: list[Piece] = []
        if self._raw:
            self._end_raw(finished)
        if not self._raw:
            self._advance(finished)
        tail = text[self._done :]
        if final:
            if self._raw:
                self._more_raw(tail, finished)
            elif quick and len(tail) > RAW_LIMIT:
                self._finish_raw(tail, finished)
            elif tail.strip():
                self._finish(tail, finished)
            else:
                self._keep_markdown(tail)
            self._done, self._lead, self._into, self._raw = len(text), "", None, False
            self._final = True
            tail_html = ""
        elif self._raw or not tail.strip():
            tail_html = ""
        elif self._into == _TBODY:  # the rows below the table, without its header again
            tail_html = _drop_head(render_markdown(self._lead + tail))
        else:
            tail_html = render_markdown(self._lead + tail)
        if tail_html == self._tail_html:
            return Frame(finished, None)
        self._tail_html = tail_html
        return Frame(finished, tail_html)

    def blocks(self) -> list[str]:
        """The finished blocks' HTML, each with its continuations merged in: what a view that
        starts afresh shows (the pieces sent so far, applied in order, build the same)."""
        bounds = itertools.pairwise([*self._starts, len(self._html)])
        return ["".join(self._html[start:end]) for start, end in bounds]

    def rendered(self) -> Rendered | None:
        """The whole answer's HTML and safe Markdown, once ``update(final=True)`` has run."""
        if not self._final:
            return None
        markdown = "".join(self._markdown) if self._keep and self._exact else None
        return Rendered("".join(self._html), markdown)

    def _advance(self, finished: list[Piece]) -> None:
        rest = self._text[self._done :]
        if not rest.strip():
            return
        source = self._lead + rest
        tokens = _md.parse(source)
        tops = [i for i, t in enumerate(tokens) if t.level == 0 and t.nesting >= 0 and t.map]
        if not tops:
            return
        offsets = [0]
        for text_line in source.splitlines(keepends=True):
            offsets.append(offsets[-1] + len(text_line))
        # A block is finished once the next has begun; a last line without its newline
        # may still be the start of something else (a setext underline, a fence).
        at = len(self._lead)  # where the unfinished text begins in source
        for i in tops[1:]:
            end = offsets[_line(tokens[i])]
            self._finish(source[at:end], finished)
            self._done += end - at
            self._lead, self._into, at = "", None, end
        size = len(source) - at
        if self._into is None and size <= LIVE_LIMIT:
            return
        block = tokens[tops[-1] :]
        cut = _cut(block, len(offsets) - 1)
        if cut is None:
            if block[0].type in ("paragraph_open", "heading_open") and size > RAW_LIMIT:
                self._raw, self._scan = True, self._done
                self._finish_raw(source[at:], finished)
                self._done = len(self._text)
            return
        line, into, lead = cut
        if offsets[line] <= at or (
            into == _CODE and not source[offsets[line - 1] : offsets[line]].strip()
        ):
            return  # nothing to cut yet; or a blank line would end the part, and drop from it
        self._finish(source[at : offsets[line]], finished)
        self._done += offsets[line] - at
        if into is not None:
            self._lead = source[offsets[_line(block[0])] : offsets[lead]]
            self._into = into

    def _finish(self, piece: str, finished: list[Piece]) -> None:
        """Finish the block, or the part of a cut block, whose source is ``piece``."""
        lead, into = self._lead, self._into
        if into is None:
            block = render_markdown(piece)
            finished.append(block)
            self._add_block(block)
        else:
            inner = _inside(render_markdown(lead + piece), into)
            if inner:
                finished.append(Continuation(into, inner))
                last = self._html[-1] if self._html else ""
                at = last.rfind(_INSIDE[into][1])
                if at >= 0:
                    self._html[-1:] = [last[:at], inner, last[at:]]
                else:  # nowhere to go: a block of its own, as a view makes it
                    self._add_block(inner)
        self._keep_markdown(piece, lead)

    def _add_block(self, block: str) -> None:
        self._starts.append(len(self._html))
        self._html.append(block)

    def _keep_markdown(self, piece: str, lead: str = "") -> None:
        if not self._keep or not self._exact:
            return
        safe = safe_markdown_source(lead + piece)
        if lead:  # made safe with the lines it belongs under, which are kept already
            head = safe_markdown_source(lead)
            if not safe.startswith(head):
                self._exact = False
                return
            safe = safe[len(head) :]
        self._join_markdown(piece, safe)

    def _join_markdown(self, piece: str, safe: str) -> None:
        # Escaping acts within a few lines; where it might reach across the cut (a link's "]("
        # before it, its scheme after it), the whole text is made safe at the end instead.
        text, at = self._text, self._kept
        if at:
            before, after = at, at
            while before > 0 and text[before - 1].isspace():
                before -= 1
            while after < len(text) and text[after].isspace():
                after += 1
            left = text[max(0, before - _EDGE) : at]
            right = text[at : after + _EDGE]
            if _escape_prose(left + right) != _escape_prose(left) + _escape_prose(right):
                self._exact = False
                return
        self._markdown.append(safe)
        self._kept = at + len(piece)

    def _end_raw(self, finished: list[Piece]) -> None:
        """Add what arrived to the long paragraph shown as text, up to a blank line that ends
        it, if one has come."""
        text = self._text
        end = _BLANK_LINE.search(text, self._scan)
        if end is None:
            self._scan = max(self._scan, text.rfind("\n"))
            self._more_raw(text[self._done :], finished)
            self._done = len(text)
            return
        self._more_raw(text[self._done : max(self._done, end.end())], finished)
        self._done = max(self._done, end.end())
        self._raw = False

    def _finish_raw(self, piece: str, finished: list[Piece]) -> None:
        """Finish ``piece`` as preformatted text (later text may go into it: _more_raw)."""
        block = _raw_html(piece)
        finished.append(block)
        self._add_block(block)
        if self._keep and self._exact:  # a paragraph: prose, never code
            self._join_markdown(piece, _escape_prose(piece))

    def _more_raw(self, piece: str, finished: list[Piece]) -> None:
        if not piece:
            return
        inner = html.escape(piece)
        finished.append(Continuation(_RAW, inner))
        last = self._html[-1]
        at = last.rfind("</pre>")
        self._html[-1:] = [last[:at], inner, last[at:]]
        if self._keep and self._exact:
            self._join_markdown(piece, _escape_prose(piece))


def _line(token: Token) -> int:
    assert token.map is not None
    return token.map[0]


def _cut(block: list[Token], lines: int) -> tuple[int, str | None, int] | None:
    """Where the top-level block ``block`` can be cut: the line before which its part is
    finished, where later parts go (None: they are blocks of their own), and the line where
    the lines that later parts are parsed under end."""
    first = block[0]
    start, end = first.map or (0, lines)
    if first.type == "table_open":
        body = next((t for t in block if t.type == "tbody_open" and t.map), None)
        if body is None:
            return None
        rows = [_line(t) for t in block if t.type == "tr_open" and t.map]
        rows = [line for line in rows if line >= _line(body)]
        return (rows[-1], _TBODY, _line(body)) if len(rows) >= 2 else None
    if first.type == "fence":  # keep the last line: it may be incomplete, or the closing fence
        return (end - 1, _CODE, start + 1) if end - 1 >= start + 2 else None
    if first.type == "code_block":
        return (end - 1, _CODE, start) if end - 1 > start else None
    if first.type in ("bullet_list_open", "ordered_list_open", "blockquote_open"):
        items = [_line(t) for t in block if t.level == 1 and t.nesting >= 0 and t.map]
        later = [line for line in items if line > start]
        return (later[-1], None, start) if later else None
    return None


def _inside(block: str, into: str) -> str:
    """The rows or lines inside a rendered table or code block."""
    opening, closing = _INSIDE[into]
    begin = block.find(opening)
    end = block.rfind(closing)
    if begin < 0 or end < 0:
        return ""
    begin = block.index(">", begin) + 1 if into == _CODE else begin + len(opening)
    return block[begin:end] if begin <= end else ""


def _drop_head(table: str) -> str:
    begin, end = table.find("<thead>"), table.find("</thead>\n")
    return table[:begin] + table[end + len("</thead>\n") :] if 0 <= begin < end else table


def _raw_html(text: str) -> str:
    return (
        f'<pre class="jupyter-stream-raw" style="white-space:pre-wrap">{html.escape(text)}</pre>\n'
    )


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
    rendered: Rendered | None = None,
    rendered_reasoning: Rendered | None = None,
) -> tuple[dict[str, str], dict[str, Any]]:
    """The final output of a turn: ``text/html`` (rendered as live), ``text/markdown`` (the
    answer's source, made safe) and ``text/plain``, with the turn's facts in metadata.
    ``detail`` says what stopped it (a moderation rule's match quotes model output: it is
    escaped like the rest). ``rendered`` and ``rendered_reasoning``: what the live view's
    splitters already made of ``text`` and ``reasoning``, used instead of rendering again (a
    long answer's final output then costs no more than its last frame)."""
    mark = end_mark(reason, detail)
    plain = text if mark is None else f"{text}\n[{mark}]"
    answer_html = rendered.html if rendered is not None else render_markdown(text)
    markdown = rendered.markdown if rendered is not None else None
    if markdown is None:
        markdown = safe_markdown_source(text)
    if mark is not None:
        said = MARKS[reason] + (f": {markdown_literal(' '.join(detail.split()))}" if detail else "")
        markdown += f"\n\n*[{said}]*"
    parts = []
    if reasoning:
        thought = rendered_reasoning.html if rendered_reasoning else render_markdown(reasoning)
        parts.append(reasoning_html(thought, open_=False))
    parts.append(f'<div class="jupyter-stream-reply">{answer_html}</div>')
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
