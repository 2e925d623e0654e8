"""Rendering, pure: frames, safe Markdown, the status line; the magic's transformer and
interpolation."""

from __future__ import annotations

import asyncio
import html
import random
import re
from typing import Any, cast

import pytest
from markdown_it import MarkdownIt

from jupyter_stream._follow import follow
from jupyter_stream._magic import interpolate, transform_chat_cell
from jupyter_stream._render import (
    RAW_LIMIT,
    BlockSplitter,
    Continuation,
    Frame,
    format_status,
    render_markdown,
    reply_bundle,
    safe_markdown_source,
)
from jupyter_stream._widgets import _edit
from jupyter_stream.server._models import demo_answer, tokenize

ANSWER = demo_answer("How do streams work?")


def replay(pieces: list[str]) -> tuple[list[str], int]:
    """Feed ``pieces`` one by one; the finished blocks in order and the frames sent."""
    splitter = BlockSplitter()
    blocks: list[str] = []
    frames = 0
    text = ""
    for piece in pieces:
        text += piece
        frame = splitter.update(text)
        blocks += frame.finished
        frames += bool(frame)
    blocks += splitter.update(text, final=True).finished
    return blocks, frames


def test_blocks_fed_token_by_token_render_as_the_whole_answer() -> None:
    blocks, frames = replay(tokenize(ANSWER))
    assert "".join(blocks) == render_markdown(ANSWER)
    assert len(blocks) > 5 and frames > 50


@pytest.mark.parametrize("seed", range(20))
def test_any_split_gives_the_same_html(seed: int) -> None:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(ANSWER)), 40))
    pieces = [ANSWER[a:b] for a, b in zip([0, *cuts], [*cuts, len(ANSWER)], strict=True)]
    blocks, _ = replay(pieces)
    assert "".join(blocks) == render_markdown(ANSWER)


def test_a_frame_sends_a_finished_block_once_and_an_unchanged_tail_not_at_all() -> None:
    splitter = BlockSplitter()
    first = splitter.update("# Title\n\nSome")
    assert first.finished == ["<h1>Title</h1>\n"] and first.tail == "<p>Some</p>\n"
    assert not splitter.update("# Title\n\nSome")  # nothing changed: no frame
    second = splitter.update("# Title\n\nSome text")
    assert second.finished == [] and second.tail == "<p>Some text</p>\n"
    with pytest.raises(ValueError):
        splitter.update("Other")


def test_an_open_code_fence_stays_in_the_tail_until_closed() -> None:
    splitter = BlockSplitter()
    frame = splitter.update("```python\nx = 1\n\ny = 2\n")
    assert frame.finished == [] and frame.tail is not None and "y = 2" in frame.tail
    frame = splitter.update("```python\nx = 1\n\ny = 2\n```\n\nAfter.")
    assert len(frame.finished) == 1 and "<pre><code" in frame.finished[0]


def test_raw_html_from_the_model_is_text_not_markup() -> None:
    html = render_markdown('<script>alert(1)</script> <img src=x onerror="alert(2)">')
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html
    assert 'href="javascript' not in render_markdown("[click](javascript:alert(1))")
    assert "<img" not in render_markdown("![beacon](https://elsewhere.example/?q=secret)")


def test_the_markdown_kept_in_the_notebook_cannot_carry_html() -> None:
    source = (
        "Hi <img src=x onerror=alert(1)> and see \\`<b>\\` here\n\n"
        "```html\n<div>code</div>\n```\n\n"
        "Use `x\n\n<img src=y onerror=alert(2)>\n\nand ` here\n\n"
        "[x](javascript:alert(1)) [y](java&#115;cript:alert(3))\n\n[1]: javascript:alert(4)\n"
    )
    safe = safe_markdown_source(source)
    assert "```html\n<div>code</div>\n```" in safe  # code blocks are kept exactly
    # Rendered by a Markdown renderer that does pass raw HTML, nothing live comes out.
    rendered = MarkdownIt("commonmark", {"html": True}).render(safe)
    assert "<img" not in rendered and "<b>" not in rendered
    assert 'href="javascript' not in rendered and "java&#115;" not in rendered.replace(
        "java&amp;#115;", ""
    )
    assert "unsafe-javascript:alert(4)" in safe and "](unsafe-javascript:" in safe
    assert safe_markdown_source("plain text") == "plain text"


