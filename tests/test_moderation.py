"""stop_when rules and stop sequences: the pure Watch (tier 1), then streams that a rule or a
sequence ends, against real servers on 127.0.0.1 (tier 2)."""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from conftest import ended, ended_since
from scripted_server import Request, Response, ScriptedServer, chunk, complete

from jupyter_stream import (
    ChatStream,
    ConfigurationError,
    RuleMatch,
    StopReason,
    astream_chat,
    stop_on,
    stream_chat,
)
from jupyter_stream._moderation import StopWhen, Watch, make_watch
from jupyter_stream.server import BackgroundServer, ServerConfig
from jupyter_stream.server._models import demo_answer

pytestmark = pytest.mark.timeout(60)

WAIT = 10  # seconds: a guard against hangs, never a timing assertion

# -- tier 1: the Watch, pure -------------------------------------------------------------------

Outcome = tuple[str | None, int | None, int | None, str]  # rule, start, end, text shown


def drive(watch: Watch, reads: Sequence[Sequence[str]]) -> tuple[RuleMatch | None, str]:
    """Feed ``reads`` (each a list of content pieces that arrived together) to ``watch`` the
    way ``Engine._commit_watched`` does: each piece through hold(), then the read's shown text
    through check() once; at the end (natural, or a stop sequence) the held text is released
    and a last check confirms a match that reached the end. Returns the match (a rule's or the
    stop sequence's) and the text shown, through the read that stopped it."""
    text = ""
    for read in reads:
        shown = len(text)
        pieces = []
        for piece in read:
            visible = watch.hold(piece, shown)
            shown += len(visible)
            pieces.append(visible)
            if watch.sequence is not None:
                break
        new = "".join(pieces)
        match = watch.check(new, lambda whole=text + new: whole) if watch.checks and new else None
        text += new
        if match is not None:
            return match, text
        if watch.sequence is not None:
            break
    held = "".join(watch.flush())  # in drive() nothing is kept unconfirmed
    text += held
    if watch.checks:
        match = watch.check(held, lambda: text, final=True)
        if match is not None:
            return match, text
    return watch.sequence, text


def outcome(
    stop_when: StopWhen | None,
    stop_sequences: Sequence[str] | None,
    reads: Sequence[Sequence[str]],
) -> Outcome:
    make = make_watch(stop_when, stop_sequences)
    assert make is not None
    match, text = drive(make(), reads)
    if match is None:
        return None, None, None, text
    assert match.start is not None and match.end is not None
    if match.rule.startswith("stop sequence"):
        assert match.start == len(text)  # cut just before the sequence
        return match.rule, match.start, match.end, text
    assert text[match.start : match.end] == match.matched
    return match.rule, match.start, match.end, text[: match.end]


def splits(text: str) -> Iterator[list[list[str]]]:
    """``text`` cut every way into reads of pieces: whole; at each point into two reads, and
    into one read of two pieces; at each pair of points into three reads; a character at a
    time, in reads of one and in one read."""
    yield [[text]]
    for i in range(1, len(text)):
        yield [[text[:i]], [text[i:]]]
        yield [[text[:i], text[i:]]]
    for i, j in itertools.combinations(range(1, len(text)), 2):
        yield [[text[:i]], [text[i:j]], [text[j:]]]
    yield [[char] for char in text]
    yield [list(text)]


