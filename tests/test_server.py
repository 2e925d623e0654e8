"""The OpenAI-compatible server, served by uvicorn on 127.0.0.1 (real sockets, real clients)."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import select
import socket
import time
from collections.abc import Callable

import httpx
import openai
import pytest
from conftest import wait_for_exchanges
from starlette.testclient import TestClient

from jupyter_stream import (
    APIError,
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    SSEDecoder,
    StopReason,
    astream_chat,
    list_models,
    stream_chat,
)
from jupyter_stream.server import BackgroundServer, ServerConfig, _app, _demo
from jupyter_stream.server._models import answer_tokens, demo_answer, tokenize

WAIT = 10  # seconds: a guard against hangs, never a timing assertion
MakeServer = Callable[..., BackgroundServer]


def root(server: BackgroundServer) -> str:
    return f"http://127.0.0.1:{server.port}"


async def test_demo_streams_its_whole_answer_exactly(demo_server: BackgroundServer) -> None:
    stream = astream_chat("What is SSE?", model="demo", base_url=demo_server.base_url)
    assert "".join([delta async for delta in stream]) == demo_answer("What is SSE?")
    assert stream.model == "demo"
    assert stream.stop_reason is StopReason.COMPLETED
    assert stream.reply.usage is not None
    assert stream.reply.usage["completion_tokens"] == len(tokenize(demo_answer("What is SSE?")))


def test_max_tokens_cuts_the_answer_or_makes_it_longer(demo_server: BackgroundServer) -> None:
    for max_tokens in (7, 5000):
        stream = stream_chat(
            "hi", model="demo", base_url=demo_server.base_url, max_tokens=max_tokens
        )
        text = "".join(stream)
        assert stream.stop_reason is StopReason.LENGTH
        assert stream.stats.tokens == max_tokens
        assert len(tokenize(text)) >= max_tokens * 0.95  # a few tokens may merge when re-cut
    with pytest.raises(Exception, match="at most 100000"):
        list(stream_chat("hi", model="demo", base_url=demo_server.base_url, max_tokens=100_001))


def test_the_stream_is_framed_for_proxies(demo_server: BackgroundServer) -> None:
    body = {"model": "echo", "messages": [{"role": "user", "content": "a\n\nb"}], "stream": True}
    with httpx.stream("POST", f"{demo_server.base_url}/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        raw = response.read()
    events = raw.split(b"\n\n")
    assert events[-2:] == [b"data: [DONE]", b""]
    assert all(event.startswith(b"data: {") for event in events[:-2])
    assert "".join(
        json.loads(event[6:])["choices"][0]["delta"].get("content", "") for event in events[:-2]
    ) == ("a\n\nb")


def test_the_openai_sdk_receives_chunks_as_they_are_sent(make_server: MakeServer) -> None:
    server = make_server(tokens_per_second=20, first_token_delay=0)
    state = server.app.state.server
    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=10,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, sent_at_first, usage = [], None, None
    with stream:
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            if chunk.choices and chunk.choices[0].delta.content:
                if sent_at_first is None:
                    sent_at_first = next(iter(state.exchanges)).log["tokens"]
                pieces.append(chunk.choices[0].delta.content)
    assert len(pieces) == 10
    assert sent_at_first is not None and sent_at_first < 10, "the first chunk waited for the last"
    assert usage is not None and usage.completion_tokens == 10
    client.close()


def test_the_openai_sdk_gets_whole_answers_and_the_model_list(
    demo_server: BackgroundServer,
) -> None:
    with openai.OpenAI(base_url=demo_server.base_url, api_key="unused", max_retries=0) as client:
        completion = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "<b>bold</b> ünïcode"}]
        )
        assert completion.choices[0].message.content == "<b>bold</b> ünïcode"
        assert completion.choices[0].finish_reason == "stop"
        assert sorted(model.id for model in client.models.list()) == ["demo", "echo"]
    assert list_models(base_url=demo_server.base_url) == ["demo", "echo"]


def test_the_plain_stream_is_framed_as_sse(demo_server: BackgroundServer) -> None:
    content = "Hello,\nworld: ünï 🚀"  # echo's answer: the content, a newline in one token
    decoder = SSEDecoder()
    events = []
    params = {"content": content, "model": "echo"}
    with httpx.stream("GET", f"{root(demo_server)}/stream", params=params) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for part in r.iter_raw():
            events += decoder.feed(part)
    events += decoder.flush()
    tokens = [event for event in events if event.event == "message"]
    assert "".join(event.data for event in tokens) == content
    assert [event.id for event in tokens] == [str(i) for i in range(len(tokens))]
    assert (events[-1].event, events[-1].data) == ("done", "[DONE]")
    url, headers = f"{root(demo_server)}/stream", {"Last-Event-ID": "2"}
    with httpx.stream("GET", url, params=params, headers=headers) as r:
        resumed = [e for e in SSEDecoder().feed(r.read()) if e.event == "message"]
    assert [event.data for event in resumed] == [event.data for event in tokens[3:]]


@pytest.mark.parametrize(
    ("body", "status", "said"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"model": "demo"}', 400, "messages is missing"),
        (b'{"model": "demo", "messages": []}', 400, "messages is missing"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', 400, "model is missing"),
        (b'{"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}', 404, "gpt-9"),
    ],
)
def test_bad_requests_get_openai_shaped_errors(
    demo_server: BackgroundServer, body: bytes, status: int, said: str
) -> None:
    response = httpx.post(f"{demo_server.base_url}/chat/completions", content=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert said in error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_an_unknown_model_names_itself_in_the_client_error(demo_server: BackgroundServer) -> None:
    with pytest.raises(NotFoundError, match="gpt-9"):
        list(stream_chat("hi", model="gpt-9", base_url=demo_server.base_url))


def test_wrong_routes_and_methods_answer_in_json(demo_server: BackgroundServer) -> None:
    missing = httpx.post(f"{root(demo_server)}/chat/completion")
    assert missing.status_code == 404 and "/v1" in missing.json()["error"]["message"]
    wrong = httpx.get(f"{demo_server.base_url}/chat/completions")
    assert wrong.status_code == 405 and "GET" in wrong.json()["error"]["message"]
    health = httpx.get(f"{root(demo_server)}/health").json()
    assert health["status"] == "ok" and health["mode"] == "demo"


def test_a_key_protected_server_refuses_others(make_server: MakeServer) -> None:
    server = make_server(api_key="s3cret-key", tokens_per_second=0)
    refused = httpx.post(f"{server.base_url}/chat/completions", json={})
    assert refused.status_code == 401 and "s3cret" not in refused.text
    with pytest.raises(AuthenticationError) as caught:
        list(stream_chat("hi", model="demo", base_url=server.base_url, api_key="wrong-key"))
    assert "wrong-key" not in str(caught.value)
    stream = stream_chat(
        "hi", model="demo", base_url=server.base_url, api_key="s3cret-key", max_tokens=3
    )
    assert len(list(stream)) == 3
    assert httpx.get(f"{root(server)}/health").status_code == 200  # health needs no key


async def test_a_closed_stream_frees_its_slot_at_once(make_server: MakeServer) -> None:
    server = make_server(max_streams=1, tokens_per_second=50, first_token_delay=0)
    first = astream_chat("hi", model="demo", base_url=server.base_url, max_retries=0)
    await first.__anext__()
    with pytest.raises(RateLimitError) as caught:
        await astream_chat("hi", model="demo", base_url=server.base_url, max_retries=0).__anext__()
    assert caught.value.retry_after == 1
    await first.aclose()
    wait_for_exchanges(server, lambda state: not state.exchanges)
    assert server.app.state.server.ended[-1]["end"] == "client disconnected"
    third = astream_chat("hi", model="demo", base_url=server.base_url, max_retries=0, max_tokens=2)
    assert len([delta async for delta in third]) == 2


def test_the_body_is_capped(make_server: MakeServer) -> None:
    server = make_server(max_body_bytes=1000)
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": "demo", "messages": [{"role": "user", "content": "x" * 2000}]},
    )
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["error"]["message"]


def test_a_client_that_never_sends_its_body_gets_408(make_server: MakeServer) -> None:
    server = make_server(body_timeout=0.2)
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{"
        )
        head = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 408")


def test_a_client_that_stops_reading_loses_its_stream(make_server: MakeServer) -> None:
    server = make_server(stall_timeout=0.3, tokens_per_second=0, first_token_delay=0)
    body = json.dumps(
        {
            "model": "demo",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "max_tokens": 100_000,
        }
    ).encode()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        wait_for_exchanges(server, lambda state: state.ended)  # and never read a byte
    log = server.app.state.server.ended[-1]
    assert log["end"] == "client read nothing for 0.3 s"
    assert 0 < log["tokens"] < 100_000


def test_the_server_refuses_new_streams_when_full_and_says_when_to_retry(
    make_server: MakeServer,
) -> None:
    server = make_server(max_streams=2, tokens_per_second=50, first_token_delay=0)
    streams = [
        stream_chat("hi", model="demo", base_url=server.base_url, max_retries=0) for _ in range(2)
    ]
    for stream in streams:
        next(stream)
    full = httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert full.status_code == 429 and full.headers["retry-after"] == "1"
    assert full.json()["error"]["code"] == "too_many_streams"
    for stream in streams:
        stream.close()


def test_a_failure_before_the_answer_is_a_500_and_gives_its_slot_back(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = make_server(max_streams=1)

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(_demo._Pace, "__init__", broken)
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    for _ in range(2):  # the second would be a 429 if the first kept its slot
        response = httpx.post(f"{server.base_url}/chat/completions", json=body)
        assert response.status_code == 500
        assert "RuntimeError" in response.json()["error"]["message"]
    wait_for_exchanges(server, lambda state: state.slots == 0)


@pytest.mark.parametrize("tokens_per_second", [20, 0])  # one token a write, or many
def test_a_failure_mid_answer_is_an_error_event_after_the_text(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch, tokens_per_second: float
) -> None:
    server = make_server(tokens_per_second=tokens_per_second, first_token_delay=0)
    content = _demo._Chunks.content

    def fails_at_the_third_token(self: _demo._Chunks, token: str) -> bytes:
        self.count = getattr(self, "count", 0) + 1
        if self.count == 3:
            raise RuntimeError("boom")
        return content(self, token)

    monkeypatch.setattr(_demo._Chunks, "content", fails_at_the_third_token)
    stream = stream_chat("hi", model="demo", base_url=server.base_url, max_retries=0)
    with pytest.raises(APIError, match=r"the server ended this stream: server error \(Runtime"):
        list(stream)
    assert stream.text == "# Hi"
    wait_for_exchanges(server, lambda state: state.slots == 0)


def test_lone_surrogates_are_refused(demo_server: BackgroundServer) -> None:
    body = b'{"model": "echo", "messages": [{"role": "user", "content": "\\ud800"}]}'
    response = httpx.post(f"{demo_server.base_url}/chat/completions", content=body)
    assert response.status_code == 400 and "surrogate" in response.text


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "rebound.attacker.example"}, 403),
        ({"Origin": "https://attacker.example"}, 403),
        ({"Origin": "null"}, 403),
        ({"Origin": "http://localhost:8888"}, 200),
        ({"Host": "localhost"}, 200),
    ],
)
def test_a_server_without_a_key_answers_only_this_machine(
    demo_server: BackgroundServer, headers: dict[str, str], status: int
) -> None:
    response = httpx.get(f"{demo_server.base_url}/models", headers=headers)
    assert response.status_code == status


def test_a_server_with_a_key_answers_any_name(make_server: MakeServer) -> None:
    server = make_server(api_key="k3y")
    headers = {"Host": "box.example", "Authorization": "Bearer k3y"}
    assert httpx.get(f"{server.base_url}/models", headers=headers).status_code == 200


def test_stopping_the_server_ends_open_streams_and_says_why(make_server: MakeServer) -> None:
    server = make_server(tokens_per_second=20, first_token_delay=0)
    stream = stream_chat("hi", model="demo", base_url=server.base_url, max_retries=0)
    assert next(stream) == "#"
    server.stop()
    assert not server.alive
    with pytest.raises(APIError, match="the server ended this stream: server shutting down"):
        list(stream)


def test_the_plain_stream_turns_any_line_end_into_a_newline(demo_server: BackgroundServer) -> None:
    url = f"{root(demo_server)}/stream"
    with httpx.stream("GET", url, params={"content": "a\rb\r\nc\nd", "model": "echo"}) as response:
        events = SSEDecoder().feed(response.read())
    assert "".join(e.data for e in events if e.event == "message") == "a\nb\nc\nd"


def test_bad_settings_are_refused() -> None:
    for name in ("stall_timeout", "body_timeout", "header_timeout", "idle_timeout",
                 "max_body_bytes", "max_streams"):  # fmt: skip
        with pytest.raises(ValueError, match=name):
            ServerConfig(**{name: 0})


def test_log_lines_cannot_be_forged(
    demo_server: BackgroundServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jupyter_stream.server")
    httpx.get(f"{root(demo_server)}/%0a12:00:00 127.0.0.1:1 FORGED")
    httpx.get(f"{root(demo_server)}/health")  # logged after the first: a marker that it is done
    wait_for_log = [r.getMessage() for r in caplog.records if "/health" in r.getMessage()]
    assert wait_for_log
    messages = [r.getMessage() for r in caplog.records if "FORGED" in r.getMessage()]
    assert messages and all("\n" not in message for message in messages)


def test_a_slow_reader_gets_every_token_in_order(make_server: MakeServer) -> None:
    server = make_server(tokens_per_second=0, first_token_delay=0)
    n = 20_000  # about 4.6 MB: more than the socket buffers hold
    body = json.dumps(
        {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "stream": True,
         "max_tokens": n}
    ).encode()  # fmt: skip
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.settimeout(WAIT)
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        # Read nothing until the server's writes wait for us, then read it all.
        wait_for_exchanges(server, lambda state: any(e.sending for e in state.exchanges))
        received = bytearray()
        while not received.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n"):
            data = sock.recv(1 << 20)
            assert data, "the server closed the stream early"
            received += data
    decoder, events = SSEDecoder(), []
    chunked = bytes(received).partition(b"\r\n\r\n")[2]
    while chunked:
        size, _, rest = chunked.partition(b"\r\n")
        events += decoder.feed(rest[: int(size, 16)])
        chunked = rest[int(size, 16) + 2 :]
    deltas = [json.loads(e.data)["choices"] for e in events[:-1]]
    text = "".join(c[0]["delta"].get("content", "") for c in deltas if c)
    expected = itertools.islice(answer_tokens("demo", [{"role": "user", "content": "hi"}],
                                              endless=True), n)  # fmt: skip
    assert text == "".join(expected)


def test_an_app_can_be_served_again_on_a_new_loop() -> None:
    app = _app.create_app(ServerConfig(tokens_per_second=0, first_token_delay=0))
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "stream": True,
            "max_tokens": 3}  # fmt: skip
    for _ in range(2):  # each TestClient runs the app's lifespan on a loop of its own
        with TestClient(app, base_url="http://127.0.0.1") as client:
            response = client.post("/v1/chat/completions", json=body)
        assert response.text.count('"content":') == 4  # the role chunk's, and 3 tokens
        assert response.text.endswith("data: [DONE]\n\n")


# --- bad JSON and slow or idle connections: answered or closed, with one log line at most


def test_deep_json_is_a_400_and_one_log_line(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server()
    caplog.set_level(logging.INFO)
    deep = b'{"model": "demo", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = httpx.post(f"{server.base_url}/chat/completions", content=deep)
    assert response.status_code == 400
    assert "too deeply" in response.json()["error"]["message"]
    httpx.get(f"{root(server)}/health")  # logged after the first: a marker that it is done
    lines = [r for r in caplog.records if r.name.startswith(("uvicorn", "jupyter_stream"))]
    assert [r.getMessage().split('"')[1] for r in lines if '"' in r.getMessage()] == [
        "POST /v1/chat/completions",
        "GET /health",
    ]
    assert not [r for r in lines if r.levelno >= logging.WARNING or r.exc_info]


HI = b'"messages": [{"role": "user", "content": "hi"}]'


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"model": "\\ud800", ' + HI + b"}", "model holds"),
        (b'{"model": "echo", "user": "\\uDFFF", ' + HI + b"}", "user holds"),
        (b'{"model": "echo", "\\ud800": 1, ' + HI + b"}", "\\ud800 holds"),
        (b'{"model": "\xed\xa0\x80", ' + HI + b"}", "UTF-8"),  # one, encoded
        (b'{"model": "echo", "messages": [{"role": "user", "content": "\xed\xa0\x80"}]}', "UTF-8"),
    ],
)
def test_a_lone_surrogate_anywhere_is_a_400_and_one_log_line(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture, body: bytes, said: str
) -> None:
    server = make_server()
    caplog.set_level(logging.INFO)
    response = httpx.post(f"{server.base_url}/chat/completions", content=body)
    assert response.status_code == 400 and said in response.json()["error"]["message"]
    httpx.get(f"{root(server)}/health")
    lines = [r for r in caplog.records if r.name.startswith(("uvicorn", "jupyter_stream"))]
    assert sum("POST /v1/chat/completions" in r.getMessage() for r in lines) == 1
    assert not [r for r in lines if r.levelno >= logging.WARNING or r.exc_info]
    pair = '{"model": "echo", "messages": [{"role": "user", "content": "\\ud83d\\ude80"}]}'
    answer = httpx.post(f"{server.base_url}/chat/completions", content=pair.encode())
    assert answer.json()["choices"][0]["message"]["content"] == "🚀"  # a pair is text


@pytest.fixture(params=["httptools", "h11"])
def http_protocol(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Serve with uvicorn's httptools protocol (its default here) or its h11 one."""
    if request.param == "h11":
        from uvicorn.protocols.http import auto
        from uvicorn.protocols.http.h11_impl import H11Protocol

        monkeypatch.setattr(auto, "AutoHTTPProtocol", H11Protocol)
    return str(request.param)