@pytest.mark.parametrize(
    "source",
    [
        "> [q]: javascript:alert(1)\n\n[click][q]",  # a definition inside a quote
        "- item\n\n  [l]: javascript:alert(1)\n\n  [click][l]",  # indented in a list
        "[a\\]b]: javascript:alert(1)\n\n[click][a\\]b]",  # "\]" in the label
        "[d]:\n  JavaScript:alert(1)\n\n[click][d]",  # the destination on the next line
        "[x]( data:text/html,<script>alert(1)</script>)",
        "> > [click](vbscript:msgbox(1))",
    ],
)
def test_no_unsafe_link_survives_in_the_kept_markdown(source: str) -> None:
    rendered = MarkdownIt("commonmark", {"html": True}).render(safe_markdown_source(source))
    assert "<a" not in rendered or "unsafe-" in rendered
    for scheme in ("javascript:", "vbscript:", "data:"):
        assert f'href="{scheme}' not in rendered.lower()


@pytest.mark.parametrize(
    "source",
    [
        "![beacon](https://elsewhere.example/?q=secret)",
        "see ![a][ref]\n\n[ref]: https://elsewhere.example/b.png",
        "> - ![quoted](https://elsewhere.example/c.png)",
        "\\\\![two backslashes](https://elsewhere.example/d.png)",
    ],
)
def test_the_kept_markdown_loads_no_image(source: str) -> None:
    renderer = MarkdownIt("commonmark", {"html": True})  # images on, as a front end has them
    assert "<img" in renderer.render(source)  # the case is a real image unmade
    rendered = renderer.render(safe_markdown_source(source))
    assert "<img" not in rendered
    assert "elsewhere.example" in rendered  # shown, as a link or text


def test_an_escaped_bang_stays_as_the_model_wrote_it() -> None:
    assert safe_markdown_source("\\![not an image](x)") == "\\![not an image](x)"


@pytest.mark.parametrize("depth", [5, 19, 20, 21, 60])
def test_deeply_nested_content_is_shown_not_dropped(depth: int) -> None:
    quote = ">" * depth + " the deep <b>text</b>"
    listed = "".join("  " * level + f"- item{level}\n" for level in range(depth))
    for deep in (quote, listed):
        html = render_markdown(f"Before *this*\n\n{deep}\n")
        assert "<em>this</em>" in html
        assert "the deep &lt;b&gt;text" in html or deep is listed
        assert f"item{depth - 1}" in html or deep is quote
        assert "<b>" not in html


def test_the_final_bundle_marks_a_reply_that_did_not_complete() -> None:
    data, metadata = reply_bundle(
        text="Partial",
        reasoning="Thinking",
        status="demo · 3 tokens",
        reason="stopped",
        metadata={"model": "demo"},
    )
    assert data["text/plain"] == "Partial\n[stopped by the user]"
    assert data["text/markdown"] == "Partial\n\n*[stopped by the user]*"
    assert "<details" in data["text/html"] and "Thinking" in data["text/html"]
    assert metadata == {"jupyter_stream": {"model": "demo"}}
    data, _ = reply_bundle(text="Done", reasoning="", status="s", reason="completed", metadata={})
    assert data["text/plain"] == "Done" and "<details" not in data["text/html"]


def test_the_status_line() -> None:
    line = format_status(
        model="demo",
        tokens=42,
        tokens_per_second=30.04,
        time_to_first_token=0.2,
        elapsed=1.5,
        reason="stopped",
    )
    assert line == "demo · 42 tokens · 30.0 tok/s · first token 0.20 s · 1.5 s · stopped"
    waiting = format_status(
        model="m",
        tokens=0,
        tokens_per_second=None,
        time_to_first_token=None,
        elapsed=0.0,
        reason=None,
    )
    assert waiting == "m · 0 tokens · 0.0 s · streaming…"


def test_the_transformer_turns_only_chat_cells_into_an_awaited_call() -> None:
    [line] = transform_chat_cell(["\n", "%%chat -m demo\n", "Hello {x}\n", "'''quotes'''\n"])
    assert line.startswith("await ") and "run_chat_cell('-m demo'" in line
    assert "Hello {x}\\n'''quotes'''\\n" in line
    code = compile(line.removeprefix("await "), "<cell>", "eval")  # a valid expression
    assert code is not None
    for cell in (["%%chat?\n"], ["%%chatter\n", "x"], ["print(1)\n"], ["%%time\n", "%%chat\n"]):
        assert transform_chat_cell(cell) == cell