SPLIT_CASES: list[tuple[str, StopWhen | None, list[str] | None, str, Outcome]] = [
    # (id, stop_when, stop_sequences, text, what feeding it whole gives)
    (
        "a word inside a longer word is no match",
        stop_on("pass"),
        None,
        "Your password is passé, bypass it.",
        (None, None, None, "Your password is passé, bypass it."),
    ),
    (
        "a whole word after a longer one",
        stop_on("pass"),
        None,
        "The password: pass it on",
        ("word 'pass'", 14, 18, "The password: pass"),
    ),
    (
        "a word at the very end is confirmed by the end",
        stop_on("pass"),
        None,
        "You shall not pass",
        ("word 'pass'", 14, 18, "You shall not pass"),
    ),
    (
        "case is ignored by default",
        stop_on("Secret"),
        None,
        "a SECRET plan",
        ("word 'Secret'", 2, 8, "a SECRET"),
    ),
    (
        "case is kept with ignore_case=False",
        stop_on("Secret", ignore_case=False),
        None,
        "a SECRET plan, a Secret one",
        ("word 'Secret'", 17, 23, "a SECRET plan, a Secret"),
    ),
    (
        "non-ASCII words, case ignored",
        stop_on("café"),
        None,
        "Un CAFÉ noir",
        ("word 'café'", 3, 7, "Un CAFÉ"),
    ),
    (
        "a phrase across white space and new lines",
        stop_on("credit card number"),
        None,
        "Your Credit\n card\t\tnumber is safe",
        ("word 'credit card number'", 5, 25, "Your Credit\n card\t\tnumber"),
    ),
    (
        "a phrase across a long run of white space",
        stop_on("credit card"),
        None,
        "Your credit      \n\n      card is here",
        ("word 'credit card'", 5, 29, "Your credit      \n\n      card"),
    ),
    (
        "a phrase cut short is no match",
        stop_on("credit card number"),
        None,
        "credit card numbers and credit cards",
        (None, None, None, "credit card numbers and credit cards"),
    ),
    (
        "a bounded regex",
        stop_on(re.compile(r"\b\d{3}-\d{2}-\d{4}\b")),
        None,
        "ids 123-45-67890 and 123-45-6789 here",
        (r"regex '\\b\\d{3}-\\d{2}-\\d{4}\\b'", 21, 32, "ids 123-45-67890 and 123-45-6789"),
    ),
    (
        "a regex with no bound on its width, within the window",
        stop_on(re.compile(r"BEGIN.*?END", re.DOTALL)),
        None,
        "x BEGIN some\nsecret END y",
        ("regex 'BEGIN.*?END'", 2, 23, "x BEGIN some\nsecret END"),
    ),
    (
        "a regex's own flags",
        stop_on(re.compile(r"token=[a-z]+", re.IGNORECASE)),
        None,
        "set TOKEN=AbC; done",
        ("regex 'token=[a-z]+'", 4, 13, "set TOKEN=AbC"),
    ),
    (
        "a lookbehind wider than one character",
        stop_on(re.compile(r"(?<=key=)\d{2}")),
        None,
        "the key=42 and more",
        (r"regex '(?<=key=)\\d{2}'", 8, 10, "the key=42"),
    ),
    (
        "a lookbehind at the very end",
        stop_on(re.compile(r"(?<=key=)\d")),
        None,
        "a long preamble, then key=7",
        (r"regex '(?<=key=)\\d'", 26, 27, "a long preamble, then key=7"),
    ),
    (
        "a negative lookahead wider than one character",
        stop_on(re.compile(r"foo(?!bar)")),
        None,
        "foobar foobaz",
        ("regex 'foo(?!bar)'", 7, 10, "foobar foo"),
    ),
    (
        "several patterns: the first to end wins",
        stop_on("alpha", "beta", re.compile(r"\d{4}")),
        None,
        "then beta, 1234 and alpha",
        ("word 'beta'", 5, 9, "then beta"),
    ),
    (
        "several patterns: a regex before the words",
        stop_on(["alpha", "beta"], re.compile(r"\d{4}")),
        None,
        "code 1234 then alpha",
        (r"regex '\\d{4}'", 5, 9, "code 1234"),
    ),
    (
        "a word inside a longer phrase ends first",
        stop_on("big bad wolf", "bad"),
        None,
        "the big bad wolf came",
        ("word 'bad'", 8, 11, "the big bad"),
    ),
    (
        "of two words that begin at one place, the shorter ends first",
        stop_on("pass word", "pass"),
        None,
        "a pass word",
        ("word 'pass'", 2, 6, "a pass"),
    ),
    (
        "several rules in a list",
        [stop_on("never"), stop_on(re.compile(r"x{3}"))],
        None,
        "abc xxx never",
        ("regex 'x{3}'", 4, 7, "abc xxx"),
    ),
    (
        "a named rule says its name",
        stop_on("pass", name="no secrets"),
        None,
        "a pass.",
        ("no secrets: word 'pass'", 2, 6, "a pass"),
    ),
    (
        "a stop sequence cuts the answer before it",
        None,
        ["STOP"],
        "Hello world STOP and more",
        ("stop sequence 'STOP'", 12, 16, "Hello world "),
    ),
    (
        "a stop sequence at the very start",
        None,
        ["\n\n"],
        "\n\nrest",
        ("stop sequence '\\n\\n'", 0, 2, ""),
    ),
    (
        "overlapping sequences: the one that ends first",
        None,
        ["abcd", "bc"],
        "xx abcd yy",
        ("stop sequence 'bc'", 4, 6, "xx a"),
    ),
    (
        "overlapping sequences that end together: the longer",
        None,
        ["User:", "\n\nUser:"],
        "Hi\n\nUser: next",
        ("stop sequence '\\n\\nUser:'", 2, 9, "Hi"),
    ),
    (
        "a prefix of a sequence is held, then shown when no sequence follows",
        None,
        ["STOP"],
        "a STORY of STO",
        (None, None, None, "a STORY of STO"),
    ),
    (
        "a rule in the text before a stop sequence",
        stop_on("secret"),
        ["STOP"],
        "a secret plan STOP",
        ("word 'secret'", 2, 8, "a secret"),
    ),
    (
        "a rule in the text after a stop sequence is never seen",
        stop_on("secret"),
        ["STOP"],
        "nothing STOP secret",
        ("stop sequence 'STOP'", 8, 12, "nothing "),
    ),
    (
        "a rule's match that ends the answer where a stop sequence cuts it",
        stop_on("pass"),
        ["STOP"],
        "shall not passSTOP",
        ("word 'pass'", 10, 14, "shall not pass"),
    ),
    (
        "a rule's match inside a stop sequence is never seen",
        stop_on("top"),
        [" top!"],
        "on top! top",
        ("stop sequence ' top!'", 2, 7, "on"),
    ),
]


