"""Canary credentials (an API key, a password in the base URL's user info, a key in its query, a
relay's upstream key) go through every error path a user can meet: Python async and sync, the
CLI, %%chat, ChatPanel and %chat config in a real kernel, the relay, %xmode Verbose tracebacks,
and logging at DEBUG. Every output, widget message, log line and the saved notebook is then
searched for each canary as it is, URL-encoded, and (user info) as the Basic base64."""

from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from conftest import ENV_VARS
from IPython.core.ultratb import VerboseTB
from scripted_server import Request, Response, ScriptedServer, chunk, complete

from jupyter_stream import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    ConnectError,
    JupyterStreamError,
    ProtocolError,
    ServerError,
    _secrets,
    alist_models,
    astream_chat,
    list_models,
    stream_chat,
)
from jupyter_stream._secrets import MIN_PREFIX, Redactor
from jupyter_stream._target import Endpoint
from jupyter_stream.server import BackgroundServer

pytestmark = pytest.mark.timeout(180)

KEY = "sk-canary-key-5f1e9d27c3b84a06"
USER = "canary-user"
PASSWORD = "pw/canary+7Qx93Lm"
QUERY_KEY = "qk-canary-31b7e0a4d9"
UPSTREAM_KEY = "sk-canary-upstream-8c2f4e61"
UPSTREAM_PASSWORD = "up-canary-pass-d04a71"

CANARIES = {
    "the API key": KEY,
    "the URL's password": PASSWORD,
    "the URL's user": USER,
    "the query key": QUERY_KEY,
    "the upstream key": UPSTREAM_KEY,
    "the upstream's URL password": UPSTREAM_PASSWORD,
    "the Basic credentials": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
    "the upstream's Basic credentials": base64.b64encode(
        f"relay:{UPSTREAM_PASSWORD}".encode()
    ).decode(),
}
FORMS = {
    f"{name} ({form})": text
    for name, secret in CANARIES.items()
    for form, text in (("raw", secret), ("URL-encoded", quote(secret, safe="")))
}

PROMPTS = ("401", "500", "midstream", "json", "content")


def escaped(text: str) -> str:
    """``text`` as a JSON string's content with every character escaped."""
    return "".join(f"\\u{ord(char):04x}" for char in text)


async def echoing(request: Request, response: Response) -> None:
    """A server that echoes what it was sent (the Authorization header, the path with its
    query) back in every place a server can: an error body, a page, an event, an answer."""
    auth = request.headers.get("authorization", "")
    said = f"{auth} at {request.path}"
    if request.path.startswith("/v1/models"):
        await response.whole(500, f"<html><title>{said}</title></html>", "text/html")
        return
    prompt = request.json()["messages"][-1]["content"]
    if prompt == "401":
        body = '{"error": {"message": "refused ' + escaped(said) + " " + said + '"}}'
        await response.whole(401, body)
    elif prompt == "500":
        await response.whole(500, f"<html><title>{said}</title><p>{quote(said)}</p>", "text/html")
    elif prompt == "midstream":
        await response.event(chunk("kept"))
        await response.send('data: {"error": {"message": "' + escaped(said) + '"}}\n\n')
        await response.end()
    elif prompt == "json":
        await response.whole(200, json.dumps({"echo": said}))
    else:
        await complete(response, ["you sent ", said])


class Outputs:
    """Everything a user or a log could see, by where it was seen."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def add(self, where: str, text: str) -> None:
        self.seen.append((where, text))

    def error(self, where: str, exc: BaseException) -> None:
        self.add(where, "".join(traceback.format_exception(exc)) + repr(exc))
        self.add(f"{where} (%xmode Verbose)", verbose(exc))
        body = getattr(exc, "body", None)
        if body:
            self.add(f"{where} (.body)", body)

    def assert_clean(self) -> None:
        leaks = [
            f"{name} in {where}" for where, text in self.seen for name, form in FORMS.items()
            if form in text
        ]  # fmt: skip
        assert not leaks, "\n".join(leaks)


def verbose(exc: BaseException) -> str:
    """The traceback as ``%xmode Verbose`` shows it: every frame with its local variables."""
    return VerboseTB(theme_name="nocolor").text(type(exc), exc, exc.__traceback__)


@pytest.fixture
def outputs() -> Iterator[Outputs]:
    found = Outputs()
    yield found
    found.assert_clean()


@pytest.fixture
def debug_logs(outputs: Outputs) -> Iterator[io.StringIO]:
    """Every log record of this process at DEBUG, httpx's, httpcore's and uvicorn's too."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    names = ["", "httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access"]
    names.append("jupyter_stream")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        outputs.add("the DEBUG log", stream.getvalue())


