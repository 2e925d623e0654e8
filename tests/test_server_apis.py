"""Every API the server speaks besides Chat Completions, read raw (httpx, real sockets): OpenAI
Responses, Anthropic Messages, Gemini and Ollama, streamed and whole, their errors and their keys.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from conftest import ended, ended_since, wait_for_exchanges

from jupyter_stream import SSEDecoder
from jupyter_stream.server import BackgroundServer
from jupyter_stream.server._models import demo_answer, tokenize

MakeServer = Callable[..., BackgroundServer]
PROMPT = "What is SSE?"
LONG = 100_000  # tokens: an answer that outlasts any test
Text = tuple[str, str]  # the answer's text, and how the API said it ended


def root(server: BackgroundServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def sse(raw: bytes) -> list[tuple[str, Any]]:
    decoder = SSEDecoder()
    events = decoder.feed(raw) + decoder.flush()
    return [(event.event, json.loads(event.data)) for event in events]


def responses_text(raw: bytes) -> Text:
    events = sse(raw)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert all(name == data["type"] for name, data in events)  # each named in its event: line
    names = [name for name, _ in events]
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert names[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    text = "".join(d["delta"] for n, d in events if n == "response.output_text.delta")
    last = events[-1][1]["response"]
    assert events[-2][1]["item"]["content"][0]["text"] == text
    assert last["usage"]["output_tokens"] == len(tokenize(text))
    return text, last["status"]


def responses_whole(answer: Any) -> Text:
    assert answer["object"] == "response"
    return answer["output"][0]["content"][0]["text"], answer["status"]


def anthropic_text(raw: bytes) -> Text:
    events = sse(raw)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    deltas = [d["delta"] for n, d in events if n == "content_block_delta"]
    assert all(delta["type"] == "text_delta" for delta in deltas)
    text = "".join(delta["text"] for delta in deltas)
    assert events[-2][1]["usage"]["output_tokens"] == len(deltas)
    return text, events[-2][1]["delta"]["stop_reason"]


def anthropic_whole(answer: Any) -> Text:
    assert answer["type"] == "message" and answer["role"] == "assistant"
    return answer["content"][0]["text"], answer["stop_reason"]


def gemini_chunks(chunks: list[Any]) -> Text:
    texts = [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks]
    assert all(c["candidates"][0]["content"]["role"] == "model" for c in chunks)
    assert all("finishReason" not in c["candidates"][0] for c in chunks[:-1])
    last, text = chunks[-1], "".join(texts)
    assert last["usageMetadata"]["candidatesTokenCount"] == len(tokenize(text))
    return text, last["candidates"][0]["finishReason"]


def gemini_text(raw: bytes) -> Text:
    events = sse(raw)
    assert all(name == "message" for name, _ in events)
    return gemini_chunks([data for _, data in events])


def gemini_whole(answer: Any) -> Text:
    return gemini_chunks([answer])


def ollama_text(raw: bytes) -> Text:
    lines = [json.loads(line) for line in raw.split(b"\n") if line]
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert lines[-1]["eval_count"] == len(lines) - 1
    return "".join(line["message"]["content"] for line in lines), lines[-1]["done_reason"]


def ollama_whole(answer: Any) -> Text:
    assert answer["done"] is True
    return answer["message"]["content"], answer["done_reason"]


@dataclass
class Api:
    name: str
    path: Callable[[str, bool], str]  # (model, stream) -> path and query
    body: Callable[[str, str, bool, int | None], dict[str, Any]]  # model, prompt, stream, cap
    text: Callable[[bytes], Text]
    whole: Callable[[Any], Text]
    ends: tuple[str, str]  # the end of a natural answer, and of one cut by the cap
    key_header: Callable[[str], dict[str, str]]
    content_type: str = "text/event-stream"

    def __str__(self) -> str:
        return self.name


def messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


APIS = [
    Api(
        "responses",
        lambda model, stream: "/v1/responses",
        lambda model, prompt, stream, cap: {
            "model": model, "input": prompt, "stream": stream, "max_output_tokens": cap
        },
        responses_text,
        responses_whole,
        ("completed", "incomplete"),
        lambda key: {"Authorization": f"Bearer {key}"},
    ),
    Api(
        "anthropic",
        lambda model, stream: "/v1/messages",
        lambda model, prompt, stream, cap: {
            "model": model, "messages": messages(prompt), "stream": stream,
            "max_tokens": cap or 4096,
        },
        anthropic_text,
        anthropic_whole,
        ("end_turn", "max_tokens"),
        lambda key: {"x-api-key": key, "anthropic-version": "2023-06-01"},
    ),
    Api(
        "gemini",
        lambda model, stream: f"/v1beta/models/{model}:"
        + ("streamGenerateContent?alt=sse" if stream else "generateContent"),
        lambda model, prompt, stream, cap: {
            "contents": [{"role": "user", "parts": [{"text": prompt}]}],
            "generationConfig": {"maxOutputTokens": cap},
        },
        gemini_text,
        gemini_whole,
        ("STOP", "MAX_TOKENS"),
        lambda key: {"x-goog-api-key": key},
    ),
    Api(
        "ollama",
        lambda model, stream: "/api/chat",
        lambda model, prompt, stream, cap: {
            "model": model, "messages": messages(prompt), "stream": stream,
            "options": {"num_predict": cap},
        },
        ollama_text,
        ollama_whole,
        ("stop", "length"),
        lambda key: {"Authorization": f"Bearer {key}"},
        content_type="application/x-ndjson",
    ),
]  # fmt: skip


def ask(
    server: BackgroundServer,
    api: Api,
    *,
    model: str = "demo",
    prompt: str = PROMPT,
    stream: bool = True,
    cap: int | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    url = root(server) + api.path(model, stream)
    body = api.body(model, prompt, stream, cap)
    return httpx.post(url, json=body, headers=headers, timeout=30)


@pytest.mark.parametrize("api", APIS, ids=str)
def test_each_api_streams_the_demo_answer_token_by_token(
    demo_server: BackgroundServer, api: Api
) -> None:
    response = ask(demo_server, api)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(api.content_type)
    assert response.headers["cache-control"] == "no-cache"
    assert api.text(response.content) == (demo_answer(PROMPT), api.ends[0])


@pytest.mark.parametrize("api", APIS, ids=str)
def test_each_api_answers_whole_when_not_streamed(demo_server: BackgroundServer, api: Api) -> None:
    response = ask(demo_server, api, stream=False)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert api.whole(response.json()) == (demo_answer(PROMPT), api.ends[0])


@pytest.mark.parametrize("api", APIS, ids=str)
@pytest.mark.parametrize("stream", [True, False])
def test_each_api_cuts_the_answer_at_its_length_field(
    demo_server: BackgroundServer, api: Api, stream: bool
) -> None:
    response = ask(demo_server, api, stream=stream, cap=7)
    text, end = api.text(response.content) if stream else api.whole(response.json())
    assert end == api.ends[1]
    assert text == "".join(tokenize(demo_answer(PROMPT))[:7])


def test_every_api_gives_the_same_answer(demo_server: BackgroundServer) -> None:
    chat = httpx.post(
        f"{demo_server.base_url}/chat/completions",
        json={"model": "demo", "messages": messages(PROMPT)},
    ).json()["choices"][0]["message"]["content"]
    answers = {chat}
    for api in APIS:
        answers.add(api.text(ask(demo_server, api).content)[0])
        answers.add(api.whole(ask(demo_server, api, stream=False).json())[0])
        answers.add(api.text(ask(demo_server, api, model="echo", prompt=chat).content)[0])
    assert answers == {demo_answer(PROMPT)}


def test_gemini_without_alt_sse_streams_one_json_array(demo_server: BackgroundServer) -> None:
    url = f"{root(demo_server)}/v1beta/models/echo:streamGenerateContent"
    body = {"contents": [{"parts": [{"text": "a b c"}]}]}
    with httpx.stream("POST", url, json=body) as response:
        assert response.headers["content-type"].startswith("application/json")
        pieces = list(response.iter_bytes())
    chunks = json.loads(b"".join(pieces))
    assert gemini_chunks(chunks) == ("a b c", "STOP")


def test_ollama_takes_a_tagged_model_name_and_lists_its_models(
    demo_server: BackgroundServer,
) -> None:
    body = {"model": "echo:latest", "messages": messages("hi there"), "stream": False}
    answer = httpx.post(f"{root(demo_server)}/api/chat", json=body).json()
    assert answer["message"] == {"role": "assistant", "content": "hi there"}
    tags = httpx.get(f"{root(demo_server)}/api/tags").json()
    assert [(m["name"], m["model"]) for m in tags["models"]] == [("demo", "demo"), ("echo", "echo")]


def test_each_api_lists_the_models_in_its_own_shape(demo_server: BackgroundServer) -> None:
    anthropic = httpx.get(
        f"{demo_server.base_url}/models", headers={"anthropic-version": "2023-06-01"}
    ).json()
    assert [(m["type"], m["id"]) for m in anthropic["data"]] == [
        ("model", "demo"),
        ("model", "echo"),
    ]
    assert (anthropic["has_more"], anthropic["first_id"], anthropic["last_id"]) == (
        False,
        "demo",
        "echo",
    )
    openai = httpx.get(f"{demo_server.base_url}/models").json()
    assert openai["object"] == "list" and [m["object"] for m in openai["data"]] == ["model"] * 2
    gemini = httpx.get(f"{root(demo_server)}/v1beta/models").json()
    assert [m["name"] for m in gemini["models"]] == ["models/demo", "models/echo"]
    one = httpx.get(f"{root(demo_server)}/v1beta/models/echo").json()
    assert "streamGenerateContent" in one["supportedGenerationMethods"]
    missing = httpx.get(f"{root(demo_server)}/v1beta/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"


# --- errors, each in its API's shape


def error_of(api: Api, response: httpx.Response) -> str:
    """The message of an error answer, checked to be in ``api``'s shape."""
    body = response.json()
    if api.name == "anthropic":
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
        return str(body["error"]["message"])
    if api.name == "gemini":
        assert body["error"]["code"] == response.status_code
        assert body["error"]["status"].isupper()
        return str(body["error"]["message"])
    if api.name == "ollama":
        assert set(body) == {"error"} and isinstance(body["error"], str)
        return body["error"]
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return str(body["error"]["message"])