@pytest.mark.parametrize(
    ("stop_when", "stop_sequences", "text", "expected"),
    [case[1:] for case in SPLIT_CASES],
    ids=[case[0] for case in SPLIT_CASES],
)
def test_every_split_of_the_text_gives_the_same_outcome(
    stop_when: StopWhen | None, stop_sequences: list[str] | None, text: str, expected: Outcome
) -> None:
    assert outcome(stop_when, stop_sequences, [[text]]) == expected
    for reads in splits(text):
        assert outcome(stop_when, stop_sequences, reads) == expected, reads


def test_a_regex_is_looked_for_within_its_window() -> None:
    rule = stop_on(re.compile(r"<<.*?>>"), window=10)
    near = "a <<short>> b"
    far = "a <<much too long>> b"
    for text in (near, far):
        assert outcome(rule, None, [[text]])[:3] == ("regex '<<.*?>>'", 2, text.index(">>") + 2)
    # A character at a time, a match longer than the window is not found; a shorter one is.
    assert outcome(rule, None, [[char] for char in near])[2] == near.index(">>") + 2
    assert outcome(rule, None, [[char] for char in far])[0] is None


def test_a_rule_is_reusable_each_watch_keeps_its_own_place() -> None:
    rule = stop_on("pass")
    make = make_watch(rule, None)
    assert make is not None
    first, second = make(), make()
    assert first.check("you shall not pass", lambda: "you shall not pass") is None  # deferred
    assert second.check("a pass.", lambda: "a pass.") == RuleMatch("word 'pass'", "pass", 2, 6)
    match = first.check("word", lambda: "you shall not password")
    assert match is None
    assert first.check("", lambda: "you shall not password", final=True) is None