def test_interpolation_fills_names_and_cells_and_leaves_other_braces() -> None:
    namespace = {"name": "Ada", "n": 3, "Out": {2: [1, 2]}}
    inputs = ["", "x = 1", "y = [1, 2]"]
    text = interpolate(
        'Hi {name} ({n}), {In[1]} / {Out[2]}; {"json": 1}; {missing}; {{name}}; def f(): {}',
        namespace,
        inputs,
    )
    assert text == 'Hi Ada (3), x = 1 / [1, 2]; {"json": 1}; {missing}; {name}; def f(): {}'
    assert interpolate("{In[9]} {Out[9]}", namespace, inputs) == "{In[9]} {Out[9]}"


# -- a long reply of one block --------------------------------------------------------------------


def _table(rows: int) -> str:
    lines = ["Rows follow.\n", "| # | name | note |", "| ---: | --- | --- |"]
    lines += [f"| {i} | item {i} | <b>{i}</b> & [x](javascript:alert({i})) |" for i in range(rows)]
    return "\n".join(lines) + "\n\nAfter the table.\n"


def _fence(lines: int) -> str:
    code = "".join(f"x{i} = '<tag>' * {i}\n" for i in range(lines))
    return f"Code:\n\n```python\n{code}```\n\nAfter <b>the</b> code.\n"


def _indented(lines: int) -> str:
    code = "".join(f"    y{i} = '<tag>'\n" + ("\n" if i % 10 == 9 else "") for i in range(lines))
    return f"Indented code:\n\n{code}\nAfter.\n"


def _list(items: int) -> str:
    return "".join(f"{i + 1}. item *{i}* <i>\n" for i in range(items)) + "\nAfter.\n"


def _paragraph(words: int) -> str:
    return "Intro.\n\n" + " ".join(f"word{i} <x>" for i in range(words)) + "\n\nAfter.\n"


def stream_through(
    text: str, step: int = 7, *, stop_at: int | None = None
) -> tuple[BlockSplitter, list[Frame], str]:
    """Feed ``text`` a few tokens at a time (up to ``stop_at`` tokens, then a stopped final)."""
    splitter = BlockSplitter(keep_markdown=True)
    tokens = tokenize(text)[:stop_at]
    frames, sent = [], ""
    for at in range(0, len(tokens), step):
        sent += "".join(tokens[at : at + step])
        frames.append(splitter.update(sent))
    frames.append(splitter.update(sent, final=True, quick=stop_at is not None))
    return splitter, frames, sent


CLOSINGS = {
    ":scope > table > tbody": "</tbody>\n</table>",
    ":scope > pre > code": "</code></pre>",
    ":scope > pre": "</pre>",
}


def assemble(frames: list[Frame]) -> str:
    """The HTML a view holds after ``frames``, as ReplyView's front end builds it."""
    return "".join(view_blocks(frames))


def view_blocks(frames: list[Frame], blocks: list[str] | None = None) -> list[str]:
    """The blocks a view holds after ``frames`` (applied to ``blocks``, a view's blocks so far),
    as ReplyView's front end builds them."""
    blocks = [] if blocks is None else blocks
    for frame in frames:
        for piece in frame.finished:
            if isinstance(piece, Continuation):  # into the block before, before its closing
                closing = CLOSINGS[piece.into]
                at = blocks[-1].rfind(closing)
                assert at >= 0, "a continuation with no block to go into"
                blocks[-1] = blocks[-1][:at] + piece.html + blocks[-1][at:]
            else:
                blocks.append(piece)
    return blocks


@pytest.mark.parametrize("make", [_table, _fence, _indented])
def test_a_long_table_or_code_block_grows_by_rows_into_one_element(make: Any) -> None:
    text = make(1500)
    splitter, frames, sent = stream_through(text, step=10)
    assert sent == text
    continuations = [p for f in frames for p in f.finished if isinstance(p, Continuation)]
    assert len(continuations) > 50  # rows or lines went into the block already shown
    assert assemble(frames) == render_markdown(text)  # one table, one code block, as a whole
    rendered = splitter.rendered()
    assert rendered is not None and rendered.html == render_markdown(text)
    assert rendered.markdown == safe_markdown_source(text)


@pytest.mark.parametrize("make", [_table, _fence, _indented, _list, _paragraph])
@pytest.mark.parametrize("stop_at", [None, 2000])
def test_a_view_that_starts_afresh_gets_the_blocks_the_pieces_built(
    make: Any, stop_at: int | None
) -> None:
    splitter = BlockSplitter()
    tokens = tokenize(make(800))[:stop_at]
    frames: list[Frame] = []
    sent, view = "", list[str]()  # view: the blocks of a view there from the start
    for number, at in enumerate(range(0, len(tokens), 20)):
        sent += "".join(tokens[at : at + 20])
        frames.append(splitter.update(sent))
        view_blocks(frames[-1:], view)
        if number % 10 == 0:  # mid-reply, as a late view asks
            assert splitter.blocks() == view
    frames.append(splitter.update(sent, final=True, quick=stop_at is not None))
    blocks = splitter.blocks()
    assert blocks == view_blocks(frames[-1:], view)
    rendered = splitter.rendered()
    assert rendered is not None and "".join(blocks) == rendered.html
    pieces = [piece for frame in frames for piece in frame.finished]
    if make in (_table, _fence, _indented):  # one block however many rows or lines it got
        assert len(pieces) > 20 + len(blocks)