@pytest.mark.parametrize("api", APIS, ids=str)
def test_bad_requests_get_errors_in_the_apis_shape(demo_server: BackgroundServer, api: Api) -> None:
    url = root(demo_server) + api.path("demo", True)
    response = httpx.post(url, content=b"{not json")
    assert response.status_code == 400
    assert "not valid JSON" in error_of(api, response)
    response = httpx.post(url, json={"model": "demo"})  # nothing asked
    assert response.status_code == 400
    assert "missing" in error_of(api, response) or "required" in error_of(api, response)
    response = ask(demo_server, api, model="nope")
    assert response.status_code == 404
    assert "nope" in error_of(api, response) and "demo and echo" in error_of(api, response)
    response = ask(demo_server, api, cap=-5 if api.name != "ollama" else 0)
    assert response.status_code == 400 and "positive integer" in error_of(api, response)
    response = httpx.get(root(demo_server) + api.path("demo", True).partition("?")[0])
    assert response.status_code in (404, 405)
    error_of(api, response)


def test_anthropic_requires_max_tokens_as_anthropic_does(demo_server: BackgroundServer) -> None:
    body = {"model": "demo", "messages": messages("hi")}
    response = httpx.post(f"{demo_server.base_url}/messages", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required: send the longest answer wanted, e.g. 1024",
    }