def test_a_stop_sequence_prefix_is_held_back_until_it_is_known() -> None:
    watch = Watch([], ["</answer>"])
    assert watch.hold("the answer is 42</", 0) == "the answer is 42"
    assert watch.hold("ans", 16) == ""
    assert watch.hold("wer> and more", 16) == ""
    assert watch.sequence == RuleMatch("stop sequence '</answer>'", "</answer>", 16, 25)
    assert watch.dropped == "</answer> and more"
    assert watch.hold("later", 16) == ""  # nothing is shown after the sequence
    assert watch.flush() == ("", "")

    released = Watch([], ["</answer>"])
    assert released.hold("x </an", 0) == "x "
    assert released.hold("d", 2) == "</and"  # no longer the start of a sequence
    assert released.hold(" </", 7) == " "
    assert released.flush() == ("", "</")  # at the end, what was held was received


def test_a_predicate_sees_the_whole_text_once_per_read() -> None:
    seen: list[str] = []

    def too_long(text: str) -> bool:
        seen.append(text)
        return len(text) > 10

    make = make_watch(too_long, None)
    assert make is not None
    match, text = drive(make(), [["Hello", ", "], ["wor"], ["ld", "! and more"]])
    assert seen == ["Hello, ", "Hello, wor", "Hello, world! and more"]
    assert match == RuleMatch("rule too_long()")
    assert str(match) == "rule too_long()"
    assert text == "Hello, world! and more"  # a predicate has no place: the whole read is kept

    # A character at a time, it fires at the first character that makes it true.
    make = make_watch(too_long, None)
    assert make is not None
    match, text = drive(make(), [[char] for char in "Hello, world!"])
    assert match is not None and text == "Hello, worl"


def test_a_predicate_may_say_why() -> None:
    def topic(text: str) -> str | bool:
        return "it is about bombs" if "bomb" in text.lower() else False

    make = make_watch([stop_on("never"), topic], None)
    assert make is not None
    match, text = drive(make(), [["How to "], ["make a Bomb"], [" at home"]])
    assert match == RuleMatch("rule topic(): it is about bombs")
    assert str(match) == "rule topic(): it is about bombs"
    assert text == "How to make a Bomb"
    assert outcome(topic, None, [["nothing to see here"]]) == (
        None,
        None,
        None,
        "nothing to see here",
    )


def test_a_predicate_sees_the_text_held_for_a_sequence_when_it_is_released() -> None:
    calls: list[str] = []

    def ends_held(text: str) -> bool:
        calls.append(text)
        return text.endswith("ST")

    make = make_watch(ends_held, ["STOP"])
    assert make is not None
    match, text = drive(make(), [["a ST"]])
    assert calls == ["a ", "a ST"]  # "ST" might have begun "STOP": it is seen at the end
    assert match == RuleMatch("rule ends_held()") and text == "a ST"


def test_a_match_describes_itself() -> None:
    assert str(RuleMatch("word 'pass'", "PASS", 3, 7)) == "word 'pass' matched 'PASS'"
    long = "x" * 100
    assert str(RuleMatch("regex 'x+'", long, 0, 100)) == f"regex 'x+' matched {long[:60] + '…'!r}"
    rule = stop_on("a", "b", "c", re.compile("d+"))
    assert repr(rule) == "<stop_on('a', 'b', 'c', … (4 in all))>"
    assert stop_on("a", name="mine").name == "mine"


def test_nothing_to_watch_makes_no_watch() -> None:
    assert make_watch(None, None) is None
    assert make_watch([], []) is None


BAD_RULES: list[tuple[Callable[[], Any], str]] = [
    (lambda: stop_on(""), "an empty word would match everywhere"),
    (lambda: stop_on("  \n"), "an empty word would match everywhere"),
    (lambda: stop_on(re.compile("")), "matches empty text"),
    (lambda: stop_on(re.compile(r"a*")), "matches empty text"),
    (lambda: stop_on(re.compile(r"\b")), "matches empty text"),
    (lambda: stop_on(re.compile(rb"pass")), "a regex must be of str, not bytes"),
    (lambda: stop_on(42), "words \\(str\\) and regexes .*, not int"),
    (lambda: stop_on(["ok", 4.5]), "not float"),
    (lambda: stop_on(b"pass"), "not bytes"),
    (lambda: stop_on(), "at least one word or regex"),
    (lambda: stop_on([]), "at least one word or regex"),
    (lambda: stop_on("x", window=0), "window must be at least 1"),
    (lambda: make_watch(None, [""]), "stop_sequences must be non-empty strings, got ''"),
    (lambda: make_watch(None, ""), "stop_sequences must be non-empty strings"),
    (lambda: make_watch(None, ["ok", 5]), "non-empty strings, got 5"),
    (lambda: make_watch("pass", None), "stop_when takes a stop_on\\(...\\) rule.*not str"),
    (lambda: make_watch(42, None), "not int"),
    (lambda: make_watch({stop_on("a")}, None), "not set"),
    (lambda: make_watch([stop_on("a"), "b"], None), "stop_when takes .*, not str"),
]


