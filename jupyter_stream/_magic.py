"""``%%chat`` and ``%chat``: the IPython side. The only module that imports IPython.

A ``%%chat`` cell runs as an *awaited cell*: an input transformer, first of IPython's cleanup
transformers, rewrites the cell into ``await run_chat_cell(line, body)``. So the cell stays busy
while the reply streams (Run All keeps its order, nbclient gets the whole reply), and on
ipykernel >= 7.4, which runs comm messages beside an awaiting cell, the Stop button and the
timeout slider act mid-cell. ``nest_asyncio`` is never used: measured, it loses widget clicks
and queued cells on ipykernel 7.

Kernel -> Interrupt arrives in the awaited cell as a cancellation: the stream is closed, the
partial reply is kept and shown marked ``interrupted``, and ``KeyboardInterrupt`` is raised so
that Run All stops as with any interrupt.

The plain cell magic stays as the fallback where the transformer does not run (a direct
``run_cell_magic("chat", …)``): it streams as text with the synchronous API.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import sys
from collections.abc import Generator
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Bool, Float, Int, List, Unicode

from . import _kernel_compat
from ._config import COLAB, COLAB_KEY_VAR, colab_proxy, resolve_model
from ._endpoint import resolve_endpoint
from ._exceptions import JupyterStreamError
from ._follow import TextReply, reply_mark, status_text
from ._moderation import stop_on
from ._registry import WHEN_FULL, registry
from ._render import MARKS, Rendered, end_mark, reply_bundle
from ._secrets import shown_query
from ._session import ChatSession
from ._stream import ChatStream, StopReason
from ._target import EMBEDDED, Endpoint
from ._terminal import for_terminal
from ._wire import wire_format

__all__ = [
    "ChatMagics",
    "ChatTask",
    "interpolate",
    "load_ipython_extension",
    "run_chat_cell",
    "transform_chat_cell",
    "unload_ipython_extension",
]

_active: ChatMagics | None = None


# -- the input transformer ----------------------------------------------------------------------


def transform_chat_cell(lines: list[str]) -> list[str]:
    """Rewrite a ``%%chat`` cell into an awaited call; leave every other cell as it is.

    ``%%chat?`` is left alone, so that IPython shows the help.
    """
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    if start == len(lines):
        return lines
    first = lines[start].rstrip("\r\n")
    match = re.match(r"%%chat(?=\s|$)(.*)$", first)
    if match is None or first.rstrip().endswith("?"):
        return lines
    line = match.group(1).strip()
    body = "".join(lines[start + 1 :])
    call = (
        f'await __import__("jupyter_stream._magic", fromlist=["_"])'
        f".run_chat_cell({line!r}, {body!r})\n"
    )
    return [call]


# IPython's check_complete skips it, and so sees a cell magic that ends at a blank line: else
# terminal IPython would run a %%chat cell at its first line, before its body is typed.
transform_chat_cell.has_side_effects = True  # type: ignore[attr-defined]


async def run_chat_cell(line: str, body: str) -> Any:
    """What a ``%%chat`` cell runs."""
    if _active is None:
        raise UsageError("jupyter_stream is not loaded: run `%load_ext jupyter_stream` first")
    return await _active.run(line, body)


# -- interpolation -------------------------------------------------------------------------------

_FIELD = re.compile(r"\{\{([A-Za-z_]\w*(?:\[\d+\])?)\}\}|\{(In|Out)\[(\d+)\]\}|\{([A-Za-z_]\w*)\}")


def interpolate(text: str, namespace: dict[str, Any], inputs: list[str]) -> str:
    """Put values into a prompt: ``{name}`` is a variable, ``{In[3]}`` the source of cell 3,
    ``{Out[3]}`` its result. Braces around anything else (code, JSON) and names that are not
    defined stay as they are; ``{{name}}`` gives a literal ``{name}``."""

    def field(match: re.Match[str]) -> str:
        escaped, history, number, name = match.groups()
        if escaped is not None:
            return "{" + escaped + "}"
        if history == "In":
            index = int(number)
            return inputs[index] if 0 < index < len(inputs) else match.group()
        if history == "Out":
            outputs = namespace.get("Out", {})
            index = int(number)
            return str(outputs[index]) if index in outputs else match.group()
        if name in namespace:
            return str(namespace[name])
        return match.group()

    return _FIELD.sub(field, text)


# -- a reply that runs in the background ---------------------------------------------------------


class ChatTask:
    """A ``%%chat --background`` reply: ``await`` it for the reply's text; ``close()`` stops it."""

    def __init__(self, task: asyncio.Task[str], stream: ChatStream) -> None:
        self._task = task
        self.stream = stream

    def __await__(self) -> Generator[Any, None, str]:
        return asyncio.shield(self._task).__await__()

    def close(self) -> None:
        self.stream.close(StopReason.STOPPED)

    @property
    def done(self) -> bool:
        return self._task.done()

    def __repr__(self) -> str:
        state = self.stream.stop_reason or "streaming"
        return f"<ChatTask {self.stream.model!r} {state}: await it for the reply>"


