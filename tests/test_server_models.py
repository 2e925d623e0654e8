"""The built-in models' text and tokens (pure)."""

from __future__ import annotations

import itertools

import pytest

from jupyter_stream.server._models import (
    DEMO_TOKENS,
    answer_tokens,
    count_prompt_tokens,
    demo_answer,
    last_user_text,
    tokenize,
)

SAMPLES = [
    "Hello, world!",
    "  indented\n\n\tcode = f(x) + 12345678\n",
    "naïve café, Grüße aus Köln, 日本語のテキスト, ¡olé! 🚀✨",
    "```python\nprint('hi')\n```",
    "",
    "supercalifragilisticexpialidocious",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_tokens_join_back_into_the_text(text: str) -> None:
    assert "".join(tokenize(text)) == text


def test_tokens_are_cut_like_a_tokenizer_cuts_them() -> None:
    assert tokenize("Hello, big world!") == ["Hello", ",", " big", " world", "!"]
    assert tokenize("12345") == ["123", "45"]
    assert tokenize("日本語の") == ["日本", "語の"]
    assert tokenize("supercalifragilistic") == ["supercal", "ifragili", "stic"]


def test_demo_is_deterministic_markdown_of_about_400_tokens() -> None:
    answer = demo_answer("What is SSE?")
    assert answer == demo_answer("What is SSE?")
    assert answer != demo_answer("What is HTTP?")
    assert answer.startswith("# What is SSE\n")
    for part in ("\n## ", "\n1. ", "\n- ", "```python\n", "Grüße", "日本語", "🚀"):
        assert part in answer
    assert 0.75 * DEMO_TOKENS < len(tokenize(answer)) < 1.25 * DEMO_TOKENS


def test_demo_goes_on_for_as_long_as_it_is_read() -> None:
    messages = [{"role": "user", "content": "hi"}]
    tokens = list(itertools.islice(answer_tokens("demo", messages, endless=True), 100_000))
    assert len(tokens) == 100_000
    assert "".join(tokens).startswith(demo_answer("hi"))
    again = itertools.islice(answer_tokens("demo", messages, endless=True), 100_000)
    assert list(again) == tokens


def test_echo_answers_with_the_last_user_message() -> None:
    messages = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "<b>second</b>"}]},
        {"role": "system", "content": "be brief"},
    ]
    assert last_user_text(messages) == "<b>second</b>"
    assert "".join(answer_tokens("echo", messages)) == "<b>second</b>"
    assert count_prompt_tokens(messages) > 4 * 3