def test_unknown_routes_answer_in_the_shape_of_the_api_they_look_like(
    demo_server: BackgroundServer,
) -> None:
    for api, path in ((APIS[2], "/v1beta/nothing"), (APIS[3], "/api/generate")):
        response = httpx.post(root(demo_server) + path, json={})
        assert response.status_code == 404
        assert "no route" in error_of(api, response)
    response = httpx.post(f"{root(demo_server)}/v1beta/models/demo:embedContent", json={})
    assert response.status_code == 404 and ":streamGenerateContent" in error_of(APIS[2], response)


@pytest.mark.parametrize("api", APIS, ids=str)
def test_a_key_protected_server_asks_each_api_for_its_own_header(
    make_server: MakeServer, api: Api
) -> None:
    server = make_server(api_key="s3cret-k3y", tokens_per_second=0, first_token_delay=0)
    refused = ask(server, api)
    assert refused.status_code == 401
    assert "--api-key" in error_of(api, refused)
    wrong = ask(server, api, headers=api.key_header("wrong-key"))
    assert wrong.status_code == 401
    good = ask(server, api, headers=api.key_header("s3cret-k3y"), cap=3)
    assert good.status_code == 200 and api.text(good.content)[1] == api.ends[1]
    bearer = ask(server, api, headers={"Authorization": "Bearer s3cret-k3y"}, cap=3)
    assert bearer.status_code == 200
    assert ask(server, api, headers={"Authorization": "s3cret-k3y"}).status_code == 401