# -- the magics -----------------------------------------------------------------------------------


@magics_class
class ChatMagics(Magics):
    """``%%chat`` and ``%chat``. Configure with ``%config ChatMagics.<name> = value``."""

    model = Unicode(
        None,
        allow_none=True,
        help="Model (default: $JUPYTER_STREAM_MODEL, or demo on the built-in server)",
    ).tag(config=True)
    base_url = Unicode(
        None,
        allow_none=True,
        help="The API's base URL (default: "
        "$JUPYTER_STREAM_BASE_URL, $OPENAI_BASE_URL, or the built-in server)",
    ).tag(config=True)
    api = Unicode(
        None,
        allow_none=True,
        help="The API: chat (OpenAI Chat Completions), responses, anthropic, gemini or ollama "
        "(default: $JUPYTER_STREAM_API, else the base URL's host or the provider key set, "
        "else chat)",
    ).tag(config=True)
    system = Unicode(None, allow_none=True, help="System prompt for new sessions").tag(config=True)
    timeout = Float(120.0, help="Seconds a reply may take (the slider's start)").tag(config=True)
    max_timeout = Float(600.0, help="The timeout slider's upper end, in seconds").tag(config=True)
    temperature = Float(None, allow_none=True, help="Sampling temperature").tag(config=True)
    max_tokens = Int(None, allow_none=True, help="Longest reply, in tokens").tag(config=True)
    supersede = Bool(
        True,
        help="A new turn closes the session's reply still streaming (a --background one); "
        "False lets it run on",
    ).tag(config=True)
    priority = Int(0, help="The replies' priority among the process's streams").tag(config=True)
    stop_on = List(
        Unicode(),
        help="Words that stop every reply (moderated), added to each cell's --stop-on",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.sessions: dict[str, ChatSession] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ``%%chat`` ----------------------------------------------------------------------------------

    @magic_arguments()
    @argument("-m", "--model", help="the model to ask")
    @argument("-s", "--system", help="system prompt (starts a new conversation)")
    @argument("--timeout", type=float, help="seconds the reply may take (the slider moves it)")
    @argument("--temperature", type=float, help="sampling temperature")
    @argument("--max-tokens", type=int, help="longest reply, in tokens")
    @argument("--base-url", help="the API's base URL (default: see %%chat config)")
    @argument(
        "--api",
        metavar="NAME",
        help="the API: chat, responses, anthropic, gemini or ollama (default: see %%chat config)",
    )
    @argument("--new", action="store_true", help="start a new conversation")
    @argument("--session", default="default", help="the conversation to continue (by name)")
    @argument("-o", "--output", metavar="VAR", help="store the reply's text in VAR")
    @argument("--priority", type=int, help="priority among the process's streams (default 0)")
    @argument(
        "--stop-on",
        action="append",
        metavar="WORD",
        help="stop the reply (moderated) when it says WORD (repeatable)",
    )
    @argument(
        "--stop-regex",
        action="append",
        metavar="REGEX",
        help="stop the reply (moderated) when it matches REGEX (repeatable)",
    )
    @argument(
        "--stop-sequence",
        action="append",
        metavar="TEXT",
        help="end the answer before TEXT, trimmed (repeatable)",
    )
    @argument(
        "--background",
        action="store_true",
        help="return a handle at once (await it for the reply); see the README's Run All caveat",
    )
    @cell_magic
    def chat(self, line: str, cell: str) -> Any:
        """Ask a model; its reply streams below the cell. Stop stops it now.

        The cell's body is the message. ``{name}`` puts in the value of a variable,
        ``{In[3]}``/``{Out[3]}`` the source or result of cell 3; other braces stay as they are.
        The conversation goes on from cell to cell (``--new`` starts again).

        Examples::

            %%chat
            Explain server-sent events in one paragraph.

            %%chat -m gpt-4o-mini --timeout 30 -o answer
            Summarise {text} in three bullet points.

            %%chat --api anthropic -m claude-sonnet-4-5
            Name three uses of a stream.
        """
        # Reached only where the awaited-cell transformer did not run: stream as text.
        args, prompt = self._parse(line, cell)
        session, options = self._turn(args)
        stream = session.stream(prompt, **options)
        reply = TextReply(sys.stdout)  # text printed, not displayed: a terminal may show it
        try:
            with stream:
                reply.print(stream)
        except KeyboardInterrupt:
            reply.end(MARKS["interrupted"])
            raise
        except BaseException:
            reply.end()
            raise
        finally:
            self._store(args, stream)
        reply.end(reply_mark(stream))
        return None

    async def run(self, line: str, body: str) -> Any:
        # A JupyterStreamError (bad configuration) shows as its message alone, a traceback
        # only on %tb: see JupyterStreamError._render_traceback_.
        args, prompt = self._parse(line, body)
        session, options = self._turn(args)
        if not _has_widgets(self.shell):
            stream = session.astream(prompt, **options)
            return await self._run_as_text(args, stream)
        stream = session.astream(prompt, **options)
        from ._widgets import ChatView

        view = ChatView(timeout=options["timeout"], max_timeout=self.max_timeout)
        handle = display(view.box, display_id=True)
        coroutine = self._follow(args, stream, view, handle)
        if args.background:
            task = asyncio.get_running_loop().create_task(coroutine)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return ChatTask(task, stream)
        return await coroutine

    async def _follow(self, args: Any, stream: ChatStream, view: Any, handle: Any) -> str:
        interrupted = False
        try:
            await view.follow(stream)
        except asyncio.CancelledError:
            interrupted = True
        except JupyterStreamError:
            pass  # stream.error holds it; raised below, after the reply is shown
        finally:
            stream.close(StopReason.INTERRUPTED)  # whatever left follow(), nothing streams on
            try:
                data, metadata = _bundle(stream, *view.reply.rendered())  # not rendered again
                handle.update(data, metadata=metadata, raw=True)  # the widgets' place, taken
            finally:
                view.close()
                self._store(args, stream)
        if interrupted:
            raise KeyboardInterrupt(f"the reply was {MARKS['interrupted']}; its text is kept")
        if stream.error is not None:
            raise stream.error  # shown short below the kept reply; its traceback on %tb
        return stream.text if args.background else None  # type: ignore[return-value]

    async def _run_as_text(self, args: Any, stream: ChatStream) -> None:
        reply = TextReply(sys.stdout)  # terminal IPython: escape sequences would act on it
        try:
            await reply.aprint(stream)
        except asyncio.CancelledError:
            reply.end(MARKS["interrupted"])
            raise KeyboardInterrupt from None
        except BaseException:
            reply.end()
            raise
        finally:
            self._store(args, stream)
        reply.end(reply_mark(stream))

    def _parse(self, line: str, body: str) -> tuple[Any, str]:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%%chat options: {exc} (a quote is not closed?)") from None
        args = self.chat.parser.parse_args(words)  # raises UsageError, without a traceback
        if args.output is not None and not args.output.isidentifier():
            raise UsageError(f"-o/--output needs a variable name, not {args.output!r}")
        if args.timeout is not None and args.timeout <= 0:
            raise UsageError("--timeout must be a number of seconds above 0")
        if args.api is not None:
            wire_format(args.api)  # a ConfigurationError listing the names, before any turn
        prompt = body.strip()
        if not prompt:
            raise UsageError("%%chat needs a message in the cell's body, below the %%chat line")
        shell = self.shell
        namespace = shell.user_ns if shell is not None else {}
        history = getattr(shell, "history_manager", None)
        inputs = history.input_hist_raw if history is not None else []
        return args, interpolate(prompt, namespace, inputs)

    def _turn(self, args: Any) -> tuple[ChatSession, dict[str, Any]]:
        session = self.sessions.get(args.session)
        if session is None or args.new or args.system is not None:
            if session is not None:
                session.stop()
            session = ChatSession(system=args.system if args.system is not None else self.system)
            self.sessions[args.session] = session
        session.supersede = self.supersede
        options: dict[str, Any] = {
            "model": args.model or self.model,
            "base_url": args.base_url or self.base_url,
            "api": args.api or self.api,
            "timeout": args.timeout or self.timeout,
            "priority": args.priority if args.priority is not None else self.priority,
        }
        patterns: list[Any] = [*self.stop_on, *(args.stop_on or [])]
        for regex in args.stop_regex or []:
            try:
                patterns.append(re.compile(regex))
            except re.error as exc:
                raise UsageError(f"--stop-regex {regex!r} is not a regex: {exc}") from None
        if patterns:
            options["stop_when"] = stop_on(patterns)
        if args.stop_sequence:
            options["stop_sequences"] = args.stop_sequence
        temperature = args.temperature if args.temperature is not None else self.temperature
        if temperature is not None:
            options["temperature"] = temperature
        max_tokens = args.max_tokens if args.max_tokens is not None else self.max_tokens
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        return session, options

    def _store(self, args: Any, stream: ChatStream) -> None:
        if args.output and self.shell is not None:
            self.shell.user_ns[args.output] = stream.text

    # ``%chat`` -----------------------------------------------------------------------------------

    @line_magic("chat")  # type: ignore[arg-type]
    def chat_line(self, line: str) -> None:
        """%chat reset | history | stop [all | N] | streams | limit | models | config
              [--session NAME]

        reset    forget a conversation (or `reset all`)
        history  show a conversation's turns, stopped ones marked
        stop     stop the session's reply; `stop all`: every stream of the process;
                 `stop N`: stream number N (see `streams`)
        streams  the process's live streams: number, model, age, tokens, priority
        limit    show or set how many streams may run at once and what a new one does
                 beyond that: `limit 4 preempt` (or wait, refuse), `limit none`
        models   list the endpoint's models (of the API %config ChatMagics.api names)
        config   show the settings in effect (never the key)
        """
        words = line.split()
        session_name = "default"
        if "--session" in words:
            at = words.index("--session")
            if at + 1 >= len(words):
                raise UsageError("--session needs a name")
            session_name = words[at + 1]
            del words[at : at + 2]
        if not words:
            raise UsageError(f"%chat needs a command.\n{self.chat_line.__doc__}")
        command, rest = words[0], words[1:]
        if command == "reset":
            names = list(self.sessions) if rest == ["all"] else [session_name]
            for name in names:
                session = self.sessions.pop(name, None)
                if session is not None:
                    session.reset()
        elif command == "history":
            print(for_terminal(self._history(session_name)))  # model output, as text
        elif command == "stop":
            if rest == ["all"]:
                stopped = registry.stop_all()
                print(f"stopped {stopped} stream{'' if stopped == 1 else 's'}")
            elif len(rest) == 1 and rest[0].lstrip("#").isdigit():
                number = int(rest[0].lstrip("#"))
                if not registry.stop(number):
                    raise UsageError(f"no live stream #{number}: `%chat streams` lists them")
            elif rest:
                raise UsageError(f"%chat stop takes `all` or a stream's number, not {rest!r}")
            else:
                session = self.sessions.get(session_name)
                if session is not None:
                    session.stop()
        elif command == "streams":
            print(for_terminal(streams_table(registry.streams())))
        elif command == "limit":
            self._limit(rest)
        elif command == "models":
            from ._models import list_models

            try:
                models = list_models(base_url=self.base_url, api=self.api)
            except JupyterStreamError as exc:
                raise UsageError(str(exc)) from None
            current = resolve_model(self.model, resolve_endpoint(self.base_url, api=self.api))
            for model in models:
                print(for_terminal(f"{'*' if model == current else ' '} {model}"))
        elif command == "config":
            print(for_terminal(self._config()))
        else:
            raise UsageError(f"unknown %chat command {command!r}.\n{self.chat_line.__doc__}")

    def _limit(self, words: list[str]) -> None:
        settings: dict[str, Any] = {}
        for word in words:
            if word in WHEN_FULL:
                settings["when_full"] = word
            elif word.lower() == "none":
                settings["max_concurrent"] = None
            elif word.isdigit() and int(word) >= 1:
                settings["max_concurrent"] = int(word)
            else:
                raise UsageError(
                    f"%chat limit takes a number >= 1 (or none) and one of "
                    f"{', '.join(WHEN_FULL)}; not {word!r}"
                )
        registry.configure(**settings)
        limit = registry.max_concurrent
        print(
            f"at most {limit} stream{'' if limit == 1 else 's'} at once; a new one beyond "
            f"that: {registry.when_full}"
            if limit is not None
            else f"no limit on streams (when one is set, a new one beyond it: {registry.when_full})"
        )

    def _history(self, name: str) -> str:
        session = self.sessions.get(name)
        if session is None or not session.turns:
            return f"(no turns in session {name!r})"
        lines = []
        if session.system:
            lines.append(f"system: {session.system}")
        for number, turn in enumerate(session.turns, 1):
            reason = turn.stop_reason.value if turn.stop_reason else "streaming"
            mark = end_mark(reason, turn.stream.stop_detail)
            lines.append(f"[{number}] you: {turn.prompt}")
            answer = turn.answer if len(turn.answer) <= 300 else turn.answer[:300] + "…"
            lines.append(f"    {turn.stream.model}: {answer}" + (f"  [{mark}]" if mark else ""))
        return "\n".join(lines)

    def _config(self) -> str:
        endpoint = resolve_endpoint(self.base_url, api=self.api)
        try:
            model = resolve_model(self.model, endpoint)
        except JupyterStreamError as exc:  # what config shows is what is missing
            model = f"not set: {exc}"
        source = "%config ChatMagics.base_url" if self.base_url else endpoint.base_url_source
        key = f"set ({endpoint.api_key_source})" if endpoint.api_key else "not set"
        if endpoint.url_credentials:  # never shown: only whether and how they are sent
            sent = "not sent (the API key is)" if endpoint.api_key else "sent as Basic auth"
            key += f"; the base URL's user:password@ is {sent}"
        query = endpoint.redact(shown_query(endpoint.base_url))
        notes = []
        if endpoint.base_url_source == EMBEDDED and colab_proxy() is not None:
            notes.append(
                f"note         {COLAB} is not used: {COLAB_KEY_VAR} is not set (google.colab.ai "
                f"reads it from the notebook's secrets: userdata.get({COLAB_KEY_VAR!r}))"
            )
        return "\n".join(
            [
                f"base URL     {endpoint.display_url}{'?' + query if query else ''} — {source}",
                *notes,
                f"API          {endpoint.api} — {_api_source(endpoint, self.api)}",
                f"model        {model}",
                f"API key      {key}",
                f"timeout      {self.timeout:g} s (slider up to {self.max_timeout:g} s)",
                f"temperature  {self.temperature if self.temperature is not None else 'default'}",
                f"max tokens   {self.max_tokens if self.max_tokens is not None else 'default'}",
                f"priority     {self.priority}",
                f"stop on      {', '.join(map(repr, self.stop_on)) or '(nothing)'}",
                f"supersede    {'yes' if self.supersede else 'no'}",
                f"streams      {registry!r}",
                f"sessions     {', '.join(self.sessions) or '(none yet)'}",
            ]
        )


def _api_source(endpoint: Endpoint, configured: str | None) -> str:
    """Where the API in effect comes from, as _config chose it."""
    if configured:
        return "%config ChatMagics.api"
    return endpoint.api_source


def _bundle(
    stream: ChatStream,
    rendered: Rendered | None = None,
    rendered_reasoning: Rendered | None = None,
) -> tuple[dict[str, str], dict[str, Any]]:
    stats = stream.stats
    reason = stream.stop_reason.value if stream.stop_reason else "interrupted"
    metadata = {
        "model": stream.model,
        "stop_reason": reason,
        "tokens": stats.tokens,
        "chunks": stats.chunks,
        "time_to_first_token": stats.time_to_first_token,
        "elapsed": stats.elapsed,
        "tokens_per_second": stats.tokens_per_second,
        "usage": dict(stats.usage) if stats.usage else None,
    }
    if stream.error is not None:
        metadata["error"] = str(stream.error)
    if stream.stop_detail is not None:
        metadata["stop_detail"] = stream.stop_detail
    if stream.reply.notes:
        metadata["notes"] = list(stream.reply.notes)
    return reply_bundle(
        text=stream.text,
        reasoning=stream.reply.reasoning,
        status=status_text(stream),
        reason=reason,
        metadata=metadata,
        detail=stream.stop_detail,
        rendered=rendered,
        rendered_reasoning=rendered_reasoning,
    )


def streams_table(streams: list[ChatStream]) -> str:
    """The live streams as a plain-text table: number, state, model, age, tokens, priority, and
    the question (its start)."""
    if not streams:
        return "(no live streams)"
    rows = [("#", "state", "model", "age", "tokens", "priority", "question")]
    for stream in streams:
        question = " ".join(_question(stream).split())
        rows.append(
            (
                str(stream.number),
                "waiting" if stream.waiting else "streaming",
                stream.model,
                f"{stream.stats.elapsed:.1f} s",
                str(stream.stats.tokens),
                str(stream.priority),
                question if len(question) <= 40 else question[:39] + "…",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    right = {0, 3, 4, 5}  # numbers line up on the right
    return "\n".join(
        "  ".join(
            cell.rjust(width) if column in right else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )


def _question(stream: ChatStream) -> str:
    for message in reversed(stream.messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


def _has_widgets(shell: Any) -> bool:
    """True in a Jupyter kernel (where a frontend can show widgets)."""
    return (
        shell is not None
        and getattr(shell, "kernel", None) is not None
        and ("ipykernel" in sys.modules)
    )


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext jupyter_stream``: register the magics and the awaited-cell transformer."""
    global _active
    magics = ChatMagics(shell=shell)
    shell.register_magics(magics)
    _active = magics
    transformers = shell.input_transformers_cleanup
    if transform_chat_cell not in transformers:
        transformers.insert(0, transform_chat_cell)


def unload_ipython_extension(shell: Any) -> None:
    global _active
    transformers = shell.input_transformers_cleanup
    if transform_chat_cell in transformers:
        transformers.remove(transform_chat_cell)
    _active = None
    _kernel_compat.unwrap()  # the kernel's own receive callback again, as before %load_ext