@pytest.mark.parametrize(
    ("make", "message"), BAD_RULES, ids=[message for _make, message in BAD_RULES]
)
def test_bad_rules_are_refused_with_a_clear_message(make: Callable[[], Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stop_when": "pass"}, "stop_when takes"),
        ({"stop_sequences": [""]}, "stop_sequences must be non-empty strings"),
        ({"priority": "high"}, "priority must be a whole number, got 'high'"),
        ({"priority": 1.5}, "priority must be a whole number"),
        ({"priority": True}, "priority must be a whole number"),
    ],
)
@pytest.mark.parametrize("open_", [astream_chat, stream_chat])
def test_bad_options_fail_when_the_stream_is_made(
    open_: Callable[..., ChatStream], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_("hi", model="m", base_url="http://127.0.0.1:9/v1", **options)


# -- tier 2: streams against real servers -------------------------------------------------------


def sends(*tokens: str, then_wait_for: threading.Event | None = None, rest: Sequence[str] = ()):
    """A handler that sends ``tokens``, then (if given) waits for ``then_wait_for`` and sends
    ``rest``, and then nothing, until the client goes."""

    async def handler(request: Request, response: Response) -> None:
        for token in tokens:
            await response.event(chunk(token))
        if then_wait_for is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, then_wait_for.wait, WAIT)
        for token in rest:
            await response.event(chunk(token))
        await response.until_disconnect()

    return handler


def open_stream(server: ScriptedServer, **options: Any) -> ChatStream:
    return astream_chat("hi", model="test-model", base_url=server.url, max_retries=0, **options)


async def collect(stream: ChatStream, each: Callable[[str], None] | None = None) -> list[str]:
    """The stream's deltas (``each`` called on each as it comes), guarded by WAIT."""

    async def take() -> list[str]:
        deltas = []
        async for delta in stream:
            deltas.append(delta)
            if each is not None:
                each(delta)
        return deltas

    return await asyncio.wait_for(take(), WAIT)


def sees_disconnect(server: ScriptedServer) -> Request:
    request = server.requests[-1]
    assert request.disconnected.wait(WAIT), "the server never saw the client go"
    assert not request.finished
    return request


def is_prefix_of_pieces(deltas: list[str], pieces: Sequence[str]) -> bool:
    return deltas == list(pieces[: len(deltas)])


async def test_a_word_ends_the_stream_keeping_the_piece_that_said_it(
    server: ScriptedServer,
) -> None:
    pieces = ["Sure. ", "The code ", "is swordfish, ", "by the way", " and more."]
    server.handler = sends(*pieces)
    stream = open_stream(server, stop_when=stop_on("swordfish"))
    deltas = await collect(stream)
    assert stream.stop_reason is StopReason.MODERATED
    assert stream.error is None
    assert stream.match == RuleMatch("word 'swordfish'", "swordfish", 18, 27)
    assert stream.stop_detail == str(stream.match) == "word 'swordfish' matched 'swordfish'"
    # Everything up to and including the piece that said it, and nothing after.
    assert stream.text == "Sure. The code is swordfish, "
    assert stream.text[18:27] == "swordfish"
    # The consumer never saw that piece: no delta is delivered after the stop.
    assert is_prefix_of_pieces(deltas, pieces[:2])
    sees_disconnect(server)
    await stream.aclose()


