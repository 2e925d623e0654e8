"""The HTTP side, and the one module that imports httpx: one pooled ``httpx.AsyncClient`` per
event loop, a request with its retries (before the first body byte only) and its wire format's
one plainer retry, and the one place where httpx errors and error statuses become jupyter_stream
errors. What it hands on is a :class:`Body`: a content type, a socket and the raw bytes.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import socket
import ssl
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TypeVar

import anyio
import httpx

from ._exceptions import (
    AuthenticationError,
    BadRequestError,
    ConnectError,
    ConnectionLostError,
    HTTPStatusError,
    JupyterStreamError,
    NotFoundError,
    ProtocolError,
    RateLimitError,
    ServerError,
    StreamTimeout,
    exception_chain,
)
from ._reply import clean_text, excerpt
from ._secrets import register_for_logs
from ._target import Endpoint
from ._wire import WireFormat, WireRequest

__all__ = [
    "IDLE_ERRORS",
    "TRANSPORT_ERRORS",
    "Body",
    "close_client",
    "fetch_text",
    "get_client",
    "safe_cause",
    "scrubbed",
    "status_error",
    "stream_request",
    "translate_error",
]

MAX_RETRY_AFTER = 60.0  # a longer Retry-After is reported, not waited for
ERROR_BODY_LIMIT = 64 * 1024
# What a read of the body may raise: the idle timeout (an end, not an error), and the rest
# (translated by translate_error). Named here so that no other module needs httpx.
IDLE_ERRORS: tuple[type[BaseException], ...] = (httpx.ReadTimeout,)
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx.HTTPError, OSError)
T = TypeVar("T")

# Connections are not capped (a notebook holds few streams, and a cap would queue a stream
# silently); idle ones are kept for reuse so that the next turn skips the TCP and TLS handshakes.
LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=20, keepalive_expiry=30)

_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, AsyncGenerator[None, None]]
] = weakref.WeakKeyDictionary()
_clients_lock = threading.Lock()


async def get_client() -> httpx.AsyncClient:
    """The running loop's shared client, made on first use.

    The client is closed when the loop shuts down its async generators (``asyncio.run`` and
    ``asyncio.Runner`` do), so pooled connections are not left to the garbage collector.
    """
    loop = asyncio.get_running_loop()
    verify = await _ssl_context()  # may suspend, so it comes before the look-up
    # From here to the end nothing suspends, so streams starting together on one loop cannot
    # each make a client (a client replaced in _clients would be closed under its stream).
    with _clients_lock:
        entry = _clients.get(loop)
    if entry is not None and not entry[0].is_closed:
        return entry[0]
    client = httpx.AsyncClient(limits=LIMITS, timeout=None, trust_env=True, verify=verify)
    closer = _close_at_shutdown(client)
    await closer.__anext__()  # runs to its yield without suspending; registers with the loop
    with _clients_lock:
        _clients[loop] = (client, closer)
    return client


async def close_client() -> None:
    """Close the running loop's shared client, and with it every pooled connection; the next
    stream on this loop makes a new one."""
    with _clients_lock:
        entry = _clients.pop(asyncio.get_running_loop(), None)
    if entry is not None:
        await entry[1].aclose()  # runs _close_at_shutdown's finally: client.aclose()


_ssl: ssl.SSLContext | None = None


async def _ssl_context() -> ssl.SSLContext:
    """One TLS context for the process, built on a worker thread: loading the CA bundle takes
    50-150 ms, which would otherwise stall the caller's loop (a kernel's, say) on first use."""
    global _ssl
    if _ssl is None:
        # A thread of its own that ends with the work: the loop's default executor would keep
        # an idle thread for the life of the loop.
        loop = asyncio.get_running_loop()
        done: asyncio.Future[ssl.SSLContext] = loop.create_future()

        def build() -> None:
            context: ssl.SSLContext | None = None
            error: BaseException | None = None
            try:
                context = httpx.create_ssl_context()
            except BaseException as exc:  # handed to the awaiting stream, which reports it
                error = exc
            try:
                loop.call_soon_threadsafe(_settle, done, context, error)
            except RuntimeError:  # the loop closed meanwhile: nobody waits any more
                pass

        threading.Thread(target=build, name="jupyter_stream-tls", daemon=True).start()
        _ssl = await done
    return _ssl


def _settle(
    future: asyncio.Future[ssl.SSLContext],
    context: ssl.SSLContext | None,
    exc: BaseException | None,
) -> None:
    if future.done():  # the awaiting stream was cancelled meanwhile
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert context is not None
        future.set_result(context)


async def _close_at_shutdown(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()


def retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or an HTTP date), if the server sent it."""
    value = response.headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def status_error(
    endpoint: Endpoint, response: httpx.Response, body: str, model: str, wire: WireFormat
) -> HTTPStatusError:
    """The error for a response with a 4xx or 5xx status; names the cause and the fix."""
    status = response.status_code
    body = endpoint.redact(body)  # before and after decoding: JSON may escape a key's letters
    said = endpoint.redact(clean_text(wire.error_said(body)))  # JSON may escape a lone surrogate
    said_part = f": {said}" if said else ""
    where = endpoint.display_url
    wait = retry_after(response)
    cls: type[HTTPStatusError] = HTTPStatusError
    message = f"{status} from {where}{said_part}."
    if status in (401, 403):
        cls = AuthenticationError
        if endpoint.api_key:
            key = f"the API key from {endpoint.api_key_source}"
            fix = f"check that {endpoint.api_key_source} holds a valid key for this server"
        elif endpoint.url_credentials:
            key = "the user name and password in the base URL"
            fix = f"check the user info (user:password@) of {endpoint.base_url_source}"
        else:
            key = "no API key (none was configured)"
            fix = f"set {' or '.join(wire.key_vars) or 'a key'} or pass api_key=..."
        message = (
            f"{status} from {where}: the server refused {key}{said_part}. Fix: {fix}, "
            f"and that the base URL ({endpoint.base_url_source}) is the one you meant."
        )
    elif status == 404:
        cls = NotFoundError
        if "model" in said.lower() or model in said:
            message = (
                f"404 from {where}: model {model!r} not found{said_part}. Fix: pick a model "
                f"this server has (`%chat models`, or GET {where}/models)."
            )
        else:
            message = wire.not_found(where, said_part, model, endpoint.base_url_source)
    elif status == 429:
        cls = RateLimitError
        after = f"; retry after {wait:.0f} s" if wait is not None else ""
        message = (
            f"429 Too Many Requests from {where}{after}{said_part}. Fix: wait and try again, "
            "or lower the request rate."
        )
    elif status >= 500:
        cls = ServerError
        message = (
            f"{status} server error from {where}{said_part}. The server or a proxy in front of "
            "it failed; try again, and check the server's logs."
        )
    elif status in (400, 422):
        cls = BadRequestError
        message = f"{status} from {where}: the server rejected the request{said_part}."
    elif 300 <= status < 400:
        message = _redirect_message(endpoint, response, wire)
    return cls(message, status_code=status, body=body, retry_after=wait)