def with_credentials(url: str, user: str = USER, password: str = PASSWORD) -> str:
    """``url`` with user info and a query key (and a query value that is no secret)."""
    url = url.replace("http://", f"http://{user}:{quote(password, safe='')}@")
    return f"{url}?api-version=2024-10&key={QUERY_KEY}"


BAD_URLS = {
    "no scheme": f"{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:99999/v1?key={QUERY_KEY}",
    "bad port": f"http://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:99999/v1?key={QUERY_KEY}",
    "key for a port": f"http://me:{quote(PASSWORD, safe='')}/v1?key={QUERY_KEY}",
    "ftp": f"ftp://{USER}:{PASSWORD}@127.0.0.1/v1?key={QUERY_KEY}",
}


# -- Python ---------------------------------------------------------------------------------------


async def test_python_errors_never_show_a_credential(
    server: ScriptedServer,
    outputs: Outputs,
    debug_logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.handler = echoing
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    for name, url in BAD_URLS.items():  # from the environment: arguments show in their caller
        monkeypatch.setenv("JUPYTER_STREAM_BASE_URL", url)
        for make in (astream_chat, stream_chat):
            with pytest.raises(ConfigurationError) as caught:
                make("hi", model="m")
            outputs.error(f"{make.__name__} with a base URL with {name}", caught.value)
        with pytest.raises(ConfigurationError) as caught:
            list_models()
        outputs.error(f"list_models with a base URL with {name}", caught.value)
    monkeypatch.delenv("JUPYTER_STREAM_BASE_URL")

    expected = {
        "401": AuthenticationError,
        "500": ServerError,
        "midstream": APIError,
        "json": ProtocolError,
    }
    refused = "http://127.0.0.1:1/v1"
    for key in (KEY, None):  # Bearer, then the URL's user info as Basic auth
        if key:
            monkeypatch.setenv("OPENAI_API_KEY", key)
        else:
            monkeypatch.delenv("OPENAI_API_KEY")
        for prompt, error in expected.items():
            where = f"{prompt} ({'key' if key else 'user info'})"
            stream = astream_chat(prompt, model="m", base_url=with_credentials(server.url))
            with pytest.raises(error) as caught:
                async for _ in stream:
                    pass
            outputs.error(f"astream_chat, {where}", caught.value)
            outputs.add(f"astream_chat repr, {where}", repr(stream) + repr(stream.reply))
            with pytest.raises(error) as caught_sync:
                list(stream_chat(prompt, model="m", base_url=with_credentials(server.url)))
            outputs.error(f"stream_chat, {where}", caught_sync.value)
        sent = server.requests[-1]
        assert sent.path.endswith(f"?api-version=2024-10&key={QUERY_KEY}")  # the query stays
        basic = "Basic " + CANARIES["the Basic credentials"]
        assert sent.headers["authorization"] == (f"Bearer {KEY}" if key else basic)
        monkeypatch.setenv("JUPYTER_STREAM_BASE_URL", with_credentials(server.url))
        with pytest.raises(ServerError) as caught_models:
            list_models()
        outputs.error("list_models, 500", caught_models.value)
        monkeypatch.setenv("JUPYTER_STREAM_BASE_URL", with_credentials(refused))
        with pytest.raises(ConnectError) as refused_error:
            async for _ in astream_chat("hi", model="m"):
                pass
        outputs.error("astream_chat, connection refused", refused_error.value)
        assert "127.0.0.1:1" in str(refused_error.value)
        assert refused_error.value.__cause__ is not None  # a stand-in, without the request
        assert getattr(refused_error.value.__cause__, "_request", None) is None

    assert "***" in debug_logs.getvalue()  # httpx's INFO line, its query key redacted
    assert "api-version=2024-10" in debug_logs.getvalue()


def test_a_verbose_traceback_of_a_stream_error_shows_no_header(
    server: ScriptedServer, outputs: Outputs
) -> None:
    """The frames of httpx that a connection error passes through hold the request headers in
    their locals; %xmode Verbose prints them. Our error's cause is a stand-in without them."""
    stream = stream_chat("hi", model="m", base_url="http://127.0.0.1:1/v1", api_key=KEY)
    with pytest.raises(ConnectError) as caught:
        list(stream)
    shown = verbose(caught.value)
    outputs.add("VerboseTB of a refused connection", shown)
    assert "All connection attempts failed" in shown  # the cause, in words
    assert "ConnectionRefusedError" in shown


def test_an_endpoint_is_a_value_the_layer_that_sends_registers_its_secrets_for_logs(
    server: ScriptedServer,
) -> None:
    never_sent = "sk-never-sent-7d41c09b"
    before = set(_secrets._logged)
    Endpoint(f"{server.url}?key=qk-never-sent-5e2a", "a test", never_sent, "a test")
    assert set(_secrets._logged) == before  # building one has no effect on the process
    sent = "sk-sent-once-93be17a2"
    assert "".join(stream_chat("hi", model="m", base_url=server.url, api_key=sent)) != ""
    assert sent in _secrets._logged and never_sent not in _secrets._logged


# -- a key echoed where a message quotes the server's text cut short -----------------------------

CUT_KEY = "sk-Q7vX9zK2wP4jR8mT3nB6yH1cF5gL0dS7aE2uI9oW4xZ6qVt3"  # 51 characters, like OpenAI's
# What the server sends (the echo in the middle) and which cut its words meet: _shown()'s 80
# characters for a value quoted as JSON, excerpt()'s 200 for the rest.
CUTS = {
    "a mid-stream error event whose message is an object": 80,
    "a mid-stream error event whose message is text": 200,
    "a content delta of the wrong type": 80,
    "a model name of the wrong type (a note)": 80,
    "an event whose data is not JSON": 200,
    "an event whose data is nested too deeply": 200,
    "a body that is no event stream": 200,
    "a JSON body that is no answer": 200,
    "a model list that is no list": 200,
    "a model list with a model without a name": 200,
}
WRAPPING = 16  # at most this many characters stand before the echo in the text that is cut


async def echoing_cut(request: Request, response: Response) -> None:
    """A server that echoes ``CUT_KEY`` after ``pad`` characters, and much after it, in the
    place ``case`` (both from the base URL's query) names."""
    query = dict(pair.split("=") for pair in request.path.partition("?")[2].split("&"))
    case, pad = CUTS_BY_ID[query["case"]], int(query["pad"])
    echo = "x" * pad + (escaped(CUT_KEY) if "escaped" in query else CUT_KEY) + " and more" * 40
    if case == "a model list that is no list":
        await response.whole(200, json.dumps({"nope": echo}))
        return
    if case == "a model list with a model without a name":
        await response.whole(200, json.dumps({"data": [{"name": echo}]}))
        return
    if case == "a mid-stream error event whose message is an object":
        await response.event({"error": {"message": {"detail": echo}}})
    elif case == "a mid-stream error event whose message is text":
        await response.event({"error": {"message": echo}})
    elif case == "a content delta of the wrong type":
        await response.event(chunk(content={"x": echo}))  # type: ignore[arg-type]
    elif case == "a model name of the wrong type (a note)":
        await response.event(chunk("kept", "stop") | {"model": {"x": echo}})
        await response.event("[DONE]")
    elif case == "an event whose data is not JSON":
        await response.send(f"data: {echo}\n\n")
    elif case == "an event whose data is nested too deeply":
        deep = "[" * 100_000 + "]" * 100_000
        await response.send('data: {"x": "' + echo + '", "y": ' + deep + "}\n\n")
    elif case == "a body that is no event stream":
        await response.start(200, "text/plain")
        await response.send(echo)
    else:
        await response.whole(200, json.dumps({"echo": echo}))
        return
    await response.end()


CUTS_BY_ID = {f"c{number}": case for number, case in enumerate(CUTS)}


def fragments(text: str, escape: bool = False) -> list[str]:
    """Every run of MIN_PREFIX characters of ``CUT_KEY`` that shows in ``text``."""
    runs = [CUT_KEY[i : i + MIN_PREFIX] for i in range(len(CUT_KEY) - MIN_PREFIX + 1)]
    if escape:  # a repr() or a second JSON encoding doubles each backslash
        text, runs = text.replace("\\\\", "\\"), [escaped(run) for run in runs]
    return [run for run in runs if run in text]


@pytest.mark.parametrize("escape", [False, True], ids=["as it is", "JSON-escaped"])
async def test_a_key_cut_short_in_a_quote_shows_none_of_its_characters(
    server: ScriptedServer, escape: bool
) -> None:
    """The cut of an excerpt may fall anywhere in an echoed key: at every place, the part of the
    key before the cut is hidden too (at most MIN_PREFIX - 1 of its characters show)."""
    server.handler = echoing_cut
    width = len(escaped(CUT_KEY[:MIN_PREFIX])) if escape else len(CUT_KEY)
    leaks, masked = [], set()
    for case_id, case in CUTS_BY_ID.items():
        limit = CUTS[case]
        for pad in range(max(0, limit - width - WRAPPING - 2), limit + 1):
            query = f"case={case_id}&pad={pad}" + ("&escaped=1" if escape else "")
            base_url = f"{server.url}?{query}"
            try:
                if "model list" in case:
                    await alist_models(base_url=base_url, api_key=CUT_KEY)
                    pytest.fail(f"{case}: no error")
                stream = astream_chat("hi", model="m", base_url=base_url, api_key=CUT_KEY)
                async for _ in stream:
                    pass
                assert "(a note)" in case, case  # every other case is an error
                assert stream.reply.notes, case
                shown = repr(stream.reply.notes)
            except JupyterStreamError as exc:
                shown = "".join(traceback.format_exception(exc)) + repr(exc)
            if fragments(shown, escape):
                leaks.append(f"{case}, {pad} characters before the key: {shown[-400:]}")
            if "***" in shown:
                masked.add(case)
    assert not leaks, "\n".join(leaks)
    assert masked == set(CUTS), set(CUTS) - masked  # each case quoted (a part of) the key


def test_a_cut_secret_is_hidden_only_where_the_cut_shows() -> None:
    redactor = Redactor([CUT_KEY])
    assert redactor.redact(f"said: {CUT_KEY[:30]}…") == "said: ***…"
    assert redactor.redact(f"said: '{CUT_KEY[:5]}…', and so on") == "said: '***…', and so on"
    assert redactor.redact(f"ends with {CUT_KEY[:MIN_PREFIX]}") == "ends with ***"
    assert redactor.redact(f"'{escaped(CUT_KEY[:6])}\\u00…'") == "'***…'"  # an escape cut in half
    assert redactor.redact(f"{quote(CUT_KEY[:9])}%2…") == "***…"
    assert redactor.redact(repr(escaped(CUT_KEY))) == "'***'"  # a repr() doubles backslashes
    assert redactor.redact(repr(escaped(CUT_KEY[:7]) + "\\u00…")) == "'***…'"
    assert redactor.redact_bytes(f"{CUT_KEY[:20]}…".encode()) == "***…".encode()
    assert redactor.found_in(f"x {CUT_KEY[:MIN_PREFIX]}…")
    # Not cut: a key's first characters followed by more text, or fewer than MIN_PREFIX of them.
    for kept in (f"{CUT_KEY[:12]} and more…", f"ends with {CUT_KEY[: MIN_PREFIX - 1]}…"):
        assert redactor.redact(kept) == kept
    # Nor a word that only begins like a password, unless it stands right before a cut.
    assert Redactor(["password-1234"]).redact("the password is wrong") == "the password is wrong"
    assert Redactor(["password-1234"]).redact("the passw…") == "the ***…"


# -- the relay ------------------------------------------------------------------------------------


def test_the_relay_never_hands_its_upstream_credentials_to_a_client(
    server: ScriptedServer,
    make_server: Callable[..., BackgroundServer],
    outputs: Outputs,
    debug_logs: io.StringIO,
) -> None:
    server.handler = echoing
    upstream = with_credentials(server.url, "relay", UPSTREAM_PASSWORD)
    for key in (UPSTREAM_KEY, None):
        relay = make_server(upstream=upstream, upstream_api_key=key)
        for prompt in PROMPTS:
            request = {"model": "m", "messages": [{"role": "user", "content": prompt}]}
            for streamed in (True, False):
                with httpx.Client(timeout=30) as client:
                    answer = client.post(
                        f"{relay.base_url}/chat/completions", json=request | {"stream": streamed}
                    )
                outputs.add(f"the relay's bytes for {prompt}", answer.text + str(answer.headers))
            try:
                text = "".join(stream_chat(prompt, model="m", base_url=relay.base_url))
            except JupyterStreamError as exc:
                outputs.error(f"a client of the relay, {prompt}", exc)
            else:
                outputs.add(f"a client of the relay, {prompt}", text)
                assert text.startswith("you sent ") and text.count("***") == 2, text
        with pytest.raises(ServerError) as caught:
            list_models(base_url=relay.base_url)
        outputs.error("a client of the relay, models", caught.value)
        for entry in relay.app.state.server.ended:
            outputs.add("the relay's exchange log", repr(entry))
        outputs.add("the relay's repr", repr(relay) + repr(relay.app.state.server.relay))
    assert server.requests[-1].headers["authorization"].startswith("Basic ")


# -- the CLI --------------------------------------------------------------------------------------


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in __import__("os").environ.items() if k not in ENV_VARS}
    return subprocess.run(
        [sys.executable, "-m", "jupyter_stream", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=base | env,
    )


def test_the_cli_never_shows_a_credential(server: ScriptedServer, outputs: Outputs) -> None:
    server.handler = echoing
    runs = {
        "chat, bad URL": cli("chat", "hi", JUPYTER_STREAM_BASE_URL=BAD_URLS["no scheme"]),
        "models, bad port": cli("models", JUPYTER_STREAM_BASE_URL=BAD_URLS["bad port"]),
        "chat, 401": cli(
            "chat",
            "401",
            "-m",
            "m",
            JUPYTER_STREAM_BASE_URL=with_credentials(server.url),
            OPENAI_API_KEY=KEY,
        ),
        "chat, midstream": cli(
            "chat", "midstream", "-m", "m", JUPYTER_STREAM_BASE_URL=with_credentials(server.url)
        ),
        "models, 500": cli("models", JUPYTER_STREAM_BASE_URL=with_credentials(server.url)),
        "serve, bad upstream": cli(
            "serve", "--port", "0", "--upstream", BAD_URLS["key for a port"]
        ),
    }
    for where, done in runs.items():
        outputs.add(f"the CLI's {where}", done.stdout + done.stderr)
        assert done.returncode != 0, where
        assert "jupyter-stream" in done.stderr, where


# -- a real kernel: %%chat, %chat config, ChatPanel, %xmode Verbose, the saved notebook ----------

NOTEBOOK = [
    "%load_ext jupyter_stream",
    "import logging, os, sys\n"
    "to_output = logging.StreamHandler(sys.stdout)\n"
    "for name in ('httpx', 'httpcore'):\n"
    "    logging.getLogger(name).setLevel(logging.DEBUG)\n"
    "    logging.getLogger(name).addHandler(to_output)",
    "%xmode Verbose",
    "%%chat\n401",
    "%tb",
    "%%chat\nmidstream",
    "%tb",
    "%%chat\njson",
    "%tb",
    "from jupyter_stream import ChatPanel, stream_chat\nlist(stream_chat('500'))",
    "%tb",
    "%chat config",
    "%chat models",
    "panel = ChatPanel()\npanel",
    "panel.send('401')\nawait panel.wait()\npanel.send('midstream')\nawait panel.wait()",
    "os.environ['JUPYTER_STREAM_BASE_URL'] = os.environ['CANARY_REFUSED']",
    "%%chat\nhi",
    "%tb",
    "os.environ['JUPYTER_STREAM_BASE_URL'] = os.environ['CANARY_BAD']",
    "%%chat\nhi",
    "%tb",
    "%chat config",
    "%tb",
    "ChatPanel()",
    "%tb",
    "os.environ['JUPYTER_STREAM_BASE_URL'] = os.environ['CANARY_BASIC']\n"
    "del os.environ['OPENAI_API_KEY']",
    "%%chat\n401",
    "%tb",
    "%chat config",
]


def test_a_notebook_never_shows_a_credential(
    server: ScriptedServer, outputs: Outputs, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbclient import NotebookClient

    server.handler = echoing
    messages: list[dict[str, Any]] = []

    class Recording(NotebookClient):  # type: ignore[misc]
        def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
            messages.append(msg)
            return super().process_message(msg, cell, cell_index)

    env = {
        "JUPYTER_STREAM_BASE_URL": with_credentials(server.url),
        "OPENAI_API_KEY": KEY,
        "JUPYTER_STREAM_MODEL": "m",
        "CANARY_REFUSED": with_credentials("http://127.0.0.1:1/v1"),
        "CANARY_BAD": BAD_URLS["no scheme"],
        "CANARY_BASIC": with_credentials(server.url),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK])
    Recording(
        notebook, timeout=120, kernel_name="python3", allow_errors=True, store_widget_state=True
    ).execute()
    path = tmp_path / "secrets.ipynb"
    nbformat.write(notebook, path)
    saved = path.read_text()
    outputs.add("the saved notebook", saved)
    outputs.add("the kernel's messages", json.dumps(messages, default=str))
    sent = [r.headers.get("authorization", "") for r in server.requests]
    assert f"Bearer {KEY}" in sent and "Basic " + CANARIES["the Basic credentials"] in sent
    for marker in ("AuthenticationError", "APIError", "ConnectError", "ConfigurationError"):
        assert marker in saved, marker  # every error path was reached
    assert "Traceback" in saved or "---------" in saved  # %tb printed whole tracebacks
    assert "key=***" in saved  # httpx's log line, redacted
    assert "/v1?api-version=2024-10&key=*** — JUPYTER_STREAM_BASE_URL" in saved  # %chat config
    assert "user:password@ is not sent (the API key is)" in saved
    assert "user:password@ is sent as Basic auth" in saved
