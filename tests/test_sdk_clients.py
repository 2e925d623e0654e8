"""Each API's official SDK as a client of our server (openai: chat and responses, anthropic,
google-genai, ollama), so that our server and our client cannot share one misreading of a
protocol: each gets the demo answer incrementally, whole, its model list, its own errors, and the
server sees it leave when its stream is closed mid-answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, cast

import anthropic
import ollama
import openai
import pytest
from conftest import ended, wait_for_exchanges
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from jupyter_stream.server import BackgroundServer, ServerConfig
from jupyter_stream.server._models import demo_answer, tokenize

MakeServer = Callable[..., BackgroundServer]
KEY = "sdk-s3cret-key"
PROMPT = "Tell me about streams."
MESSAGES: Any = [{"role": "user", "content": PROMPT}]  # each SDK types its own
LONG = 100_000  # tokens: an answer that outlasts any test
Deltas = Generator[str, None, None]


def root(server: BackgroundServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def openai_client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)


def anthropic_client(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0)


def genai_client(url: str) -> genai.Client:
    once = types.HttpRetryOptions(attempts=1)
    options = types.HttpOptions(base_url=url, api_version="v1beta", retry_options=once)
    return genai.Client(api_key=KEY, http_options=options)


def ollama_client(url: str) -> ollama.Client:
    return ollama.Client(host=url, headers={"Authorization": f"Bearer {KEY}"})


# Each SDK's streamed deltas: closing the generator closes the SDK's stream, then its client.


def openai_chat(url: str, cap: int | None) -> Deltas:
    more: dict[str, Any] = {} if cap is None else {"max_tokens": cap}
    with (
        openai_client(url) as client,
        client.chat.completions.create(
            model="demo", messages=MESSAGES, stream=True, **more
        ) as stream,
    ):
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content


def openai_responses(url: str, cap: int | None) -> Deltas:
    more: dict[str, Any] = {} if cap is None else {"max_output_tokens": cap}
    with (
        openai_client(url) as client,
        client.responses.create(model="demo", input=PROMPT, stream=True, **more) as stream,
    ):
        for event in stream:
            if event.type == "response.output_text.delta":
                yield event.delta
            elif event.type == "error":  # the SDK yields it; a caller raises it
                raise RuntimeError(event.message)


def openai_responses_helper(url: str, cap: int | None) -> Deltas:
    more: dict[str, Any] = {} if cap is None else {"max_output_tokens": cap}
    with (
        openai_client(url) as client,
        client.responses.stream(model="demo", input=PROMPT, **more) as stream,
    ):
        texts, last = [], ""
        for event in stream:
            last = event.type
            if event.type == "response.output_text.delta":
                texts.append(event.delta)
                yield event.delta
            elif event.type == "error":
                raise RuntimeError(event.message)
        if last == "response.completed":  # the helper has no final response if incomplete
            assert stream.get_final_response().output_text == "".join(texts)


def anthropic_messages(url: str, cap: int | None) -> Deltas:
    with (
        anthropic_client(url) as client,
        client.messages.stream(model="demo", messages=MESSAGES, max_tokens=cap or 4096) as stream,
    ):
        yield from stream.text_stream


def gemini(url: str, cap: int | None) -> Deltas:
    config = types.GenerateContentConfig(max_output_tokens=cap)
    with genai_client(url) as client:
        chunks = client.models.generate_content_stream(model="demo", contents=PROMPT, config=config)
        with contextlib.closing(cast(Generator[types.GenerateContentResponse], chunks)):
            for chunk in chunks:
                if chunk.text:
                    yield chunk.text


def ollama_chat(url: str, cap: int | None) -> Deltas:
    options = {} if cap is None else {"num_predict": cap}
    with ollama_client(url) as client:
        parts = client.chat(model="demo", messages=MESSAGES, stream=True, options=options)
        with contextlib.closing(parts):
            for part in parts:
                if part.message.content:
                    yield part.message.content


@dataclass
class Sdk:
    name: str
    stream: Callable[[str, int | None], Deltas]

    def __str__(self) -> str:
        return self.name


SDKS = [
    Sdk("openai-chat", openai_chat),
    Sdk("openai-responses", openai_responses),
    Sdk("openai-responses-stream", openai_responses_helper),
    Sdk("anthropic", anthropic_messages),
    Sdk("google-genai", gemini),
    Sdk("ollama", ollama_chat),
]


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[BackgroundServer]:
    """The demo server, with a key every SDK must send its own way, as fast as it can go."""
    config = ServerConfig(api_key=KEY, tokens_per_second=0, first_token_delay=0)
    with BackgroundServer(config) as server:
        yield server


@pytest.mark.parametrize("sdk", SDKS, ids=str)
def test_each_sdk_streams_the_demo_answer_delta_by_delta(
    keyed_server: BackgroundServer, sdk: Sdk
) -> None:
    deltas = list(sdk.stream(root(keyed_server), None))
    assert len(deltas) == len(tokenize(demo_answer(PROMPT)))  # one a token, not one in all
    assert "".join(deltas) == demo_answer(PROMPT)


@pytest.mark.parametrize("sdk", SDKS, ids=str)
def test_each_sdk_gets_the_first_delta_before_the_last_is_sent(
    make_server: MakeServer, sdk: Sdk
) -> None:
    server = make_server(api_key=KEY, tokens_per_second=20, first_token_delay=0)
    deltas = sdk.stream(root(server), 10)
    first = next(deltas)
    sent_at_first = next(iter(server.app.state.server.exchanges)).log["tokens"]
    rest = list(deltas)
    assert sent_at_first < 10, "the first delta waited for the last"
    assert [first, *rest] == tokenize(demo_answer(PROMPT))[:10]


@pytest.mark.parametrize("sdk", SDKS, ids=str)
def test_closing_an_sdk_stream_mid_answer_ends_the_servers_answer(
    make_server: MakeServer, sdk: Sdk
) -> None:
    server = make_server(api_key=KEY, tokens_per_second=20, first_token_delay=0)
    deltas = sdk.stream(root(server), LONG)
    assert [next(deltas), next(deltas)] == tokenize(demo_answer(PROMPT))[:2]
    deltas.close()
    wait_for_exchanges(server, lambda state: not state.exchanges)
    log = ended(server)[-1]
    assert log["end"] == "client disconnected"
    assert log["tokens"] < 400  # not the natural answer's end, nor the cap's


@pytest.mark.parametrize("sdk", SDKS, ids=str)
def test_each_sdk_raises_the_servers_reason_when_it_ends_a_stream(
    make_server: MakeServer, sdk: Sdk
) -> None:
    server = make_server(api_key=KEY, tokens_per_second=20, first_token_delay=0)
    deltas = sdk.stream(root(server), LONG)
    next(deltas)
    server.stop()
    with pytest.raises(Exception, match="the server ended this stream: server shutting down"):
        list(deltas)


def test_the_sdks_get_whole_answers(keyed_server: BackgroundServer) -> None:
    url, answer = root(keyed_server), demo_answer(PROMPT)
    with openai_client(url) as client:
        response = client.responses.create(model="demo", input=PROMPT)
        assert (response.output_text, response.status) == (answer, "completed")
        assert response.usage is not None
        assert response.usage.output_tokens == len(tokenize(answer))
        cut = client.responses.create(model="demo", input=PROMPT, max_output_tokens=16)
        assert cut.status == "incomplete" and cut.incomplete_details is not None
        assert cut.incomplete_details.reason == "max_output_tokens"
    with anthropic_client(url) as client:
        message = client.messages.create(model="demo", messages=MESSAGES, max_tokens=4096)
        assert message.content[0].type == "text"
        assert (message.content[0].text, message.stop_reason) == (answer, "end_turn")
        cut_message = client.messages.create(model="demo", messages=MESSAGES, max_tokens=5)
        assert cut_message.stop_reason == "max_tokens"
        assert cut_message.usage.output_tokens == 5
    with genai_client(url) as client:
        generated = client.models.generate_content(model="demo", contents=PROMPT)
        assert generated.text == answer
        assert generated.candidates is not None
        assert generated.candidates[0].finish_reason == types.FinishReason.STOP
    with ollama_client(url) as client:
        reply = client.chat(model="demo", messages=MESSAGES)
        assert (reply.message.content, reply.done_reason) == (answer, "stop")


def test_the_sdks_list_the_models(keyed_server: BackgroundServer) -> None:
    url = root(keyed_server)
    with openai_client(url) as client:
        assert [model.id for model in client.models.list()] == ["demo", "echo"]
    with anthropic_client(url) as client:
        assert [model.id for model in client.models.list()] == ["demo", "echo"]
    with genai_client(url) as client:
        assert [model.name for model in client.models.list()] == ["models/demo", "models/echo"]
    with ollama_client(url) as client:
        assert [model.model for model in client.list().models] == ["demo", "echo"]


def test_the_sdks_raise_their_own_errors_with_the_servers_message(
    keyed_server: BackgroundServer,
) -> None:
    url, unknown = root(keyed_server), "The model `nope` does not exist"
    with anthropic_client(url) as client, pytest.raises(anthropic.NotFoundError, match=unknown):
        client.messages.create(model="nope", messages=MESSAGES, max_tokens=5)
    with genai_client(url) as client, pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model="nope", contents=PROMPT)
    assert caught.value.code == 404 and unknown in str(caught.value.message)
    with ollama_client(url) as client, pytest.raises(ollama.ResponseError) as refused:
        client.chat(model="nope", messages=MESSAGES)
    assert refused.value.status_code == 404 and unknown in refused.value.error
    with openai_client(url) as client, pytest.raises(openai.NotFoundError, match=unknown):
        client.responses.create(model="nope", input=PROMPT)
    wrong = anthropic.Anthropic(base_url=url, api_key="wrong", max_retries=0)
    with wrong, pytest.raises(anthropic.AuthenticationError, match="x-api-key"):
        wrong.messages.create(model="demo", messages=MESSAGES, max_tokens=5)