def _redirect_message(endpoint: Endpoint, response: httpx.Response, wire: WireFormat) -> str:
    """A redirect is not followed (the request's body and key would go wherever it points):
    say where it points, and which base URL that suggests."""
    status, where = response.status_code, endpoint.display_url
    location = response.headers.get("location")
    if not location:
        return f"{status} from {where}: a redirect without a Location. Fix: check the base URL."
    target = response.request.url.join(location).copy_with(username=None, password=None)
    shown = endpoint.redact(str(target.copy_with(query=None, fragment=None)))
    suggested = wire.redirect_base(shown)
    return (
        f"{status} from {where}: the server redirects to {shown}, and redirects are not "
        f"followed. Fix: set the base URL to {suggested} ({endpoint.base_url_source})."
    )


def translate_error(
    exc: BaseException, endpoint: Endpoint, wire: WireFormat, *, chunks: int
) -> JupyterStreamError:
    """The jupyter_stream error for an httpx (or OS) error met while streaming."""
    where = endpoint.host_port
    if isinstance(exc, httpx.ConnectTimeout):
        return StreamTimeout(
            f"no connection to {where} within the connect timeout. Fix: check that the server "
            f"at {endpoint.display_url} is up and reachable, or raise connect_timeout=."
        )
    if isinstance(exc, httpx.ConnectError):
        root = _root_os_error(exc)
        if isinstance(root, ConnectionRefusedError):
            what = "connection refused"
            fix = (
                f"start the server, or point base_url ({endpoint.base_url_source}) at the "
                "port it listens on"
            )
        elif isinstance(root, socket.gaierror):
            what = "unknown host"
            fix = f"check the host name in base_url ({endpoint.base_url_source})"
        else:
            what = _cause(root or exc, endpoint) or type(exc).__name__
            fix = f"check base_url ({endpoint.base_url_source}) and your network"
        return ConnectError(f"could not connect to {where} ({what}). Fix: {fix}.")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, ConnectionError)):
        if chunks:
            return ConnectionLostError(
                f"the connection to {where} dropped after {chunks} chunks, before the answer was "
                "complete; what arrived is kept in .reply"
            )
        return ConnectionLostError(
            f"the connection to {where} closed before any answer arrived "
            f"({_cause(exc, endpoint)}). Is "
            f"{endpoint.display_url} {wire.described}?"
        )
    cause = _cause(exc, endpoint)
    return ProtocolError(f"error talking to {where}: {type(exc).__name__}: {cause}")


