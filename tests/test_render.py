"""Rendering, pure: frames, safe Markdown, the status line; the magic's transformer and
interpolation."""

from __future__ import annotations

import random

import pytest
from markdown_it import MarkdownIt

from jupyter_stream._magic import interpolate, transform_chat_cell
from jupyter_stream._render import (
    BlockSplitter,
    format_status,
    render_markdown,
    reply_bundle,
    safe_markdown_source,
)
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