def closed_by_server(socks: list[socket.socket], trickle: set[socket.socket]) -> set[int]:
    """Wait (at most WAIT s) until the server closes each socket; the sockets in ``trickle``
    send one more byte of their request head every 0.1 s meanwhile. The indexes closed."""
    closed: set[int] = set()
    deadline = time.monotonic() + WAIT
    while len(closed) < len(socks) and time.monotonic() < deadline:
        open_ = [s for i, s in enumerate(socks) if i not in closed]
        readable, _, _ = select.select(open_, [], [], 0.1)
        for sock in readable:
            try:
                if sock.recv(65536) == b"":
                    closed.add(socks.index(sock))
            except ConnectionError:
                closed.add(socks.index(sock))
        for sock in trickle:
            if socks.index(sock) not in closed:
                with contextlib.suppress(OSError):  # it may have been closed just now
                    sock.send(b"X")
    return closed


def test_idle_and_slowloris_connections_are_closed_before_any_key_is_checked(
    make_server: MakeServer, http_protocol: str
) -> None:
    server = make_server(api_key="k3y", header_timeout=0.5, idle_timeout=0.5)
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) for _ in range(40)]
    try:
        for sock in socks[10:20]:  # half a request line, then nothing
            sock.sendall(b"POST /v1/chat/comp")
        for sock in socks[20:]:  # a head a byte at a time, for ever (slowloris)
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ")
        closed = closed_by_server(socks, set(socks[20:]))
        assert closed == set(range(len(socks))), f"{len(socks) - len(closed)} left open"
    finally:
        for sock in socks:
            sock.close()
    headers = {"Authorization": "Bearer k3y"}
    assert httpx.get(f"{server.base_url}/models", headers=headers).status_code == 200


def test_a_connection_idle_after_its_answer_is_closed_and_a_long_answer_is_not_cut(
    make_server: MakeServer, http_protocol: str
) -> None:
    server = make_server(header_timeout=0.3, idle_timeout=0.3, tokens_per_second=20)
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert closed_by_server([sock], set()) == {0}
    # 20 tokens at 20 a second: the stream outlasts both timeouts, which do not apply to it
    stream = stream_chat("hi", model="demo", base_url=server.base_url, max_tokens=20)
    assert len(list(stream)) == 20 and stream.stop_reason is StopReason.LENGTH