def safe_cause(exc: BaseException, endpoint: Endpoint) -> BaseException | None:
    """What to chain under our error for ``exc``: ``exc`` itself, or, when it holds an httpx
    request (whose headers carry the key) or shows a secret anywhere (a message, a repr, a local
    variable of its traceback's frames, which ``%xmode Verbose`` prints), stand-ins of its chain's
    types with their redacted words and no tracebacks."""
    chain = list(exception_chain(exc))
    holds_request = any(isinstance(link, httpx.HTTPError) for link in chain)
    if not holds_request and not endpoint.redactor.exposed_by(exc):
        return exc
    cause: BaseException | None = None
    for link in reversed(chain[:_STAND_INS]):
        stand_in = _stand_in(link, endpoint)
        stand_in.__cause__, stand_in.__suppress_context__ = cause, True
        cause = stand_in
    return cause


_STAND_INS = 6  # links of a chain kept as stand-ins: httpx, httpcore, anyio, the OS error


def _stand_in(exc: BaseException, endpoint: Endpoint) -> BaseException:
    words = endpoint.redact(str(exc))
    try:
        stand_in = type(exc)(words)  # httpx's, httpcore's and OSError's take their words alone
        if str(stand_in) == words:
            return stand_in
    except Exception:
        pass
    return Exception(f"{type(exc).__module__}.{type(exc).__qualname__}: {words}")


def scrubbed(error: JupyterStreamError, endpoint: Endpoint) -> JupyterStreamError:
    """``error`` as it may be raised to the user: when a secret shows in its traceback's
    frames (a server's echo in a local variable) or its chain, without them."""
    cause = error.__cause__ or error.__context__
    if cause is not None:
        error.__cause__ = safe_cause(cause, endpoint)
        error.__suppress_context__ = True
    if endpoint.redactor.exposed_by(error):
        error.message = endpoint.redact(error.message)
        error.args = (error.message,)
        error.__traceback__ = None
    return error


def _root_os_error(exc: BaseException) -> OSError | None:
    """The innermost OSError behind ``exc`` (httpx wraps httpcore, which wraps anyio's
    "All connection attempts failed", which wraps the socket's own error)."""
    errors = [link for link in exception_chain(exc) if isinstance(link, OSError)]
    return errors[-1] if errors else None


def _cause(exc: BaseException, endpoint: Endpoint) -> str:
    """A short, key-free account of what ``exc`` says."""
    text = str(exc)
    if not text and exc.__cause__ is not None:
        text = str(exc.__cause__)
    return excerpt(endpoint.redact(text), 120)