def test_a_sync_stream_stops_on_a_regex_across_pieces(server: ScriptedServer) -> None:
    pieces = ["My SSN is ", "123-45-", "6789 and ", "that is ", "all."]
    server.handler = sends(*pieces)
    ssn = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
    with stream_chat(
        "hi", model="m", base_url=server.url, max_retries=0, stop_when=stop_on(ssn), timeout=WAIT
    ) as stream:
        deltas = list(stream)
    assert stream.stop_reason is StopReason.MODERATED
    assert stream.match == RuleMatch(r"regex '\\b\\d{3}-\\d{2}-\\d{4}\\b'", "123-45-6789", 10, 21)
    assert stream.stop_detail == str(stream.match)
    assert stream.text == "My SSN is 123-45-6789 and "
    assert is_prefix_of_pieces(deltas, pieces[:2])
    sees_disconnect(server)


async def test_a_word_that_ends_a_read_waits_for_the_next_piece(server: ScriptedServer) -> None:
    # "pass" may yet become "password": the rule waits for the next piece to know. The server
    # sends it only once the consumer has the first one, so each arrives in a read of its own.
    delivered = threading.Event()
    server.handler = sends("You shall not pass", then_wait_for=delivered, rest=[", said he", "!"])
    stream = open_stream(server, stop_when=stop_on("pass"))
    deltas = await collect(stream, lambda _delta: delivered.set())
    assert stream.stop_reason is StopReason.MODERATED
    assert stream.match == RuleMatch("word 'pass'", "pass", 14, 18)
    assert stream.text == "You shall not pass, said he"  # the piece that confirmed it is kept
    # The word was kept from view until the next piece told whether it was whole; then the
    # stream stopped: neither the word nor the piece that confirmed it was delivered.
    assert deltas == ["You shall not "]
    sees_disconnect(server)


async def test_a_word_inside_a_longer_one_does_not_stop_the_stream(
    server: ScriptedServer,
) -> None:
    delivered = threading.Event()

    async def handler(request: Request, response: Response) -> None:
        await response.event(chunk("Type the pass"))
        await asyncio.get_running_loop().run_in_executor(None, delivered.wait, WAIT)
        await complete(response, ["word, then bypass it"])

    server.handler = handler
    stream = open_stream(server, stop_when=stop_on("pass"))
    deltas = await collect(stream, lambda _delta: delivered.set())
    assert stream.stop_reason is StopReason.COMPLETED
    assert stream.match is None and stream.stop_detail is None
    # "pass" waited for the next piece, which showed it to be part of "password".
    assert deltas == ["Type the ", "pass", "word, then bypass it"]
    assert stream.text == "Type the password, then bypass it"


async def test_a_match_at_the_natural_end_is_confirmed_there(server: ScriptedServer) -> None:
    async def handler(request: Request, response: Response) -> None:
        await complete(response, ["You shall ", "not pass"])

    server.handler = handler
    stream = open_stream(server, stop_when=stop_on("pass"))
    deltas = await collect(stream)
    assert stream.stop_reason is StopReason.MODERATED
    assert stream.match == RuleMatch("word 'pass'", "pass", 14, 18)
    assert stream.stop_detail == "word 'pass' matched 'pass'"
    assert stream.text == "You shall not pass"  # all of it was received, and is kept
    shown = "".join(deltas)
    assert stream.text.startswith(shown) and "pass" not in shown  # the match is never delivered


async def test_a_predicate_rule_ends_the_stream(server: ScriptedServer) -> None:
    pieces = ["one ", "two ", "three ", "four ", "five "]
    server.handler = sends(*pieces)

    def three_words(text: str) -> str | bool:
        return "three words are enough" if len(text.split()) >= 3 else False

    stream = open_stream(server, stop_when=[stop_on("never"), three_words])
    deltas = await collect(stream)
    assert stream.stop_reason is StopReason.MODERATED
    assert stream.match == RuleMatch("rule three_words(): three words are enough")
    assert stream.stop_detail == "rule three_words(): three words are enough"
    # A predicate sees a read at a time: the read that made it true is kept whole.
    assert stream.text.startswith("one two three ")
    assert "".join(pieces).startswith(stream.text)
    assert is_prefix_of_pieces(deltas, pieces[:2])
    sees_disconnect(server)


