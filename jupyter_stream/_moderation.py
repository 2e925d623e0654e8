"""Rules that stop a stream by what it says: ``stop_when`` and client-side stop sequences.

Pure: strings in, decisions out; no I/O, no asyncio.

A stream hands each read's text to its :class:`Watch` once (a read often carries many tokens),
so checking costs about the size of the new text, not of the whole answer:

- :func:`stop_on` words and regexes are one compiled regex each kind, searched over the new text
  and a tail of the old one as long as the longest match can be. A match that reaches the end of
  the text so far (or whose lookahead does) waits for the next piece (or the end of the stream)
  to be confirmed, so that ``pass`` does not stop ``password`` midway; meanwhile the stream
  keeps it from view (:attr:`Watch.pending_from`), so a match is never delivered whole. Of
  several words and regexes, the match that ends first wins, as when the text arrives a
  character at a time. A regex whose match more text could lengthen (an optional or a greedy
  tail: ``a.*b``) may match less of an answer that arrives in pieces than of the whole.
- A plain predicate ``rule(text) -> bool | str`` gets the whole text so far, once per read: simple
  to write, and its cost grows with the answer, so prefer ``stop_on`` for long ones.
- Stop sequences hold back the end of the text that could be the start of one (at most the
  longest sequence's length less one character), so the sequence, and what follows it, is never
  shown: the answer is trimmed before it, as an API's own ``stop`` parameter does.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._exceptions import ConfigurationError
from ._reply import Chunk

__all__ = ["RuleMatch", "StopOn", "StopWhen", "Watch", "make_watch", "stop_on"]

DEFAULT_WINDOW = 256  # how long a regex match with no bound on its length may be
MAX_SHOWN = 60  # how much of a match a description quotes


@dataclass(frozen=True)
class RuleMatch:
    """What stopped a stream: the rule (by name), the text that matched and where it lies in
    the answer (``text[start:end]``; both None for a predicate)."""

    rule: str
    matched: str | None = None
    start: int | None = None
    end: int | None = None

    def __str__(self) -> str:
        if self.matched is None:
            return self.rule
        shown = self.matched if len(self.matched) <= MAX_SHOWN else self.matched[:MAX_SHOWN] + "…"
        return f"{self.rule} matched {shown!r}"


class StopOn:
    """Words and regexes to stop a stream on; made by :func:`stop_on`, reusable by any number of
    streams (each keeps its own place)."""

    def __init__(
        self,
        patterns: Iterable[str | re.Pattern[str]],
        *,
        ignore_case: bool = True,
        window: int = DEFAULT_WINDOW,
        name: str | None = None,
    ) -> None:
        words: list[str] = []
        regexes: list[re.Pattern[str]] = []
        for pattern in patterns:
            if isinstance(pattern, re.Pattern):
                if not isinstance(pattern.pattern, str):
                    raise ConfigurationError(
                        f"stop_on: the answer is text, so a regex must be of str, not "
                        f"{type(pattern.pattern).__name__}: {pattern.pattern!r}"
                    )
                if not pattern.pattern or _measure(pattern)[0] == 0:
                    raise ConfigurationError(
                        f"stop_on: the regex {pattern.pattern!r} matches empty text, so it "
                        "would match everywhere"
                    )
                regexes.append(pattern)
            elif isinstance(pattern, str):
                if not pattern.strip():
                    raise ConfigurationError("stop_on: an empty word would match everywhere")
                words.append(pattern.strip())
            else:
                raise ConfigurationError(
                    f"stop_on takes words (str) and regexes (re.compile(...)), not "
                    f"{type(pattern).__name__}"
                )
        if not words and not regexes:
            raise ConfigurationError("stop_on needs at least one word or regex")
        if window < 1:
            raise ConfigurationError("stop_on: window must be at least 1 character")
        self.words = tuple(words)
        self.regexes = tuple(regexes)
        self.ignore_case = ignore_case
        shown = [repr(word) for word in words] + [f"re.compile({r.pattern!r})" for r in regexes]
        listed = ", ".join(shown[:3]) + (f", … ({len(shown)} in all)" if len(shown) > 3 else "")
        self.name = name or f"stop_on({listed})"
        self._label = f"{name}: " if name else ""
        # One regex for all the words: each whole (no letter or digit just before or after it),
        # its spaces matching any run of white space. Shortest first, so that where two words
        # begin at one place ("pass", "pass word") the one found is the one that ends first,
        # as it is when the text arrives a character at a time.
        # Each search: (regex, width, reach, label): the longest match looked for, and how far
        # beside a match the regex looks (its lookbehinds and lookaheads; 1 for \b and words).
        self._searches: list[tuple[re.Pattern[str], int, int, Sequence[str] | str]] = []
        # A quick test before the words' regex: a match not seen yet ends in the new text (or
        # one character before it, where its end waited for what follows), so the end of the
        # text must hold one of the words' last parts (case-folded when case is ignored), or the
        # regex cannot match. Most reads hold none, and str's "in" is far faster than a regex
        # trying every word at every place.
        self._lasts = tuple(
            {word.split()[-1].casefold() if ignore_case else word.split()[-1] for word in words}
        )
        self._longest_last = max((len(last) for last in self._lasts), default=0)
        if words:
            shortest = sorted(words, key=lambda word: len(" ".join(word.split())))
            alternatives = _alternatives(shortest)
            flags = re.IGNORECASE if ignore_case else 0
            width = max(len(word) for word in words)
            if any(len(word.split()) > 1 for word in words):
                # A phrase's white space has no bound: it is looked for within the window.
                width = max(width, window)
            self._searches.append((re.compile(alternatives, flags), width, 1, words))
        for regex in regexes:
            _least, most, around = _measure(regex)
            width = window if most is None else min(most, window)
            reach = window if around is None else max(1, min(around, window))
            label = f"{self._label}regex {regex.pattern!r}"
            self._searches.append((regex, width, reach, label))

    def scanner(self) -> _PatternScanner:
        return _PatternScanner(self)

    def __repr__(self) -> str:
        return f"<{self.name}>"


def stop_on(
    *patterns: str | re.Pattern[str] | Iterable[str | re.Pattern[str]],
    ignore_case: bool = True,
    window: int = DEFAULT_WINDOW,
    name: str | None = None,
) -> StopOn:
    """A ``stop_when`` rule that matches words and regexes in the answer as it grows.

    A word (a ``str``; a phrase's spaces match any white space) matches whole, not inside
    another word, ignoring case unless ``ignore_case=False``. A regex (``re.compile(...)``)
    matches with its own flags; one whose matches have no bound on their length is looked for
    within ``window`` characters. Lists of either may be given as they are::

        stop_when=stop_on("password", re.compile(r"\\b\\d{3}-\\d{2}-\\d{4}\\b"))
    """
    flat: list[str | re.Pattern[str]] = []
    for pattern in patterns:
        if isinstance(pattern, (str, bytes, re.Pattern)) or not isinstance(pattern, Iterable):
            flat.append(pattern)  # StopOn says what is wrong with it
        else:
            flat.extend(pattern)
    return StopOn(flat, ignore_case=ignore_case, window=window, name=name)


def _word_regex(word: str) -> str:
    body = r"\s+".join(re.escape(part) for part in word.split())
    before = r"(?<!\w)" if re.match(r"\w", word) else ""
    after = r"(?!\w)" if re.search(r"\w$", word) else ""
    return before + body + after


def _alternatives(words: Sequence[str]) -> str:
    """One regex for ``words`` (in this order). The words that begin and end with a letter or
    digit (most) share one lookbehind and one lookahead: a regex whose every alternative
    begins with its own lookbehind is tried word by word at every place, about five times
    slower."""
    plain = [word for word in words if re.match(r"\w", word) and re.search(r"\w$", word)]
    other = [word for word in words if word not in plain]
    parts = []
    if plain:
        bodies = "|".join(r"\s+".join(re.escape(part) for part in w.split()) for w in plain)
        parts.append(rf"(?<!\w)(?:{bodies})(?!\w)")
    parts.extend(_word_regex(word) for word in other)
    return "|".join(parts)


_parser: Any = None


def _measure(regex: re.Pattern[str]) -> tuple[int | None, int | None, int | None]:
    """The shortest and the longest text ``regex`` can match, and how far its lookaheads and
    lookbehinds reach beyond the match; None where there is no bound, or it is not known."""
    global _parser
    try:
        if _parser is None:  # CPython's own regex parser: re._parser (3.11+), sre_parse before
            try:
                _parser = importlib.import_module("re._parser")
            except ImportError:  # pragma: no cover - Python 3.10
                _parser = importlib.import_module("sre_parse")
        parsed = _parser.parse(regex.pattern, regex.flags)
        least, most = parsed.getwidth()
        around = max(_lookarounds(parsed.data), default=0)
    except Exception:  # not CPython, or a parser that changed: assume no bound
        return (0 if regex.fullmatch("") else None), None, None
    return (
        int(least),
        None if most >= 65535 else int(most),
        None if around >= 65535 else int(around),
    )


def _lookarounds(node: Any) -> Iterator[int]:
    """The widths of the lookaheads and lookbehinds in a parsed regex (of ``_parser``)."""
    if isinstance(node, _parser.SubPattern):
        node = node.data
    if isinstance(node, (list, tuple)):
        if len(node) == 2 and (node[0] is _parser.ASSERT or node[0] is _parser.ASSERT_NOT):
            yield node[1][1].getwidth()[1]
        for item in node:
            yield from _lookarounds(item)


class _PatternScanner:
    """One stream's search for a :class:`StopOn`'s words and regexes."""

    def __init__(self, rule: StopOn) -> None:
        self._rule = rule
        self._tail = ""  # the end of the text so far, as much as a match across reads needs
        self._offset = 0  # where _tail begins in the answer
        # The tail begins with _context characters that are there only for lookbehinds (a
        # word's start) to see what precedes the text searched; then as much as a match that
        # ends in the next text, and what it looks at beyond its end, can take.
        self._context = max(reach for _regex, _width, reach, _label in rule._searches)
        self._span = max(width + reach for _regex, width, reach, _label in rule._searches)
        self.pending: int | None = None  # where a match waiting to be confirmed begins

    def feed(self, new: str, whole: Callable[[], str], final: bool = False) -> RuleMatch | None:
        text = self._tail + new
        start = self._context if self._offset > 0 else 0
        old = len(self._tail)
        found: RuleMatch | None = None
        best = len(text) + 1  # where the match found so far ends, in text
        deferred = len(text)
        spec = self._rule
        for regex, width, reach, label in spec._searches:
            # A match not yet seen ends in the new text, or ended so near the old end that
            # what it looks at beyond it was not there yet: it begins after this.
            at = max(start, old - width - reach)
            if not isinstance(label, str):  # the words: first the quick test
                region = text[max(at, old - reach - spec._longest_last) :]
                if spec.ignore_case:
                    region = region.casefold()
                if not any(last in region for last in spec._lasts):
                    continue
            match = regex.search(text, at)
            while match is not None and match.start() < best:
                if match.end() + reach <= len(text) or final or match.end() - match.start() > width:
                    if match.end() < best:
                        if isinstance(label, str):
                            rule = label
                        else:  # the words' regex: which word was it?
                            word = _which(label, match.group(), self._rule.ignore_case)
                            rule = f"{self._rule._label}word {word!r}"
                        found = RuleMatch(
                            rule,
                            match.group(),
                            self._offset + match.start(),
                            self._offset + match.end(),
                        )
                        best = match.end()
                    if isinstance(label, str):
                        break  # a regex: its first match, as re.search finds it
                    # Words: one inside another ("bad" in "big bad wolf") ends first, and is
                    # the one found when the text arrives a character at a time.
                else:
                    # It reaches the end of the text so far, or what it looks at beyond its end
                    # does: what comes next may undo it.
                    deferred = min(deferred, match.start())
                match = regex.search(text, match.start() + 1)
        if found is not None:
            return found
        self.pending = self._offset + deferred if deferred < len(text) else None
        cut = max(0, min(len(text) - self._span, deferred) - self._context)
        self._tail = text[cut:]
        self._offset += cut
        return None


def _which(words: Sequence[str], matched: str, ignore_case: bool) -> str:
    """The word of ``words`` that ``matched`` is."""
    flat = " ".join(matched.split())
    for word in words:
        spoken = " ".join(word.split())
        if flat == spoken or (ignore_case and flat.casefold() == spoken.casefold()):
            return word
    return words[0]


class _PredicateScanner:
    """A plain ``rule(text) -> bool | str`` over the whole text so far."""

    def __init__(self, predicate: Callable[[str], Any]) -> None:
        self._predicate = predicate
        name = getattr(predicate, "__name__", None)
        self._name = f"{name}()" if name else repr(predicate)

    def feed(self, new: str, whole: Callable[[], str], final: bool = False) -> RuleMatch | None:
        if not new and not final:
            return None
        verdict = self._predicate(whole())
        if not verdict:
            return None
        if isinstance(verdict, str):
            return RuleMatch(f"rule {self._name}: {verdict}")
        return RuleMatch(f"rule {self._name}")


StopWhen = StopOn | Callable[[str], Any] | Sequence[StopOn | Callable[[str], Any]]


def _rules(stop_when: StopWhen | None) -> list[StopOn | Callable[[str], Any]]:
    if stop_when is None:
        return []
    if isinstance(stop_when, StopOn) or callable(stop_when):
        return [stop_when]
    if isinstance(stop_when, (list, tuple)):
        rules = list(stop_when)
        for rule in rules:
            if not (isinstance(rule, StopOn) or callable(rule)):
                raise ConfigurationError(
                    "stop_when takes stop_on(...) rules and functions text -> bool | str, not "
                    f"{type(rule).__name__}"
                )
        return rules
    raise ConfigurationError(
        "stop_when takes a stop_on(...) rule, a function text -> bool | str, or a list of "
        f"them, not {type(stop_when).__name__}"
    )


def _sequences(stop_sequences: str | Sequence[str] | None) -> list[str]:
    if stop_sequences is None:
        return []
    if isinstance(stop_sequences, str):
        stop_sequences = [stop_sequences]
    sequences = list(stop_sequences)
    for sequence in sequences:
        if not isinstance(sequence, str) or not sequence:
            raise ConfigurationError(f"stop_sequences must be non-empty strings, got {sequence!r}")
    return sequences


class Watch:
    """One stream's rules at work.

    The stream passes each content piece through :meth:`hold` (stop sequences: it returns what
    may be shown now), then each read's shown text, once, through :meth:`check` (the
    ``stop_when`` rules). At the end, :meth:`flush` gives back the text held (it was received).
    """

    def __init__(self, rules: Sequence[StopOn | Callable[[str], Any]], sequences: Sequence[str]):
        self._scanners = [
            rule.scanner() if isinstance(rule, StopOn) else _PredicateScanner(rule)
            for rule in rules
        ]
        self._sequences = list(sequences)
        self._longest = max((len(s) for s in sequences), default=0)
        self._held = ""  # text that may be the start of a stop sequence, not shown yet
        self._prefixes = frozenset(s[:k] for s in sequences for k in range(1, len(s)))
        self.unconfirmed = ""  # text checked, kept from view while a match in it is confirmed
        self.sequence: RuleMatch | None = None  # the stop sequence reached
        self.dropped = ""  # with a stop sequence: the sequence and what came after it

    @property
    def held(self) -> str:
        """The text held back for a stop sequence."""
        return self._held

    @property
    def holds(self) -> bool:
        """True when there are stop sequences (every content piece goes through hold())."""
        return bool(self._sequences)

    @property
    def checks(self) -> bool:
        """True when there are stop_when rules."""
        return bool(self._scanners)

    def hold(self, piece: str, shown: int) -> str:
        """The part of ``piece`` (and of the text held before it) that may be shown now;
        ``shown`` is how many characters have been shown so far. Once a stop sequence is
        reached, :attr:`sequence` says which, and nothing more is shown."""
        if not self._sequences:
            return piece
        if self.sequence is not None:
            self.dropped += piece
            return ""
        text = self._held + piece
        # The sequence that ends first (the longest of those that end there), as when the
        # text arrives a character at a time: with sequences "abcd" and "bc", the text
        # "abcd" is cut before "bc", as "abc" would be.
        found: str | None = None
        at = end = 0
        for sequence in self._sequences:
            where = text.find(sequence)
            if where >= 0 and (found is None or (where + len(sequence), where) < (end, at)):
                found, at, end = sequence, where, where + len(sequence)
        if found is not None:
            self._held = ""
            self.dropped = text[at:]
            self.sequence = RuleMatch(f"stop sequence {found!r}", found, shown + at, shown + end)
            return text[:at]
        keep = 0
        for size in range(min(self._longest - 1, len(text)), 0, -1):
            if text[-size:] in self._prefixes:
                keep = size
                break
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def check(self, text: str, whole: Callable[[], str], final: bool = False) -> RuleMatch | None:
        """The first rule match in ``text``, the text shown since the last check; ``whole()``
        gives all the text shown, ``text`` included. With ``final`` this is the last check,
        which confirms a match that reached the end."""
        found: RuleMatch | None = None
        for scanner in self._scanners:
            match = scanner.feed(text, whole, final)
            if match is not None and (found is None or _before(match, found)):
                found = match
        return found

    @property
    def pending_from(self) -> int | None:
        """Where (in the answer) the earliest match that waits to be confirmed begins: the
        stream shows nothing from there until the next check decides."""
        starts = [
            scanner.pending
            for scanner in self._scanners
            if isinstance(scanner, _PatternScanner) and scanner.pending is not None
        ]
        return min(starts, default=None)

    def take(self, chunks: list[str | Chunk], shown: int, content: Callable[[], str]) -> Taken:
        """One read's chunks through the rules: stop sequences hold back text (:meth:`hold`),
        then the read's shown text is checked once (:meth:`check`). ``shown`` is how much text
        the stream has shown, ``content()`` that text. The result says what to show: first
        ``release`` (text held before, now confirmed), then ``chunks``; and the match."""
        if self._sequences:
            # Once per read: the read's text (after what was held before) through hold(),
            # then cut back along the pieces' boundaries.
            pieces = [chunk if isinstance(chunk, str) else chunk.content for chunk in chunks]
            joined = "".join(pieces)
            if joined:
                before = self._held
                visible = self.hold(joined, shown + len(self.unconfirmed))
                chunks = _recut(chunks, pieces, before[: len(visible)], len(visible))
        taken = Taken("", chunks, None)
        if self._scanners:
            taken = self._checked(chunks, shown, content)
        if taken.match is None and self.sequence is not None:
            taken = taken._replace(match=self.sequence)
        return taken

    def _checked(self, chunks: list[str | Chunk], shown: int, content: Callable[[], str]) -> Taken:
        """Check a read's text against the rules: cut it after the piece that completes a
        match, and keep from view the text of a match that waits to be confirmed
        (``unconfirmed``), so that a complete match is never shown."""
        pieces = [chunk if isinstance(chunk, str) else chunk.content for chunk in chunks]
        new = "".join(pieces)
        earlier = self.unconfirmed
        base = shown + len(earlier)  # where this read's text begins in the answer
        match = None
        if new:
            match = self.check(new, lambda: content() + earlier + new)
        if match is not None:
            self.unconfirmed = ""  # shown: the stream's close() keeps it from delivery
            if match.end is not None:
                # Keep what arrived up to the piece that completed the match: the rest of
                # this read comes after the stop.
                end, kept = base, 0
                for kept, piece in enumerate(pieces, 1):  # noqa: B007
                    end += len(piece)
                    if end >= match.end:
                        break
                chunks = chunks[:kept]
            return Taken(earlier, chunks, match)
        hold_from = self.pending_from
        if hold_from is None or hold_from >= base:
            release, self.unconfirmed = earlier, ""
        else:
            release, self.unconfirmed = earlier[: hold_from - shown], earlier[hold_from - shown :]
        if hold_from is None or hold_from >= base + len(new):
            return Taken(release, chunks, None)
        keep = max(0, hold_from - base)  # of this read's text; the rest waits with the match
        self.unconfirmed += new[keep:]
        return Taken(release, _recut(chunks, pieces, "", keep), None)

    def finish(self, content: Callable[[], str], *, confirm: bool) -> tuple[str, RuleMatch | None]:
        """At a natural end: the text held back (to show), and, with ``confirm``, a match of
        the rules that reached the end, confirmed now."""
        unconfirmed, held = self.flush()
        match = None
        if confirm and self._scanners:
            whole = content() + unconfirmed + held
            match = self.check(held, lambda: whole, final=True)
        return unconfirmed + held, match

    def flush(self) -> tuple[str, str]:
        """At the end of the stream (all of it was received): the text kept from view while a
        match was confirmed, and the text held back for a stop sequence, which no rule has
        seen yet."""
        unconfirmed, self.unconfirmed = self.unconfirmed, ""
        held, self._held = self._held, ""
        return unconfirmed, held


class Taken(NamedTuple):
    """What :meth:`Watch.take` lets through: ``release`` then ``chunks``, and the match that
    ends the stream, if any."""

    release: str
    chunks: list[str | Chunk]
    match: RuleMatch | None


def _recut(
    chunks: list[str | Chunk], pieces: list[str], prefix: str, total: int
) -> list[str | Chunk]:
    """``chunks`` whose contents (``pieces``), after ``prefix``, are cut to ``total``
    characters in all; the prefix rides with the first chunk."""
    out: list[str | Chunk] = []
    room = total - len(prefix)
    for index, (chunk, piece) in enumerate(zip(chunks, pieces, strict=True)):
        content = piece[: max(0, room)]
        room -= len(piece)
        if index == 0:
            content = prefix + content
        if content is not piece:
            chunk = content if isinstance(chunk, str) else chunk._replace(content=content)
        out.append(chunk)
    return out


def _before(one: RuleMatch, other: RuleMatch) -> bool:
    if one.end is None or other.end is None:
        return False
    return one.end < other.end


def make_watch(
    stop_when: StopWhen | None, stop_sequences: str | Sequence[str] | None
) -> Callable[[], Watch] | None:
    """What makes each stream's Watch for these options, or None when there is nothing to
    watch. The options are checked now, so that a bad one fails when the stream is made."""
    rules = _rules(stop_when)
    sequences = _sequences(stop_sequences)
    if not rules and not sequences:
        return None
    return lambda: Watch(rules, sequences)