class Body:
    """A response with a 2xx status, as the stream reads it."""

    __slots__ = ("_response",)

    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def content_type(self) -> str:
        kind: str = self._response.headers.get("content-type", "")
        return kind

    def socket(self) -> socket.socket | None:
        """The connection's socket, to shut down from another thread (None if not known)."""
        stream = self._response.extensions.get("network_stream")
        return None if stream is None else stream.get_extra_info("socket")

    def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive; pass the iterator to :meth:`close` when done."""
        return self._response.aiter_bytes()

    async def close(self, chunks: AsyncIterator[bytes]) -> None:
        await _end_iteration(self._response, chunks)

    async def text(self, limit: int = ERROR_BODY_LIMIT) -> str:
        return await _read_text(self._response, limit)


async def stream_request(
    make: Callable[[bool], WireRequest],
    read: Callable[[Body], Awaitable[T]],
    *,
    endpoint: Endpoint,
    wire: WireFormat,
    model: str,
    connect_timeout: float | None,
    idle_timeout: float | None,
    max_retries: int,
    body_started: Callable[[], bool],
) -> T:
    """Send ``make(fallback)`` and hand a 2xx response to ``read``; an error status becomes our
    error. Retried on connection errors, 429 and 5xx while ``body_started()`` is False, bounded
    by ``max_retries`` and honouring Retry-After; once, plainer, when the wire format says so."""
    register_for_logs(endpoint.redactor.secrets)  # httpx's log lines show the URL and its query
    client = await get_client()
    timeout = httpx.Timeout(
        connect=connect_timeout, read=idle_timeout, write=connect_timeout, pool=None
    )
    fallback = False
    attempt = 0
    while True:
        request = make(fallback)
        delay: float | None = None
        try:
            async with client.stream(
                "POST", request.url, json=request.body, headers=request.headers, timeout=timeout
            ) as response:
                if response.status_code < 300:
                    return await read(Body(response))
                body = await _read_text(response, ERROR_BODY_LIMIT)
                if not fallback and wire.fallback(response.status_code, body):
                    fallback = True  # an older server: retry once, plainer
                    continue
                error = status_error(endpoint, response, body, model, wire)
                delay = _retry_delay(error, attempt, max_retries)
                if delay is None:
                    raise error
        except (httpx.ConnectTimeout, httpx.NetworkError, httpx.RemoteProtocolError):
            # Before the first body byte the request may be retried safely (a refused
            # connection, or a pooled one the server had closed); never after.
            if attempt >= max_retries or body_started():
                raise
            delay = _backoff(attempt)
        attempt += 1
        await asyncio.sleep(delay)


async def fetch_text(
    request: WireRequest,
    endpoint: Endpoint,
    wire: WireFormat,
    *,
    timeout: float,  # noqa: ASYNC109 - httpx's own per-request timeout
) -> str:
    """GET ``request``: the body's text, or our error for a failure or an error status."""
    register_for_logs(endpoint.redactor.secrets)  # httpx's log lines show the URL and its query
    client = await get_client()
    try:  # the headers inline: a verbose traceback prints a frame's variables
        response = await client.get(request.url, headers=request.headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise translate_error(exc, endpoint, wire, chunks=0) from safe_cause(exc, endpoint)
    if response.status_code >= 400:
        raise status_error(endpoint, response, response.text, "", wire)
    return response.text


async def _read_text(response: httpx.Response, limit: int) -> str:
    data = bytearray()
    pieces = response.aiter_bytes()
    try:
        async for piece in pieces:
            data += piece
            if len(data) >= limit:
                break
    finally:
        await _end_iteration(response, pieces)
    return data[:limit].decode("utf-8", "replace")


async def _end_iteration(response: httpx.Response, pieces: AsyncIterator[bytes]) -> None:
    """Close the response, then finish its byte iterator, which may have been left mid-body.
    Its async generators (httpx's and httpcore's, one inside the other) end only when an
    exception passes through them; dropped, they would be closed one by one by the loop's
    finalizer tasks, after the stream was released. A read of a closed response fails."""
    await response.aclose()  # first: the server sees the disconnect now
    with anyio.CancelScope() as scope:
        scope.cancel()  # and should a read wait all the same, it is cancelled
        try:
            async for _ in pieces:
                pass
        except Exception:  # the response broke or was closed: the iterator ended either way
            pass


def _backoff(attempt: int) -> float:
    return min(8.0, 0.5 * 2.0**attempt) * (1 + random.random() / 4)


def _retry_delay(error: HTTPStatusError, attempt: int, max_retries: int) -> float | None:
    """Seconds to wait before retrying after an error status, or None for no retry."""
    retryable = isinstance(error, RateLimitError) or error.status_code >= 500
    if not retryable or attempt >= max_retries:
        return None
    if error.retry_after is not None:
        return error.retry_after if error.retry_after <= MAX_RETRY_AFTER else None
    return _backoff(attempt)