async def test_rules_that_never_match_leave_the_answer_alone(server: ScriptedServer) -> None:
    pieces = ["Nothing ", "to see ", "here: 12", "!"]

    async def handler(request: Request, response: Response) -> None:
        await complete(response, pieces)

    server.handler = handler
    rules = [stop_on("secret", re.compile(r"\d{3}")), lambda text: "never" in text]
    stream = open_stream(server, stop_when=rules, stop_sequences=["STOP"])
    deltas = await collect(stream)
    assert stream.stop_reason is StopReason.COMPLETED
    assert stream.match is None and stream.stop_detail is None
    assert deltas == pieces
    assert stream.text == "Nothing to see here: 12!"
    assert stream.reply.finish_reason == "stop"


async def test_a_stop_sequence_split_across_chunks_is_never_shown(server: ScriptedServer) -> None:
    pieces = ["Answer: 42", "\n\nUs", "er: and ", "then more"]
    server.handler = sends(*pieces)
    stream = open_stream(server, stop_sequences=["\n\nUser:"])
    deltas = await collect(stream)
    assert stream.stop_reason is StopReason.COMPLETED
    assert stream.match is not None and stream.match.rule == "stop sequence '\\n\\nUser:'"
    assert (stream.match.start, stream.match.end) == (10, 17)
    assert stream.stop_detail is None
    assert "".join(deltas) == stream.text == "Answer: 42"
    assert not any("\n" in delta for delta in deltas)
    sees_disconnect(server)  # the rest of the answer is not read


async def test_held_text_is_shown_when_no_sequence_follows(server: ScriptedServer) -> None:
    async def handler(request: Request, response: Response) -> None:
        await complete(response, ["The end ", "is nigh, ST"])

    server.handler = handler
    stream = open_stream(server, stop_sequences=["STOP"])
    deltas = await collect(stream)
    assert stream.stop_reason is StopReason.COMPLETED
    assert stream.match is None
    assert "".join(deltas) == stream.text == "The end is nigh, ST"
    assert deltas[-1] == "ST"  # held back, then released at the end


async def test_closing_keeps_held_text_without_showing_it(server: ScriptedServer) -> None:
    server.handler = sends("wait for it ST")
    stream = open_stream(server, stop_sequences=["STOP"])
    deltas = await collect(stream, lambda _delta: stream.close())
    assert stream.stop_reason is StopReason.STOPPED
    assert deltas == ["wait for it "]
    assert stream.text == "wait for it ST"  # it was received
    sees_disconnect(server)


async def test_a_rule_match_that_a_stop_sequence_cuts_off_is_confirmed(
    server: ScriptedServer,
) -> None:
    server.handler = sends("You shall not pass", "STOP", "word")
    stream = open_stream(server, stop_when=stop_on("pass"), stop_sequences=["STOP"])
    deltas = await collect(stream)
    # The answer ends at "pass", as it would at [DONE]: a whole word, so the rule matched.
    assert stream.stop_reason is StopReason.MODERATED
    assert stream.match == RuleMatch("word 'pass'", "pass", 14, 18)
    assert stream.text == "You shall not pass"
    shown = "".join(deltas)
    assert stream.text.startswith(shown) and "pass" not in shown
    sees_disconnect(server)


@pytest.fixture(scope="module")
def paced() -> Iterator[BackgroundServer]:
    """The demo model at 2000 tokens/s: its natural answer takes a fraction of a second, and
    the 100,000 tokens asked for would take most of a minute, so it is still sending when the
    client goes."""
    with BackgroundServer(ServerConfig(tokens_per_second=2000, first_token_delay=0)) as server:
        yield server


PROMPT = "What is SSE?"


async def test_a_stop_sequence_trims_the_demo_answer(paced: BackgroundServer) -> None:
    answer = demo_answer(PROMPT)
    sequence = "\n\n## "
    cut = answer.index(sequence)
    before = len(ended(paced))
    stream = astream_chat(
        PROMPT,
        model="demo",
        base_url=paced.base_url,
        max_retries=0,
        max_tokens=100_000,
        stop_sequences=[sequence, "never said"],
    )
    deltas = await collect(stream)
    assert stream.stop_reason is StopReason.COMPLETED
    assert stream.match == RuleMatch(f"stop sequence {sequence!r}", sequence, cut, cut + 5)
    assert "".join(deltas) == stream.text == answer[:cut]
    assert ended_since(paced, before)[-1]["end"] == "client disconnected"


