"""The ``jupyter-stream`` command: ``serve``, ``chat`` and ``models``.

``chat`` streams to the terminal as the reply arrives, on the same endpoint a notebook would use
(with nothing configured, the embedded demo server). Ctrl-C stops it at once: the connection is
closed, the partial reply stays on screen, the reason is said on stderr, and the exit code is 130.

Everything printed passes through :mod:`._terminal`'s filter, terminal or pipe: the reply, and
also the model's name, the server's error messages, model ids and the server's log lines, which
come from a server that may be hostile just as a reply may.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from ._exceptions import JupyterStreamError
from ._follow import TextReply
from ._models import list_models
from ._moderation import stop_on
from ._stream import stream_chat
from ._terminal import for_terminal
from ._wire import FORMATS
from .server._config import is_loopback

__all__ = ["main"]

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
SERVER_KEY_VAR = "JUPYTER_STREAM_SERVER_API_KEY"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = args.run(args)
    except JupyterStreamError as exc:
        _say(f"jupyter-stream: {exc}")
        return 1
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter-stream",
        description="Stream chat completions, and serve the built-in OpenAI-compatible server.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    chat = commands.add_parser(
        "chat",
        help="stream a reply to the terminal",
        description="Stream a reply to the terminal as it arrives. Ctrl-C stops it at once "
        "(exit code 130) and keeps what arrived. With no endpoint configured, the embedded "
        "demo server answers.",
    )
    chat.add_argument("prompt", help="the prompt, or - to read it from stdin")
    _endpoint_options(chat)
    chat.add_argument("-m", "--model", help="the model (default: JUPYTER_STREAM_MODEL, or demo)")
    chat.add_argument("-s", "--system", help="a system message")
    chat.add_argument("--timeout", type=float, help="stop after this many seconds")
    chat.add_argument("--max-tokens", type=int, help="the longest reply, in tokens")
    chat.add_argument(
        "--stop-on",
        action="append",
        metavar="WORD",
        help="stop the reply (moderated) when it says WORD (repeatable)",
    )
    chat.add_argument(
        "--stop-sequence",
        action="append",
        metavar="TEXT",
        help="end the answer before TEXT, trimmed (repeatable)",
    )
    chat.set_defaults(run=_chat)

    models = commands.add_parser("models", help="list the endpoint's models")
    _endpoint_options(models)
    models.set_defaults(run=_models)

    serve = commands.add_parser(
        "serve",
        help="serve the OpenAI-compatible API (demo and echo models, or a relay)",
        description="Serve an OpenAI-compatible API on 127.0.0.1: the built-in demo and echo "
        "models, or with --upstream a relay to a real server that closes its upstream request "
        "as soon as its own client goes away.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (loopback only)")
    serve.add_argument("--port", type=int, default=8000, help="default: 8000 (0: any free port)")
    serve.add_argument(
        "--api-key",
        default=os.environ.get(SERVER_KEY_VAR),
        help=f"require this Bearer key from clients (default: ${SERVER_KEY_VAR}); "
        "required when --host is not a loopback address",
    )
    serve.add_argument(
        "--upstream", metavar="URL", help="relay to this API root, e.g. https://api.openai.com/v1"
    )
    serve.add_argument(
        "--upstream-key-env",
        metavar="VAR",
        default="OPENAI_API_KEY",
        help="the environment variable holding the upstream's key (default: OPENAI_API_KEY)",
    )
    serve.add_argument(
        "--upstream-model",
        metavar="MODEL",
        help="the upstream's model that GET /stream asks when the request names none (?model=)",
    )
    serve.add_argument(
        "--tokens-per-second",
        type=float,
        default=30.0,
        help="the built-in models' pace (default: 30; 0: as fast as possible)",
    )
    serve.add_argument(
        "--first-token-delay",
        type=float,
        default=0.2,
        help="seconds before the first token (default: 0.2)",
    )
    serve.add_argument(
        "--max-streams",
        type=int,
        default=1024,
        help="concurrent chat completions; beyond, 429 (default: 1024)",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=4 * 1024 * 1024,
        help="largest request body (default: 4 MiB)",
    )
    serve.add_argument(
        "--stall-timeout",
        type=float,
        default=30.0,
        help="end a stream whose client reads nothing for this long (default: 30)",
    )
    serve.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        help="close a connection whose request head has not arrived in this many seconds, "
        "from its opening or its last answer (default: 10)",
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=5.0,
        help="close a connection with no request under way after this long (default: 5)",
    )
    serve.set_defaults(run=_serve)
    return parser


def _endpoint_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url",
        help="the API root (default: JUPYTER_STREAM_BASE_URL or OPENAI_BASE_URL, else the "
        "embedded demo server)",
    )
    parser.add_argument(
        "--api",
        metavar="NAME",
        help=f"the API, one of {', '.join(FORMATS)} (default: JUPYTER_STREAM_API, else the "
        "one the base URL's host or the provider key set speaks, else chat)",
    )


def _chat(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    messages = [{"role": "user", "content": prompt}]
    if args.system:
        messages.insert(0, {"role": "system", "content": args.system})
    params: dict[str, Any] = {} if args.max_tokens is None else {"max_tokens": args.max_tokens}
    if args.stop_on:
        params["stop_when"] = stop_on(args.stop_on)
    if args.stop_sequence:
        params["stop_sequences"] = args.stop_sequence
    stream = stream_chat(
        messages,
        model=args.model,
        base_url=args.base_url,
        api=args.api,
        timeout=args.timeout,
        **params,
    )
    out = sys.stdout
    if isinstance(out, io.TextIOWrapper):
        out.reconfigure(errors="replace")  # a terminal that cannot show 🚀 shows ? instead
    reply = TextReply(out)
    code = 0
    try:
        with stream:
            reply.print(stream)
    except KeyboardInterrupt:  # the with block has closed the stream as interrupted
        code = EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as yes | head does
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        return EXIT_BROKEN_PIPE
    except JupyterStreamError as exc:
        reply.end()
        _say(f"jupyter-stream: {exc}")
        return 1
    reply.end()
    stats = stream.stats
    rate = f", {stats.tokens_per_second:.0f} tokens/s" if stats.tokens_per_second else ""
    reason = str(stream.stop_reason)
    if stream.stop_detail:  # it may quote the reply
        reason += f": {stream.stop_detail}"
    _say(f"[{reason} · {stream.model} · {stats.tokens} tokens in {stats.elapsed:.1f} s{rate}]")
    return code


def _say(message: str, file: Any = None) -> None:
    """Print ``message`` (on stderr by default), filtered: it may quote a server."""
    print(for_terminal(message), file=file or sys.stderr, flush=True)


def _models(args: argparse.Namespace) -> int:
    for model in list_models(base_url=args.base_url, api=args.api):
        _say(model.replace("\n", " "), sys.stdout)  # one id a line, whatever a server sends
    return 0


class _LogFormatter(logging.Formatter):
    """The server's log lines, filtered: uvicorn's own records may quote a request."""

    def format(self, record: logging.LogRecord) -> str:
        return for_terminal(super().format(record))


def _serve(args: argparse.Namespace) -> int:
    from .server import ServerConfig

    if not is_loopback(args.host) and not args.api_key:
        _say(
            f"jupyter-stream serve: refusing to listen on {args.host} without a key: anyone who "
            f"can reach it could use it. Pass --api-key (or set {SERVER_KEY_VAR}), or keep the "
            "default --host 127.0.0.1."
        )
        return 2
    upstream_key = None
    if args.upstream:
        upstream_key = os.environ.get(args.upstream_key_env) or None
    try:
        config = ServerConfig(
            tokens_per_second=args.tokens_per_second,
            first_token_delay=args.first_token_delay,
            upstream=args.upstream,
            upstream_api_key=upstream_key,
            upstream_model=args.upstream_model,
            api_key=args.api_key,
            max_streams=args.max_streams,
            max_body_bytes=args.max_body_bytes,
            stall_timeout=args.stall_timeout,
            header_timeout=args.header_timeout,
            idle_timeout=args.idle_timeout,
        )
    except ValueError as exc:
        _say(f"jupyter-stream serve: {exc}")
        return 2
    from .server import create_app
    from .server._background import uvicorn_server

    app = create_app(config)  # checks --upstream before anything listens
    try:
        sock = socket.create_server((args.host, args.port), family=_family(args.host))
    except OSError as exc:
        _say(
            f"jupyter-stream serve: cannot listen on {args.host}:{args.port}: {exc.strerror}; "
            "pick another --port (0: any free one)"
        )
        return 1
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    if args.upstream:
        key = f"key from ${args.upstream_key_env}" if upstream_key else "no key"
        what = f"relaying to {app.state.server.relay.display_url} ({key})"
    else:
        what = f"models demo and echo at {args.tokens_per_second:g} tokens/s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter("%(asctime)s %(message)s", "%H:%M:%S"))
    for name, level in (("jupyter_stream", logging.INFO), ("uvicorn", logging.WARNING)):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False
    _say(f"jupyter-stream: serving http://{host}:{port}/v1, {what}; Ctrl-C stops")
    server = uvicorn_server(app, graceful_timeout=2)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn has shut down, and raised the signal again once it was done
    return 0


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


if __name__ == "__main__":
    sys.exit(main())