@pytest.mark.parametrize("make", [_table, _fence, _list, _paragraph])
def test_the_tail_rendered_each_frame_stays_short_however_long_the_block(make: Any) -> None:
    text = make(2000)
    _, frames, _ = stream_through(text, step=50)
    longest = max(len(frame.tail) for frame in frames if frame.tail is not None)
    assert longest < 2 * RAW_LIMIT < len(render_markdown(text)) // 2


@pytest.mark.parametrize("make", [_list, _paragraph])
def test_a_long_list_or_paragraph_is_cut_but_loses_nothing(make: Any) -> None:
    text = make(2000)
    splitter, frames, _ = stream_through(text, step=50)
    rendered = splitter.rendered()
    assert rendered is not None and rendered.html == assemble(frames)
    assert rendered.markdown == safe_markdown_source(text)
    visible = html.unescape(re.sub(r"<[^>]+>", "", rendered.html))
    for i in (0, 1000, 1999):
        assert f"item {i}" in visible or f"word{i} <x>" in visible
    assert "<x>" not in rendered.html and "<i>" not in rendered.html  # escaped, as always
    if make is _paragraph:  # too long to parse each frame: shown as text
        assert '<pre class="jupyter-stream-raw"' in rendered.html


def test_a_stopped_reply_ends_with_its_long_tail_as_escaped_text() -> None:
    splitter = BlockSplitter(keep_markdown=True)
    burst = "Intro.\n\n" + "<script>x</script> " * 3000  # one paragraph, in one read
    frame = splitter.update(burst, final=True, quick=True)
    assert frame.tail == "" and '<pre class="jupyter-stream-raw"' in frame.finished[-1]
    assert "<script>" not in "".join(map(str, frame.finished))
    rendered = splitter.rendered()
    assert rendered is not None and rendered.markdown == safe_markdown_source(burst)


def test_a_stopped_table_keeps_its_rows_in_one_table() -> None:
    _, frames, sent = stream_through(_table(3000), step=25, stop_at=9000)
    assert sent.count("\n") < 3000
    assert assemble(frames) == render_markdown(sent)
    assert assemble(frames).count("<table>") == 1


def test_kept_markdown_is_made_from_the_whole_text_where_a_cut_could_hide_a_link() -> None:
    rows = "".join(f"| {i} | [x](\njavascript:alert({i}) |\n" for i in range(800))
    text = "| a | b |\n| - | - |\n" + rows
    splitter, _, _ = stream_through(text, step=25)
    rendered = splitter.rendered()
    assert rendered is not None
    data, _ = reply_bundle(
        text=text, reasoning="", status="s", reason="completed", metadata={}, rendered=rendered
    )
    assert data["text/markdown"] == safe_markdown_source(text)
    assert "](\njavascript:" not in data["text/markdown"]


def test_edit_keeps_the_common_prefix_in_utf16_units() -> None:
    assert _edit("ab😀c", "ab😀cd") == (5, "d")
    assert _edit("ab😀c", "ab😀x") == (4, "x")
    assert _edit("abc", "xyz") == (0, "xyz")
    assert _edit("", "new") == (0, "new")


class _Buffered:
    """Deltas that are all there already: iterating never suspends."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.closed = False

    def __aiter__(self) -> _Buffered:
        return self

    async def __anext__(self) -> str:
        if self.closed or self.count == 0:
            raise StopAsyncIteration
        self.count -= 1
        return "x"


async def test_follow_lets_a_stop_in_while_deltas_are_buffered() -> None:
    stream = _Buffered(1_000_000)
    drawn: list[bool] = []

    def draw(_stream: Any, final: bool) -> None:
        drawn.append(final)

    asyncio.get_running_loop().call_soon(lambda: setattr(stream, "closed", True))  # a Stop
    await asyncio.wait_for(follow(cast(Any, stream), draw), 30)
    assert stream.count > 0, "the Stop ran only once every buffered delta was read"
    assert drawn[-1] is True and drawn.count(True) == 1