def test_a_word_stops_the_demo_answer_in_a_sync_stream(paced: BackgroundServer) -> None:
    answer = demo_answer(PROMPT)
    word = re.search(r"(?<!\w)server(?!\w)", answer, re.IGNORECASE)
    assert word is not None
    before = len(ended(paced))
    with stream_chat(
        PROMPT,
        model="demo",
        base_url=paced.base_url,
        max_retries=0,
        max_tokens=100_000,
        stop_when=stop_on("Server"),
        timeout=WAIT,
    ) as stream:
        shown = "".join(stream)
    assert stream.stop_reason is StopReason.MODERATED
    assert stream.match == RuleMatch("word 'Server'", word.group(), word.start(), word.end())
    assert stream.stop_detail == f"word 'Server' matched {word.group()!r}"
    # Nothing received before the stop is lost (the piece that completed or confirmed the
    # match included), and nothing after the stop is shown.
    assert answer.startswith(stream.text) and len(stream.text) >= word.end()
    assert stream.text.startswith(shown) and len(shown) <= word.end()
    assert ended_since(paced, before)[-1]["end"] == "client disconnected"


# -- the engine's side, without I/O: what is delivered, for every split --------------------------


def engine_run(reads: list[list[str]], **options: Any) -> tuple[ChatStream, str]:
    """Drive a stream's engine as its pump does, with ``reads`` (each a list of content pieces
    that arrived together), a consumer taking every delta after each read; no server, no loop
    (the stream never starts, so close() has nothing to cancel). The stream and what the
    consumer got."""
    stream = astream_chat("hi", model="m", base_url="http://127.0.0.1:9/v1", **options)
    engine = stream._engine
    got = []
    for read in reads:
        if not engine._commit(list(read)):
            break
        while (delta := engine._next_delta()) is not None:
            got.append(delta)
    engine._finish(StopReason.COMPLETED)
    while (delta := engine._next_delta()) is not None:
        got.append(delta)
    return stream, "".join(got)


@pytest.mark.parametrize(
    ("text", "rule", "match"),
    [
        ("You shall not pass, said he", "pass", (14, 18)),
        ("Type the password, then go", "pass", None),
        ("Keep the API\n key safe", "API key", (9, 17)),
        ("Ends with pass", "pass", (10, 14)),
    ],
)
def test_a_complete_match_is_never_delivered_however_the_text_is_split(
    text: str, rule: str, match: tuple[int, int] | None
) -> None:
    for reads in splits(text):
        stream, got = engine_run(reads, stop_when=stop_on(rule))
        assert stream.text.startswith(got), reads
        assert text.startswith(stream.text), reads
        if match is None:
            assert stream.stop_reason is StopReason.COMPLETED, reads
            assert got == stream.text == text, reads
        else:
            assert stream.stop_reason is StopReason.MODERATED, reads
            assert stream.match is not None
            assert (stream.match.start, stream.match.end) == match, reads
            # The match is never delivered whole (its start may be, before the rest arrives).
            assert len(got) < match[1], (reads, got)
            assert len(stream.text) >= match[1], reads  # what arrived up to it is kept


@pytest.mark.parametrize(
    ("text", "sequences", "shown"),
    [
        ("Answer.\n###\nmore", ["###"], "Answer.\n"),
        ("a ## b # c", ["###"], "a ## b # c"),
        ("xx abcd", ["abcd", "bc"], "xx a"),
        ("END", ["END"], ""),
    ],
)
def test_a_stop_sequence_is_never_delivered_however_the_text_is_split(
    text: str, sequences: list[str], shown: str
) -> None:
    for reads in splits(text):
        stream, got = engine_run(reads, stop_sequences=sequences)
        assert stream.stop_reason is StopReason.COMPLETED, reads
        assert got == stream.text == shown, reads
