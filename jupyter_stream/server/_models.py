"""The built-in models: what ``demo`` and ``echo`` say, cut into tokens (pure: no I/O, no asyncio).

``demo`` writes a deterministic Markdown answer built from the prompt: a heading, paragraphs, a
numbered list, a fenced code block, a bullet list with non-ASCII text, and a closing paragraph,
about 400 tokens. The same prompt always gives the same answer. With ``max_tokens`` the answer is
exactly that long (finish reason ``length``): cut short, or continued by further sections written
from the same seed, so that a long reply to stop is one request away.

``echo`` answers with the last user message.

Tokens are cut the way a real tokenizer's pre-tokenizer cuts text: a word with its leading space
(long words in pieces of up to eight letters), numbers in groups of up to three digits, single
punctuation marks, CJK text one or two characters at a time, runs of newlines, runs of spaces.
Joining the tokens gives the text back exactly.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "DEMO_TOKENS",
    "MAX_TOKENS_LIMIT",
    "MODELS",
    "answer_tokens",
    "count_prompt_tokens",
    "demo_answer",
    "last_user_text",
    "tokenize",
]

MODELS = ("demo", "echo")
DEMO_TOKENS = 400  # about how long demo's natural answer is
MAX_TOKENS_LIMIT = 100_000

_TOKEN = re.compile(
    r"""
      [ ]?[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]{1,2}   # CJK: one or two characters
    | [ ]?[^\W\d_]{1,8}                                   # letters, long words in pieces
    | [ ]?\d{1,3}                                         # numbers, three digits at a time
    | [ ]?[^\w\s]                                         # one punctuation mark or symbol
    | [\r\n]+                                             # line breaks
    | [ \t]+                                              # other runs of spaces
    | .                                                   # anything else, one at a time
    """,
    re.VERBOSE | re.DOTALL,
)


def tokenize(text: str) -> list[str]:
    """``text`` cut into tokens; ``"".join(tokenize(text)) == text``."""
    return _TOKEN.findall(text)


def count_prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """The prompt's size in tokens, as usage reports it (3 per message, as OpenAI counts)."""
    return sum(3 + len(tokenize(_text(message.get("content")))) for message in messages) + 3


def last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the last user message ("" if there is none)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return _text(message.get("content"))
    return ""


def answer_tokens(
    model: str, messages: Sequence[Mapping[str, Any]], *, endless: bool = False
) -> Iterator[str]:
    """The tokens of ``model``'s answer to ``messages``.

    ``endless``: ``demo`` goes on writing for as long as it is read (the caller stops at
    ``max_tokens``). Lazy: a 100,000-token answer is written as it is read.
    """
    prompt = last_user_text(messages)
    if model == "echo":
        return iter(tokenize(prompt))
    return _demo_tokens(prompt, endless=endless)


def demo_answer(prompt: str) -> str:
    """demo's whole natural answer to ``prompt``."""
    return "".join(_demo_tokens(prompt, endless=False))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return ""


def _demo_tokens(prompt: str, *, endless: bool) -> Iterator[str]:
    yield from _natural_answer(prompt)
    if endless:
        rng = random.Random(hashlib.sha256(prompt.encode("utf-8", "replace")).digest() + b"more")
        for part in itertools.count(2):
            yield from tokenize(_more(part, rng))


@functools.lru_cache(maxsize=256)
def _natural_answer(prompt: str) -> tuple[str, ...]:
    """demo's natural answer to ``prompt``, in tokens (cached: a class asks the same question)."""
    rng = random.Random(hashlib.sha256(prompt.encode("utf-8", "replace")).digest())
    return tuple(tokenize(_first_part(prompt, rng)))


def _topic(prompt: str) -> str:
    words = re.sub(r"[^\w\s'-]", " ", prompt).split()
    if not words:
        return "Your question"
    topic = " ".join(words[:8])
    return topic[0].upper() + topic[1:] + ("…" if len(words) > 8 else "")


_OPENINGS = (
    "Here is a steady, deterministic answer, so that you can watch a stream arrive and stop it "
    "whenever you like.",
    "This answer is the same every time you ask the same question, which makes it good for "
    "teaching and for tests.",
    "Every token below was cut like a real tokenizer cuts text: words, spaces and punctuation, "
    "one at a time.",
)
_CLOSINGS = (
    "Press **Stop** at any moment: the connection is closed, the server sees it go, and the "
    "partial answer stays in your notebook, marked as stopped.",
    "Try the timeout slider next: move it while this streams, and the stream ends with the "
    "reason `timeout` as soon as the new deadline passes.",
    "Ask a follow-up question and the conversation goes on; ask the same question again and "
    "you will get this very answer, token for token.",
)
_VOCABULARY = (
    "stream token server client event buffer socket deadline answer reply model notebook kernel "
    "cell widget frame chunk delta latency throughput request response header body connection "
    "loop task signal partial reason"
)
_WORDS = _VOCABULARY.split()


def _first_part(prompt: str, rng: random.Random) -> str:
    quoted = " ".join(prompt.split())
    if len(quoted) > 80:
        quoted = quoted[:79] + "…"
    opening = rng.choice(_OPENINGS)
    closing = rng.choice(_CLOSINGS)
    return f"""# {_topic(prompt)}

You asked: “{quoted or "nothing in particular"}”. {opening} I am **demo**, the built-in model \
of jupyter_stream; no network and no API key were needed to write this.

## What happens while you read this

1. Your question went to a local server as one `POST /v1/chat/completions` with \
`"stream": true`.
2. The server answers with `text/event-stream`: one `data:` line per token, each event ended by \
a blank line, and `data: [DONE]` at the end.
3. The client decodes each event, appends its token to the reply, and redraws the output a few \
times per second, however fast the tokens come.
4. **Stop** closes the connection. The server notices the disconnect and stops writing at once.

## A short example

```python
import asyncio
from jupyter_stream import astream_chat


async def main():
    async for delta in astream_chat("Tell me about streams."):
        print(delta, end="", flush=True)


asyncio.run(main())
```

## Things worth knowing

- *Tokens* are pieces of words: a word with its space, a comma, a digit or three.
- *Time to first token* is how long the model thinks before it starts; the rest is streaming.
- Text in any script streams just as well: naïve café, Grüße aus Köln, 日本語のテキスト, \
¡olé!, and emoji 🚀✨.

{closing}
"""


def _more(part: int, rng: random.Random) -> str:
    paragraphs = []
    for _ in range(2):
        sentences = []
        for _ in range(rng.randint(3, 5)):
            words = rng.sample(_WORDS, rng.randint(6, 11))
            sentences.append(" ".join(words).capitalize() + rng.choice("....!"))
        paragraphs.append(" ".join(sentences))
    items = "\n".join(f"- {rng.choice(_WORDS)} number {rng.randint(1, 9999)}" for _ in range(3))
    return f"\n## Part {part}\n\n{paragraphs[0]}\n\n{items}\n\n{paragraphs[1]}\n"