def test_gemini_takes_its_key_in_the_query_and_the_log_never_shows_it(
    make_server: MakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jupyter_stream.server")
    server = make_server(api_key="s3cret-k3y", tokens_per_second=0, first_token_delay=0)
    before = len(ended(server))
    url = f"{root(server)}/v1beta/models/echo:generateContent?key=s3cret-k3y"
    response = httpx.post(url, json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert response.status_code == 200
    assert gemini_whole(response.json()) == ("hi", "STOP")
    ended_since(server, before)
    httpx.get(f"{root(server)}/health")  # logged after the first: a marker that it is done
    assert any("/health" in record.getMessage() for record in caplog.records)
    assert "s3cret" not in caplog.text
    wrong = httpx.post(url.replace("s3cret-k3y", "nope"), json={"contents": []})
    assert wrong.status_code == 401 and wrong.json()["error"]["status"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("api", APIS, ids=str)
def test_a_full_server_says_so_in_the_apis_shape(make_server: MakeServer, api: Api) -> None:
    server = make_server(max_streams=1, tokens_per_second=20, first_token_delay=0)
    url = root(server) + api.path("demo", True)
    with httpx.stream("POST", url, json=api.body("demo", "hi", True, LONG)) as first:
        chunks = first.iter_bytes()  # kept: a dropped iterator closes the response
        next(chunks)
        full = ask(server, api)
        assert full.status_code == 429 and full.headers["retry-after"] == "1"
        assert "busy" in error_of(api, full)


# --- a stream the server ends mid-answer


def last_words(api: Api, raw: bytes) -> str:
    """The message of the error that ends ``raw``, a stream the server cut short."""
    if api.name == "ollama":
        line = json.loads(raw.rstrip(b"\n").rpartition(b"\n")[2])
        assert set(line) == {"error"}
        return str(line["error"])
    name, data = sse(raw)[-1]
    if api.name == "responses":
        assert name == "error" and data["type"] == "error"
        assert data["sequence_number"] == len(sse(raw)) - 1
        return str(data["message"])
    if api.name == "anthropic":
        assert name == "error" and data["error"]["type"] == "api_error"
        return str(data["error"]["message"])
    assert data["error"]["status"] == "INTERNAL"
    return str(data["error"]["message"])


@pytest.mark.parametrize("api", APIS, ids=str)
def test_a_stream_the_server_ends_says_why_in_the_apis_shape(
    make_server: MakeServer, api: Api
) -> None:
    server = make_server(tokens_per_second=20, first_token_delay=0)
    url = root(server) + api.path("demo", True)
    with httpx.stream("POST", url, json=api.body("demo", "hi", True, LONG)) as response:
        chunks = response.iter_bytes()
        received = next(chunks)
        server.stop()
        received += b"".join(chunks)
    assert last_words(api, received) == "the server ended this stream: server shutting down"


@pytest.mark.parametrize("api", APIS, ids=str)
def test_a_client_that_leaves_ends_the_answer(make_server: MakeServer, api: Api) -> None:
    server = make_server(tokens_per_second=20, first_token_delay=0)
    url = root(server) + api.path("demo", True)
    with httpx.stream("POST", url, json=api.body("demo", "hi", True, LONG)) as response:
        next(response.iter_bytes())
    wait_for_exchanges(server, lambda state: not state.exchanges)
    assert ended(server)[-1]["end"] == "client disconnected"


@pytest.mark.parametrize("api", APIS, ids=str)
def test_a_large_body_and_a_foreign_host_are_refused_in_the_apis_shape(
    make_server: MakeServer, api: Api
) -> None:
    server = make_server(max_body_bytes=1000)
    large = ask(server, api, prompt="x" * 2000)
    assert large.status_code == 413 and "1000 bytes" in error_of(api, large)
    foreign = ask(server, api, headers={"Host": "rebound.attacker.example"})
    assert foreign.status_code == 403 and "loopback" in error_of(api, foreign)


def test_gemini_s_json_array_ends_with_the_error_when_the_server_ends_it(
    make_server: MakeServer,
) -> None:
    server = make_server(tokens_per_second=20, first_token_delay=0)
    url = f"{root(server)}/v1beta/models/demo:streamGenerateContent"
    body = {
        "contents": [{"parts": [{"text": "hi"}]}],
        "generationConfig": {"maxOutputTokens": LONG},
    }
    with httpx.stream("POST", url, json=body) as response:
        chunks = response.iter_bytes()
        received = next(chunks)
        server.stop()
        received += b"".join(chunks)
    *answer, last = json.loads(received)  # still one JSON array
    assert answer and all("candidates" in chunk for chunk in answer)
    assert last["error"]["message"] == "the server ended this stream: server shutting down"
